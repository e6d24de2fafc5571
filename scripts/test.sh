#!/usr/bin/env bash
# The whole test suite: starts what the tests need, then runs `cargo test --workspace
# --no-fail-fast` (every test binary runs even when an earlier one failed, so one failure
# does not hide the rest).
# Tests use the real PostgreSQL on 127.0.0.1:5432 (database reportjob_test, created on
# first use), kubectl and helm for the cluster tests (installed from npm when missing) and
# the s3s-fs S3 server for the bucket tests (built from crates.io once per machine), and
# PgBouncer for the pooler tests and LibreOffice for the XLSX tests (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
source scripts/tools.sh
ensure_libclang
ensure_kubectl
ensure_helm
ensure_s3s_fs
ensure_pgbouncer
ensure_python_readers
ensure_libreoffice

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary: cargo prints one result line per binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
