#!/usr/bin/env bash
# The test cluster for people and scripts: the real kube-apiserver, etcd,
# kube-controller-manager and kube-scheduler (built from testbed/k8s once per machine) and
# our node agent, which runs pods as local processes.
#
#   scripts/testbed.sh build                 build the control plane (cached) and the harness
#   scripts/testbed.sh up --dir DIR [--image REF=PATH[:UID]]...
#                                            start it in the background; returns once the API
#                                            server is ready and the node is Ready. DIR gets
#                                            kubeconfig, logs/, and PersistentVolume data under
#                                            pv/<namespace>/<claim>
#   scripts/testbed.sh down --dir DIR        stop everything `up` started
#
# An image without a command runs the program its --image rule names (a REF without a tag
# matches every tag of that repository); any other image fails to pull (ErrImagePull).
# Honours CARGO_TARGET_DIR. Tests use the harness crate (testbed/harness) directly.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

build() {
  "$repo/testbed/k8s/build.sh" >/dev/null
  (cd "$repo" && cargo build --quiet -p testbed --bin testbed)
}

dir_arg() {
  local dir=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --dir=*) dir=${1#--dir=}; shift ;;
      *) shift ;;
    esac
  done
  [ -n "$dir" ] || { echo "error: --dir DIR is required" >&2; usage >&2; exit 2; }
  echo "$dir"
}

up() {
  local dir
  dir=$(dir_arg "$@")
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/testbed.pid" ] && kill -0 "$(cat "$dir/testbed.pid")" 2>/dev/null; then
    echo "a testbed already runs for $dir (pid $(cat "$dir/testbed.pid")); scripts/testbed.sh down --dir $dir first" >&2
    exit 1
  fi
  build
  local bin
  bin=$("$repo/testbed/k8s/build.sh")
  rm -f "$dir/ready"
  REPORTJOB_TESTBED_BIN=$bin setsid "$target_dir/debug/testbed" up "$@" \
    >"$dir/testbed.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$dir/testbed.pid"
  while [ ! -f "$dir/ready" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: the testbed did not start; the end of $dir/testbed.log:" >&2
      tail -n 40 "$dir/testbed.log" >&2
      rm -f "$dir/testbed.pid"
      exit 1
    fi
    sleep 0.2
  done
  grep '^testbed: ' "$dir/testbed.log" >&2 || true
  echo "export KUBECONFIG=$dir/kubeconfig" >&2
}

down() {
  local dir pid
  dir=$(dir_arg "$@")
  [ -f "$dir/testbed.pid" ] || { echo "no testbed runs for $dir" >&2; return 0; }
  pid=$(cat "$dir/testbed.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$dir/testbed.pid" "$dir/ready"
  echo "testbed for $dir stopped" >&2
}

case "${1:-}" in
  build) build; "$repo/testbed/k8s/build.sh" ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
