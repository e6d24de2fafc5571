//! Stage two: exporting one chunk: stream the format's `COPY (<chunk query>) TO STDOUT`, rebuilt from
//! the spec and regenerated from its parse tree ([`copy_statement`]), from a
//! read-only transaction into a part, optionally gzip or zstd, with bounded memory, then
//! publish the part and its manifest. A re-run overwrites both, so retries never duplicate
//! rows. What the bytes are is the format's business ([`crate::formats`]).
//!
//! For CSV, Postgres's own encoder is used rather than encoding rows here: it is the fastest
//! path (no per-value decoding in the client) and gives exactly the bytes `psql \copy`
//! gives: RFC 4180 quoting, NULL written as the spec's `nullString` unquoted, an empty
//! string as `""`, and any value equal to the NULL string quoted.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::formats::PartEncoding;
use crate::staging::{PartManifest, check_part};
use backon::Retryable;
use futures::TryStreamExt;
use reportjob_core::api::valid::ValidSpec;
use reportjob_core::plan::Plan;

use super::StageContext;

use crate::formats::compress::Compressor;
use crate::source::statement::SourceSql;
use crate::storage::{Durability, ObjectWriter};

/// Bytes gathered before they are handed to storage.
const WRITE_BATCH: usize = 256 * 1024;

/// The `COPY` statement that streams chunk `index` in the plan's format, rebuilt from the validated
/// `spec` (never from SQL stored in the plan) and regenerated from its parse tree: exactly
/// one `COPY (SELECT ...) TO STDOUT`, checked like the spec's own SQL.
pub fn copy_statement(spec: &ValidSpec, plan: &Plan, index: usize) -> Result<String> {
    let chunk = plan.chunks.get(index).ok_or_else(|| {
        Error::PlanMismatch(format!(
            "chunk {index} is not in the plan ({} chunks)",
            plan.chunks.len()
        ))
    })?;
    let mut sql = SourceSql::build(&spec.source, &plan.source)?;
    sql.limit_values(spec.output.max_value_bytes, &plan.source);
    let text = PartEncoding::new(&plan.format).format_copy(&sql, &plan.source, chunk)?;
    reportjob_core::sql::regenerate_copy_to_stdout(&text).map_err(|e| {
        Error::PlanMismatch(format!("the statement of chunk {index} was refused: {e}"))
    })
}

/// A failed `COPY`: a value over `output.maxValueBytes` (the guard's failed cast, see
/// [`crate::source::value_limit`]) or the server's error as it is.
fn copy_error(context: &str, e: sqlx::Error, spec: &ValidSpec, plan: &Plan) -> Error {
    let over = e.as_database_error().and_then(|db| {
        (db.code().as_deref() == Some("22P02"))
            .then(|| crate::source::value_limit::read_error(db.message(), &plan.source.columns))
            .flatten()
    });
    match over {
        Some(v) => Error::ValueTooLarge {
            column: v.column,
            key: v.key,
            bytes: v.bytes,
            limit: spec.output.max_value_bytes,
        },
        None => Error::db(context, e),
    }
}

/// A cancellation token as a flag one atomic load reads: the token's own check takes a
/// lock, which per row of a chunk was a measurable share of an export's CPU.
struct CancelFlag {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl CancelFlag {
    /// A flag set once `token` is cancelled.
    fn watch(token: &tokio_util::sync::CancellationToken) -> CancelFlag {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(token.is_cancelled()));
        let (set, token) = (flag.clone(), token.clone());
        let watcher = tokio::spawn(async move {
            token.cancelled().await;
            set.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        CancelFlag { flag, watcher }
    }

    fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for CancelFlag {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Gathers a part's bytes in batches, compresses them (on a blocking thread, so that
/// chunks exported at once compress in parallel), checksums and stores them.
struct PartSink {
    writer: Box<dyn ObjectWriter>,
    compressor: Option<Compressor>,
    batch: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl PartSink {
    fn new(writer: Box<dyn ObjectWriter>, compressor: Option<Compressor>) -> PartSink {
        PartSink {
            writer,
            compressor,
            batch: Vec::with_capacity(WRITE_BATCH),
            crc: crc32fast::Hasher::new(),
        }
    }

    async fn push(&mut self, data: &[u8]) -> Result<()> {
        // Sent on before it would outgrow its capacity (a grown batch doubles its memory).
        if !self.batch.is_empty() && self.batch.len() + data.len() > self.batch.capacity() {
            self.flush_batch(false).await?;
        }
        self.batch.extend_from_slice(data);
        if self.batch.len() >= WRITE_BATCH {
            self.flush_batch(false).await?;
        }
        Ok(())
    }

    /// Sends the batch on (through the compressor, which is finished when `last`).
    async fn flush_batch(&mut self, last: bool) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        match self.compressor.take() {
            Some(mut encoder) => {
                let (encoder, out, batch) = tokio::task::spawn_blocking(move || {
                    encoder.write_all(&batch)?;
                    if last {
                        let out = encoder.finish()?;
                        return Ok((None, out, batch));
                    }
                    let out = encoder.take_output();
                    Ok::<_, std::io::Error>((Some(encoder), out, batch))
                })
                .await
                .map_err(|e| Error::storage("compressing a part", std::io::Error::other(e)))?
                .map_err(|e| Error::storage("compressing a part", e))?;
                self.compressor = encoder;
                self.batch = batch;
                self.emit(&out).await?;
            }
            None => {
                self.emit(&batch).await?;
                self.batch = batch;
            }
        }
        self.batch.clear();
        Ok(())
    }

    async fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.crc.update(bytes);
        self.writer.write(bytes).await
    }

    /// Flushes everything, publishes the part and returns its size and CRC-32.
    async fn finish(mut self) -> Result<(u64, u32)> {
        self.flush_batch(true).await?;
        let bytes = self.writer.finish().await?;
        Ok((bytes, self.crc.finalize()))
    }
}

impl StageContext {
    /// Exports chunk `index` of `plan` into its part and part manifest (one attempt). When
    /// `cancel` fires, the export stops between rows, aborts its part and returns
    /// [`Error::Cancelled`]: unlike dropping the future, this never leaves an upload open.
    pub async fn export_chunk(&self, plan: &Plan, index: usize) -> Result<PartManifest> {
        let (db, setup, spec) = (&self.db, &self.session_setup(false), &self.spec);
        let (storage, layout, cancel) = (self.storage.as_ref(), &self.layout, &self.cancel);
        let chunk = plan.chunks.get(index).ok_or_else(|| {
            Error::PlanMismatch(format!(
                "chunk {index} is not in the plan ({} chunks)",
                plan.chunks.len()
            ))
        })?;
        let wrap = |e: Error| Error::Chunk {
            index,
            range: chunk.describe(),
            source: Box::new(e),
        };
        let started_at = jiff::Timestamp::now().to_string();
        let statement = copy_statement(spec, plan, index).map_err(wrap)?;
        let mut session = db.session(setup).await.map_err(wrap)?;

        // A stale manifest from an earlier attempt must never describe the new part.
        storage
            .delete(&layout.part_manifest_key(index))
            .await
            .map_err(wrap)?;
        let part_key = layout.part_key(index, &plan.format);
        let compression = plan
            .format
            .compression()
            .map_err(|e| wrap(Error::PlanMismatch(e)))?;
        let compressor = Compressor::new(compression)
            .map_err(|e| wrap(Error::storage("starting the part's compressor", e)))?;
        let mut sink = PartSink::new(
            storage
                .create(&part_key, Durability::Checked)
                .await
                .map_err(wrap)?,
            compressor,
        );
        let encoding = PartEncoding::new(&plan.format);
        let mut rows = encoding.stream(&plan.source).map_err(wrap)?;
        let mut encoded = Vec::new();
        let streamed: Result<()> = async {
            // What opens the report (BOM, header) opens the first chunk's part, so that the
            // report is the plain concatenation of the parts (which object stores can copy
            // server-side).
            if index == 0 {
                sink.push(&encoding.preamble(&plan.source.columns)).await?;
            }
            session.verify_before_copy().await?;
            let mut stream = session
                .conn()
                .copy_out_raw(&statement)
                .await
                .map_err(|e| copy_error("starting the chunk's COPY", e, spec, plan))?;
            let cancelled = CancelFlag::watch(cancel);
            while let Some(bytes) = stream
                .try_next()
                .await
                .map_err(|e| copy_error("streaming the chunk", e, spec, plan))?
            {
                // Checked per message (a row or less; an atomic load): rows arrive
                // continuously, and a stalled server is stopped by the statement timeout.
                if cancelled.is_set() {
                    return Err(Error::Cancelled);
                }
                let part_bytes = rows.feed(&bytes, &mut encoded)?;
                sink.push(part_bytes).await?;
            }
            let last = rows.finish(&mut encoded)?;
            sink.push(last).await
        }
        .await;
        if let Err(e) = streamed {
            let _ = sink.writer.abort().await;
            return Err(wrap(e));
        }
        let (bytes, crc32) = sink.finish().await.map_err(wrap)?;
        session.finish().await.map_err(wrap)?;

        let manifest = PartManifest {
            index,
            range: chunk.clone(),
            plan_digest: plan.digest.clone(),
            rows: rows.rows(),
            bytes,
            sha256: None,
            crc32: Some(crc32),
            started_at,
            finished_at: jiff::Timestamp::now().to_string(),
            snapshot: setup.snapshot.clone(),
            sheet_segments: rows.sheet_segments(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            wrap(Error::Encoding(format!(
                "cannot serialize the part manifest: {e}"
            )))
        })?;
        storage
            .write(&layout.part_manifest_key(index), json.into())
            .await
            .map_err(wrap)?;
        Ok(manifest)
    }

    /// Exports chunk `index`, retrying transient failures with backoff up to `retries`
    /// times; `on_retry` hears of each failed attempt. Permanent failures end at once.
    pub async fn export_chunk_retrying(
        &self,
        plan: &Plan,
        index: usize,
        retries: u32,
        on_retry: impl Fn(u32, &Error),
    ) -> Result<PartManifest> {
        let failed = AtomicU32::new(0);
        (|| self.export_chunk(plan, index))
            .retry(reportjob_core::retry::CHUNK_EXPORT.retries(retries as usize))
            .sleep(tokio::time::sleep)
            .when(|e: &Error| !e.is_permanent() && !e.is_cancelled())
            .notify(|e: &Error, _| on_retry(failed.fetch_add(1, Ordering::Relaxed) + 1, e))
            .await
    }

    /// The part manifest of chunk `index` when its part is complete and intact for this plan.
    pub async fn finished_part(&self, plan: &Plan, index: usize) -> Result<Option<PartManifest>> {
        let Some(part) = self.read_part_manifest(index).await? else {
            return Ok(None);
        };
        // Under one snapshot, a part read under another (an earlier run's) is not this
        // run's: it is exported again.
        if self.snapshot_mismatch(&part).is_some() {
            return Ok(None);
        }
        let size = self.part_size(plan, index).await?;
        if check_part(plan, index, &part, size).is_err() {
            return Ok(None);
        }
        // Parts are not synced when written: after a crash one may be damaged, so its
        // content is checked before it is reused.
        Ok(self.part_is_intact(plan, &part).await?.then_some(part))
    }

    /// Why `part` does not belong to this run's snapshot, if it does not.
    pub(super) fn snapshot_mismatch(&self, part: &PartManifest) -> Option<String> {
        let run = self.snapshot.as_ref()?;
        match &part.snapshot {
            Some(id) if *id == run.id => None,
            Some(id) => Some(format!(
                "chunk {} was read under snapshot {id}, the run reads snapshot {}; a report never mixes snapshots",
                part.index, run.id
            )),
            None => Some(format!(
                "chunk {} was read without the run's snapshot {}; a report never mixes snapshots",
                part.index, run.id
            )),
        }
    }

    pub(super) async fn read_part_manifest(&self, index: usize) -> Result<Option<PartManifest>> {
        let key = self.layout.part_manifest_key(index);
        match self.storage.read(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::InvalidStaged(format!(
                    "{} is not a valid part manifest: {e}",
                    self.storage.location(&key)
                ))
            }),
        }
    }
}
