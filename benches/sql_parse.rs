//! What parsing a spec's SQL with Postgres's own grammar costs: `where` filters and
//! `query`s parsed, checked against the denylist and regenerated (`sql::Filter::parse`,
//! `sql::SelectQuery::parse`), and the whole spec validation that runs them. Prints the
//! median time per call; run with `cargo bench --bench sql_parse`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use reportjob::api::load::load_valid_str;
use reportjob::sql::{Filter, SelectQuery};

const ROUNDS: usize = 7;
const CALLS: u32 = 2_000;

/// Median over rounds of the mean time of one call.
fn per_call(mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                f();
            }
            start.elapsed() / CALLS
        })
        .collect();
    rounds.sort();
    rounds[ROUNDS / 2]
}

const FILTER: &str = "status <> 'refunded' AND (note IS NULL OR note NOT LIKE 'x%')";
const QUERY: &str = "SELECT o.id, o.amount, upper(o.status) AS status, c.name \
    FROM bench.orders_10m o JOIN bench.customers c ON c.id = o.customer_id \
    WHERE o.amount > 1 AND o.created_at >= timestamptz '2024-01-01'";

fn spec_with(source: &str) -> String {
    format!(
        "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {{name: bench}}\nspec:\n  source:\n    connectionSecretRef: {{name: db}}\n{source}\n  output:\n    destination:\n      pvc: {{claimName: r, path: r.csv}}\n"
    )
}

fn main() {
    let where_spec = spec_with(&format!(
        "    table: bench.orders_10m\n    keyColumn: id\n    where: \"{FILTER}\""
    ));
    let query_spec = spec_with(&format!("    query: \"{QUERY}\"\n    keyColumn: id"));
    let table_spec = spec_with("    table: bench.orders_10m\n    keyColumn: id");
    let figures = [
        (
            "`where` parsed, checked and regenerated (Filter::parse)",
            per_call(|| {
                black_box(Filter::parse(black_box(FILTER)).expect("valid"));
            }),
        ),
        (
            "`query` with a join parsed, checked and regenerated (SelectQuery::parse)",
            per_call(|| {
                black_box(SelectQuery::parse(black_box(QUERY)).expect("valid"));
            }),
        ),
        (
            "whole spec loaded and validated, table only (no SQL to parse)",
            per_call(|| {
                black_box(load_valid_str(black_box(&table_spec), "b").expect("valid"));
            }),
        ),
        (
            "whole spec loaded and validated, table with `where`",
            per_call(|| {
                black_box(load_valid_str(black_box(&where_spec), "b").expect("valid"));
            }),
        ),
        (
            "whole spec loaded and validated, `query`",
            per_call(|| {
                black_box(load_valid_str(black_box(&query_spec), "b").expect("valid"));
            }),
        ),
    ];
    println!("| SQL parsing (median of {ROUNDS} rounds of {CALLS} calls) | per call |");
    println!("|---|---|");
    for (name, took) in figures {
        println!("| {name} | {:.1} µs |", took.as_secs_f64() * 1e6);
    }
}
