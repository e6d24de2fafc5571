#!/usr/bin/env bash
# reportjob against its peers, format by format, in one run (see benches/peers.py): builds the
# release binary, makes a venv with the peers from PyPI (connectorx, the ADBC PostgreSQL
# driver, pyarrow, xlsxwriter, psycopg) once per machine, starts PostgreSQL, and runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
cargo build --release --quiet --bin reportjob
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
venv="${REPORTJOB_TOOLS_CACHE:-$HOME/.cache/reportjob-tools}/peers-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import connectorx, adbc_driver_postgresql, pyarrow, xlsxwriter, psycopg' >/dev/null 2>&1; then
  echo "installing the peers into $venv (once per machine) ..." >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "connectorx==0.4.6" "adbc-driver-postgresql==1.13.0" "pyarrow==26.0.1" \
    "xlsxwriter==3.3.1" "psycopg[binary]==3.3.9"
fi
BENCH_BIN="${BENCH_BIN:-$target_dir/release/reportjob}" PEERS_PYTHON="$venv/bin/python" \
  exec python3 benches/peers.py "$@"
