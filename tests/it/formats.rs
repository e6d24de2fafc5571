//! Formats beside plain CSV, end to end with `reportjob run` against the real Postgres: JSON
//! Lines read back by Python's json module and compared value by value with the source
//! (every mapped type, NULLs, empty strings, unicode, big numerics, negative zero,
//! infinities, dates before 1970 and after 2038, a 50 KB text), plain and zstd, from a table
//! and from a query, on a volume and in a bucket (fetched through its presigned link); Excel-style
//! CSV (BOM once, CRLF records) read by Python's csv module and loaded back exactly; specs
//! that mix formats' options refused by name with nothing written.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::io::Read;
use std::path::Path;

use crate::common;
use common::sha256_hex;

use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};

/// The Python the readers run under (`ensure_python_readers` in scripts/tools.sh sets it).
pub fn python() -> String {
    std::env::var("REPORTJOB_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs a reader script of tests/readers and returns what it printed (it must succeed).
pub fn reader(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/readers")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} found differences:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What one `reportjob run --json --parallelism 3` wrote: its output, its `--json` result,
/// and the report and manifest as stored.
pub struct Exported {
    pub out: std::process::Output,
    pub result: serde_json::Value,
    pub report: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// Runs `spec` into `file`: on the volume, or in the `reports` bucket of `s3` when `bucket`,
/// the report then fetched through its presigned link with a plain HTTP client (for a split
/// report, its manifest). The run must succeed.
pub async fn export_to(
    work: &Workdir,
    s3: &S3Server,
    spec: SpecBuilder,
    file: &str,
    bucket: bool,
) -> Exported {
    let spec = if bucket {
        spec.bucket(&format!("s3://reports/{file}"))
            .bucket_field("endpoint", s3.endpoint())
            .bucket_field("region", "us-east-1")
    } else {
        spec.pvc("reports", file)
    };
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
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    );
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let result = run_json(&out);
    let manifest_key = format!("{file}.manifest.json");
    let (report, manifest) = if bucket {
        let url = result["url"].as_str().expect("a signed link");
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let manifest = std::fs::read(s3.object_path("reports", &manifest_key)).unwrap();
        (response.bytes().await.unwrap().to_vec(), manifest)
    } else {
        let dir = work.output_dir();
        // A split report is its manifest, as its link is in a bucket.
        let split = result.get("files").is_some_and(|f| !f.is_null());
        (
            std::fs::read(dir.join(if split { &manifest_key } else { file })).unwrap(),
            std::fs::read(dir.join(&manifest_key)).unwrap(),
        )
    };
    Exported {
        out,
        result,
        report,
        manifest,
    }
}

/// Each spec is refused by `reportjob run` with exit code 3 and its message on stderr, and
/// nothing is written.
pub fn assert_refused_before_writing<'a>(
    work: &Workdir,
    cases: impl IntoIterator<Item = (SpecBuilder, &'a str)>,
) {
    for (spec, message) in cases {
        let path = work.spec("spec.yaml", &spec.build_yaml());
        let out = work.reportjob(&["run", "-f", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{message}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "expected {message:?} in: {}",
            stderr(&out)
        );
        assert!(!work.output_dir().exists(), "{message}: nothing written");
    }
}

pub fn unzstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every column type JSON Lines maps, with the values formats get wrong.
pub const TYPED: &str = r#"
CREATE TABLE typed (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real,
    f8 double precision, num numeric(36,10), numu numeric, b boolean, t text, vc varchar(20),
    d date, ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb, by bytea, ai integer[],
    at text[], an numeric[]);
INSERT INTO typed
SELECT g,
       CASE WHEN g % 11 = 0 THEN NULL WHEN g = 1 THEN -32768 ELSE g % 200 - 100 END,
       CASE WHEN g % 5 = 0 THEN 2147483647 ELSE -g * 1000 END,
       CASE g % 5 WHEN 0 THEN 9223372036854775807 WHEN 1 THEN -9223372036854775808
                  WHEN 2 THEN NULL ELSE g * 1234567890123 END,
       (ARRAY['1.1', '-0', 'Infinity', '-Infinity', 'NaN', '3.4028235e38', '1e-45', NULL])[1 + g % 8]::real,
       (ARRAY['0.1', '-0', 'Infinity', '-Infinity', 'NaN', '1.7976931348623157e308', '5e-324',
              '123456789.123456789', NULL])[1 + g % 9]::float8,
       (ARRAY['12345678901234567890123456.1234567890', '-0.0000000001', '0', NULL, '1.5'])[1 + g % 5]::numeric(36,10),
       (ARRAY['NaN', '123456789012345678901234567890.123456789012345678901', '-1e-30', 'Infinity',
              NULL, '7', '-Infinity'])[1 + g % 7]::numeric,
       CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       (ARRAY['', 'naïve café — 東京 🚀', E'line\nbreak\ttab\r', E'back\\slash "quoted"', NULL,
              E'ctl\x01char', repeat('x', 51200)])[1 + g % 7],
       left(md5(g::text), g % 21)::varchar(20),
       (ARRAY['1901-12-13', '1969-12-31', '1970-01-01', '2038-01-19', '2100-02-28', '9999-12-31',
              NULL, 'infinity'])[1 + g % 8]::date,
       CASE WHEN g % 13 = 0 THEN NULL
            ELSE timestamp '1950-01-01 00:00:00.000001' + g * interval '330 days 7 hours 0.5 seconds' END,
       CASE WHEN g % 17 = 0 THEN NULL
            ELSE timestamptz '1950-06-30 12:34:56.789+00' + g * interval '331 days 0.25 seconds' END,
       md5(g::text)::uuid,
       (ARRAY[E'{"b": 1,\n  "a": [1, 2.50, "x"]}', '[]', 'null', '"s"', NULL,
              '{"big": 123456789012345678901234567890}'])[1 + g % 6]::json,
       (ARRAY['{"z": -0.0, "a": {"k": [true, null]}}', '{}', NULL, '"\u00e9"', '1e400'])[1 + g % 5]::jsonb,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea ELSE decode(md5(g::text), 'hex') END,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN ARRAY[]::int[] ELSE ARRAY[g, -g, NULL] END,
       CASE g % 3 WHEN 0 THEN NULL ELSE ARRAY['a,b', 'q"uote', NULL, 'é', ''] END,
       CASE g % 3 WHEN 0 THEN NULL ELSE ARRAY[g / 3.0, 1e20, NULL, 'NaN'] END
  FROM generate_series(1, 300) AS g;
"#;

/// Columns of `typed` with the kind the reader compares them as, and the source's text
/// form of each value (timestamptz as microseconds since the epoch; arrays as JSON arrays of
/// the elements' text).
pub const EXPECTED: &[(&str, &str, &str)] = &[
    ("id", "int", "id::text"),
    ("i2", "int", "i2::text"),
    ("i4", "int", "i4::text"),
    ("i8", "int", "i8::text"),
    ("f4", "float4", "f4::text"),
    ("f8", "float8", "f8::text"),
    ("num", "numeric", "num::text"),
    ("numu", "numeric", "numu::text"),
    ("b", "bool", "b::text"),
    ("t", "text", "t"),
    ("vc", "text", "vc::text"),
    ("d", "text", "d::text"),
    ("ts", "timestamp", "ts::text"),
    (
        "tstz",
        "timestamptz",
        "(extract(epoch from tstz) * 1000000)::numeric(30,0)::text",
    ),
    ("u", "text", "u::text"),
    ("j", "json", "j::text"),
    ("jb", "json", "jb::text"),
    ("by", "text", "by::text"),
    ("ai", "array_int", "array_text(ai)"),
    ("at", "array_text", "array_text(at)"),
    ("an", "array_numeric", "array_text(an)"),
];

/// Writes what the reader compares with: the columns, their kinds and every row of `typed`
/// in key order, each value as the source's text.
pub async fn write_expected(db: &mut TestDb, path: &Path) -> usize {
    db.exec(
        "CREATE FUNCTION array_text(anyarray) RETURNS text LANGUAGE sql AS
         $$ SELECT CASE WHEN $1 IS NULL THEN NULL
                   ELSE coalesce((SELECT json_agg(x::text) FROM unnest($1) AS x), '[]')::text END $$",
    )
    .await;
    let exprs: Vec<&str> = EXPECTED.iter().map(|(_, _, e)| *e).collect();
    // `exec` sets the session's search path; the output settings follow.
    db.exec("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'")
        .await;
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_array({}) ORDER BY id), '[]')::text FROM typed",
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
        "kinds": EXPECTED.iter().map(|(_, k, _)| *k).collect::<Vec<_>>(),
        "rows": rows,
    });
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
    count
}

/// The rows of `typed` as Postgres's `row_to_json` writes them under the export session's
/// settings (`numeric` columns as text unless `numbers`), one per line, the line breaks and
/// tabs between an embedded json value's tokens written as spaces.
async fn row_to_json_lines(db: &mut TestDb, numbers: bool) -> Vec<u8> {
    db.exec(
        "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 1; SET bytea_output = 'hex'; SET TimeZone = 'Asia/Kolkata'",
    )
    .await;
    let numeric = if numbers { "" } else { "::text" };
    let columns: Vec<String> = EXPECTED
        .iter()
        .map(|(c, _, _)| match *c {
            "num" | "numu" => format!("{c}{numeric} AS {c}"),
            "an" if !numbers => "an::text[] AS an".to_string(),
            other => other.to_string(),
        })
        .collect();
    let sql = format!(
        "SELECT string_agg(translate(row_to_json(r)::text, E'\\n\\r\\t', '   '), E'\\n' ORDER BY r.id) || E'\\n' \
         FROM (SELECT {} FROM typed) AS r",
        columns.join(", ")
    );
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut db.conn)
        .await
        .unwrap();
    row.get::<String, _>(0).into_bytes()
}

#[tokio::test]
async fn jsonl_reports_hold_every_value_of_the_source() {
    let mut db = TestDb::new("jsonl_exact").await;
    db.exec(TYPED).await;
    let work = Workdir::new();
    let expected = work.path().join("expected.json");
    let source_rows = write_expected(&mut db, &expected).await;
    assert_eq!(source_rows, 300);
    let s3 = S3Server::start("reports");
    // (file, compression, numericAsNumber, query mode, in the bucket)
    for (file, compression, numbers, query, bucket) in [
        ("typed.jsonl", "none", false, false, false),
        ("typed.jsonl.zst", "zstd", true, false, false),
        ("query.jsonl", "none", false, true, false),
        ("exports/typed.jsonl.zst", "zstd", false, false, true),
    ] {
        let mut spec = if query {
            SpecBuilder::query(&format!("SELECT * FROM {} WHERE id > 0", db.table("typed")))
        } else {
            SpecBuilder::table(&db.table("typed"))
        }
        .key("id")
        .chunk_size(40)
        .set("spec.output.format", "jsonl")
        .set("spec.output.timeZone", "Asia/Kolkata")
        .compression(compression);
        if numbers {
            spec = spec.set("spec.output.jsonl.numericAsNumber", true);
        }
        let Exported {
            result,
            report: stored,
            manifest,
            ..
        } = export_to(&work, &s3, spec, file, bucket).await;
        assert_eq!(result["rows"].as_u64().unwrap(), 300, "{result}");
        assert!(result["chunks"]["total"].as_u64().unwrap() >= 5, "{result}");
        assert_eq!(result["sha256"].as_str().unwrap(), sha256_hex(&stored));
        let plain = if compression == "zstd" {
            unzstd(&stored)
        } else {
            stored
        };
        // Byte for byte what Postgres's own row_to_json writes (the worker writes the
        // objects now; the server did before), line breaks between JSON tokens as spaces.
        let postgres = row_to_json_lines(&mut db, numbers).await;
        assert!(
            plain == postgres,
            "{file}: differs from row_to_json at byte {:?}",
            plain.iter().zip(&postgres).position(|(a, b)| a != b)
        );
        let plain_path = work.path().join("plain.jsonl");
        std::fs::write(&plain_path, &plain).unwrap();
        let printed = reader(
            "jsonl_check.py",
            &[
                plain_path.to_str().unwrap(),
                expected.to_str().unwrap(),
                if numbers { "number" } else { "string" },
                "+05:30",
            ],
        );
        assert_eq!(
            printed.trim(),
            format!("rows=300 values={}", 300 * EXPECTED.len()),
            "{file}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(manifest["compression"], compression);
        assert_eq!(manifest["rows"], 300);
    }
}

/// Nasty CSV text (quotes, line breaks inside values, unicode) keyed by `id`.
async fn csv_source(db: &mut TestDb) {
    db.exec(
        r#"CREATE TABLE src (id integer PRIMARY KEY, t text, n numeric);
           INSERT INTO src
           SELECT g, (ARRAY['plain', E'multi\nline', E'cr\r\nlf', 'say "hi", ok', '', NULL,
                            'naïve café — 東京 🚀'])[1 + g % 7], g / 7.0
             FROM generate_series(1, 500) AS g;"#,
    )
    .await;
}

/// Turns the CRLF record ends of `bytes` back into LF, asserting every record (outside
/// quotes) ends in CRLF.
fn crlf_to_lf(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_quotes = false;
    let mut records = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => {
                assert_eq!(
                    out.pop(),
                    Some(b'\r'),
                    "record ending at byte {i} is not CRLF"
                );
                records += 1;
            }
            _ => {}
        }
        out.push(b);
    }
    (out, records)
}

#[tokio::test]
async fn excel_csv_has_one_bom_and_crlf_records_and_loads_back_exactly() {
    let mut db = TestDb::new("csv_excel").await;
    csv_source(&mut db).await;
    let work = Workdir::new();
    let table = db.table("src");
    let run = |file: &str, excel: bool, compression: &str| {
        let mut spec = SpecBuilder::table(&table)
            .key("id")
            .chunk_size(60)
            .compression(compression)
            .pvc("reports", file);
        if excel {
            spec = spec
                .set("spec.output.csv.bom", true)
                .set("spec.output.csv.lineEnding", "crlf");
        }
        let spec = work.spec(&format!("{file}.yaml"), &spec.build_yaml());
        let out = work.reportjob(&[
            "run",
            "-f",
            spec.to_str().unwrap(),
            "--json",
            "--parallelism",
            "3",
        ]);
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        let result = run_json(&out);
        assert_eq!(result["rows"].as_u64().unwrap(), 500, "{result}");
        assert!(result["chunks"]["total"].as_u64().unwrap() >= 5, "{result}");
        std::fs::read(work.output_dir().join(file)).unwrap()
    };
    let lf = run("plain.csv", false, "none");
    for (file, compression) in [("excel.csv", "none"), ("excel.csv.zst", "zstd")] {
        let stored = run(file, true, compression);
        let excel = if compression == "zstd" {
            unzstd(&stored)
        } else {
            stored
        };
        // One BOM, at the start (not one per chunk), then the header.
        let bom = b"\xEF\xBB\xBF";
        assert!(excel.starts_with(bom), "{file}");
        assert_eq!(excel.windows(3).filter(|w| w == bom).count(), 1, "{file}");
        assert!(excel[3..].starts_with(b"id,t,n\r\n"), "{file}");
        // Every record ends in CRLF; with them back to LF it is the plain report, byte for
        // byte (line breaks inside values untouched).
        let (back, records) = crlf_to_lf(&excel[3..]);
        assert_eq!(records, 501, "{file}: header and 500 rows");
        assert!(
            back == lf,
            "{file}: differs from the LF report beyond BOM and CRLF"
        );
        // Python's csv module, told what Excel is told (utf-8-sig, the excel dialect).
        let path = work.path().join("excel-plain.csv");
        std::fs::write(&path, &excel).unwrap();
        assert_eq!(
            reader("csv_check.py", &[path.to_str().unwrap()]),
            "id,t,n\nrecords=500\n"
        );
        // And Postgres loads it back to exactly the source rows.
        std::fs::write(&path, &excel[3..]).unwrap();
        db.assert_report_matches(&path, &db.all("src"), "", false)
            .await;
    }
}

#[tokio::test]
async fn options_of_another_format_and_unknown_formats_are_refused_before_anything_is_written() {
    let mut db = TestDb::new("format_refusals").await;
    db.numbers(50).await;
    let work = Workdir::new();
    let base = || {
        SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("reports", "r.out")
    };
    let cases = [
        (
            base().set("spec.output.format", "avro"),
            "spec.output.format",
        ),
        (
            base()
                .set("spec.output.format", "jsonl")
                .set("spec.output.csv.bom", true),
            "spec.output.csv.bom: only for format csv",
        ),
        (
            base()
                .set("spec.output.format", "jsonl")
                .set("spec.output.csv.delimiter", ";"),
            "spec.output.csv.delimiter: only for format csv",
        ),
        (
            base().set("spec.output.jsonl.numericAsNumber", true),
            "spec.output.jsonl: only for format jsonl",
        ),
        (
            base().set("spec.output.compression", "lz4"),
            "spec.output.compression",
        ),
        (
            base().set("spec.output.csv.lineEnding", "cr"),
            "spec.output.csv.lineEnding",
        ),
    ];
    assert_refused_before_writing(&work, cases);
}

/// Values a spreadsheet would run as formulas, and their neighbours that it would not.
const FORMULA_LIKE: [&str; 13] = [
    "=1+1",
    "+a",
    "-5",
    "@SUM(A1)",
    "\tx",
    "\rcr",
    "plain",
    "",
    "a=b",
    "multi\nline",
    "\"=q",
    "=HYPERLINK(\"http://x\",\"y\")",
    "-",
];

#[tokio::test]
async fn escape_formulas_quotes_formula_cells_and_headers_and_is_exact_otherwise() {
    let mut db = TestDb::new("csv_formulas").await;
    let literal = |v: &str| {
        format!(
            "E'{}'",
            v.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('\t', "\\t")
                .replace('\r', "\\r")
                .replace('\n', "\\n")
        )
    };
    let rows: Vec<String> = FORMULA_LIKE
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({}, {}, 'v{}')", i + 1, literal(v), i + 1))
        .chain(std::iter::once(format!(
            "({}, NULL, '-{}')",
            FORMULA_LIKE.len() + 1,
            FORMULA_LIKE.len() + 1
        )))
        .collect();
    db.exec(&format!(
        "CREATE TABLE src (id integer PRIMARY KEY, \"=cmd\" text, t text);
         INSERT INTO src VALUES {};",
        rows.join(", ")
    ))
    .await;
    let table = db.table("src");
    let work = Workdir::new();
    let run = |file: &str, escape: bool| {
        let mut spec = SpecBuilder::table(&table)
            .key("id")
            .chunk_size(4)
            .pvc("reports", file);
        if escape {
            spec = spec.set("spec.output.csv.escapeFormulas", true);
        }
        let spec = work.spec(&format!("{file}.yaml"), &spec.build_yaml());
        let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--parallelism", "2"]);
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        std::fs::read(work.output_dir().join(file)).unwrap()
    };

    // Without the flag: psql's bytes exactly.
    let plain = run("plain.csv", false);
    let psql = std::process::Command::new("psql")
        .arg(common::database_url())
        .args(["-X", "-q", "-c"])
        .arg(format!(
            "\\copy (SELECT * FROM {table} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"
        ))
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert!(plain == psql.stdout, "differs from psql's \\copy");

    // With it: what Python's csv module reads is each value, with a ' before those that start
    // like a formula (the header name too), and nothing else changed.
    let escaped = run("escaped.csv", true);
    let path = work.path().join("escaped-copy.csv");
    std::fs::write(&path, &escaped).unwrap();
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import csv, json, sys\nwith open(sys.argv[1], newline='') as f:\n    print(json.dumps(list(csv.reader(f))))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    let quote = |v: &str| {
        if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{v}")
        } else {
            v.to_string()
        }
    };
    let mut want = vec![vec!["id".to_string(), "'=cmd".to_string(), "t".to_string()]];
    for (i, v) in FORMULA_LIKE.iter().enumerate() {
        want.push(vec![(i + 1).to_string(), quote(v), format!("v{}", i + 1)]);
    }
    let n = FORMULA_LIKE.len() + 1;
    want.push(vec![n.to_string(), String::new(), format!("'-{n}")]);
    assert_eq!(read, want);
    // Removing the inserted quotes gives back psql's bytes: the only change is the escaping.
    let unescaped = String::from_utf8(escaped)
        .unwrap()
        .replace(",'", ",")
        .replace(",\"'", ",\"");
    assert!(
        unescaped.as_bytes() == psql.stdout.as_slice(),
        "{unescaped}"
    );
}

#[tokio::test]
async fn xlsx_cells_that_look_like_formulas_are_strings() {
    let mut db = TestDb::new("xlsx_formulas").await;
    db.exec(
        "CREATE TABLE src (id integer PRIMARY KEY, f text);
         INSERT INTO src VALUES (1, '=1+1'), (2, '=HYPERLINK(\"http://x\")'), (3, '@SUM(A1)');",
    )
    .await;
    let work = Workdir::new();
    let spec = SpecBuilder::table(&db.table("src"))
        .key("id")
        .set("spec.output.format", "xlsx")
        .pvc("reports", "f.xlsx");
    let spec = work.spec("f.yaml", &spec.build_yaml());
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let path = work.output_dir().join("f.xlsx");
    // openpyxl: a formula cell has data_type 'f'; ours are strings ('s') holding the text.
    let script = "import sys, openpyxl\nws = openpyxl.load_workbook(sys.argv[1]).active\nfor row in ws.iter_rows(min_row=2):\n    c = row[1]\n    print(c.data_type, c.value)";
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "s =1+1\ns =HYPERLINK(\"http://x\")\ns @SUM(A1)\n"
    );
}
