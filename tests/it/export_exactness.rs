//! Exactness of exported reports against the real Postgres: every key type, bigint keys at
//! both extremes, NULL keys, nasty text, parallelism 1 and 4, plain and gzip. The report is
//! loaded back with COPY and compared by row count and an order-independent checksum.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use common::sha256_hex;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};

/// Text values CSV encoders get wrong; `v` cycles through them.
const NASTY: &str = r#"(ARRAY['plain', 'comma, here', 'a "quoted" word', E'new\nline', E'cr\r\nlf', E'tab\there',
    E'back\\slash', 'NULL', E'\\N', '', NULL, 'naïve café — 東京 🚀', E'\\.', ' spaced ', '"', ','])"#;

async fn create_source(db: &mut TestDb, key_type: &str, key_expr: &str) {
    db.exec(&format!(
        "CREATE TABLE src (k {key_type}, n integer, t text, v varchar(40), ts timestamptz, f float8, b bytea, j jsonb);
         INSERT INTO src
         SELECT {key_expr}, g, {NASTY}[1 + g % 16], {NASTY}[1 + (g / 3) % 16],
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 1.5 seconds',
                g / 7.0, decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 's', {NASTY}[1 + g % 16])
           FROM generate_series(1, 2000) AS g;
         INSERT INTO src (k, n, t) SELECT NULL, -g, 'null key ' || g FROM generate_series(1, 25) AS g;"
    ))
    .await;
}

struct Case {
    parallelism: u32,
    gzip: bool,
    null_string: &'static str,
}

const CASES: &[Case] = &[
    Case {
        parallelism: 1,
        gzip: false,
        null_string: "",
    },
    Case {
        parallelism: 4,
        gzip: false,
        null_string: "NULL",
    },
    Case {
        parallelism: 4,
        gzip: true,
        null_string: "",
    },
];

/// Exports `src` with each case and checks the reloaded rows equal the source's.
async fn assert_exact_exports(db: &mut TestDb, chunk_size: u32) {
    let source = db
        .checksum(&format!("SELECT * FROM {}", db.table("src")))
        .await;
    assert!(source.0 > 0);
    for case in CASES {
        let work = Workdir::new();
        let file = if case.gzip { "r.csv.gz" } else { "r.csv" };
        let spec = work.spec(
            "spec.yaml",
            &SpecBuilder::table(&db.table("src"))
                .key("k")
                .chunk_size(chunk_size.into())
                .compression(if case.gzip { "gzip" } else { "none" })
                .null_string(case.null_string)
                .pvc("reports", file)
                .build_yaml(),
        );
        let parallelism = case.parallelism.to_string();
        let out = work.reportjob(&[
            "run",
            "-f",
            spec.to_str().unwrap(),
            "--json",
            "--parallelism",
            &parallelism,
        ]);
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        let result = run_json(&out);
        assert_eq!(result["result"], "succeeded");
        assert!(
            result["chunks"]["total"].as_u64().unwrap() >= 5,
            "expected several chunks: {result}"
        );
        assert_eq!(result["rows"].as_i64().unwrap(), source.0, "rows reported");
        let report = work.output_dir().join(file);
        let bytes = std::fs::read(&report).unwrap();
        assert_eq!(result["bytes"].as_u64().unwrap(), bytes.len() as u64);
        assert_eq!(result["sha256"].as_str().unwrap(), sha256_hex(&bytes));
        assert!(
            !work.output_dir().join(format!("{file}.parts")).exists(),
            "staging removed after assembly"
        );
        let loaded = db
            .load_csv(
                &report,
                &format!("SELECT * FROM {}", db.table("src")),
                case.null_string,
                case.gzip,
            )
            .await;
        let reloaded = db.checksum(&format!("SELECT * FROM {loaded}")).await;
        assert_eq!(
            reloaded, source,
            "reloaded rows differ (parallelism {}, gzip {}, null {:?})",
            case.parallelism, case.gzip, case.null_string
        );
    }
}

macro_rules! key_type_test {
    ($name:ident, $ty:expr, $expr:expr) => {
        #[tokio::test]
        async fn $name() {
            let mut db = TestDb::new(stringify!($name)).await;
            create_source(&mut db, $ty, $expr).await;
            assert_exact_exports(&mut db, 150).await;
        }
    };
}

key_type_test!(
    smallint_keys_export_exactly,
    "smallint",
    "(g - 1000)::smallint"
);
key_type_test!(
    integer_keys_with_duplicates_export_exactly,
    "integer",
    "g / 3"
);
key_type_test!(
    bigint_sparse_clustered_keys_export_exactly,
    "bigint",
    "(g / 100)::int8 * 1000000000000 + g % 100"
);
key_type_test!(
    numeric_keys_export_exactly,
    "numeric",
    "(g * 1.37)::numeric(12, 3) - 999"
);
key_type_test!(
    date_keys_export_exactly,
    "date",
    "date '1999-12-30' + g * 3"
);
key_type_test!(
    timestamp_keys_export_exactly,
    "timestamp",
    "timestamp '2024-02-28 23:00' + g * interval '17 min 3.25 s'"
);
key_type_test!(
    timestamptz_keys_export_exactly,
    "timestamptz",
    "timestamptz '2024-03-31 00:30+02' + g * interval '7 min 0.5 s'"
);
key_type_test!(
    text_keys_with_quotes_export_exactly,
    "text",
    "CASE WHEN g % 5 = 0 THEN 'o''' ELSE '' END || md5(g::text) || ' é'"
);
key_type_test!(
    varchar_keys_export_exactly,
    "varchar(64)",
    "'key ' || lpad(g::text, 5, '0')"
);
key_type_test!(uuid_keys_export_exactly, "uuid", "md5(g::text)::uuid");

#[tokio::test]
async fn bigint_keys_at_both_extremes_export_exactly() {
    let mut db = TestDb::new("bigint_extremes").await;
    create_source(
        &mut db,
        "bigint",
        "CASE WHEN g % 2 = 0 THEN -9223372036854775808 + g ELSE 9223372036854775807 - g END",
    )
    .await;
    db.exec(
        "INSERT INTO src (k, n) VALUES (-9223372036854775808, 0), (9223372036854775807, 1), (0, 2), (-1, 3);",
    )
    .await;
    assert_exact_exports(&mut db, 200).await;
}

#[tokio::test]
async fn null_keys_get_their_own_chunk() {
    let mut db = TestDb::new("null_chunk").await;
    create_source(&mut db, "integer", "g").await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("k")
            .chunk_size(500)
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["plan", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chunks = plan["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 5, "4 ranges of ~500 rows plus the NULL chunk");
    assert_eq!(chunks.last().unwrap()["nulls"], true);
    assert!(chunks[..4].iter().all(|c| c.get("nulls").is_none()));
}

#[tokio::test]
async fn query_mode_exports_exactly_and_pushes_the_range_down() {
    let mut db = TestDb::new("query_mode").await;
    create_source(&mut db, "bigint", "g * 10").await;
    let query = format!(
        "SELECT k AS id, t, ts FROM {} WHERE n % 3 <> 0",
        db.table("src")
    );
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::query(&format!("{query};"))
            .name("q")
            .key("id")
            .chunk_size(300)
            .parallelism(3)
            .pvc("r", "q.csv")
            .build_yaml(),
    );
    let plan_out = work.reportjob(&["plan", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(plan_out.status.success(), "{}", stderr(&plan_out));
    let plan: serde_json::Value = serde_json::from_slice(&plan_out.stdout).unwrap();
    // The plan carries names and ranges, never SQL: the statement is rebuilt from the spec.
    assert_eq!(plan["source"]["key_column"], "id");
    for sql_field in ["key_sql", "from_sql", "filter_sql", "select_list"] {
        assert!(
            plan["source"].get(sql_field).is_none(),
            "{sql_field} in {plan}"
        );
    }
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    db.assert_report_matches(&work.output_dir().join("q.csv"), &query, "", false)
        .await;
}

#[tokio::test]
async fn columns_and_where_filter_export_exactly() {
    let mut db = TestDb::new("columns_where").await;
    create_source(&mut db, "integer", "g").await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("k")
            .columns(&["k", "T", "v"])
            .filter("n % 2 = 0 OR t IS NULL")
            .chunk_size(250)
            .parallelism(2)
            .pvc("r", "sub/dir/c.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let query = format!(
        "SELECT k, t, v FROM {} WHERE n % 2 = 0 OR t IS NULL",
        db.table("src")
    );
    let report = work.output_dir().join("sub/dir/c.csv");
    let header = std::fs::read_to_string(&report).unwrap();
    assert!(header.starts_with("k,t,v\n"), "header: {:?}", &header[..20]);
    db.assert_report_matches(&report, &query, "", false).await;
}
