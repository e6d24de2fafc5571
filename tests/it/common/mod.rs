//! Shared helpers for integration tests: a schema of one's own in the real Postgres (dropped
//! when the test ends, also by a panic), order-independent checksums, loading a CSV back,
//! running the real binary, and waiting on conditions with a generous ceiling.
#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly on unexpected errors

pub mod s3;
pub mod spec;
pub mod testbed;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

/// The server tests use; `TEST_DATABASE_URL` overrides it.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The test database's URL (created on first use).
pub fn database_url() -> String {
    format!("{}/reportjob_test", server_url())
}

async fn ensure_database() {
    let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("Postgres must be running on 127.0.0.1:5432 (see scripts/test.sh)");
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'reportjob_test')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    if !exists {
        // Tests run in parallel: a concurrent creation is fine.
        let _ = sqlx::raw_sql("CREATE DATABASE reportjob_test")
            .execute(&mut admin)
            .await;
    }
}

/// The one wait on a condition, with its ceiling ([`PATIENCE`]).
pub use ::testbed::wait::{
    PATIENCE, POLL_INTERVAL, eventually, eventually_blocking, poll, poll_blocking,
};

/// A free TCP port on loopback (the OS picks; nothing listens on it when this returns).
pub fn free_port() -> u16 {
    ::testbed::free_port().unwrap()
}

/// A schema owned by one test, dropped when the `TestDb` is (at the end of the test, or
/// while a failed assertion unwinds).
pub struct TestDb {
    pub schema: String,
    pub conn: PgConnection,
    // Declared after `conn`, so dropped after it: the test's own connection is closed (and
    // whatever it held released) before the schema is dropped.
    _dropper: SchemaDropper,
}

/// Drops a schema from its own connection, on a thread of its own with its own runtime:
/// `Drop` cannot await, may run inside the test's single-threaded runtime (blocking on that
/// runtime would deadlock) and may run during a panic (so it never panics itself).
struct SchemaDropper(String);

impl Drop for SchemaDropper {
    fn drop(&mut self) {
        let schema = std::mem::take(&mut self.0);
        let sql = format!("SET lock_timeout = '60s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&database_url())
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test schema {} not dropped: {e}", self.0),
            Err(_) => eprintln!("warning: dropping test schema {} panicked", self.0),
        }
    }
}

impl TestDb {
    pub async fn new(name: &str) -> TestDb {
        ensure_database().await;
        let schema = format!("t_{name}_{:08x}", rand::random::<u32>());
        let mut conn = PgConnection::connect(&database_url()).await.unwrap();
        // Every schema has `slow_row(seconds)`: a filter that sleeps per row, for tests that
        // must act while a chunk streams (a spec may not call pg_sleep itself: it is on the
        // side-effect denylist; a function of the schema is the spec author's own code).
        // `gate_row(id, at, key)` blocks the row `at` of an export (a `COPY`: the plan's
        // counts pass) while the test holds advisory lock `key`: a run stopped at a chosen row
        // for as long as the test needs, not for a guessed time.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {schema}; CREATE FUNCTION {schema}.slow_row(seconds double precision) \
             RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(seconds) IS NOT NULL'; \
             CREATE FUNCTION {schema}.gate_row(id bigint, at bigint, key bigint) \
             RETURNS boolean LANGUAGE sql AS 'SELECT CASE \
             WHEN id = at AND position(''COPY ('' in current_query()) > 0 THEN \
             pg_advisory_lock_shared(key) IS NOT NULL AND pg_advisory_unlock_shared(key) \
             ELSE true END'"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        TestDb {
            _dropper: SchemaDropper(schema.clone()),
            schema,
            conn,
        }
    }

    /// Creates `src (id bigint PRIMARY KEY, label text)` with ids 1 to `rows`.
    pub async fn numbers(&mut self, rows: u32) {
        self.exec(&format!(
            "CREATE TABLE src (id bigint PRIMARY KEY, label text);
             INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, {rows}) AS g;"
        ))
        .await;
    }

    /// Takes advisory lock `key` on this connection: a run whose filter is
    /// [`gate_filter`] with the same key waits at its row until [`TestDb::release_gate`].
    pub async fn hold_gate(&mut self, key: i64) {
        self.exec(&format!("SELECT pg_advisory_lock({key})")).await;
    }

    /// Releases the advisory lock taken by [`TestDb::hold_gate`].
    pub async fn release_gate(&mut self, key: i64) {
        self.exec(&format!("SELECT pg_advisory_unlock({key})"))
            .await;
    }

    /// Runs SQL (several statements allowed) with the test's schema first on the search path.
    pub async fn exec(&mut self, sql: &str) {
        let full = format!("SET search_path = {}, public; {sql}", self.schema);
        sqlx::raw_sql(AssertSqlSafe(full))
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"));
    }

    /// `schema.name`.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    /// Row count and an order-independent checksum (sum of a hash of each row's text form)
    /// of the rows of `query`, computed with UTC output so timestamps compare alike.
    pub async fn checksum(&mut self, query: &str) -> (i64, String) {
        sqlx::raw_sql(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1",
        )
        .execute(&mut self.conn)
        .await
        .unwrap();
        let sql = format!(
            "SELECT count(*)::int8, coalesce(sum(('x' || substr(md5(r::text), 1, 15))::bit(60)::int8), 0)::text
               FROM ({query}) AS r"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut self.conn)
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Loads a CSV report (plain or gzip) into a new table shaped like `shape_query`'s
    /// output, with COPY ... (FORMAT csv, HEADER), and returns that table's name.
    pub async fn load_csv(
        &mut self,
        path: &Path,
        shape_query: &str,
        null_string: &str,
        gzip: bool,
    ) -> String {
        let loaded = format!(
            "{}.loaded_{:06x}",
            self.schema,
            rand::random::<u32>() & 0xffffff
        );
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {loaded} AS SELECT * FROM ({shape_query}) AS s WHERE false"
        )))
        .execute(&mut self.conn)
        .await
        .unwrap();
        let raw = std::fs::read(path).unwrap();
        let data = if gzip {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        };
        let null = null_string.replace('\'', "''");
        let mut copy = self
            .conn
            .copy_in_raw(&format!(
                "COPY {loaded} FROM STDIN WITH (FORMAT csv, HEADER, NULL '{null}')"
            ))
            .await
            .unwrap();
        copy.send(data).await.unwrap();
        copy.finish().await.unwrap();
        loaded
    }
}

/// A temporary directory with a spec file and an output directory.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn output_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Writes a spec and returns its path.
    pub fn spec(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Runs `reportjob <args>` with the test database and this output directory.
    pub fn reportjob(&self, args: &[&str]) -> Output {
        self.reportjob_with(args, &[])
    }

    /// Runs `reportjob <args>` with extra environment variables.
    pub fn reportjob_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.output_dir();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"));
        command
            .args(args)
            .arg("--output-dir")
            .arg(&out)
            .env("DATABASE_URL", database_url())
            .env_remove("REPORTJOB_SPEC");
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
        ] {
            command.env_remove(key);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses the JSON that `run --json` prints.
pub fn run_json(o: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

impl TestDb {
    /// Loads the report at `path` back and asserts it holds exactly the rows of
    /// `source_query` (same count, same order-independent checksum).
    pub async fn assert_report_matches(
        &mut self,
        path: &Path,
        source_query: &str,
        null_string: &str,
        gzip: bool,
    ) {
        let source = self.checksum(source_query).await;
        let loaded = self.load_csv(path, source_query, null_string, gzip).await;
        let reloaded = self.checksum(&format!("SELECT * FROM {loaded}")).await;
        assert_eq!(
            reloaded,
            source,
            "report {} differs from the source",
            path.display()
        );
    }

    /// `SELECT * FROM <schema>.<table>`.
    pub fn all(&self, table: &str) -> String {
        format!("SELECT * FROM {}", self.table(table))
    }
}

/// Watches for the COPY of a chunk of `schema`'s tables and, once it has sent `after_rows`
/// rows (`pg_stat_progress_copy`: a condition, not a guess at how long it streams), kills its
/// backend with `pg_terminate_backend`. Resolves to whether it did.
pub fn terminate_copy_backend(schema: &str, after_rows: i64) -> tokio::task::JoinHandle<bool> {
    terminate_backend_found_by(format!(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_stat_progress_copy p USING (pid)
          WHERE a.application_name = 'reportjob' AND a.state = 'active'
            AND a.query LIKE 'COPY%' AND a.query LIKE '%{schema}%'
            AND p.tuples_processed >= {after_rows}"
    ))
}

/// Polls `find_pid` (a query giving at most one backend's pid) until it finds one, then
/// kills that backend with `pg_terminate_backend`. Resolves to whether it did (within
/// [`PATIENCE`]).
pub fn terminate_backend_found_by(find_pid: String) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        let mut conn = PgConnection::connect(&database_url()).await.unwrap();
        // Not [`poll`]: a task spawned on the runtime must be `Send`, which the futures of
        // an async closure cannot yet promise; the same loop, written out.
        let deadline = Instant::now() + PATIENCE;
        let pid = loop {
            let found = sqlx::query_scalar::<_, i32>(AssertSqlSafe(find_pid.clone()))
                .fetch_optional(&mut conn)
                .await
                .unwrap();
            match found {
                Some(pid) => break pid,
                None if Instant::now() >= deadline => return false,
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
        };
        sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    })
}

/// A `where` that sleeps `seconds` per row, through the schema's `slow_row` function.
pub fn slow_filter(schema: &str, seconds: f64) -> String {
    format!("{schema}.slow_row({seconds})")
}

/// A `where` that stops the export at row `at` of `key_column` while the test holds advisory
/// lock `key` (see [`TestDb::hold_gate`]), through the schema's `gate_row` function.
pub fn gate_filter(schema: &str, key_column: &str, at: i64, key: i64) -> String {
    format!("{schema}.gate_row({key_column}, {at}, {key})")
}

/// sha256 of `bytes`, hex: what manifests, results and statuses record.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
