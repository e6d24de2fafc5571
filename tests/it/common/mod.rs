//! Shared helpers for integration tests: a schema of one's own in the real Postgres,
//! order-independent checksums, loading a CSV back, and running the real binary.
#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly on unexpected errors

pub mod cluster;
pub mod s3;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

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

/// A schema owned by one test, dropped at the end.
pub struct TestDb {
    pub schema: String,
    pub conn: PgConnection,
}

impl TestDb {
    pub async fn new(name: &str) -> TestDb {
        ensure_database().await;
        let schema = format!("t_{name}_{:08x}", rand::random::<u32>());
        let mut conn = PgConnection::connect(&database_url()).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        TestDb { schema, conn }
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

    pub async fn drop_schema(mut self) {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&mut self.conn)
        .await;
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

/// A table-mode spec with the given body lines under `spec:`.
pub fn table_spec(
    table: &str,
    key: &str,
    extra_source: &str,
    chunking: &str,
    output: &str,
) -> String {
    format!(
        r#"apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: test}}
spec:
  source:
    connectionSecretRef: {{name: db}}
    table: {table}
    keyColumn: {key}
{extra_source}
  chunking: {chunking}
  output:
{output}
  worker: {{retriesPerChunk: 3}}
"#
    )
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

/// Watches for the COPY of a chunk of `schema`'s tables and, once it has streamed for
/// `after`, kills its backend with `pg_terminate_backend`. Resolves to whether it did.
pub fn terminate_copy_backend(
    schema: &str,
    after: std::time::Duration,
) -> tokio::task::JoinHandle<bool> {
    let schema = schema.to_string();
    tokio::spawn(async move {
        let mut conn = PgConnection::connect(&database_url()).await.unwrap();
        for _ in 0..400 {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                  WHERE application_name = 'reportjob' AND state = 'active'
                    AND query LIKE 'COPY%' AND query LIKE '%' || $1 || '%'",
            )
            .bind(&schema)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
            if let Some(pid) = pid {
                tokio::time::sleep(after).await;
                return sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        false
    })
}
