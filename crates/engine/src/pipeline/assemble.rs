//! Stage three: assembly. Checks that the staged parts cover the plan and are intact,
//! then joins them in key order into the report (split into files when the spec asks):
//! concatenated by the storage's composer, or copied into one workbook (XLSX) or Parquet
//! file by the format's assembler.

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::formats::PartEncoding;
use crate::formats::xlsx::assemble::{BookOptions, WorkbookAssembly};
use crate::formats::xlsx::sheets::rows_per_sheet;
use crate::staging::{
    CoverageError, OutputManifest, PartManifest, check_coverage, check_part, listed_files,
    published_manifest, remove_parts,
};
use crate::storage::{Composer, Piece};
use reportjob_core::api::valid::{Destination, Encoding};
use reportjob_core::plan::{PartKind, Plan};
use reportjob_core::split::{OutputFile, SplitLimits, file_key};
use reportjob_core::stage_protocol::ChunkSet;

use super::StageContext;

impl StageContext {
    /// Checks the staged parts cover the plan, writes the report atomically with its
    /// manifest, and removes the staging data.
    pub async fn assemble(&self, plan: &Plan) -> Result<OutputManifest> {
        let mut parts = Vec::with_capacity(plan.chunks.len());
        for chunk in &plan.chunks {
            let manifest = self.read_part_manifest(chunk.index).await?;
            let size = match &manifest {
                Some(_) => self.part_size(plan, chunk.index).await?,
                None => None,
            };
            parts.push(manifest.map(|m| (m, size)));
        }
        // Every problem is reported before anything is written.
        match check_coverage(plan, &parts) {
            Ok(()) => {}
            Err(CoverageError::Damaged { mut chunks, detail }) => {
                // Name every damaged part at once, so one re-export repairs the run.
                for (part, _) in parts.iter().flatten() {
                    if !chunks.contains(&part.index) && !self.part_is_intact(plan, part).await? {
                        chunks.push(part.index);
                    }
                }
                chunks.sort_unstable();
                return Err(self.damaged(plan, chunks, detail).await);
            }
            Err(e) => return Err(Error::Encoding(format!("cannot assemble: {e}"))),
        }
        let parts: Vec<PartManifest> = parts.into_iter().flatten().map(|(p, _)| p).collect();
        let mut assembly = self.begin_assembly(plan).await?;
        for (i, part) in parts.iter().enumerate() {
            if let Err(e) = self.append_part(plan, &mut assembly, part.clone()).await {
                let _ = assembly.abort().await;
                let Error::DamagedParts { mut chunks, detail } = e else {
                    return Err(e);
                };
                // Name every damaged part at once, so one re-export repairs the run.
                for later in &parts[i + 1..] {
                    if !self.part_is_intact(plan, later).await? {
                        chunks.push(later.index);
                    }
                }
                return Err(self.damaged(plan, chunks, detail).await);
            }
        }
        self.finish_assembly(plan, assembly).await
    }

    /// Whether the stored part's bytes have the checksum its manifest recorded (its
    /// CRC-32, or an earlier version's sha256); a manifest that records neither is never
    /// intact.
    pub(super) async fn part_is_intact(&self, plan: &Plan, part: &PartManifest) -> Result<bool> {
        if part.crc32.is_none() && part.sha256.is_none() {
            return Ok(false);
        }
        let piece = Piece {
            key: self.layout.part_key(part.index, &plan.format),
            sha256: part.sha256.clone(),
            crc32: part.crc32,
        };
        let Some(mut content) = self.storage.read_pieces(&piece.key).await? else {
            return Ok(false);
        };
        let mut check = piece.check();
        while let Some(bytes) = content.next().await {
            check.update(&bytes?);
        }
        match check.verify() {
            Ok(()) => Ok(true),
            Err(Error::Damaged { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the damaged parts of `chunks` (and their manifests) so that they are
    /// exported again, and returns the error that names them.
    async fn damaged(&self, plan: &Plan, chunks: Vec<usize>, detail: String) -> Error {
        match remove_parts(self.storage.as_ref(), &self.layout, &plan.format, &chunks).await {
            Ok(()) => Error::DamagedParts { chunks, detail },
            Err(e) => e,
        }
    }

    /// The assemble stage: assembles the staged plan's parts (checked against
    /// `expected_digest` when given) or, when this run already published its report (an
    /// assembly run again after its pod was killed), returns that report's manifest without
    /// writing anything, finishing the removal of the staging data.
    pub async fn assemble_staged(&self, expected_digest: Option<&str>) -> Result<OutputManifest> {
        let staged = self.staged_plan().await?;
        let digest = expected_digest.or(staged.as_ref().map(|p| p.digest.as_str()));
        if let Some(manifest) =
            published_manifest(self.storage.as_ref(), &self.layout, digest).await?
        {
            self.storage
                .delete_prefix(&self.layout.staging_prefix())
                .await?;
            return Ok(manifest);
        }
        let plan = self.load_plan(expected_digest).await?;
        self.assemble(&plan).await
    }

    pub(super) async fn part_size(&self, plan: &Plan, index: usize) -> Result<Option<u64>> {
        self.storage
            .size(&self.layout.part_key(index, &plan.format))
            .await
    }

    /// Starts writing the report from the parts, appended in key order (the first part
    /// opens with the header). A split report first loses its old manifest, so that no
    /// reader takes a mix of old and new files for a whole report.
    pub async fn begin_assembly(&self, plan: &Plan) -> Result<Assembly> {
        let replaced = listed_files(self.storage.as_ref(), &self.layout).await?;
        let split = match self.spec.output.split {
            None => None,
            Some(limits) => {
                self.storage.delete(&self.layout.manifest_key()).await?;
                Some(SplitFiles {
                    limits,
                    done: Vec::new(),
                    first: 0,
                    rows: 0,
                    bytes: 0,
                    copies: 0,
                })
            }
        };
        let target = match split {
            Some(_) => file_key(&self.layout.output, 1),
            None => self.layout.output.clone(),
        };
        let sink = self.open_sink(plan, &target, 1).await?;
        Ok(Assembly {
            sink,
            target,
            appended: Vec::with_capacity(plan.chunks.len()),
            split,
            replaced,
        })
    }

    /// A sink writing file `number` (from 1) of the report at `target`; a later file of a
    /// split CSV report opens with its own BOM and header.
    async fn open_sink(&self, plan: &Plan, target: &str, number: usize) -> Result<Sink> {
        if let PartKind::Xlsx { .. } = plan.format.kind {
            return Ok(Sink::Workbook(Box::new(WorkbookAssembly::start(
                plan,
                self.book_options()?,
            )?)));
        }
        let scratch = match number {
            1 => self.layout.scratch_prefix(),
            n => format!("{}file-{n:05}/", self.layout.scratch_prefix()),
        };
        let encoding = PartEncoding::new(&plan.format);
        let mut composer = encoding.composer(&self.storage, target, &scratch).await?;
        let preamble = encoding.preamble(&plan.source.columns);
        if number > 1 && !preamble.is_empty() {
            let key = self.preamble_key(plan, preamble).await?;
            if let Err(e) = composer
                .append(Piece {
                    key,
                    sha256: None,
                    crc32: None,
                })
                .await
            {
                let _ = composer.abort().await;
                return Err(e);
            }
        }
        Ok(Sink::Composer(composer))
    }

    /// Stages what opens every file of a split CSV report (BOM, header), compressed as
    /// its parts are (its own gzip member or zstd frame), and returns its key.
    async fn preamble_key(&self, plan: &Plan, preamble: Vec<u8>) -> Result<String> {
        let key = format!(
            "{}preamble.{}",
            self.layout.staging_prefix(),
            plan.format.extension()
        );
        let compression = plan.format.compression().map_err(Error::PlanMismatch)?;
        let bytes = match crate::formats::compress::Compressor::new(compression) {
            Ok(None) => preamble,
            Ok(Some(mut compressor)) => compressor
                .write_all(&preamble)
                .and_then(|()| {
                    let mut out = compressor.take_output();
                    out.extend(compressor.finish()?);
                    Ok(out)
                })
                .map_err(|e| Error::Encoding(format!("cannot compress the header: {e}")))?,
            Err(e) => return Err(Error::Encoding(format!("cannot compress the header: {e}"))),
        };
        self.storage.write(&key, Bytes::from(bytes)).await?;
        Ok(key)
    }

    /// How the workbook of an xlsx report is shaped, from the spec.
    fn book_options(&self) -> Result<BookOptions> {
        let Encoding::Xlsx(xlsx) = &self.spec.output.encoding else {
            return Err(Error::PlanMismatch(
                "the plan's parts are workbook rows, but the spec's format is not xlsx".into(),
            ));
        };
        Ok(BookOptions {
            sheet_name: xlsx.sheet_name.clone(),
            rows_per_sheet: rows_per_sheet()?,
        })
    }

    /// Appends the next chunk's part; it must belong to this plan, cover its chunk's
    /// range and have the size its manifest says.
    pub async fn append_part(
        &self,
        plan: &Plan,
        assembly: &mut Assembly,
        part: PartManifest,
    ) -> Result<()> {
        let index = assembly.appended.len();
        if let Some(why) = self.snapshot_mismatch(&part) {
            return Err(Error::SnapshotLost {
                id: self
                    .snapshot
                    .as_ref()
                    .map(|s| s.id.to_string())
                    .unwrap_or_default(),
                detail: why,
            });
        }
        let size = self.part_size(plan, part.index).await?;
        match check_part(plan, index, &part, size) {
            Ok(()) => {}
            Err(e) if e.is_damage() => {
                return Err(self.damaged(plan, vec![index], e.to_string()).await);
            }
            Err(e) => return Err(Error::Encoding(format!("cannot assemble: {e}"))),
        }
        if let Some(split) = &assembly.split
            && split.limits.closes_before(
                assembly.appended.len() - split.first,
                split.rows,
                split.bytes,
                part.rows,
                part.bytes,
            )
        {
            self.next_file(plan, assembly).await?;
        }
        let key = self.layout.part_key(index, &plan.format);
        let appended = match &mut assembly.sink {
            Sink::Composer(composer) => {
                composer
                    .append(Piece {
                        key,
                        sha256: part.sha256.clone(),
                        crc32: part.crc32,
                    })
                    .await
            }
            Sink::Workbook(book) => book.append(self.storage.as_ref(), &key, &part).await,
            Sink::Closed => Err(Error::Encoding(
                "the report's file was closed before its end".into(),
            )),
        };
        match appended {
            Ok(()) => {}
            Err(e @ Error::Damaged { .. }) => {
                return Err(self.damaged(plan, vec![index], e.to_string()).await);
            }
            Err(e) => return Err(e),
        }
        if let Some(split) = &mut assembly.split {
            split.rows += part.rows;
            split.bytes += part.bytes;
        }
        assembly.appended.push(part);
        Ok(())
    }

    /// Publishes the open file of a split report and opens the next one.
    async fn next_file(&self, plan: &Plan, assembly: &mut Assembly) -> Result<()> {
        let Some(split) = &assembly.split else {
            return Ok(());
        };
        let number = split.done.len() + 2;
        let target = file_key(&self.layout.output, number);
        // The open file is published before the next one starts: they may share scratch.
        let sink = std::mem::replace(&mut assembly.sink, Sink::Closed);
        let composed = self.finish_sink(sink, &assembly.target).await?;
        let Some(split) = &mut assembly.split else {
            return Ok(());
        };
        split.copies += composed.server_side_copies;
        split.done.push(self.output_file(
            &assembly.target,
            &assembly.appended[split.first..],
            composed,
        ));
        (split.first, split.rows, split.bytes) = (assembly.appended.len(), 0, 0);
        assembly.sink = self.open_sink(plan, &target, number).await?;
        assembly.target = target;
        Ok(())
    }

    /// Publishes what `sink` wrote at `target`.
    async fn finish_sink(&self, sink: Sink, target: &str) -> Result<crate::storage::Composed> {
        match sink {
            Sink::Composer(composer) => composer.finish().await,
            Sink::Workbook(book) => {
                book.finish(self.storage.as_ref(), &self.layout, target)
                    .await
            }
            Sink::Closed => Err(Error::Encoding(
                "the report's file was closed before its end".into(),
            )),
        }
    }

    /// The manifest entry of a published file of a split report (its link comes later).
    fn output_file(
        &self,
        key: &str,
        parts: &[PartManifest],
        composed: crate::storage::Composed,
    ) -> OutputFile {
        OutputFile {
            location: self.storage.location(key),
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: composed.bytes,
            sha256: composed.sha256,
            chunks: ChunkSet::from_indexes(parts.iter().map(|p| p.index)).to_string(),
            url: None,
            url_expires_at: None,
        }
    }

    /// Publishes the report once every chunk's part is in, writes its manifest and
    /// removes the staging data.
    pub async fn finish_assembly(&self, plan: &Plan, assembly: Assembly) -> Result<OutputManifest> {
        let Assembly {
            sink,
            target,
            appended,
            split,
            replaced,
        } = assembly;
        if appended.len() != plan.chunks.len() {
            let missing: Vec<usize> = (appended.len()..plan.chunks.len()).collect();
            return Err(Error::NotStaged(format!(
                "cannot assemble: chunks {} have no exported part",
                ChunkSet::from_indexes(missing)
            )));
        }
        let composed = self.finish_sink(sink, &target).await?;
        let Some(mut split) = split else {
            let manifest = self.publish(plan, appended, composed, Vec::new()).await?;
            self.remove_replaced(&replaced, &[target]).await?;
            return Ok(manifest);
        };
        split.copies += composed.server_side_copies;
        split
            .done
            .push(self.output_file(&target, &appended[split.first..], composed));
        if let Destination::Bucket(bucket) = &self.spec.output.destination {
            for (i, file) in split.done.iter_mut().enumerate() {
                let key = file_key(&self.layout.output, i + 1);
                if let Some(link) = self.link_to(&key, bucket.url_expiry).await? {
                    file.url = Some(link.url);
                    file.url_expires_at = Some(link.expires_at.to_string());
                }
            }
        }
        let total = crate::storage::Composed {
            bytes: split.done.iter().map(|f| f.bytes).sum(),
            sha256: String::new(),
            server_side_copies: split.copies,
        };
        let current: Vec<String> = (1..=split.done.len())
            .map(|n| file_key(&self.layout.output, n))
            .collect();
        let manifest = self.publish(plan, appended, total, split.done).await?;
        self.remove_replaced(&replaced, &current).await?;
        Ok(manifest)
    }

    /// Removes the files of the report this one replaced that it did not overwrite (a
    /// split report's further files, or a one-file report's own key).
    async fn remove_replaced(&self, replaced: &[String], current: &[String]) -> Result<()> {
        for key in replaced.iter().filter(|k| !current.contains(k)) {
            self.storage.delete(key).await?;
        }
        Ok(())
    }
}

/// A report being written: its sink and the parts appended so far, in key order.
/// Dropped unfinished, it leaves nothing behind (but the files a split report published).
pub struct Assembly {
    sink: Sink,
    /// The key `sink` writes.
    target: String,
    appended: Vec<PartManifest>,
    /// The files of a split report.
    split: Option<SplitFiles>,
    /// Keys of the files of the report this one replaces.
    replaced: Vec<String>,
}

/// Where a split report stands: the files published and the open one's fill.
struct SplitFiles {
    limits: SplitLimits,
    /// The files published so far.
    done: Vec<OutputFile>,
    /// Index in `appended` of the open file's first part.
    first: usize,
    /// Rows and part bytes in the open file.
    rows: u64,
    bytes: u64,
    /// Pieces the store copied server-side, over the published files.
    copies: u64,
}

/// Where the parts go: concatenated by the storage's composer, or copied into a workbook.
enum Sink {
    /// The report is the parts' bytes, concatenated.
    Composer(Box<dyn Composer>),
    /// The report is a workbook whose sheets hold the parts' deflated rows.
    Workbook(Box<WorkbookAssembly>),
    /// Between two files of a split report.
    Closed,
}

impl Assembly {
    /// Discards the unfinished report (and aborts its upload).
    pub async fn abort(self) -> Result<()> {
        match self.sink {
            Sink::Composer(composer) => composer.abort().await,
            Sink::Workbook(book) => {
                book.abort().await;
                Ok(())
            }
            Sink::Closed => Ok(()),
        }
    }
}
