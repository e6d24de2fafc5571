//! `logs -f` and `submit --wait --log` following pods the test creates and runs (it plays the
//! kubelet: pod phases and the log files kubesim serves).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Cli, complete, manifest};

/// A stage pod of ReportJob `orders` (as the controller's Jobs label them), Running, with a
/// log file kubesim serves.
async fn stage_pod(cli: &Cli, name: &str, stage: &str, index: Option<&str>, log: &str) {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "reporting.dev/reportjob": "orders", "reporting.dev/stage": stage}},
        "spec": {"containers": [{"name": "reportjob", "image": "reportjob"}]},
    });
    if let Some(i) = index {
        pod["metadata"]["annotations"] = json!({"batch.kubernetes.io/job-completion-index": i});
    }
    let logs = cli.cluster.data_dir().join("logs").join("default");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join(format!("{name}.log")), log).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(cli.client());
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    set_pod_phase(cli, name, "Running").await;
}

async fn set_pod_phase(cli: &Cli, name: &str, phase: &str) {
    let pods: Api<Pod> = Api::default_namespaced(cli.client());
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

fn append(cli: &Cli, pod: &str, text: &str) {
    use std::io::Write;
    let path = cli
        .cluster
        .data_dir()
        .join("logs/default")
        .join(format!("{pod}.log"));
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The lines of one prefix, in order.
fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix).map(|r| r.trim_start().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_every_stage_pod_until_the_reportjob_ends() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "a").await;
    stage_pod(
        &cli,
        "orders-plan-a",
        "plan",
        None,
        "planning\nplanned 2 chunks\n",
    )
    .await;
    let following = cli.spawn(&["logs", "orders", "-f"]);
    following.shows("[plan] planned 2 chunks").await;
    set_pod_phase(&cli, "orders-plan-a", "Succeeded").await;
    stage_pod(
        &cli,
        "orders-chunks-0-x",
        "chunks",
        Some("0"),
        "chunk 0 start\n",
    )
    .await;
    stage_pod(
        &cli,
        "orders-chunks-1-y",
        "chunks",
        Some("1"),
        "chunk 1 start\n",
    )
    .await;
    following.shows("[chunks/1] chunk 1 start").await;
    following.shows("[chunks/0] chunk 0 start").await;
    append(&cli, "orders-chunks-0-x", "chunk 0 rows 500\n");
    following.shows("[chunks/0] chunk 0 rows 500").await;
    append(&cli, "orders-chunks-1-y", "chunk 1 done\n");
    set_pod_phase(&cli, "orders-chunks-0-x", "Succeeded").await;
    set_pod_phase(&cli, "orders-chunks-1-y", "Succeeded").await;
    // The assemble pod runs and ends between two looks: its log is read at the end too.
    stage_pod(
        &cli,
        "orders-assemble-z",
        "assemble",
        None,
        "assembled 1000 rows\n",
    )
    .await;
    set_pod_phase(&cli, "orders-assemble-z", "Succeeded").await;
    cli.set_status(
        "orders",
        "default",
        complete(json!({"location": "orders.csv", "rows": 1000, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    let (code, out, err) = following.finished().await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines_of(&out, "[plan]"),
        ["planning", "planned 2 chunks"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[chunks/0]"),
        ["chunk 0 start", "chunk 0 rows 500"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[chunks/1]"),
        ["chunk 1 start", "chunk 1 done"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[assemble]"),
        ["assembled 1000 rows"],
        "{out}"
    );
    assert_eq!(out.lines().count(), 7, "{out}");

    // Only one chunk, of a finished ReportJob: its whole log, then the end.
    let (code, out, _) = cli.run(&["logs", "orders", "-f", "--chunk", "1"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "[chunks/1] chunk 1 start\n[chunks/1] chunk 1 done\n")
    );
    let (code, _, err) = cli.run(&["logs", "nothing", "-f"]).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "error: ReportJob default/nothing not found\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_log_prints_the_pods_lines_beside_the_progress() {
    let cli = Cli::start().await;
    let file = cli.dir.path().join("rj.json");
    std::fs::write(&file, manifest("orders", "default", "a").to_string()).unwrap();
    let submitting = cli.spawn(&["submit", "-f", file.to_str().unwrap(), "--wait", "--log"]);
    submitting.shows("orders created").await;
    stage_pod(&cli, "orders-plan-a", "plan", None, "planned 1 chunk\n").await;
    submitting.shows("[plan] planned 1 chunk").await;
    set_pod_phase(&cli, "orders-plan-a", "Succeeded").await;
    cli.set_status(
        "orders",
        "default",
        complete(json!({"location": "orders.csv", "rows": 1, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    let (code, out, err) = submitting.finished().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("orders\nReportJob default/orders succeeded in "),
        "{out}"
    );
    assert_eq!(lines_of(&err, "[plan]"), ["planned 1 chunk"], "{err}");
    let (code, _, err) = cli
        .run(&["submit", "-f", file.to_str().unwrap(), "--log"])
        .await;
    assert_eq!(code, 2, "--log needs --wait: {err}");
}
