//! `reportjob run` under one snapshot on a hot standby: a throwaway primary and a streaming
//! standby of it (initdb, pg_basebackup -R, the same Postgres binaries as the test server),
//! each on its own port in a temporary directory, stopped when the test ends. The report read
//! from the standby is exactly the primary's rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, PgConnection};

use crate::common::free_port;
use crate::common::{self, eventually};

/// The directory of the Postgres server binaries (`PG_BINDIR`, else the newest under
/// /usr/lib/postgresql).
fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the Postgres server binaries under /usr/lib/postgresql (or set PG_BINDIR)")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("no initdb under /usr/lib/postgresql")
}

/// Runs a server tool as the `postgres` user when the test runs as root (Postgres refuses
/// root), else as the test's own user.
fn as_postgres(tool: &str, args: &[&str]) {
    let program = bindir().join(tool);
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let output = if root {
        let mut line = shell_quote(program.to_str().unwrap());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &line])
            .output()
    } else {
        Command::new(&program).args(args).output()
    }
    .unwrap();
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A server of a data directory, on a port, stopped (immediately) when dropped.
struct Server {
    data: PathBuf,
    port: u16,
}

impl Server {
    fn start(data: &Path, sockets: &Path) -> Server {
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            sockets.display()
        );
        let log = data.with_extension("log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Server {
            data: data.to_path_buf(),
            port,
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let _ = std::panic::catch_unwind(|| {
            as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_exports_under_one_snapshot_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let uid = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
    let primary_data = dir.path().join("primary");
    let standby_data = dir.path().join("standby");

    as_postgres(
        "initdb",
        &[
            "-D",
            primary_data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
    );
    let primary = Server::start(&primary_data, dir.path());
    let mut conn = PgConnection::connect(&primary.url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text, at timestamptz);
         INSERT INTO orders SELECT g, md5(g::text), timestamptz '2025-01-01' + g * interval '1 h'
           FROM generate_series(1, 5000) g;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let port = primary.port.to_string();
    as_postgres(
        "pg_basebackup",
        &[
            "-D",
            standby_data.to_str().unwrap(),
            "-R",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-X",
            "stream",
            "-c",
            "fast",
        ],
    );
    let standby = Server::start(&standby_data, dir.path());
    // Rows written after the base backup arrive by streaming replication.
    sqlx::raw_sql(
        "INSERT INTO orders SELECT g, md5(g::text), NULL FROM generate_series(5001, 6000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut on_standby = PgConnection::connect(&standby.url()).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut on_standby)
        .await
        .unwrap();
    assert!(in_recovery, "the second server is a standby");
    let standby_url = standby.url();
    eventually("the standby to replay the last rows", || {
        let url = standby_url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.ok()?;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
                .fetch_one(&mut conn)
                .await
                .ok()?;
            (n == 6000).then_some(())
        }
    })
    .await;

    let url = standby.url();
    let (work, out) =
        tokio::task::block_in_place(|| crate::pooler::snapshot_run("public.orders", &url));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let result = common::run_json(&out);
    assert_eq!(result["rows"], 6000);
    assert!(result["snapshot"]["id"].as_str().is_some(), "{result}");

    // The primary's own CSV of the same rows (COPY, in the session settings reportjob uses),
    // byte for byte.
    sqlx::raw_sql("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut copy = conn
        .copy_out_raw("COPY (SELECT * FROM orders ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    let mut expected = Vec::new();
    while let Some(bytes) = futures::StreamExt::next(&mut copy).await {
        expected.extend_from_slice(&bytes.unwrap());
    }
    drop(copy);
    let expected = String::from_utf8(expected).unwrap();
    let report = std::fs::read_to_string(work.output_dir().join("orders.csv")).unwrap();
    assert_eq!(report.lines().count(), 6001);
    assert!(
        report == expected,
        "the standby's report is the primary's rows"
    );
}
