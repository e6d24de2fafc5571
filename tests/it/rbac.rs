//! The chart's RBAC on kubesim with RBAC enforced: the controller, impersonating the chart's
//! ServiceAccount, completes a ReportJob with exactly the rendered rules; without any one of
//! them it fails visibly (a 403 in its log, and an event where it can still see the
//! ReportJob); and its identity cannot read Secrets.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::TestDb;
use common::cluster::{Env, free_port, report};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use reportjob::api::Phase;
use reportjob::schedule::ReportSchedule;

const SYSTEM_NS: &str = "reportjob-system";
const IDENTITY: &str = "system:serviceaccount:reportjob-system:reportjob";

/// The chart's ServiceAccount and RBAC, rendered by helm, as JSON documents.
fn rendered() -> Vec<serde_json::Value> {
    let out = Command::new("helm")
        .args([
            "template",
            "reportjob",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/reportjob"),
        ])
        .args(["-n", SYSTEM_NS, "--show-only", "templates/rbac.yaml"])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---")
        .filter(|d| d.contains("kind:"))
        .map(|d| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .collect()
}

/// Installs the rendered RBAC (as kubectl would) and returns the kubeconfig of a client
/// impersonating the chart's ServiceAccount.
async fn install(env: &Env) -> std::path::PathBuf {
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.create(&PostParams::default(), &reportjob::schedule::crd::crd())
        .await
        .unwrap();
    let system = env.dir.path().join("system.yaml");
    std::fs::write(
        &system,
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n"),
    )
    .unwrap();
    let out = env.kubectl(&["apply", "-f", system.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for doc in rendered() {
        let file = env.dir.path().join("doc.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        let out = env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kubeconfig = env.dir.path().join("kubeconfig-sa");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster: {{server: '{}'}}\n\
             contexts:\n- name: sa\n  context: {{cluster: kubesim, user: sa}}\ncurrent-context: sa\n\
             users:\n- name: sa\n  user: {{as: '{IDENTITY}'}}\n",
            env.cluster.url()
        ),
    )
    .unwrap();
    kubeconfig
}

fn start_impersonated(env: &mut Env, kubeconfig: &std::path::Path) {
    let addr = format!("127.0.0.1:{}", free_port());
    let path = kubeconfig.to_str().unwrap().to_string();
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
        "--metrics-addr",
        &addr,
        "--lease-namespace",
        SYSTEM_NS,
        "--lease-name",
        "reportjob",
        "--lease-duration-seconds",
        "3",
    ]);
}

/// An hourly ReportSchedule `name` whose runs are suspended ReportJobs (they export nothing).
async fn schedule(env: &Env, name: &str, table: &str) {
    let api: Api<ReportSchedule> = Api::namespaced(env.client.clone(), "tenant");
    let body = serde_json::json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
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
async fn last_scheduled(env: &Env, name: &str) -> Option<String> {
    let api: Api<ReportSchedule> = Api::namespaced(env.client.clone(), "tenant");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_cannot_read_secrets() {
    let mut db = TestDb::new("rbac_ok").await;
    let table = orders(&mut db).await;
    let mut env = Env::start().await;
    env.tenant("tenant").await;
    let kubeconfig = install(&env).await;
    start_impersonated(&mut env, &kubeconfig);
    env.apply(
        "tenant",
        &report("orders", &table, "orders.csv").build_yaml(),
    )
    .await;
    schedule(&env, "hourly", &table).await;
    common::eventually("the schedule's run and status", || async {
        let runs = env
            .rjs("tenant")
            .list(&ListParams::default().labels("reporting.dev/schedule=hourly"))
            .await
            .unwrap();
        (runs.items.len() == 1 && last_scheduled(&env, "hourly").await.is_some()).then_some(())
    })
    .await;
    let done = env
        .wait_phase("tenant", "orders", Phase::Succeeded, common::PATIENCE)
        .await;
    assert_eq!(done.status.unwrap().rows, Some(300));
    db.assert_report_matches(
        &env.pvc_dir("tenant").join("orders.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    assert!(
        !env.controller_log(0).to_lowercase().contains("forbidden"),
        "{}",
        env.controller_log(0)
    );

    // The controller's identity cannot read Secrets, in any namespace.
    let as_controller = env.cluster.client_as(IDENTITY).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(as_controller.clone(), "tenant");
    match secrets.get("db").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden")),
        other => panic!("the controller read a Secret: {other:?}"),
    }
    let all: Api<Secret> = Api::all(as_controller);
    assert!(
        matches!(all.list(&ListParams::default()).await, Err(kube::Error::Api(e)) if e.code == 403)
    );
    let out = env.kubectl(&["--as", IDENTITY, "-n", "tenant", "get", "secret", "db"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_one_rule_the_controller_fails_visibly() {
    let mut db = TestDb::new("rbac_each").await;
    let table = orders(&mut db).await;
    let mut env = Env::start().await;
    env.tenant("tenant").await;
    let kubeconfig = install(&env).await;
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    let roles: Api<Role> = Api::namespaced(env.client.clone(), SYSTEM_NS);
    let full = cluster_roles.get("reportjob").await.unwrap();
    let rules = full.rules.clone().unwrap();
    let lease_role = roles.get("reportjob-leader-election").await.unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), "tenant");
    // One case per ClusterRole rule, and one for the leader-election Role.
    for case in 0..=rules.len() {
        let mut role = cluster_roles.get("reportjob").await.unwrap();
        let mut lease = roles.get("reportjob-leader-election").await.unwrap();
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
            .replace("reportjob", &PostParams::default(), &role)
            .await
            .unwrap();
        roles
            .replace("reportjob-leader-election", &PostParams::default(), &lease)
            .await
            .unwrap();

        let n = env.controllers();
        start_impersonated(&mut env, &kubeconfig);
        let name = format!("case-{case}");
        env.apply(
            "tenant",
            &report(&name, &table, &format!("{name}.csv")).build_yaml(),
        )
        .await;
        let schedule_name = format!("sched-{case}");
        schedule(&env, &schedule_name, &table).await;
        // Rules only the ReportSchedule loop uses: ReportJobs still complete without them.
        let schedule_rule = resources.iter().any(|r| r.starts_with("reportschedules"))
            || what == r#"["reportjobs"] ["create"]"#;
        let start = std::time::Instant::now();
        loop {
            let log = env.controller_log(n).to_lowercase();
            let forbidden_in_log = log.contains("forbidden");
            let event = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ReconcileError")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(name.as_str())
                        && e.note.as_deref().is_some_and(|n| n.contains("forbidden"))
                });
            // Where the controller can still see the ReportJob and write events, the failure
            // shows on it; otherwise (list/watch, events, leases) only in its log.
            let needs_event = resources
                .iter()
                .any(|r| ["jobs", "reportjobs/status", "pods"].contains(&r.as_str()));
            if forbidden_in_log && (event || !needs_event) {
                break;
            }
            assert!(
                start.elapsed() < common::PATIENCE,
                "without {what} the controller did not fail visibly (log has 403: {forbidden_in_log}, event: {event})\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if schedule_rule {
            // Without it the schedule never records a run (its loop fails before, or at,
            // writing the status).
            assert_eq!(
                last_scheduled(&env, &schedule_name).await,
                None,
                "without {what} the schedule still ran: the rule is not needed"
            );
        } else {
            let rj = env.rjs("tenant").get(&name).await.unwrap();
            assert_ne!(
                rj.status.and_then(|s| s.phase),
                Some(Phase::Succeeded),
                "without {what} the ReportJob still completed: the rule is not needed"
            );
        }
        env.kill_controller(n);
    }
}
