#!/usr/bin/env bash
# Playground: the operator on a real Kubernetes control plane without a cluster of your own.
# `scripts/testbed.sh up` starts kube-apiserver, etcd, kube-controller-manager and
# kube-scheduler (built from Go modules once per machine) and our node agent, which runs pods
# as local processes, with the reportjob binary as the worker image. Then this script seeds
# the demo database in the local Postgres, installs the CRDs, creates the database Secret
# and a PVC with kubectl, starts the controller, applies the cluster examples
# (examples/*.yaml writing to the PVC) and watches them with `kubectl get rj -w`. Prints the
# kubeconfig path; the cluster runs until Ctrl-C.
#
#   scripts/cluster-demo.sh                     # interactive: watch, Ctrl-C stops everything
#   scripts/cluster-demo.sh --until-complete    # exit 0 once every example succeeded
#                                               # (also DEMO_NONINTERACTIVE=1)
#
# Environment:
#   REPORTJOB_BIN  the reportjob binary (default: $CARGO_TARGET_DIR/release/reportjob, or
#                  target/release/reportjob; built if missing)
#   DEMO_DIR       where the kubeconfig, the cluster's data (PV data under pv/, pod logs)
#                  and logs go (default: a new temporary directory)
#   DEMO_DATABASE  the database to seed (default: reportjob_demo; seeded once)
#   DEMO_SERVER_URL  the Postgres server (default: postgres://postgres@127.0.0.1:5432)
#   DEMO_TIMEOUT   seconds --until-complete waits for the examples (default: 900)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

until_complete=${DEMO_NONINTERACTIVE:-0}
for arg in "$@"; do
  case "$arg" in
    --until-complete) until_complete=1 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "cluster-demo: error: $*" >&2; exit 1; }
say() { echo "cluster-demo: $*" >&2; }

# The binary: a release build unless told otherwise.
target_dir=${CARGO_TARGET_DIR:-$root/target}
reportjob_bin=${REPORTJOB_BIN:-$target_dir/release/reportjob}
if [ ! -x "$reportjob_bin" ]; then
  [ -z "${REPORTJOB_BIN:-}" ] || die "REPORTJOB_BIN=$reportjob_bin is not an executable"
  say "building the release binary (cargo build --release) ..."
  cargo build --release --quiet --bin reportjob -p reportjob
fi
# kubectl of the cluster's own release (built with the control plane, once per machine).
source scripts/tools.sh
ensure_kubectl

# The demo database, seeded once (examples/seed.sql: demo.orders, 300,000 rows).
scripts/ensure-postgres.sh
server=${DEMO_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
database=${DEMO_DATABASE:-reportjob_demo}
database_url="$server/$database"
if [ "$(psql "$server/postgres" -qAtX -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != "1" ]; then
  psql "$server/postgres" -qAtX -c "CREATE DATABASE \"$database\""
fi
if [ "$(psql "$database_url" -qAtX -c "SELECT to_regclass('demo.orders') IS NOT NULL")" != "t" ]; then
  say "seeding $database (300,000 orders) ..."
  psql "$database_url" -qX -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
fi

dir=${DEMO_DIR:-$(mktemp -d -t reportjob-demo.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# Pods run as UID 65532 (the image's USER): they must be able to reach their volumes below here.
chmod 755 "$dir"
kubeconfig="$dir/kubeconfig"
rm -f "$kubeconfig"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/testbed.sh down --dir "$dir" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The image the controller names by default (ghcr.io/reportjob/reportjob:<version>) is
# matched by its repository's last path component and runs as the Dockerfile's USER 65532.
say "starting the test cluster (scripts/testbed.sh up; the first run builds it) ..."
scripts/testbed.sh up --dir "$dir" --image "reportjob=$reportjob_bin:65532"
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

ns=demo
k apply -f crds/reportjob.yaml >/dev/null
k apply -f crds/reportschedule.yaml >/dev/null
k apply -f crds/reportdatabase.yaml >/dev/null
k create namespace "$ns" >/dev/null
k -n "$ns" create secret generic reporting-db --from-literal=url="$database_url" >/dev/null
k -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: reports
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
EOF

RUST_LOG=${RUST_LOG:-info,kube=warn} "$reportjob_bin" controller --kubeconfig "$kubeconfig" \
  --leader-election=false --metrics-addr 127.0.0.1:0 2>"$dir/controller.log" &
pids+=($!)

# The cluster examples: the ReportJobs writing to the PVC (the bucket example needs an S3
# endpoint; a ReportSchedule's runs come at its scheduled times, not now).
examples=()
for f in examples/*.yaml; do
  grep -q '^kind: ReportJob$' "$f" && grep -q 'claimName: reports' "$f" && examples+=("$f")
done
[ ${#examples[@]} -gt 0 ] || die "no PVC examples in examples/"
for f in "${examples[@]}"; do k -n "$ns" apply -f "$f"; done

pvc_dir="$dir/pv/$ns/reports"
cat >&2 <<EOF

  kubeconfig:   $kubeconfig
  try:          kubectl --kubeconfig $kubeconfig -n $ns get rj -o wide
                kubectl --kubeconfig $kubeconfig -n $ns describe rj orders
  reports:      $pvc_dir
  logs:         $dir/controller.log, $dir/logs/ (control plane and pods), $dir/testbed.log

EOF

if [ "$until_complete" != "1" ]; then
  say "watching the ReportJobs; Ctrl-C stops the cluster"
  k -n "$ns" get rj -w &
  pids+=($!)
  while kill -0 "${pids[0]}" 2>/dev/null; do
    sleep 1
  done
  die "the controller exited; see $dir/controller.log"
fi

# Non-interactive: wait until every example succeeded, fail on the first failure.
names=$(k -n "$ns" get rj -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
deadline=$((SECONDS + ${DEMO_TIMEOUT:-900}))
while :; do
  phases=$(k -n "$ns" get rj -o jsonpath='{range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}')
  if grep -q '=Failed$' <<<"$phases"; then
    k -n "$ns" get rj -o wide >&2 || true
    for n in $(grep '=Failed$' <<<"$phases" | cut -d= -f1); do
      say "$n failed: $(k -n "$ns" get rj "$n" -o jsonpath='{.status.message}')"
    done
    exit 1
  fi
  if [ "$(grep -c '=Succeeded$' <<<"$phases" || true)" = "$(wc -l <<<"$names")" ]; then
    break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || die "the controller exited; see $dir/controller.log"
  if [ $SECONDS -ge $deadline ]; then
    k -n "$ns" get rj -o wide >&2 || true
    die "the examples did not complete within ${DEMO_TIMEOUT:-900}s: $(tr '\n' ' ' <<<"$phases")"
  fi
  sleep 1
done
k -n "$ns" get rj -o wide
for n in $names; do
  echo "$n $(k -n "$ns" get rj "$n" -o jsonpath='{.status.rows} {.status.output.location}')"
done
say "all ${#examples[@]} examples succeeded; reports in $pvc_dir"
