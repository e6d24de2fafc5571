//! Assembling a Parquet report: each part (a Parquet file) is fetched into a local
//! temporary file (or, where `TMPDIR` is not writable, as in stage pods with a read-only
//! root file system, into memory: one part at a time), its CRC-32 checked, and its row
//! groups' column chunks are copied byte for byte into the report (the parquet crate's
//! `append_column`), with their statistics and page indexes; nothing is decoded or
//! re-encoded, so assembly costs I/O, not CPU. The report is streamed to storage one row
//! group at a time (memory holds one row group's bytes) and published atomically when its
//! footer is written.

use std::fs::File;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::storage::{Composed, Composer, Durability, ObjectWriter, Piece, Storage};

type ReportWriter = SerializedFileWriter<Vec<u8>>;

/// Builds a Parquet report from Parquet parts appended in order.
pub struct ParquetComposer {
    storage: Arc<dyn Storage>,
    target: String,
    /// Holds the part being copied; `None` keeps it in memory.
    temp: Option<tempfile::TempDir>,
    out: Box<dyn ObjectWriter>,
    /// Created with the first part's schema.
    writer: Option<ReportWriter>,
    /// The schema every part must have (the first part's), printed.
    schema: Option<String>,
    hasher: Sha256,
    total: u64,
}

fn parquet_err(what: String) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
    move |e| Error::Encoding(format!("{what}: {e}"))
}

impl ParquetComposer {
    /// Starts the report at `target` in `storage`.
    pub async fn start(storage: Arc<dyn Storage>, target: &str) -> Result<ParquetComposer> {
        let temp = tempfile::Builder::new()
            .prefix("reportjob-assemble-")
            .tempdir()
            .ok();
        let out = storage.create(target, Durability::Durable).await?;
        Ok(ParquetComposer {
            storage,
            target: target.to_string(),
            temp,
            out,
            writer: None,
            schema: None,
            hasher: Sha256::new(),
            total: 0,
        })
    }

    /// Copies `piece` into the temporary directory `dir` (into memory without one),
    /// checking its content (CRC-32, or sha256 for a part without one).
    async fn fetch(
        storage: &dyn Storage,
        dir: Option<&std::path::Path>,
        piece: &Piece,
    ) -> Result<PartData> {
        let mut pieces = storage.read_pieces(&piece.key).await?.ok_or_else(|| {
            Error::NotStaged(format!(
                "cannot assemble: {} is missing",
                storage.location(&piece.key)
            ))
        })?;
        let mut check = piece.check();
        let Some(dir) = dir else {
            let mut data = Vec::new();
            while let Some(bytes) = pieces.try_next().await? {
                check.update(&bytes);
                data.extend_from_slice(&bytes);
            }
            check.verify()?;
            return Ok(PartData::Memory(bytes::Bytes::from(data)));
        };
        let path = dir.join("part.parquet");
        let what = format!("copying {} to {}", piece.key, path.display());
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::storage(what.clone(), e))?;
        while let Some(bytes) = pieces.try_next().await? {
            check.update(&bytes);
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
                .await
                .map_err(|e| Error::storage(what.clone(), e))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| Error::storage(what.clone(), e))?;
        check.verify()?;
        let file = std::fs::File::open(&path).map_err(|e| Error::storage(what, e))?;
        Ok(PartData::File(file))
    }

    /// Hands the report bytes written so far to storage.
    async fn emit(&mut self) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let bytes = std::mem::take(writer.inner_mut());
        if bytes.is_empty() {
            return Ok(());
        }
        self.hasher.update(&bytes);
        self.total += bytes.len() as u64;
        self.out.write(&bytes).await
    }
}

/// A fetched part: a local file, or its bytes.
enum PartData {
    File(File),
    Memory(bytes::Bytes),
}

/// A part's footer (with its page indexes when it has them).
fn read_footer(part: &PartData, key: &str) -> Result<ParquetMetaData> {
    let reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
    match part {
        PartData::File(file) => reader.parse_and_finish(file),
        PartData::Memory(bytes) => reader.parse_and_finish(bytes),
    }
    .map_err(parquet_err(format!("{key} is not a readable Parquet file")))
}

/// The report's writer, with the schema and key-value metadata (Arrow's schema) of its
/// first part.
fn report_writer(first: &ParquetMetaData) -> Result<ReportWriter> {
    let meta = first.file_metadata();
    let props = WriterProperties::builder()
        .set_key_value_metadata(meta.key_value_metadata().cloned())
        .build();
    SerializedFileWriter::new(
        Vec::new(),
        meta.schema_descr().root_schema_ptr(),
        Arc::new(props),
    )
    .map_err(parquet_err("cannot start the Parquet report".into()))
}

/// Copies row group `index` of `part` into the report, column chunk by column chunk.
fn copy_row_group(
    writer: &mut ReportWriter,
    part: &PartData,
    footer: &ParquetMetaData,
    index: usize,
    key: &str,
) -> Result<()> {
    let err = || parquet_err(format!("cannot copy row group {index} of {key}"));
    let rg = footer.row_group(index);
    let column_index = footer.column_index().and_then(|c| c.get(index));
    let offset_index = footer.offset_index().and_then(|o| o.get(index));
    let mut out = writer.next_row_group().map_err(err())?;
    for (i, column) in rg.columns().iter().enumerate() {
        let rows = u64::try_from(rg.num_rows()).map_err(|_| {
            Error::Encoding(format!(
                "row group {index} of {key} has {} rows",
                rg.num_rows()
            ))
        })?;
        let bytes = u64::try_from(column.compressed_size())
            .map_err(|_| Error::Encoding(format!("a column chunk of {key} has a negative size")))?;
        let close = ColumnCloseResult {
            bytes_written: bytes,
            rows_written: rows,
            metadata: column.clone(),
            bloom_filter: None,
            column_index: column_index.and_then(|c| c.get(i)).cloned(),
            offset_index: offset_index.and_then(|o| o.get(i)).cloned(),
        };
        match part {
            PartData::File(file) => out.append_column(file, close),
            PartData::Memory(bytes) => out.append_column(bytes, close),
        }
        .map_err(err())?;
    }
    out.close().map_err(err())?;
    Ok(())
}

#[async_trait]
impl Composer for ParquetComposer {
    async fn append(&mut self, piece: Piece) -> Result<()> {
        let storage = self.storage.clone();
        let dir = self.temp.as_ref().map(tempfile::TempDir::path);
        let file = Arc::new(Self::fetch(storage.as_ref(), dir, &piece).await?);
        let key = piece.key.clone();
        let footer = {
            let (file, key) = (file.clone(), key.clone());
            tokio::task::spawn_blocking(move || read_footer(&file, &key))
                .await
                .map_err(|e| Error::storage("reading a part", std::io::Error::other(e)))??
        };
        let schema = format!("{:?}", footer.file_metadata().schema());
        match &self.schema {
            None => {
                self.writer = Some(report_writer(&footer)?);
                self.schema = Some(schema);
            }
            Some(first) if *first != schema => {
                return Err(Error::Encoding(format!(
                    "cannot assemble: {} has another schema than the first part",
                    self.storage.location(&key)
                )));
            }
            Some(_) => {}
        }
        let footer = Arc::new(footer);
        for index in 0..footer.num_row_groups() {
            let mut writer = self
                .writer
                .take()
                .ok_or_else(|| Error::Encoding("the Parquet report is already finished".into()))?;
            let (file, footer, key) = (file.clone(), footer.clone(), key.clone());
            let (writer, copied) = tokio::task::spawn_blocking(move || {
                let copied = copy_row_group(&mut writer, &file, &footer, index, &key);
                (writer, copied)
            })
            .await
            .map_err(|e| Error::storage("copying a row group", std::io::Error::other(e)))?;
            self.writer = Some(writer);
            copied?;
            self.emit().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Composed> {
        let writer = self.writer.take().ok_or_else(|| {
            Error::Encoding(format!(
                "cannot assemble {}: no part was appended",
                self.target
            ))
        })?;
        let tail = tokio::task::spawn_blocking(move || writer.into_inner())
            .await
            .map_err(|e| Error::storage("finishing the report", std::io::Error::other(e)))?
            .map_err(parquet_err(
                "cannot write the Parquet report's footer".into(),
            ))?;
        self.hasher.update(&tail);
        self.total += tail.len() as u64;
        self.out.write(&tail).await?;
        let ParquetComposer {
            out, hasher, total, ..
        } = *self;
        let bytes = out.finish().await?;
        if bytes != total {
            return Err(Error::Encoding(format!(
                "the report was stored with {bytes} bytes, {total} were written"
            )));
        }
        Ok(Composed {
            bytes,
            sha256: hex::encode(hasher.finalize()),
            server_side_copies: 0,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.out.abort().await
    }
}
