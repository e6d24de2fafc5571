//! The staging layout of a run and the manifests it holds: `<output>.parts/<run>/plan.json`,
//! `part-00042.csv[.gz]` with `part-00042.json`, and `<output>.manifest.json` at the end.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::plan::{ChunkRange, PartFormat, Plan};
use crate::stage_protocol::ChunkSet;

/// Longest run identifier (a DNS label, so it fits a Kubernetes label value too).
pub const MAX_RUN_ID_LEN: usize = 63;

/// A run identifier: 1 to 63 of `[a-z0-9-]`, not starting or ending with `-`. It names a
/// directory under the output (`<output>.parts/<run id>/`), so every run id that enters
/// (flags, environment, staged files, termination messages) is parsed into one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

/// Why a text is not a run id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id {0:?}: use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct BadRunId(String);

impl RunId {
    /// The run id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = BadRunId;

    fn from_str(text: &str) -> Result<RunId, BadRunId> {
        let valid = (1..=MAX_RUN_ID_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !text.starts_with('-')
            && !text.ends_with('-');
        if valid {
            Ok(RunId(text.to_string()))
        } else {
            // Shown in errors: bounded, so a hostile value cannot flood a message.
            Err(BadRunId(text.chars().take(80).collect()))
        }
    }
}

impl TryFrom<String> for RunId {
    type Error = BadRunId;

    fn try_from(text: String) -> Result<RunId, BadRunId> {
        text.parse()
    }
}

impl TryFrom<&str> for RunId {
    type Error = BadRunId;

    fn try_from(text: &str) -> Result<RunId, BadRunId> {
        text.parse()
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RunId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// Keys of one run's staging data and output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Key of the report.
    pub output: String,
    /// The run's identifier.
    pub run_id: RunId,
}

impl Layout {
    /// The layout of run `run_id` of the report at `output`.
    pub fn new(output: impl Into<String>, run_id: RunId) -> Layout {
        Layout {
            output: output.into(),
            run_id,
        }
    }

    /// Prefix where the report and its manifest are written before they are published
    /// (ends with `/`): inside the run's staging data, so cleanup and the next assembly
    /// remove what a crash left there.
    pub fn scratch_prefix(&self) -> String {
        format!("{}tmp/", self.staging_prefix())
    }

    /// Prefix of all staging data of this run (ends with `/`).
    pub fn staging_prefix(&self) -> String {
        format!("{}.parts/{}/", self.output, self.run_id)
    }

    /// Key of the plan.
    pub fn plan_key(&self) -> String {
        format!("{}plan.json", self.staging_prefix())
    }

    /// Key of chunk `index`'s part.
    pub fn part_key(&self, index: usize, format: &PartFormat) -> String {
        let ext = format.extension();
        format!("{}part-{index:05}.{ext}", self.staging_prefix())
    }

    /// Key of chunk `index`'s part manifest.
    pub fn part_manifest_key(&self, index: usize) -> String {
        format!("{}part-{index:05}.json", self.staging_prefix())
    }

    /// Key of the run's snapshot record (written by the cluster's snapshot holder).
    pub fn snapshot_key(&self) -> String {
        format!("{}snapshot.json", self.staging_prefix())
    }

    /// Key of the report's manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}.manifest.json", self.output)
    }
}

/// What a chunk export wrote: the part and its range, rows, size and hash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartManifest {
    /// Chunk index.
    pub index: usize,
    /// The chunk's range, as planned.
    pub range: ChunkRange,
    /// Digest of the plan the part was exported against.
    pub plan_digest: String,
    /// Data rows in the part.
    pub rows: u64,
    /// Bytes of the part as stored (compressed when gzip).
    pub bytes: u64,
    /// sha256 of the stored bytes, hex: recorded by versions before the CRC-32 took its
    /// place (hashing every part cost about 6% of a CSV run's wall time, for no damage the
    /// CRC-32 misses); such parts are still checked by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// CRC-32 of the stored bytes: what resume and assembly check the stored part against,
    /// to catch damage (a torn write after a crash, a truncated copy). Like any checksum
    /// in a manifest beside the part, it is no defence against someone who can rewrite
    /// both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    /// When the export started (RFC 3339).
    pub started_at: String,
    /// When the part was published (RFC 3339).
    pub finished_at: String,
    /// The run's snapshot the part was read under (`consistency: Snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::SnapshotId>,
    /// An xlsx part's deflate segments, in order (empty for other formats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sheet_segments: Vec<SheetSegment>,
}

/// Most uncompressed sheet XML in one segment of an xlsx part: with a sheet's opening and
/// closing it stays under 4 GiB, so a sheet's zip entry never needs ZIP64 sizes.
pub const MAX_SEGMENT_XML_BYTES: u64 = 3 << 30;

/// One segment of an xlsx part: rows of sheet XML compressed as a raw deflate stream that
/// starts afresh (no reference to earlier bytes) and ends with a full flush (byte-aligned,
/// no final block), so that segments concatenate into one sheet's deflate stream. A sheet
/// holds whole segments; a worker ends a segment at the most rows a sheet holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheetSegment {
    /// Rows (`<row>` elements).
    pub rows: u64,
    /// Deflated bytes in the part.
    pub bytes: u64,
    /// The XML's bytes before compression.
    pub xml_bytes: u64,
    /// CRC-32 of the XML (as zip stores it).
    pub crc32: u32,
}

impl SheetSegment {
    /// Why `segments` cannot be the segments of a part of `rows` rows and `bytes` bytes
    /// (read from staging: untrusted), if they cannot.
    pub fn check_all(segments: &[SheetSegment], rows: u64, bytes: u64) -> Result<(), String> {
        let (mut sum_rows, mut sum_bytes) = (0u64, 0u64);
        for (i, s) in segments.iter().enumerate() {
            if s.rows == 0 || s.bytes == 0 {
                return Err(format!("segment {i} is empty"));
            }
            if s.xml_bytes > MAX_SEGMENT_XML_BYTES {
                return Err(format!(
                    "segment {i} holds {} bytes of XML, more than {MAX_SEGMENT_XML_BYTES}",
                    s.xml_bytes
                ));
            }
            // Deflate never grows data by more than its stored blocks' headers.
            if s.bytes > s.xml_bytes + s.xml_bytes / 64 + 64 {
                return Err(format!(
                    "segment {i} is {} deflated bytes for {} bytes of XML",
                    s.bytes, s.xml_bytes
                ));
            }
            sum_rows = sum_rows.saturating_add(s.rows);
            sum_bytes = sum_bytes.saturating_add(s.bytes);
        }
        if sum_rows != rows || sum_bytes != bytes {
            return Err(format!(
                "its segments hold {sum_rows} rows in {sum_bytes} bytes, its manifest says {rows} rows in {bytes} bytes"
            ));
        }
        Ok(())
    }
}

/// A part of the report, as listed in its manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ManifestPart {
    /// Chunk index.
    pub index: usize,
    /// Key range, for people.
    pub range: String,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// CRC-32 of the part's bytes, as exported and as checked when it was assembled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    /// sha256 of the part's bytes, hex: only for a part exported by an earlier version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Export start (RFC 3339).
    pub started_at: String,
    /// Export end (RFC 3339).
    pub finished_at: String,
}

/// `<output>.manifest.json`: what the report holds and where it came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OutputManifest {
    /// Where the report is.
    pub location: String,
    /// Data rows (the header is not counted).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the report's bytes, hex (not written for a split report: see `files`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The run.
    pub run_id: String,
    /// Digest of the plan.
    pub plan_digest: String,
    /// The source, for people.
    pub source: String,
    /// The columns, in order.
    pub columns: Vec<String>,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// When the plan was made (RFC 3339).
    pub started_at: String,
    /// When the report was published (RFC 3339).
    pub finished_at: String,
    /// Parts the object store copied server-side rather than through the assembler.
    #[serde(default)]
    pub server_side_copies: u64,
    /// The one database snapshot every part was read under, and when it was taken: the
    /// moment of the database the report shows (`consistency: Snapshot`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "snake_case::snapshot"
    )]
    pub snapshot: Option<crate::snapshot::SnapshotRecord>,
    /// The parts, in key order.
    pub parts: Vec<ManifestPart>,
    /// The files of a split report (`spec.output.split`), in key order; `location`,
    /// `rows` and `bytes` above are then the report's name and totals. Empty for a
    /// report of one file.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "snake_case::files"
    )]
    pub files: Vec<crate::split::OutputFile>,
}

/// The report's manifest is written in snake_case throughout (`run_id`, `plan_digest`,
/// `snapshot.taken_at`, `files[].url_expires_at`), though the snapshot record and the split
/// files are camelCase where the stage protocol carries them; manifests written before
/// read as well (`takenAt`, `urlExpiresAt`).
mod snake_case {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::snapshot::{SnapshotId, SnapshotRecord};
    use crate::split::OutputFile;

    #[derive(Serialize, Deserialize)]
    struct Snapshot {
        id: SnapshotId,
        #[serde(alias = "takenAt")]
        taken_at: jiff::Timestamp,
    }

    #[derive(Serialize, Deserialize)]
    struct File {
        location: String,
        rows: u64,
        bytes: u64,
        sha256: String,
        chunks: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            alias = "urlExpiresAt"
        )]
        url_expires_at: Option<String>,
    }

    pub mod snapshot {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Option<SnapshotRecord>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            value
                .as_ref()
                .map(|r| Snapshot {
                    id: r.id.clone(),
                    taken_at: r.taken_at,
                })
                .serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<SnapshotRecord>, D::Error> {
            Ok(
                Option::<Snapshot>::deserialize(deserializer)?.map(|s| SnapshotRecord {
                    id: s.id,
                    taken_at: s.taken_at,
                }),
            )
        }
    }

    pub mod files {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &[OutputFile],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            value
                .iter()
                .map(|f| File {
                    location: f.location.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                    sha256: f.sha256.clone(),
                    chunks: f.chunks.clone(),
                    url: f.url.clone(),
                    url_expires_at: f.url_expires_at.clone(),
                })
                .collect::<Vec<_>>()
                .serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<OutputFile>, D::Error> {
            Ok(Vec::<File>::deserialize(deserializer)?
                .into_iter()
                .map(|f| OutputFile {
                    location: f.location,
                    rows: f.rows,
                    bytes: f.bytes,
                    sha256: f.sha256,
                    chunks: f.chunks,
                    url: f.url,
                    url_expires_at: f.url_expires_at,
                })
                .collect())
        }
    }
}

/// Why the staged parts do not make up the plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError {
    /// The plan's chunks do not tile the key domain.
    #[error("the plan's chunks do not tile the key range at chunk {0}")]
    PlanGap(usize),
    /// Chunks have no part yet.
    #[error("chunks {0} have no exported part")]
    Missing(String),
    /// A part belongs to another plan.
    #[error("the part of chunk {index} was exported for plan {found}, not {expected}")]
    WrongPlan {
        /// Chunk index.
        index: usize,
        /// The part's plan digest.
        found: String,
        /// The plan's digest.
        expected: String,
    },
    /// A part covers another range than its chunk.
    #[error("the part of chunk {0} covers another key range than the plan's chunk")]
    WrongRange(usize),
    /// Parts whose stored size differs from their manifests (or that are gone while
    /// their manifests remain): damaged, to be exported again.
    #[error("{detail}")]
    Damaged {
        /// The chunks, sorted.
        chunks: Vec<usize>,
        /// What is wrong with each, for people.
        detail: String,
    },
    /// A part's manifest records no checksum of its bytes: nothing could tell a damaged
    /// part from an intact one, so it is exported again.
    #[error("the manifest of chunk {0}'s part records no checksum of its bytes")]
    Unchecked(usize),
    /// An xlsx part's segments do not add up to its manifest (or it has none: a part
    /// of an earlier version's format).
    #[error("the part of chunk {index} is not a workbook part: {why}")]
    BadSegments {
        /// Chunk index.
        index: usize,
        /// What does not add up.
        why: String,
    },
    /// A part's stored size differs from its manifest.
    #[error("the part of chunk {index} is {found} bytes, its manifest says {expected}")]
    WrongSize {
        /// Chunk index.
        index: usize,
        /// Stored size.
        found: u64,
        /// Manifest size.
        expected: u64,
    },
}

/// Checks that the plan tiles the key domain and that `parts[i]` (with its stored size)
/// is chunk i's export for this plan: none missing, none from another plan or range. Parts
/// of the wrong size are all listed in one [`CoverageError::Damaged`].
pub fn check_coverage(
    plan: &Plan,
    parts: &[Option<(PartManifest, Option<u64>)>],
) -> Result<(), CoverageError> {
    let ranges: Vec<&ChunkRange> = plan.chunks.iter().filter(|c| !c.nulls).collect();
    if ranges.first().is_some_and(|c| c.lo.is_some()) {
        return Err(CoverageError::PlanGap(0));
    }
    for pair in ranges.windows(2) {
        if pair[0].hi.is_none() || pair[0].hi != pair[1].lo {
            return Err(CoverageError::PlanGap(pair[1].index));
        }
    }
    if ranges.last().is_some_and(|c| c.hi.is_some()) {
        return Err(CoverageError::PlanGap(ranges.len()));
    }
    let missing: Vec<usize> = plan
        .chunks
        .iter()
        .filter(|c| parts.get(c.index).is_none_or(|p| p.is_none()))
        .map(|c| c.index)
        .collect();
    if !missing.is_empty() {
        return Err(CoverageError::Missing(
            ChunkSet::from_indexes(missing).to_string(),
        ));
    }
    let mut damaged = Vec::new();
    let mut detail = Vec::new();
    for chunk in &plan.chunks {
        if let Some(Some((part, size))) = parts.get(chunk.index) {
            match check_part(plan, chunk.index, part, *size) {
                Ok(()) => {}
                Err(e) if e.is_damage() => {
                    damaged.push(chunk.index);
                    detail.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CoverageError::Damaged {
            chunks: damaged,
            detail: detail.join("; "),
        })
    }
}

/// The keys of the files a run wrote at `layout`, as its own record says: the report's key,
/// or for a split report files 1 to `recorded` (at most [`crate::stage_protocol::MAX_CHUNKS`])
/// of the split naming scheme, none when nothing was recorded.
pub fn recorded_files(layout: &Layout, split: bool, recorded: Option<u64>) -> Vec<String> {
    if !split {
        return vec![layout.output.clone()];
    }
    let count = recorded
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(crate::stage_protocol::MAX_CHUNKS);
    (1..=count)
        .map(|n| crate::split::file_key(&layout.output, n))
        .collect()
}

/// Checks that `part` (stored with `size` bytes) is the export of chunk `index` of `plan`.
pub fn check_part(
    plan: &Plan,
    index: usize,
    part: &PartManifest,
    size: Option<u64>,
) -> Result<(), CoverageError> {
    if part.plan_digest != plan.digest {
        return Err(CoverageError::WrongPlan {
            index,
            found: part.plan_digest.clone(),
            expected: plan.digest.clone(),
        });
    }
    if part.index != index || plan.chunks.get(index) != Some(&part.range) {
        return Err(CoverageError::WrongRange(index));
    }
    if size != Some(part.bytes) {
        return Err(CoverageError::WrongSize {
            index,
            found: size.unwrap_or(0),
            expected: part.bytes,
        });
    }
    if part.crc32.is_none() && part.sha256.is_none() {
        return Err(CoverageError::Unchecked(index));
    }
    let segmented = matches!(plan.format.kind, crate::plan::PartKind::Xlsx { .. });
    let segments = if segmented {
        SheetSegment::check_all(&part.sheet_segments, part.rows, part.bytes)
    } else if part.sheet_segments.is_empty() {
        Ok(())
    } else {
        Err("only workbook parts have sheet segments".into())
    };
    segments.map_err(|why| CoverageError::BadSegments { index, why })
}

impl CoverageError {
    /// Whether the error is a damaged part (exported again), not a wrong plan.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            CoverageError::WrongSize { .. }
                | CoverageError::BadSegments { .. }
                | CoverageError::Unchecked(_)
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_report_manifest_is_snake_case_throughout_and_reads_older_ones() {
        let old = r#"{"location":"r.csv","rows":1,"bytes":2,"run_id":"r","plan_digest":"d",
            "source":"s","columns":["a"],"compression":"none","started_at":"a","finished_at":"b",
            "snapshot":{"id":"00000003-0000001B-1","takenAt":"2026-01-01T00:00:00Z"},
            "parts":[],"files":[{"location":"r-1.csv","rows":1,"bytes":2,"sha256":"x",
            "chunks":"0","url":"https://u","urlExpiresAt":"2026-01-02T00:00:00Z"}]}"#;
        let manifest: OutputManifest = serde_json::from_str(old).expect("an older manifest");
        assert_eq!(
            manifest.files[0].url_expires_at.as_deref(),
            Some("2026-01-02T00:00:00Z")
        );
        let written = serde_json::to_string(&manifest).expect("json");
        assert!(
            written.contains("\"taken_at\":\"2026-01-01T00:00:00Z\""),
            "{written}"
        );
        assert!(written.contains("\"url_expires_at\""), "{written}");
        let keys = written
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .filter(|k| k.chars().any(|c| c.is_ascii_uppercase()))
            .filter(|k| !k.starts_with("0000"))
            .collect::<Vec<_>>();
        assert!(keys.is_empty(), "camelCase keys: {keys:?}");
        let again: OutputManifest = serde_json::from_str(&written).expect("reads itself");
        assert_eq!(again, manifest);
    }
    use super::*;

    #[test]
    fn workbook_segments_must_add_up_to_their_part_and_stay_bounded() {
        let seg = |rows, bytes, xml_bytes| SheetSegment {
            rows,
            bytes,
            xml_bytes,
            crc32: 7,
        };
        let ok = [seg(10, 100, 900), seg(5, 50, 400)];
        assert_eq!(SheetSegment::check_all(&ok, 15, 150), Ok(()));
        assert_eq!(
            SheetSegment::check_all(&[], 0, 0),
            Ok(()),
            "a part without rows"
        );
        for (segments, rows, bytes, why) in [
            (
                vec![seg(10, 100, 900)],
                11,
                100,
                "hold 10 rows in 100 bytes",
            ),
            (
                vec![seg(10, 100, 900)],
                10,
                101,
                "hold 10 rows in 100 bytes",
            ),
            (vec![seg(0, 0, 0)], 0, 0, "segment 0 is empty"),
            (
                vec![seg(1, 2000, 900)],
                1,
                2000,
                "2000 deflated bytes for 900",
            ),
            (
                vec![seg(1, 10, MAX_SEGMENT_XML_BYTES + 1)],
                1,
                10,
                "more than",
            ),
            (
                vec![seg(u64::MAX, 1, 10), seg(2, 1, 10)],
                1,
                2,
                "its manifest says 1 rows",
            ),
        ] {
            let err = SheetSegment::check_all(&segments, rows, bytes).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn the_files_a_run_recorded_are_named_by_the_spec_and_the_count() {
        let layout = Layout::new("out/r.csv", "rj-1".parse().expect("run id"));
        assert_eq!(recorded_files(&layout, false, Some(9)), ["out/r.csv"]);
        assert_eq!(
            recorded_files(&layout, true, Some(2)),
            ["out/r-00001.csv", "out/r-00002.csv"]
        );
        assert!(recorded_files(&layout, true, None).is_empty());
        assert_eq!(
            recorded_files(&layout, true, Some(u64::MAX)).len(),
            crate::stage_protocol::MAX_CHUNKS
        );
    }
    use crate::plan::{KeyType, PartFormat, PlannedSource, Strategy, chunks_from_boundaries};

    fn plan() -> Plan {
        Plan {
            version: 1,
            run_id: "r".into(),
            source: PlannedSource {
                description: "t".into(),
                table: None,
                key_column: "id".into(),
                key_type: KeyType::Integer,
                columns: vec!["id".into()],
                spec_digest: String::new(),
                parameters: Vec::new(),
                column_types: Vec::new(),
            },
            format: PartFormat::plain_csv(),
            estimated_rows: 30,
            strategy: Strategy::Exact,
            chunks: chunks_from_boundaries(&["10".into(), "20".into()], 30, 0, true),
            created_at: "t0".into(),
            snapshot: None,
            digest: String::new(),
            warnings: Vec::new(),
        }
        .seal()
    }

    fn part(plan: &Plan, index: usize) -> Option<(PartManifest, Option<u64>)> {
        Some((
            PartManifest {
                index,
                range: plan.chunks[index].clone(),
                plan_digest: plan.digest.clone(),
                rows: 1,
                bytes: 5,
                sha256: None,
                crc32: Some(7),
                started_at: "a".into(),
                finished_at: "b".into(),
                snapshot: None,
                sheet_segments: Vec::new(),
            },
            Some(5),
        ))
    }

    #[test]
    fn complete_parts_cover_the_plan() {
        let p = plan();
        let parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        assert_eq!(check_coverage(&p, &parts), Ok(()));
    }

    #[test]
    fn missing_parts_are_listed_compactly() {
        let p = plan();
        let parts = vec![part(&p, 0), None, None, part(&p, 3)];
        assert_eq!(
            check_coverage(&p, &parts),
            Err(CoverageError::Missing("1-2".into()))
        );
    }

    #[test]
    fn parts_of_another_plan_or_range_or_size_are_refused() {
        let p = plan();
        let mut parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        if let Some(Some((m, _))) = parts.get_mut(1) {
            m.plan_digest = "sha256:other".into();
        }
        assert!(matches!(
            check_coverage(&p, &parts),
            Err(CoverageError::WrongPlan { index: 1, .. })
        ));
        let mut parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        if let Some(Some((m, _))) = parts.get_mut(2) {
            m.range.hi = Some("25".into());
        }
        assert_eq!(
            check_coverage(&p, &parts),
            Err(CoverageError::WrongRange(2))
        );
        let mut parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        if let Some(Some((_, size))) = parts.get_mut(3) {
            *size = Some(4);
        }
        assert!(matches!(
            check_coverage(&p, &parts),
            Err(CoverageError::Damaged { chunks, .. }) if chunks == [3]
        ));
        if let Some(Some((_, size))) = parts.get_mut(0) {
            *size = None;
        }
        let Err(CoverageError::Damaged { chunks, detail }) = check_coverage(&p, &parts) else {
            panic!("damaged parts are listed");
        };
        assert_eq!(chunks, [0, 3]);
        assert!(detail.contains("chunk 0 is 0 bytes"), "{detail}");
    }

    #[test]
    fn a_part_checked_by_nothing_is_damaged_and_an_old_sha256_still_counts() {
        let p = plan();
        let mut parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        if let Some(Some((m, _))) = parts.get_mut(1) {
            m.crc32 = None;
            m.sha256 = Some("ab".repeat(32));
        }
        assert_eq!(
            check_coverage(&p, &parts),
            Ok(()),
            "an earlier version's part"
        );
        if let Some(Some((m, _))) = parts.get_mut(2) {
            m.crc32 = None;
        }
        let Err(CoverageError::Damaged { chunks, detail }) = check_coverage(&p, &parts) else {
            panic!("a part without a checksum is damaged");
        };
        assert_eq!(chunks, [2]);
        assert!(detail.contains("records no checksum"), "{detail}");
    }

    #[test]
    fn a_plan_with_a_gap_is_refused() {
        let mut p = plan();
        p.chunks[1].hi = Some("15".into());
        let p = p.seal();
        let parts: Vec<_> = (0..4).map(|i| part(&p, i)).collect();
        assert_eq!(check_coverage(&p, &parts), Err(CoverageError::PlanGap(2)));
    }

    #[test]
    fn run_ids_are_bounded_lowercase_labels() {
        for good in ["a", "rj-0123456789ab", "0a1b2c3d4e5f", &"a".repeat(63)] {
            assert_eq!(good.parse::<RunId>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "../../..",
            "..",
            ".",
            "a/b",
            "A",
            "-a",
            "a-",
            "a b",
            "a\0",
            "é",
            "a_b",
            &"a".repeat(64),
        ] {
            let err = bad.parse::<RunId>().unwrap_err();
            assert!(err.to_string().contains("invalid run id"), "{bad:?}: {err}");
        }
        let json: Result<RunId, _> = serde_json::from_str("\"../x\"");
        assert!(json.is_err(), "read back from staging, it is checked too");
        let id: RunId = serde_json::from_str("\"rj-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"rj-1\"");
    }
}
