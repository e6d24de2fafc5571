//! Parquet reports end to end with `reportjob run` against the real Postgres: a table of
//! every mapped type (NULLs, empty strings, unicode, big and wide numerics, numeric with and
//! without a typmod, negative zero, NaN and infinite floats, dates before 1970 and after
//! 2038, uuid, json/jsonb, bytea, arrays, a 50 KB text, types without a mapping written as
//! text with a warning) exported in several chunks of several row groups each, on a volume
//! and in a bucket, read back by pyarrow and DuckDB and compared value by value with what
//! Postgres says; footer statistics checked by pyarrow; infinite dates refused by name with
//! nothing published; options of other formats refused; and the same report written by
//! plan, chunk and assemble pods on the real control plane, with gzip around Parquet refused at admission.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::Path;

use crate::common;
use crate::formats::{Exported, assert_refused_before_writing, export_to, reader};
use common::sha256_hex;

use common::s3::S3Server;
use common::spec::SpecBuilder;
use common::{TestDb, Workdir, stderr};

/// Every type the Parquet format maps, and two it does not (interval, inet).
const PTYPED: &str = r#"
CREATE TABLE ptyped (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real,
    f8 double precision, num numeric(36,10), wide numeric(60,20), numu numeric, b boolean,
    t text, vc varchar(20), ch char(5), d date, ts timestamp, tstz timestamptz, u uuid,
    j json, jb jsonb, by bytea, ai integer[], at text[], an numeric[], iv interval, ip inet);
INSERT INTO ptyped
SELECT g,
       CASE WHEN g % 11 = 0 THEN NULL WHEN g = 1 THEN -32768 ELSE g % 200 - 100 END,
       CASE WHEN g % 5 = 0 THEN 2147483647 ELSE -g * 1000 END,
       CASE g % 5 WHEN 0 THEN 9223372036854775807 WHEN 1 THEN -9223372036854775808
                  WHEN 2 THEN NULL ELSE g * 1234567890123 END,
       (ARRAY['1.1', '-0', 'Infinity', '-Infinity', 'NaN', '3.4028235e38', '1e-45', NULL])[1 + g % 8]::real,
       (ARRAY['0.1', '-0', 'Infinity', '-Infinity', 'NaN', '1.7976931348623157e308', '5e-324',
              '123456789.123456789', NULL])[1 + g % 9]::float8,
       (ARRAY['12345678901234567890123456.1234567890', '-0.0000000001', '0', NULL, '1.5'])[1 + g % 5]::numeric(36,10),
       (ARRAY['1234567890123456789012345678901234567890.12345678901234567890',
              '-0.00000000000000000001', NULL, '0', '-7.5'])[1 + g % 5]::numeric(60,20),
       (ARRAY['NaN', '123456789012345678901234567890.123456789012345678901', '-1e-30', 'Infinity',
              NULL, '7', '-Infinity', '0.000'])[1 + g % 8]::numeric,
       CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       (ARRAY['', 'naïve café — 東京 🚀', E'line\nbreak\ttab\r', E'back\\slash "quoted"', NULL,
              E'ctl\x01char', repeat('x', 51200)])[1 + g % 7],
       left(md5(g::text), g % 21)::varchar(20),
       (ARRAY['ab', '', 'é', NULL, 'abcde'])[1 + g % 5]::char(5),
       (ARRAY['1901-12-13', '1969-12-31', '1970-01-01', '2038-01-19', '2100-02-28', '9999-12-31',
              NULL, '0001-01-01'])[1 + g % 8]::date,
       CASE WHEN g % 13 = 0 THEN NULL
            ELSE timestamp '1950-01-01 00:00:00.000001' + g * interval '330 days 7 hours 0.5 seconds' END,
       CASE WHEN g % 17 = 0 THEN NULL
            ELSE timestamptz '1950-06-30 12:34:56.789+00' + g * interval '331 days 0.25 seconds' END,
       CASE WHEN g % 19 = 0 THEN NULL ELSE md5(g::text)::uuid END,
       (ARRAY[E'{"b": 1,\n  "a": [1, 2.50, "x"]}', '[]', 'null', '"s"', NULL,
              '{"big": 123456789012345678901234567890}'])[1 + g % 6]::json,
       (ARRAY['{"z": -0.0, "a": {"k": [true, null]}}', '{}', NULL, '"\u00e9"', '1e400'])[1 + g % 5]::jsonb,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea ELSE decode(md5(g::text), 'hex') END,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN ARRAY[]::int[] ELSE ARRAY[g, -g, NULL] END,
       CASE g % 3 WHEN 0 THEN NULL ELSE ARRAY['a,b', 'q"uote', NULL, 'é', ''] END,
       CASE g % 3 WHEN 0 THEN NULL ELSE ARRAY[g / 3.0, 1e20, NULL, 'NaN'] END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g * interval '1 day 2 hours 3.5 seconds' END,
       ('10.0.' || (g % 256) || '.1/24')::inet
  FROM generate_series(1, 300) AS g;
"#;

/// Columns of `ptyped`, the kind the reader compares each as, and the source's text of
/// each value (timestamptz as microseconds since the epoch; arrays as JSON arrays of the
/// elements' text).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("id", "int", "id::text"),
    ("i2", "int", "i2::text"),
    ("i4", "int", "i4::text"),
    ("i8", "int", "i8::text"),
    ("f4", "float4", "f4::text"),
    ("f8", "float8", "f8::text"),
    ("num", "decimal", "num::text"),
    ("wide", "decimal_wide", "wide::text"),
    ("numu", "text", "numu::text"),
    ("b", "bool", "b::text"),
    ("t", "text", "t"),
    ("vc", "text", "vc::text"),
    ("ch", "text", "ch"),
    ("d", "date", "d::text"),
    ("ts", "timestamp", "ts::text"),
    (
        "tstz",
        "timestamptz",
        "(extract(epoch from tstz) * 1000000)::numeric(30,0)::text",
    ),
    ("u", "uuid", "u::text"),
    ("j", "json", "j::text"),
    ("jb", "json", "jb::text"),
    ("by", "bytea", "by::text"),
    ("ai", "array_int", "parquet_array_text(ai)"),
    ("at", "array_text", "parquet_array_text(at)"),
    ("an", "array_text", "parquet_array_text(an)"),
    ("iv", "text", "iv::text"),
    ("ip", "text", "ip::text"),
];

/// Writes what the reader compares with: the columns, their kinds and every row of
/// `table` in key order, each value as the source's text. A query's columns carry no
/// declared precision (`numeric(36,10)` is `numeric` to the driver): `query` compares the
/// DECIMAL columns as the text unconstrained numerics are written as.
async fn write_expected(db: &mut TestDb, table: &str, query: bool, path: &Path) -> usize {
    db.exec(
        "CREATE OR REPLACE FUNCTION parquet_array_text(anyarray) RETURNS text LANGUAGE sql AS
         $$ SELECT CASE WHEN $1 IS NULL THEN NULL
                   ELSE coalesce((SELECT json_agg(x::text) FROM unnest($1) AS x), '[]')::text END $$",
    )
    .await;
    db.exec("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'")
        .await;
    let exprs: Vec<&str> = EXPECTED.iter().map(|(_, _, e)| *e).collect();
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_array({}) ORDER BY id), '[]')::text FROM {table}",
        exprs.join(", ")
    );
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut db.conn)
        .await
        .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&row.get::<String, _>(0)).unwrap();
    let count = rows.as_array().unwrap().len();
    let doc = serde_json::json!({
        "columns": EXPECTED.iter().map(|(c, _, _)| *c).collect::<Vec<_>>(),
        "kinds": EXPECTED
            .iter()
            .map(|(_, k, _)| match *k {
                "decimal" | "decimal_wide" if query => "text",
                k => k,
            })
            .collect::<Vec<_>>(),
        "rows": rows,
    });
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
    count
}

#[tokio::test]
async fn parquet_reports_hold_every_value_of_the_source_for_pyarrow_and_duckdb() {
    let mut db = TestDb::new("parquet_exact").await;
    db.exec(PTYPED).await;
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    assert_eq!(
        write_expected(&mut db, "ptyped", false, &expected).await,
        300
    );
    let expected_query = work.path().join("expected-query.json");
    assert_eq!(
        write_expected(&mut db, "ptyped", true, &expected_query).await,
        300
    );
    let s3 = S3Server::start("reports");
    // (file, parquet.compression, query mode, in the bucket)
    for (file, compression, query, bucket) in [
        ("typed.parquet", None, false, false),
        ("query.parquet", Some("none"), true, false),
        ("exports/typed.parquet", Some("snappy"), false, true),
    ] {
        let mut spec = if query {
            SpecBuilder::query(&format!(
                "SELECT * FROM {} WHERE id > 0",
                db.table("ptyped")
            ))
        } else {
            SpecBuilder::table(&db.table("ptyped"))
        }
        .key("id")
        .chunk_size(40)
        .set("spec.output.format", "parquet")
        .set("spec.output.parquet.rowGroupRows", 16);
        if let Some(c) = compression {
            spec = spec.set("spec.output.parquet.compression", c);
        }
        let Exported {
            out,
            result,
            report: stored,
            manifest,
        } = export_to(&work, &s3, spec, file, bucket).await;
        // The columns without a mapping are named, in table mode (a query's interval and
        // inet columns are named alike).
        for column in ["iv", "ip"] {
            assert!(
                stderr(&out).contains(&format!("warning: column \"{column}\" of type")),
                "{file}: no warning for {column}: {}",
                stderr(&out)
            );
        }
        assert_eq!(result["rows"].as_u64().unwrap(), 300, "{result}");
        let chunks = result["chunks"]["total"].as_u64().unwrap();
        assert!(chunks >= 5, "{result}");
        assert_eq!(result["sha256"].as_str().unwrap(), sha256_hex(&stored));
        assert!(stored.starts_with(b"PAR1") && stored.ends_with(b"PAR1"));
        let path = work.path().join("report.parquet");
        std::fs::write(&path, &stored).unwrap();
        let printed = reader(
            "parquet_check.py",
            &[
                path.to_str().unwrap(),
                if query { &expected_query } else { &expected }
                    .to_str()
                    .unwrap(),
            ],
        );
        let mut lines = printed.lines();
        let pyarrow = lines.next().unwrap();
        let values = 300 * EXPECTED.len();
        assert!(
            pyarrow.starts_with(&format!("pyarrow rows=300 values={values} row_groups=")),
            "{file}: {printed}"
        );
        assert!(
            pyarrow.ends_with(" key_min=1 key_max=300"),
            "{file}: {printed}"
        );
        // Several row groups per chunk: at most 16 rows each, none spanning two chunks.
        let groups: u64 = pyarrow
            .split("row_groups=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            groups >= 300 / 16 && groups > chunks,
            "{file}: {groups} row groups"
        );
        assert_eq!(
            lines.next().unwrap(),
            format!("duckdb rows=300 values={values}"),
            "{file}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(manifest["rows"], 300);
        assert_eq!(manifest["bytes"].as_u64().unwrap(), stored.len() as u64);
        assert_eq!(manifest["compression"], compression.unwrap_or("zstd"));
        assert_eq!(manifest["parts"].as_array().unwrap().len() as u64, chunks);
    }
}

#[tokio::test]
async fn a_split_parquet_report_in_a_bucket_is_valid_files_each_fetched_by_its_own_link() {
    let mut db = TestDb::new("parquet_split").await;
    db.exec(PTYPED).await;
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    assert_eq!(
        write_expected(&mut db, "ptyped", false, &expected).await,
        300
    );
    let s3 = S3Server::start("reports");
    // Chunks of 1000 rows asked for, planned at most 100 (maxRows): one chunk per file.
    let spec = SpecBuilder::table(&db.table("ptyped"))
        .key("id")
        .chunk_size(1000)
        .set("spec.output.format", "parquet")
        .set("spec.output.split.maxRows", 100);
    // The run's link is the manifest's, which lists every file with its own link.
    let Exported {
        result,
        report: linked,
        manifest,
        ..
    } = export_to(&work, &s3, spec, "exports/typed.parquet", true).await;
    assert_eq!(linked, manifest, "the run's link fetches the manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let files = result["files"].as_array().expect("files").clone();
    assert_eq!(manifest["files"], serde_json::Value::Array(files.clone()));
    assert!(files.len() >= 3, "{result}");
    let client = reqwest::Client::new();
    let mut paths = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let key = format!("exports/typed-{:05}.parquet", i + 1);
        assert_eq!(file["location"], format!("s3://reports/{key}"));
        let rows = file["rows"].as_u64().unwrap();
        assert!(rows > 0 && rows <= 100, "{file}");
        let url = file["url"].as_str().expect("a link per file");
        assert!(url.contains(&key), "{url}");
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{key}");
        let stored = response.bytes().await.unwrap().to_vec();
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            sha256_hex(&stored),
            "{key}"
        );
        assert_eq!(file["bytes"].as_u64().unwrap(), stored.len() as u64);
        assert!(
            stored.starts_with(b"PAR1") && stored.ends_with(b"PAR1"),
            "{key}"
        );
        let path = work.path().join(format!("file-{i}.parquet"));
        std::fs::write(&path, &stored).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    // pyarrow opens each file on its own (its own footer) and DuckDB reads them as one
    // dataset: together every value of the source.
    let mut args = vec![paths[0].as_str(), expected.to_str().unwrap()];
    args.extend(paths[1..].iter().map(String::as_str));
    let printed = reader("parquet_check.py", &args);
    let values = 300 * EXPECTED.len();
    assert!(
        printed.contains(&format!("pyarrow rows=300 values={values} ")),
        "{printed}"
    );
    assert!(printed.contains(" key_min=1 key_max=300"), "{printed}");
    assert!(
        printed.contains(&format!("duckdb rows=300 values={values}")),
        "{printed}"
    );
    let rows: Vec<String> = files.iter().map(|f| f["rows"].to_string()).collect();
    assert!(
        printed.contains(&format!("files={} rows={}", files.len(), rows.join(","))),
        "{printed}"
    );
}

#[tokio::test]
async fn infinite_dates_are_refused_naming_the_column_and_the_row_and_nothing_is_published() {
    let mut db = TestDb::new("parquet_infinity").await;
    db.exec(
        "CREATE TABLE src (id integer PRIMARY KEY, d date, ts timestamptz);
         INSERT INTO src SELECT g, date '2024-01-01' + g, timestamptz '2024-01-01 00:00+00'
           FROM generate_series(1, 100) AS g;
         UPDATE src SET d = 'infinity' WHERE id = 42;
         UPDATE src SET ts = '-infinity' WHERE id = 77;",
    )
    .await;
    let work = Workdir::new();
    for (column, id, what) in [("d", 42, "infinity"), ("ts", 77, "-infinity")] {
        let spec = SpecBuilder::table(&db.table("src"))
            .key("id")
            .chunk_size(30)
            .set("spec.output.format", "parquet")
            .set("spec.source.columns", serde_json::json!(["id", column]))
            .pvc("reports", "r.parquet");
        let path = work.spec("spec.yaml", &spec.build_yaml());
        let out = work.reportjob(&["run", "-f", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let message = stderr(&out);
        assert!(
            message.contains(&format!(
                "column \"{column}\", the row whose id is {id}: the "
            )) && message.contains(&format!("is {what}, which a Parquet")),
            "{message}"
        );
        assert!(!work.output_dir().join("r.parquet").exists());
    }
}

#[tokio::test]
async fn options_that_parquet_does_not_take_are_refused_by_name() {
    let mut db = TestDb::new("parquet_refusals").await;
    db.numbers(20).await;
    let work = Workdir::new();
    let base = || {
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("reports", "r.parquet")
    };
    let cases = [
        (
            base()
                .set("spec.output.format", "parquet")
                .set("spec.output.csv.bom", true),
            "spec.output.csv.bom: only for format csv",
        ),
        (
            base()
                .set("spec.output.format", "parquet")
                .compression("gzip"),
            "spec.output.compression: only for formats csv and jsonl",
        ),
        (
            base()
                .set("spec.output.format", "parquet")
                .compression("zstd"),
            "spec.output.compression: only for formats csv and jsonl",
        ),
        (
            base()
                .set("spec.output.format", "parquet")
                .set("spec.output.jsonl.numericAsNumber", true),
            "spec.output.jsonl: only for format jsonl",
        ),
        (
            base().set("spec.output.parquet.rowGroupRows", 100),
            "spec.output.parquet: only for format parquet",
        ),
        (
            base()
                .set("spec.output.format", "parquet")
                .set("spec.output.parquet.rowGroupRows", 0),
            "spec.output.parquet.rowGroupRows: must be between 1 and 16777216, got 0",
        ),
        (
            base()
                .set("spec.output.format", "parquet")
                .set("spec.output.parquet.compression", "lz4"),
            "spec.output.parquet.compression",
        ),
    ];
    assert_refused_before_writing(&work, cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_report_from_stage_pods_is_exact_and_stream_compression_is_refused_at_admission() {
    use common::testbed::{Env, output_file, report};
    use kube::api::PostParams;
    use reportjob::api::{Phase, ReportJob};

    let mut db = TestDb::new("parquet_cluster").await;
    db.exec(PTYPED).await;
    let mut env = Env::start().await;
    let ns = env.tenant("parquet").await;
    env.start_single_controller();

    // gzip around Parquet never gets in.
    let mixed = report("mixed", &db.table("ptyped"), "mixed.parquet")
        .set("spec.output.format", "parquet")
        .set("spec.output.compression", "gzip")
        .build();
    let mixed: ReportJob = serde_json::from_value(mixed).unwrap();
    let refused = env.rjs(ns).create(&PostParams::default(), &mixed).await;
    let message = format!("{:?}", refused.expect_err("refused at admission"));
    assert!(
        message.contains(reportjob::api::schema::PARQUET_COMPRESSION),
        "{message}"
    );

    // Plan, chunk and assemble pods, each its own process.
    let path = "exports/typed.parquet";
    let rj = report("typed", &db.table("ptyped"), path)
        .chunk_size(40)
        .set("spec.output.format", "parquet")
        .set("spec.output.parquet.rowGroupRows", 16)
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
    assert_eq!(output.sha256, sha256_hex(&stored));

    let file = env.dir.path().join("typed.parquet");
    std::fs::write(&file, &stored).unwrap();
    let expected = env.dir.path().join("expected.json");
    write_expected(&mut db, "ptyped", false, &expected).await;
    let printed = reader(
        "parquet_check.py",
        &[file.to_str().unwrap(), expected.to_str().unwrap()],
    );
    let values = 300 * EXPECTED.len();
    assert!(
        printed.starts_with(&format!("pyarrow rows=300 values={values} row_groups=")),
        "{printed}"
    );
    assert!(
        printed.ends_with(&format!("duckdb rows=300 values={values}\n")),
        "{printed}"
    );
}
