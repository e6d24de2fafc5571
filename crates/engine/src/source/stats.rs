//! Gathering key statistics for the planner without a full scan: the row estimate from
//! the catalog or EXPLAIN, then quantiles from `pg_stats`, a sample, or (for small
//! sources) all keys.

use sqlx::{AssertSqlSafe, Row};

use super::resolve::TableRef;
use super::statement::SourceSql;
use super::{ReadSession, Resolved};
use crate::error::{Error, Result};
use reportjob_core::ident::Quoted;
use reportjob_core::plan::{
    StatPoint, Strategy, pick_from_grid, quantile_fractions, quantiles_from_stats,
    range_chunk_count, whole_waves,
};

/// Sources estimated at or below this many rows are planned from all their keys.
pub const EXACT_PLANNING_ROWS: u64 = 200_000;

/// The histogram is used only when it has at least this many buckets per chunk, so that
/// rounding chunk edges to bucket bounds keeps chunks within ~1.1x of each other.
const HISTOGRAM_BUCKETS_PER_CHUNK: usize = 8;

/// Pages a table sample reads per planned chunk. A chunk's share of the sample then has a
/// relative error near 1/sqrt(100) = 10% even when keys are clustered on pages (a page's
/// keys are neighbours, so pages, not rows, decide the accuracy): the largest of 20 chunks
/// is typically ~1.2x the mean. More pages buy little: the sample is read by one backend
/// while every other core waits, and its cost grows with the number of chunks, while
/// chunks are handed out as workers free up, so an uneven chunk costs only at the very
/// end of a run. (At 400 pages per chunk the sample took ~8% of a 20-chunk export.)
const SAMPLE_PAGES_PER_CHUNK: f64 = 100.0;

/// Keys the sample keeps per planned chunk (rows of sampled pages are thinned at random).
const SAMPLE_ROWS_PER_CHUNK: f64 = 1000.0;

/// Quantiles taken per planned chunk in the sampling pass, and the grid's bounds.
const GRID_PER_CHUNK: usize = 16;
const MIN_GRID: usize = 1024;
const MAX_GRID: usize = 16_384;

/// What the planner learned about the key.
#[derive(Clone, Debug)]
pub struct KeyStats {
    /// Estimated rows with a non-NULL key.
    pub estimated_rows: u64,
    /// Estimated rows with a NULL key.
    pub null_rows: u64,
    /// Chunk boundaries, sorted, in the key's text form.
    pub boundaries: Vec<String>,
    /// How the boundaries were found.
    pub strategy: Strategy,
}

/// `WHERE` clause of the source's rows with a non-NULL key.
fn non_null_where(src: &SourceSql) -> String {
    format!(
        "WHERE ({})\n  AND {} IS NOT NULL",
        src.filter_sql, src.key_sql
    )
}

/// Gathers statistics and boundaries for chunks of about `chunk_size` rows, exported by
/// `parallelism` workers at once.
pub async fn key_stats(
    session: &mut ReadSession,
    resolved: &Resolved,
    chunk_size: u64,
    max_chunks: u64,
    parallelism: u64,
) -> Result<KeyStats> {
    let src = &resolved.sql;
    let rows_from = format!("FROM {}\n{}", src.from_sql, non_null_where(src));
    let table = match &resolved.table {
        Some(t) => Some(table_stats(session, t, src, &resolved.source.key_column).await?),
        None => None,
    };
    let unfiltered = resolved.table.as_ref().is_some_and(|t| !t.filtered);
    let estimated = match &table {
        Some(t) if unfiltered && t.reltuples >= 0.0 => (t.reltuples * (1.0 - t.null_frac)) as u64,
        _ => explain_rows(session, &rows_from).await?,
    };
    let null_rows = match &table {
        Some(t) if unfiltered => (t.reltuples.max(0.0) * t.null_frac) as u64,
        _ => 0,
    };
    let nulls = resolved.key_nullable;

    if estimated <= EXACT_PLANNING_ROWS {
        let count: i64 = sqlx::query(AssertSqlSafe(format!("SELECT count(*)\n{rows_from}")))
            .fetch_one(session.conn())
            .await
            .map_err(|e| Error::db("counting the source's keys", e))?
            .get(0);
        let count = u64::try_from(count).unwrap_or(0);
        let k = range_chunk_count(count, chunk_size, max_chunks, nulls);
        let boundaries = percentiles(session, &rows_from, &src.key_sql, k).await?;
        return Ok(KeyStats {
            estimated_rows: count,
            null_rows,
            boundaries,
            strategy: Strategy::Exact,
        });
    }

    let chunk_count = |rows| {
        whole_waves(
            range_chunk_count(rows, chunk_size, max_chunks, nulls),
            parallelism,
            max_chunks,
            nulls,
        )
    };
    let k = chunk_count(estimated);
    if let Some(t) = &table
        && unfiltered
    {
        let buckets = t
            .points
            .iter()
            .filter(|p| matches!(p, StatPoint::Bound(_)))
            .count()
            .saturating_sub(1);
        if buckets >= HISTOGRAM_BUCKETS_PER_CHUNK * k {
            return Ok(KeyStats {
                estimated_rows: estimated,
                null_rows,
                boundaries: quantiles_from_stats(&t.points, &quantile_fractions(k)),
                strategy: Strategy::Histogram,
            });
        }
    }

    // One pass over a sample: count its rows (to correct the estimate; EXPLAIN guesses
    // when there are no statistics) and take a fine grid of quantiles of a random subset
    // of its keys, from which the boundaries for the corrected chunk count are picked.
    let wanted_rows = SAMPLE_ROWS_PER_CHUNK * k as f64;
    let (sampled_from, share, keep) = match &table {
        Some(t) if t.pages > 0.0 => {
            // Whole pages are sampled (cheap); a page's keys are neighbours, so the number
            // of pages, not of rows, decides the accuracy.
            let percent = (100.0 * SAMPLE_PAGES_PER_CHUNK * k as f64 / t.pages).min(100.0);
            let rows_in_pages = (estimated as f64 * percent / 100.0).max(1.0);
            (
                format!(
                    "FROM {} TABLESAMPLE SYSTEM ({percent}) REPEATABLE (7)\n{}",
                    src.from_sql,
                    non_null_where(src)
                ),
                percent / 100.0,
                (wanted_rows / rows_in_pages).min(1.0),
            )
        }
        _ => (
            rows_from.clone(),
            1.0,
            (wanted_rows / estimated.max(1) as f64).min(1.0),
        ),
    };
    let grid_size = (GRID_PER_CHUNK * k).clamp(MIN_GRID, MAX_GRID);
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT count(*),
                (percentile_disc((SELECT array_agg(g::float8 / {grid_size}) FROM generate_series(1, {grid_size} - 1) AS g))
                   WITHIN GROUP (ORDER BY {key}) FILTER (WHERE {kept}))::text[]
         {sampled_from}",
        key = src.key_sql,
        kept = kept_at_random(&src.key_sql, keep)
    )))
    .fetch_one(session.conn())
    .await
    .map_err(|e| Error::db("sampling the source's keys", e))?;
    let sampled: i64 = row.get(0);
    let grid: Vec<String> = row
        .get::<Option<Vec<Option<String>>>, _>(1)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let estimated = (sampled.max(0) as f64 / share.max(1e-12)) as u64;
    let k = chunk_count(estimated);
    let boundaries = if k * 4 <= grid_size {
        pick_from_grid(&grid, k)
    } else {
        // The estimate was far off: take the quantiles for this chunk count directly.
        let thinned = format!(
            "{sampled_from}\n  AND {}",
            kept_at_random(&src.key_sql, keep)
        );
        percentiles(session, &thinned, &src.key_sql, k).await?
    };
    Ok(KeyStats {
        estimated_rows: estimated,
        null_rows,
        boundaries,
        strategy: Strategy::Sample,
    })
}

/// A condition that keeps about the share `keep` of the rows, chosen by a hash of the key
/// rather than by `random()`: the same data gives the same sample, so the same plan and the
/// same report bytes on every run.
fn kept_at_random(key_sql: &str, keep: f64) -> String {
    const SCALE: f64 = 1_048_576.0;
    if keep >= 1.0 {
        return "true".to_string();
    }
    let below = (keep.max(0.0) * SCALE).ceil() as u64;
    format!("(hashtextextended(({key_sql})::text, 7) & 1048575) < {below}")
}

/// The `k`-quantiles of the key over the rows of `rows_from`, computed by the server.
async fn percentiles(
    session: &mut ReadSession,
    rows_from: &str,
    key_sql: &str,
    k: usize,
) -> Result<Vec<String>> {
    if k <= 1 {
        return Ok(Vec::new());
    }
    let fractions = quantile_fractions(k)
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT (percentile_disc(ARRAY[{fractions}]::float8[]) WITHIN GROUP (ORDER BY {key_sql}))::text[]\n{rows_from}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .fetch_one(session.conn())
        .await
        .map_err(|e| Error::db("computing key quantiles", e))?;
    let values: Option<Vec<Option<String>>> = row.get(0);
    Ok(values.unwrap_or_default().into_iter().flatten().collect())
}

struct TableStats {
    reltuples: f64,
    /// The relation's size in pages.
    pages: f64,
    null_frac: f64,
    /// Histogram bounds and most common values of the key, in key order.
    points: Vec<StatPoint>,
}

async fn table_stats(
    session: &mut ReadSession,
    table: &TableRef,
    src: &SourceSql,
    key_column: &str,
) -> Result<TableStats> {
    let row = sqlx::query(
        "SELECT reltuples::float8,
                (pg_relation_size(oid) / current_setting('block_size')::int8)::float8
           FROM pg_class WHERE oid = $1::int8::oid",
    )
    .bind(table.oid)
    .fetch_one(session.conn())
    .await
    .map_err(|e| Error::db("reading table statistics", e))?;
    let reltuples: f64 = row.get(0);
    let pages: f64 = row.get(1);

    let type_name = src.key_type.sql_name();
    let collate = table
        .key_collation
        .as_deref()
        .map(|c| format!(" COLLATE {}", Quoted(c)))
        .unwrap_or_default();
    // pg_stats holds the bounds as anyarray; through text they become the key's own type,
    // so the histogram and the common values sort together in the key's order.
    let sql = format!(
        "WITH s AS (
           SELECT null_frac::float8 AS null_frac, histogram_bounds, most_common_vals, most_common_freqs
             FROM pg_stats
            WHERE schemaname = $1 AND tablename = $2 AND attname = $3
            ORDER BY inherited DESC
            LIMIT 1)
         SELECT s.null_frac, p.v::text, p.freq
           FROM s
           LEFT JOIN LATERAL (
             SELECT h.v, NULL::float8 AS freq
               FROM unnest(s.histogram_bounds::text::{type_name}[]) AS h(v)
             UNION ALL
             SELECT m.v, m.f::float8
               FROM unnest(s.most_common_vals::text::{type_name}[], s.most_common_freqs) AS m(v, f)
           ) AS p ON true
          ORDER BY p.v{collate}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&table.schema)
        .bind(&table.name)
        .bind(key_column)
        .fetch_all(session.conn())
        .await
        .map_err(|e| Error::db("reading the key's histogram", e))?;
    let mut null_frac = 0.0;
    let mut points = Vec::with_capacity(rows.len());
    for row in &rows {
        null_frac = row.get::<f64, _>(0);
        let value: Option<String> = row.get(1);
        let freq: Option<f64> = row.get(2);
        match (value, freq) {
            (Some(v), Some(f)) => points.push(StatPoint::Common(v, f)),
            (Some(v), None) => points.push(StatPoint::Bound(v)),
            _ => {}
        }
    }
    Ok(TableStats {
        reltuples,
        pages,
        null_frac,
        points,
    })
}

/// The planner's row estimate for the source, from `EXPLAIN` (no rows are read).
async fn explain_rows(session: &mut ReadSession, rows_from: &str) -> Result<u64> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) SELECT 1\n{rows_from}"
    )))
    .fetch_one(session.conn())
    .await
    .map_err(|e| Error::db("estimating the source's rows", e))?;
    let plan: serde_json::Value = row.get(0);
    let rows = plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    Ok(rows.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_keeps_rows_by_a_hash_of_their_key() {
        assert_eq!(kept_at_random("\"id\"", 1.0), "true");
        assert_eq!(
            kept_at_random("\"id\"", 0.25),
            "(hashtextextended((\"id\")::text, 7) & 1048575) < 262144"
        );
    }
}
