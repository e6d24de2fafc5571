//! Formats in a cluster (the real control plane, the real `reportjob` binary as stage pods): a JSON Lines
//! report with zstd written by plan, chunk and assemble pods holds every value of the
//! source; the API server refuses at admission (CEL) an option block of another format.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::formats::{EXPECTED, TYPED, reader, unzstd, write_expected};
use common::sha256_hex;

use common::TestDb;
use common::testbed::{Env, output_file, report};
use kube::api::PostParams;
use reportjob::api::{Phase, ReportJob};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_report_from_stage_pods_is_exact_and_mixed_options_are_refused_at_admission() {
    let mut db = TestDb::new("jsonl_cluster").await;
    db.exec(TYPED).await;
    let mut env = Env::start().await;
    let ns = env.tenant("formats").await;
    env.start_single_controller();

    // An option block of another format never gets in.
    let mixed = report("mixed", &db.table("typed"), "mixed.jsonl")
        .set("spec.output.format", "jsonl")
        .set("spec.output.csv.bom", true)
        .build();
    let mixed: ReportJob = serde_json::from_value(mixed).unwrap();
    let refused = env.rjs(ns).create(&PostParams::default(), &mixed).await;
    let message = format!("{:?}", refused.expect_err("refused at admission"));
    assert!(
        message.contains(reportjob::api::schema::CSV_ONLY),
        "{message}"
    );

    let path = "exports/typed.jsonl.zst";
    let rj = report("typed", &db.table("typed"), path)
        .chunk_size(40)
        .set("spec.output.format", "jsonl")
        .set("spec.output.compression", "zstd")
        .set("spec.output.timeZone", "Asia/Kolkata")
        .build_yaml();
    env.apply(ns, &rj).await;
    let done = env
        .wait_phase(ns, "typed", Phase::Succeeded, common::PATIENCE)
        .await;
    let status = done.status.unwrap();
    assert!(status.chunks.unwrap().total >= 5);
    let output = status.output.unwrap();
    assert_eq!(output.rows, 300);

    let stored = std::fs::read(output_file(&env, ns, path)).unwrap();
    assert_eq!(stored.len() as i64, output.bytes);
    let plain = env.dir.path().join("typed.jsonl");
    std::fs::write(&plain, unzstd(&stored)).unwrap();
    let expected = env.dir.path().join("expected.json");
    write_expected(&mut db, &expected).await;
    let printed = reader(
        "jsonl_check.py",
        &[
            plain.to_str().unwrap(),
            expected.to_str().unwrap(),
            "string",
            "+05:30",
        ],
    );
    assert_eq!(
        printed.trim(),
        format!("rows=300 values={}", 300 * EXPECTED.len())
    );
}

/// A split report written by stage pods: the status names its manifest and counts and
/// lists its files, each on the volume with the figures the status gives, and together
/// they load back as the source; a limit of 0 is refused at admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_report_from_stage_pods_lists_its_files_in_the_status() {
    let mut db = TestDb::new("split_cluster").await;
    db.numbers(500).await;
    let mut env = Env::start().await;
    let ns = env.tenant("split").await;
    env.start_single_controller();

    let zero = report("zero", &db.table("src"), "zero.csv")
        .set("spec.output.split.maxRows", 0)
        .build();
    let zero: ReportJob = serde_json::from_value(zero).unwrap();
    let refused = env.rjs(ns).create(&PostParams::default(), &zero).await;
    let message = format!("{:?}", refused.expect_err("refused at admission"));
    assert!(message.contains("maxRows"), "{message}");

    let path = "exports/numbers.csv";
    let rj = report("numbers", &db.table("src"), path)
        .chunk_size(100)
        .set("spec.output.split.maxRows", 200)
        .build_yaml();
    env.apply(ns, &rj).await;
    let done = env
        .wait_phase(ns, "numbers", Phase::Succeeded, common::PATIENCE)
        .await;
    let output = done.status.unwrap().output.unwrap();
    assert_eq!(output.rows, 500);
    assert_eq!(
        output.location,
        "pvc://reports/exports/numbers.csv.manifest.json"
    );
    let manifest = std::fs::read(output_file(&env, ns, &format!("{path}.manifest.json"))).unwrap();
    assert_eq!(
        output.sha256,
        sha256_hex(&manifest),
        "the status's hash is the manifest's"
    );
    let count = output.file_count.expect("a file count") as usize;
    assert!(count >= 3, "{output:?}");
    assert_eq!(output.files.len(), count, "a few files all fit the status");
    let source = db.all("src");
    let mut loaded = Vec::new();
    let mut bytes = 0;
    for (i, file) in output.files.iter().enumerate() {
        let name = format!("exports/numbers-{:05}.csv", i + 1);
        assert_eq!(file.location, format!("pvc://reports/{name}"));
        let stored = std::fs::read(output_file(&env, ns, &name)).unwrap();
        assert_eq!(file.sha256, sha256_hex(&stored), "{name}");
        assert_eq!(file.bytes, stored.len() as i64, "{name}");
        assert!(file.rows > 0 && file.rows <= 200, "{name}: {}", file.rows);
        assert!(stored.starts_with(b"id,label\n"), "{name}: its own header");
        bytes += file.bytes;
        let table = db
            .load_csv(&output_file(&env, ns, &name), &source, "", false)
            .await;
        loaded.push(format!("SELECT * FROM {table}"));
    }
    assert_eq!(bytes, output.bytes);
    assert_eq!(
        db.checksum(&loaded.join(" UNION ALL ")).await,
        db.checksum(&source).await
    );
}
