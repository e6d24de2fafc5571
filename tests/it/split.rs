//! Split outputs (`spec.output.split`) with `reportjob run`: a CSV report cut into files at
//! chunk boundaries, each opening with its own BOM and header (in its own gzip member), each
//! loaded back by Postgres and together exactly the source; the manifest and `--json` list
//! every file with rows, bytes and sha256; a new run replaces the files of the last one and
//! removes those it does not overwrite; bad limits are refused before anything is written.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::io::Read;

use crate::common;
use crate::formats::assert_refused_before_writing;
use common::sha256_hex;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Runs `spec` (into `reports/<file>` on the volume) and returns its `--json` result.
fn run(work: &Workdir, spec: SpecBuilder, file: &str) -> serde_json::Value {
    let spec = work.spec("spec.yaml", &spec.pvc("reports", file).build_yaml());
    let out = work.reportjob(&[
        "run",
        "-f",
        spec.to_str().unwrap(),
        "--json",
        "--parallelism",
        "3",
    ]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    run_json(&out)
}

#[tokio::test]
async fn a_split_csv_report_is_files_each_with_its_header_that_load_back_exactly() {
    let mut db = TestDb::new("split_csv").await;
    // Quotes, line breaks inside values, unicode, NULLs and empty strings.
    db.exec(
        r#"CREATE TABLE src (id integer PRIMARY KEY, t text, n numeric);
           INSERT INTO src
           SELECT g, (ARRAY['plain', E'multi\nline', 'say "hi", ok', '', NULL,
                            'naïve café — 東京 🚀'])[1 + g % 6], g / 7.0
             FROM generate_series(1, 500) AS g;"#,
    )
    .await;
    let work = Workdir::new();
    let table = db.table("src");
    // Chunks of at most 60 rows; files close before a chunk would pass 130 rows: two
    // chunks (120 rows) per file, the last file the rest.
    let spec = SpecBuilder::table(&table)
        .key("id")
        .chunk_size(60)
        .compression("gzip")
        .set("spec.output.csv.bom", true)
        .set("spec.output.split.maxRows", 130);
    let result = run(&work, spec, "exports/orders.csv.gz");
    assert_eq!(result["rows"].as_u64().unwrap(), 500, "{result}");
    let files = result["files"].as_array().expect("files").clone();
    assert!(files.len() >= 4, "{result}");
    let dir = work.output_dir();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("exports/orders.csv.gz.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["files"], serde_json::Value::Array(files.clone()));
    assert!(manifest.get("sha256").is_none(), "{manifest}");
    assert!(
        !dir.join("exports/orders.csv.gz").exists(),
        "no single report"
    );
    let source = db.all("src");
    let mut loaded = Vec::new();
    let mut total_rows = 0;
    let mut total_bytes = 0;
    for (i, file) in files.iter().enumerate() {
        let name = format!("exports/orders-{:05}.csv.gz", i + 1);
        let path = dir.join(&name);
        assert_eq!(file["location"].as_str().unwrap(), path.to_str().unwrap());
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            sha256_hex(&stored),
            "{name}"
        );
        assert_eq!(
            file["bytes"].as_u64().unwrap(),
            stored.len() as u64,
            "{name}"
        );
        let rows = file["rows"].as_u64().unwrap();
        assert!(rows > 0 && rows <= 130, "{name}: {rows} rows");
        total_rows += rows;
        total_bytes += stored.len() as u64;
        // Each file: one BOM, then the header, as a reader opening it alone needs.
        let plain = gunzip(&stored);
        assert!(plain.starts_with(b"\xEF\xBB\xBFid,t,n\n"), "{name}");
        assert_eq!(plain.windows(3).filter(|w| w == b"\xEF\xBB\xBF").count(), 1);
        let bare = work.path().join(format!("file-{i}.csv"));
        std::fs::write(&bare, &plain[3..]).unwrap();
        let table = db.load_csv(&bare, &source, "", false).await;
        assert_eq!(
            db.checksum(&format!("SELECT * FROM {table}")).await.0,
            rows as i64
        );
        loaded.push(format!("SELECT * FROM {table}"));
    }
    assert_eq!(total_rows, 500);
    assert_eq!(result["bytes"].as_u64().unwrap(), total_bytes);
    // Together, exactly the source.
    assert_eq!(
        db.checksum(&loaded.join(" UNION ALL ")).await,
        db.checksum(&source).await
    );

    // A new run with larger files replaces them and removes the ones it no longer writes;
    // then one file replaces them all.
    let spec = SpecBuilder::table(&table)
        .key("id")
        .chunk_size(60)
        .compression("gzip")
        .set("spec.output.split.maxRows", 250);
    let again = run(&work, spec, "exports/orders.csv.gz");
    let count = again["files"].as_array().unwrap().len();
    assert_eq!(count, 3, "{again}");
    for n in 1..=files.len() {
        let path = dir.join(format!("exports/orders-{n:05}.csv.gz"));
        assert_eq!(path.exists(), n <= count, "{}", path.display());
    }
    let single = run(
        &work,
        SpecBuilder::table(&table)
            .key("id")
            .chunk_size(60)
            .compression("gzip"),
        "exports/orders.csv.gz",
    );
    assert!(single.get("files").is_none_or(|f| f.is_null()), "{single}");
    assert!(dir.join("exports/orders.csv.gz").exists());
    for n in 1..=count {
        assert!(!dir.join(format!("exports/orders-{n:05}.csv.gz")).exists());
    }
}

#[tokio::test]
async fn split_limits_of_zero_or_none_are_refused_before_anything_is_written() {
    let mut db = TestDb::new("split_refusals").await;
    db.numbers(50).await;
    let work = Workdir::new();
    let base = || {
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("reports", "r.csv")
    };
    assert_refused_before_writing(
        &work,
        [
            (
                base().set("spec.output.split.maxRows", 0),
                "spec.output.split.maxRows: must be at least 1, got 0",
            ),
            (
                base().set("spec.output.split.maxBytes", -1),
                "spec.output.split.maxBytes: must be at least 1, got -1",
            ),
            (
                base().set("spec.output.split", serde_json::json!({})),
                "spec.output.split: set maxRows, maxBytes or both",
            ),
        ],
    );
}

#[tokio::test]
async fn cleanup_deletes_only_the_files_the_run_recorded_not_what_a_planted_manifest_lists() {
    let mut db = TestDb::new("split_cleanup").await;
    db.exec(
        "CREATE TABLE src (id integer PRIMARY KEY, t text);
         INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 300) AS g;",
    )
    .await;
    let work = Workdir::new();
    let spec = SpecBuilder::table(&db.table("src"))
        .key("id")
        .chunk_size(50)
        .set("spec.output.split.maxRows", 110)
        .pvc("reports", "out/r.csv");
    let spec = work.spec("spec.yaml", &spec.build_yaml());
    let spec = spec.to_str().unwrap();
    let out = work.reportjob(&["run", "-f", spec, "--json", "--run-id", "r1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let count = run_json(&out)["files"].as_array().unwrap().len();
    assert!((2..9).contains(&count), "{count}");
    let dir = work.output_dir().join("out");
    // Someone who can write to the destination plants a sibling the report never wrote and
    // a manifest that lists it (as file 9 of 9).
    std::fs::write(dir.join("r-00009.csv"), "not the report's\n").unwrap();
    let manifest_path = dir.join("r.csv.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let files = manifest["files"].as_array_mut().unwrap();
    let last = files.last().unwrap().clone();
    while files.len() < 9 {
        files.push(last.clone());
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    // Without the run's record, the numbered files stay (only the manifest goes).
    let out = work.reportjob(&["cleanup", "-f", spec, "--run-id", "r1", "--delete-output"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("r-00001.csv").exists());
    assert!(!manifest_path.exists());
    // With it, exactly files 1 to N go; the sibling stays.
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let recorded = count.to_string();
    let out = work.reportjob(&[
        "cleanup",
        "-f",
        spec,
        "--run-id",
        "r1",
        "--delete-output",
        "--output-files",
        &recorded,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["r-00009.csv"], "only the planted sibling is left");
    assert_eq!(
        std::fs::read_to_string(dir.join("r-00009.csv")).unwrap(),
        "not the report's\n"
    );
}
