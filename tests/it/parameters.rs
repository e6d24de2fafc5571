//! Bound parameters and the reader's time zone against the real Postgres: a value that
//! reads as SQL is exported as data or refused by its type, never executed; a wrong count
//! or type is refused before anything is exported, naming `$n`; `timestamptz` values are
//! written in the spec's time zone.

use crate::common;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};
use serde_json::json;

const CANARY_VALUE: &str = "1; DROP TABLE canary; --";

async fn canary_survives(db: &mut TestDb) {
    let rows = db.checksum(&db.all("canary")).await;
    assert_eq!(rows.0, 1, "the canary table is intact");
}

async fn setup(db: &mut TestDb) {
    db.numbers(300).await;
    db.exec("CREATE TABLE canary (x int); INSERT INTO canary VALUES (1);")
        .await;
}

#[tokio::test]
async fn a_value_that_reads_as_sql_is_exported_as_data() {
    let mut db = TestDb::new("param_data").await;
    setup(&mut db).await;
    let work = Workdir::new();
    let query = format!(
        "SELECT id, $1 AS note FROM {} WHERE id <= $2",
        db.table("src")
    );
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::query(&query)
            .key("id")
            .chunk_size(40)
            .set(
                "spec.source.parameters",
                json!([{"value": CANARY_VALUE, "type": "text"}, {"value": "120"}]),
            )
            .pvc("reports", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 120);
    let csv = std::fs::read_to_string(work.output_dir().join("r.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,note"));
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 120);
    assert_eq!(body[0], "1,1; DROP TABLE canary; --");
    assert!(
        body.iter()
            .all(|l| l.ends_with(",1; DROP TABLE canary; --"))
    );
    canary_survives(&mut db).await;

    // --param replaces the values, keeping their types.
    let out = work.reportjob(&[
        "run",
        "-f",
        spec.to_str().unwrap(),
        "--json",
        "--param",
        "x'); DROP TABLE canary; --",
        "--param",
        "7",
    ]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 7);
    let csv = std::fs::read_to_string(work.output_dir().join("r.csv")).unwrap();
    assert_eq!(csv.lines().nth(7), Some("7,x'); DROP TABLE canary; --"));
    canary_survives(&mut db).await;
}

#[tokio::test]
async fn a_value_its_type_cannot_read_is_refused_before_any_export() {
    let mut db = TestDb::new("param_type").await;
    setup(&mut db).await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .filter("id > $1")
            .set(
                "spec.source.parameters",
                json!([{"value": CANARY_VALUE, "type": "integer"}]),
            )
            .pvc("reports", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "error: spec.source.parameters: $1 (parameters[0]): \"1; DROP TABLE canary; --\" is not a valid integer: \
             SQLSTATE 22P02: invalid input syntax for type integer: \"1; DROP TABLE canary; --\""
        ),
        "{}",
        stderr(&out)
    );
    assert!(!work.output_dir().join("r.csv").exists());
    canary_survives(&mut db).await;
}

#[tokio::test]
async fn wrong_count_or_type_is_refused_naming_the_parameter() {
    let mut db = TestDb::new("param_count").await;
    setup(&mut db).await;
    let work = Workdir::new();
    let query = format!(
        "SELECT id, label FROM {} WHERE id > $1 AND label <> $2",
        db.table("src")
    );
    let base = SpecBuilder::query(&query).key("id").pvc("reports", "r.csv");
    let run = |builder: &SpecBuilder| {
        let spec = work.spec("spec.yaml", &builder.build_yaml());
        work.reportjob(&["run", "-f", spec.to_str().unwrap()])
    };

    let one = base
        .clone()
        .set("spec.source.parameters", json!([{"value": "5"}]));
    let out = run(&one);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("spec.source.parameters: the query uses $2 but 1 values are given"),
        "{}",
        stderr(&out)
    );

    let three = base.clone().set(
        "spec.source.parameters",
        json!([{"value": "5"}, {"value": "a"}, {"value": "b"}]),
    );
    let out = run(&three);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("spec.source.parameters[2]: $3 is not used by the query"),
        "{}",
        stderr(&out)
    );

    let wrong_type = base.clone().set(
        "spec.source.parameters",
        json!([{"value": "2024-01-01", "type": "date"}, {"value": "a"}]),
    );
    let out = run(&wrong_type);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(
            "error: spec.source.parameters: $1 (parameters[0]) is declared date, but the query uses $1 as int8: \
             SQLSTATE 42883: operator does not exist: bigint > date"
        ),
        "{}",
        stderr(&out)
    );

    let unknown = base.set(
        "spec.source.parameters",
        json!([{"value": "5", "type": "regclass"}, {"value": "a"}]),
    );
    let out = run(&unknown);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(
            "spec.source.parameters[0].type: ($1) \"regclass\" is not a supported parameter type"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!work.output_dir().join("r.csv").exists());
    canary_survives(&mut db).await;
}

#[tokio::test]
async fn timestamptz_values_are_written_in_the_spec_time_zone() {
    let mut db = TestDb::new("time_zone").await;
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, day date);
         INSERT INTO ev SELECT g, timestamptz '2024-03-01 00:00:00+00' + g * interval '97 minutes 13.25 seconds',
                               date '2024-03-01' + g
           FROM generate_series(1, 500) AS g;",
    )
    .await;
    let export = |zone: &str| {
        let work = Workdir::new();
        let spec = work.spec(
            "spec.yaml",
            &SpecBuilder::table(&db.table("ev"))
                .key("id")
                .chunk_size(100)
                .set("spec.output.timeZone", zone)
                .pvc("reports", "r.csv")
                .build_yaml(),
        );
        let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        std::fs::read_to_string(work.output_dir().join("r.csv")).unwrap()
    };
    let utc = export("UTC");
    let sao_paulo = export("America/Sao_Paulo");
    let utc_lines: Vec<&str> = utc.lines().collect();
    let sp_lines: Vec<&str> = sao_paulo.lines().collect();
    assert_eq!(utc_lines.len(), 501);
    assert_eq!(sp_lines.len(), 501);
    assert_eq!(utc_lines[1], "1,2024-03-01 01:37:13.25+00,2024-03-02");
    assert_eq!(sp_lines[1], "1,2024-02-29 22:37:13.25-03,2024-03-02");
    let three_hours = jiff::SignedDuration::from_hours(3);
    for (u, s) in utc_lines.iter().zip(&sp_lines).skip(1) {
        let (u_id, u_rest) = u.split_once(',').unwrap();
        let (s_id, s_rest) = s.split_once(',').unwrap();
        assert_eq!(u_id, s_id);
        let (u_at, u_day) = u_rest.rsplit_once(',').unwrap();
        let (s_at, s_day) = s_rest.rsplit_once(',').unwrap();
        assert_eq!(u_day, s_day, "dates are not shifted");
        let u_civil: jiff::civil::DateTime = u_at.strip_suffix("+00").unwrap().parse().unwrap();
        let s_civil: jiff::civil::DateTime = s_at.strip_suffix("-03").unwrap().parse().unwrap();
        assert_eq!(
            u_civil.checked_sub(three_hours).unwrap(),
            s_civil,
            "{u} / {s}"
        );
    }

    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("ev"))
            .key("id")
            .set("spec.output.timeZone", "Mars/Olympus_Mons")
            .pvc("reports", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(
            "error: spec.output.timeZone: \"Mars/Olympus_Mons\" is not a time zone this server knows (pg_timezone_names)"
        ),
        "{}",
        stderr(&out)
    );
}
