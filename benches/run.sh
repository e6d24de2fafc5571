#!/usr/bin/env bash
# Runs the export benchmarks and prints a Markdown table (see benches/bench.py).
# Usage: benches/run.sh [--quick]     (--quick: a tenth of the rows, for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
cargo build --release --quiet --bin reportjob
exec python3 benches/bench.py "$@"
