//! `reportjob run` through PgBouncer (the Debian package, installed by `scripts/tools.sh`'s
//! `ensure_pgbouncer`): in session mode a run under one snapshot is exact; in transaction
//! mode, where a client's statements do not keep one server session, the run stops at
//! planning with an error that says to connect directly or through session pooling.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sqlx::postgres::PgConnectOptions;

use crate::common::free_port;
use crate::common::spec::SpecBuilder;
use crate::common::{self, TestDb, Workdir, eventually_blocking};

/// A PgBouncer in front of the test server, stopped when dropped.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(pool_mode: &str) -> Bouncer {
        let bin = std::env::var("PGBOUNCER").unwrap_or_else(|_| "/usr/sbin/pgbouncer".into());
        assert!(
            Path::new(&bin).exists(),
            "{bin} is missing: scripts/test.sh installs PgBouncer (ensure_pgbouncer)"
        );
        let server: PgConnectOptions = common::server_url().parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nauth_type = trust\nauth_file = {}\npool_mode = {pool_mode}\n\
                 unix_socket_dir =\nignore_startup_parameters = extra_float_digits,options\n",
                server.get_host(),
                server.get_port(),
                users.display()
            ),
        )
        .unwrap();
        // PgBouncer will not run as root: it switches to `nobody`, who must read its files.
        for path in [dir.path(), &users, &ini] {
            let mode = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut command = Command::new(&bin);
        if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually_blocking(&format!("PgBouncer ({pool_mode}) listening"), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(drop)
        });
        Bouncer {
            child,
            port,
            _dir: dir,
        }
    }

    /// The test database's URL through this PgBouncer.
    fn database_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            common::database_url().rsplit('/').next().unwrap()
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn orders(db: &mut TestDb) -> String {
    db.exec(
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), note text);
         INSERT INTO orders SELECT g, g * 1.25, 'order ' || g FROM generate_series(1, 5000) g;",
    )
    .await;
    db.table("orders")
}

/// `reportjob run` of `table` (key `id`, 500-row chunks, parallelism 2, one snapshot) against
/// `database_url`, into a new work directory (shared with the standby test).
pub(crate) fn snapshot_run(table: &str, database_url: &str) -> (Workdir, std::process::Output) {
    let work = Workdir::new();
    let yaml = SpecBuilder::table(table)
        .key("id")
        .chunk_size(500)
        .parallelism(2)
        .set("spec.source.consistency", "Snapshot")
        .pvc("reports", "orders.csv")
        .build_yaml();
    let spec = work.spec("spec.yaml", &yaml);
    let out = work.reportjob_with(
        &["run", "-f", spec.to_str().unwrap(), "--json"],
        &[("DATABASE_URL", database_url)],
    );
    (work, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_runs_under_one_snapshot_exactly() {
    let mut db = TestDb::new("pooler_session").await;
    let table = orders(&mut db).await;
    let bouncer = Bouncer::start("session");
    let (work, out) = tokio::task::block_in_place(|| snapshot_run(&table, &bouncer.database_url()));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let result = common::run_json(&out);
    assert_eq!(result["rows"], 5000);
    assert_eq!(result["chunks"]["total"], 10);
    assert!(
        result["snapshot"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{result}"
    );
    db.assert_report_matches(
        &work.output_dir().join("orders.csv"),
        &format!("SELECT * FROM {table} ORDER BY id"),
        "",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_is_refused_with_what_to_use_instead() {
    let mut db = TestDb::new("pooler_transaction").await;
    let table = orders(&mut db).await;
    let bouncer = Bouncer::start("transaction");
    let (work, out) = tokio::task::block_in_place(|| snapshot_run(&table, &bouncer.database_url()));
    let err = common::stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(reportjob::error::EXIT_PERMANENT),
        "{err}"
    );
    assert!(
        err.contains("pooler in transaction mode")
            && err.contains("pool_mode=session")
            && err.contains("connect directly"),
        "{err}"
    );
    assert!(
        !work.output_dir().join("orders.csv").exists(),
        "nothing published"
    );
}
