#!/usr/bin/env bash
# Builds the test cluster's control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) and a kubectl of the same release from this Go module into a cache
# outside the repository, keyed by the module's go.mod and go.sum and this script, and
# prints the directory holding the binaries. A second call with the same inputs builds
# nothing; GOMODCACHE and GOCACHE stay where Go keeps them.
#   REPORTJOB_TESTBED_CACHE  the cache root (default ~/.cache/reportjob-testbed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
cache_root=${REPORTJOB_TESTBED_CACHE:-$HOME/.cache/reportjob-testbed}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go" "$here/build.sh" | sha256sum | cut -c1-16)
bin="$cache_root/$key/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
complete=1
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || complete=0; done
if [ "$complete" = 1 ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "error: the test cluster is built with Go (go 1.26 or newer on PATH)" >&2; exit 1; }
k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod" | head -n 1)
[[ "$k8s_version" =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "error: no k8s.io/kubernetes v1.X.Y in $here/go.mod" >&2; exit 1; }
minor=${BASH_REMATCH[1]}
# What `kubectl version` and /version report (the variables Kubernetes' own build sets).
ldflags="-s -w"
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
done
tmp="$cache_root/$key/bin.partial.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "building the control plane ($k8s_version) into $bin; the first build takes a while ..." >&2
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  ./cmd/etcd) >&2
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
