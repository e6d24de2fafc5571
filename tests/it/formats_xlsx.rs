//! `output.format: xlsx` end to end with `reportjob run` against the real Postgres: the
//! workbook read back by openpyxl and compared cell by cell (type and value) with the source
//! (integers around 10^15, floats with -0, NaN and infinities, big and small numerics,
//! booleans, unicode and empty text, NULLs, dates before 1900 and 1970 and after 2038,
//! timestamps, timestamptz, uuid, json), in several chunks, on a volume and in a bucket
//! (fetched through its presigned link); a 40 KB cell refused naming its key with nothing
//! published, or truncated when asked; workbooks of many parts and sheets read back by
//! openpyxl and by LibreOffice; damaged and forged parts refused at assembly; specs
//! that mix xlsx with other formats' options refused by name; and in a cluster (the real control plane,
//! the real binary as stage pods, the assemble pod writing the workbook in its `/tmp`
//! emptyDir), with compression refused at admission.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::Path;

use crate::common;
use crate::formats::{Exported, assert_refused_before_writing, export_to, reader};
use common::sha256_hex;

use common::s3::S3Server;
use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};

/// Every type the workbook maps, with the values spreadsheets get wrong.
pub const TYPED: &str = r#"
CREATE TABLE xl (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real,
    f8 double precision, num numeric(36,10), numu numeric, b boolean, t text, vc varchar(20),
    d date, ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb);
INSERT INTO xl
SELECT g,
       CASE WHEN g % 11 = 0 THEN NULL WHEN g = 1 THEN -32768 ELSE g % 200 - 100 END,
       CASE WHEN g % 5 = 0 THEN 2147483647 ELSE -g * 1000 END,
       (ARRAY[9223372036854775807, -9223372036854775808, NULL, 999999999999999,
              -999999999999999, 1000000000000000, g * 1234567])[1 + g % 7],
       (ARRAY['1.1', '-0', 'Infinity', '-Infinity', 'NaN', '3.4028235e38', '1e-45', NULL])[1 + g % 8]::real,
       (ARRAY['0.1', '-0', 'Infinity', '-Infinity', 'NaN', '1.7976931348623157e308', '5e-324',
              '123456789.123456789', NULL, '2.5'])[1 + g % 10]::float8,
       (ARRAY['12345678901234567890123456.1234567890', '-0.0000000001', '0', NULL, '1.5',
              '99999.99'])[1 + g % 6]::numeric(36,10),
       (ARRAY['NaN', '123456789012345678901234567890.123456789012345678901', '-1e-30', 'Infinity',
              NULL, '7', '-Infinity', '0.1234567890123456', '123456789012345'])[1 + g % 9]::numeric,
       CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       (ARRAY['', 'naïve café — 東京 🚀', E'line\nbreak\ttab', E'back\\slash "quoted"', NULL,
              '=1+1', '  spaced  ', '0123', repeat('y', 32767), E'cr\r\nlf\x01ctl _x0041_'])[1 + g % 10],
       left(md5(g::text), g % 21)::varchar(20),
       (ARRAY['1899-12-31', '1969-12-31', '1970-01-01', '2038-01-19', '2100-02-28', '9999-12-31',
              NULL, 'infinity', '1900-01-15', '1900-03-01', '0044-03-15 BC'])[1 + g % 11]::date,
       CASE WHEN g % 13 = 0 THEN NULL WHEN g % 29 = 0 THEN 'infinity'
            ELSE timestamp '1850-01-01 00:00:00.000001' + g * interval '330 days 7 hours 0.5123 seconds' END,
       CASE WHEN g % 17 = 0 THEN NULL WHEN g % 31 = 0 THEN '-infinity'
            ELSE timestamptz '1950-06-30 12:34:56.789+00' + g * interval '331 days 0.25 seconds' END,
       md5(g::text)::uuid,
       (ARRAY[E'{"b": 1,\n  "a": [1, 2.50, "x"]}', '[]', 'null', '"s"', NULL,
              '{"big": 123456789012345678901234567890}'])[1 + g % 6]::json,
       (ARRAY['{"z": -0.0, "a": {"k": [true, null]}}', '{}', NULL, '"\u00e9"'])[1 + g % 4]::jsonb
  FROM generate_series(1, 300) AS g;
"#;

/// Columns of `xl` with the kind the reader compares them as, and the source's text form
/// of each value (timestamptz in UTC, without its offset).
pub const EXPECTED: &[(&str, &str, &str)] = &[
    ("id", "int", "id::text"),
    ("i2", "int", "i2::text"),
    ("i4", "int", "i4::text"),
    ("i8", "int", "i8::text"),
    ("f4", "float", "f4::text"),
    ("f8", "float", "f8::text"),
    ("num", "numeric", "num::text"),
    ("numu", "numeric", "numu::text"),
    ("b", "bool", "b::text"),
    ("t", "text", "t"),
    ("vc", "text", "vc::text"),
    ("d", "date", "d::text"),
    ("ts", "timestamp", "ts::text"),
    ("tstz", "timestamp", "(tstz AT TIME ZONE 'UTC')::text"),
    ("u", "text", "u::text"),
    ("j", "text", "j::text"),
    ("jb", "text", "jb::text"),
];

/// Writes what the reader compares with: columns, kinds and every row of `table` in key
/// order, each value as the source's text.
pub async fn write_expected(
    db: &mut TestDb,
    table: &str,
    expected: &[(&str, &str, &str)],
    path: &Path,
) -> usize {
    let exprs: Vec<&str> = expected.iter().map(|(_, _, e)| *e).collect();
    db.exec("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 1")
        .await;
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
        "columns": expected.iter().map(|(c, _, _)| *c).collect::<Vec<_>>(),
        "kinds": expected.iter().map(|(_, k, _)| *k).collect::<Vec<_>>(),
        "rows": rows,
    });
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
    count
}

/// `sheet_rows` as the readers take it: comma-separated.
fn listed(sheet_rows: &[u64]) -> String {
    sheet_rows
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs openpyxl over `book` (written into `dir`), whose sheets hold `sheet_rows` data rows,
/// and returns what it printed.
pub fn check_book(
    dir: &Path,
    book: &[u8],
    expected: &Path,
    sheet: &str,
    sheet_rows: &[u64],
    truncate: bool,
) -> String {
    let path = dir.join("check.xlsx");
    std::fs::write(&path, book).unwrap();
    reader(
        "xlsx_check.py",
        &[
            path.to_str().unwrap(),
            expected.to_str().unwrap(),
            sheet,
            &listed(sheet_rows),
            if truncate { "1" } else { "0" },
        ],
    )
    .trim()
    .to_string()
}

/// Runs LibreOffice's converter over `book` (written into `dir`) through
/// `xlsx_soffice_check.py` and returns what it printed.
pub fn check_book_in_libreoffice(
    dir: &Path,
    book: &[u8],
    expected: &Path,
    sheet: &str,
    sheet_rows: &[u64],
) -> String {
    let path = dir.join("check-libreoffice.xlsx");
    std::fs::write(&path, book).unwrap();
    // `ensure_libreoffice` in scripts/tools.sh installs it and sets REPORTJOB_SOFFICE.
    let soffice = std::env::var("REPORTJOB_SOFFICE").unwrap_or_else(|_| "soffice".into());
    reader(
        "xlsx_soffice_check.py",
        &[
            &soffice,
            path.to_str().unwrap(),
            expected.to_str().unwrap(),
            sheet,
            &listed(sheet_rows),
        ],
    )
    .trim()
    .to_string()
}

/// The data rows of each sheet when parts of `part_rows` rows (in key order) fill sheets of
/// at most `per_sheet` rows, whole parts each (a part over `per_sheet` rows spans sheets of
/// `per_sheet` rows and its rest): worked out here on its own, not by the code under test.
pub fn sheets_of(part_rows: &[u64], per_sheet: u64) -> Vec<u64> {
    let mut sheets: Vec<u64> = Vec::new();
    let mut open: Option<u64> = None;
    for &rows in part_rows {
        let mut left = rows;
        while left > 0 {
            let piece = left.min(per_sheet);
            open = match open {
                Some(n) if n + piece <= per_sheet => Some(n + piece),
                Some(n) => {
                    sheets.push(n);
                    Some(piece)
                }
                None => Some(piece),
            };
            left -= piece;
        }
    }
    sheets.extend(open);
    if sheets.is_empty() {
        sheets.push(0);
    }
    sheets
}

/// The rows of each part a report's manifest lists, in key order.
pub fn part_rows(manifest: &serde_json::Value) -> Vec<u64> {
    manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn xlsx_workbooks_hold_every_value_of_the_source() {
    let mut db = TestDb::new("xlsx_exact").await;
    db.exec(TYPED).await;
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    let table = db.table("xl");
    let source_rows = write_expected(&mut db, &table, EXPECTED, &expected).await;
    assert_eq!(source_rows, 300);
    let s3 = S3Server::start("reports");
    for (file, bucket) in [("typed.xlsx", false), ("exports/typed.xlsx", true)] {
        let spec = SpecBuilder::table(&db.table("xl"))
            .key("id")
            .chunk_size(40)
            .set("spec.output.format", "xlsx");
        let Exported {
            result,
            report: stored,
            manifest,
            ..
        } = export_to(&work, &s3, spec, file, bucket).await;
        assert_eq!(result["rows"].as_u64().unwrap(), 300, "{result}");
        assert!(result["chunks"]["total"].as_u64().unwrap() >= 5, "{result}");
        assert!(stored.starts_with(b"PK\x03\x04"), "{file}: a zip archive");
        assert_eq!(result["sha256"].as_str().unwrap(), sha256_hex(&stored));
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(manifest["rows"], 300);
        assert_eq!(manifest["bytes"], stored.len() as u64);
        assert_eq!(manifest["sha256"].as_str().unwrap(), sha256_hex(&stored));
        assert_eq!(manifest["compression"], "none");
        assert_eq!(
            check_book(work.path(), &stored, &expected, "typed", &[300], false),
            format!("sheets=1 rows=300 values={}", 300 * EXPECTED.len()),
            "{file}"
        );
        if !bucket {
            // Nothing of the run is left beside the report.
            let left: Vec<_> = std::fs::read_dir(work.output_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            let mut left = left;
            left.sort();
            assert_eq!(left, ["typed.xlsx", "typed.xlsx.manifest.json"]);
        }
    }
}

/// A split xlsx report: each file is a workbook of its own (sheet named after it, bold
/// header), and openpyxl finds in each exactly its slice of the source, in key order.
#[tokio::test]
async fn a_split_xlsx_report_is_workbooks_each_holding_its_slice_of_the_source() {
    let mut db = TestDb::new("xlsx_split").await;
    db.exec(TYPED).await;
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    let table = db.table("xl");
    assert_eq!(
        write_expected(&mut db, &table, EXPECTED, &expected).await,
        300
    );
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
    let s3 = S3Server::start("reports");
    let spec = SpecBuilder::table(&table)
        .key("id")
        .chunk_size(40)
        .set("spec.output.format", "xlsx")
        .set("spec.output.split.maxRows", 120);
    let Exported { result, .. } = export_to(&work, &s3, spec, "typed.xlsx", false).await;
    let files = result["files"].as_array().expect("files");
    assert!(files.len() >= 3, "{result}");
    let mut first = 0;
    for (i, file) in files.iter().enumerate() {
        let name = format!("typed-{:05}.xlsx", i + 1);
        let book = std::fs::read(work.output_dir().join(&name)).unwrap();
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            sha256_hex(&book),
            "{name}"
        );
        let rows = file["rows"].as_u64().unwrap() as usize;
        assert!(rows > 0 && rows <= 120, "{name}: {rows}");
        // This file's slice of the expected rows.
        let mut slice = all.clone();
        slice["rows"] =
            serde_json::Value::Array(all["rows"].as_array().unwrap()[first..first + rows].to_vec());
        first += rows;
        let part = work.path().join(format!("expected-{i}.json"));
        std::fs::write(&part, serde_json::to_vec(&slice).unwrap()).unwrap();
        assert_eq!(
            check_book(work.path(), &book, &part, "typed", &[rows as u64], false),
            format!("sheets=1 rows={rows} values={}", rows * EXPECTED.len()),
            "{name}"
        );
    }
    assert_eq!(first, 300);
}

/// A table whose row 7 holds 40 KB of text.
const LONG: &str = r#"
CREATE TABLE long (id integer PRIMARY KEY, note text);
INSERT INTO long
SELECT g, CASE WHEN g = 7 THEN repeat('é', 40960) ELSE 'row ' || g END
  FROM generate_series(1, 50) AS g;
"#;

#[tokio::test]
async fn a_40kb_cell_is_refused_naming_its_key_or_truncated_when_asked() {
    let mut db = TestDb::new("xlsx_long").await;
    db.exec(LONG).await;
    let work = Workdir::new();
    let run = |truncate: bool| {
        let mut spec = SpecBuilder::table(&db.table("long"))
            .key("id")
            .chunk_size(10)
            .set("spec.output.format", "xlsx")
            .pvc("reports", "long.xlsx");
        if truncate {
            spec = spec.set("spec.output.xlsx.truncateLongText", true);
        }
        let spec = work.spec("spec.yaml", &spec.build_yaml());
        work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"])
    };
    let out = run(false);
    assert!(!out.status.success(), "a 40 KB cell must fail the report");
    let message = stderr(&out);
    assert!(
        message.contains("column \"note\" of the row with id = 7 holds 40960 characters")
            && message.contains("truncateLongText"),
        "{message}"
    );
    assert!(
        !work.output_dir().join("long.xlsx").exists(),
        "nothing published"
    );
    assert!(
        !work.output_dir().join("long.xlsx.manifest.json").exists(),
        "no manifest"
    );

    let out = run(true);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 50);
    let expected = work.path().join("expected.json");
    let columns = [("id", "int", "id::text"), ("note", "text", "note")];
    let table = db.table("long");
    write_expected(&mut db, &table, &columns, &expected).await;
    let book = std::fs::read(work.output_dir().join("long.xlsx")).unwrap();
    assert_eq!(
        check_book(work.path(), &book, &expected, "long", &[50], true),
        "sheets=1 rows=50 values=100"
    );
}

/// Workbooks of several parts and several sheets: parts of 40 rows filling sheets of at most
/// 100 (the test-only limit), and parts of 130 rows each spanning two sheets, read back
/// exact by openpyxl and by LibreOffice, every sheet opening with the header.
#[tokio::test]
async fn workbooks_of_many_parts_and_sheets_read_back_exact_in_openpyxl_and_libreoffice() {
    let mut db = TestDb::new("xlsx_sheets").await;
    db.exec(TYPED).await;
    let table = db.table("xl");
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    assert_eq!(
        write_expected(&mut db, &table, EXPECTED, &expected).await,
        300
    );
    for (chunk_size, at_least) in [(40, 3), (130, 4)] {
        let spec = SpecBuilder::table(&table)
            .key("id")
            .chunk_size(chunk_size)
            .set("spec.output.format", "xlsx")
            .set("spec.output.xlsx.sheetName", "Orders 2024")
            .pvc("reports", "typed.xlsx");
        let spec = work.spec("spec.yaml", &spec.build_yaml());
        let out = work.reportjob_with(
            &[
                "run",
                "-f",
                spec.to_str().unwrap(),
                "--json",
                "--parallelism",
                "3",
            ],
            &[("REPORTJOB_XLSX_ROWS_PER_SHEET", "100")],
        );
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        assert_eq!(run_json(&out)["rows"], 300);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(work.output_dir().join("typed.xlsx.manifest.json")).unwrap(),
        )
        .unwrap();
        let parts = part_rows(&manifest);
        assert!(parts.len() >= 3, "{parts:?}");
        if chunk_size > 100 {
            assert!(
                parts.iter().any(|&r| r > 100),
                "a part spans sheets: {parts:?}"
            );
        }
        let sheets = sheets_of(&parts, 100);
        assert!(sheets.len() >= at_least, "{sheets:?} from {parts:?}");
        assert!(sheets.iter().all(|&n| n <= 100), "{sheets:?}");
        let book = std::fs::read(work.output_dir().join("typed.xlsx")).unwrap();
        let want = format!(
            "sheets={} rows=300 values={}",
            sheets.len(),
            300 * EXPECTED.len()
        );
        assert_eq!(
            check_book(work.path(), &book, &expected, "Orders 2024", &sheets, false),
            want,
            "openpyxl, parts {parts:?}"
        );
        assert_eq!(
            check_book_in_libreoffice(work.path(), &book, &expected, "Orders 2024", &sheets),
            want,
            "LibreOffice, parts {parts:?}"
        );
    }
}

#[test]
fn sheets_are_filled_with_whole_parts_in_order() {
    assert_eq!(sheets_of(&[40, 40, 40, 40], 100), [80, 80]);
    assert_eq!(sheets_of(&[130, 130, 40], 100), [100, 30, 100, 70]);
    assert_eq!(sheets_of(&[0, 100, 1], 100), [100, 1]);
    assert_eq!(sheets_of(&[], 100), [0]);
}

/// The staging directory of the only run under `output_dir` for `report`.
fn run_dir(output_dir: &Path, report: &str) -> std::path::PathBuf {
    std::fs::read_dir(output_dir.join(format!("{report}.parts")))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// A workbook part changed after its export (a flipped byte, the same size), or whose
/// manifest's segments no longer add up, is refused at assembly by name, removed with its
/// manifest, and exported again by the next run, which is then exact.
#[tokio::test]
async fn a_damaged_or_forged_workbook_part_is_refused_at_assembly_and_exported_again() {
    let mut db = TestDb::new("xlsx_damaged").await;
    db.exec(TYPED).await;
    let table = db.table("xl");
    let work = Workdir::new();
    let spec = SpecBuilder::table(&table)
        .key("id")
        .chunk_size(100)
        .set("spec.output.format", "xlsx")
        .set("spec.source.consistency", "PerChunk")
        .pvc("reports", "typed.xlsx");
    let spec = work.spec("spec.yaml", &spec.build_yaml());
    let spec = spec.to_str().unwrap();
    let planned = work.reportjob(&["plan", "-f", spec, "--write"]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    for index in 0..3 {
        let out = work.reportjob(&["worker", "-f", spec, "--index", &index.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let dir = run_dir(&work.output_dir(), "typed.xlsx");
    let manifest_path = dir.join("part-00002.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let segments = manifest["sheet_segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "{manifest}");
    assert_eq!(segments[0]["rows"], manifest["rows"]);
    assert_eq!(segments[0]["bytes"], manifest["bytes"]);

    // A flipped byte inside part 1's deflated rows.
    let part = dir.join("part-00001.xml.deflate");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();
    // Part 2's manifest claims a row its segment does not hold.
    let mut forged = manifest.clone();
    forged["sheet_segments"][0]["rows"] = serde_json::json!(manifest["rows"].as_u64().unwrap() + 1);
    std::fs::write(&manifest_path, serde_json::to_vec(&forged).unwrap()).unwrap();

    let out = work.reportjob(&["assemble", "-f", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let message = stderr(&out);
    for needle in [
        "the part of chunk 2 is not a workbook part: its segments hold",
        "damaged_chunks=1-2:",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(
        !work.output_dir().join("typed.xlsx").exists(),
        "nothing published"
    );
    for removed in [
        "part-00001.xml.deflate",
        "part-00001.json",
        "part-00002.json",
    ] {
        assert!(!dir.join(removed).exists(), "{removed} is removed");
    }

    let out = work.reportjob(&["run", "-f", spec, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_json(&out)["chunks"]["resumed"],
        1,
        "parts 1 and 2 exported again"
    );
    let expected = work.path().join("expected.json");
    write_expected(&mut db, &table, EXPECTED, &expected).await;
    let book = std::fs::read(work.output_dir().join("typed.xlsx")).unwrap();
    assert_eq!(
        check_book(work.path(), &book, &expected, "typed", &[300], false),
        format!("sheets=1 rows=300 values={}", 300 * EXPECTED.len())
    );
}

#[tokio::test]
async fn xlsx_specs_with_other_formats_options_are_refused_before_anything_is_written() {
    let mut db = TestDb::new("xlsx_refusals").await;
    db.numbers(20).await;
    let work = Workdir::new();
    let base = || {
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("reports", "r.xlsx")
    };
    let xlsx = || base().set("spec.output.format", "xlsx");
    let cases = [
        (
            xlsx().set("spec.output.csv.bom", true),
            "spec.output.csv.bom: only for format csv",
        ),
        (
            xlsx().set("spec.output.jsonl.numericAsNumber", true),
            "spec.output.jsonl: only for format jsonl",
        ),
        (
            xlsx().set("spec.output.compression", "gzip"),
            "spec.output.compression: only none for format xlsx",
        ),
        (
            xlsx().set("spec.output.compression", "zstd"),
            "spec.output.compression: only none for format xlsx",
        ),
        (
            xlsx().set("spec.output.timeZone", "Europe/Paris"),
            "spec.output.timeZone: only UTC for format xlsx",
        ),
        (
            base().set("spec.output.xlsx.truncateLongText", true),
            "spec.output.xlsx: only for format xlsx",
        ),
        (
            xlsx().set("spec.output.xlsx.sheetName", "a/b"),
            "spec.output.xlsx.sheetName",
        ),
        (
            xlsx().set("spec.output.xlsx.sheetName", "x".repeat(32)),
            "spec.output.xlsx.sheetName",
        ),
    ];
    assert_refused_before_writing(&work, cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_report_from_stage_pods_is_exact_and_compression_is_refused_at_admission() {
    use common::testbed::{Env, output_file, report};
    use kube::api::PostParams;
    use reportjob::api::{Phase, ReportJob};

    let mut db = TestDb::new("xlsx_cluster").await;
    db.exec(TYPED).await;
    let table = db.table("xl");
    let mut env = Env::start().await;
    let ns = env.tenant("workbooks").await;
    env.start_single_controller();

    let zipped = report("zipped", &table, "zipped.xlsx")
        .set("spec.output.format", "xlsx")
        .set("spec.output.compression", "gzip")
        .build();
    let zipped: ReportJob = serde_json::from_value(zipped).unwrap();
    let refused = env.rjs(ns).create(&PostParams::default(), &zipped).await;
    let message = format!("{:?}", refused.expect_err("refused at admission"));
    assert!(
        message.contains(reportjob::api::schema::XLSX_COMPRESSION),
        "{message}"
    );

    let path = "exports/typed.xlsx";
    let rj = report("typed", &table, path)
        .chunk_size(40)
        .set("spec.output.format", "xlsx")
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
    let expected = env.dir.path().join("expected.json");
    write_expected(&mut db, &table, EXPECTED, &expected).await;
    assert_eq!(
        check_book(env.dir.path(), &stored, &expected, "typed", &[300], false),
        format!("sheets=1 rows=300 values={}", 300 * EXPECTED.len())
    );
}
