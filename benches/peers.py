#!/usr/bin/env python3
"""reportjob against what users would otherwise run, format by format, in one run.

On pgbench's `pgbench_accounts` (5M rows at scale 50: three int4 columns and a char(84)),
in its own database `reportjob_peers` (made once with `pgbench -i`), each round runs every
contender once, in an order that alternates between rounds:

- CSV, 5M rows: `reportjob run` (parallelism 2, 20 chunks); one `psql \\copy (SELECT ...
  ORDER BY aid) TO ... CSV HEADER`; and the two-worker floor: two `psql \\copy` over the key
  halves at once, then `cat` of the two files.
- Parquet (zstd), 5M rows: `reportjob run`; connectorx (`read_sql(..., partition_on="aid",
  partition_num=2, return_type="arrow")` then pyarrow's `write_table`); the ADBC PostgreSQL
  driver streaming record batches into pyarrow's `ParquetWriter`.
- XLSX, 1M rows (`accounts_1m`): `reportjob run`; Python's xlsxwriter in constant-memory mode
  fed by psycopg's server-side cursor. Beside them the yardsticks of the XLSX goal (at most 3x
  the CSV time of the same rows): `reportjob run` to CSV of the same 1M rows, and both formats
  over the 5M rows; the ratios are printed under the table.

Each contender is its own process, measured by GNU time (wall seconds, peak RSS). Prints per
round times, then one Markdown table of medians, peak RSS and file sizes, and the ratio of
each to its format's first peer.

    BENCH_BIN=target/release/reportjob PEERS_PYTHON=<venv python> python3 benches/peers.py

`benches/peers.sh` builds the release binary, makes the venv (the peers from PyPI) and runs
this. BENCH_ROUNDS (default 3), BENCH_SERVER_URL, PEERS_FORMATS (csv,parquet,xlsx).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "reportjob")
PY = os.environ.get("PEERS_PYTHON") or sys.executable
SERVER = os.environ.get("BENCH_SERVER_URL", "postgres://postgres@127.0.0.1:5432")
DB = SERVER + "/reportjob_peers"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
FORMATS = os.environ.get("PEERS_FORMATS", "csv,parquet,xlsx").split(",")
ROWS = 5_000_000
XLSX_ROWS = 1_000_000


def psql(sql, db=DB):
    out = subprocess.run(["psql", db, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}\n{sql}")
    return out.stdout.strip()


def pgbench():
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        path = f"/usr/lib/postgresql/{d}/bin/pgbench"
        if os.path.exists(path):
            return path
    return shutil.which("pgbench") or sys.exit("pgbench not found (Debian's postgresql has it)")


def ensure_tables():
    if psql("SELECT 1 FROM pg_database WHERE datname = 'reportjob_peers'", SERVER + "/postgres") != "1":
        psql("CREATE DATABASE reportjob_peers", SERVER + "/postgres")
    have = psql("SELECT to_regclass('public.pgbench_accounts') IS NOT NULL") == "t"
    if not have or int(psql("SELECT count(*) FROM pgbench_accounts")) != ROWS:
        print("generating pgbench_accounts (5M rows, pgbench -i -s 50) ...", file=sys.stderr)
        subprocess.run([pgbench(), "-i", "-q", "-s", "50", DB], check=True,
                       capture_output=True)
        psql("VACUUM ANALYZE pgbench_accounts")
    if psql("SELECT to_regclass('public.accounts_1m') IS NOT NULL") != "t":
        psql(f"CREATE TABLE accounts_1m AS SELECT * FROM pgbench_accounts WHERE aid <= {XLSX_ROWS};"
             "ALTER TABLE accounts_1m ADD PRIMARY KEY (aid)")
        psql("VACUUM ANALYZE accounts_1m")


def measured(cmd, env=None):
    """Wall seconds and peak RSS (MiB) of cmd, by GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M %e"] + cmd, capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    kib, secs = out.stderr.strip().splitlines()[-1].split()
    return float(secs), int(kib) / 1024.0


def reportjob(work, table, fmt, path, options=""):
    spec = os.path.join(work, f"{fmt}.yaml")
    with open(spec, "w") as f:
        f.write(f"""apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: peers}}
spec:
  source:
    connectionSecretRef: {{name: db}}
    table: public.{table}
    keyColumn: aid
  chunking: {{chunkSize: {ROWS // 20 if table == 'pgbench_accounts' else XLSX_ROWS // 10}, parallelism: 2}}
  output:
    format: {fmt}{options}
    destination:
      pvc: {{claimName: r, path: {path}}}
""")
    out_dir = os.path.join(work, "out")
    shutil.rmtree(out_dir, ignore_errors=True)
    env = dict(os.environ, DATABASE_URL=DB, RUST_LOG="warn")
    secs, rss = measured([BIN, "run", "-f", spec, "--output-dir", out_dir], env)
    return secs, rss, os.path.getsize(os.path.join(out_dir, path))


def psql_copy(work):
    path = os.path.join(work, "psql.csv")
    secs, rss = measured(["psql", DB, "-qX", "-c",
                          f"\\copy (SELECT * FROM pgbench_accounts ORDER BY aid) TO '{path}' CSV HEADER"])
    return secs, rss, os.path.getsize(path)


def psql_floor(work):
    half = ROWS // 2
    a, b, out = (os.path.join(work, n) for n in ("a.csv", "b.csv", "floor.csv"))
    script = (f"psql '{DB}' -qX -c \"\\copy (SELECT * FROM pgbench_accounts WHERE aid <= {half} ORDER BY aid) TO '{a}' CSV HEADER\" & "
              f"psql '{DB}' -qX -c \"\\copy (SELECT * FROM pgbench_accounts WHERE aid > {half} ORDER BY aid) TO '{b}' CSV\" & "
              f"wait; cat '{a}' '{b}' > '{out}'")
    secs, rss = measured(["sh", "-c", script])
    return secs, rss, os.path.getsize(out)


PY_CONNECTORX = """
import sys, connectorx as cx, pyarrow.parquet as pq
t = cx.read_sql(sys.argv[1], "SELECT * FROM pgbench_accounts", partition_on="aid", partition_num=2, return_type="arrow")
pq.write_table(t, sys.argv[2], compression="zstd")
"""

PY_ADBC = """
import sys, adbc_driver_postgresql.dbapi as pg, pyarrow.parquet as pq
with pg.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    cur.execute("SELECT * FROM pgbench_accounts ORDER BY aid")
    reader = cur.fetch_record_batch()
    with pq.ParquetWriter(sys.argv[2], reader.schema, compression="zstd") as w:
        for batch in reader:
            w.write_batch(batch)
"""

PY_XLSXWRITER = """
import sys, psycopg, xlsxwriter
wb = xlsxwriter.Workbook(sys.argv[2], {"constant_memory": True})
ws = wb.add_worksheet("accounts")
with psycopg.connect(sys.argv[1]) as conn, conn.cursor(name="rows") as cur:
    cur.itersize = 10000
    cur.execute("SELECT * FROM accounts_1m ORDER BY aid")
    ws.write_row(0, 0, [d.name for d in cur.description])
    for r, row in enumerate(cur, start=1):
        ws.write_row(r, 0, row)
wb.close()
"""


def python_peer(work, name, code, suffix):
    path = os.path.join(work, f"{name}.{suffix}")
    script = os.path.join(work, f"peer_{name}.py")  # not {name}.py: it would shadow the module
    with open(script, "w") as f:
        f.write(code)
    secs, rss = measured([PY, script, DB, path])
    return secs, rss, os.path.getsize(path)


# The XLSX goal's yardsticks: (workbook contender, CSV contender) for the same rows.
XLSX_YARDSTICKS = {
    "1M": ("reportjob, parallelism 2 (1M rows)", "reportjob to CSV, parallelism 2 (1M rows)"),
    "5M": ("reportjob, parallelism 2 (5M rows)", "reportjob, parallelism 2"),
}


def contenders(work):
    out = []
    if "csv" in FORMATS:
        out += [("csv", "reportjob, parallelism 2", lambda: reportjob(work, "pgbench_accounts", "csv", "r.csv")),
                ("csv", "one psql \\copy", lambda: psql_copy(work)),
                ("csv", "two psql \\copy halves + cat (the floor)", lambda: psql_floor(work))]
    if "parquet" in FORMATS:
        out += [("parquet", "reportjob, parallelism 2, zstd",
                 lambda: reportjob(work, "pgbench_accounts", "parquet", "r.parquet",
                                   "\n    parquet: {compression: zstd}")),
                ("parquet", "connectorx (2 partitions) + pyarrow write_table, zstd",
                 lambda: python_peer(work, "connectorx", PY_CONNECTORX, "parquet")),
                ("parquet", "ADBC PostgreSQL driver -> pyarrow ParquetWriter, zstd",
                 lambda: python_peer(work, "adbc", PY_ADBC, "parquet"))]
    if "xlsx" in FORMATS:
        out += [("xlsx", "reportjob, parallelism 2 (1M rows)",
                 lambda: reportjob(work, "accounts_1m", "xlsx", "r.xlsx")),
                ("xlsx", "xlsxwriter constant_memory + psycopg server-side cursor (1M rows)",
                 lambda: python_peer(work, "xlsxwriter", PY_XLSXWRITER, "xlsx")),
                ("xlsx", XLSX_YARDSTICKS["1M"][1],
                 lambda: reportjob(work, "accounts_1m", "csv", "r1m.csv")),
                ("xlsx", XLSX_YARDSTICKS["5M"][0],
                 lambda: reportjob(work, "pgbench_accounts", "xlsx", "r5m.xlsx"))]
        if "csv" not in FORMATS:
            out.append(("xlsx", XLSX_YARDSTICKS["5M"][1],
                        lambda: reportjob(work, "pgbench_accounts", "csv", "r.csv")))
    return out


def main():
    if not os.path.exists(BIN):
        sys.exit(f"no reportjob binary at {BIN} (cargo build --release, or set BENCH_BIN)")
    ensure_tables()
    work = tempfile.mkdtemp(prefix="reportjob-peers-")
    try:
        runs = contenders(work)
        results = {name: [] for _, name, _ in runs}
        for r in range(ROUNDS):
            order = runs if r % 2 == 0 else list(reversed(runs))
            for fmt, name, run in order:
                secs, rss, size = run()
                results[name].append((secs, rss, size))
                print(f"round {r + 1}  {fmt:8} {secs:7.2f} s  {rss:7.1f} MiB  {name}", file=sys.stderr)
        print(f"\n{ROUNDS} rounds, medians; alternating order; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
        print("| format | contender | median s | rounds | peak RSS | file | vs first peer |")
        print("|---|---|---|---|---|---|---|")
        first_peer = {}
        for fmt, name, _ in runs:
            if fmt not in first_peer and not name.startswith("reportjob"):
                first_peer[fmt] = statistics.median(s for s, _, _ in results[name])
        for fmt, name, _ in runs:
            rs = results[name]
            med = statistics.median(s for s, _, _ in rs)
            rounds = ", ".join(f"{s:.2f}" for s, _, _ in rs)
            rss = max(m for _, m, _ in rs)
            size = rs[-1][2] / 1e6
            ratio = med / first_peer[fmt] if fmt in first_peer else float("nan")
            print(f"| {fmt} | {name} | {med:.2f} | {rounds} | {rss:.0f} MiB | {size:.1f} MB | {ratio:.2f}x |")
        if "xlsx" in FORMATS:
            median = {name: statistics.median(s for s, _, _ in rs) for name, rs in results.items()}
            for rows, (book, csv) in XLSX_YARDSTICKS.items():
                if book in median and csv in median:
                    print(f"\nxlsx / csv of the same {rows} rows: "
                          f"{median[book]:.2f} s / {median[csv]:.2f} s = {median[book] / median[csv]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
