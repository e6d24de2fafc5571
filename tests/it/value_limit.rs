//! `output.maxValueBytes` against the real Postgres with `reportjob run`: one value over the
//! limit (the attacker's 300 MB cell, scaled down) fails its chunk in every format with an
//! error naming the column and the row's key, and publishes nothing; a filter that leaves
//! the row out, or a limit above it, exports every row exactly; a limit out of its bounds
//! is refused by name.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common::spec::SpecBuilder;
use crate::common::{TestDb, Workdir, run_json, stderr};

/// `src (id, note text, blob bytea)`: 200 rows of short values, and row 77 with a
/// 5,000-byte note (row 120 with a 3,000-byte blob, which is under every limit used).
async fn source(db: &mut TestDb) {
    db.exec(
        "CREATE TABLE src (id bigint PRIMARY KEY, note text, blob bytea);
         INSERT INTO src SELECT g, 'note ' || g, decode(md5(g::text), 'hex')
           FROM generate_series(1, 200) AS g;
         UPDATE src SET note = repeat('x', 5000) WHERE id = 77;
         UPDATE src SET blob = decode(repeat(md5('b'), 3000 / 16), 'hex') WHERE id = 120;",
    )
    .await;
}

fn run(work: &Workdir, spec: SpecBuilder) -> std::process::Output {
    let spec = work.spec("s.yaml", &spec.build_yaml());
    work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"])
}

#[tokio::test]
async fn a_value_over_the_limit_fails_naming_its_column_and_key_in_every_format() {
    let mut db = TestDb::new("max_value").await;
    source(&mut db).await;
    for (format, file) in [
        ("csv", "r.csv"),
        ("jsonl", "r.jsonl"),
        ("parquet", "r.parquet"),
        ("xlsx", "r.xlsx"),
    ] {
        let work = Workdir::new();
        let out = run(
            &work,
            SpecBuilder::table(&db.table("src"))
                .key("id")
                .chunk_size(50)
                .set("spec.output.format", format)
                .set("spec.output.maxValueBytes", 4096)
                .pvc("r", file),
        );
        assert_eq!(out.status.code(), Some(3), "{format}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(
                "column \"note\" holds a value of 5000 bytes at key 77, over \
                 spec.output.maxValueBytes (4096)"
            ),
            "{format}: {}",
            stderr(&out)
        );
        assert!(
            !work.output_dir().join(file).exists(),
            "{format}: nothing is published"
        );
    }
}

#[tokio::test]
async fn a_query_source_is_guarded_too_and_the_key_is_the_queries_own() {
    let mut db = TestDb::new("max_value_query").await;
    source(&mut db).await;
    let work = Workdir::new();
    let out = run(
        &work,
        SpecBuilder::query(&format!(
            "SELECT id * 10 AS k, upper(note) AS shout FROM {}",
            db.table("src")
        ))
        .name("q")
        .key("k")
        .set("spec.output.maxValueBytes", 4096)
        .pvc("r", "r.csv"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("column \"shout\" holds a value of 5000 bytes at key 770,"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn rows_the_filter_leaves_out_and_values_under_the_limit_are_exported_exactly() {
    let mut db = TestDb::new("max_value_ok").await;
    source(&mut db).await;
    // The guard sees only the rows the filter keeps: row 77 is never measured.
    let work = Workdir::new();
    let out = run(
        &work,
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .filter("id <> 77")
            .set("spec.output.maxValueBytes", 4096)
            .pvc("r", "r.csv"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 199);
    db.assert_report_matches(
        &work.output_dir().join("r.csv"),
        &format!("{} WHERE id <> 77", db.all("src")),
        "",
        false,
    )
    .await;
    // The default limit (64 MiB) takes every row.
    let work = Workdir::new();
    let out = run(
        &work,
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("r", "r.csv"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 200);
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn a_limit_out_of_its_bounds_is_refused_by_name() {
    let work = Workdir::new();
    for bad in [0_i64, 1023, 1_073_741_825, -1] {
        let out = run(
            &work,
            SpecBuilder::table("public.t")
                .key("id")
                .set("spec.output.maxValueBytes", bad)
                .pvc("r", "r.csv"),
        );
        assert_eq!(out.status.code(), Some(3), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "spec.output.maxValueBytes: must be between 1024 (1 KiB) and 1073741824 \
                 (1 GiB), got {bad}"
            )),
            "{bad}: {}",
            stderr(&out)
        );
    }
}
