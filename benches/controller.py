#!/usr/bin/env python3
"""The controller at scale on the real control plane: N ReportJobs applied at once, all must
reach Complete.

`scripts/testbed.sh up` starts kube-apiserver, etcd, kube-controller-manager, kube-scheduler
and the node agent (which runs every stage pod as a local `reportjob` process); the
controller runs as a local process whose kubeconfig points at a `faultproxy` (no faults) in
front of the API server. Only the controller goes through the proxy, so the proxy's counts
(`GET /debug/requests`) are the controller's API requests; kubectl, the Job controller,
the scheduler and the node agent talk to the API server directly.

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
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
# Where reportjob and faultproxy are (BENCH_BIN_DIR: e.g. debug builds, for a smoke run).
BIN = os.environ.get("BENCH_BIN_DIR") or os.path.join(TARGET, "release")
# The controller's --max-concurrent-runs (the default when unset).
MAX_RUNS = os.environ.get("BENCH_MAX_CONCURRENT_RUNS")
# The database the table lives in (BENCH_DB: another one lets two runs share a server).
DBNAME = os.environ.get("BENCH_DB", "reportjob_bench")
# A role that may only read the table, as a report's role should (the superuser would add a
# privilege warning Event to every run).
DB = os.environ.get("BENCH_DATABASE_URL", f"postgres://reportjob_bench@127.0.0.1:5432/{DBNAME}")
# BENCH_DATABASE=C,S: every ReportJob names one ReportDatabase with maxConcurrentChunks C and
# maxSnapshots S (and runs under one Snapshot); prints the most chunk pods and snapshot runs
# seen at once (sampled), which must stay within them.
DATABASE = os.environ.get("BENCH_DATABASE")
if DATABASE:
    MAX_CHUNKS, MAX_SNAPSHOTS = (int(x) for x in DATABASE.split(","))
    CONSISTENCY = "Snapshot"
# BENCH_KEEP=1 keeps the work directory (testbed logs, controller and proxy logs, reports).
KEEP = os.environ.get("BENCH_KEEP") == "1"
TESTBED = os.path.join(ROOT, "scripts", "testbed.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, db=DBNAME):
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v",
                    "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL)


def wait_for(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def terminate(p):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    # SIGTERM ends the run like Ctrl-C: the finally below stops the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    # Under the target directory, as the tests' clusters are: the node agent mounts each
    # pod's volumes from here, and the reports land in pv/bench/reports.
    os.makedirs(os.path.join(TARGET, "tmp"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="rj-ctl-bench-", dir=os.path.join(TARGET, "tmp"))
    cluster = os.path.join(work, "cluster")
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c",
                    f"CREATE DATABASE {DBNAME}"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    psql("DROP TABLE IF EXISTS small; CREATE TABLE small (id bigint PRIMARY KEY, v text); "
         f"INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g; ANALYZE small;")
    psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reportjob_bench') THEN "
         "CREATE ROLE reportjob_bench LOGIN; END IF; END $$; "
         "GRANT SELECT ON small TO reportjob_bench;")
    metrics = free_port()
    proxy_kubeconfig = os.path.join(work, "proxy-kubeconfig")
    proxy = ctl = None
    started_cluster = False
    try:
        t0 = time.monotonic()
        started_cluster = True
        subprocess.run([TESTBED, "up", "--dir", cluster,
                        "--image", f"reportjob={os.path.join(BIN, 'reportjob')}:65532"], check=True)
        print(f"testbed up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        kubeconfig = os.path.join(cluster, "kubeconfig")
        proxy = subprocess.Popen([os.path.join(BIN, "faultproxy"), "--kubeconfig", kubeconfig,
                                  "--write-kubeconfig", proxy_kubeconfig],
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "faultproxy.log"), "w"))
        wait_for("the proxy's kubeconfig",
                 lambda: os.path.exists(proxy_kubeconfig) or proxy.poll() is not None, 30)
        if proxy.poll() is not None:
            sys.exit(f"faultproxy exited: {open(os.path.join(work, 'faultproxy.log')).read()}")
        proxy_url = re.search(r"server: (\S+)", open(proxy_kubeconfig).read()).group(1)
        kubectl = ["kubectl", "--kubeconfig", kubeconfig]
        # Both CRDs, as a real install has: the controller also runs the ReportSchedule loop.
        for crd in ("reportjob", "reportschedule", "reportdatabase"):
            subprocess.run(kubectl + ["apply", "-f", os.path.join(ROOT, f"crds/{crd}.yaml")],
                           check=True, stdout=subprocess.DEVNULL)
        subprocess.run(kubectl + ["wait", "--for=condition=Established", "--timeout=60s",
                                  "crd/reportjobs.reporting.dev", "crd/reportschedules.reporting.dev",
                                  "crd/reportdatabases.reporting.dev"],
                       check=True, stdout=subprocess.DEVNULL)
        if DATABASE:
            budget = ("apiVersion: reporting.dev/v1alpha1\nkind: ReportDatabase\n"
                      "metadata: {name: bench-db}\n"
                      f"spec: {{namespaceSelector: {{}}, maxConcurrentChunks: {MAX_CHUNKS}, "
                      f"maxSnapshots: {MAX_SNAPSHOTS}}}\n")
            subprocess.run(kubectl + ["apply", "-f", "-"], input=budget.encode(), check=True,
                           stdout=subprocess.DEVNULL)
        setup = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\n"
                 "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: bench}\n"
                 f"stringData: {{url: '{DB}'}}\n---\n"
                 "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: reports, namespace: bench}\n"
                 "spec: {accessModes: [ReadWriteMany], resources: {requests: {storage: 1Gi}}}\n")
        subprocess.run(kubectl + ["apply", "-f", "-"], input=setup.encode(), check=True, stdout=subprocess.DEVNULL)
        # Pods of a namespace are admitted only once its default ServiceAccount exists, and the
        # claim should be bound before the clock starts.
        wait_for("the bench namespace's default ServiceAccount", lambda: subprocess.run(
            kubectl + ["-n", "bench", "get", "serviceaccount", "default"], capture_output=True).returncode == 0)
        wait_for("the reports claim to be bound", lambda: subprocess.run(
            kubectl + ["-n", "bench", "get", "pvc", "reports", "-o", "jsonpath={.status.phase}"],
            capture_output=True).stdout == b"Bound")
        ctl = subprocess.Popen([os.path.join(BIN, "reportjob"), "controller", "--kubeconfig", proxy_kubeconfig,
                                "--worker-image", "reportjob:bench", "--leader-election=false",
                                "--metrics-addr", f"127.0.0.1:{metrics}"]
                               + (["--max-concurrent-runs", MAX_RUNS] if MAX_RUNS else []),
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "controller.log"), "w"),
                               env=dict(os.environ, RUST_LOG="warn"))
        database_ref = ", database: {name: bench-db}" if DATABASE else ""
        docs = []
        for i in range(N):
            docs.append(f"""apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: r{i:03d}, namespace: bench}}
spec:
  source: {{connectionSecretRef: {{name: db}}, table: public.small, keyColumn: id, consistency: {CONSISTENCY}{database_ref}}}
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
        most_chunk_pods = most_snapshot_runs = 0
        status_bytes = []
        timed_out = False
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
            if ctl.poll() is not None:
                sys.exit(f"the controller exited ({ctl.returncode}); see {work}/controller.log")
            with open(f"/proc/{ctl.pid}/status") as st:
                hwm = re.search(r"VmHWM:\s+(\d+) kB", st.read())
                peak = max(peak, int(hwm.group(1)) if hwm else 0)
            if DATABASE:
                # Runs holding their snapshot: started, not ended, not suspended.
                holding = sum(1 for i in items if (i.get("status") or {}).get("startTime")
                              and (i.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Cancelled", "Suspended"))
                most_snapshot_runs = max(most_snapshot_runs, holding)
                pods = json.loads(subprocess.run(
                    kubectl + ["-n", "bench", "get", "pods", "-l", "reporting.dev/stage=chunks", "-o", "json"],
                    check=True, capture_output=True).stdout)["items"]
                live = sum(1 for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
                most_chunk_pods = max(most_chunk_pods, live)
            if all(p in ("Succeeded", "Failed") for p in phases) and len(phases) == N:
                break
            if time.monotonic() > deadline:
                # The figures so far are still printed, marked as such.
                timed_out = True
                break
            time.sleep(0.2 if DATABASE else 1)
        elapsed = time.monotonic() - start
        failed = phases.count("Failed")
        succeeded = phases.count("Succeeded")
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
        # What the proxy forwarded, by client (the User-Agent's first word; kube-rs sends
        # none: "unknown") and "verb resource". Only the controller connects through it.
        served = json.loads(urllib.request.urlopen(f"{proxy_url}/debug/requests").read())
        ctl_served = {}
        for by_key in served.values():
            for k, v in by_key.items():
                ctl_served[k] = ctl_served.get(k, 0) + v
        watches = {k: v for k, v in ctl_served.items() if k.startswith("watch ")}
        others = {k: v for k, v in ctl_served.items() if not k.startswith("watch ")}
        rows = sum(((i.get("status") or {}).get("rows") or 0) for i in items)
        if timed_out:
            counts = {p: phases.count(p) for p in sorted(set(phases), key=str)}
            print(f"| **timed out** after {elapsed:.0f} s (BENCH_TIMEOUT); phases | {counts} |")
        print("| figure (real control plane: kube-apiserver, controller through faultproxy) | value |")
        print("|---|---|")
        print(f"| ReportJobs | {N} ({succeeded} succeeded, {failed} failed), consistency {CONSISTENCY} |")
        print(f"| time to all Complete | {elapsed:.1f} s{' (not all: timed out)' if timed_out else ''} |")
        print(f"| rows exported (all) | {rows} (expected {N * ROWS}) |")
        if BIG:
            print(f"| chunks / parallelism | {ROWS // CHUNK} / {PARALLELISM} |")
            if status_bytes:
                print(f"| `kubectl get rj -o json` bytes: largest while running / at the end | "
                      f"{max(status_bytes)} / {status_bytes[-1]} |")
        print(f"| reconciles | {int(total)} ({total / N:.1f} per ReportJob) |")
        print(f"| reconcile latency p50 / p90 / p99 (histogram bucket bound) | <= {pct(0.5)*1000:.0f} ms / <= {pct(0.9)*1000:.0f} ms / <= {pct(0.99)*1000:.0f} ms |")
        print(f"| API requests per ReportJob (the controller's counter) | {requests / N:.1f} |")
        print(f"| controller requests through the proxy per ReportJob (all but watches) | "
              f"{sum(others.values()) / N:.1f} ({sum(others.values())} in all) |")
        print(f"| watches started by the controller | {sum(watches.values())} |")
        print(f"| clients seen by the proxy | {', '.join(sorted(served))} |")
        for k, v in sorted(ctl_served.items()):
            print(f"|   {k} | {v} ({v / N:.2f} per ReportJob) |")
        if DATABASE:
            print(f"| ReportDatabase maxConcurrentChunks / maxSnapshots | {MAX_CHUNKS} / {MAX_SNAPSHOTS} |")
            print(f"| most chunk pods live at once (sampled) | {most_chunk_pods} |")
            print(f"| most Snapshot runs in flight at once (sampled) | {most_snapshot_runs} |")
        print(f"| controller peak RSS (VmHWM) | {peak / 1024:.1f} MiB |")
        if timed_out:
            sys.exit(1)
        if DATABASE and (most_chunk_pods > MAX_CHUNKS or most_snapshot_runs > MAX_SNAPSHOTS):
            sys.exit("the ReportDatabase's budget was exceeded")
    finally:
        terminate(ctl)
        terminate(proxy)
        if started_cluster:
            subprocess.run([TESTBED, "down", "--dir", cluster])
        if KEEP:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
