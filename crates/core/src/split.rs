//! Split outputs (`spec.output.split`): where a report is cut into files and what the
//! files are called. Pure decisions; the engine's assembly (`pipeline/assemble.rs`) applies them.

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

/// The validated `spec.output.split`: at least one limit is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLimits {
    /// Most data rows in a file.
    pub max_rows: Option<NonZeroU64>,
    /// Most bytes in a file, counted as the exported parts' bytes.
    pub max_bytes: Option<NonZeroU64>,
}

impl SplitLimits {
    /// Whether a file that holds `rows` rows and `bytes` bytes in `parts` parts is closed
    /// before a part of `next_rows` rows and `next_bytes` bytes: when the part would take it
    /// past a limit. A file always takes at least one part, so a part larger than a limit
    /// is a file of its own rather than an error.
    pub fn closes_before(
        &self,
        parts: usize,
        rows: u64,
        bytes: u64,
        next_rows: u64,
        next_bytes: u64,
    ) -> bool {
        let over = |limit: Option<NonZeroU64>, have: u64, next: u64| {
            limit.is_some_and(|l| have.saturating_add(next) > l.get())
        };
        parts > 0
            && (over(self.max_rows, rows, next_rows) || over(self.max_bytes, bytes, next_bytes))
    }

    /// The chunk size to plan with: at most nine tenths of `maxRows`. Chunk boundaries
    /// are quantiles of the keys, so chunks planned at `maxRows` rows come out a few rows
    /// over or under it (99, 100 and 101 for 300 rows); the margin keeps every chunk, and
    /// so every file, within the limit unless the keys are far more skewed than the
    /// planner saw.
    pub fn chunk_size(&self, chunk_size: NonZeroU64) -> NonZeroU64 {
        match self.max_rows {
            Some(max) => {
                let margin = NonZeroU64::new(max.get() - max.get() / 10).unwrap_or(max);
                chunk_size.min(margin)
            }
            None => chunk_size,
        }
    }

    /// The files `parts` (rows, bytes; in key order) make: the index range of the parts of
    /// each file, as [`SplitLimits::closes_before`] cuts them one part at a time.
    pub fn files(&self, parts: &[(u64, u64)]) -> Vec<std::ops::Range<usize>> {
        let mut files = Vec::new();
        let (mut start, mut rows, mut bytes) = (0, 0u64, 0u64);
        for (i, &(r, b)) in parts.iter().enumerate() {
            if self.closes_before(i - start, rows, bytes, r, b) {
                files.push(start..i);
                (start, rows, bytes) = (i, 0, 0);
            }
            rows += r;
            bytes += b;
        }
        if start < parts.len() {
            files.push(start..parts.len());
        }
        files
    }
}

/// The key of file `number` (from 1) of a split report at `output`: the number goes before
/// the extensions of the last path segment, so that readers still know the type
/// (`exports/orders.csv.gz` -> `exports/orders-00001.csv.gz`).
pub fn file_key(output: &str, number: usize) -> String {
    let name_start = output.rfind('/').map_or(0, |i| i + 1);
    let name = &output[name_start..];
    // A leading dot names a hidden file, not an extension.
    let stem_len = name[1.min(name.len())..]
        .find('.')
        .map_or(name.len(), |i| i + 1);
    let at = name_start + stem_len;
    format!("{}-{number:05}{}", &output[..at], &output[at..])
}

/// One file of a split report, as its manifest lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    /// Where the file is: a path or a URL.
    pub location: String,
    /// Data rows in the file (its header is not counted).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    /// The chunks whose rows it holds, as compact ranges (`4-7`).
    pub chunks: String,
    /// A signed download link (bucket destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the link expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rows: Option<u64>, bytes: Option<u64>) -> SplitLimits {
        SplitLimits {
            max_rows: rows.and_then(NonZeroU64::new),
            max_bytes: bytes.and_then(NonZeroU64::new),
        }
    }

    #[test]
    fn file_numbers_go_before_the_extensions() {
        assert_eq!(file_key("orders.csv", 1), "orders-00001.csv");
        assert_eq!(
            file_key("a/b.c/orders.csv.gz", 12),
            "a/b.c/orders-00012.csv.gz"
        );
        assert_eq!(file_key("exports/orders", 3), "exports/orders-00003");
        assert_eq!(file_key(".orders.csv", 1), ".orders-00001.csv");
        assert_eq!(file_key("x/.hidden", 2), "x/.hidden-00002");
        assert_eq!(file_key("orders.parquet", 123456), "orders-123456.parquet");
    }

    #[test]
    fn files_close_before_the_part_that_would_pass_a_limit() {
        let parts = [(40, 400), (40, 400), (40, 400), (10, 100)];
        assert_eq!(limits(Some(80), None).files(&parts), vec![0..2, 2..4]);
        assert_eq!(limits(Some(79), None).files(&parts), vec![0..1, 1..2, 2..4]);
        assert_eq!(limits(None, Some(800)).files(&parts), vec![0..2, 2..4]);
        // Both limits: the first reached cuts.
        assert_eq!(
            limits(Some(1000), Some(500)).files(&parts),
            vec![0..1, 1..2, 2..4]
        );
        assert_eq!(limits(Some(1000), None).files(&parts), vec![0..4]);
    }

    #[test]
    fn a_part_larger_than_a_limit_is_a_file_of_its_own() {
        let parts = [(5, 1), (500, 1), (5, 1)];
        assert_eq!(limits(Some(10), None).files(&parts), vec![0..1, 1..2, 2..3]);
        assert_eq!(
            limits(Some(10), None).files(&[]),
            Vec::<std::ops::Range<usize>>::new()
        );
    }

    #[test]
    fn chunks_are_planned_no_larger_than_max_rows() {
        let size = NonZeroU64::new(100_000).unwrap();
        assert_eq!(limits(Some(500), None).chunk_size(size).get(), 450);
        assert_eq!(limits(Some(1), None).chunk_size(size).get(), 1);
        assert_eq!(limits(Some(9), None).chunk_size(size).get(), 9);
        assert_eq!(
            limits(Some(1_000_000), None).chunk_size(size).get(),
            100_000
        );
        assert_eq!(limits(None, Some(10)).chunk_size(size).get(), 100_000);
    }
}
