//! `helm install` of the chart into the real control plane, as a new user would: the controller
//! runs as the pod of its Deployment (the image mapped to the `reportjob` binary under test) with
//! in-cluster config from its projected service-account token, RBAC enforced by the real API
//! server; it completes ReportJobs with exact output; `helm upgrade` with a changed value
//! replaces its pod through the Deployment; `helm uninstall` deletes every ReportJob while the
//! controller still runs, so none is left on its finalizer and the namespace can go; without its
//! RoleBinding the controller's requests are refused.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::process::Command;

use common::TestDb;
use common::free_port;
use common::testbed::{Env, report};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use reportjob::api::Phase;

fn helm(env: &Env, ns: &str, args: &[&str]) -> String {
    let out = Command::new("helm")
        .args(args)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["-n", ns])
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?}: {text}");
    text
}

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/reportjob");

/// Uninstalls the release when the test ends, also when it fails: its ReportDatabase
/// ClusterRole is cluster-scoped, and the next test's install of the same release name must
/// not find it. Declared after the cluster-scoped lock, so done before the lock is released.
struct Release {
    kubeconfig: std::path::PathBuf,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new("helm")
            .args(["uninstall", "reportjob", "--no-hooks", "--ignore-not-found"])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.namespace])
            .output();
    }
}

/// `helm install reportjob` into `system`, the controller watching only `tenant` (so it
/// leaves the other tests' namespaces to their own controllers; its one cluster-wide role is
/// the ReportDatabases'), with the CRDs the suite installed (the chart's own CRD templates are checked by
/// `chart_install.rs`).
fn install(env: &Env, system: &str, tenant: &str, extra: &[&str]) {
    let port = format!("metrics.port={}", free_port());
    let watch = format!("watchNamespaces={{{tenant}}}");
    let mut args = vec![
        "install",
        "reportjob",
        CHART,
        "--set",
        "image.repository=reportjob",
        "--set",
        "image.tag=dev",
        "--set",
        "logFormat=text",
        "--set",
        "crds.install=false",
        "--set",
        "aggregatedRoles.enabled=false",
        "--set",
        &watch,
        "--set",
        &port,
    ];
    args.extend_from_slice(extra);
    helm(env, system, &args);
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The one controller pod of `system`, once it is Ready and alone (no other pod of the
/// release left), other than `not`.
async fn sole_ready_controller(env: &Env, system: &str, not: Option<&str>) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), system);
    let lp = ListParams::default().labels("app.kubernetes.io/name=reportjob");
    common::eventually("a sole Ready controller pod", || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move {
            let items = pods.list(&lp).await.ok()?.items;
            match items.as_slice() {
                [p] if ready(p) && p.metadata.name.as_deref() != not => Some(p.clone()),
                _ => None,
            }
        }
    })
    .await
}

async fn orders(db: &mut TestDb) -> String {
    db.exec(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 300) g;",
    )
    .await;
    db.table("orders")
}

async fn export(env: &Env, db: &mut TestDb, ns: &str, table: &str, name: &str) {
    let file = format!("{name}.csv");
    env.apply(ns, &report(name, table, &file).build_yaml())
        .await;
    let done = env
        .wait_phase(ns, name, Phase::Succeeded, common::PATIENCE)
        .await;
    assert_eq!(done.status.unwrap().rows, Some(300));
    db.assert_report_matches(&env.pvc_dir(ns).join(&file), &db.all("orders"), "", false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_controller_in_cluster_upgrade_replaces_it_and_uninstall_leaves_nothing_stuck()
 {
    // The chart's ReportDatabase ClusterRole is cluster-scoped (also with watchNamespaces):
    // one test at a time may own it.
    let _lock = super::common::testbed::cluster_scoped_lock().await;
    let mut db = TestDb::new("helm_install").await;
    let table = orders(&mut db).await;
    let mut env = Env::start().await;
    let system = env.namespace("reportjob-system").await;
    let tenant = env.tenant("tenant").await;
    let _release = Release {
        kubeconfig: env.kubeconfig.clone(),
        namespace: system.to_string(),
    };
    install(
        &env,
        system,
        tenant,
        &["--set", "uninstall.deleteReportJobs=true"],
    );
    let first = sole_ready_controller(&env, system, None).await;
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("reportjob"));
    assert_eq!(spec.node_name.as_deref(), Some(testbed::NODE_NAME));
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name.starts_with("kube-api-access-") && v.projected.is_some()),
        "the ServiceAccount admission mounts a projected token: {:?}",
        spec.volumes
    );
    export(&env, &mut db, tenant, &table, "first").await;
    let first_name = first.metadata.name.clone().unwrap();
    let logs = env.pod_logs(system);
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");

    // A changed value: the Deployment's template changes, a new ReplicaSet's pod replaces the old.
    let second_port = free_port().to_string();
    let port = format!("metrics.port={second_port}");
    helm(
        &env,
        system,
        &[
            "upgrade",
            "reportjob",
            CHART,
            "--reuse-values",
            "--set",
            &port,
        ],
    );
    let second = sole_ready_controller(&env, system, Some(&first_name)).await;
    let args = second.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&format!("0.0.0.0:{second_port}")), "{args:?}");
    let out = env.kubectl(&[
        "-n",
        system,
        "rollout",
        "status",
        "deployment/reportjob",
        "--timeout=120s",
    ]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && printed.ends_with("deployment \"reportjob\" successfully rolled out\n"),
        "{printed}"
    );
    export(&env, &mut db, tenant, &table, "second").await;

    // Uninstall while a run is in flight: the pre-delete hook deletes every ReportJob and
    // waits until the controller has finalized each; then the controller goes.
    let slow = report("inflight", &table, "inflight.csv")
        .filter(&common::slow_filter(&db.schema, 0.02))
        .chunk_size(50);
    env.apply(tenant, &slow.build_yaml()).await;
    env.wait_phase(tenant, "inflight", Phase::Running, common::PATIENCE)
        .await;
    let out = helm(&env, system, &["uninstall", "reportjob", "--timeout", "5m"]);
    assert!(out.contains("uninstalled"), "{out}");
    let left = env.rjs(tenant).list(&ListParams::default()).await.unwrap();
    assert!(
        left.items.is_empty(),
        "ReportJobs left after uninstall: {:?}",
        left.items
            .iter()
            .map(|r| (&r.metadata.name, &r.metadata.finalizers))
            .collect::<Vec<_>>()
    );
    // Reports stay; the runs' Jobs went with their ReportJobs.
    for name in ["first", "second"] {
        assert!(env.pvc_dir(tenant).join(format!("{name}.csv")).exists());
    }
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), tenant);
    common::eventually("the stage Jobs to go", || async {
        jobs.list(&ListParams::default().labels("app.kubernetes.io/managed-by=reportjob"))
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    // Nothing holds the tenant's namespace: it is deleted.
    let nss: Api<Namespace> = Api::all(env.client.clone());
    nss.delete(tenant, &DeleteParams::default()).await.unwrap();
    common::eventually("the tenant namespace to be deleted", || async {
        nss.get_opt(tenant).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_role_binding_the_installed_controller_is_refused() {
    // The release's ReportDatabase ClusterRole is cluster-scoped: one install at a time.
    let _lock = super::common::testbed::cluster_scoped_lock().await;
    let mut env = Env::start().await;
    let system = env.namespace("reportjob-system").await;
    let tenant = env.tenant("tenant").await;
    let _release = Release {
        kubeconfig: env.kubeconfig.clone(),
        namespace: system.to_string(),
    };
    install(&env, system, tenant, &[]);
    let first = sole_ready_controller(&env, system, None).await;
    // The controller acts as its ServiceAccount: without the chart's binding it is refused.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(env.client.clone(), tenant);
    bindings
        .delete("reportjob", &DeleteParams::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), system);
    pods.delete(
        first.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    let identity = format!("system:serviceaccount:{system}:reportjob");
    common::eventually("a refusal naming the controller's identity", || {
        let logs = env.pod_logs(system);
        let refused = logs.contains(&format!("User \\\"{identity}\\\" cannot"))
            || logs.contains(&format!("User \"{identity}\" cannot"));
        async move { refused.then_some(()) }
    })
    .await;
}
