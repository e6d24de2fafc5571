#!/usr/bin/env bash
# The controller benchmark on the real control plane: N ReportJobs (default 200,
# BENCH_REPORTJOBS) applied at once must all reach Complete; prints a Markdown table (see
# benches/controller.py). Starts the test cluster with scripts/testbed.sh (built once per
# machine) and a faultproxy in front of it that counts the controller's requests.
# BENCH_DATABASE=20,10: every ReportJob names one ReportDatabase (maxConcurrentChunks 20,
# maxSnapshots 10) and the most chunk pods and Snapshot runs seen at once are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
source scripts/tools.sh
ensure_kubectl
cargo build --release --quiet --bin reportjob -p reportjob
cargo build --release --quiet --bin faultproxy -p faultproxy
exec python3 benches/controller.py "$@"
