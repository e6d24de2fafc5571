//! The chart on the real control plane (kube-apiserver with discovery, CRD schema validation and
//! the RBAC authorizer; kube-controller-manager's clusterrole-aggregation controller): its `helm
//! template` output applied with kubectl, every rendered object accepted, then the rendering of
//! a chart whose CRD adds a field (served once the API server has taken the new schema); `helm
//! install` taking over the CRDs the cluster already has, `helm upgrade` upgrading them and
//! `helm uninstall` keeping them and their ReportJobs; the chart's user roles aggregated into
//! the built-in `view`, `edit` and `admin` roles, and what users bound to `edit` or `view` in
//! one namespace may do; and the alerts and dashboard naming only metrics a running controller
//! exports. The chart's CRDs are the ones every test of the binary uses, and its ClusterRoles
//! are cluster-scoped: the tests that change them hold the cluster-scoped lock and, when they
//! end, put back the committed `crds/*.yaml` and delete the ClusterRoles. Nothing the chart
//! renders runs here (its image is one the node agent maps to no program).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::Api;
use serde_json::Value;

use super::common::free_port;
use super::common::testbed::{Env, Fault, cluster_scoped_lock, report};
use super::common::{PATIENCE, eventually, eventually_blocking};

/// Where `helm template` output goes when no test namespace is involved (only cluster-scoped
/// objects of it are applied).
const SYSTEM_NS: &str = "reportjob-system";

/// The chart's image as a `--set`: a reference the node agent maps to no program, so the
/// rendered Deployment and uninstall-hook Job are created and validated but never run a process
/// on the shared node. (The default, `ghcr.io/reportjob/reportjob`, maps to the binary under
/// test, and with the default values its controller would watch, and its hook delete the
/// ReportJobs of, every namespace of the cluster.)
const NOT_RUN: &str = "image.repository=registry.invalid/not-run";

const REPORTJOB_CRD: &str = "reportjobs.reporting.dev";
const SCHEDULE_CRD: &str = "reportschedules.reporting.dev";
const DATABASE_CRD: &str = "reportdatabases.reporting.dev";

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

/// `helm template` of `chart` for a release in `ns` with `--set` arguments, as JSON documents.
fn template(chart: &Path, ns: &str, sets: &[&str]) -> Vec<Value> {
    let mut command = Command::new("helm");
    command
        .args(["template", "reportjob"])
        .arg(chart)
        .args(["--namespace", ns]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("helm on PATH");
    assert!(out.status.success(), "{}", text(&out));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap())
        .expect("the rendered chart parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn is_crd(doc: &Value) -> bool {
    doc["kind"] == "CustomResourceDefinition"
}

/// How kubectl names a rendered object in what it prints: `kind[.group]/name`.
fn kubectl_name(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap().to_lowercase();
    let name = doc["metadata"]["name"].as_str().unwrap();
    match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
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

/// Applies the documents with kubectl (every kind they have must be served); returns kubectl's
/// output.
fn apply_rendered(env: &Env, docs: &[Value], file: &str) -> String {
    let served = served_kinds(env);
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        assert!(
            served.contains(kind),
            "the cluster does not serve {kind}, which the chart renders"
        );
    }
    let path = env.dir.path().join(file);
    let body: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
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

/// A ReportJob `name` in `ns` with `spec.reviewer: alice` (a field only the next CRD has),
/// written under `dir`.
fn reviewed_reportjob(dir: &Path, ns: &str, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  source: {{connectionSecretRef: {{name: db}}, table: orders, keyColumn: id}}\n  \
             output: {{destination: {{pvc: {{claimName: reports, path: o.csv}}}}}}\n  reviewer: alice\n"
        ),
    )
    .unwrap();
    file
}

const UNKNOWN_REVIEWER: &str = r#"unknown field "spec.reviewer""#;

/// Whether the API server serves `spec.reviewer` now: a server-side dry run (strict field
/// validation, as kubectl does by default; nothing is stored) of a ReportJob with it is
/// taken, or refused for that field. Any other answer is an error.
fn reviewer_served(kubeconfig: &Path, dir: &Path) -> Result<bool, String> {
    let probe = reviewed_reportjob(dir, "default", "reviewer-probe");
    let o = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["create", "--dry-run=server", "-o", "name", "-f"])
        .arg(&probe)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(true)
    } else if text(&o).contains(UNKNOWN_REVIEWER) {
        Ok(false)
    } else {
        Err(text(&o))
    }
}

/// Puts back what a test changed in the cluster's shared objects: the CRDs, replaced whole by
/// the committed `crds/*.yaml` (so no field, label or annotation of a chart's stays), and the
/// other objects a chart rendering made, deleted (the CRDs never: that would delete every
/// ReportJob of every test). [`Restore::finish`] does it at the end of the test and waits until
/// the committed schema is served; on drop, when the test failed, it is done without panicking.
/// Declared after the cluster-scoped lock, so done before the lock is released.
struct Restore {
    kubeconfig: PathBuf,
    dir: PathBuf,
    namespace: String,
    crds: bool,
    delete: Vec<String>,
    done: bool,
}

impl Restore {
    fn new(env: &Env, namespace: &str, crds: bool) -> Restore {
        Restore {
            kubeconfig: env.kubeconfig.clone(),
            dir: env.dir.path().to_path_buf(),
            namespace: namespace.to_string(),
            crds,
            delete: Vec::new(),
            done: false,
        }
    }

    /// Deletes, at the end, every object of `docs` but the CRDs.
    fn delete_rendered(&mut self, docs: &[Value]) {
        self.delete
            .extend(docs.iter().filter(|d| !is_crd(d)).map(kubectl_name));
    }

    fn kubectl(&self, args: &[&str]) -> Result<(), String> {
        let o = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("kubectl {args:?}: {}", text(&o)))
        }
    }

    fn run(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        if self.crds {
            let root = env!("CARGO_MANIFEST_DIR");
            let replaced = self.kubectl(&[
                "replace",
                "-f",
                &format!("{root}/crds/reportjob.yaml"),
                "-f",
                &format!("{root}/crds/reportschedule.yaml"),
                "-f",
                &format!("{root}/crds/reportdatabase.yaml"),
            ]);
            failed.extend(replaced.err());
        }
        if !self.delete.is_empty() {
            let mut args = vec!["-n", &self.namespace, "delete", "--ignore-not-found"];
            args.extend(self.delete.iter().map(String::as_str));
            failed.extend(self.kubectl(&args).err());
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }

    fn finish(mut self) {
        self.run().unwrap();
        if self.crds {
            eventually_blocking("the committed CRD schema to be served again", || {
                (!reviewer_served(&self.kubeconfig, &self.dir).unwrap()).then_some(())
            });
            for crd in [REPORTJOB_CRD, SCHEDULE_CRD, DATABASE_CRD] {
                let o = Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&self.kubeconfig)
                    .args(["get", "crd", crd, "-o", "json"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", text(&o));
                let crd: Value = serde_json::from_slice(&o.stdout).unwrap();
                // (Other tests may apply the committed CRDs with kubectl meanwhile, which adds
                // its last-applied annotation: only the chart's own metadata is checked.)
                let chart_keys: Vec<&String> = ["labels", "annotations"]
                    .iter()
                    .filter_map(|m| crd["metadata"][m].as_object())
                    .flat_map(|m| m.keys())
                    .filter(|k| k.contains("helm.sh") || k.starts_with("app.kubernetes.io/"))
                    .collect();
                assert!(
                    chart_keys.is_empty(),
                    "the CRDs keep no chart label or annotation: {chart_keys:?}"
                );
            }
        }
        self.done = true;
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = self.run() {
            eprintln!("warning: the cluster's shared objects were not all put back: {e}");
        }
        if self.crds {
            let served = super::common::poll_blocking(PATIENCE, || {
                (reviewer_served(&self.kubeconfig, &self.dir) == Ok(false)).then_some(())
            });
            if served.is_none() {
                eprintln!("warning: the committed CRD schema is still not served");
            }
        }
    }
}

/// `helm ARGS CHART --set SETS... --kubeconfig <admin> -n ns`: whether it succeeded, and what
/// it printed.
fn helm(env: &Env, ns: &str, args: &[&str], chart: Option<&Path>, sets: &[&str]) -> (bool, String) {
    let mut command = Command::new("helm");
    command.args(args);
    if let Some(chart) = chart {
        command.arg(chart);
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["-n", ns])
        .output()
        .expect("helm on PATH");
    (out.status.success(), text(&out))
}

fn helm_ok(env: &Env, ns: &str, args: &[&str], chart: Option<&Path>, sets: &[&str]) -> String {
    let (ok, out) = helm(env, ns, args, chart, sets);
    assert!(ok, "helm {args:?}: {out}");
    out
}

/// `helm install`, then `helm upgrade` to a chart whose CRD has a new field: the upgrade
/// updates the CRD (a `crds/` directory would not be), and `helm uninstall` keeps it.
#[tokio::test]
async fn helm_upgrade_upgrades_the_crd_and_uninstall_keeps_it() {
    let _lock = cluster_scoped_lock().await;
    let mut env = Env::start().await;
    let system = env.namespace("reportjob-system").await;
    let tenant = env.namespace("reports").await;
    // The chart's image does not run (nothing here waits for it: only the CRD matters), so
    // its uninstall hook could not run either: it is left out, and the ReportJobs stay.
    let sets = [NOT_RUN, "uninstall.deleteReportJobs=false"];
    let mut restore = Restore::new(&env, system, true);
    restore.delete_rendered(&template(&chart_dir(), system, &sets));

    // The cluster has the CRDs already (the suite's, as `reportjob crd | kubectl apply` makes
    // them): Helm does not take over objects it did not make...
    let (ok, out) = helm(
        &env,
        system,
        &["install", "reportjob"],
        Some(&chart_dir()),
        &sets,
    );
    assert!(
        !ok && out.contains(&format!(
            r#"CustomResourceDefinition "{REPORTJOB_CRD}" in namespace "" exists and cannot be imported into the current release: invalid ownership metadata"#
        )),
        "{out}"
    );
    // ...until they carry its ownership label and annotations.
    let o = env.kubectl(&[
        "label",
        "crd",
        REPORTJOB_CRD,
        SCHEDULE_CRD,
        DATABASE_CRD,
        "app.kubernetes.io/managed-by=Helm",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let release_ns = format!("meta.helm.sh/release-namespace={system}");
    let o = env.kubectl(&[
        "annotate",
        "crd",
        REPORTJOB_CRD,
        SCHEDULE_CRD,
        DATABASE_CRD,
        "meta.helm.sh/release-name=reportjob",
        &release_ns,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    helm_ok(
        &env,
        system,
        &["install", "reportjob"],
        Some(&chart_dir()),
        &sets,
    );
    let o = env.kubectl(&[
        "get",
        "crd",
        REPORTJOB_CRD,
        "-o",
        "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(text(&o), "keep");

    let reviewed = reviewed_reportjob(env.dir.path(), tenant, "reviewed");
    let o = env.kubectl(&["apply", "-f", reviewed.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains(UNKNOWN_REVIEWER),
        "{}",
        text(&o)
    );
    // Helm applies server-side: the CRDs' fields it took over stay owned by whoever applied
    // them before too (the suite; a restore of an earlier test), so an upgrade that changes
    // them conflicts, until Helm is told to take them.
    let next = next_chart(env.dir.path());
    let (ok, out) = helm(&env, system, &["upgrade", "reportjob"], Some(&next), &sets);
    assert!(
        !ok && out.contains(&format!(
            "UPGRADE FAILED: conflict occurred while applying object /{REPORTJOB_CRD} apiextensions.k8s.io/v1, Kind=CustomResourceDefinition: Apply failed with"
        )) && out.contains(": .spec.versions"),
        "{out}"
    );
    helm_ok(
        &env,
        system,
        &["upgrade", "reportjob", "--force-conflicts"],
        Some(&next),
        &sets,
    );
    // The API server serves a CRD's new schema once it has rebuilt the kind's handler.
    eventually_blocking("the upgraded CRD's new field to be served", || {
        reviewer_served(&env.kubeconfig, env.dir.path())
            .unwrap()
            .then_some(())
    });
    let o = env.kubectl(&["apply", "-f", reviewed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.kubectl(&[
        "get",
        "rj",
        "reviewed",
        "-n",
        tenant,
        "-o",
        "jsonpath={.spec.reviewer}",
    ]);
    assert_eq!(text(&o), "alice");

    let out = helm_ok(&env, system, &["uninstall", "reportjob"], None, &[]);
    assert!(out.contains(r#"release "reportjob" uninstalled"#), "{out}");
    let o = env.kubectl(&["get", "rj", "reviewed", "-n", tenant, "-o", "name"]);
    assert_eq!(
        text(&o),
        "reportjob.reporting.dev/reviewed\n",
        "the CRD and its ReportJobs are kept"
    );
    for role in ["reportjob-edit", "reportjob-view", "reportjob"] {
        let o = env.kubectl(&["get", "clusterrole", role, "-o", "name"]);
        assert!(
            !o.status.success() && text(&o).contains("NotFound"),
            "the rest of the release is gone: {}",
            text(&o)
        );
    }
    let o = env.kubectl(&["-n", tenant, "delete", "rj", "reviewed"]);
    assert!(o.status.success(), "{}", text(&o));
    restore.finish();
}

#[tokio::test]
async fn helm_template_applies_and_an_upgrade_serves_a_new_crd_field() {
    let _lock = cluster_scoped_lock().await;
    let mut env = Env::start().await;
    let system = env.namespace("reportjob-system").await;
    let tenant = env.namespace("reports").await;
    let v1 = template(&chart_dir(), system, &[NOT_RUN]);
    let mut restore = Restore::new(&env, system, true);
    restore.delete_rendered(&v1);
    let out = apply_rendered(&env, &v1, "v1.json");
    // Every object is taken as rendered; the CRDs, already there (the suite's), take the
    // chart's labels and keep annotation.
    for doc in &v1 {
        let want = if is_crd(doc) { "configured" } else { "created" };
        assert!(
            out.contains(&format!("{} {want}\n", kubectl_name(doc))),
            "{} not {want}: {out}",
            kubectl_name(doc)
        );
    }
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/reportjob-edit created"),
        "{out}"
    );
    let o = env.kubectl(&[
        "get",
        "crd",
        REPORTJOB_CRD,
        "-o",
        "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(text(&o), "keep");

    let file = reviewed_reportjob(env.dir.path(), tenant, "orders");
    let o = env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains(UNKNOWN_REVIEWER),
        "{}",
        text(&o)
    );

    // The next chart version's CRD has spec.reviewer; applying its rendering (what `helm
    // upgrade` sends) updates that CRD alone, and the field is served.
    let next = next_chart(env.dir.path());
    let v2 = template(&next, system, &[NOT_RUN]);
    let out = apply_rendered(&env, &v2, "v2.json");
    for doc in &v2 {
        let want = if doc["metadata"]["name"] == REPORTJOB_CRD {
            "configured"
        } else {
            "unchanged"
        };
        assert!(
            out.contains(&format!("{} {want}\n", kubectl_name(doc))),
            "{} not {want}: {out}",
            kubectl_name(doc)
        );
    }
    eventually_blocking("the new CRD field to be served", || {
        reviewer_served(&env.kubeconfig, env.dir.path())
            .unwrap()
            .then_some(())
    });
    let o = env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.kubectl(&[
        "get",
        "rj",
        "orders",
        "-n",
        tenant,
        "-o",
        "jsonpath={.spec.reviewer}",
    ]);
    assert_eq!(text(&o), "alice");
    let o = env.kubectl(&["-n", tenant, "delete", "rj", "orders"]);
    assert!(o.status.success(), "{}", text(&o));
    restore.finish();
}

/// Runs kubectl as `user` (impersonated by the admin, who may: the authorizer decides for
/// `user`, in the group `system:authenticated`).
fn kubectl_as(env: &Env, user: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--as", user];
    all.extend_from_slice(args);
    let o = env.kubectl(&all);
    (o.status.success(), text(&o))
}

#[tokio::test]
async fn an_edit_user_manages_reportjobs_in_one_namespace_and_nothing_more() {
    let _lock = cluster_scoped_lock().await;
    let mut env = Env::start().await;
    let team_a = env.namespace("team-a").await;
    let team_b = env.namespace("team-b").await;
    let docs = template(&chart_dir(), SYSTEM_NS, &[]);
    let wanted: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            ["reportjob-view", "reportjob-edit"]
                .contains(&d["metadata"]["name"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(wanted.len(), 2, "the two user roles");
    let mut restore = Restore::new(&env, SYSTEM_NS, false);
    restore.delete_rendered(&wanted);
    let out = apply_rendered(&env, &wanted, "roles.json");
    for doc in &wanted {
        assert!(
            out.contains(&format!("{} created\n", kubectl_name(doc))),
            "{out}"
        );
    }

    // The clusterrole-aggregation controller copies their rules into the built-in roles
    // their labels select: view into view, edit and admin; edit into edit and admin.
    let rules_of = |name: &str| -> PolicyRule {
        let doc = wanted
            .iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap();
        let rules: Vec<PolicyRule> = serde_json::from_value(doc["rules"].clone()).unwrap();
        assert_eq!(rules.len(), 1, "{name}: {rules:?}");
        rules.into_iter().next().unwrap()
    };
    let (view_rule, edit_rule) = (rules_of("reportjob-view"), rules_of("reportjob-edit"));
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    for (role, want) in [
        ("view", vec![&view_rule]),
        ("edit", vec![&view_rule, &edit_rule]),
        ("admin", vec![&view_rule, &edit_rule]),
    ] {
        let rules = eventually(&format!("the chart's rules aggregated into {role}"), || {
            let cluster_roles = cluster_roles.clone();
            let want = want.clone();
            async move {
                let rules = cluster_roles
                    .get(role)
                    .await
                    .ok()?
                    .rules
                    .unwrap_or_default();
                want.iter().all(|r| rules.contains(r)).then_some(rules)
            }
        })
        .await;
        if role == "view" {
            assert!(
                !rules.contains(&edit_rule),
                "view got the edit rules: {rules:?}"
            );
        }
    }

    // The users are bound to the cluster's own edit and view roles.
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let o = env.kubectl(&[
            "create",
            "rolebinding",
            user,
            "-n",
            team_a,
            "--clusterrole",
            role,
            "--user",
            user,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    // The authorizer sees the bindings through its informers, a moment after they are made.
    for (user, verb) in [("alice", "create"), ("bob", "list")] {
        eventually(
            &format!("{user} to be allowed to {verb} ReportJobs"),
            || async {
                let (_, out) = kubectl_as(
                    &env,
                    user,
                    &[
                        "auth",
                        "can-i",
                        verb,
                        "reportjobs.reporting.dev",
                        "-n",
                        team_a,
                    ],
                );
                (out == "yes\n").then_some(())
            },
        )
        .await;
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

    let (ok, out) = kubectl_as(&env, "alice", &["apply", "-n", team_a, "-f", rj]);
    assert!(
        ok && out.contains("reportjob.reporting.dev/orders created"),
        "{out}"
    );
    let (ok, out) = kubectl_as(&env, "alice", &["get", "rj", "-n", team_a, "-o", "name"]);
    assert!(ok && out == "reportjob.reporting.dev/orders\n", "{out}");
    let (ok, out) = kubectl_as(&env, "bob", &["get", "rj", "-n", team_a, "-o", "name"]);
    assert!(ok && out == "reportjob.reporting.dev/orders\n", "{out}");

    let forbidden = [
        (
            "bob",
            vec!["delete", "rj", "orders", "-n", team_a],
            format!(
                r#"reportjobs.reporting.dev "orders" is forbidden: User "bob" cannot delete resource "reportjobs" in API group "reporting.dev" in the namespace "{team_a}""#
            ),
        ),
        (
            "alice",
            vec!["apply", "-n", team_b, "-f", rj],
            format!(
                r#"User "alice" cannot get resource "reportjobs" in API group "reporting.dev" in the namespace "{team_b}""#
            ),
        ),
        (
            "alice",
            vec!["get", "rj", "-A"],
            r#"User "alice" cannot list resource "reportjobs" in API group "reporting.dev" at the cluster scope"#
                .to_string(),
        ),
        (
            "alice",
            vec![
                "patch",
                "rj",
                "orders",
                "-n",
                team_a,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Succeeded"}}"#,
            ],
            format!(
                r#"User "alice" cannot get resource "reportjobs/status" in API group "reporting.dev" in the namespace "{team_a}""#
            ),
        ),
    ];
    for (user, args, want) in forbidden {
        let (ok, out) = kubectl_as(&env, user, &args);
        assert!(
            !ok && out.contains(&want),
            "{user} {args:?}: want {want:?}, got {out}"
        );
    }

    let (ok, out) = kubectl_as(&env, "alice", &["delete", "rj", "orders", "-n", team_a]);
    assert!(
        ok && out.contains(r#"reportjob.reporting.dev "orders" deleted"#),
        "{out}"
    );
    let o = env.kubectl(&["get", "rj", "-n", team_a, "-o", "name"]);
    assert!(o.status.success() && text(&o).is_empty(), "{}", text(&o));
    restore.finish();
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
    let mut env = Env::start().await;
    let ns = env.namespace("metrics").await;
    // A family appears in /metrics once it has a sample: a ReportJob the controller fails as
    // InvalidSpec (a table name of four parts) after a reconcile error (a 500 on its first
    // patch, from the fault proxy the controller reaches the API server through), and the
    // leader gauge (leader election on, its Lease in the test's namespace).
    let kubeconfig = env.dir.path().join("metrics-kubeconfig");
    let proxy = env.proxy();
    proxy.write_kubeconfig(&kubeconfig).unwrap();
    proxy.fail_next("patch", "reportjobs", 1, Fault::Status(500));
    let addr = format!("127.0.0.1:{}", free_port());
    env.start_controller(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--lease-namespace",
        ns,
        "--lease-duration-seconds",
        "3",
        "--metrics-addr",
        &addr,
    ]);
    let bad: reportjob::api::ReportJob =
        serde_saphyr::from_str(&report("bad", "a.b.c.d", "bad.csv").build_yaml()).unwrap();
    env.rjs(ns).create(&Default::default(), &bad).await.unwrap();
    let url = format!("http://{addr}/metrics");
    let metrics = eventually("the controller's /metrics with every family", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let all = [
            "reportjob_leader 1",
            "phase=\"Failed\"} 1",
            "reportjob_runs_finished_total{",
            "reportjob_run_failures_total{",
            "reportjob_build_info{",
            "reportjob_reconcile_errors_total{",
            "reportjob_reconciles_total{",
        ]
        .iter()
        .all(|line| body.contains(line));
        all.then_some(body)
    })
    .await;
    assert_eq!(env.proxy().pending_faults(), 0, "the 500 was answered");
    let exported = exported_names(&metrics);
    assert_eq!(exported.len(), 16, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "reportjob_run_failures_total{{report_namespace=\"{ns}\",reason=\"InvalidSpec\"}} 1"
        )),
        "{metrics}"
    );

    let docs = template(
        &chart_dir(),
        SYSTEM_NS,
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
    assert_eq!(metric_names(&exprs).len(), 5, "{exprs}");
    assert!(
        exprs.contains("increase(reportjob_runs_finished_total{result=\"failed\"}[15m])"),
        "ReportJobFailed fires on new failures in a window, per namespace: {exprs}"
    );
    assert_eq!(
        metric_names(&queries),
        exported,
        "the dashboard shows every metric the controller exports"
    );
}
