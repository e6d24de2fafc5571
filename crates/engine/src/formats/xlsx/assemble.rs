//! Assembling a workbook is a copy: the chunk workers wrote their rows as deflated sheet XML
//! in segments ([`super::part_stream`]); assembly places whole segments into sheets in key
//! order ([`super::sheets`]), copies their compressed bytes into each sheet's zip entry
//! between a deflated opening (the header row) and closing, combines the segments' CRC-32s
//! into the entry's, and adds the small parts around the sheets ([`super::package`]). Each
//! part's CRC-32 is checked as it is copied. The workbook is built in a local temporary
//! file (its local headers are written once each sheet's sizes are known), then published
//! through the storage's writer. Memory: one piece of a part at a time.

use std::io::{BufWriter, Read};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use sha2::{Digest, Sha256};

use super::package;
use super::sheet_xml::{SHEET_END, sheet_start};
use super::sheets::{Placement, SheetPacker};
use super::zip_writer::{ZipWriter, deflate_into};
use crate::error::{Error, Result};
use crate::staging::{Layout, PartManifest};
use crate::storage::{Composed, Durability, Piece, Storage};
use reportjob_core::api::sheet_name;
use reportjob_core::plan::Plan;

/// Bytes of a part read at once.
const PIECE: u64 = 2 * 1024 * 1024;
/// Bytes of the workbook sent to storage at once.
const UPLOAD_PIECE: usize = 1024 * 1024;

/// What shapes a workbook at assembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookOptions {
    /// Name of the first sheet (checked); the next are "name (2)", "name (3)", ...
    pub sheet_name: String,
    /// Most data rows in a sheet.
    pub rows_per_sheet: u32,
}

/// A deflated, byte-aligned piece of XML that opens or closes every sheet.
struct Frame {
    deflated: Vec<u8>,
    crc32: u32,
    xml_bytes: u64,
}

impl Frame {
    /// `xml` deflated on its own; `last` ends the deflate stream.
    fn new(xml: &[u8], last: bool) -> Result<Frame> {
        let mut deflated = Vec::new();
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Full
        };
        deflate_into(
            &mut Compress::new(Compression::default(), false),
            xml,
            &mut deflated,
            flush,
        )
        .map_err(|e| Error::Encoding(format!("cannot compress a sheet's frame: {e}")))?;
        Ok(Frame {
            deflated,
            crc32: crc32fast::hash(xml),
            xml_bytes: xml.len() as u64,
        })
    }

    fn crc(&self) -> crc32fast::Hasher {
        crc32fast::Hasher::new_with_initial_len(self.crc32, self.xml_bytes)
    }
}

/// The open sheet's CRC-32 and XML bytes so far.
struct OpenSheet {
    crc: crc32fast::Hasher,
    xml_bytes: u64,
}

type Zip = ZipWriter<BufWriter<std::fs::File>>;

/// A workbook being assembled: parts are appended in key order, their segments copied into
/// sheets; [`WorkbookAssembly::finish`] closes it and publishes it.
pub struct WorkbookAssembly {
    options: BookOptions,
    opening: Frame,
    closing: Frame,
    packer: SheetPacker,
    sheet: Option<OpenSheet>,
    /// Taken while a blocking thread writes into it.
    zip: Option<Zip>,
    /// Holds the workbook's temporary file until the end.
    temp: tempfile::TempDir,
}

impl WorkbookAssembly {
    /// Starts a workbook for the rows of `plan`'s parts.
    pub fn start(plan: &Plan, options: BookOptions) -> Result<WorkbookAssembly> {
        plan.source
            .check_column_types()
            .map_err(Error::PlanMismatch)?;
        sheet_name::check(&options.sheet_name)
            .map_err(|e| Error::InvalidSpec(format!("sheet name {e}")))?;
        let temp = tempfile::Builder::new()
            .prefix("reportjob-xlsx-")
            .tempdir()
            .map_err(|e| Error::storage("creating a temporary directory for the workbook", e))?;
        let file = tempfile::tempfile_in(temp.path())
            .map_err(|e| Error::storage("creating the workbook's temporary file", e))?;
        let opening = Frame::new(&sheet_start(&plan.source.columns), false)?;
        let closing = Frame::new(SHEET_END, true)?;
        let frame = opening.xml_bytes + closing.xml_bytes;
        Ok(WorkbookAssembly {
            packer: SheetPacker::new(options.rows_per_sheet, frame),
            options,
            opening,
            closing,
            sheet: None,
            zip: Some(ZipWriter::new(BufWriter::with_capacity(256 * 1024, file))),
            temp,
        })
    }

    /// Runs `op` on the archive on a blocking thread.
    async fn zip_op<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Zip) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut zip = self
            .zip
            .take()
            .ok_or_else(|| Error::Encoding("the workbook's file was lost after an error".into()))?;
        let (zip, done) = tokio::task::spawn_blocking(move || {
            let done = op(&mut zip);
            (zip, done)
        })
        .await
        .map_err(|e| Error::Encoding(format!("the workbook writer failed: {e}")))?;
        self.zip = Some(zip);
        done.map_err(|e| Error::storage("writing the workbook's temporary file", e))
    }

    /// Opens the next sheet's entry with its header row.
    async fn open_sheet(&mut self) -> Result<()> {
        let entry = package::sheet_entry(self.packer.sheets() as usize);
        let opening = Bytes::from(self.opening.deflated.clone());
        self.zip_op(move |zip| {
            zip.start_entry(&entry)?;
            zip.write_data(&opening)
        })
        .await?;
        self.sheet = Some(OpenSheet {
            crc: self.opening.crc(),
            xml_bytes: self.opening.xml_bytes,
        });
        Ok(())
    }

    /// Closes the open sheet (if any): its closing XML, then its CRC-32 and sizes.
    async fn close_sheet(&mut self) -> Result<()> {
        let Some(mut sheet) = self.sheet.take() else {
            return Ok(());
        };
        sheet.crc.combine(&self.closing.crc());
        let crc = sheet.crc.finalize();
        let xml_bytes = sheet.xml_bytes + self.closing.xml_bytes;
        let closing = Bytes::from(self.closing.deflated.clone());
        self.zip_op(move |zip| {
            zip.write_data(&closing)?;
            zip.end_entry(crc, xml_bytes)
        })
        .await
    }

    /// Copies the part at `key` (described by `part`) into the workbook, checking its
    /// content (CRC-32, or sha256 for a part without one).
    pub async fn append(
        &mut self,
        storage: &dyn Storage,
        key: &str,
        part: &PartManifest,
    ) -> Result<()> {
        let piece = Piece {
            key: key.to_string(),
            sha256: part.sha256.clone(),
            crc32: part.crc32,
        };
        let mut check = piece.check();
        let mut at = 0u64;
        for segment in &part.sheet_segments {
            let placement = self.packer.place(segment).map_err(|why| {
                Error::InvalidStaged(format!(
                    "cannot place the rows of chunk {} in a sheet: {why}",
                    part.index
                ))
            })?;
            if placement == Placement::Next {
                self.close_sheet().await?;
                self.open_sheet().await?;
            }
            let end = at + segment.bytes;
            while at < end {
                let len = PIECE.min(end - at);
                let bytes = storage.read_range(key, at, len).await?;
                if bytes.len() as u64 != len {
                    return Err(Error::Damaged {
                        key: key.to_string(),
                        found: format!("{} bytes at {at}", bytes.len()),
                        expected: format!("{len} bytes"),
                    });
                }
                check.update(&bytes);
                at += len;
                self.zip_op(move |zip| zip.write_data(&bytes)).await?;
            }
            if let Some(sheet) = self.sheet.as_mut() {
                sheet.crc.combine(&crc32fast::Hasher::new_with_initial_len(
                    segment.crc32,
                    segment.xml_bytes,
                ));
                sheet.xml_bytes += segment.xml_bytes;
            }
        }
        if at != part.bytes {
            return Err(Error::Damaged {
                key: key.to_string(),
                found: format!("segments of {at} bytes"),
                expected: format!("{} bytes", part.bytes),
            });
        }
        check.verify()
    }

    /// Closes the last sheet (a workbook without rows has one, its header row), writes the
    /// parts around the sheets and publishes the workbook at `target` (through a
    /// temporary file under `layout`'s scratch prefix where the storage uses one).
    pub async fn finish(
        mut self,
        storage: &dyn Storage,
        layout: &Layout,
        target: &str,
    ) -> Result<Composed> {
        if self.packer.sheets() == 0 {
            self.packer
                .place(&reportjob_core::staging::SheetSegment {
                    rows: 0,
                    bytes: 0,
                    xml_bytes: 0,
                    crc32: 0,
                })
                .map_err(Error::Encoding)?;
            self.open_sheet().await?;
        }
        self.close_sheet().await?;
        let names: Vec<String> = (1..=self.packer.sheets())
            .map(|n| sheet_name::nth(&self.options.sheet_name, n))
            .collect();
        let parts = package::parts(&names);
        let zip = self
            .zip
            .take()
            .ok_or_else(|| Error::Encoding("the workbook's file was lost after an error".into()))?;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut zip = zip;
            for (name, bytes) in &parts {
                zip.add(name, bytes)?;
            }
            let mut file = zip
                .finish(&["[Content_Types].xml"])?
                .into_inner()
                .map_err(|e| e.into_error())?;
            std::io::Seek::rewind(&mut file)?;
            Ok(file)
        })
        .await
        .map_err(|e| Error::Encoding(format!("the workbook writer failed: {e}")))?
        .map_err(|e| Error::storage("writing the workbook's temporary file", e))?;
        let composed = upload(storage, layout, target, file).await;
        drop(self.temp);
        composed
    }

    /// Discards the workbook and its temporary file.
    pub async fn abort(self) {}
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
