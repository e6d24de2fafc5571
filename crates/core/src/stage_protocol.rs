//! The contract between the controller and its stage pods, in one place: the environment
//! variables a pod gets, the exit codes it ends with, and the one-line JSON result
//! ([`StageResult`]) it writes as its termination message, plus [`ChunkSet`], the compact
//! chunk ranges (`7,19-21`) the chunks Job and the status use.
//!
//! A result is written by [`StageResult::to_line`] (one JSON object, at most
//! [`MAX_RESULT_BYTES`], long strings cut so that it still parses) and read only by
//! [`StageResult::parse`], which refuses oversized, malformed and unknown results.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit code of a stage that succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code of a transient failure: running the same stage again may succeed.
pub const EXIT_TRANSIENT: i32 = 1;
/// Exit code of a usage error (bad command-line arguments), as clap uses.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a permanent failure: bad spec, bad SQL, missing table or column,
/// permission denied, corrupt staging data. Retrying cannot help; the chunk Job's
/// `podFailurePolicy` fails the index at once on this code.
pub const EXIT_PERMANENT: i32 = 3;
/// Exit code of an assembly that found damaged parts: it removed them (and their
/// manifests), so exporting the chunks it names again and assembling then succeeds.
/// Assembling again alone cannot help. The message names the chunks as
/// `damaged_chunks=<ranges>`.
pub const EXIT_DAMAGED: i32 = 4;
/// Exit code of a stage whose run's database snapshot is gone (its holder ended, the
/// database restarted, `snapshotMaxSeconds` passed): no retry under that snapshot can
/// succeed, and a report mixing snapshots is never made, so the whole export must start
/// again under a new snapshot.
pub const EXIT_SNAPSHOT_LOST: i32 = 5;
/// Exit code of a chunk worker that found the database busier than its ReportDatabase's
/// throttle allows and did not start its chunk: the chunks Job's `podFailurePolicy` ignores
/// the failure (no retry is spent) and starts the pod again; its message says why.
pub const EXIT_THROTTLED: i32 = 6;

/// Names of the environment variables of the stage pods.
pub mod env {
    /// The ReportJob (YAML or JSON) a stage runs.
    pub const SPEC: &str = "REPORTJOB_SPEC";
    /// The run's staging id.
    pub const RUN_ID: &str = "REPORTJOB_RUN_ID";
    /// The ReportJob's name.
    pub const NAME: &str = "REPORTJOB_NAME";
    /// The ReportJob's namespace.
    pub const NAMESPACE: &str = "REPORTJOB_NAMESPACE";
    /// `json` or `text` log lines.
    pub const LOG_FORMAT: &str = "REPORTJOB_LOG_FORMAT";
    /// The plan digest every chunk and assemble pod checks.
    pub const PLAN_DIGEST: &str = "REPORTJOB_PLAN_DIGEST";
    /// The plan chunks a chunks Job exports, as a [`ChunkSet`](super::ChunkSet).
    pub const CHUNKS: &str = "REPORTJOB_CHUNKS";
    /// Where a `pvc` destination is mounted.
    pub const OUTPUT_DIR: &str = "REPORTJOB_OUTPUT_DIR";
    /// The completion webhook's URL (from `spec.notify.webhookSecretRef`).
    pub const WEBHOOK_URL: &str = "REPORTJOB_WEBHOOK_URL";
    /// The object store endpoint (tests and S3-compatible stores).
    pub const S3_ENDPOINT: &str = "REPORTJOB_S3_ENDPOINT";
    /// The source database's URL (from `spec.source.connectionSecretRef`).
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// Bucket credentials (from the bucket's `credentialsSecretRef`).
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// Bucket credentials (from the bucket's `credentialsSecretRef`).
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// Bucket credentials (optional).
    pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    /// `true`: webhook URLs and bucket endpoints may be link-local (the engine's
    /// `net_guard` otherwise refuses them).
    pub const ALLOW_LINK_LOCAL: &str = "REPORTJOB_ALLOW_LINK_LOCAL";
    /// The ReportDatabase's throttle a chunk worker checks before it exports, as
    /// [`Throttle::to_env`](crate::database::throttle::Throttle::to_env) writes it.
    pub const THROTTLE: &str = "REPORTJOB_THROTTLE";
}

/// Kubernetes keeps at most 4096 bytes of a termination message.
pub const MAX_RESULT_BYTES: usize = 4096;

/// The most chunks a [`ChunkSet`] may name (`spec.chunking.maxChunks` is at most 100,000).
pub const MAX_CHUNKS: usize = 1_000_000;

/// What a webhook delivery came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyReport {
    /// The receiver accepted it (2xx).
    pub delivered: bool,
    /// Why not (`WebhookTimeout`, `NotRequested`...), a condition reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What happened on the last attempt (never the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl NotifyReport {
    /// The condition reason of this outcome: `WebhookDelivered`, or why not.
    pub fn condition_reason(&self) -> &str {
        if self.delivered {
            "WebhookDelivered"
        } else {
            self.reason.as_deref().unwrap_or("NotifyFailed")
        }
    }
}

/// The result of one stage pod, its termination message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all_fields = "camelCase")]
pub enum StageResult {
    /// `reportjob plan --write`: the plan is staged.
    Planned {
        /// The run's staging id.
        run_id: String,
        /// How many chunks.
        chunks: u64,
        /// The plan's digest.
        digest: String,
        /// The planner's row estimate.
        estimated_rows: u64,
        /// How the boundaries were found.
        strategy: String,
        /// What the database role may do beyond reading (a superuser, a member of
        /// `pg_write_server_files`...): shown in the status and as an Event.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// `reportjob worker`: one chunk is exported.
    Exported {
        /// The plan chunk.
        chunk: u64,
        /// Data rows.
        rows: u64,
        /// Bytes of the part.
        bytes: u64,
        /// The part's CRC-32 (absent from an earlier version's result, which carried a
        /// sha256 instead: nothing reads either, they are for people).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crc32: Option<u32>,
    },
    /// `reportjob assemble`: the report is published.
    Assembled {
        /// Data rows.
        rows: u64,
        /// Bytes of the report.
        bytes: u64,
        /// SHA-256 of the report.
        sha256: String,
        /// Where it is, as the pod sees it.
        location: String,
        /// A signed download link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// When the link expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url_expires_at: Option<Timestamp>,
        /// The success notification, when `spec.notify` is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notified: Option<NotifyReport>,
        /// The database snapshot every part was read under (`consistency: Snapshot`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<crate::snapshot::SnapshotRecord>,
        /// How many files a split report has (`location` is then its manifest's, and the
        /// figures above are totals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_count: Option<u64>,
        /// The first of those files, as many as fit the termination message; the manifest
        /// lists them all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<AssembledFile>,
    },
    /// `reportjob notify`: the webhook outcome.
    Notified(NotifyReport),
    /// `reportjob cleanup`: staging data removed.
    CleanedUp {
        /// The removed staging location.
        removed: String,
        /// The removed report, with `--delete-output`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deleted: Option<String>,
    },
    /// Any stage that failed (its exit code says whether a retry can help).
    Failed {
        /// A short label (`invalid_spec`, `database`, `storage`...).
        reason: String,
        /// What went wrong.
        message: String,
    },
}

/// A file of a split report in an `Assembled` result: its place is its number's (file `i`
/// of the list is `<name>-0000<i+1>.<ext>`), so only its figures travel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssembledFile {
    /// Data rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

impl StageResult {
    /// An `Assembled` result with the files of a split report: as many of them, first
    /// first, as keep the line within [`MAX_RESULT_BYTES`] (never a cut hash).
    pub fn with_files(mut self, all: &[crate::split::OutputFile]) -> StageResult {
        if all.is_empty() {
            return self;
        }
        if let StageResult::Assembled {
            file_count, files, ..
        } = &mut self
        {
            *file_count = Some(all.len() as u64);
            *files = all
                .iter()
                .map(|f| AssembledFile {
                    rows: f.rows,
                    bytes: f.bytes,
                    sha256: f.sha256.clone(),
                })
                .collect();
        }
        while self.to_json_len() > MAX_RESULT_BYTES {
            let StageResult::Assembled { files, .. } = &mut self else {
                break;
            };
            if files.pop().is_none() {
                break;
            }
        }
        self
    }

    fn to_json_len(&self) -> usize {
        serde_json::to_string(self).map_or(usize::MAX, |line| line.len())
    }
}

/// A termination message that is not a stage result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Nothing was written.
    #[error("the stage result is empty")]
    Empty,
    /// More than [`MAX_RESULT_BYTES`].
    #[error("the stage result has {0} bytes, more than the {MAX_RESULT_BYTES} allowed")]
    TooLong(usize),
    /// Not a JSON stage result (or an unknown `result`).
    #[error("the stage result is malformed: {0}")]
    Malformed(String),
    /// Bad compact ranges.
    #[error("bad chunk ranges {text:?}: {why}")]
    Ranges {
        /// The text.
        text: String,
        /// What is wrong.
        why: String,
    },
}

impl StageResult {
    /// The kind of result, as written in its `result` field.
    pub fn kind(&self) -> &'static str {
        match self {
            StageResult::Planned { .. } => "Planned",
            StageResult::Exported { .. } => "Exported",
            StageResult::Assembled { .. } => "Assembled",
            StageResult::Notified(_) => "Notified",
            StageResult::CleanedUp { .. } => "CleanedUp",
            StageResult::Failed { .. } => "Failed",
        }
    }

    /// The result as one JSON line of at most [`MAX_RESULT_BYTES`]: while it is longer, the
    /// longest string field is cut on a char boundary (and ends with `…`), so the line
    /// always parses back.
    pub fn to_line(&self) -> String {
        if let Ok(line) = serde_json::to_string(self)
            && line.len() <= MAX_RESULT_BYTES
        {
            return line;
        }
        let Ok(mut value) = serde_json::to_value(self) else {
            // Every field serializes; keep a parseable line even so.
            return fallback_line(self.kind());
        };
        loop {
            let line = value.to_string();
            if line.len() <= MAX_RESULT_BYTES {
                return line;
            }
            let excess = line.len() - MAX_RESULT_BYTES;
            if !cut_longest_string(&mut value, excess) {
                return fallback_line(self.kind());
            }
        }
    }

    /// Reads a termination message: one JSON stage result of at most [`MAX_RESULT_BYTES`].
    pub fn parse(text: &str) -> Result<StageResult, ProtocolError> {
        if text.len() > MAX_RESULT_BYTES {
            return Err(ProtocolError::TooLong(text.len()));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(ProtocolError::Empty);
        }
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    /// What a failed pod's termination message says: the message of a `Failed` result, or
    /// the text itself when it is not a result (a crash whose log the kubelet kept).
    /// The chunks a failed assembly deleted as damaged (a `Failed` result with reason
    /// `damaged` whose message starts `damaged_chunks=<ranges>:`), bounded by the plan's
    /// `total`; `None` for any other text.
    pub fn damaged_chunks(text: &str, total: usize) -> Option<ChunkSet> {
        let Ok(StageResult::Failed { reason, message }) = StageResult::parse(text) else {
            return None;
        };
        if reason != "damaged" {
            return None;
        }
        let (ranges, _) = message.strip_prefix("damaged_chunks=")?.split_once(':')?;
        ChunkSet::parse(ranges, total)
            .ok()
            .filter(|chunks| !chunks.is_empty())
    }

    pub fn failure_text(text: &str) -> String {
        match StageResult::parse(text) {
            Ok(StageResult::Failed { message, .. }) => message,
            _ => text.trim().to_string(),
        }
    }
}

impl fmt::Display for StageResult {
    /// The result for people (`chunks=12 digest=sha256:... run=...`), as the stage
    /// commands print it on stdout. Never parsed: the controller reads [`StageResult::to_line`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageResult::Planned {
                run_id,
                chunks,
                digest,
                estimated_rows,
                strategy,
                warnings,
            } => {
                write!(
                    f,
                    "chunks={chunks} digest={digest} run={run_id} estimated_rows={estimated_rows} \
                     strategy={strategy}"
                )?;
                for warning in warnings {
                    write!(f, "\nwarning: {warning}")?;
                }
                Ok(())
            }
            StageResult::Exported {
                chunk,
                rows,
                bytes,
                crc32,
            } => {
                write!(f, "chunk={chunk} rows={rows} bytes={bytes}")?;
                match crc32 {
                    Some(crc) => write!(f, " crc32={crc:08x}"),
                    None => Ok(()),
                }
            }
            StageResult::Assembled {
                rows,
                bytes,
                sha256,
                location,
                url,
                url_expires_at,
                notified,
                ..
            } => {
                write!(
                    f,
                    "rows={rows} bytes={bytes} sha256={sha256} location={location}"
                )?;
                match notified {
                    Some(n) if n.delivered => write!(f, " notified=true")?,
                    Some(n) => write!(f, " notified=false notify_reason={}", n.condition_reason())?,
                    None => {}
                }
                if let Some(at) = url_expires_at {
                    write!(f, " url_expires_at={at}")?;
                }
                if let Some(url) = url {
                    write!(f, " url={url}")?;
                }
                Ok(())
            }
            StageResult::Notified(n) if n.delivered => write!(
                f,
                "notified=true attempts={} status={}",
                n.attempts,
                n.status.unwrap_or_default()
            ),
            StageResult::Notified(n) => write!(
                f,
                "notified=false reason={} attempts={} message={}",
                n.condition_reason(),
                n.attempts,
                n.message.as_deref().unwrap_or_default()
            ),
            StageResult::CleanedUp { removed, deleted } => {
                write!(f, "removed={removed}")?;
                if let Some(deleted) = deleted {
                    write!(f, " deleted={deleted}")?;
                }
                Ok(())
            }
            StageResult::Failed { message, .. } => write!(f, "{message}"),
        }
    }
}

/// A line for a result that cannot be made short enough (it cannot happen: strings can
/// always be cut); it still parses, as a failure.
fn fallback_line(kind: &str) -> String {
    serde_json::json!({"result": "Failed", "reason": "protocol", "message": format!("the {kind} result did not fit the termination message")}).to_string()
}

/// Cuts the longest string in `value` (the `result` tag aside) by at least `excess` bytes
/// of JSON, on a char boundary, marking the cut with `…`. False when no string can shrink.
fn cut_longest_string(value: &mut Value, excess: usize) -> bool {
    fn longest<'a>(v: &'a mut Value, key: Option<&str>, best: &mut Option<&'a mut String>) {
        match v {
            Value::String(s)
                if key != Some("result")
                    && best.as_ref().is_none_or(|b| json_len(b) < json_len(s)) =>
            {
                *best = Some(s);
            }
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    longest(child, Some(k), best);
                }
            }
            Value::Array(items) => {
                for child in items {
                    longest(child, None, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    longest(value, None, &mut best);
    let Some(s) = best else { return false };
    if s.is_empty() {
        return false;
    }
    // Keep the longest prefix whose JSON (escapes included) leaves room for the marker.
    let marker = '…';
    let budget = json_len(s)
        .saturating_sub(2)
        .saturating_sub(excess + marker.len_utf8());
    let mut used = 0;
    let mut cut = 0;
    for (at, c) in s.char_indices() {
        let mut buf = [0u8; 4];
        let width = json_len(c.encode_utf8(&mut buf)) - 2;
        if used + width > budget {
            break;
        }
        used += width;
        cut = at + c.len_utf8();
    }
    if cut >= s.len() {
        return false;
    }
    s.truncate(cut);
    s.push(marker);
    true
}

fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len(), |j| j.len())
}

/// A set of chunk indexes, written as compact ranges: `7,19-21`. Sorted, without
/// duplicates, at most [`MAX_CHUNKS`] members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet(Vec<usize>);

impl ChunkSet {
    /// Parses compact ranges whose every index is below `bound` (and [`MAX_CHUNKS`]).
    /// Empty text is the empty set; `3-1`, `x`, `1-` and indexes past the bound are refused.
    pub fn parse(text: &str, bound: usize) -> Result<ChunkSet, ProtocolError> {
        let bound = bound.min(MAX_CHUNKS);
        let bad = |why: String| ProtocolError::Ranges {
            text: text.chars().take(200).collect(),
            why,
        };
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let number = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| bad(format!("{item:?} is not an index or a range")))
            };
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (number(lo)?, number(hi)?),
                None => (number(item)?, number(item)?),
            };
            if lo > hi {
                return Err(bad(format!("{item:?} runs backwards")));
            }
            if hi >= bound {
                return Err(bad(format!("{item:?} is past the last index {bound}")));
            }
            if out.len() + (hi - lo) >= MAX_CHUNKS {
                return Err(bad(format!("more than {MAX_CHUNKS} indexes")));
            }
            out.extend(lo..=hi);
        }
        Ok(ChunkSet::from_indexes(out))
    }

    /// The set of these indexes.
    pub fn from_indexes(indexes: impl IntoIterator<Item = usize>) -> ChunkSet {
        let mut v: Vec<usize> = indexes.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        ChunkSet(v)
    }

    /// `0..total`.
    pub fn all(total: usize) -> ChunkSet {
        ChunkSet((0..total).collect())
    }

    /// The indexes, ascending.
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No index.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        self.0.binary_search(&index).is_ok()
    }

    /// The plan chunk that completion index `i` of a Job listing this set exports: the
    /// `i`-th member.
    pub fn chunk_of_completion_index(&self, i: usize) -> Option<usize> {
        self.0.get(i).copied()
    }

    /// The plan chunks of a Job's completion indexes (indexes past the list are dropped).
    pub fn chunks_of_completion_indexes(&self, indexes: &ChunkSet) -> ChunkSet {
        ChunkSet(
            indexes
                .0
                .iter()
                .filter_map(|&i| self.chunk_of_completion_index(i))
                .collect::<Vec<_>>(),
        )
        .normalized()
    }

    /// This set and `other`.
    pub fn union(&self, other: &ChunkSet) -> ChunkSet {
        ChunkSet::from_indexes(self.0.iter().chain(&other.0).copied())
    }

    /// The members below `total`.
    pub fn below(&self, total: usize) -> ChunkSet {
        ChunkSet(self.0.iter().copied().filter(|&i| i < total).collect())
    }

    /// This set without `other`'s members.
    pub fn without(&self, other: &ChunkSet) -> ChunkSet {
        ChunkSet(
            self.0
                .iter()
                .copied()
                .filter(|&i| !other.contains(i))
                .collect(),
        )
    }

    /// `0..total` without this set's members.
    pub fn missing_from(&self, total: usize) -> ChunkSet {
        ChunkSet((0..total).filter(|&i| !self.contains(i)).collect())
    }

    fn normalized(self) -> ChunkSet {
        ChunkSet::from_indexes(self.0)
    }
}

impl fmt::Display for ChunkSet {
    /// `[1,2,3,7,9,10]` as `1-3,7,9-10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                end += 1;
                i += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
