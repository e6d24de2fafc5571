//! The playground `scripts/cluster-demo.sh --until-complete`: the test cluster (the real control
//! plane and our node agent, through `scripts/testbed.sh`), the controller, the demo database and
//! the cluster examples, run to completion; every report holds exactly the rows of its example's
//! source.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use reportjob::api::load::load_file;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use std::io::Read as _;
use std::path::Path;

/// The demo's own database, so that the test neither depends on nor disturbs `scripts/demo.sh`'s.
const DATABASE: &str = "reportjob_demo_it";

/// The rows an example exports, as SQL over the demo database.
fn source_query(example: &Path) -> String {
    let spec = load_file(example).unwrap().spec;
    let s = spec.source;
    match (s.table, s.query) {
        (Some(table), None) => {
            let columns = s.columns.map_or("*".to_string(), |c| c.join(", "));
            let filter = s.where_.map_or(String::new(), |w| format!(" WHERE {w}"));
            format!("SELECT {columns} FROM {table}{filter}")
        }
        (None, Some(query)) => query,
        _ => unreachable!("examples are valid"),
    }
}

/// Loads a CSV report (with header; gzip when named `.gz`) into a temporary table shaped like
/// `query`'s output and returns (rows of the source, rows of the report, rows that differ).
async fn compare(conn: &mut PgConnection, report: &Path, query: &str) -> (i64, i64, i64) {
    let raw = std::fs::read(report).unwrap();
    let data = if report.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS loaded; \
         CREATE TEMP TABLE loaded AS SELECT * FROM ({query}) AS s WHERE false"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let mut copy = conn
        .copy_in_raw("COPY loaded FROM STDIN WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    copy.send(data).await.unwrap();
    copy.finish().await.unwrap();
    let source = scalar(conn, format!("SELECT count(*) FROM ({query}) AS s")).await;
    let loaded = scalar(conn, "SELECT count(*) FROM loaded".into()).await;
    let differ = scalar(
        conn,
        format!("SELECT count(*) FROM (({query}) EXCEPT ALL SELECT * FROM loaded) AS d"),
    )
    .await;
    (source, loaded, differ)
}

async fn scalar(conn: &mut PgConnection, sql: String) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_demo_runs_every_example_to_an_exact_report() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(root.join("scripts/cluster-demo.sh"))
        .arg("--until-complete")
        .env("REPORTJOB_BIN", env!("CARGO_BIN_EXE_reportjob"))
        .env("DEMO_DIR", dir.path())
        .env("DEMO_DATABASE", DATABASE)
        .env("DEMO_SERVER_URL", crate::common::server_url())
        // Generous: debug binaries on a loaded 2-core machine.
        .env("DEMO_TIMEOUT", "1500")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = || {
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        format!(
            "--- controller.log\n{}\n--- testbed.log\n{}",
            read("controller.log"),
            read("testbed.log")
        )
    };
    assert!(
        out.status.success(),
        "cluster-demo.sh failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        logs()
    );
    assert!(
        stderr.contains(&dir.path().join("kubeconfig").display().to_string()),
        "the kubeconfig path is printed: {stderr}"
    );

    // Every example that writes to the PVC produced its report, holding exactly its source rows.
    let pvc = dir.path().join("pv/demo/reports");
    let mut conn = PgConnection::connect(&format!("{}/{DATABASE}", crate::common::server_url()))
        .await
        .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let example = entry.unwrap().path();
        let is_reportjob = std::fs::read_to_string(&example)
            .is_ok_and(|text| text.lines().any(|l| l == "kind: ReportJob"));
        if example.extension().is_none_or(|e| e != "yaml") || !is_reportjob {
            continue;
        }
        let rj = load_file(&example).unwrap();
        let Some(dest) = rj.spec.output.destination.pvc.as_ref() else {
            continue;
        };
        let name = rj.metadata.name.clone().unwrap();
        let report = pvc.join(&dest.path);
        assert!(report.exists(), "{name}: no report at {}", report.display());
        let (source, loaded, differ) = compare(&mut conn, &report, &source_query(&example)).await;
        assert!(source > 0, "{name}: the demo data has rows for it");
        assert_eq!(
            loaded, source,
            "{name}: the report has the source's row count"
        );
        assert_eq!(differ, 0, "{name}: every source row is in the report");
        // The script's summary line: `<name> <rows> <location>`.
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name} {source} "))),
            "{name}: summary with {source} rows in:\n{stdout}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "cluster examples checked: {checked}");
}
