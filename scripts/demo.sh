#!/usr/bin/env bash
# Quickstart: finds or starts a local PostgreSQL, seeds the demo database (once), and
# exports demo.orders with `reportjob run` on examples/orders-table.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

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
exec cargo run --quiet --bin reportjob -- run -f "${1:-examples/orders-table.yaml}" --output-dir ./reports
