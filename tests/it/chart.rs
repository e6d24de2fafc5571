//! The Helm chart stays in step with the crate (its CRD is the generated one, its appVersion
//! the crate's) and renders, for each combination of values, what that combination must:
//! the controller's arguments and hardening, exactly the RBAC it needs, the optional objects.
//! (scripts/check-chart.sh lints the chart and validates the rendered objects' schemas.)

use std::path::Path;

use serde_json::{Value, json};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn chart_crd_is_a_byte_identical_copy_of_crds_reportjob_yaml() {
    let generated = read("crds/reportjob.yaml");
    let chart = read("charts/reportjob/files/reportjob-crd.yaml");
    assert!(
        chart == generated,
        "charts/reportjob/files/reportjob-crd.yaml differs from crds/reportjob.yaml; \
         run `cp crds/reportjob.yaml charts/reportjob/files/reportjob-crd.yaml`"
    );
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/reportjob/crds")
            .exists(),
        "a chart crds/ directory is never upgraded by Helm; the CRD is a template"
    );
}

#[test]
fn the_rendered_crd_is_the_generated_one_labelled_and_kept() {
    let generated = serde_json::to_value(reportjob::api::schema::crd()).unwrap();
    let strip = |mut crd: Value| {
        let meta = crd["metadata"].as_object_mut().unwrap();
        meta.remove("labels");
        meta.remove("annotations");
        crd
    };
    let docs = render(&[]).unwrap();
    let crds = kinds(&docs, "CustomResourceDefinition");
    assert_eq!(
        crds.len(),
        3,
        "ReportJob, ReportSchedule and ReportDatabase"
    );
    assert_eq!(
        crds[0]["metadata"]["annotations"],
        json!({"helm.sh/resource-policy": "keep"})
    );
    assert_eq!(
        crds[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    // Numbers compare by value (the template writes 1.0 as 1).
    let numbers = |v: Value| -> Value {
        serde_json::from_str(&v.to_string().replace(".0,", ",").replace(".0}", "}")).unwrap()
    };
    assert_eq!(
        numbers(strip(crds[0].clone())),
        numbers(strip(generated.clone())),
        "the chart's CRD template renders the generator's CRD"
    );
    let schedule = serde_json::to_value(reportjob::schedule::crd::crd()).unwrap();
    assert_eq!(
        numbers(strip(crds[1].clone())),
        numbers(strip(schedule)),
        "the chart's CRD template renders the generator's ReportSchedule CRD"
    );
    let database = serde_json::to_value(reportjob::database::crd::crd()).unwrap();
    assert_eq!(
        numbers(strip(crds[2].clone())),
        numbers(strip(database)),
        "the chart's CRD template renders the generator's ReportDatabase CRD"
    );
    let unkept = render(&["crds.keep=false"]).unwrap();
    let crd = kinds(&unkept, "CustomResourceDefinition")[0];
    assert!(crd["metadata"].get("annotations").is_none(), "{crd}");
    let none = render(&["crds.install=false"]).unwrap();
    assert!(kinds(&none, "CustomResourceDefinition").is_empty());
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = match serde_saphyr::from_str(&read("charts/reportjob/Chart.yaml")) {
        Ok(v) => v,
        Err(e) => panic!("Chart.yaml does not parse: {e}"),
    };
    assert_eq!(chart["name"], "reportjob");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate version (a quoted string)"
    );
}

/// The namespace the chart is rendered for.
const RELEASE_NS: &str = "reportjob-system";

/// `helm template` of the chart (CRDs included, Kubernetes 1.32) with `--set` arguments, as
/// JSON documents; or helm's error text when it refuses.
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut command = std::process::Command::new("helm");
    command
        .args(["template", "reportjob"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/reportjob"))
        .args(["--namespace", RELEASE_NS, "--include-crds"])
        .args(["--kube-version", "1.32.0"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("rendered chart does not parse: {e}\n{text}"));
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn kinds<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

/// The rules the controller needs in each namespace it watches, exactly.
fn namespaced_rules() -> Value {
    json!([
        {"apiGroups": ["reporting.dev"], "resources": ["reportjobs"], "verbs": ["list", "watch", "patch", "delete"]},
        {"apiGroups": ["reporting.dev"], "resources": ["reportjobs/status"], "verbs": ["patch"]},
        {"apiGroups": ["reporting.dev"], "resources": ["reportjobs"], "verbs": ["create"]},
        {"apiGroups": ["reporting.dev"], "resources": ["reportschedules"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["reporting.dev"], "resources": ["reportschedules/status"], "verbs": ["patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "watch", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The cluster-scoped rules (ReportDatabases and namespaces' labels): always a ClusterRole.
fn cluster_rules() -> Value {
    json!([
        {"apiGroups": ["reporting.dev"], "resources": ["reportdatabases"], "verbs": ["list", "watch"]},
        {"apiGroups": ["reporting.dev"], "resources": ["reportdatabases/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ])
}

fn lease_rule() -> Value {
    json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]})
}

/// What every combination of values must render; `combo` names the one rendered.
fn assert_renders_what_it_must(combo: &str, docs: &[Value]) {
    // Labels on every chart object (the CRD comes verbatim from crds/).
    for d in docs
        .iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition")
    {
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                d["metadata"]["labels"].get(label).is_some(),
                "{combo}: {}/{} lacks label {label}",
                d["kind"],
                name(d)
            );
        }
    }

    // The controller container.
    let deployments = kinds(docs, "Deployment");
    assert_eq!(deployments.len(), 1, "{combo}: one Deployment");
    let dep = deployments[0];
    let pod = &dep["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{combo}: one container");
    let c = &containers[0];
    let image = "ghcr.io/reportjob/reportjob:0.1.0";
    let mut want = vec![
        "controller",
        "--worker-image",
        image,
        "--stage-pods",
        STAGE_PODS_ARG,
        "--allow-service-account-override=false",
        "--allow-link-local-endpoints=false",
        "--metrics-addr",
        "0.0.0.0:8080",
        "--log-format",
        "json",
    ];
    if combo == "watchNamespaces" {
        want.extend(["--namespaces", "team-a,team-b"]);
    }
    if combo == "leaderElection-off" {
        want.push("--leader-election=false");
    } else {
        want.extend(["--lease-name", "reportjob"]);
    }
    assert_eq!(c["image"], image, "{combo}: image");
    assert_eq!(c["args"], json!(want), "{combo}: controller args");
    let env = |n: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace",
        "{combo}: POD_NAMESPACE"
    );
    assert_eq!(
        env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name",
        "{combo}: POD_NAME"
    );
    assert_eq!(env("RUST_LOG")["value"], "info", "{combo}: RUST_LOG");
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"}),
        "{combo}: liveness probe"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"}),
        "{combo}: readiness probe"
    );
    assert_eq!(
        (&c["ports"][0]["name"], &c["ports"][0]["containerPort"]),
        (&json!("metrics"), &json!(8080)),
        "{combo}: metrics port"
    );
    let (sc, psc) = (&c["securityContext"], &pod["securityContext"]);
    assert_eq!(
        (&psc["runAsNonRoot"], &psc["runAsUser"]),
        (&json!(true), &json!(65532)),
        "{combo}: pod runAsNonRoot/65532"
    );
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "{combo}: pod seccomp"
    );
    assert_eq!(
        (
            &sc["readOnlyRootFilesystem"],
            &sc["allowPrivilegeEscalation"]
        ),
        (&json!(true), &json!(false)),
        "{combo}: container fs/escalation"
    );
    assert_eq!(
        sc["capabilities"]["drop"],
        json!(["ALL"]),
        "{combo}: drop ALL"
    );
    let replicas = if combo == "replicas=2" { 2 } else { 1 };
    assert_eq!(dep["spec"]["replicas"], replicas, "{combo}: replicas");

    // RBAC: exactly the controller's rules; leases only in the release namespace; no
    // wildcards, no secrets or configmaps. The aggregated roles for people are checked apart.
    let aggregated = |r: &&Value| {
        r["metadata"]["labels"].as_object().is_some_and(|l| {
            l.keys()
                .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        })
    };
    let user_roles: Vec<&Value> = kinds(docs, "ClusterRole")
        .into_iter()
        .filter(aggregated)
        .collect();
    assert_eq!(
        user_roles.len(),
        2,
        "{combo}: reportjob-view and reportjob-edit"
    );
    assert_user_roles(&user_roles);
    let roles = kinds(docs, "Role");
    let cluster_roles: Vec<&Value> = kinds(docs, "ClusterRole")
        .into_iter()
        .filter(|r| !aggregated(r))
        .collect();
    let all_rules: Vec<&Value> = roles
        .iter()
        .chain(&cluster_roles)
        .flat_map(|r| r["rules"].as_array().unwrap())
        .collect();
    for rule in &all_rules {
        for field in ["resources", "verbs", "apiGroups"] {
            let values = rule[field].as_array().cloned().unwrap_or_default();
            assert!(!values.contains(&json!("*")), "{combo}: wildcard in {rule}");
        }
        let resources = rule["resources"].as_array().cloned().unwrap_or_default();
        assert!(
            !resources.contains(&json!("secrets")) && !resources.contains(&json!("configmaps")),
            "{combo}: secrets/configmaps in {rule}"
        );
    }
    let role = |ns: &str, n: &str| {
        roles
            .iter()
            .find(|r| r["metadata"]["namespace"] == ns && name(r) == n)
            .map(|r| r["rules"].clone())
    };
    let subjects =
        json!([{"kind": "ServiceAccount", "name": "reportjob", "namespace": RELEASE_NS}]);
    let cluster_role = |n: &str| {
        cluster_roles
            .iter()
            .find(|r| name(r) == n)
            .map(|r| r["rules"].clone())
    };
    let cluster_bindings: Vec<&str> = kinds(docs, "ClusterRoleBinding")
        .iter()
        .map(|b| b["roleRef"]["name"].as_str().unwrap_or_default())
        .collect();
    // ReportDatabases and namespaces are cluster-scoped: their rules are a ClusterRole in
    // every combination.
    assert_eq!(
        cluster_role("reportjob-databases"),
        Some(cluster_rules()),
        "{combo}: the ReportDatabase ClusterRole"
    );
    assert!(
        cluster_bindings.contains(&"reportjob-databases"),
        "{combo}: its binding"
    );
    if combo == "watchNamespaces" {
        assert!(
            cluster_roles.len() == 1 && cluster_bindings == ["reportjob-databases"],
            "{combo}: no namespaced rules in a ClusterRole(Binding) when namespaces are listed"
        );
        for ns in ["team-a", "team-b"] {
            assert_eq!(
                role(ns, "reportjob"),
                Some(namespaced_rules()),
                "{combo}: Role in {ns}"
            );
            assert!(
                kinds(docs, "RoleBinding").iter().any(
                    |b| b["metadata"]["namespace"] == ns && b["roleRef"]["name"] == "reportjob"
                ),
                "{combo}: RoleBinding in {ns}"
            );
        }
    } else {
        assert_eq!(cluster_roles.len(), 2, "{combo}: two ClusterRoles");
        assert_eq!(
            cluster_role("reportjob"),
            Some(namespaced_rules()),
            "{combo}: ClusterRole rules"
        );
        assert_eq!(
            cluster_bindings,
            ["reportjob", "reportjob-databases"],
            "{combo}: ClusterRoleBindings"
        );
    }
    for b in kinds(docs, "RoleBinding")
        .into_iter()
        .chain(kinds(docs, "ClusterRoleBinding"))
    {
        assert_eq!(b["subjects"], subjects, "{combo}: subjects of {}", name(b));
    }
    let lease_role = role(RELEASE_NS, "reportjob-leader-election");
    let lease_grants = all_rules.iter().filter(|r| ***r == lease_rule()).count();
    if combo == "leaderElection-off" {
        assert_eq!(
            lease_role, None,
            "{combo}: no lease Role without leader election"
        );
        assert_eq!(lease_grants, 0, "{combo}: leases granted");
    } else {
        assert_eq!(
            lease_role,
            Some(json!([lease_rule()])),
            "{combo}: lease Role"
        );
        assert_eq!(lease_grants, 1, "{combo}: leases granted elsewhere too");
    }

    // Optional objects.
    let expect = |kind: &str, n: usize| {
        assert_eq!(kinds(docs, kind).len(), n, "{combo}: {kind} count");
    };
    expect("PodDisruptionBudget", usize::from(combo == "replicas=2"));
    expect("ServiceMonitor", usize::from(combo == "serviceMonitor"));
    expect("PodMonitor", usize::from(combo == "monitoring"));
    expect("PrometheusRule", usize::from(combo == "monitoring"));
    expect("ConfigMap", usize::from(combo == "monitoring"));
    expect("Service", 1);
    expect("ServiceAccount", 1);
    let crds: Vec<&str> = kinds(docs, "CustomResourceDefinition")
        .into_iter()
        .map(name)
        .collect();
    assert_eq!(
        crds,
        [
            "reportjobs.reporting.dev",
            "reportschedules.reporting.dev",
            "reportdatabases.reporting.dev"
        ],
        "{combo}: CRD"
    );
}

/// `reportjob-view` reads ReportJobs and is aggregated into view, edit and admin;
/// `reportjob-edit` writes them too and is aggregated into edit and admin. Neither touches
/// the status or anything else.
fn assert_user_roles(roles: &[&Value]) {
    let role = |n: &str| *roles.iter().find(|r| name(r) == n).unwrap();
    let view = role("reportjob-view");
    assert_eq!(
        view["rules"],
        json!([{"apiGroups": ["reporting.dev"], "resources": ["reportjobs", "reportschedules", "reportdatabases"], "verbs": ["get", "list", "watch"]}])
    );
    let edit = role("reportjob-edit");
    assert_eq!(
        edit["rules"],
        json!([{"apiGroups": ["reporting.dev"], "resources": ["reportjobs", "reportschedules"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]}])
    );
    let aggregates_to = |r: &Value| -> Vec<String> {
        let mut to: Vec<String> = r["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| {
                (v == "true")
                    .then(|| k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-"))
                    .flatten()
                    .map(str::to_string)
            })
            .collect();
        to.sort();
        to
    };
    assert_eq!(aggregates_to(view), ["admin", "edit", "view"]);
    assert_eq!(aggregates_to(edit), ["admin", "edit"]);
}

#[test]
fn each_combination_of_values_renders_what_it_must() {
    // The combinations scripts/check-chart.sh also lints and validates against the schemas.
    let combinations: [(&str, &[&str]); 6] = [
        ("defaults", &[]),
        ("watchNamespaces", &["watchNamespaces={team-a,team-b}"]),
        ("serviceMonitor", &["serviceMonitor.enabled=true"]),
        ("replicas=2", &["replicas=2"]),
        ("leaderElection-off", &["leaderElection.enabled=false"]),
        (
            "monitoring",
            &[
                "podMonitor.enabled=true",
                "prometheusRule.enabled=true",
                "grafanaDashboard.enabled=true",
            ],
        ),
    ];
    for (combo, sets) in combinations {
        let docs = render(sets).unwrap_or_else(|e| panic!("{combo}: helm template failed: {e}"));
        assert_renders_what_it_must(combo, &docs);
    }
}

/// `--stage-pods` as the default values render it: the default stage pod resources.
const STAGE_PODS_ARG: &str =
    r#"{"resources":{"limits":{"memory":"256Mi"},"requests":{"cpu":"100m","memory":"64Mi"}}}"#;

/// The controller's arguments in a rendering.
fn controller_args(docs: &[Value]) -> Vec<String> {
    let dep = kinds(docs, "Deployment")[0];
    serde_json::from_value(dep["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .expect("args are strings")
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

#[test]
fn stage_pods_and_worker_policy_values_reach_the_controller() {
    use reportjob::controller::pod_settings::StagePods;
    let defaults = controller_args(&render(&[]).expect("defaults render"));
    let (config, _) = StagePods::parse(arg_after(&defaults, "--stage-pods").expect("--stage-pods"))
        .expect("the default stagePods are a valid --stage-pods");
    assert_eq!(
        config.resources,
        Some(reportjob::controller::pod_settings::default_resources()),
        "values.yaml and the controller agree on the default stage pod resources"
    );
    assert_eq!(arg_after(&defaults, "--allowed-worker-images"), None);

    let docs = render(&[
        "stagePods.nodeSelector.pool=reports",
        "stagePods.podLabels.team=analytics",
        "stagePods.serviceAccountName=stage-pods",
        "stagePods.priorityClassName=batch-low",
        "stagePods.env[0].name=SSL_CERT_FILE",
        "stagePods.env[0].value=/etc/ca/ca.crt",
        "workerPolicy.allowedImages={registry.example/reportjob:1.2,registry.example/reportjob@sha256:*}",
        "workerPolicy.allowServiceAccountOverride=true",
        "workerPolicy.allowLinkLocalEndpoints=true",
    ])
    .expect("stagePods render");
    let args = controller_args(&docs);
    let (config, settings) =
        StagePods::parse(arg_after(&args, "--stage-pods").expect("--stage-pods"))
            .expect("a valid --stage-pods");
    let pod = settings.get();
    assert_eq!(pod.node_selector["pool"], "reports");
    assert_eq!(pod.pod_labels["team"], "analytics");
    assert_eq!(pod.priority_class_name.as_deref(), Some("batch-low"));
    assert_eq!(pod.env[0].name, "SSL_CERT_FILE");
    assert_eq!(pod.env[0].value.as_deref(), Some("/etc/ca/ca.crt"));
    assert_eq!(config.service_account_name.as_deref(), Some("stage-pods"));
    assert_eq!(
        arg_after(&args, "--allowed-worker-images"),
        Some("registry.example/reportjob:1.2,registry.example/reportjob@sha256:*")
    );
    assert!(args.contains(&"--allow-service-account-override=true".to_string()));
    assert!(args.contains(&"--allow-link-local-endpoints=true".to_string()));
}

#[test]
fn several_replicas_without_leader_election_are_refused() {
    let refused = render(&["replicas=2", "leaderElection.enabled=false"])
        .expect_err("two replicas without leader election must not render");
    assert!(
        refused.contains("needs leaderElection.enabled=true"),
        "refused for another reason: {refused}"
    );
}

#[test]
fn pod_settings_of_the_controller_reach_the_deployment() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let docs = render(&[
        "imagePullSecrets[0].name=regcred",
        &format!("image.digest={digest}"),
        "priorityClassName=system-cluster-critical",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "extraArgs={--lease-duration-seconds=30}",
    ])
    .unwrap();
    let dep = kinds(&docs, "Deployment")[0];
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {
                "app.kubernetes.io/name": "reportjob", "app.kubernetes.io/instance": "reportjob"}},
        }])
    );
    let image = format!("ghcr.io/reportjob/reportjob@{digest}");
    assert_eq!(pod["containers"][0]["image"], image.as_str());
    let args = controller_args(&docs);
    assert_eq!(arg_after(&args, "--worker-image"), Some(image.as_str()));
    assert_eq!(
        args.last().map(String::as_str),
        Some("--lease-duration-seconds=30"),
        "extraArgs come last"
    );
}

/// `helm lint --strict` of the chart with `--set` arguments: whether it passed, and its output.
fn lint(sets: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new("helm");
    command
        .args(["lint", "--strict"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/reportjob"));
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("helm on PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn values_schema_refuses_a_wrong_type_and_an_unknown_key() {
    let (ok, out) = lint(&[]);
    assert!(ok, "{out}");
    let (ok, out) = lint(&["replicas=two"]);
    assert!(
        !ok && out.contains("at '/replicas': got string, want integer"),
        "{out}"
    );
    let (ok, out) = lint(&["serviceMonitor.enabeld=true"]);
    assert!(
        !ok && out.contains("at '/serviceMonitor': additional properties 'enabeld' not allowed"),
        "{out}"
    );
    let (ok, out) = lint(&["image.digest=latest"]);
    assert!(!ok && out.contains("at '/image/digest'"), "{out}");
}

/// Every key of values.yaml is declared in values.schema.json, and every declared key of a
/// closed object (additionalProperties: false) has a default in values.yaml.
#[test]
fn values_schema_and_values_yaml_name_the_same_keys() {
    let values: Value = serde_saphyr::from_str(&read("charts/reportjob/values.yaml")).unwrap();
    let schema: Value = serde_json::from_str(&read("charts/reportjob/values.schema.json")).unwrap();
    fn walk(values: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let given = values.as_object().cloned().unwrap_or_default();
        for (k, v) in &given {
            match props.get(k) {
                Some(s) => walk(v, s, &format!("{path}.{k}"), errors),
                None if closed => errors.push(format!("{path}.{k}: not in the schema")),
                None => {}
            }
        }
        for k in props.keys() {
            if closed && !given.contains_key(k) {
                errors.push(format!("{path}.{k}: no default in values.yaml"));
            }
        }
    }
    let mut errors = Vec::new();
    walk(&values, &schema, "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
}
