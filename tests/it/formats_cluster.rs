//! Formats in a cluster (kubesim, the real `reportjob` binary as stage pods): a JSON Lines
//! report with zstd written by plan, chunk and assemble pods holds every value of the
//! source; the API server refuses at admission (CEL) an option block of another format.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::formats::{EXPECTED, TYPED, reader, unzstd, write_expected};

use common::TestDb;
use common::cluster::{Env, output_file, report};
use kube::api::PostParams;
use reportjob::api::{Phase, ReportJob};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_report_from_stage_pods_is_exact_and_mixed_options_are_refused_at_admission() {
    let mut db = TestDb::new("jsonl_cluster").await;
    db.exec(TYPED).await;
    let mut env = Env::start().await;
    let ns = "formats";
    env.tenant(ns).await;
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
