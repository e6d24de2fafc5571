//! `helm install` of the chart into kubesim, as a new user would: the controller runs as the pod of
//! its Deployment (image mapped to the `reportjob` binary under test), in-cluster, with the token of
//! the chart's ServiceAccount against kubesim's TLS listener and RBAC enforced; it completes a
//! ReportJob with exact output; `helm upgrade` with a changed value replaces the controller pod
//! through the Deployment; without the chart's ClusterRoleBinding its requests are refused.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::TestDb;
use common::cluster::{Env, free_port, report};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use reportjob::api::Phase;

const NS: &str = "reportjob-system";
const IDENTITY: &str = "system:serviceaccount:reportjob-system:reportjob";

fn helm(env: &Env, args: &[&str]) {
    let out = Command::new("helm")
        .args(args)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/reportjob"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["-n", NS])
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The one controller pod, once it is Ready and alone (no other pod of the release left).
async fn sole_ready_controller(env: &Env) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let lp = ListParams::default().labels("app.kubernetes.io/name=reportjob");
    let start = Instant::now();
    loop {
        let items = pods.list(&lp).await.unwrap().items;
        if let [p] = items.as_slice()
            && ready(p)
        {
            return p.clone();
        }
        assert!(
            start.elapsed() < common::PATIENCE,
            "no sole Ready controller pod: {:?}\npod logs:\n{}",
            items
                .iter()
                .map(|p| (p.metadata.name.clone(), p.status.clone()))
                .collect::<Vec<_>>(),
            env.pod_logs(NS)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn orders(db: &mut TestDb) -> String {
    db.exec(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 300) g;",
    )
    .await;
    db.table("orders")
}

async fn export(env: &Env, db: &mut TestDb, table: &str, name: &str) {
    let file = format!("{name}.csv");
    env.apply("tenant", &report(name, table, &file).build_yaml())
        .await;
    let done = env
        .wait_phase("tenant", name, Phase::Succeeded, common::PATIENCE)
        .await;
    assert_eq!(done.status.unwrap().rows, Some(300));
    db.assert_report_matches(
        &env.pvc_dir("tenant").join(&file),
        &db.all("orders"),
        "",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_controller_in_cluster_and_upgrade_replaces_it() {
    let mut db = TestDb::new("helm_install").await;
    let table = orders(&mut db).await;
    // No CRD yet: the chart's CRD template installs it.
    let env = Env::bare().await;
    let first_port = free_port().to_string();
    helm(
        &env,
        &[
            "install",
            "reportjob",
            "--create-namespace",
            "--set",
            "image.repository=reportjob",
            "--set",
            "image.tag=dev",
            "--set",
            "logFormat=text",
            "--set",
            &format!("metrics.port={first_port}"),
        ],
    );
    let first = sole_ready_controller(&env).await;
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("reportjob"));
    assert_eq!(spec.node_name.as_deref(), Some("kubesim"));
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name.starts_with("kube-api-access-") && v.projected.is_some()),
        "{:?}",
        spec.volumes
    );
    env.tenant("tenant").await;
    export(&env, &mut db, &table, "first").await;
    let first_name = first.metadata.name.clone().unwrap();
    let log_of = |pod: &str| {
        std::fs::read_to_string(
            env.cluster
                .data_dir()
                .join("logs")
                .join(NS)
                .join(format!("{pod}.log")),
        )
        .unwrap_or_default()
    };
    assert!(
        !log_of(&first_name).to_lowercase().contains("forbidden"),
        "{}",
        log_of(&first_name)
    );

    // A changed value: the Deployment's template changes, a new ReplicaSet's pod replaces the old.
    let second_port = free_port().to_string();
    helm(
        &env,
        &[
            "upgrade",
            "reportjob",
            "--reuse-values",
            "--set",
            &format!("metrics.port={second_port}"),
        ],
    );
    let second = loop {
        let p = sole_ready_controller(&env).await;
        if p.metadata.name.as_deref() != Some(first_name.as_str()) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let port_arg = second.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        port_arg.contains(&format!("0.0.0.0:{second_port}")),
        "{port_arg:?}"
    );
    let out = env.kubectl(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/reportjob",
        "--timeout=120s",
    ]);
    // kubectl may first print that old replicas are still terminating; it ends rolled out.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && printed.ends_with("deployment \"reportjob\" successfully rolled out\n"),
        "{printed}"
    );
    export(&env, &mut db, &table, "second").await;

    // The controller acts as its ServiceAccount: without the chart's binding it is refused.
    let second_name = second.metadata.name.clone().unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        Api::all(env.client.clone());
    bindings
        .delete("reportjob", &DeleteParams::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.delete(&second_name, &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let logs = env.pod_logs(NS);
        if logs.contains(&format!("User \\\"{IDENTITY}\\\" cannot"))
            || logs.contains(&format!("User \"{IDENTITY}\" cannot"))
        {
            break;
        }
        assert!(
            start.elapsed() < common::PATIENCE,
            "no refusal naming {IDENTITY} in:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
