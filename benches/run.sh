#!/usr/bin/env bash
# Runs the export benchmarks and prints a Markdown table (see benches/bench.py).
# Usage: benches/run.sh [--quick] [--throughput] [--consistency] [--formats] [--assembly] [--worker-rss]
#   --quick: a tenth of the rows, for a smoke run; --throughput: only (a), reportjob vs psql;
#   --consistency: only (f), Snapshot vs PerChunk;
#   --formats: only (g), csv and jsonl (plain and zstd) and parquet side by side;
#   --assembly: only (h), assembly CPU vs export CPU for csv and parquet;
#   --worker-rss: only (b'), the peak RSS of `reportjob worker` as a pod runs it
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
cargo build --release --quiet --bin reportjob
python3 benches/bench.py "$@"
# The cost of parsing spec SQL with Postgres's grammar, alone.
cargo bench --quiet --bench sql_parse
