#!/usr/bin/env python3
"""Benchmarks of the export engine against the real Postgres; prints a Markdown table.

(a) throughput: `reportjob run` vs one `psql \\copy` of the same 5M rows, and vs two `psql \\copy`
    over the key halves at once (what two workers allow), in turn, at least 5 rounds, each
    round printed on stderr (`benches/run.sh --throughput` runs only this one)
(b) peak RSS of one chunk worker (`run --parallelism 1`, one chunk) at 1M and 5M rows; (b')
    of `reportjob worker` alone as a chunk pod runs it (spec from REPORTJOB_SPEC), CSV
    (`benches/run.sh --worker-rss` runs only this one)
(c) chunk balance (largest / mean) on clustered, sparse keys
(d) planning time on a 10M-row table
(f) consistency: `Snapshot` (one exported snapshot for the run) vs `PerChunk`, 5M rows
    (`benches/run.sh --consistency` runs only this one)
(g) formats: the 5M-row table as csv, csv+zstd, jsonl, jsonl+zstd, parquet and xlsx: time,
    report size, and the peak RSS of a run of 1M and of 5M rows in one chunk (for xlsx that run
    includes the assembly that re-encodes the rows into the workbook) (`benches/run.sh
    --formats` runs only this one; `BENCH_FORMATS=csv,xlsx` picks formats by name)
(h) assembly CPU vs export CPU, csv and parquet: the 5M-row table staged as a cluster runs it
    (`plan --write`, one `worker` process per chunk, one `assemble` process), each process's CPU
    time measured by GNU time (`benches/run.sh --assembly` runs only this one)

Run it with benches/run.sh (builds the release binary first). Tables are generated once in
the database `reportjob_bench` and reused.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "reportjob")
SERVER = os.environ.get("BENCH_SERVER_URL", "postgres://postgres@127.0.0.1:5432")
DB = SERVER + "/reportjob_bench"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
QUICK = "--quick" in sys.argv
ONLY_CONSISTENCY = "--consistency" in sys.argv
ONLY_FORMATS = "--formats" in sys.argv
ONLY_THROUGHPUT = "--throughput" in sys.argv
ONLY_ASSEMBLY = "--assembly" in sys.argv
ONLY_WORKER_RSS = "--worker-rss" in sys.argv
SCALE = 10 if QUICK else 1  # --quick divides the row counts by 10


def psql(sql, db=DB, capture=False):
    out = subprocess.run(["psql", db, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}\n{sql}")
    return out.stdout.strip()


def ensure_db():
    if psql("SELECT 1 FROM pg_database WHERE datname = 'reportjob_bench'", db=SERVER + "/postgres") != "1":
        psql("CREATE DATABASE reportjob_bench", db=SERVER + "/postgres")
    psql("CREATE SCHEMA IF NOT EXISTS bench")


def ensure_table(name, rows, body):
    exists = psql(f"SELECT to_regclass('bench.{name}') IS NOT NULL") == "t"
    if exists and int(psql(f"SELECT count(*) FROM bench.{name}")) == rows:
        return
    print(f"generating bench.{name} ({rows} rows)...", file=sys.stderr)
    psql(f"DROP TABLE IF EXISTS bench.{name}; {body.format(name=name, rows=rows)}")
    psql(f"VACUUM ANALYZE bench.{name}")


ORDERS = """CREATE TABLE bench.{name} (id bigint PRIMARY KEY, customer_id integer NOT NULL,
  amount numeric(12,2) NOT NULL, status text NOT NULL, note text, created_at timestamptz NOT NULL);
INSERT INTO bench.{name}
SELECT g, 1 + (g * 7919) % 250000, round(((g * 104729) % 100000) / 100.0 + 1, 2),
       (ARRAY['new','paid','shipped','delivered','refunded'])[1 + g % 5],
       CASE WHEN g % 10 = 0 THEN NULL WHEN g % 7 = 0 THEN 'note, with "quotes"' ELSE 'order ' || g END,
       timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => g)
  FROM generate_series(1::int8, {rows}) AS g"""

CLUSTERED = """CREATE TABLE bench.{name} (id bigint PRIMARY KEY, payload text);
INSERT INTO bench.{name}
SELECT (g / ({rows} / 20))::int8 ^ 4 * 1000000000 + (g % ({rows} / 20)) * (1 + 50 * (g / ({rows} / 20))::int8 ^ 2), 'p' || g
  FROM generate_series(0::int8, {rows} - 1) AS g"""


def spec(table, path, chunk_size, parallelism, key="id", consistency="Snapshot", output=""):
    return f"""apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: bench}}
spec:
  source:
    connectionSecretRef: {{name: db}}
    table: {table}
    keyColumn: {key}
    consistency: {consistency}
  chunking: {{chunkSize: {chunk_size}, parallelism: {parallelism}, maxChunks: 100000}}
  output:{output}
    destination:
      pvc: {{claimName: r, path: {path}}}
"""


def timed(cmd, env=None):
    """Runs cmd; returns (seconds, stdout)."""
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    return elapsed, out.stdout


def peak_rss_mib(cmd, env):
    """Peak RSS (MiB) and wall time of cmd alone, measured by GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M %e"] + cmd, check=True, capture_output=True,
                         text=True, env=env)
    kib, secs = out.stderr.strip().splitlines()[-1].split()
    return int(kib) / 1024.0, float(secs)


def bucket_benchmarks(s3s, work, n5, env):
    import socket
    data = os.path.join(work, "s3data")
    os.makedirs(os.path.join(data, "reports"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([s3s, "--host", "127.0.0.1", "--port", str(port), "--access-key", "benchak",
                               "--secret-key", "benchsecretkey", data],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        benv = dict(env, AWS_ACCESS_KEY_ID="benchak", AWS_SECRET_ACCESS_KEY="benchsecretkey")
        for copy in ("true", "false"):
            path = os.path.join(work, f"bucket-{copy}.yaml")
            with open(path, "w") as f:
                f.write(spec("bench.orders_5m", "x", n5 // 20, 2).replace(
                    "      pvc: {claimName: r, path: x}",
                    f"      bucket: {{url: 's3://reports/bench-{copy}.csv', serverSideCopy: {copy}}}"))
            times, rss = [], []
            for _ in range(ROUNDS):
                mib, secs = peak_rss_mib([BIN, "run", "-f", path, "--s3-endpoint", f"http://127.0.0.1:{port}",
                                          "--json"], benv)
                times.append(secs)
                rss.append(mib)
            how = "server-side copy" if copy == "true" else "streamed through the assembler"
            out.append((f"(e) bucket, 5M rows (326 MB), parallelism 2, assembly by {how}",
                        f"{statistics.median(times):.2f} s", f"peak RSS {max(rss):.0f} MiB"))
    finally:
        server.kill()
        server.wait()
    return out


def consistency_benchmark(work, n5, env):
    """(f) The same 5M-row export under one snapshot and per chunk, alternating, ROUNDS each."""
    times = {"Snapshot": [], "PerChunk": []}
    for _ in range(ROUNDS):
        for mode in ("PerChunk", "Snapshot"):
            path = os.path.join(work, f"c-{mode}.yaml")
            with open(path, "w") as f:
                f.write(spec("bench.orders_5m", "out.csv", n5 // 20, 2, consistency=mode))
            outdir = os.path.join(work, "out")
            t, out = timed([BIN, "run", "-f", path, "--output-dir", outdir, "--json"], env=env)
            result = json.loads(out)
            assert result["rows"] == n5, result
            assert (result["snapshot"] is not None) == (mode == "Snapshot"), result
            times[mode].append(t)
            shutil.rmtree(outdir)
    snap, per = statistics.median(times["Snapshot"]), statistics.median(times["PerChunk"])
    return [
        ("(f) 5M rows, parallelism 2, `consistency: PerChunk`, median s", f"{per:.2f}",
         f"{n5 / per:,.0f} rows/s"),
        ("(f) the same, `consistency: Snapshot` (one exported snapshot), median s", f"{snap:.2f}",
         f"{n5 / snap:,.0f} rows/s; {(snap / per - 1) * 100:+.1f}% vs PerChunk (target within 3%)"),
    ]


FORMATS = [("csv", "none", "csv"), ("csv", "zstd", "csv.zst"), ("jsonl", "none", "jsonl"),
           ("jsonl", "zstd", "jsonl.zst"), ("parquet", "none", "parquet"),
           ("xlsx", "none", "xlsx")]
PICKED = [f for f in os.environ.get("BENCH_FORMATS", "").split(",") if f]


def cpu_of(cmd, env):
    """User+system CPU seconds, wall seconds and peak RSS (MiB) of cmd alone (GNU time)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%U %S %e %M"] + cmd, check=True, capture_output=True,
                         text=True, env=env)
    user, system, wall, kib = out.stderr.strip().splitlines()[-1].split()
    return float(user) + float(system), float(wall), int(kib) / 1024.0


def staged_cpu(work, n5, env, fmt, ext, chunks=20):
    """The 5M-row table run stage by stage, as a cluster runs it (plan, one worker process per
    chunk, one assemble process): CPU seconds of all the exports and of the assembly."""
    path = os.path.join(work, f"h-{fmt}.yaml")
    with open(path, "w") as f:
        f.write(spec("bench.orders_5m", f"staged.{ext}", n5 // chunks, 1, consistency="PerChunk",
                     output=f"\n    format: {fmt}"))
    outdir = os.path.join(work, "staged")
    common = ["-f", path, "--output-dir", outdir]
    planned = subprocess.run([BIN, "plan", "--write"] + common, check=True, capture_output=True,
                             text=True, env=env).stdout
    count = int(re.search(r"chunks=(\d+)", planned).group(1))
    export_cpu, export_peak = 0.0, 0.0
    for i in range(count):
        cpu, _, mib = cpu_of([BIN, "worker", "--index", str(i)] + common, env)
        export_cpu += cpu
        export_peak = max(export_peak, mib)
    assemble_cpu, assemble_wall, assemble_mib = cpu_of([BIN, "assemble"] + common, env)
    size = os.path.getsize(os.path.join(outdir, f"staged.{ext}"))
    shutil.rmtree(outdir)
    return (f"(h) {fmt}: {count} chunks exported by {count} worker processes, then one assemble process",
            f"export {export_cpu:.2f} CPU s, assemble {assemble_cpu:.2f} CPU s",
            f"assembly/export CPU {assemble_cpu / export_cpu * 100:.1f}%; assemble wall {assemble_wall:.2f} s, "
            f"peak RSS {assemble_mib:.0f} MiB (workers {export_peak:.0f} MiB); {size / 1e6:,.0f} MB")


def assembly_benchmark(work, n5, env):
    """(h) Assembly CPU vs export CPU: CSV parts concatenate; Parquet parts' column chunks are
    copied into one file without decoding, so its assembly should cost as little."""
    return [staged_cpu(work, n5, env, "csv", "csv"), staged_cpu(work, n5, env, "parquet", "parquet")]


def formats_benchmark(work, n1, n5, env):
    """(g) Each format on the 5M-row table (parallelism 2, 20 chunks; median of ROUNDS) and the
    peak RSS of one chunk of 1M and of 5M rows."""
    rows = []
    for fmt, compression, ext in FORMATS:
        if PICKED and fmt not in PICKED:
            continue
        output = f"\n    format: {fmt}\n    compression: {compression}"
        path = os.path.join(work, f"g-{fmt}-{compression}.yaml")
        with open(path, "w") as f:
            f.write(spec("bench.orders_5m", f"out.{ext}", n5 // 20, 2, output=output))
        times, size = [], 0
        for _ in range(ROUNDS):
            outdir = os.path.join(work, "out")
            t, out = timed([BIN, "run", "-f", path, "--output-dir", outdir, "--json"], env=env)
            result = json.loads(out)
            assert result["rows"] == n5, result
            times.append(t)
            size = os.path.getsize(os.path.join(outdir, f"out.{ext}"))
            shutil.rmtree(outdir)
        rss, tail = {}, {}
        for table, n in (("orders_1m", n1), ("orders_5m", n5)):
            rpath = os.path.join(work, f"g-rss-{fmt}-{table}.yaml")
            with open(rpath, "w") as f:
                f.write(spec(f"bench.{table}", f"one.{ext}", 1_000_000_000, 1, output=output))
            mib, secs = peak_rss_mib([BIN, "run", "-f", rpath, "--output-dir", os.path.join(work, "rss")], env)
            tail[n] = (secs, assembly_seconds(os.path.join(work, "rss", f"one.{ext}.manifest.json")))
            shutil.rmtree(os.path.join(work, "rss"))
            rss[n] = mib
        median = statistics.median(times)
        rows.append((f"(g) {fmt}, compression {compression}: 5M rows, parallelism 2, median s",
                     f"{median:.2f}",
                     f"{size / 1e6:,.0f} MB; peak RSS one chunk {rss[n1]:.1f} MiB (1M) -> {rss[n5]:.1f} MiB (5M), "
                     f"{(rss[n5] / rss[n1] - 1) * 100:+.1f}%; one 5M-row chunk: {tail[n5][0]:.1f} s, "
                     f"of which {tail[n5][1]:.1f} s after its export (assembly)"))
    return rows


def worker_rss_benchmark(work, n1, n5, env):
    """(b') Peak RSS of `reportjob worker` as a chunk pod runs it: the plan staged first
    (`plan --write`, one chunk), then the worker alone with the spec as the controller hands it
    over (REPORTJOB_SPEC, JSON), CSV."""
    rows = []
    for table, n in (("orders_1m", n1), ("orders_5m", n5)):
        out = os.path.join(work, "worker-rss")
        path = os.path.join(work, f"worker-{table}.yaml")
        with open(path, "w") as f:
            f.write(spec(f"bench.{table}", "one.csv", 1_000_000_000, 1))
        pod_env = dict(env, REPORTJOB_RUN_ID=f"rss-{n}", REPORTJOB_OUTPUT_DIR=out)
        planned = subprocess.run([BIN, "plan", "-f", path, "--write"], capture_output=True, text=True, env=pod_env)
        if planned.returncode != 0:
            sys.exit(f"plan --write failed: {planned.stderr}")
        pod_env["REPORTJOB_SPEC"] = json.dumps({
            "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob", "metadata": {"name": "bench"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": f"bench.{table}",
                           "keyColumn": "id", "consistency": "Snapshot"},
                "chunking": {"chunkSize": 1_000_000_000, "parallelism": 1, "maxChunks": 100000},
                "output": {"destination": {"pvc": {"claimName": "r", "path": "one.csv"}}},
            }})
        mib, secs = peak_rss_mib([BIN, "worker", "--index", "0"], pod_env)
        shutil.rmtree(out)
        rows.append((f"(b') peak RSS of `reportjob worker` (a pod's), one CSV chunk of {n:,} rows",
                     f"{mib:.1f} MiB", f"{secs:.1f} s"))
    return rows


def assembly_seconds(manifest_path):
    """Seconds from the last part's export to the report's publication, from its manifest."""
    import datetime
    import re

    def parse(text):
        # RFC 3339 with up to nanoseconds; Python takes microseconds.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(text)

    with open(manifest_path) as f:
        manifest = json.load(f)
    last = max(parse(p["finished_at"]) for p in manifest["parts"])
    return (parse(manifest["finished_at"]) - last).total_seconds()


def throughput_benchmark(work, n5, env):
    """(a) `reportjob run` (parallelism 2 and 1) vs one `psql \\copy` of the same rows, and vs what
    two workers allow: two `psql \\copy` over the two key halves at once, then `cat`. In turn,
    at least 5 rounds; each round's ratios on stderr as it goes."""
    rounds = max(ROUNDS, 5)
    spec_p2 = os.path.join(work, "p2.yaml")
    with open(spec_p2, "w") as f:
        f.write(spec("bench.orders_5m", "out.csv", n5 // 20, 2))
    spec_p1 = os.path.join(work, "p1.yaml")
    with open(spec_p1, "w") as f:
        f.write(spec("bench.orders_5m", "out.csv", n5 // 20, 1))
    half = n5 // 2
    psql_times, halves_times, rj2_times, rj1_times = [], [], [], []
    for r in range(rounds):
        target = os.path.join(work, "psql.csv")
        t, _ = timed(["psql", DB, "-qAtX", "-c",
                      f"\\copy (SELECT * FROM bench.orders_5m ORDER BY id) TO '{target}' WITH (FORMAT csv, HEADER)"])
        psql_times.append(t)
        size_psql = os.path.getsize(target)
        os.remove(target)
        # Two halves at once, then one file: the floor two workers can reach on two cores.
        parts = [os.path.join(work, f"half{i}.csv") for i in (1, 2)]
        start = time.perf_counter()
        procs = [subprocess.Popen(["psql", DB, "-qAtX", "-c",
                                   f"\\copy (SELECT * FROM bench.orders_5m WHERE {cond} ORDER BY id) TO '{path}' "
                                   f"WITH (FORMAT csv{', HEADER' if i == 0 else ''})"])
                 for i, (cond, path) in enumerate(((f"id <= {half}", parts[0]), (f"id > {half}", parts[1])))]
        for p in procs:
            assert p.wait() == 0
        with open(target, "wb") as out:
            subprocess.run(["cat"] + parts, stdout=out, check=True)
        halves_times.append(time.perf_counter() - start)
        assert os.path.getsize(target) == size_psql
        for path in parts + [target]:
            os.remove(path)
        for times, spec_path in ((rj2_times, spec_p2), (rj1_times, spec_p1)):
            outdir = os.path.join(work, "out")
            t, out = timed([BIN, "run", "-f", spec_path, "--output-dir", outdir, "--json"], env=env)
            result = json.loads(out)
            assert result["rows"] == n5, result
            times.append(t)
            size_rj = os.path.getsize(os.path.join(outdir, "out.csv"))
            assert size_rj == size_psql, f"same bytes as psql: {size_rj} vs {size_psql}"
            shutil.rmtree(outdir)
        print(f"(a) round {r + 1}/{rounds}: psql {psql_times[-1]:.2f} s, two halves {halves_times[-1]:.2f} s "
              f"({halves_times[-1] / psql_times[-1]:.2f}x), reportjob p=2 {rj2_times[-1]:.2f} s "
              f"({rj2_times[-1] / psql_times[-1]:.2f}x), p=1 {rj1_times[-1]:.2f} s "
              f"({rj1_times[-1] / psql_times[-1]:.2f}x)", file=sys.stderr)
    ratio = lambda times: statistics.median([t / p for t, p in zip(times, psql_times)])
    return [
        (f"(a) export 5M rows: psql \\copy, median of {rounds} s", f"{statistics.median(psql_times):.2f}", ""),
        ("(a) two psql \\copy over the key halves at once + cat, median s", f"{statistics.median(halves_times):.2f}",
         f"median ratio {ratio(halves_times):.2f}: what two workers allow"),
        ("(a) `reportjob run --parallelism 2`, median s", f"{statistics.median(rj2_times):.2f}",
         f"median ratio {ratio(rj2_times):.2f} (target <= 0.85)"),
        ("(a) `reportjob run --parallelism 1`, median s", f"{statistics.median(rj1_times):.2f}",
         f"median ratio {ratio(rj1_times):.2f}"),
    ]


def print_table(rows):
    print("| benchmark | figure | note |")
    print("|---|---|---|")
    for name, figure, note in rows:
        print(f"| {name} | {figure} | {note} |")


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run benches/run.sh")
    ensure_db()
    n5 = 5_000_000 // SCALE
    if ONLY_FORMATS or ONLY_THROUGHPUT or ONLY_CONSISTENCY or ONLY_ASSEMBLY or ONLY_WORKER_RSS:
        ensure_table("orders_5m", n5, ORDERS)
        env = dict(os.environ, DATABASE_URL=DB, RUST_LOG="warn")
        work = tempfile.mkdtemp(prefix="rj-bench-")
        try:
            if ONLY_FORMATS:
                n1 = 1_000_000 // SCALE
                ensure_table("orders_1m", n1, ORDERS)
                rows = formats_benchmark(work, n1, n5, env)
            elif ONLY_THROUGHPUT:
                rows = throughput_benchmark(work, n5, env)
            elif ONLY_ASSEMBLY:
                rows = assembly_benchmark(work, n5, env)
            elif ONLY_WORKER_RSS:
                n1 = 1_000_000 // SCALE
                ensure_table("orders_1m", n1, ORDERS)
                rows = worker_rss_benchmark(work, n1, n5, env)
            else:
                rows = consistency_benchmark(work, n5, env)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print_table(rows)
        return
    n1 = 1_000_000 // SCALE
    n10 = 10_000_000 // SCALE
    ensure_table("orders_5m", n5, ORDERS)
    ensure_table("orders_1m", n1, ORDERS)
    ensure_table("clustered_2m", 2_000_000 // SCALE, CLUSTERED)
    ensure_table("orders_10m", n10, ORDERS)
    env = dict(os.environ, DATABASE_URL=DB, RUST_LOG="warn")
    work = tempfile.mkdtemp(prefix="rj-bench-")
    rows = []
    try:
        rows += throughput_benchmark(work, n5, env)

        # (b) peak RSS of one chunk worker
        rss = {}
        for table, n in (("orders_1m", n1), ("orders_5m", n5)):
            path = os.path.join(work, f"rss-{table}.yaml")
            with open(path, "w") as f:
                f.write(spec(f"bench.{table}", "one.csv", 1_000_000_000, 1))
            mib, secs = peak_rss_mib([BIN, "run", "-f", path, "--output-dir", os.path.join(work, "rss")], env)
            shutil.rmtree(os.path.join(work, "rss"))
            rss[n] = mib
            rows.append((f"(b) peak RSS, one chunk of {n:,} rows", f"{mib:.1f} MiB", f"{secs:.1f} s"))
        growth = rss[n5] / rss[n1] - 1
        rows.append(("(b) RSS growth 1M -> 5M rows", f"{growth * 100:+.1f}%", "target within 10%, under 64 MiB"))
        rows += worker_rss_benchmark(work, n1, n5, env)

        # (c) balance on clustered, sparse keys
        for analyzed in (False, True):
            if not analyzed:
                psql("DROP TABLE IF EXISTS bench.clustered_fresh; "
                     "CREATE TABLE bench.clustered_fresh AS SELECT * FROM bench.clustered_2m; "
                     "ALTER TABLE bench.clustered_fresh ADD PRIMARY KEY (id)")
                table = "bench.clustered_fresh"
                chunk = (2_000_000 // SCALE) // 40
            else:
                psql("ALTER TABLE bench.clustered_2m ALTER COLUMN id SET STATISTICS 1000; ANALYZE bench.clustered_2m")
                table = "bench.clustered_2m"
                chunk = (2_000_000 // SCALE) // 10
            path = os.path.join(work, "plan.yaml")
            with open(path, "w") as f:
                f.write(spec(table, "p.csv", chunk, 4))
            out = subprocess.run([BIN, "plan", "-f", path, "--json"], check=True, capture_output=True,
                                 text=True, env=env).stdout
            plan = json.loads(out)
            bounds = [c["hi"] for c in plan["chunks"] if not c.get("nulls") and c["hi"] is not None]
            counts = psql(f"SELECT string_agg(n::text, ',' ORDER BY b) FROM (SELECT width_bucket(id, "
                          f"ARRAY[{','.join(bounds)}]::int8[]) AS b, count(*) AS n FROM {table} GROUP BY 1) s")
            counts = [int(c) for c in counts.split(",")]
            mean = sum(counts) / len(counts)
            rows.append((f"(c) balance, {len(counts)} chunks, {plan['strategy']} boundaries",
                         f"{max(counts) / mean:.3f}x mean", "target <= 1.25x"))

        # (d) planning time on 10M rows
        path = os.path.join(work, "plan10.yaml")
        with open(path, "w") as f:
            f.write(spec("bench.orders_10m", "p.csv", 100_000, 4))
        times = []
        for _ in range(ROUNDS):
            t, out = timed([BIN, "plan", "-f", path, "--json"], env=env)
            times.append(t)
        plan = json.loads(out)
        rows.append((f"(d) `reportjob plan` of {n10:,} rows ({len(plan['chunks'])} chunks, {plan['strategy']})",
                     f"{statistics.median(times) * 1000:.0f} ms", "median, whole process; target < 1 s"))
        # (d) the same plan with a `where` and with a `query`: both are parsed by Postgres's own
        # grammar (pg_query), regenerated and checked against the denylist before planning.
        with_sql = {
            "where": spec("bench.orders_10m", "p.csv", 100_000, 4).replace(
                "    keyColumn: id\n",
                "    keyColumn: id\n    where: \"status <> 'refunded' AND (note IS NULL OR note NOT LIKE 'x%')\"\n"),
            "query": spec("bench.orders_10m", "p.csv", 100_000, 4).replace(
                "    table: bench.orders_10m\n",
                "    query: \"SELECT o.id, o.amount, upper(o.status) AS status FROM bench.orders_10m o "
                "WHERE o.amount > 1\"\n"),
        }
        for kind, text in with_sql.items():
            path = os.path.join(work, f"plan10-{kind}.yaml")
            with open(path, "w") as f:
                f.write(text)
            times = []
            for _ in range(ROUNDS):
                t, out = timed([BIN, "plan", "-f", path, "--json"], env=env)
                times.append(t)
            plan = json.loads(out)
            rows.append((f"(d) the same with a `{kind}` (parsed, regenerated, checked) "
                         f"({len(plan['chunks'])} chunks, {plan['strategy']})",
                         f"{statistics.median(times) * 1000:.0f} ms",
                         "median, whole process; `benches/sql_parse.rs` times the parsing alone"))
        rows.extend(consistency_benchmark(work, n5, env))
        # (e) bucket output (s3s-fs on loopback): memory and assembly by server-side copy
        s3s = os.environ.get("S3S_FS") or os.path.expanduser("~/.cache/reportjob-tools/s3s-fs/bin/s3s-fs")
        if os.path.exists(s3s):
            rows.extend(bucket_benchmarks(s3s, work, n5, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
