//! The validation matrix: typed values for good specs, the field named for each bad one.

use super::*;
use crate::api::load::load_str;
use crate::api::valid::{CsvFormat, Encoding, JsonlFormat, XlsxFormat};

use crate::api::test_specs::MINIMAL as GOOD;

fn errors_of(yaml: &str) -> Vec<String> {
    match load_str(yaml, "test.yaml") {
        Ok(_) => vec![],
        Err(crate::api::load::LoadError::Invalid { errors, .. }) => {
            errors.into_iter().map(|e| e.to_string()).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

fn with(extra: &str, from: &str) -> String {
    let yaml = GOOD.replace(from, extra);
    assert_ne!(yaml, GOOD, "{from:?} is not in the spec");
    yaml
}

/// `GOOD` with `line` added to `spec.source`.
fn k(line: &str) -> String {
    with(&format!("keyColumn: id\n    {line}"), "keyColumn: id")
}

/// `GOOD` with `line` added to `spec`.
fn top(line: &str) -> String {
    format!("{GOOD}  {line}\n")
}

/// `GOOD` with `line` added to `spec.output`.
fn out(line: &str) -> String {
    with(&format!("    {line}\n    destination:"), "    destination:")
}

/// `GOOD` with a bucket destination `{fields}` instead of the pvc.
fn bucket(fields: &str) -> String {
    with(
        &format!("bucket: {{{fields}}}"),
        "pvc: {claimName: reports, path: orders.csv}",
    )
}

fn valid(yaml: &str) -> ValidSpec {
    crate::api::load::load_valid_str(yaml, "t").unwrap().spec
}

#[test]
fn good_spec_is_valid_and_defaulted() {
    let rj = load_str(GOOD, "t").unwrap();
    assert_eq!(rj.spec.chunking.chunk_size, 100_000);
    assert_eq!(rj.spec.source.connection_secret_ref.key, "url");
    assert_eq!(rj.spec.worker.retries_per_chunk, 3);
    assert!(rj.spec.output.csv.header);
}

#[test]
fn good_spec_has_typed_values() {
    let spec = valid(GOOD);
    assert_eq!(
        spec.source.rows,
        Source::Table {
            name: parse_qualified("public.orders").unwrap(),
            columns: None,
            where_: None,
        }
    );
    assert_eq!(spec.source.key_column, "id");
    assert_eq!(spec.source.statement_timeout.seconds(), 600);
    assert_eq!(
        spec.source.statement_timeout.duration(),
        Duration::from_secs(600)
    );
    assert_eq!(
        spec.source.connection,
        SecretKey {
            name: "db".into(),
            key: "url".into()
        }
    );
    assert_eq!(spec.chunking.chunk_size.get(), 100_000);
    assert_eq!(spec.chunking.parallelism.get(), 4);
    assert_eq!(spec.chunking.max_chunks.get(), 10_000);
    assert_eq!(
        spec.output.encoding,
        Encoding::Csv(CsvFormat {
            header: true,
            delimiter: b',',
            null_string: String::new(),
            bom: false,
            crlf: false,
            escape_formulas: false,
        })
    );
    assert_eq!(spec.output.compression, crate::api::Compression::None);
    match &spec.output.destination {
        Destination::Pvc { claim, path } => {
            assert_eq!(claim, "reports");
            assert_eq!(path.as_str(), "orders.csv");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(spec.worker.retries_per_chunk, 3);
    assert_eq!(spec.worker.active_deadline, None);
    assert_eq!(spec.worker.start_timeout, Duration::from_secs(600));
    assert_eq!(spec.ttl_after_finished, None);
    assert!(spec.notify.is_none() && !spec.suspend);
    assert_eq!(spec.written(), &load_str(GOOD, "t").unwrap().spec);
}

#[test]
fn table_options_are_parsed() {
    let spec = valid(&with(
        "table: Sales.\"Order Lines\"\n    columns: [ID, '\"Amount\"']\n    where: '  amount > 0  '\n    keyColumn: ID\n    statementTimeoutSeconds: 86400",
        "table: public.orders\n    keyColumn: id",
    ));
    assert_eq!(
        spec.source.rows,
        Source::Table {
            name: parse_qualified("sales.\"Order Lines\"").unwrap(),
            columns: Some(vec!["id".into(), "Amount".into()]),
            where_: Some(Filter::parse("amount > 0").unwrap()),
        }
    );
    assert_eq!(spec.source.key_column, "id");
    assert_eq!(spec.source.statement_timeout.seconds(), 86_400);
}

#[test]
fn a_query_is_trimmed_of_trailing_semicolons() {
    let spec = valid(&with(
        "query: ' select id from t ;; '",
        "table: public.orders",
    ));
    match &spec.source.rows {
        Source::Query { sql } => assert_eq!(sql.sql(), "SELECT id FROM t"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn output_options_are_typed() {
    let spec = valid(&GOOD.replace(
        "    destination:\n      pvc: {claimName: reports, path: orders.csv}",
        "    compression: gzip\n    csv: {delimiter: \"\\t\", nullString: NA, header: false}\n    destination:\n      bucket: {url: 's3://my-bucket/dir/r.csv.gz', endpoint: 'http://127.0.0.1:9000', region: eu-west-1, pathStyle: true, urlExpirySeconds: 60, credentialsSecretRef: {name: s3}}\n  worker: {retriesPerChunk: 0, activeDeadlineSeconds: 30, startTimeoutSeconds: 45}\n  ttlSecondsAfterFinished: 0",
    ));
    assert_eq!(
        spec.output.encoding,
        Encoding::Csv(CsvFormat {
            header: false,
            delimiter: b'\t',
            null_string: "NA".into(),
            bom: false,
            crlf: false,
            escape_formulas: false,
        })
    );
    assert_eq!(spec.output.compression, crate::api::Compression::Gzip);
    let Destination::Bucket(bucket) = &spec.output.destination else {
        panic!("{:?}", spec.output.destination);
    };
    assert_eq!(bucket.bucket, "my-bucket");
    assert_eq!(bucket.key.as_str(), "dir/r.csv.gz");
    assert_eq!(bucket.url(), "s3://my-bucket/dir/r.csv.gz");
    assert_eq!(bucket.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(bucket.region.as_deref(), Some("eu-west-1"));
    assert_eq!(bucket.path_style, Some(true));
    assert_eq!(bucket.url_expiry, Duration::from_secs(60));
    assert_eq!(bucket.credentials_secret.as_deref(), Some("s3"));
    assert!(bucket.server_side_copy);
    assert_eq!(spec.worker.retries_per_chunk, 0);
    assert_eq!(spec.worker.active_deadline, Some(Duration::from_secs(30)));
    assert_eq!(spec.worker.start_timeout, Duration::from_secs(45));
    assert_eq!(spec.ttl_after_finished, Some(Duration::ZERO));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = load_str(GOOD, "t").unwrap().spec;
    assert!(validate(&spec).is_ok());
    spec.chunking.chunk_size = 0;
    spec.source.key_column = String::new();
    let fields: Vec<String> = validate(&spec)
        .expect_err("two bad fields")
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, ["spec.source.keyColumn", "spec.chunking.chunkSize"]);
}

#[test]
fn each_bad_field_is_named() {
    let cases = [
        (
            with(
                "table: public.orders\n    query: select 1",
                "table: public.orders",
            ),
            "spec.source.query",
        ),
        (with("", "    table: public.orders\n"), "spec.source.table"),
        (
            with("table: 'orders; drop table x'", "table: public.orders"),
            "spec.source.table",
        ),
        (
            with("keyColumn: 'id\"'", "keyColumn: id"),
            "spec.source.keyColumn",
        ),
        (
            with(
                "keyColumn: id\n  chunking: {chunkSize: -5}",
                "keyColumn: id",
            ),
            "spec.chunking.chunkSize",
        ),
        (
            with(
                "keyColumn: id\n  chunking: {parallelism: 0}",
                "keyColumn: id",
            ),
            "spec.chunking.parallelism",
        ),
        (
            with("keyColumn: id\n    colums: [a]", "keyColumn: id"),
            "spec.source.colums",
        ),
        (
            with("keyColumn: id\n    columns: [a, 'b;c']", "keyColumn: id"),
            "spec.source.columns[1]",
        ),
        (
            with(
                "pvc: {claimName: reports, path: ../etc/passwd}",
                "pvc: {claimName: reports, path: orders.csv}",
            ),
            "spec.output.destination.pvc.path",
        ),
        (
            with(
                "pvc: {claimName: Reports, path: a.csv}",
                "pvc: {claimName: reports, path: orders.csv}",
            ),
            "spec.output.destination.pvc.claimName",
        ),
        (
            with(
                "bucket: {url: 's3://b/k'}\n      pvc: {claimName: reports, path: orders.csv}",
                "pvc: {claimName: reports, path: orders.csv}",
            ),
            "spec.output.destination.bucket",
        ),
        (
            with("", "    keyColumn: id\n"),
            "spec.source: missing field `keyColumn`",
        ),
        (
            with(
                "keyColumn: id\n    statementTimeoutSeconds: 0",
                "keyColumn: id",
            ),
            "spec.source.statementTimeoutSeconds",
        ),
        (
            with(
                "keyColumn: id\n  chunking: {chunkSize: ten}",
                "keyColumn: id",
            ),
            "spec.chunking.chunkSize",
        ),
    ];
    let more = [
        (
            k("statementTimeoutSeconds: 86401"),
            "spec.source.statementTimeoutSeconds",
        ),
        (
            k("statementTimeoutSeconds: -1"),
            "spec.source.statementTimeoutSeconds",
        ),
        (
            top("chunking: {maxChunks: 100001}"),
            "spec.chunking.maxChunks",
        ),
        (top("chunking: {maxChunks: 0}"), "spec.chunking.maxChunks"),
        (
            top("chunking: {parallelism: 1001}"),
            "spec.chunking.parallelism",
        ),
        (k("columns: []"), "spec.source.columns"),
        (k("columns: [a, A]"), "spec.source.columns[1]"),
        (k("where: '  '"), "spec.source.where"),
        (k("where: 'a = (1'"), "spec.source.where"),
        (k("where: \"a = '1\""), "spec.source.where"),
        (
            with("query: ';'", "table: public.orders"),
            "spec.source.query",
        ),
        (
            with("query: select (1", "table: public.orders"),
            "spec.source.query",
        ),
        (
            with("query: select 1\n    columns: [a]", "table: public.orders"),
            "spec.source.columns",
        ),
        (
            with("query: select 1\n    where: a > 1", "table: public.orders"),
            "spec.source.where",
        ),
        (
            with("{name: ''}", "{name: db}"),
            "spec.source.connectionSecretRef.name",
        ),
        (
            with("{name: db, key: ''}", "{name: db}"),
            "spec.source.connectionSecretRef.key",
        ),
        (out("csv: {delimiter: ab}"), "spec.output.csv.delimiter"),
        (out("csv: {delimiter: '\"'}"), "spec.output.csv.delimiter"),
        (out("csv: {delimiter: é}"), "spec.output.csv.delimiter"),
        (
            out("csv: {delimiter: ';', nullString: 'a;b'}"),
            "spec.output.csv.nullString",
        ),
        (
            out("csv: {nullString: 'a\\b'}"),
            "spec.output.csv.nullString",
        ),
        (
            with("path: /etc/passwd", "path: orders.csv"),
            "spec.output.destination.pvc.path",
        ),
        (
            with("path: a//b.csv", "path: orders.csv"),
            "spec.output.destination.pvc.path",
        ),
        (
            with("path: dir/", "path: orders.csv"),
            "spec.output.destination.pvc.path",
        ),
        (
            bucket("url: 's3://b/'"),
            "spec.output.destination.bucket.url",
        ),
        (
            bucket("url: 's3://b/../k'"),
            "spec.output.destination.bucket.url",
        ),
        (
            bucket("url: 's3://b c/k'"),
            "spec.output.destination.bucket.url",
        ),
        (
            bucket("url: 's3://b/k', endpoint: 'ftp://host'"),
            "spec.output.destination.bucket.endpoint",
        ),
        (
            bucket("url: 's3://b/k', endpoint: 'not a url'"),
            "spec.output.destination.bucket.endpoint",
        ),
        (
            bucket("url: 's3://b/k', urlExpirySeconds: 604801"),
            "spec.output.destination.bucket.urlExpirySeconds",
        ),
        (
            bucket("url: 's3://b/k', urlExpirySeconds: 0"),
            "spec.output.destination.bucket.urlExpirySeconds",
        ),
        (
            GOOD.replace(
                "      pvc: {claimName: reports, path: orders.csv}\n",
                "      {}\n",
            ),
            "spec.output.destination.pvc",
        ),
        (
            top("worker: {retriesPerChunk: 101}"),
            "spec.worker.retriesPerChunk",
        ),
        (
            top("worker: {retriesPerChunk: -1}"),
            "spec.worker.retriesPerChunk",
        ),
        (
            top("worker: {activeDeadlineSeconds: 0}"),
            "spec.worker.activeDeadlineSeconds",
        ),
        (
            top("worker: {startTimeoutSeconds: 0}"),
            "spec.worker.startTimeoutSeconds",
        ),
        (
            top("worker: {startTimeoutSeconds: 86401}"),
            "spec.worker.startTimeoutSeconds",
        ),
        (
            top("ttlSecondsAfterFinished: -1"),
            "spec.ttlSecondsAfterFinished",
        ),
    ];
    let cases = cases.into_iter().chain(more);
    for (yaml, field) in cases {
        let errors = errors_of(&yaml);
        assert!(
            errors.iter().any(|e| e.starts_with(field)),
            "expected an error naming {field}, got {errors:?} for\n{yaml}"
        );
    }
}

#[test]
fn wrong_kind_is_named() {
    let errors = errors_of(&GOOD.replace("kind: ReportJob", "kind: Report"));
    assert!(errors.iter().any(|e| e.starts_with("kind:")), "{errors:?}");
}

#[test]
fn bucket_urls() {
    let (bucket, key) = parse_bucket_url("s3://bucket/a/b.csv").unwrap();
    assert_eq!((bucket.as_str(), key.as_str()), ("bucket", "a/b.csv"));
    assert!(parse_bucket_url("s3://bucket/").is_err());
    assert!(parse_bucket_url("s3:///key").is_err());
    assert!(parse_bucket_url("gs://bucket/key").is_err());
    assert!(parse_bucket_url("s3://bucket/a/./b").is_err());
}

#[test]
fn relative_paths_stay_inside() {
    assert_eq!(RelativePath::parse("a/b.csv").unwrap().as_str(), "a/b.csv");
    for bad in ["", "/a", "a/", "a//b", "./a", "a/../b", "..", "a\0b"] {
        assert!(RelativePath::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sql_is_parsed_as_its_own_kind_at_validation() {
    // A statement where an expression belongs, and an expression where a query belongs,
    // are refused before anything connects; so is a side-effecting function.
    let as_filter = errors_of(&k("where: 'SELECT 1'"));
    assert!(
        as_filter
            .iter()
            .any(|e| e.starts_with("spec.source.where:")),
        "{as_filter:?}"
    );
    let as_query = errors_of(&with("query: 'amount > 0'", "table: public.orders"));
    assert!(
        as_query.iter().any(|e| e.starts_with("spec.source.query:")),
        "{as_query:?}"
    );
    let denied = errors_of(&k("where: \"nextval('s') > 0\""));
    assert!(
        denied
            .iter()
            .any(|e| e.starts_with("spec.source.where:") && e.contains("nextval")),
        "{denied:?}"
    );
}

#[test]
fn the_filter_kept_is_the_regenerated_one() {
    let spec = valid(&k("where: \"  AMOUNT>0 -- a comment ) \""));
    let Source::Table {
        where_: Some(filter),
        ..
    } = &spec.source.rows
    else {
        panic!("{:?}", spec.source.rows);
    };
    assert_eq!(filter.sql(), "amount > 0");
}

#[test]
fn format_options_are_typed() {
    let spec = valid(&out("csv: {bom: true, lineEnding: crlf}"));
    let Encoding::Csv(csv) = &spec.output.encoding else {
        panic!("{:?}", spec.output.encoding);
    };
    assert!(csv.bom && csv.crlf);
    let spec = valid(&out("format: jsonl\n    compression: zstd"));
    assert_eq!(
        spec.output.encoding,
        Encoding::Jsonl(JsonlFormat::default())
    );
    assert_eq!(spec.output.compression, crate::api::Compression::Zstd);
    let spec = valid(&out("format: jsonl\n    jsonl: {numericAsNumber: true}"));
    assert_eq!(
        spec.output.encoding,
        Encoding::Jsonl(JsonlFormat {
            numeric_as_number: true
        })
    );
}

#[test]
fn an_option_of_another_format_is_named() {
    assert_eq!(
        errors_of(&out(
            "format: jsonl\n    csv: {bom: true, lineEnding: crlf}"
        )),
        [
            "spec.output.csv.bom: only for format csv",
            "spec.output.csv.lineEnding: only for format csv"
        ]
    );
    assert_eq!(
        errors_of(&out(
            "format: jsonl\n    csv: {delimiter: ';', header: false}"
        )),
        [
            "spec.output.csv.header: only for format csv",
            "spec.output.csv.delimiter: only for format csv"
        ]
    );
    assert_eq!(
        errors_of(&out("jsonl: {numericAsNumber: true}")),
        ["spec.output.jsonl: only for format jsonl"]
    );
    // The CSV block at its defaults (as a server's defaulting writes it) is no error.
    valid(&out(
        "format: jsonl\n    csv: {header: true, delimiter: ',', nullString: '', bom: false, lineEnding: lf}",
    ));
}

#[test]
fn unknown_formats_and_options_are_refused() {
    let errors = errors_of(&out("format: avro"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.output.format") && errors[0].contains("avro"),
        "{errors:?}"
    );
    let errors = errors_of(&out("csv: {lineEnding: cr}"));
    assert!(
        errors[0].contains("spec.output.csv.lineEnding"),
        "{errors:?}"
    );
    let errors = errors_of(&out("compression: brotli"));
    assert!(errors[0].contains("spec.output.compression"), "{errors:?}");
}

#[test]
fn parquet_takes_its_own_options_and_no_stream_compression() {
    use crate::api::spec::ParquetCompression;
    use crate::api::valid::ParquetFormat;
    assert_eq!(
        valid(&out("format: parquet")).output.encoding,
        Encoding::Parquet(ParquetFormat {
            row_group_rows: 131_072,
            compression: ParquetCompression::Zstd,
        })
    );
    assert_eq!(
        valid(&out(
            "format: parquet\n    parquet: {rowGroupRows: 1000, compression: snappy}"
        ))
        .output
        .encoding,
        Encoding::Parquet(ParquetFormat {
            row_group_rows: 1000,
            compression: ParquetCompression::Snappy,
        })
    );
    assert_eq!(
        errors_of(&out(
            "format: parquet\n    compression: gzip\n    csv: {bom: true}"
        )),
        [
            "spec.output.csv.bom: only for format csv",
            "spec.output.compression: only for formats csv and jsonl; Parquet compresses its pages (spec.output.parquet.compression)"
        ]
    );
    assert_eq!(
        errors_of(&out("parquet: {rowGroupRows: 10}")),
        ["spec.output.parquet: only for format parquet"]
    );
    assert_eq!(
        errors_of(&out("format: parquet\n    parquet: {rowGroupRows: 0}")),
        ["spec.output.parquet.rowGroupRows: must be between 1 and 16777216, got 0"]
    );
}

#[test]
fn xlsx_options_are_typed_and_the_sheet_name_defaults_to_the_file_name() {
    let spec = valid(&out("format: xlsx"));
    assert_eq!(
        spec.output.encoding,
        Encoding::Xlsx(XlsxFormat {
            sheet_name: "orders".into(),
            truncate_long_text: false
        })
    );
    let spec = valid(&out(
        "format: xlsx\n    xlsx: {sheetName: \"Q1 sales\", truncateLongText: true}",
    ));
    assert_eq!(
        spec.output.encoding,
        Encoding::Xlsx(XlsxFormat {
            sheet_name: "Q1 sales".into(),
            truncate_long_text: true
        })
    );
}

#[test]
fn escape_formulas_is_a_csv_option_and_its_null_string_cannot_look_escaped() {
    let spec = valid(&out("csv: {escapeFormulas: true, nullString: NA}"));
    match &spec.output.encoding {
        Encoding::Csv(csv) => assert!(csv.escape_formulas),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        errors_of(&out("csv: {escapeFormulas: true, nullString: '-'}")),
        [
            "spec.output.csv.nullString: must not start with =, +, -, @, a tab or CR with escapeFormulas (NULL would read as an escaped value)"
        ]
    );
    assert_eq!(
        errors_of(&out("format: jsonl\n    csv: {escapeFormulas: true}")),
        ["spec.output.csv.escapeFormulas: only for format csv"]
    );
}

#[test]
fn xlsx_refuses_other_formats_options_compression_and_bad_sheet_names() {
    assert_eq!(
        errors_of(&out("format: xlsx\n    csv: {bom: true}")),
        ["spec.output.csv.bom: only for format csv"]
    );
    assert_eq!(
        errors_of(&out("format: xlsx\n    jsonl: {numericAsNumber: true}")),
        ["spec.output.jsonl: only for format jsonl"]
    );
    assert_eq!(
        errors_of(&out("xlsx: {truncateLongText: true}")),
        ["spec.output.xlsx: only for format xlsx"]
    );
    for compression in ["gzip", "zstd"] {
        assert_eq!(
            errors_of(&out(&format!(
                "format: xlsx\n    compression: {compression}"
            ))),
            [
                "spec.output.compression: only none for format xlsx (a workbook is a zip archive already)"
            ]
        );
    }
    let errors = errors_of(&out("format: xlsx\n    timeZone: Europe/Paris"));
    assert!(
        errors[0].starts_with("spec.output.timeZone: only UTC for format xlsx"),
        "{errors:?}"
    );
    // Sixteen emoji are 16 characters (within the schema's maxLength) but 32 UTF-16 code
    // units, which the workbook writer refuses at assembly: refused here instead.
    let emoji = format!("\"{}\"", "\u{1F600}".repeat(16));
    for bad in ["'a/b'", "\"x[1]\"", "\"'quoted'\"", emoji.as_str()] {
        let errors = errors_of(&out(&format!(
            "format: xlsx\n    xlsx: {{sheetName: {bad}}}"
        )));
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert!(
            errors[0].starts_with("spec.output.xlsx.sheetName: "),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn split_limits_are_typed_and_zero_or_none_is_refused() {
    let split = valid(&out("split: {maxRows: 1000, maxBytes: 5000000}"))
        .output
        .split
        .expect("split");
    assert_eq!(split.max_rows.map(|n| n.get()), Some(1000));
    assert_eq!(split.max_bytes.map(|n| n.get()), Some(5_000_000));
    assert_eq!(valid(GOOD).output.split, None);
    assert_eq!(
        errors_of(&out("split: {maxRows: 0}")),
        vec!["spec.output.split.maxRows: must be at least 1, got 0"]
    );
    assert_eq!(
        errors_of(&out("split: {maxBytes: -5}")),
        vec!["spec.output.split.maxBytes: must be at least 1, got -5"]
    );
    assert_eq!(
        errors_of(&out("split: {}")),
        vec![format!(
            "spec.output.split: {}",
            crate::api::schema::SPLIT_LIMIT
        )]
    );
    let unknown = errors_of(&out("split: {maxFiles: 3}"));
    assert!(
        unknown.iter().any(|e| e.contains("maxFiles")),
        "{unknown:?}"
    );
}

/// A valid spec as a typed value, to put hostile strings where YAML could not carry them.
fn typed_good() -> ReportJobSpec {
    load_str(GOOD, "test.yaml").expect("valid").spec
}

#[test]
fn control_characters_are_refused_in_printed_fields() {
    let esc = "\u{1b}[31mred\u{1b}[0m";
    type Hostile = Box<dyn Fn(&mut ReportJobSpec)>;
    let cases: Vec<(&str, Hostile)> = vec![
        (
            "spec.output.destination.pvc.path",
            Box::new(|s| {
                s.output.destination.pvc.as_mut().unwrap().path =
                    "r.csv\nforged-row   Succeeded".into()
            }),
        ),
        (
            "spec.output.destination.pvc.path",
            Box::new(move |s| s.output.destination.pvc.as_mut().unwrap().path = esc.into()),
        ),
        (
            "spec.source.table",
            Box::new(|s| s.source.table = Some("\"t\u{1b}]0;title\u{7}\"".into())),
        ),
        (
            "spec.source.keyColumn",
            Box::new(|s| s.source.key_column = "\"id\u{9b}31m\"".into()),
        ),
        (
            "spec.source.connectionSecretRef.name",
            Box::new(|s| s.source.connection_secret_ref.name = "db\r".into()),
        ),
        (
            "spec.source.query",
            Box::new(|s| {
                s.source.table = None;
                s.source.query = Some("SELECT 1 AS id -- \u{1b}[2J".into())
            }),
        ),
        (
            "spec.output.destination.pvc.path",
            Box::new(|s| {
                s.output.destination.pvc.as_mut().unwrap().path = "a\u{202e}vsc.exe".into()
            }),
        ),
    ];
    for (field, hostile) in cases {
        let mut spec = typed_good();
        hostile(&mut spec);
        let errors = validate(&spec).expect_err(field);
        assert!(
            errors.iter().any(|e| e.field == field
                && (e.message.contains("control character") || e.message.contains("U+202E"))),
            "{field}: {errors:?}"
        );
    }
    // SQL keeps its tabs and line breaks.
    let mut spec = typed_good();
    spec.source.table = None;
    spec.source.query = Some("SELECT id\n\tFROM t\r\n WHERE id > 0".into());
    validate(&spec).expect("tabs and line breaks in SQL are fine");
    // A bucket URL with a newline in its key.
    let mut spec = typed_good();
    spec.output.destination.pvc = None;
    spec.output.destination.bucket =
        Some(serde_json::from_value(serde_json::json!({"url": "s3://b/k\n.csv"})).unwrap());
    let errors = validate(&spec).expect_err("newline in the key");
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.output.destination.bucket.url"),
        "{errors:?}"
    );
}

#[test]
fn a_sheet_name_with_a_control_character_is_refused() {
    let mut spec = typed_good();
    spec.output.format = crate::api::spec::OutputFormat::Xlsx;
    spec.output.xlsx =
        Some(serde_json::from_value(serde_json::json!({"sheetName": "Orders\u{1b}[5m"})).unwrap());
    let errors = validate(&spec).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.output.xlsx.sheetName"),
        "{errors:?}"
    );
}

#[test]
fn an_sql_text_over_64_kib_is_refused_naming_the_field_and_the_limit() {
    let long = format!("id > 0{}", " AND id > 0".repeat(7000));
    let errors = errors_of(&k(&format!("where: '{long}'")));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.source.where: is ") && e.contains("at most 65536 bytes")),
        "{errors:?}"
    );
}

#[test]
fn a_name_too_long_for_the_jobs_is_refused_by_run() {
    let yaml = GOOD.replacen("name: ", &format!("name: {}", "r".repeat(51)), 1);
    let errors = errors_of(&yaml);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("metadata.name: is ") && e.contains("at most 50")),
        "{errors:?}"
    );
}
