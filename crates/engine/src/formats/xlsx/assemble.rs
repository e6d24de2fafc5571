//! Assembling a workbook: the parts' rows are read in key order piece by piece (each part's
//! sha256 checked as it is read, its row count checked at its end), re-encoded in one pass
//! on a blocking thread into a workbook in a local temporary directory, which is then
//! published through the storage's writer (under the run's scratch prefix on a volume, a
//! multipart upload in a bucket). Memory stays bounded: a few pieces in flight, one row.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::cell::ColumnKind;
use super::copy_text::split_row;
use super::workbook::{BookOptions, BookWriter, MAX_ROWS_PER_SHEET};
use crate::error::{Error, Result};
use crate::staging::{Layout, PartManifest};
use crate::storage::{Composed, Durability, Storage};
use reportjob_core::plan::Plan;

/// Bytes of a part read at once.
const PIECE: u64 = 2 * 1024 * 1024;
/// Pieces in flight between the reader and the encoder.
const IN_FLIGHT: usize = 2;
/// Bytes of the workbook sent to storage at once.
const UPLOAD_PIECE: usize = 1024 * 1024;

/// Test-only: data rows per sheet, so that a test can show sheets rolling over on a small
/// table. Unset, a sheet holds Excel's 1,048,575 data rows.
pub const ROWS_PER_SHEET_ENV: &str = "REPORTJOB_XLSX_ROWS_PER_SHEET";

/// Data rows per sheet: Excel's limit, unless [`ROWS_PER_SHEET_ENV`] says fewer.
pub fn rows_per_sheet() -> Result<u32> {
    match std::env::var(ROWS_PER_SHEET_ENV) {
        Err(_) => Ok(MAX_ROWS_PER_SHEET),
        Ok(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_ROWS_PER_SHEET).contains(n))
            .ok_or_else(|| {
                Error::InvalidStaged(format!(
                    "{ROWS_PER_SHEET_ENV}={text:?} must be between 1 and {MAX_ROWS_PER_SHEET}"
                ))
            }),
    }
}

/// What the reader hands the encoder.
enum Feed {
    /// The next bytes of the current part.
    Bytes(Bytes),
    /// The current part ended; it holds `rows` rows.
    End { index: usize, rows: u64 },
    /// Every part is in: write the workbook.
    Finish,
}

/// A workbook being assembled: parts are fed in key order to the encoder thread, which
/// writes their rows as they come; [`WorkbookAssembly::finish`] saves and publishes it.
pub struct WorkbookAssembly {
    tx: mpsc::Sender<Feed>,
    encoder: Option<tokio::task::JoinHandle<std::result::Result<std::fs::File, String>>>,
    /// The sheets' temporary files and the saved workbook live here until the end.
    temp: tempfile::TempDir,
}

impl WorkbookAssembly {
    /// Starts the encoder for the rows of `plan`'s parts.
    pub fn start(plan: &Plan, options: BookOptions) -> Result<WorkbookAssembly> {
        let temp = tempfile::Builder::new()
            .prefix("reportjob-xlsx-")
            .tempdir()
            .map_err(|e| Error::storage("creating a temporary directory for the workbook", e))?;
        let columns = plan.source.columns.clone();
        plan.source
            .check_column_types()
            .map_err(Error::PlanMismatch)?;
        let kinds: Vec<ColumnKind> = plan
            .source
            .column_types
            .iter()
            .map(|t| ColumnKind::of(t))
            .collect();
        let key_column = plan.source.key_column.clone();
        let temp_path = temp.path().to_path_buf();
        let (tx, rx) = mpsc::channel::<Feed>(IN_FLIGHT);
        let encoder = tokio::task::spawn_blocking(move || {
            encode(rx, columns, kinds, &key_column, options, &temp_path)
        });
        Ok(WorkbookAssembly {
            tx,
            encoder: Some(encoder),
            temp,
        })
    }

    /// Feeds the part at `key` (described by `part`) to the encoder, checking its sha256.
    pub async fn append(
        &mut self,
        storage: &dyn Storage,
        key: &str,
        part: &PartManifest,
    ) -> Result<()> {
        let mut hasher = Sha256::new();
        let mut start = 0u64;
        while start < part.bytes {
            let len = PIECE.min(part.bytes - start);
            let bytes = storage.read_range(key, start, len).await?;
            if bytes.len() as u64 != len {
                return Err(Error::Damaged {
                    key: key.to_string(),
                    found: format!("{} bytes at {start}", bytes.len()),
                    expected: format!("{len} bytes"),
                });
            }
            hasher.update(&bytes);
            start += len;
            self.send(Feed::Bytes(bytes)).await?;
        }
        let found = hex::encode(hasher.finalize());
        if found != part.sha256 {
            return Err(Error::Damaged {
                key: key.to_string(),
                found,
                expected: part.sha256.clone(),
            });
        }
        self.send(Feed::End {
            index: part.index,
            rows: part.rows,
        })
        .await
    }

    /// Sends to the encoder; when it has stopped, returns why.
    async fn send(&mut self, feed: Feed) -> Result<()> {
        if self.tx.send(feed).await.is_ok() {
            return Ok(());
        }
        match self.encoder.take() {
            Some(encoder) => match encoder.await {
                Ok(Err(why)) => Err(workbook_error(why)),
                Ok(Ok(_)) => Err(Error::Encoding("the workbook encoder ended early".into())),
                Err(e) => Err(Error::Encoding(format!("the workbook encoder failed: {e}"))),
            },
            None => Err(Error::Encoding("the workbook encoder has stopped".into())),
        }
    }

    /// Saves the workbook and publishes it at `target` (through a temporary file under
    /// `layout`'s scratch prefix where the storage uses one).
    pub async fn finish(
        mut self,
        storage: &dyn Storage,
        layout: &Layout,
        target: &str,
    ) -> Result<Composed> {
        self.send(Feed::Finish).await?;
        let encoder = self
            .encoder
            .take()
            .ok_or_else(|| Error::Encoding("the workbook encoder has stopped".into()))?;
        let file = encoder
            .await
            .map_err(|e| Error::Encoding(format!("the workbook encoder failed: {e}")))?
            .map_err(workbook_error)?;
        let composed = upload(storage, layout, target, file).await;
        drop(self.temp);
        composed
    }

    /// Stops the encoder and removes the temporary files.
    pub async fn abort(mut self) {
        drop(self.tx);
        if let Some(encoder) = self.encoder.take() {
            let _ = encoder.await;
        }
    }
}

/// The error for what stopped the encoder.
fn workbook_error(why: String) -> Error {
    Error::Encoding(format!("cannot write the workbook: {why}"))
}

/// The encoder: rows of the fed parts into a workbook, saved into an unnamed temporary file
/// (rewound) once [`Feed::Finish`] arrives.
fn encode(
    mut rx: mpsc::Receiver<Feed>,
    columns: Vec<String>,
    kinds: Vec<ColumnKind>,
    key_column: &str,
    options: BookOptions,
    temp_dir: &std::path::Path,
) -> std::result::Result<std::fs::File, String> {
    let width = columns.len();
    let mut book = BookWriter::new(columns, kinds, key_column, options, temp_dir)?;
    let mut carry: Vec<u8> = Vec::new();
    let mut buffers = Vec::new();
    let mut nulls = Vec::new();
    let mut part_rows = 0u64;
    let mut row = |line: &[u8], book: &mut BookWriter| -> std::result::Result<(), String> {
        let values = split_row(line, width, &mut buffers, &mut nulls)?;
        book.write_row(&values)
    };
    while let Some(feed) = rx.blocking_recv() {
        match feed {
            Feed::Bytes(bytes) => {
                let mut rest: &[u8] = &bytes;
                while let Some(at) = memchr::memchr(b'\n', rest) {
                    if carry.is_empty() {
                        row(&rest[..at], &mut book)?;
                    } else {
                        carry.extend_from_slice(&rest[..at]);
                        let line = std::mem::take(&mut carry);
                        row(&line, &mut book)?;
                        carry = line;
                        carry.clear();
                    }
                    part_rows += 1;
                    rest = &rest[at + 1..];
                }
                carry.extend_from_slice(rest);
            }
            Feed::End { index, rows } => {
                if !carry.is_empty() {
                    return Err(format!("the part of chunk {index} ends inside a row"));
                }
                if part_rows != rows {
                    return Err(format!(
                        "the part of chunk {index} holds {part_rows} rows, its manifest says {rows}"
                    ));
                }
                part_rows = 0;
            }
            Feed::Finish => {
                let mut file = tempfile::tempfile_in(temp_dir)
                    .map_err(|e| format!("creating the workbook's temporary file: {e}"))?;
                book.save(&mut file)?;
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| format!("rewinding the workbook's temporary file: {e}"))?;
                return Ok(file);
            }
        }
    }
    Err("the parts stopped before their end".into())
}

/// Sends the workbook in `file` to `target`, hashing it on the way.
async fn upload(
    storage: &dyn Storage,
    layout: &Layout,
    target: &str,
    file: std::fs::File,
) -> Result<Composed> {
    let mut writer = storage
        .create_via(target, &layout.scratch_prefix(), Durability::Durable)
        .await?;
    let mut hasher = Sha256::new();
    let mut file = Some(file);
    let sent: Result<()> = async {
        loop {
            let Some(mut f) = file.take() else {
                return Ok(());
            };
            let (f, buf) = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; UPLOAD_PIECE];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((f, buf))
            })
            .await
            .map_err(|e| Error::storage("reading the workbook", std::io::Error::other(e)))?
            .map_err(|e| Error::storage("reading the workbook", e))?;
            if buf.is_empty() {
                return Ok(());
            }
            hasher.update(&buf);
            writer.write(&buf).await?;
            file = Some(f);
        }
    }
    .await;
    if let Err(e) = sent {
        let _ = writer.abort().await;
        return Err(e);
    }
    let bytes = writer.finish().await?;
    Ok(Composed {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        server_side_copies: 0,
    })
}
