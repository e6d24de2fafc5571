#!/usr/bin/env bash
# Quickstart: finds or starts a local PostgreSQL, seeds the demo database (once), and
# exports demo.orders with `reportjob run` on examples/orders-table.yaml.
#
# Usage: scripts/demo.sh [SPEC.yaml]   (default: examples/orders-table.yaml)
#   The report goes under ./reports. DEMO_SERVER_URL picks another server
#   (default postgres://postgres@127.0.0.1:5432); CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

spec=examples/orders-table.yaml
case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  "") ;;
  *) spec=$1
     [ -f "$spec" ] || { echo "error: no spec file $spec" >&2; exit 2; } ;;
esac

scripts/ensure-postgres.sh
server=${DEMO_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export DATABASE_URL="$server/reportjob_demo"

if [ "$(psql "$server/postgres" -qAtX -c "SELECT 1 FROM pg_database WHERE datname = 'reportjob_demo'")" != "1" ]; then
  psql "$server/postgres" -qAtX -c "CREATE DATABASE reportjob_demo"
fi
if [ "$(psql "$DATABASE_URL" -qAtX -c "SELECT to_regclass('demo.orders') IS NOT NULL")" != "t" ]; then
  echo "seeding the demo database (300,000 orders) ..." >&2
  psql "$DATABASE_URL" -qX -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
fi

# `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
exec cargo run --quiet --bin reportjob -- run -f "$spec" --output-dir ./reports
