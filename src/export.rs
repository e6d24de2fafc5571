//! Exporting one chunk: stream `COPY (<chunk query>) TO STDOUT (FORMAT csv)`, rebuilt from
//! the spec and regenerated from its parse tree ([`copy_statement`]), from a
//! read-only transaction into a part, optionally gzip, with bounded memory, then publish
//! the part and its manifest. A re-run overwrites both, so retries never duplicate rows.
//!
//! Postgres's own CSV encoder is used rather than encoding rows here: it is the fastest
//! path (no per-value decoding in the client) and gives exactly the bytes `psql \copy`
//! gives: RFC 4180 quoting, NULL written as the spec's `nullString` unquoted, an empty
//! string as `""`, and any value equal to the NULL string quoted.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use tokio_util::sync::CancellationToken;

use crate::api::valid::ValidSource;
use crate::csv_encode::{RecordCounter, header_line};
use crate::error::{Error, Result};
use crate::ident::quote_literal;
use crate::plan::Plan;
use crate::source::statement::SourceSql;
use crate::source::{Database, SessionSetup};
use crate::staging::{Layout, PartManifest};
use crate::storage::{Durability, ObjectWriter, Storage};

/// Bytes gathered before they are handed to storage.
const WRITE_BATCH: usize = 256 * 1024;

/// The `COPY` statement that streams chunk `index` as CSV, rebuilt from the validated
/// `spec` (never from SQL stored in the plan) and regenerated from its parse tree: exactly
/// one `COPY (SELECT ...) TO STDOUT`, checked like the spec's own SQL.
pub fn copy_statement(spec: &ValidSource, plan: &Plan, index: usize) -> Result<String> {
    let chunk = plan.chunks.get(index).ok_or_else(|| {
        Error::Staging(format!(
            "chunk {index} is not in the plan ({} chunks)",
            plan.chunks.len()
        ))
    })?;
    let format = &plan.format;
    let sql = SourceSql::build(spec, &plan.source)?;
    let text = format!(
        "COPY (\n{}\n) TO STDOUT WITH (FORMAT csv, DELIMITER {}, NULL {})",
        sql.chunk_query(chunk),
        quote_literal(&format.delimiter.to_string()),
        quote_literal(&format.null_string)
    );
    crate::sql::regenerate_copy_to_stdout(&text)
        .map_err(|e| Error::Staging(format!("the statement of chunk {index} was refused: {e}")))
}

/// Gathers a part's bytes in batches, compresses them (on a blocking thread, so that
/// chunks exported at once compress in parallel), hashes and stores them.
struct PartSink {
    writer: Box<dyn ObjectWriter>,
    gzip: Option<GzEncoder<Vec<u8>>>,
    batch: Vec<u8>,
    hasher: Sha256,
}

impl PartSink {
    fn new(writer: Box<dyn ObjectWriter>, gzip: bool) -> PartSink {
        PartSink {
            writer,
            gzip: gzip.then(|| GzEncoder::new(Vec::new(), Compression::default())),
            batch: Vec::with_capacity(WRITE_BATCH),
            hasher: Sha256::new(),
        }
    }

    async fn push(&mut self, data: &[u8]) -> Result<()> {
        self.batch.extend_from_slice(data);
        if self.batch.len() >= WRITE_BATCH {
            self.flush_batch(false).await?;
        }
        Ok(())
    }

    /// Sends the batch on (through the compressor, which is finished when `last`).
    async fn flush_batch(&mut self, last: bool) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        match self.gzip.take() {
            Some(mut encoder) => {
                let (encoder, out, batch) = tokio::task::spawn_blocking(move || {
                    encoder.write_all(&batch)?;
                    if last {
                        let out = encoder.finish()?;
                        return Ok((None, out, batch));
                    }
                    let out = std::mem::take(encoder.get_mut());
                    Ok::<_, std::io::Error>((Some(encoder), out, batch))
                })
                .await
                .map_err(|e| Error::storage("compressing a part", std::io::Error::other(e)))?
                .map_err(|e| Error::storage("compressing a part", e))?;
                self.gzip = encoder;
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
        self.hasher.update(bytes);
        self.writer.write(bytes).await
    }

    /// Flushes everything, publishes the part and returns its size and sha256.
    async fn finish(mut self) -> Result<(u64, String)> {
        self.flush_batch(true).await?;
        let sha = hex::encode(self.hasher.finalize());
        let bytes = self.writer.finish().await?;
        Ok((bytes, sha))
    }
}

/// Exports chunk `index` of `plan` into its part and part manifest (one attempt). When
/// `cancel` fires, the export stops between rows, aborts its part and returns
/// [`Error::Cancelled`]: unlike dropping the future, this never leaves an upload open.
#[allow(clippy::too_many_arguments)] // the stage context's parts, passed apart
pub async fn export_chunk(
    db: &Database,
    setup: &SessionSetup,
    spec: &ValidSource,
    plan: &Plan,
    index: usize,
    storage: &dyn Storage,
    layout: &Layout,
    cancel: &CancellationToken,
) -> Result<PartManifest> {
    let chunk = plan.chunks.get(index).ok_or_else(|| {
        Error::Staging(format!(
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
    let part_key = layout.part_key(index, plan.format.gzip);
    let mut sink = PartSink::new(
        storage
            .create(&part_key, Durability::Checked)
            .await
            .map_err(wrap)?,
        plan.format.gzip,
    );
    let mut counter = RecordCounter::default();
    let streamed: Result<()> = async {
        // The report's header opens the first chunk's part, so that the report is the
        // plain concatenation of the parts (which object stores can copy server-side).
        if index == 0 && plan.format.header {
            let format = &plan.format;
            let header = header_line(&plan.source.columns, format.delimiter, &format.null_string);
            sink.push(header.as_bytes()).await?;
        }
        session.verify_before_copy().await?;
        let mut stream = session
            .conn()
            .copy_out_raw(&statement)
            .await
            .map_err(|e| Error::db("starting the chunk's COPY", e))?;
        while let Some(bytes) = stream
            .try_next()
            .await
            .map_err(|e| Error::db("streaming the chunk", e))?
        {
            // Checked per row (an atomic load): rows arrive continuously, and a stalled
            // server is stopped by the statement timeout.
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            counter.feed(&bytes);
            sink.push(&bytes).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        let _ = sink.writer.abort().await;
        return Err(wrap(e));
    }
    if !counter.at_boundary() {
        let _ = sink.writer.abort().await;
        return Err(wrap(Error::Staging(
            "the CSV stream ended inside a quoted field".into(),
        )));
    }
    let (bytes, sha256) = sink.finish().await.map_err(wrap)?;
    session.finish().await.map_err(wrap)?;

    let manifest = PartManifest {
        index,
        range: chunk.clone(),
        plan_digest: plan.digest.clone(),
        rows: counter.records(),
        bytes,
        sha256,
        started_at,
        finished_at: jiff::Timestamp::now().to_string(),
        snapshot: setup.snapshot.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| {
        wrap(Error::Staging(format!(
            "cannot serialize the part manifest: {e}"
        )))
    })?;
    storage
        .write(&layout.part_manifest_key(index), json.into())
        .await
        .map_err(wrap)?;
    Ok(manifest)
}
