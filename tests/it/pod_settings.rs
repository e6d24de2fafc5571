//! Stage pod settings and the controller's policy end to end on the real control plane: a ReportJob outside
//! the policy (an image not allowed, a service account it may not choose) fails as
//! `InvalidSpec` and creates nothing; one with pod labels, annotations and env completes with
//! exact output, and its stage pods, read back through the API, carry them merged with the
//! controller's `--stage-pods` defaults.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::TestDb;
use common::free_port;
use common::testbed::{Env, report};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use reportjob::api::Phase;
use serde_json::json;

const STAGE_PODS: &str = r#"{"podLabels": {"platform": "reports", "cost": "platform"},
  "podAnnotations": {"example.com/platform": "1"},
  "env": [{"name": "HTTPS_PROXY_NOTE", "value": "from-the-platform"}],
  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refuses_images_and_service_accounts_and_pod_settings_reach_the_pods() {
    let mut db = TestDb::new("pod_settings").await;
    db.numbers(2_000).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let ns = env.tenant("podsettings").await;
    let addr = format!("127.0.0.1:{}", free_port());
    env.start_controller(&[
        "--leader-election=false",
        "--metrics-addr",
        &addr,
        "--allowed-worker-images",
        "registry.example/reportjob:1.2",
        "--stage-pods",
        STAGE_PODS,
    ]);

    // Outside the policy: Failed with InvalidSpec naming the field and the policy, no Job.
    let refused = [
        (
            "miner",
            report("miner", &table, "miner.csv").set("spec.worker.image", "evil.example/miner:1"),
            "spec.worker.image",
            "--allowed-worker-images",
        ),
        (
            "admin-sa",
            report("admin-sa", &table, "sa.csv")
                .set("spec.worker.serviceAccountName", "cluster-admin"),
            "spec.worker.serviceAccountName",
            "--allow-service-account-override",
        ),
    ];
    for (name, spec, _, _) in &refused {
        env.apply(ns, &spec.build_yaml()).await;
        assert_eq!(
            env.rjs(ns)
                .get(name)
                .await
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some(*name)
        );
    }
    for (name, _, field, policy) in &refused {
        let failed = env
            .wait_phase(ns, name, Phase::Failed, common::PATIENCE)
            .await;
        let status = failed.status.unwrap();
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .unwrap();
        assert_eq!(condition.reason, "InvalidSpec", "{name}");
        assert!(
            condition.message.contains(field) && condition.message.contains(policy),
            "{name}: {:?} should name {field} and {policy}",
            condition.message
        );
    }

    // Within the policy, with pod settings: exact output, and the pods carry them.
    let spec = report("labelled", &table, "labelled.csv")
        .set(
            "spec.worker.podLabels",
            json!({"team": "analytics", "cost": "team-42"}),
        )
        .set(
            "spec.worker.podAnnotations",
            json!({"example.com/owner": "analytics"}),
        )
        .set(
            "spec.worker.env",
            json!([
                {"name": "REPORT_NOTE", "value": "set-by-the-spec"},
                {"name": "REPORT_FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
            ]),
        );
    env.apply(ns, &spec.build_yaml()).await;
    env.wait_phase(ns, "labelled", Phase::Succeeded, common::PATIENCE)
        .await;
    db.assert_report_matches(
        &env.pvc_dir(ns).join("labelled.csv"),
        &db.all("src"),
        "",
        false,
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels("reporting.dev/reportjob=labelled"))
        .await
        .unwrap()
        .items;
    let stages: std::collections::BTreeSet<String> = listed
        .iter()
        .map(|p| p.metadata.labels.as_ref().unwrap()["reporting.dev/stage"].clone())
        .collect();
    assert!(
        stages.contains("plan") && stages.contains("chunks") && stages.contains("assemble"),
        "pods of every stage: {stages:?}"
    );
    for pod in &listed {
        let name = pod.metadata.name.clone().unwrap();
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "analytics", "{name}");
        assert_eq!(labels["cost"], "team-42", "{name}: the spec wins per key");
        assert_eq!(
            labels["platform"], "reports",
            "{name}: the controller's default"
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "reportjob",
            "{name}"
        );
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations["example.com/owner"], "analytics", "{name}");
        assert_eq!(annotations["example.com/platform"], "1", "{name}");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env_json = serde_json::to_value(container.env.as_ref().unwrap()).unwrap();
        let var = |n: &str| {
            env_json
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("{name}: no env {n} in {env_json}"))
        };
        assert_eq!(var("REPORT_NOTE")["value"], "set-by-the-spec");
        assert_eq!(
            var("REPORT_FROM_SECRET")["valueFrom"]["secretKeyRef"],
            json!({"name": "db", "key": "url"})
        );
        assert_eq!(var("HTTPS_PROXY_NOTE")["value"], "from-the-platform");
        let resources = serde_json::to_value(container.resources.as_ref().unwrap()).unwrap();
        assert_eq!(resources["requests"]["memory"], "64Mi", "{name}");
        assert_eq!(resources["limits"]["memory"], "256Mi", "{name}");
    }

    // The refused ReportJobs created no Job; the good one did.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("labelled-")),
        "Jobs only for the ReportJob within the policy: {names:?}"
    );
    assert!(names.contains(&"labelled-chunks".to_string()), "{names:?}");
}

/// The controller's arguments as the chart renders them for `stagePods`, less those the
/// test sets itself (image, metrics address, log format).
fn chart_controller_args(stage_pods: &serde_json::Value) -> Vec<String> {
    let out = std::process::Command::new("helm")
        .args([
            "template",
            "reportjob",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/reportjob"),
        ])
        .args(["--show-only", "templates/deployment.yaml"])
        .args(["--set", "leaderElection.enabled=false"])
        .arg("--set-json")
        .arg(format!("stagePods={stage_pods}"))
        .output()
        .expect("helm on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployment: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[0], "controller");
    let mut kept = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if ["--worker-image", "--metrics-addr", "--log-format"].contains(&arg.as_str()) {
            rest.next();
        } else {
            kept.push(arg.clone());
        }
    }
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_stage_pods_values_reach_the_pods() {
    let mut db = TestDb::new("chart_stage_pods").await;
    db.numbers(600).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let ns = env.tenant("chartpods").await;
    let stage_pods = json!({
        "resources": {"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"memory": "200Mi"}},
        "podLabels": {"sidecar.istio.io/inject": "false"},
        "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        "tolerations": [{"key": "reports", "operator": "Exists", "effect": "NoSchedule"}],
        "env": [{"name": "SSL_CERT_FILE", "value": "/etc/ca/ca.crt"}],
    });
    let args = chart_controller_args(&stage_pods);
    assert!(
        args.contains(&"--leader-election=false".to_string()),
        "{args:?}"
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--metrics-addr", &addr]);
    env.start_controller(&all);

    env.apply(ns, &report("charted", &table, "charted.csv").build_yaml())
        .await;
    env.wait_phase(ns, "charted", Phase::Succeeded, common::PATIENCE)
        .await;
    db.assert_report_matches(
        &env.pvc_dir(ns).join("charted.csv"),
        &db.all("src"),
        "",
        false,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels("reporting.dev/reportjob=charted"))
        .await
        .unwrap()
        .items;
    let chunk_pod = listed
        .iter()
        .find(|p| p.metadata.labels.as_ref().unwrap()["reporting.dev/stage"] == "chunks")
        .expect("a chunk pod");
    let pod = serde_json::to_value(chunk_pod).unwrap();
    assert_eq!(
        pod["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "true"
    );
    // The pod's own tolerations, then the ones the DefaultTolerationSeconds admission adds to
    // every pod (not-ready and unreachable, 300 s).
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    let ours = stage_pods["tolerations"].as_array().unwrap();
    assert_eq!(&tolerations[..ours.len()], &ours[..], "{tolerations:?}");
    assert!(
        tolerations[ours.len()..]
            .iter()
            .all(|t| t["tolerationSeconds"] == 300),
        "{tolerations:?}"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["resources"], stage_pods["resources"]);
    let env_vars = container["env"].as_array().unwrap();
    assert!(
        env_vars.contains(&json!({"name": "SSL_CERT_FILE", "value": "/etc/ca/ca.crt"})),
        "{env_vars:?}"
    );
    // The built-in pod security context: the image's user, and fsGroup for the volume.
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 65532);
}
