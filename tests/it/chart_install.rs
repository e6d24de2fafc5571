//! The chart on kubesim: its `helm template` output applied with kubectl, then a chart upgrade
//! whose CRD adds a field (served afterwards); the aggregated user roles under enforced RBAC;
//! and the alerts and dashboard naming only metrics a running controller exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::common::cluster::{Env, free_port};
use super::common::eventually;

const SYSTEM_NS: &str = "reportjob-system";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/reportjob")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `helm template` of `chart` with `--set` arguments, as JSON documents.
fn template(chart: &Path, sets: &[&str]) -> Vec<Value> {
    let mut command = Command::new("helm");
    command
        .args(["template", "reportjob"])
        .arg(chart)
        .args(["--namespace", SYSTEM_NS]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("helm on PATH");
    assert!(out.status.success(), "{}", text(&out));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap())
        .expect("the rendered chart parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The kinds the cluster serves, from discovery (`kubectl api-resources`).
fn served_kinds(env: &Env) -> BTreeSet<String> {
    let o = env.kubectl(&["api-resources", "--no-headers", "-o", "wide"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...: KIND follows true/false.
            let cells: Vec<&str> = l.split_whitespace().collect();
            let at = cells.iter().position(|c| *c == "true" || *c == "false")?;
            cells.get(at + 1).map(|k| k.to_string())
        })
        .collect()
}

/// Applies the documents with kubectl; kinds kubesim does not serve (yet) are left out, and
/// only those the chart renders for the controller's own pod (Deployment, Service, PDB).
/// Returns kubectl's output.
fn apply_rendered(env: &Env, docs: &[Value], file: &str) -> String {
    let served = served_kinds(env);
    let (kept, skipped): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|d| served.contains(d["kind"].as_str().unwrap_or_default()));
    for d in &skipped {
        let kind = d["kind"].as_str().unwrap_or_default();
        assert!(
            ["Deployment", "Service", "PodDisruptionBudget"].contains(&kind),
            "kubesim does not serve {kind}, which the chart renders"
        );
    }
    let path = env.dir.path().join(file);
    let body: Vec<String> = kept.iter().map(|d| d.to_string()).collect();
    std::fs::write(&path, body.join("\n---\n")).unwrap();
    let o = env.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the chart under `dir` whose CRD has one more spec field, `reviewer` (the next
/// chart version, as far as the CRD goes).
fn next_chart(dir: &Path) -> PathBuf {
    let next = dir.join("chart-next");
    copy_dir(&chart_dir(), &next);
    let crd_file = next.join("files/reportjob-crd.yaml");
    let crd = std::fs::read_to_string(&crd_file).unwrap();
    let anchor = "            properties:\n              chunking:\n";
    assert_eq!(crd.matches(anchor).count(), 1, "spec.properties found once");
    let crd = crd.replace(
        anchor,
        "            properties:\n              reviewer:\n                description: Who reviews the report.\n                type: string\n              chunking:\n",
    );
    std::fs::write(&crd_file, crd).unwrap();
    next
}

/// A ReportJob in `default` with `spec.reviewer: alice` (a field only the next CRD has).
fn reviewed_reportjob(dir: &Path) -> PathBuf {
    let file = dir.join("reviewed.yaml");
    std::fs::write(
        &file,
        "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {name: reviewed, namespace: default}\n\
         spec:\n  source: {connectionSecretRef: {name: db}, table: orders, keyColumn: id}\n  \
         output: {destination: {pvc: {claimName: reports, path: o.csv}}}\n  reviewer: alice\n",
    )
    .unwrap();
    file
}

/// `helm ARGS CHART --kubeconfig <kubesim> -n reportjob-system`.
fn helm(env: &Env, args: &[&str], chart: &Path) -> String {
    let out = Command::new("helm")
        .args(args)
        .arg(chart)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["-n", SYSTEM_NS])
        .output()
        .expect("helm on PATH");
    assert!(out.status.success(), "helm {args:?}: {}", text(&out));
    text(&out)
}

/// `helm install`, then `helm upgrade` to a chart whose CRD has a new field: the upgrade
/// updates the CRD (a `crds/` directory would not be), and `helm uninstall` keeps it.
#[tokio::test]
async fn helm_upgrade_upgrades_the_crd_and_uninstall_keeps_it() {
    let env = Env::bare().await;
    // The controller's image is not run here (nothing waits for it): only the CRD matters.
    helm(
        &env,
        &["install", "reportjob", "--create-namespace"],
        &chart_dir(),
    );
    let reviewed = reviewed_reportjob(env.dir.path());
    let o = env.kubectl(&["apply", "-f", reviewed.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains(r#"unknown field "spec.reviewer""#),
        "{}",
        text(&o)
    );
    let next = next_chart(env.dir.path());
    helm(&env, &["upgrade", "reportjob"], &next);
    let o = env.kubectl(&["apply", "-f", reviewed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.kubectl(&[
        "get",
        "rj",
        "reviewed",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.reviewer}",
    ]);
    assert_eq!(text(&o), "alice");

    let out = Command::new("helm")
        .args(["uninstall", "reportjob", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .args(["-n", SYSTEM_NS])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let o = env.kubectl(&["get", "rj", "reviewed", "-n", "default", "-o", "name"]);
    assert_eq!(
        text(&o),
        "reportjob.reporting.dev/reviewed\n",
        "the CRD and its ReportJobs are kept"
    );
    let o = env.kubectl(&["get", "clusterrole", "reportjob-edit", "-o", "name"]);
    assert!(
        !o.status.success(),
        "the rest of the release is gone: {}",
        text(&o)
    );
}

#[tokio::test]
async fn helm_template_applies_and_an_upgrade_serves_a_new_crd_field() {
    let env = Env::bare().await;
    let o = env.kubectl(&["create", "namespace", SYSTEM_NS]);
    assert!(o.status.success(), "{}", text(&o));
    let out = apply_rendered(&env, &template(&chart_dir(), &[]), "v1.json");
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/reportjobs.reporting.dev created"
        ),
        "{out}"
    );
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/reportjob-edit created"),
        "{out}"
    );
    let o = env.kubectl(&[
        "get",
        "crd",
        "reportjobs.reporting.dev",
        "-o",
        "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(text(&o), "keep");

    let rj = |extra: &str| {
        format!(
            "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {{name: orders, namespace: default}}\n\
             spec:\n  source: {{connectionSecretRef: {{name: db}}, table: orders, keyColumn: id}}\n  \
             output: {{destination: {{pvc: {{claimName: reports, path: o.csv}}}}}}\n{extra}"
        )
    };
    let file = env.dir.path().join("rj.yaml");
    std::fs::write(&file, rj("  reviewer: alice\n")).unwrap();
    let o = env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains(r#"unknown field "spec.reviewer""#),
        "{}",
        text(&o)
    );

    // The next chart version's CRD has spec.reviewer; applying its rendering (what `helm
    // upgrade` sends) updates the CRD, and the field is served.
    let next = next_chart(env.dir.path());
    let out = apply_rendered(&env, &template(&next, &[]), "v2.json");
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/reportjobs.reporting.dev configured"
        ),
        "{out}"
    );
    let o = env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.kubectl(&[
        "get",
        "rj",
        "orders",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.reviewer}",
    ]);
    assert_eq!(text(&o), "alice");
}

/// Runs kubectl as `user` (impersonated: kubesim enforces RBAC for it).
fn kubectl_as(env: &Env, user: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--as", user];
    all.extend_from_slice(args);
    let o = env.kubectl(&all);
    (o.status.success(), text(&o))
}

#[tokio::test]
async fn an_edit_user_manages_reportjobs_in_one_namespace_and_nothing_more() {
    let env = Env::bare().await;
    for ns in [SYSTEM_NS, "team-a", "team-b"] {
        let o = env.kubectl(&["create", "namespace", ns]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let docs = template(&chart_dir(), &[]);
    let wanted: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            d["kind"] == "CustomResourceDefinition"
                || ["reportjob-view", "reportjob-edit"]
                    .contains(&d["metadata"]["name"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(wanted.len(), 4, "the two CRDs and the two user roles");
    apply_rendered(&env, &wanted, "roles.json");
    // The users are bound to the cluster's own edit and view roles, which aggregate the
    // chart's roles through their labels.
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let o = env.kubectl(&[
            "create",
            "rolebinding",
            user,
            "-n",
            "team-a",
            "--clusterrole",
            role,
            "--user",
            user,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let rj = env.dir.path().join("rj.yaml");
    std::fs::write(
        &rj,
        "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {name: orders}\nspec:\n  \
         source: {connectionSecretRef: {name: db}, table: orders, keyColumn: id}\n  \
         output: {destination: {pvc: {claimName: reports, path: o.csv}}}\n",
    )
    .unwrap();
    let rj = rj.to_str().unwrap();

    let (ok, out) = kubectl_as(&env, "alice", &["apply", "-n", "team-a", "-f", rj]);
    assert!(
        ok && out.contains("reportjob.reporting.dev/orders created"),
        "{out}"
    );
    let (ok, out) = kubectl_as(&env, "alice", &["get", "rj", "-n", "team-a", "-o", "name"]);
    assert!(ok && out == "reportjob.reporting.dev/orders\n", "{out}");
    let (ok, out) = kubectl_as(&env, "bob", &["get", "rj", "-n", "team-a", "-o", "name"]);
    assert!(ok && out == "reportjob.reporting.dev/orders\n", "{out}");

    let forbidden = [
        (
            "bob",
            vec!["delete", "rj", "orders", "-n", "team-a"],
            r#"reportjobs.reporting.dev "orders" is forbidden: User "bob" cannot delete resource "reportjobs" in API group "reporting.dev" in the namespace "team-a""#,
        ),
        (
            "alice",
            vec!["apply", "-n", "team-b", "-f", rj],
            r#"User "alice" cannot get resource "reportjobs" in API group "reporting.dev" in the namespace "team-b""#,
        ),
        (
            "alice",
            vec!["get", "rj", "-A"],
            r#"User "alice" cannot list resource "reportjobs" in API group "reporting.dev" at the cluster scope"#,
        ),
        (
            "alice",
            vec![
                "patch",
                "rj",
                "orders",
                "-n",
                "team-a",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Succeeded"}}"#,
            ],
            r#"User "alice" cannot get resource "reportjobs/status" in API group "reporting.dev" in the namespace "team-a""#,
        ),
    ];
    for (user, args, want) in forbidden {
        let (ok, out) = kubectl_as(&env, user, &args);
        assert!(
            !ok && out.contains(want),
            "{user} {args:?}: want {want:?}, got {out}"
        );
    }

    let (ok, out) = kubectl_as(&env, "alice", &["delete", "rj", "orders", "-n", "team-a"]);
    assert!(
        ok && out.contains(r#"reportjob.reporting.dev "orders" deleted"#),
        "{out}"
    );
}

/// The sample names a Prometheus text exposition can carry, from its `# TYPE` lines.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    names
}

/// Every `reportjob_*` metric name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("reportjob_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn metric_names_are_read_from_types_and_queries() {
    let text = "# HELP reportjob_leader x\n# TYPE reportjob_leader gauge\n# TYPE reportjob_reconciles counter\n# TYPE reportjob_reconcile_duration_seconds histogram\n";
    assert_eq!(
        exported_names(text).into_iter().collect::<Vec<_>>(),
        [
            "reportjob_leader",
            "reportjob_reconcile_duration_seconds_bucket",
            "reportjob_reconcile_duration_seconds_count",
            "reportjob_reconcile_duration_seconds_sum",
            "reportjob_reconciles_total"
        ]
    );
    assert_eq!(
        metric_names("sum(rate(reportjob_a_total[5m])) / max(reportjob_b{x=\"1\"})")
            .into_iter()
            .collect::<Vec<_>>(),
        ["reportjob_a_total", "reportjob_b"]
    );
}

#[tokio::test]
async fn alerts_and_dashboard_use_only_metrics_the_controller_exports() {
    let mut env = Env::bare().await;
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(env.client.clone());
    crds.create(&Default::default(), &reportjob::api::schema::crd())
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    env.start_controller(&[
        "--lease-namespace",
        "default",
        "--lease-duration-seconds",
        "3",
        "--metrics-addr",
        &addr,
    ]);
    // A family appears in /metrics once it has a sample: a ReportJob the controller fails as
    // InvalidSpec (a table name of four parts) after a reconcile error (a 500 on its first patch).
    env.cluster
        .faults()
        .fail_next("patch", "reportjobs", 1, 500);
    let bad: reportjob::api::ReportJob = serde_saphyr::from_str(
        &super::common::cluster::report("bad", "a.b.c.d", "bad.csv").build_yaml(),
    )
    .unwrap();
    env.rjs("default")
        .create(&Default::default(), &bad)
        .await
        .unwrap();
    let url = format!("http://{addr}/metrics");
    let metrics = eventually("the controller's /metrics with every family", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let all = [
            "reportjob_leader 1",
            "reportjob_reportjobs{phase=\"Failed\"} 1",
            "reportjob_reconcile_errors_total{",
            "reportjob_reconciles_total{",
        ]
        .iter()
        .all(|line| body.contains(line));
        all.then_some(body)
    })
    .await;
    let exported = exported_names(&metrics);
    assert_eq!(exported.len(), 10, "{metrics}");

    let docs = template(
        &chart_dir(),
        &[
            "prometheusRule.enabled=true",
            "grafanaDashboard.enabled=true",
        ],
    );
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").unwrap();
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        [
            "ReportJobFailed",
            "ReportJobStuck",
            "ReportJobNoProgress",
            "ReportJobReconcileErrors",
            "ReportJobLeaderMissing"
        ]
    );
    let exprs: String = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}\n", r["expr"].as_str().unwrap()))
        .collect();
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a ConfigMap labelled grafana_dashboard: \"1\"");
    let board: Value =
        serde_json::from_str(dashboard["data"]["reportjob.json"].as_str().unwrap()).unwrap();
    let queries: String = board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| format!("{}\n", t["expr"].as_str().unwrap()))
        .collect();
    for (what, text) in [("alerts", &exprs), ("dashboard", &queries)] {
        let used = metric_names(text);
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} use metrics the controller does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    assert_eq!(metric_names(&exprs).len(), 4, "{exprs}");
    assert_eq!(
        metric_names(&queries),
        exported,
        "the dashboard shows every metric the controller exports"
    );
}
