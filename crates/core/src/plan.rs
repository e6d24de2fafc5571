//! The chunk plan: pure code that turns key statistics into key-range chunks, and the
//! plan document (`plan.json`) with its digest.
//!
//! Chunks tile the whole key domain: the first is open below, the last open above, and
//! rows whose key is NULL get a chunk of their own. So no row falls between chunks, even
//! if rows are added after planning.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ident::{Quoted, quote_literal};

mod part_format;
pub use part_format::{PartCompression, PartFormat, PartKind};

/// Types a key column may have.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// smallint / int2
    Smallint,
    /// integer / int4
    Integer,
    /// bigint / int8
    Bigint,
    /// numeric
    Numeric,
    /// date
    Date,
    /// timestamp without time zone
    Timestamp,
    /// timestamp with time zone
    Timestamptz,
    /// text
    Text,
    /// character varying
    Varchar,
    /// uuid
    Uuid,
}

impl KeyType {
    /// Maps a Postgres type name (as `format_type` or the driver prints it) to a key type.
    pub fn from_pg_name(name: &str) -> Option<KeyType> {
        let lower = name.to_ascii_lowercase();
        let base = lower.split('(').next().unwrap_or("").trim();
        Some(match base {
            "smallint" | "int2" => KeyType::Smallint,
            "integer" | "int" | "int4" => KeyType::Integer,
            "bigint" | "int8" => KeyType::Bigint,
            "numeric" | "decimal" => KeyType::Numeric,
            "date" => KeyType::Date,
            "timestamp" | "timestamp without time zone" => KeyType::Timestamp,
            "timestamptz" | "timestamp with time zone" => KeyType::Timestamptz,
            "text" => KeyType::Text,
            "varchar" | "character varying" => KeyType::Varchar,
            "uuid" => KeyType::Uuid,
            _ => return None,
        })
    }

    /// The SQL type name used in casts.
    pub fn sql_name(self) -> &'static str {
        match self {
            KeyType::Smallint => "smallint",
            KeyType::Integer => "integer",
            KeyType::Bigint => "bigint",
            KeyType::Numeric => "numeric",
            KeyType::Date => "date",
            KeyType::Timestamp => "timestamp",
            KeyType::Timestamptz => "timestamptz",
            KeyType::Text => "text",
            KeyType::Varchar => "varchar",
            KeyType::Uuid => "uuid",
        }
    }

    /// The list users see when their key type is not supported.
    pub const SUPPORTED: &'static str =
        "smallint, integer, bigint, numeric, date, timestamp, timestamptz, text, varchar, uuid";

    /// Whether `text` can be a bound of this type as the server prints it: digits and
    /// signs for numbers, date and time characters for times, hex and dashes for uuids
    /// (text keys take any text; every bound is sent as a quoted literal anyway).
    pub fn accepts(self, text: &str) -> bool {
        let all = |f: fn(char) -> bool| !text.is_empty() && text.len() <= 64 && text.chars().all(f);
        match self {
            KeyType::Smallint | KeyType::Integer | KeyType::Bigint => {
                all(|c| c.is_ascii_digit() || c == '-')
            }
            KeyType::Numeric => all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')),
            KeyType::Date | KeyType::Timestamp | KeyType::Timestamptz => {
                all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | ':' | '.' | ' '))
            }
            KeyType::Uuid => all(|c| c.is_ascii_hexdigit() || c == '-'),
            KeyType::Text | KeyType::Varchar => !text.contains('\0'),
        }
    }

    /// A typed SQL literal for a key value given in its text form.
    pub fn literal(self, text: &str) -> String {
        format!("{}::{}", quote_literal(text), self.sql_name())
    }
}

/// A relation found in the catalog at plan time (names as stored, unquoted).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
}

/// What a plan exports, as data: names and types, never SQL. The statement of a chunk is
/// rebuilt from the validated spec at export time (`SourceSql::build` in the engine), so a staged
/// plan cannot carry SQL into the next run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlannedSource {
    /// For people: the table or `query`.
    pub description: String,
    /// Table mode: the relation the spec's `table` named at plan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableName>,
    /// The key column's name.
    pub key_column: String,
    /// The key column's type.
    pub key_type: KeyType,
    /// The exported columns, in order (the CSV header).
    pub columns: Vec<String>,
    /// `sha256:<hex>` of the spec's source fields this plan was made for
    /// ([`spec_digest`]); a staged plan is reused only for the same spec.
    #[serde(default)]
    pub spec_digest: String,
    /// The types of `$1..$n` (declared, or inferred by the server at plan time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<crate::sql::params::ParamType>,
    /// The exported columns' types as Postgres names them, in column order (left out of
    /// plans made before they were recorded; formats that need them refuse such a plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_types: Vec<String>,
}

impl PlannedSource {
    /// Checks the plan records one type per column, as the typed formats (JSON Lines,
    /// Parquet, xlsx) need: a staged plan is untrusted, and plans made before the types
    /// were recorded have none.
    pub fn check_column_types(&self) -> Result<(), String> {
        if self.column_types.len() == self.columns.len() {
            return Ok(());
        }
        Err(format!(
            "the plan records {} column types for {} columns (plans made before they were \
             recorded have none); delete the run's staging data to plan again",
            self.column_types.len(),
            self.columns.len()
        ))
    }
}

/// One chunk: a half-open key range `lo <= key < hi`, or the rows with a NULL key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    /// Position in the plan and in the report.
    pub index: usize,
    /// Inclusive lower bound (text form of the key); `None` is unbounded.
    pub lo: Option<String>,
    /// Exclusive upper bound; `None` is unbounded.
    pub hi: Option<String>,
    /// This chunk holds the rows whose key is NULL (and `lo`/`hi` are unused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nulls: bool,
    /// The planner's estimate of the chunk's rows.
    pub estimated_rows: u64,
}

impl ChunkRange {
    /// The chunk's condition on the key, as SQL.
    pub fn predicate(&self, key_sql: &str, key_type: KeyType) -> String {
        if self.nulls {
            return format!("{key_sql} IS NULL");
        }
        match (&self.lo, &self.hi) {
            (Some(lo), Some(hi)) => format!(
                "{key_sql} >= {} AND {key_sql} < {}",
                key_type.literal(lo),
                key_type.literal(hi)
            ),
            (Some(lo), None) => format!("{key_sql} >= {}", key_type.literal(lo)),
            (None, Some(hi)) => format!("{key_sql} < {}", key_type.literal(hi)),
            (None, None) => format!("{key_sql} IS NOT NULL"),
        }
    }

    /// The range for people: `[10, 20)`, `(-inf, 10)`, `NULL`.
    pub fn describe(&self) -> String {
        if self.nulls {
            return "[key IS NULL]".to_string();
        }
        format!(
            "[{}, {})",
            self.lo.as_deref().unwrap_or("-inf"),
            self.hi.as_deref().unwrap_or("+inf")
        )
    }
}

/// How the boundaries were found.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Exact quantiles over all keys (small sources).
    Exact,
    /// Quantiles from the `pg_stats` histogram and most common values.
    Histogram,
    /// Quantiles of a sample of keys.
    Sample,
}

/// The plan of a run, written once to `plan.json` and never recomputed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Plan {
    /// Format version of this document.
    pub version: u32,
    /// The run this plan belongs to.
    pub run_id: String,
    /// What is exported.
    pub source: PlannedSource,
    /// How parts are encoded.
    pub format: PartFormat,
    /// The planner's estimate of all rows.
    pub estimated_rows: u64,
    /// How the boundaries were found.
    pub strategy: Strategy,
    /// The chunks, in key order (the NULL chunk last).
    pub chunks: Vec<ChunkRange>,
    /// When the plan was made (RFC 3339).
    pub created_at: String,
    /// The database snapshot the plan was made under (`consistency: Snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::SnapshotRecord>,
    /// `sha256:<hex>` of this document with an empty digest.
    #[serde(default)]
    pub digest: String,
    /// What the plan stage found worth a warning (a role with more privileges than
    /// reading needs); shown to people, not stored in `plan.json` nor digested.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Plan {
    /// Computes the digest of the plan's content.
    pub fn compute_digest(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.digest = String::new();
        let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }

    /// Sets the digest field.
    pub fn seal(mut self) -> Plan {
        self.digest = self.compute_digest();
        self
    }

    /// True when the stored digest matches the content.
    pub fn digest_is_valid(&self) -> bool {
        self.digest == self.compute_digest()
    }

    /// Checks a staged plan before reuse: its digest matches its content, and it was
    /// made for `spec` (the digest covers the spec's source fields and the ranges).
    pub fn check_against(&self, spec: &crate::api::valid::ValidSource) -> Result<(), String> {
        if !self.digest_is_valid() {
            return Err(format!(
                "does not match its digest {}: it was changed after planning",
                self.digest
            ));
        }
        if self.source.spec_digest != crate::identity::source_digest(spec) {
            return Err(format!(
                "was made for another spec (spec digest {}, this spec {}); remove it to plan again",
                self.source.spec_digest,
                crate::identity::source_digest(spec)
            ));
        }
        self.format.compression()?;
        if !self.source.column_types.is_empty()
            && self.source.column_types.len() != self.source.columns.len()
        {
            return Err(format!(
                "has {} column types for {} columns",
                self.source.column_types.len(),
                self.source.columns.len()
            ));
        }
        for chunk in &self.chunks {
            for bound in [&chunk.lo, &chunk.hi].into_iter().flatten() {
                if !self.source.key_type.accepts(bound) {
                    return Err(format!(
                        "chunk {} has bound {bound:?}, which is not a {} value",
                        chunk.index,
                        self.source.key_type.sql_name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The one-line summary a plan pod writes as its termination message.
    pub fn summary_line(&self) -> String {
        format!(
            "chunks={} digest={} run={} estimated_rows={} strategy={}",
            self.chunks.len(),
            self.digest,
            self.run_id,
            self.estimated_rows,
            serde_json::to_value(self.strategy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )
    }
}

/// Number of key-range chunks for an estimate: `ceil(rows / chunk_size)`, at least one,
/// at most `max_chunks` (less one when a NULL chunk is needed).
pub fn range_chunk_count(
    estimated_rows: u64,
    chunk_size: u64,
    max_chunks: u64,
    nulls: bool,
) -> usize {
    let chunk_size = chunk_size.max(1);
    let wanted = estimated_rows.div_ceil(chunk_size).max(1);
    let cap = max_chunks.saturating_sub(u64::from(nulls)).max(1);
    usize::try_from(wanted.min(cap)).unwrap_or(usize::MAX)
}

/// `k` estimated chunks rounded up to whole waves of `parallelism` workers, when there are
/// more chunks than workers and the rounding stays under `max_chunks` (less one when a NULL
/// chunk is needed). Workers take chunks as they free up, so with 21 equal chunks over 2
/// workers the 21st runs alone while the other worker idles; 22 slightly smaller chunks
/// end together. The number of waves never grows, each wave gets shorter. Used where the
/// chunk count is an estimate anyway (a sample or the histogram), not for counted keys.
pub fn whole_waves(k: usize, parallelism: u64, max_chunks: u64, nulls: bool) -> usize {
    let (Ok(k64), p) = (u64::try_from(k), parallelism.max(1)) else {
        return k;
    };
    if k64 <= p {
        return k;
    }
    let rounded = k64.div_ceil(p).saturating_mul(p);
    let cap = max_chunks.saturating_sub(u64::from(nulls)).max(1);
    if rounded > cap {
        return k;
    }
    usize::try_from(rounded).unwrap_or(k)
}

/// The quantile fractions `1/k .. (k-1)/k` at which boundaries are taken.
pub fn quantile_fractions(k: usize) -> Vec<f64> {
    (1..k).map(|i| i as f64 / k as f64).collect()
}

/// Boundaries for `k` chunks from a grid of quantiles, where `grid[i]` is the quantile at
/// `(i + 1) / (grid.len() + 1)`: boundary j takes the grid point nearest to `j / k`.
pub fn pick_from_grid(grid: &[String], k: usize) -> Vec<String> {
    let g = grid.len() + 1;
    if grid.is_empty() || k <= 1 {
        return Vec::new();
    }
    (1..k)
        .map(|j| {
            let i = ((j * g) as f64 / k as f64).round() as usize;
            grid[i.clamp(1, grid.len()) - 1].clone()
        })
        .collect()
}

/// A point of the key distribution from `pg_stats`, in key order.
#[derive(Clone, Debug, PartialEq)]
pub enum StatPoint {
    /// A histogram bound (the histogram's buckets hold equal shares of the rows that are
    /// not among the most common values).
    Bound(String),
    /// A most common value and its frequency.
    Common(String, f64),
}

/// Boundaries at the `fractions` quantiles of the distribution described by `points`
/// (sorted by key). Each histogram bucket's mass is placed at its upper bound and each
/// common value's frequency at the value.
pub fn quantiles_from_stats(points: &[StatPoint], fractions: &[f64]) -> Vec<String> {
    let bounds = points
        .iter()
        .filter(|p| matches!(p, StatPoint::Bound(_)))
        .count();
    let common: f64 = points
        .iter()
        .map(|p| match p {
            StatPoint::Common(_, f) => *f,
            StatPoint::Bound(_) => 0.0,
        })
        .sum();
    let bucket_mass = if bounds > 1 {
        (1.0 - common).max(0.0) / (bounds - 1) as f64
    } else {
        0.0
    };
    let mut masses = Vec::with_capacity(points.len());
    let mut first_bound = true;
    for p in points {
        match p {
            StatPoint::Bound(v) => {
                masses.push((v.as_str(), if first_bound { 0.0 } else { bucket_mass }));
                first_bound = false;
            }
            StatPoint::Common(v, f) => masses.push((v.as_str(), *f)),
        }
    }
    let total: f64 = masses.iter().map(|(_, m)| m).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(fractions.len());
    let mut cum = 0.0;
    let mut i = 0;
    for &q in fractions {
        let target = q * total;
        while i < masses.len() && cum + masses[i].1 < target {
            cum += masses[i].1;
            i += 1;
        }
        if let Some((v, _)) = masses.get(i) {
            out.push((*v).to_string());
        }
    }
    out
}

/// Builds the chunk list from sorted boundaries (duplicates are dropped): chunk 0 is
/// `key < b1`, then `[b1, b2)`, ..., the last `key >= bn`, then the NULL chunk if asked.
pub fn chunks_from_boundaries(
    boundaries: &[String],
    estimated_rows: u64,
    null_rows: u64,
    nulls: bool,
) -> Vec<ChunkRange> {
    let mut unique: Vec<&String> = Vec::with_capacity(boundaries.len());
    for b in boundaries {
        if unique.last() != Some(&b) {
            unique.push(b);
        }
    }
    let ranges = unique.len() + 1;
    let per_chunk = estimated_rows / ranges as u64;
    let mut chunks = Vec::with_capacity(ranges + 1);
    for i in 0..ranges {
        chunks.push(ChunkRange {
            index: i,
            lo: if i == 0 {
                None
            } else {
                Some(unique[i - 1].clone())
            },
            hi: unique.get(i).map(|s| (*s).clone()),
            nulls: false,
            estimated_rows: per_chunk,
        });
    }
    if nulls {
        chunks.push(ChunkRange {
            index: ranges,
            lo: None,
            hi: None,
            nulls: true,
            estimated_rows: null_rows,
        });
    }
    chunks
}

/// The SQL expression that selects a column of the source by name.
pub fn column_sql(name: &str) -> String {
    Quoted(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chunk_count_rounds_up_and_caps() {
        assert_eq!(range_chunk_count(0, 100, 10, false), 1);
        assert_eq!(range_chunk_count(1000, 100, 100, false), 10);
        assert_eq!(range_chunk_count(1001, 100, 100, false), 11);
        assert_eq!(range_chunk_count(1_000_000, 1, 50, true), 49);
        assert_eq!(range_chunk_count(u64::MAX, 1, 10_000, false), 10_000);
    }

    #[test]
    fn estimated_chunks_come_in_whole_waves() {
        // 21 chunks over 2 workers: the last would run alone.
        assert_eq!(whole_waves(21, 2, 10_000, false), 22);
        assert_eq!(whole_waves(20, 2, 10_000, false), 20);
        assert_eq!(whole_waves(21, 4, 10_000, false), 24);
        // No more chunks than workers: each has its own already.
        assert_eq!(whole_waves(3, 4, 10_000, false), 3);
        assert_eq!(whole_waves(1, 1, 10_000, false), 1);
        // The cap (less the NULL chunk) wins over the rounding.
        assert_eq!(whole_waves(21, 4, 23, false), 21);
        assert_eq!(whole_waves(21, 4, 24, true), 21);
        assert_eq!(whole_waves(21, 4, 25, true), 24);
        assert_eq!(whole_waves(5, 0, 100, false), 5);
    }

    #[test]
    fn chunks_tile_the_whole_domain() {
        let chunks = chunks_from_boundaries(&strings(&["10", "20", "20", "30"]), 400, 5, true);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].lo, None);
        assert_eq!(chunks[0].hi.as_deref(), Some("10"));
        for pair in chunks[..4].windows(2) {
            assert_eq!(pair[0].hi, pair[1].lo, "adjacent chunks share a bound");
        }
        assert_eq!(chunks[3].hi, None);
        assert!(chunks[4].nulls);
        assert_eq!(chunks[4].estimated_rows, 5);
        assert!(chunks.iter().enumerate().all(|(i, c)| c.index == i));
    }

    #[test]
    fn no_boundaries_gives_one_open_chunk() {
        let chunks = chunks_from_boundaries(&[], 7, 0, false);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].predicate("\"id\"", KeyType::Bigint),
            "\"id\" IS NOT NULL"
        );
    }

    #[test]
    fn predicates_quote_literals() {
        let c = ChunkRange {
            index: 1,
            lo: Some("o'brien".into()),
            hi: Some("z".into()),
            nulls: false,
            estimated_rows: 0,
        };
        assert_eq!(
            c.predicate("\"name\"", KeyType::Text),
            "\"name\" >= 'o''brien'::text AND \"name\" < 'z'::text"
        );
    }

    #[test]
    fn grid_picks_nearest_quantiles() {
        // Quantiles of 1..=999 at i/1000: grid[i-1] = i.
        let grid: Vec<String> = (1..1000).map(|i| i.to_string()).collect();
        assert_eq!(pick_from_grid(&grid, 4), strings(&["250", "500", "750"]));
        assert_eq!(pick_from_grid(&grid, 3), strings(&["333", "667"]));
        assert_eq!(pick_from_grid(&grid, 1), Vec::<String>::new());
        assert_eq!(pick_from_grid(&strings(&["a"]), 3), strings(&["a", "a"]));
    }

    #[test]
    fn histogram_quantiles_follow_bucket_mass() {
        // 5 bounds = 4 equal buckets: quartiles fall on the inner bounds.
        let points: Vec<StatPoint> = ["0", "10", "1000", "1001", "9999"]
            .iter()
            .map(|v| StatPoint::Bound(v.to_string()))
            .collect();
        assert_eq!(
            quantiles_from_stats(&points, &quantile_fractions(4)),
            strings(&["10", "1000", "1001"])
        );
    }

    #[test]
    fn common_values_carry_their_frequency() {
        // Half the rows have key 5; the rest spread over a 2-bucket histogram.
        let points = vec![
            StatPoint::Bound("0".into()),
            StatPoint::Common("5".into(), 0.5),
            StatPoint::Bound("50".into()),
            StatPoint::Bound("100".into()),
        ];
        let q = quantiles_from_stats(&points, &quantile_fractions(2));
        assert_eq!(q, strings(&["5"]));
    }

    #[test]
    fn digest_detects_changes() {
        let plan = Plan {
            version: 1,
            run_id: "r".into(),
            source: PlannedSource {
                description: "t".into(),
                table: None,
                key_column: "id".into(),
                key_type: KeyType::Bigint,
                columns: strings(&["id"]),
                spec_digest: String::new(),
                parameters: Vec::new(),
                column_types: Vec::new(),
            },
            format: PartFormat::plain_csv(),
            estimated_rows: 10,
            strategy: Strategy::Exact,
            chunks: chunks_from_boundaries(&strings(&["5"]), 10, 0, false),
            created_at: "now".into(),
            snapshot: None,
            digest: String::new(),
            warnings: Vec::new(),
        }
        .seal();
        assert!(plan.digest_is_valid());
        let mut tampered = plan.clone();
        tampered.chunks[1].lo = Some("6".into());
        assert!(!tampered.digest_is_valid());
    }

    #[test]
    fn key_types_from_catalog_names() {
        assert_eq!(
            KeyType::from_pg_name("character varying(20)"),
            Some(KeyType::Varchar)
        );
        assert_eq!(
            KeyType::from_pg_name("numeric(12,2)"),
            Some(KeyType::Numeric)
        );
        assert_eq!(
            KeyType::from_pg_name("timestamp with time zone"),
            Some(KeyType::Timestamptz)
        );
        assert_eq!(KeyType::from_pg_name("jsonb"), None);
    }
}
