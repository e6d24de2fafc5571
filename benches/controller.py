#!/usr/bin/env python3
"""The controller at scale on kubesim: N ReportJobs applied at once, all must reach Complete.

Prints the time to completion, reconcile-latency percentiles (from the controller's
Prometheus histogram), API requests per ReportJob and the controller's peak RSS.
Run through benches/controller.sh, which builds the release binaries first.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

# BENCH_BIG=1: one ReportJob of 2,000 chunks (200,000 rows in chunks of 100), parallelism 20;
# prints also the largest `kubectl get rj -o json` seen while it ran.
BIG = os.environ.get("BENCH_BIG") == "1"
N = 1 if BIG else int(os.environ.get("BENCH_REPORTJOBS", "200"))
ROWS = 200_000 if BIG else 2000
CHUNK, PARALLELISM = (100, 20) if BIG else (1000, 2)
# PerChunk by default, as the figures before the snapshot stage existed; Snapshot holds one
# database connection per running ReportJob for the whole run (see BENCHMARKS.md).
CONSISTENCY = os.environ.get("BENCH_CONSISTENCY", "PerChunk")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
# The controller's --max-concurrent-runs (the default when unset).
MAX_RUNS = os.environ.get("BENCH_MAX_CONCURRENT_RUNS")
# A role that may only read the table, as a report's role should (the superuser would add a
# privilege warning Event to every run).
DB = os.environ.get("BENCH_DATABASE_URL", "postgres://reportjob_bench@127.0.0.1:5432/reportjob_bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, db="reportjob_bench"):
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v",
                    "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL)


def main():
    work = tempfile.mkdtemp(prefix="rj-ctl-bench-")
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c",
                    "CREATE DATABASE reportjob_bench"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    psql("DROP TABLE IF EXISTS small; CREATE TABLE small (id bigint PRIMARY KEY, v text); "
         f"INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g; ANALYZE small;")
    psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reportjob_bench') THEN "
         "CREATE ROLE reportjob_bench LOGIN; END IF; END $$; "
         "GRANT SELECT ON small TO reportjob_bench;")
    port, metrics = free_port(), free_port()
    kubeconfig = os.path.join(work, "kubeconfig")
    sim = subprocess.Popen([os.path.join(BIN, "kubesim"), "--port", str(port), "--write-kubeconfig",
                            kubeconfig, "--data-dir", os.path.join(work, "data"), "--image",
                            "reportjob=" + os.path.join(BIN, "reportjob")],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "kubesim.log"), "w"))
    ctl = None
    try:
        for _ in range(100):
            if os.path.exists(kubeconfig):
                break
            time.sleep(0.1)
        kubectl = ["kubectl", "--kubeconfig", kubeconfig]
        subprocess.run(kubectl + ["apply", "-f", os.path.join(ROOT, "crds/reportjob.yaml")],
                       check=True, stdout=subprocess.DEVNULL)
        setup = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\n"
                 "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: bench}\n"
                 f"stringData: {{url: '{DB}'}}\n---\n"
                 "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: reports, namespace: bench}\n"
                 "spec: {accessModes: [ReadWriteMany], resources: {requests: {storage: 1Gi}}}\n")
        subprocess.run(kubectl + ["apply", "-f", "-"], input=setup.encode(), check=True, stdout=subprocess.DEVNULL)
        ctl = subprocess.Popen([os.path.join(BIN, "reportjob"), "controller", "--kubeconfig", kubeconfig,
                                "--worker-image", "reportjob:bench", "--leader-election=false",
                                "--metrics-addr", f"127.0.0.1:{metrics}"]
                               + (["--max-concurrent-runs", MAX_RUNS] if MAX_RUNS else []),
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "controller.log"), "w"),
                               env=dict(os.environ, RUST_LOG="warn"))
        docs = []
        for i in range(N):
            docs.append(f"""apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: r{i:03d}, namespace: bench}}
spec:
  source: {{connectionSecretRef: {{name: db}}, table: public.small, keyColumn: id, consistency: {CONSISTENCY}}}
  chunking: {{chunkSize: {CHUNK}, parallelism: {PARALLELISM}}}
  output: {{destination: {{pvc: {{claimName: reports, path: r{i:03d}.csv}}}}}}
  worker: {{retriesPerChunk: 6}}
""")
        manifest = os.path.join(work, "rjs.yaml")
        with open(manifest, "w") as f:
            f.write("---\n".join(docs))
        start = time.monotonic()
        subprocess.run(kubectl + ["apply", "-f", manifest], check=True, stdout=subprocess.DEVNULL)
        deadline = start + float(os.environ.get("BENCH_TIMEOUT", "1800"))
        peak = 0
        status_bytes = []
        while True:
            if BIG:
                one = subprocess.run(kubectl + ["-n", "bench", "get", "rj", "r000", "-o", "json"],
                                     capture_output=True).stdout
                if one:
                    status_bytes.append(len(one))
            out = subprocess.run(kubectl + ["-n", "bench", "get", "rj", "-o", "json"], check=True,
                                 capture_output=True).stdout
            items = json.loads(out)["items"]
            phases = [((i.get("status") or {}).get("phase")) for i in items]
            with open(f"/proc/{ctl.pid}/status") as st:
                hwm = re.search(r"VmHWM:\s+(\d+) kB", st.read())
                peak = max(peak, int(hwm.group(1)) if hwm else 0)
            if all(p in ("Succeeded", "Failed") for p in phases) and len(phases) == N:
                break
            if time.monotonic() > deadline:
                sys.exit(f"timed out: {sorted(set(phases), key=str)}")
            time.sleep(1)
        elapsed = time.monotonic() - start
        failed = phases.count("Failed")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode()
        buckets = [(float(le), float(v)) for le, v in
                   re.findall(r'reportjob_reconcile_duration_seconds_bucket\{le="([0-9.e+-]+)"\} (\d+)', text)]
        total = float(re.search(r"reportjob_reconcile_duration_seconds_count (\d+)", text).group(1))
        def pct(p):
            for le, count in buckets:
                if count >= p * total:
                    return le
            return float("inf")
        requests = float(re.search(r"reportjob_api_requests_total (\d+)", text).group(1))
        # The same from kubesim's side: kube-rs sends no User-Agent ("unknown"), kubectl does;
        # kubesim's own Job controller and kubelet (pods, pods/status, jobs/status, secrets,
        # deployments, replicasets) send none either, so only the controller's resources count.
        served = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/requests").read())
        ours = ("reportjobs", "reportjobs/status", "reportschedules", "events", "jobs")
        ctl_served = {k: v for k, v in served.get("unknown", {}).items() if k.split(" ", 1)[1] in ours}
        writes = {k: v for k, v in ctl_served.items() if not k.startswith(("watch ", "list ", "get "))}
        reads = {k: v for k, v in ctl_served.items() if k.startswith(("list ", "get "))}
        rows = sum(((i.get("status") or {}).get("rows") or 0) for i in items)
        print(f"| ReportJobs | {N} ({failed} failed), consistency {CONSISTENCY} |")
        print(f"| time to all Complete | {elapsed:.1f} s |")
        print(f"| rows exported (all) | {rows} (expected {N * ROWS}) |")
        if BIG:
            print(f"| chunks / parallelism | {ROWS // CHUNK} / {PARALLELISM} |")
            print(f"| `kubectl get rj -o json` bytes: largest while running / at the end | "
                  f"{max(status_bytes)} / {status_bytes[-1]} |")
        print(f"| reconciles | {int(total)} |")
        print(f"| reconcile latency p50 / p90 / p99 (histogram bucket bound) | <= {pct(0.5)*1000:.0f} ms / <= {pct(0.9)*1000:.0f} ms / <= {pct(0.99)*1000:.0f} ms |")
        print(f"| API requests per ReportJob (reconciler) | {requests / N:.1f} |")
        print(f"| controller requests served by kubesim per ReportJob (all but watches) | "
              f"{(sum(writes.values()) + sum(reads.values())) / N:.1f} |")
        print(f"| watches started by the controller | {sum(v for k, v in ctl_served.items() if k.startswith('watch '))} |")
        for k, v in sorted(ctl_served.items()):
            print(f"|   {k} | {v} ({v / N:.2f} per ReportJob) |")
        print(f"| controller peak RSS | {peak / 1024:.1f} MiB |")
    finally:
        for p in (ctl, sim):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
