#!/usr/bin/env bash
# Playground: the operator on kubesim (the in-repo Kubernetes API emulator) without a cluster.
# Starts kubesim with the reportjob binary mapped as the worker image, the controller, seeds the
# demo database in the local Postgres, creates the database Secret and a PVC with kubectl, applies
# the cluster examples (examples/*.yaml writing to the PVC) and watches them with
# `kubectl get rj -w`. Prints the kubeconfig path; the cluster runs until Ctrl-C.
#
#   scripts/cluster-demo.sh                     # interactive: watch, Ctrl-C stops everything
#   scripts/cluster-demo.sh --until-complete    # exit 0 once every example succeeded
#                                               # (also DEMO_NONINTERACTIVE=1)
#
# Environment:
#   REPORTJOB_BIN  the reportjob binary (default: target/release/reportjob, built if missing)
#   KUBESIM_BIN    the kubesim binary (default: next to REPORTJOB_BIN, built if missing)
#   DEMO_DIR       where the kubeconfig, kubesim's data (PVCs, pod logs) and logs go
#                  (default: a new temporary directory)
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
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "cluster-demo: error: $*" >&2; exit 1; }
say() { echo "cluster-demo: $*" >&2; }

# The binaries: a release build unless told otherwise.
reportjob_bin=${REPORTJOB_BIN:-$root/target/release/reportjob}
if [ ! -x "$reportjob_bin" ]; then
  [ -z "${REPORTJOB_BIN:-}" ] || die "REPORTJOB_BIN=$reportjob_bin is not an executable"
  say "building the release binaries (cargo build --release) ..."
  cargo build --release --quiet --bin reportjob -p reportjob
fi
kubesim_bin=${KUBESIM_BIN:-$(dirname "$reportjob_bin")/kubesim}
if [ ! -x "$kubesim_bin" ]; then
  [ -z "${KUBESIM_BIN:-}" ] || die "KUBESIM_BIN=$kubesim_bin is not an executable"
  profile=$([ "$(basename "$(dirname "$reportjob_bin")")" = release ] && echo --release || true)
  say "building kubesim (cargo build $profile -p kubesim) ..."
  cargo build $profile --quiet -p kubesim --bin kubesim
fi
command -v kubectl >/dev/null || die "kubectl is not on PATH (scripts/tools.sh installs it)"

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
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# kubesim: the image the controller names by default (ghcr.io/reportjob/reportjob:<version>) is
# matched by its last path component and runs as the Dockerfile's USER 65532.
"$kubesim_bin" --write-kubeconfig "$kubeconfig" --data-dir "$dir/kubesim-data" \
  --image "reportjob=$reportjob_bin:65532" 2>"$dir/kubesim.log" &
pids+=($!)
for _ in $(seq 1 600); do
  [ -s "$kubeconfig" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || die "kubesim exited: $(tail -n 20 "$dir/kubesim.log")"
  sleep 0.1
done
[ -s "$kubeconfig" ] || die "kubesim wrote no kubeconfig within 60s: $(tail -n 20 "$dir/kubesim.log")"
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

ns=demo
k apply -f crds/reportjob.yaml >/dev/null
k apply -f crds/reportschedule.yaml >/dev/null
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

pvc_dir="$dir/kubesim-data/pvc/$ns/reports"
cat >&2 <<EOF

  kubeconfig:   $kubeconfig
  try:          kubectl --kubeconfig $kubeconfig -n $ns get rj -o wide
                kubectl --kubeconfig $kubeconfig -n $ns describe rj orders
  reports:      $pvc_dir
  logs:         $dir/controller.log, $dir/kubesim.log, $dir/kubesim-data/logs/

EOF

if [ "$until_complete" != "1" ]; then
  say "watching the ReportJobs; Ctrl-C stops the cluster"
  # Explicit columns: kubectl decodes the objects itself (kubesim serves Tables on lists, not yet
  # on watches, where plain `get -w` would fall back to NAME and AGE).
  k -n "$ns" get rj -w \
    -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,CHUNKS:.status.progress,ROWS:.status.rows,OUTPUT:.status.output.location' &
  pids+=($!)
  while kill -0 "${pids[0]}" 2>/dev/null && kill -0 "${pids[1]}" 2>/dev/null; do
    sleep 1
  done
  die "kubesim or the controller exited; see $dir/kubesim.log and $dir/controller.log"
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
  kill -0 "${pids[0]}" 2>/dev/null || die "kubesim exited; see $dir/kubesim.log"
  kill -0 "${pids[1]}" 2>/dev/null || die "the controller exited; see $dir/controller.log"
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
