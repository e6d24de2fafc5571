//! One database snapshot for a whole run: a holder session opens a `REPEATABLE READ, READ
//! ONLY` transaction, exports its snapshot (`pg_export_snapshot()`) and stays open; every
//! other session of the run imports it (`SET TRANSACTION SNAPSHOT`), so planning and all
//! chunks read the same moment of the database, as pg_dump's parallel workers do.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::error::{Error, Result};
use crate::source::Database;

pub use reportjob_core::snapshot::{GENERATION_ENV, SnapshotId, SnapshotRecord, StagedSnapshot};

/// Longest a stage pod waits for the holder to stage the snapshot of its generation.
pub const STAGED_WAIT: Duration = Duration::from_secs(300);

/// Writes the staged snapshot of the run.
pub async fn write_staged(
    storage: &dyn crate::storage::Storage,
    layout: &crate::staging::Layout,
    staged: &StagedSnapshot,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(staged)
        .map_err(|e| Error::Encoding(format!("cannot serialize the snapshot record: {e}")))?;
    storage.write(&layout.snapshot_key(), json.into()).await
}

/// Waits (up to `wait`) for the holder to stage the snapshot of `generation`, and returns
/// it. The file is untrusted: it is parsed into a strict record (the id's syntax checked).
pub async fn staged(
    storage: &dyn crate::storage::Storage,
    layout: &crate::staging::Layout,
    generation: u32,
    wait: Duration,
) -> Result<SnapshotRecord> {
    let key = layout.snapshot_key();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(bytes) = storage.read(&key).await? {
            let staged: StagedSnapshot = serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidStaged(format!(
                    "{} is not a valid snapshot record: {e}",
                    storage.location(&key)
                ))
            })?;
            if staged.generation == generation {
                return Ok(staged.snapshot);
            }
            if staged.generation > generation {
                return Err(Error::SnapshotLost {
                    id: staged.snapshot.id.to_string(),
                    detail: format!(
                        "this pod belongs to snapshot generation {generation}, the run is at {}",
                        staged.generation
                    ),
                });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotStaged(format!(
                "no snapshot of generation {generation} was staged at {} within {}s: the                  snapshot holder pod did not export one",
                storage.location(&key),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The session that holds a run's snapshot open. Dropped, its connection closes and the
/// snapshot is gone.
pub struct SnapshotHolder {
    conn: PgConnection,
    record: SnapshotRecord,
}

impl SnapshotHolder {
    /// Opens a connection of its own (outside the pool), starts a `REPEATABLE READ, READ
    /// ONLY` transaction and exports its snapshot. The server ends the transaction (and
    /// with it the snapshot) once it has been idle for `max_age`.
    pub async fn take(db: &Database, max_age: Duration) -> Result<SnapshotHolder> {
        let mut conn = db.connect_alone().await?;
        let db_err = |e| Error::db("exporting the run's snapshot", e);
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(db_err)?;
        let max_ms = max_age.as_millis().min(i32::MAX as u128).to_string();
        let (id, taken_at): (String, String) = sqlx::query_as(
            "SELECT pg_export_snapshot(),
                    to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
               FROM (SELECT set_config('idle_in_transaction_session_timeout', $1, true),
                            set_config('application_name', 'reportjob snapshot holder', true)) AS s",
        )
        .bind(&max_ms)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| snapshot_unavailable(&e).unwrap_or_else(|| db_err(e)))?;
        let id = SnapshotId::parse(&id).map_err(|m| {
            Error::InvalidStaged(format!("the server exported a snapshot whose id {m}"))
        })?;
        let taken_at = taken_at.parse().map_err(|e| {
            Error::InvalidStaged(format!(
                "the snapshot's time {taken_at:?} is not a timestamp: {e}"
            ))
        })?;
        Ok(SnapshotHolder {
            conn,
            record: SnapshotRecord { id, taken_at },
        })
    }

    /// The held snapshot.
    pub fn record(&self) -> &SnapshotRecord {
        &self.record
    }

    /// Checks the holding session is still there (its transaction open).
    pub async fn check_alive(&mut self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(|e| Error::SnapshotLost {
                id: self.record.id.to_string(),
                detail: format!(
                    "the session holding it ended: {}",
                    crate::error::describe_sqlx(&e)
                ),
            })
    }

    /// Ends the holding transaction: the snapshot is released.
    pub async fn release(mut self) -> Result<()> {
        let _ = sqlx::query("COMMIT").execute(&mut self.conn).await;
        self.conn
            .close()
            .await
            .map_err(|e| Error::db("releasing the run's snapshot", e))
    }
}

/// How often the holder pod checks its session is still there.
const HOLD_CHECK: Duration = Duration::from_secs(2);

/// The `<name>-snapshot` pod's work (`reportjob snapshot`): exports the run's snapshot,
/// stages it for `generation`, and holds it until the pod is stopped (SIGTERM: the report
/// was published or the run ended), its session is lost, or `max_age` (the spec's
/// `snapshotMaxSeconds`) passes (both [`Error::SnapshotLost`], which makes the controller
/// start the export again).
pub async fn hold(
    db: &Database,
    storage: &dyn crate::storage::Storage,
    layout: &crate::staging::Layout,
    max_age: Duration,
    generation: u32,
) -> Result<String> {
    let mut holder = SnapshotHolder::take(db, max_age).await?;
    let record = holder.record().clone();
    write_staged(
        storage,
        layout,
        &StagedSnapshot {
            generation,
            snapshot: record.clone(),
        },
    )
    .await?;
    eprintln!(
        "holding snapshot {} (generation {generation}, taken {}) for at most {}s",
        record.id,
        record.taken_at,
        max_age.as_secs()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::storage("waiting for SIGTERM", e))?;
    let deadline = tokio::time::Instant::now() + max_age;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Error::SnapshotLost {
                    id: record.id.to_string(),
                    detail: format!("held for spec.source.snapshotMaxSeconds ({}s)", max_age.as_secs()),
                });
            }
            _ = tokio::time::sleep(HOLD_CHECK) => holder.check_alive().await?,
        }
    }
    holder.release().await?;
    Ok(format!(
        "snapshot={} generation={generation} released",
        record.id
    ))
}

/// A server that cannot export snapshots (a hot standby before Postgres 10, a proxy that
/// refuses it) says so; the error then says what to do instead.
fn snapshot_unavailable(e: &sqlx::Error) -> Option<Error> {
    let db = e.as_database_error()?;
    Some(Error::Source {
        field: "spec.source.consistency",
        message: format!(
            "this database cannot export a snapshot ({}); use consistency: PerChunk or a direct connection",
            crate::error::describe_sqlx(e)
        ),
    })
    .filter(|_| db.code().is_some())
}
