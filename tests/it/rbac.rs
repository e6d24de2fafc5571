//! The chart's controller RBAC on the real control plane, whose RBAC authorizer decides every
//! request: the ServiceAccount, ClusterRole, ClusterRoleBinding and leader-election Role that
//! `helm template` renders, applied with kubectl. A controller authenticating with a token of
//! that ServiceAccount (from the TokenRequest API, as its pod would) completes a ReportJob and
//! runs a ReportSchedule with exactly those rules; without any one of them (the change waited
//! for in SubjectAccessReviews) it fails visibly (a 403 in its log, and an event where it can
//! still see the ReportJob); and its identity cannot read Secrets. The ClusterRole and its
//! binding are cluster-scoped: each test holds the cluster-scoped lock and deletes them when it
//! ends.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestDb;
use common::free_port;
use common::testbed::{Env, cluster_scoped_lock, report};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use reportjob::api::Phase;
use reportjob::schedule::ReportSchedule;
use serde_json::{Value, json};

/// The chart's ClusterRole and leader-election Role, as the release `reportjob` names them.
const CLUSTER_ROLE: &str = "reportjob";
const LEASE_ROLE: &str = "reportjob-leader-election";

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The chart's ServiceAccount and RBAC for a release in `system`, rendered by helm, as JSON
/// documents.
fn rendered(system: &str) -> Vec<Value> {
    let out = Command::new("helm")
        .args([
            "template",
            "reportjob",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/reportjob"),
        ])
        .args(["-n", system, "--show-only", "templates/rbac.yaml"])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&ok(&out)).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Deletes the chart's cluster-scoped objects when the test ends, also when it fails; it is
/// declared after the cluster-scoped lock, so dropped (and done) before the lock is released.
struct ClusterScoped {
    kubeconfig: PathBuf,
    objects: Vec<String>,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("delete")
            .args(&self.objects)
            .arg("--ignore-not-found")
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("warning: {:?} not deleted: {other:?}", self.objects),
        }
    }
}

/// The chart's controller RBAC, installed for a release in `system` whose controller watches
/// `tenant`.
struct Installed {
    system: &'static str,
    tenant: &'static str,
    /// `system:serviceaccount:<system>:reportjob`.
    identity: String,
    /// A kubeconfig holding a token of the chart's ServiceAccount.
    kubeconfig: PathBuf,
    /// The rendered ClusterRole's rules.
    rules: Vec<PolicyRule>,
    /// The rendered leader-election Role's rules.
    lease_rules: Vec<PolicyRule>,
    _cluster_scoped: ClusterScoped,
}

/// Makes the test's namespaces (`system` for the release, a tenant), applies the rendered
/// RBAC with kubectl, writes a kubeconfig with a token of the chart's ServiceAccount and waits
/// until the authorizer grants that identity every rendered rule (RBAC objects reach it
/// through its informers, a moment after they are written).
async fn install(env: &mut Env) -> Installed {
    let system = env.namespace("reportjob-system").await;
    let tenant = env.tenant("tenant").await;
    let docs = rendered(system);
    let cluster_scoped = ClusterScoped {
        kubeconfig: env.kubeconfig.clone(),
        objects: docs
            .iter()
            .filter(|d| d["metadata"]["namespace"].is_null())
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap().to_lowercase(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect(),
    };
    assert_eq!(
        cluster_scoped.objects,
        [
            format!("clusterrole/{CLUSTER_ROLE}"),
            format!("clusterrole/{CLUSTER_ROLE}-databases"),
            format!("clusterrolebinding/{CLUSTER_ROLE}"),
            format!("clusterrolebinding/{CLUSTER_ROLE}-databases"),
        ]
    );
    let rules_of = |kind: &str, name: &str| -> Vec<PolicyRule> {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the chart renders {kind} {name}"));
        serde_json::from_value(doc["rules"].clone()).unwrap()
    };
    let rules = rules_of("ClusterRole", CLUSTER_ROLE);
    let lease_rules = rules_of("Role", LEASE_ROLE);
    let file = env.dir.path().join("rbac.json");
    let body: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(&file, body.join("\n---\n")).unwrap();
    ok(&env.kubectl(&["-n", system, "apply", "-f", file.to_str().unwrap()]));

    let identity = format!("system:serviceaccount:{system}:reportjob");
    let token = ok(&env.kubectl(&[
        "-n",
        system,
        "create",
        "token",
        "reportjob",
        "--duration",
        "2h",
    ]));
    // The admin kubeconfig (server and CA) with the ServiceAccount's token as its user.
    let admin = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let mut config: Value = serde_saphyr::from_str(&admin).unwrap();
    config["users"][0]["user"] = json!({"token": token.trim()});
    config["contexts"][0]["context"]["namespace"] = json!(tenant);
    let kubeconfig = env.dir.path().join("kubeconfig-sa");
    std::fs::write(&kubeconfig, config.to_string()).unwrap();

    let installed = Installed {
        system,
        tenant,
        identity,
        kubeconfig,
        rules,
        lease_rules,
        _cluster_scoped: cluster_scoped,
    };
    wait_for_rules(env, &installed, None, false).await;
    installed
}

/// Whether the authorizer lets the ServiceAccount `identity` (with the groups a ServiceAccount
/// has) do `verb` on `resource` (`plural` or `plural/subresource`) of `group` in `ns`.
async fn allowed(
    env: &Env,
    identity: &str,
    ns: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> Option<bool> {
    let sa_ns = identity.split(':').nth(2).unwrap();
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(identity.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_string()),
                verb: Some(verb.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(env.client.clone());
    let done = reviews.create(&PostParams::default(), &review).await.ok()?;
    Some(done.status.is_some_and(|s| s.allowed))
}

/// Waits until the authorizer applies the rendered rules to the controller's identity: every
/// verb of every ClusterRole rule allowed in the tenant but those of rule `removed`, and every
/// verb of the lease rule allowed in the release namespace unless `without_lease`; the
/// left-out ones refused.
async fn wait_for_rules(
    env: &Env,
    installed: &Installed,
    removed: Option<usize>,
    without_lease: bool,
) {
    let mut checks = Vec::new();
    for (i, rule) in installed.rules.iter().enumerate() {
        checks.push((installed.tenant, rule, Some(i) != removed));
    }
    for rule in &installed.lease_rules {
        checks.push((installed.system, rule, !without_lease));
    }
    let what = format!(
        "the authorizer to apply the rules (without rule {removed:?}, without the lease rule: {without_lease})"
    );
    common::eventually(&what, || {
        let checks = checks.clone();
        async move {
            for (ns, rule, want) in checks {
                for group in rule.api_groups.iter().flatten() {
                    for resource in rule.resources.iter().flatten() {
                        for verb in &rule.verbs {
                            let is = allowed(env, &installed.identity, ns, group, resource, verb)
                                .await?;
                            if is != want {
                                return None;
                            }
                        }
                    }
                }
            }
            Some(())
        }
    })
    .await;
}

/// Starts a controller as the chart's ServiceAccount, watching the tenant, its lease in the
/// release namespace; returns its index.
fn start_as_service_account(env: &mut Env, installed: &Installed, started: &mut usize) -> usize {
    let addr = format!("127.0.0.1:{}", free_port());
    let path = installed.kubeconfig.to_str().unwrap().to_string();
    // The ReportSchedule loop's test clock: two hours ahead, so an hourly schedule created
    // now has a run due at once.
    let clock = env.dir.path().join("clock");
    let now = jiff::Timestamp::now();
    std::fs::write(
        &clock,
        (now + jiff::SignedDuration::from_hours(2)).to_string(),
    )
    .unwrap();
    let clock = clock.to_str().unwrap().to_string();
    env.start_controller(&[
        "--clock-file",
        &clock,
        "--kubeconfig",
        &path,
        "--namespaces",
        installed.tenant,
        "--metrics-addr",
        &addr,
        "--lease-namespace",
        installed.system,
        "--lease-name",
        "reportjob",
        "--lease-duration-seconds",
        "3",
    ]);
    *started += 1;
    *started - 1
}

/// An hourly ReportSchedule `name` in `ns` whose runs are suspended ReportJobs (they export
/// nothing).
async fn schedule(env: &Env, ns: &str, name: &str, table: &str) {
    let api: Api<ReportSchedule> = Api::namespaced(env.client.clone(), ns);
    let body = json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
        "metadata": {"name": name}, "spec": {"schedule": "@hourly", "reportJobTemplate": {"spec": {
            "source": {"connectionSecretRef": {"name": "db"}, "table": table, "keyColumn": "id"},
            "output": {"destination": {"pvc": {"claimName": "reports", "path": format!("{name}.csv")}}},
            "suspend": true}}}});
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

/// The ReportSchedule `name`'s last scheduled time, if its status says it ran.
async fn last_scheduled(env: &Env, ns: &str, name: &str) -> Option<String> {
    let api: Api<ReportSchedule> = Api::namespaced(env.client.clone(), ns);
    let rs = api.get(name).await.unwrap();
    rs.status?.last_schedule_time.map(|t| t.0.to_string())
}

async fn orders(db: &mut TestDb) -> String {
    db.exec(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 300) g;",
    )
    .await;
    db.table("orders")
}

/// A client with the credentials of a kubeconfig file.
async fn client_of(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Prints a controller's log when the test fails while this is alive.
struct LogOnFailure<'a> {
    env: &'a Env,
    n: usize,
    what: &'a str,
}

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the controller without {}, its log:\n{}",
                self.what,
                self.env.controller_log(self.n)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_cannot_read_secrets() {
    let _lock = cluster_scoped_lock().await;
    let mut db = TestDb::new("rbac_ok").await;
    let table = orders(&mut db).await;
    let mut env = Env::start().await;
    let installed = install(&mut env).await;
    let tenant = installed.tenant;
    let mut started = 0;
    let n = start_as_service_account(&mut env, &installed, &mut started);
    env.apply(tenant, &report("orders", &table, "orders.csv").build_yaml())
        .await;
    schedule(&env, tenant, "hourly", &table).await;
    common::eventually("the schedule's run and status", || async {
        let runs = env
            .rjs(tenant)
            .list(&ListParams::default().labels("reporting.dev/schedule=hourly"))
            .await
            .ok()?;
        (runs.items.len() == 1 && last_scheduled(&env, tenant, "hourly").await.is_some())
            .then_some(())
    })
    .await;
    let done = env
        .wait_phase(tenant, "orders", Phase::Succeeded, common::PATIENCE)
        .await;
    assert_eq!(done.status.unwrap().rows, Some(300));
    db.assert_report_matches(
        &env.pvc_dir(tenant).join("orders.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    assert!(
        !env.controller_log(n).to_lowercase().contains("forbidden"),
        "{}",
        env.controller_log(n)
    );

    // The controller's identity cannot read Secrets, in its tenant or in any namespace.
    let as_controller = client_of(&installed.kubeconfig).await;
    let secrets: Api<Secret> = Api::namespaced(as_controller.clone(), tenant);
    match secrets.get("db").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"), "{e:?}");
            assert!(
                e.message.contains(&format!(
                    r#"User "{}" cannot get resource "secrets" in API group "" in the namespace "{tenant}""#,
                    installed.identity
                )),
                "{e:?}"
            );
        }
        other => panic!("the controller read a Secret: {other:?}"),
    }
    let all: Api<Secret> = Api::all(as_controller);
    match all.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"), "{e:?}")
        }
        other => panic!("the controller listed Secrets: {other:?}"),
    }
    // The same identity impersonated by the admin (who may impersonate).
    let out = env.kubectl(&[
        "--as",
        &installed.identity,
        "-n",
        tenant,
        "get",
        "secret",
        "db",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&format!(
                r#"Error from server (Forbidden): secrets "db" is forbidden: User "{}" cannot get resource "secrets""#,
                installed.identity
            )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_one_rule_the_controller_fails_visibly() {
    let _lock = cluster_scoped_lock().await;
    let mut db = TestDb::new("rbac_each").await;
    let table = orders(&mut db).await;
    let mut env = Env::start().await;
    let installed = install(&mut env).await;
    let tenant = installed.tenant;
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    let roles: Api<Role> = Api::namespaced(env.client.clone(), installed.system);
    let full = cluster_roles.get(CLUSTER_ROLE).await.unwrap();
    let rules = full.rules.clone().unwrap();
    assert_eq!(rules, installed.rules, "the ClusterRole as rendered");
    let lease_role = roles.get(LEASE_ROLE).await.unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), tenant);
    let mut started = 0;
    // One case per ClusterRole rule, and one for the leader-election Role.
    for case in 0..=rules.len() {
        let mut role = cluster_roles.get(CLUSTER_ROLE).await.unwrap();
        let mut lease = roles.get(LEASE_ROLE).await.unwrap();
        let mut kept = rules.clone();
        let (what, resources) = if case < rules.len() {
            let removed = kept.remove(case);
            let resources = removed.resources.clone().unwrap_or_default();
            (format!("{resources:?} {:?}", removed.verbs), resources)
        } else {
            lease.rules = Some(Vec::new());
            ("leases".to_string(), vec!["leases".to_string()])
        };
        role.rules = Some(kept);
        if case == rules.len() {
            role.rules = full.rules.clone();
        } else {
            lease.rules = lease_role.rules.clone();
        }
        cluster_roles
            .replace(CLUSTER_ROLE, &PostParams::default(), &role)
            .await
            .unwrap();
        roles
            .replace(LEASE_ROLE, &PostParams::default(), &lease)
            .await
            .unwrap();
        // The controller starts only once the authorizer refuses exactly the removed rule
        // (and grants again the one the case before removed).
        let removed = (case < rules.len()).then_some(case);
        wait_for_rules(&env, &installed, removed, case == rules.len()).await;

        let n = start_as_service_account(&mut env, &installed, &mut started);
        let name = format!("case-{case}");
        env.apply(
            tenant,
            &report(&name, &table, &format!("{name}.csv")).build_yaml(),
        )
        .await;
        let schedule_name = format!("sched-{case}");
        schedule(&env, tenant, &schedule_name, &table).await;
        // Rules only the ReportSchedule loop uses: ReportJobs still complete without them.
        let schedule_rule = resources.iter().any(|r| r.starts_with("reportschedules"))
            || what == r#"["reportjobs"] ["create"]"#;
        // Where the controller can still see the ReportJob and write events, the failure
        // shows on it; otherwise (list/watch, events, leases) only in its log.
        let needs_event = resources
            .iter()
            .any(|r| ["jobs", "reportjobs/status", "pods"].contains(&r.as_str()));
        {
            let _log = LogOnFailure {
                env: &env,
                n,
                what: &what,
            };
            common::eventually(
                &format!(
                    "the controller without {what} to fail visibly (a 403 in its log{})",
                    if needs_event {
                        ", and a ReconcileError event on the ReportJob"
                    } else {
                        ""
                    }
                ),
                || async {
                    if !env.controller_log(n).to_lowercase().contains("forbidden") {
                        return None;
                    }
                    if !needs_event {
                        return Some(());
                    }
                    let listed = events.list(&ListParams::default()).await.ok()?;
                    listed
                        .items
                        .into_iter()
                        .any(|e| {
                            e.reason.as_deref() == Some("ReconcileError")
                                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                    == Some(name.as_str())
                                && e.note.as_deref().is_some_and(|n| n.contains("forbidden"))
                        })
                        .then_some(())
                },
            )
            .await;
            if schedule_rule {
                // Without it the schedule never records a run (its loop fails before, or at,
                // writing the status).
                assert_eq!(
                    last_scheduled(&env, tenant, &schedule_name).await,
                    None,
                    "without {what} the schedule still ran: the rule is not needed"
                );
            } else {
                let rj = env.rjs(tenant).get(&name).await.unwrap();
                assert_ne!(
                    rj.status.and_then(|s| s.phase),
                    Some(Phase::Succeeded),
                    "without {what} the ReportJob still completed: the rule is not needed"
                );
            }
        }
        env.kill_controller(n);
    }
}
