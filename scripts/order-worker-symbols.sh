#!/usr/bin/env bash
# Regenerates linker/worker-symbols.txt: the functions a chunk worker (`reportjob worker`)
# executes, which build.rs hands to the linker (`--symbol-ordering-file`) so that they sit
# together at the start of the binary's code.
#
# Why: the kernel maps a binary's code 64 KiB around each page a process touches. A worker
# executes about 2 MiB of functions, but spread over the 35 MiB of code they touched 215 such
# windows, 13.4 MiB of the worker's 20 MiB (BENCHMARKS.md, worker memory). Placed together,
# they take a few windows.
#
# How: a release build's worker exports a small table once per format (csv, jsonl, parquet,
# xlsx) to a local destination under valgrind's callgrind, which records every function it
# enters; the names found in the binary's symbol table are written, the CSV worker's first.
# Symbol names carry hashes of their crate's build settings: after dependency upgrades some
# no longer match, which costs memory (bench.py --worker-rss shows it), never correctness;
# rerun this then. Needs valgrind (Debian's package) and the local Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || apt-get install -y -q valgrind >/dev/null
scripts/ensure-postgres.sh >/dev/null
cargo build --release --bin reportjob
bin="${CARGO_TARGET_DIR:-target}/release/reportjob"

server="postgres://postgres@127.0.0.1:5432"
db=reportjob_symbols
psql "$server/postgres" -qAtX -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql "$server/$db" -qAtX -v ON_ERROR_STOP=1 -c "
  CREATE TABLE t (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz, ok boolean);
  INSERT INTO t SELECT g, g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note \"' || g || E'\"\\n' END,
         '2026-01-01'::timestamptz + g * interval '1 minute', g % 2 = 0
    FROM generate_series(1, 20000) AS g;
  ANALYZE t;"

work=$(mktemp -d)
trap 'rm -rf "$work"; psql "$server/postgres" -qAtX -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
: > "$work/executed"
for format in csv jsonl parquet xlsx; do
  spec=$(printf '{"apiVersion":"reporting.dev/v1alpha1","kind":"ReportJob","metadata":{"name":"symbols"},"spec":{"source":{"connectionSecretRef":{"name":"db"},"table":"public.t","keyColumn":"id","consistency":"Snapshot"},"chunking":{"chunkSize":1000000,"parallelism":1},"output":{"format":"%s","destination":{"pvc":{"claimName":"r","path":"r.%s"}}}}}' "$format" "$format")
  printf '%s' "$spec" > "$work/spec.json"
  export DATABASE_URL="$server/$db" RUST_LOG=warn REPORTJOB_RUN_ID="symbols-$format" REPORTJOB_OUTPUT_DIR="$work/out"
  "$bin" plan -f "$work/spec.json" --write >/dev/null
  REPORTJOB_SPEC="$spec" valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$format" \
    "$bin" worker --index 0 >/dev/null 2>"$work/valgrind.$format"
  # `fn=(id) name` names a function the first time it appears; callgrind marks recursion
  # depths with a `'N` suffix.
  sed -nE "s/^c?fn=\([0-9]+\) (.*)$/\1/p" "$work/cg.$format" | sed -E "s/'[0-9]+$//" >> "$work/executed"
done

nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u > "$work/defined"
mkdir -p linker
# First appearance order (the CSV worker's functions first), kept only when defined in the binary.
awk 'NR == FNR {defined[$0] = 1; next} defined[$0] && !seen[$0]++' "$work/defined" "$work/executed" \
  > linker/worker-symbols.txt
echo "linker/worker-symbols.txt: $(wc -l < linker/worker-symbols.txt) functions"
