#!/usr/bin/env bash
# Writes go.mod's replace block from k8s.io/kubernetes's own go.mod: that module requires
# each staging module (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces it with a
# path inside its repository, which a module that imports it cannot follow. Each one is
# replaced here with its published release (v0.<minor>.<patch> for v1.<minor>.<patch>).
# Run it after changing the kubernetes version in go.mod; never by hand.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local
version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod | head -n 1)
version=${version:-${1:?usage: sync-replaces.sh [v1.X.Y] (or a go.mod that requires k8s.io/kubernetes)}}
staging_version="v0.${version#v1.}"
upstream_mod=$(go mod download -json "k8s.io/kubernetes@$version" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
modules=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$upstream_mod" | sort -u)
[ -n "$modules" ] || { echo "no staging replaces found in $upstream_mod" >&2; exit 1; }
for m in $modules; do
  go mod edit -replace "$m=$m@$staging_version"
done
echo "replaced $(wc -w <<<"$modules") staging modules with $staging_version (from k8s.io/kubernetes $version)" >&2
