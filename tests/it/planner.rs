//! The planner on the real Postgres: on clustered, sparse keys the largest chunk stays
//! within 1.25x of the mean, whether boundaries come from a sample or from `pg_stats`,
//! where equal-width ranges over min..max would be badly unbalanced.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, stderr};
use sqlx::Row;

/// 20 clusters of 25,000 rows; cluster c starts at c^4 * 10^9 and steps by 1 + 50 c^2,
/// so density varies by four orders of magnitude and gaps are huge.
async fn clustered_sparse(db: &mut TestDb) {
    db.exec(
        "CREATE TABLE src (id bigint PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
         INSERT INTO src
         SELECT (g / 25000)::int8 ^ 4 * 1000000000 + (g % 25000) * (1 + 50 * (g / 25000)::int8 ^ 2), 'p' || g
           FROM generate_series(0, 499999) AS g;",
    )
    .await;
}

/// Actual rows per planned range chunk.
async fn chunk_counts(db: &mut TestDb, plan: &serde_json::Value) -> Vec<i64> {
    let mut counts = Vec::new();
    for chunk in plan["chunks"].as_array().unwrap() {
        if chunk.get("nulls").is_some() {
            continue;
        }
        let lo = chunk["lo"]
            .as_str()
            .map(|v| format!("id >= {v}"))
            .unwrap_or("true".into());
        let hi = chunk["hi"]
            .as_str()
            .map(|v| format!("id < {v}"))
            .unwrap_or("true".into());
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {lo} AND {hi}",
            db.table("src")
        );
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut db.conn)
            .await
            .unwrap()
            .get(0);
        counts.push(n);
    }
    counts
}

fn imbalance(counts: &[i64]) -> f64 {
    let mean = counts.iter().sum::<i64>() as f64 / counts.len() as f64;
    *counts.iter().max().unwrap() as f64 / mean
}

fn plan(db: &TestDb, chunk_size: u32) -> serde_json::Value {
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .chunk_size(chunk_size.into())
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob(&["plan", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn sparse_clustered_keys_give_balanced_chunks_from_a_sample() {
    let mut db = TestDb::new("balance_sample").await;
    clustered_sparse(&mut db).await;
    let again = plan(&db, 25000);
    let plan = plan(&db, 25000);
    assert_eq!(
        plan["strategy"], "sample",
        "no statistics yet: the planner samples"
    );
    // The sample is drawn by a hash of the key, not at random: the same data gives the same
    // chunks, so the same report bytes.
    assert_eq!(
        again["chunks"], plan["chunks"],
        "a second plan of the same data"
    );
    let counts = chunk_counts(&mut db, &plan).await;
    assert_eq!(
        counts.iter().sum::<i64>(),
        500_000,
        "chunks cover every row once"
    );
    // About 20 chunks of 25,000 rows by the sample's estimate, rounded up to whole waves of
    // the default 4 workers.
    assert!(
        (20..=24).contains(&counts.len()) && counts.len() % 4 == 0,
        "about 20 chunks, in whole waves of 4: {counts:?}"
    );
    let ratio = imbalance(&counts);
    assert!(
        ratio <= 1.25,
        "largest chunk {ratio:.2}x the mean: {counts:?}"
    );

    // The same table cut into equal-width ranges: most chunks are empty.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT min(id), max(id) FROM {}",
        db.table("src")
    )))
    .fetch_one(&mut db.conn)
    .await
    .unwrap();
    let (min, max): (i64, i64) = (row.get(0), row.get(1));
    let width = (max as i128 - min as i128) / 20 + 1;
    let mut equal = Vec::new();
    for i in 0..20i128 {
        let lo = min as i128 + i * width;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE id >= {lo} AND id < {}",
            db.table("src"),
            lo + width
        );
        equal.push(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut db.conn)
                .await
                .unwrap()
                .get::<i64, _>(0),
        );
    }
    assert!(
        imbalance(&equal) > 5.0,
        "equal-width ranges would be unbalanced: {equal:?}"
    );
}

#[tokio::test]
async fn sparse_clustered_keys_give_balanced_chunks_from_pg_stats() {
    let mut db = TestDb::new("balance_stats").await;
    clustered_sparse(&mut db).await;
    db.exec("ALTER TABLE src ALTER COLUMN id SET STATISTICS 1000; ANALYZE src;")
        .await;
    let plan = plan(&db, 50000);
    assert_eq!(plan["strategy"], "histogram");
    let counts = chunk_counts(&mut db, &plan).await;
    assert_eq!(counts.iter().sum::<i64>(), 500_000);
    let ratio = imbalance(&counts);
    assert!(
        ratio <= 1.25,
        "largest chunk {ratio:.2}x the mean: {counts:?}"
    );
}
