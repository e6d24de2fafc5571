#!/usr/bin/env bash
# The controller benchmark: N ReportJobs (default 200, BENCH_REPORTJOBS) applied at once on
# kubesim must all reach Complete; prints a Markdown table (see benches/controller.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
source scripts/tools.sh
ensure_kubectl
cargo build --release --quiet --bin reportjob -p reportjob
cargo build --release --quiet --bin kubesim -p kubesim
exec python3 benches/controller.py "$@"
