//! A hostile spec against the real Postgres, run by a role that may only SELECT the source
//! (and may write a canary table, so that any write that gets through shows): every SQL
//! field and quoting form, each run either refused naming the field (and the function) or
//! exporting exactly the source's rows, and the canary, sequence, large objects and
//! advisory locks unchanged after each.
// tests fail loudly on unexpected errors

use crate::common;
use crate::common::spec::SpecBuilder;

use common::{TestDb, Workdir, server_url, stderr};
use sqlx::{AssertSqlSafe, Row};

/// What a case must end in.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused before any row is read, naming the field and containing every needle.
    Refused(&'static str, &'static [&'static str]),
    /// A report holding exactly the rows of this query (`{s}` is the test schema).
    Exact(&'static str),
    /// Either refused naming this text, or exact (defence in depth: both are safe).
    RefusedOrExact(&'static str, &'static str),
}

/// The source rows: x$a$ is a legal column name (`$` after the first character); `note`
/// holds the strings the quoting cases look for.
const SETUP: &str = r#"
CREATE TABLE src (id bigint PRIMARY KEY, name text, x$a$ int, note text);
INSERT INTO src
SELECT g, 'name ' || g, g % 3,
       CASE g % 5 WHEN 0 THEN ' ) OR (true ' WHEN 1 THEN E'back\\slash'' quote'
                  WHEN 2 THEN '$a$' WHEN 3 THEN E'\u00d5\\' ELSE NULL END
  FROM generate_series(1, 500) AS g;
ANALYZE src;
CREATE TABLE canary (n int);
INSERT INTO canary VALUES (1);
CREATE SEQUENCE canary_seq;
CREATE FUNCTION evil_enc() RETURNS boolean LANGUAGE plpgsql AS
  $f$ BEGIN PERFORM set_config('client_encoding', 'SJIS', false); RETURN true; END $f$;
"#;

/// A reader role: SELECT on the source, writes on the canary (which attacks would use).
async fn create_role(db: &mut TestDb) -> String {
    let role = format!("rj_reader_{:08x}", rand::random::<u32>());
    let s = db.schema.clone();
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {s} TO {role};
         GRANT SELECT ON {s}.src TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.canary TO {role};
         GRANT USAGE, SELECT, UPDATE ON SEQUENCE {s}.canary_seq TO {role};
         ALTER ROLE {role} SET search_path = {s}, public;"
    ))
    .await;
    role
}

async fn drop_role(db: &mut TestDb, role: &str) {
    db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
}

/// Everything an attack could change outside the report.
async fn side_effects(db: &mut TestDb) -> (String, i64, i64, i64) {
    let s = db.schema.clone();
    let canary = db.checksum(&format!("SELECT * FROM {s}.canary")).await;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT (SELECT last_value FROM {s}.canary_seq),
                (SELECT count(*) FROM pg_largeobject_metadata),
                (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')"
    )))
    .fetch_one(&mut db.conn)
    .await
    .unwrap();
    (format!("{canary:?}"), row.get(0), row.get(1), row.get(2))
}

/// A case: which field gets the hostile text, and what must happen.
struct Case {
    what: &'static str,
    /// Source lines under `source:` (after connectionSecretRef), `{s}` is the schema.
    source: &'static str,
    expect: Expect,
}

async fn run_cases(name: &str, cases: &[Case]) {
    let mut db = TestDb::new(name).await;
    db.exec(SETUP).await;
    let role = create_role(&mut db).await;
    let url =
        format!("{}/reportjob_test", server_url()).replacen("postgres@", &format!("{role}@"), 1);
    assert!(
        url.contains(&role),
        "TEST_DATABASE_URL must name the user postgres@: {url}"
    );
    let s = db.schema.clone();
    let before = side_effects(&mut db).await;
    let mut failures = Vec::new();
    for case in cases {
        let work = Workdir::new();
        let source = case.source.replace("{s}", &s);
        let spec = work.spec(
            "spec.yaml",
            &format!(
                r#"apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: test}}
spec:
  source:
    connectionSecretRef: {{name: db}}
{source}
  chunking: {{chunkSize: 100}}
  output:
    destination:
      pvc: {{claimName: r, path: r.csv}}
  worker: {{retriesPerChunk: 1}}
"#
            ),
        );
        let out = work.reportjob_with(
            &["run", "-f", spec.to_str().unwrap(), "--json"],
            &[("DATABASE_URL", url.as_str())],
        );
        let err = stderr(&out);
        let report = work.output_dir().join("r.csv");
        let refused = |field: &str, needles: &[&str]| -> Result<(), String> {
            if out.status.success() {
                return Err("ran, but must be refused".into());
            }
            if report.exists() {
                return Err("refused, but a report was written".into());
            }
            for needle in std::iter::once(&field).chain(needles) {
                if !err.contains(needle) {
                    return Err(format!("refusal does not name {needle:?}"));
                }
            }
            Ok(())
        };
        let outcome: Result<(), String> = match case.expect {
            Expect::Refused(field, needles) => refused(field, needles),
            Expect::Exact(query) => {
                if out.status.success() {
                    db.assert_report_matches(&report, &query.replace("{s}", &s), "", false)
                        .await;
                    Ok(())
                } else {
                    Err("refused, but must export exactly".into())
                }
            }
            Expect::RefusedOrExact(needle, query) => {
                if out.status.success() {
                    db.assert_report_matches(&report, &query.replace("{s}", &s), "", false)
                        .await;
                    Ok(())
                } else {
                    refused(needle, &[])
                }
            }
        };
        // Nothing beside the spec and the output directory (no file outside the root).
        let mut entries: Vec<String> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        let outcome = outcome.and_then(|()| {
            if entries.iter().all(|e| e == "spec.yaml" || e == "out") {
                Ok(())
            } else {
                Err(format!("files outside the output root: {entries:?}"))
            }
        });
        let after = side_effects(&mut db).await;
        let outcome = outcome.and_then(|()| {
            if after == before {
                Ok(())
            } else {
                Err(format!("side effects: before {before:?}, after {after:?}"))
            }
        });
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}\n  stderr: {}", case.what, err.trim()));
        }
    }
    drop_role(&mut db, &role).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const W: &str = "spec.source.where";
const Q: &str = "spec.source.query";
const ALL: &str = "SELECT * FROM {s}.src";

/// `table: src` with a `where`.
macro_rules! where_case {
    ($what:expr, $filter:expr, $expect:expr) => {
        Case {
            what: $what,
            source: concat!(
                "    table: {s}.src\n    keyColumn: id\n    where: ",
                $filter
            ),
            expect: $expect,
        }
    };
}

/// `query:` (YAML single-quoted scalars: `''` is one quote).
macro_rules! query_case {
    ($what:expr, $query:expr, $expect:expr) => {
        Case {
            what: $what,
            source: concat!("    query: ", $query, "\n    keyColumn: id"),
            expect: $expect,
        }
    };
}

#[tokio::test]
async fn hostile_where_filters_are_refused_or_exact() {
    let cases = [
        // Attack 2: `x$a$` is an identifier, not a dollar quote; the old scanner let this
        // close the WHERE parenthesis and OR away the chunk range (every row in every chunk).
        where_case!(
            "x$a$ escape",
            "'x$a$ = 1) OR (x$a$ = 1'",
            Expect::Refused(W, &["syntax error"])
        ),
        where_case!("paren escape", "'true) OR (true'", Expect::Refused(W, &[])),
        where_case!(
            "paren escape in dollar tag",
            "'x$a$ = 1 OR $t$ ) $t$ = $t$) OR (true'",
            Expect::Refused(W, &[])
        ),
        // Attack 1/5: statements inside where.
        where_case!(
            "COMMIT; INSERT",
            "'true; COMMIT; INSERT INTO canary VALUES (666)'",
            Expect::Refused(W, &["statements"])
        ),
        where_case!(
            "SET TRANSACTION READ WRITE",
            "'true; SET TRANSACTION READ WRITE; INSERT INTO canary VALUES (666)'",
            Expect::Refused(W, &["statements"])
        ),
        where_case!(
            "SET client_encoding",
            "'true; SET client_encoding = ''SJIS'''",
            Expect::Refused(W, &["statements"])
        ),
        where_case!(
            "set_config encoding",
            "'set_config(''client_encoding'', ''SJIS'', false) IS NOT NULL'",
            Expect::Refused(W, &["function set_config is not allowed"])
        ),
        where_case!(
            "pg_sleep",
            "'pg_sleep(30) IS NOT NULL'",
            Expect::Refused(W, &["function pg_sleep is not allowed (side effects)"])
        ),
        where_case!(
            "qualified mixed-case pg_sleep_for",
            "'pg_catalog.PG_SLEEP_FOR(''1 minute'') IS NULL'",
            Expect::Refused(W, &["pg_sleep_for"])
        ),
        where_case!(
            "quoted pg_sleep",
            "'\"pg_sleep\"(1) IS NULL'",
            Expect::Refused(W, &["pg_sleep"])
        ),
        where_case!(
            "lo_create",
            "'lo_create(0) > 0'",
            Expect::Refused(W, &["lo_create"])
        ),
        where_case!(
            "lo_put",
            "'lo_put(0, 0, ''x'') IS NULL'",
            Expect::Refused(W, &["lo_put"])
        ),
        where_case!(
            "lo_from_bytea in subquery",
            "'id > (SELECT lo_from_bytea(0, ''x'')::int8)'",
            Expect::Refused(W, &["lo_from_bytea"])
        ),
        where_case!(
            "pg_notify",
            "'pg_notify(''c'', ''x'') IS NULL'",
            Expect::Refused(W, &["pg_notify"])
        ),
        where_case!(
            "advisory lock",
            "'pg_advisory_lock(42) IS NULL'",
            Expect::Refused(W, &["pg_advisory_lock"])
        ),
        where_case!(
            "try advisory lock",
            "'pg_try_advisory_lock(42)'",
            Expect::Refused(W, &["pg_try_advisory_lock"])
        ),
        where_case!(
            "dblink_exec",
            "'dblink_exec(''dbname=reportjob_test'', ''INSERT INTO canary VALUES (666)'') IS NULL'",
            Expect::Refused(W, &["dblink_exec"])
        ),
        where_case!(
            "nextval",
            "'nextval(''canary_seq'') > 0'",
            Expect::Refused(W, &["nextval"])
        ),
        where_case!(
            "setval in IN subquery",
            "'id IN (SELECT setval(''canary_seq'', 99))'",
            Expect::Refused(W, &["setval"])
        ),
        where_case!(
            "terminate backend",
            "'EXISTS (SELECT pg_terminate_backend(pg_backend_pid()))'",
            Expect::Refused(W, &["pg_terminate_backend"])
        ),
        where_case!(
            "logical message",
            "'pg_logical_emit_message(false, ''p'', ''x'') IS NULL'",
            Expect::Refused(W, &["pg_logical_emit_message"])
        ),
        where_case!(
            "query_to_xml runs SQL text",
            "'query_to_xml(''SELECT pg_sleep(1)'', true, true, '''') IS NOT NULL'",
            Expect::Refused(W, &["query_to_xml"])
        ),
        where_case!(
            "pg_read_file",
            "'pg_read_file(''/etc/passwd'') IS NOT NULL'",
            Expect::Refused(W, &["pg_read_file"])
        ),
        where_case!(
            "data-modifying CTE in subquery",
            "'id IN (WITH d AS (DELETE FROM canary RETURNING n) SELECT n FROM d)'",
            Expect::Refused(W, &["DELETE"])
        ),
        where_case!(
            "UNION after expression",
            "'x$a$ = 1 UNION SELECT 2'",
            Expect::Refused(W, &["exactly one boolean expression"])
        ),
        where_case!(
            "ORDER BY after expression",
            "'true ORDER BY 1'",
            Expect::Refused(W, &["exactly one boolean expression"])
        ),
        where_case!(
            "LIMIT after expression",
            "'x$a$ = 1 LIMIT 1'",
            Expect::Refused(W, &["exactly one boolean expression"])
        ),
        where_case!(
            "FOR UPDATE after expression",
            "'true FOR UPDATE'",
            Expect::Refused(W, &["exactly one boolean expression"])
        ),
        // Quoting forms that are legal: the export is exact.
        where_case!(
            "dollar quote with tag",
            "'note = $t$ ) OR (true $t$'",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = ' ) OR (true '")
        ),
        where_case!(
            "E string with parens",
            "'note = E'' ) OR (true '''",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = ' ) OR (true '")
        ),
        where_case!(
            "E string with backslashes",
            "'note = E''back\\\\slash\\'' quote'''",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = E'back\\\\slash'' quote'")
        ),
        where_case!(
            "standard string ending in backslash",
            "'note = ''\u{d5}\\'''",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = E'\\u00d5\\\\'")
        ),
        where_case!(
            "dollar text in literal",
            "'note = ''$a$'' OR x$a$ = 2'",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = '$a$' OR x$a$ = 2")
        ),
        where_case!(
            "nested comments",
            "'note /* nested /* ) OR (true */ still */ = ''$a$'''",
            Expect::Exact("SELECT * FROM {s}.src WHERE note = '$a$'")
        ),
        where_case!(
            "U& identifier",
            "'U&\"x\\0024a\\0024\" = 1'",
            Expect::Exact("SELECT * FROM {s}.src WHERE x$a$ = 1")
        ),
        where_case!(
            "line comment hiding a paren",
            "\"x$a$ = 1 -- ) OR (true\"",
            Expect::Exact("SELECT * FROM {s}.src WHERE x$a$ = 1")
        ),
        where_case!(
            "subquery reading the canary",
            "'(SELECT count(*) FROM canary) >= 0'",
            Expect::Exact(ALL)
        ),
        // A function not on the denylist changes the encoding: the next statement is still
        // regenerated and sent only after the session is reset and its encoding checked.
        where_case!(
            "user function setting SJIS",
            "'evil_enc() AND note IS DISTINCT FROM E''\u{d5}\\''; COMMIT; INSERT INTO canary VALUES (666); --'''",
            Expect::RefusedOrExact("client_encoding was changed to SJIS", ALL)
        ),
        // ASCII only: the plan succeeds with SJIS left on its pooled connection; each export
        // session resets it and checks UTF8 before its COPY.
        where_case!(
            "user function setting SJIS, ASCII text",
            "'evil_enc() AND x$a$ >= 0'",
            Expect::RefusedOrExact("client_encoding", ALL)
        ),
    ];
    run_cases("sec_where", &cases).await;
}

#[tokio::test]
async fn hostile_queries_and_names_are_refused_or_exact() {
    let cases = [
        query_case!(
            "two statements",
            "'SELECT id, name FROM src; INSERT INTO canary VALUES (666)'",
            Expect::Refused(Q, &["statements"])
        ),
        query_case!("COMMIT", "'COMMIT'", Expect::Refused(Q, &[])),
        query_case!(
            "SET TRANSACTION READ WRITE",
            "'SET TRANSACTION READ WRITE'",
            Expect::Refused(Q, &[])
        ),
        query_case!(
            "FOR UPDATE",
            "'SELECT id, name FROM src FOR UPDATE'",
            Expect::Refused(Q, &["locking clause"])
        ),
        query_case!(
            "FOR SHARE in subquery",
            "'SELECT * FROM (SELECT id FROM src FOR SHARE) s'",
            Expect::Refused(Q, &["locking clause"])
        ),
        query_case!(
            "data-modifying CTE",
            "'WITH d AS (INSERT INTO canary VALUES (666) RETURNING n) SELECT n AS id FROM d'",
            Expect::Refused(Q, &["INSERT"])
        ),
        query_case!(
            "SELECT INTO",
            "'SELECT id, name INTO TEMP stolen FROM src'",
            Expect::Refused(Q, &["INTO"])
        ),
        query_case!(
            "set_config SJIS",
            "'SELECT id, set_config(''client_encoding'', ''SJIS'', false) AS e FROM src'",
            Expect::Refused(Q, &["function set_config is not allowed"])
        ),
        query_case!(
            "lo_from_bytea",
            "'SELECT id, lo_from_bytea(0, ''x'') AS lo FROM src'",
            Expect::Refused(Q, &["lo_from_bytea"])
        ),
        query_case!(
            "lo_unlink",
            "'SELECT id, lo_unlink(id::oid) AS lo FROM src'",
            Expect::Refused(Q, &["lo_unlink"])
        ),
        query_case!(
            "advisory lock",
            "'SELECT id, pg_advisory_lock(id) AS l FROM src'",
            Expect::Refused(Q, &["pg_advisory_lock"])
        ),
        query_case!(
            "cancel backend",
            "'SELECT id FROM src WHERE id IN (SELECT pg_cancel_backend(1)::int)'",
            Expect::Refused(Q, &["pg_cancel_backend"])
        ),
        query_case!(
            "dblink in FROM",
            "'SELECT * FROM dblink(''dbname=x'', ''select 1'') AS t(id int)'",
            Expect::Refused(Q, &["dblink"])
        ),
        query_case!(
            "nextval in UNION",
            "'SELECT id FROM src UNION ALL SELECT nextval(''canary_seq'')'",
            Expect::Refused(Q, &["nextval"])
        ),
        query_case!(
            "pg_sleep in LATERAL",
            "'SELECT id FROM src, LATERAL (SELECT pg_sleep(0)) z'",
            Expect::Refused(Q, &["pg_sleep"])
        ),
        query_case!(
            "pg_notify",
            "'SELECT id, pg_notify(''c'', name) AS n FROM src'",
            Expect::Refused(Q, &["pg_notify"])
        ),
        query_case!(
            "txid_current",
            "'SELECT id, txid_current() AS t FROM src'",
            Expect::Refused(Q, &["txid_current"])
        ),
        query_case!(
            "paren escape",
            "'SELECT id FROM src) AS rj_src; INSERT INTO canary VALUES (666); SELECT * FROM (SELECT 1 AS id'",
            Expect::Refused(Q, &[])
        ),
        query_case!(
            "dollar-quoted text",
            "'SELECT id, x$a$, $q$ ) ; COMMIT $q$ AS t FROM src'",
            Expect::Exact("SELECT id, x$a$, ' ) ; COMMIT ' AS t FROM {s}.src")
        ),
        query_case!(
            "E string, U& identifier, nested comment",
            "'SELECT id, E''\\'''' AS q, U&\"x\\0024a\\0024\" FROM src /* c /* d */ */'",
            Expect::Exact("SELECT id, '''' AS q, x$a$ FROM {s}.src")
        ),
        query_case!("TABLE", "'TABLE src'", Expect::Exact(ALL)),
        Case {
            what: "table with a statement",
            source: "    table: 'src; DROP TABLE canary'\n    keyColumn: id",
            expect: Expect::Refused("spec.source.table", &[]),
        },
        Case {
            what: "quoted table name with a statement",
            source: "    table: '\"src\"\"; DROP TABLE canary; --\"'\n    keyColumn: id",
            expect: Expect::Refused("spec.source.table", &[]),
        },
        Case {
            what: "column with a statement",
            source: "    table: {s}.src\n    keyColumn: id\n    columns: [id, 'name) FROM canary; --']",
            expect: Expect::Refused("spec.source.columns", &[]),
        },
        Case {
            what: "quoted dollar column",
            source: "    table: {s}.src\n    keyColumn: id\n    columns: ['\"x$a$\"', id]",
            expect: Expect::Exact("SELECT x$a$, id FROM {s}.src"),
        },
        Case {
            what: "keyColumn with a paren",
            source: "    table: {s}.src\n    keyColumn: 'id) OR (true'",
            expect: Expect::Refused("spec.source.keyColumn", &[]),
        },
        Case {
            what: "dollar keyColumn",
            source: "    table: {s}.src\n    keyColumn: x$a$",
            expect: Expect::Exact(ALL),
        },
    ];
    run_cases("sec_query", &cases).await;
}

/// A staged plan is data (ranges), checked against the spec before reuse: editing its
/// bounds into SQL, even with a recomputed digest, is refused, and nothing runs.
#[tokio::test]
async fn tampered_staged_plan_is_refused() {
    let mut db = TestDb::new("sec_plan").await;
    db.exec(SETUP).await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .chunk_size(100)
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let spec_arg = spec.to_str().unwrap();
    let out = work.reportjob(&["plan", "-f", spec_arg, "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan_path = glob_plan(&work.output_dir());
    let text = std::fs::read_to_string(&plan_path).unwrap();
    for sql in ["SELECT", "key_sql", "from_sql", "filter_sql", "\\\"src\\\""] {
        assert!(!text.contains(sql), "the plan holds SQL ({sql}): {text}");
    }
    let mut plan: reportjob::plan::Plan = serde_json::from_str(&text).unwrap();
    plan.chunks[1].lo = Some("0'::bigint) OR (true".into());
    let plan = plan.seal();
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let before = side_effects(&mut db).await;
    let out = work.reportjob(&["run", "-f", spec_arg]);
    assert!(!out.status.success(), "a tampered plan ran");
    assert!(
        stderr(&out).contains("not a bigint value"),
        "{}",
        stderr(&out)
    );
    assert_eq!(side_effects(&mut db).await, before);
}

fn glob_plan(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "plan.json") {
                return p;
            }
        }
    }
    panic!("no plan.json under {}", dir.display());
}
