//! `logs -f` and `submit --wait --log` following real stage pods the test creates, run by the
//! node agent and read through the API server: each pod prints its first lines, then prints
//! what the test hands it through its volume (the PVC `reports`, which the test writes from the
//! host) and exits 0 when handed nothing; the test writes the ReportJob's status.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{Cli, complete, manifest};
use crate::common::eventually;
use crate::common::testbed::WORKER_IMAGE;

/// Where the pods mount the PVC `reports`.
const MOUNT: &str = "/reportjob/output";

/// A stage pod of ReportJob `orders` (labelled as the controller's Jobs label them) that prints
/// `lines`, then each file `<name>.<n>` (n = 1, 2, ...) of its volume as it appears, and exits 0
/// at the first empty one ([`say`], [`end`]).
async fn stage_pod(cli: &Cli, name: &str, stage: &str, index: Option<&str>, lines: &[&str]) {
    assert!(lines.iter().all(|l| !l.contains('\'')));
    let printed: Vec<String> = lines.iter().map(|l| format!("'{l}'")).collect();
    let script = format!(
        "printf '%s\\n' {printed}; n=1; while :; do f={MOUNT}/{name}.$n; \
         until [ -e $f ]; do /bin/sleep 0.05; done; [ -s $f ] || exit 0; /bin/cat $f; \
         n=$((n+1)); done",
        printed = printed.join(" ")
    );
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "reporting.dev/reportjob": "orders", "reporting.dev/stage": stage}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "reportjob", "image": WORKER_IMAGE,
                            "command": ["/bin/sh", "-c", script],
                            "volumeMounts": [{"name": "signals", "mountPath": MOUNT, "readOnly": true}]}],
            "volumes": [{"name": "signals", "persistentVolumeClaim": {"claimName": "reports"}}],
        },
    });
    if let Some(i) = index {
        pod["metadata"]["annotations"] = json!({"batch.kubernetes.io/job-completion-index": i});
    }
    let pods: Api<Pod> = Api::namespaced(cli.client(), cli.ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
}

/// Waits until pod `name` is in `phase`.
async fn phase(cli: &Cli, name: &str, phase: &str) {
    let pods: Api<Pod> = Api::namespaced(cli.client(), cli.ns);
    eventually(&format!("pod {name} to be {phase}"), || {
        let pods = pods.clone();
        async move {
            let pod = pods.get(name).await.ok()?;
            (pod.status?.phase.as_deref() == Some(phase)).then_some(())
        }
    })
    .await;
}

/// Hands pod `pod` the next file to print (written whole, then renamed into place).
fn say(cli: &Cli, pod: &str, text: &str) {
    let dir = cli.volume();
    std::fs::create_dir_all(&dir).unwrap();
    let n = (1..)
        .find(|n| !dir.join(format!("{pod}.{n}")).exists())
        .unwrap();
    let part = dir.join(format!(".{pod}.part"));
    std::fs::write(&part, text).unwrap();
    std::fs::rename(&part, dir.join(format!("{pod}.{n}"))).unwrap();
}

/// Tells pod `pod` to exit 0 and waits until it has Succeeded.
async fn end(cli: &Cli, pod: &str) {
    say(cli, pod, "");
    phase(cli, pod, "Succeeded").await;
}

/// The lines of one prefix, in order.
fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix).map(|r| r.trim_start().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_every_stage_pod_until_the_reportjob_ends() {
    let cli = Cli::with_volume("logs-follow").await;
    let ns = cli.ns;
    cli.create("orders", ns, "a").await;
    stage_pod(
        &cli,
        "orders-plan-a",
        "plan",
        None,
        &["planning", "planned 2 chunks"],
    )
    .await;
    phase(&cli, "orders-plan-a", "Running").await;
    let following = cli.spawn(&["logs", "orders", "-f"]);
    following.shows("[plan] planned 2 chunks").await;
    end(&cli, "orders-plan-a").await;
    stage_pod(
        &cli,
        "orders-chunks-0-x",
        "chunks",
        Some("0"),
        &["chunk 0 start"],
    )
    .await;
    stage_pod(
        &cli,
        "orders-chunks-1-y",
        "chunks",
        Some("1"),
        &["chunk 1 start"],
    )
    .await;
    following.shows("[chunks/1] chunk 1 start").await;
    following.shows("[chunks/0] chunk 0 start").await;
    say(&cli, "orders-chunks-0-x", "chunk 0 rows 500\n");
    following.shows("[chunks/0] chunk 0 rows 500").await;
    say(&cli, "orders-chunks-1-y", "chunk 1 done\n");
    end(&cli, "orders-chunks-0-x").await;
    end(&cli, "orders-chunks-1-y").await;
    // The assemble pod runs and ends between two looks (told to end before it starts): its
    // log is read at the end too.
    say(&cli, "orders-assemble-z", "");
    stage_pod(
        &cli,
        "orders-assemble-z",
        "assemble",
        None,
        &["assembled 1000 rows"],
    )
    .await;
    phase(&cli, "orders-assemble-z", "Succeeded").await;
    cli.set_status(
        "orders",
        ns,
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
        (code, err),
        (1, format!("error: ReportJob {ns}/nothing not found\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_log_prints_the_pods_lines_beside_the_progress() {
    let cli = Cli::with_volume("logs-submit").await;
    let ns = cli.ns;
    let file = cli.dir().join("rj.json");
    std::fs::write(&file, manifest("orders", ns, "a").to_string()).unwrap();
    let submitting = cli.spawn(&["submit", "-f", file.to_str().unwrap(), "--wait", "--log"]);
    submitting.shows("orders created").await;
    stage_pod(&cli, "orders-plan-a", "plan", None, &["planned 1 chunk"]).await;
    submitting.shows("[plan] planned 1 chunk").await;
    end(&cli, "orders-plan-a").await;
    cli.set_status(
        "orders",
        ns,
        complete(json!({"location": "orders.csv", "rows": 1, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    let (code, out, err) = submitting.finished().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("orders\nReportJob {ns}/orders succeeded in ")),
        "{out}"
    );
    assert_eq!(lines_of(&err, "[plan]"), ["planned 1 chunk"], "{err}");
    let (code, _, err) = cli
        .run(&["submit", "-f", file.to_str().unwrap(), "--log"])
        .await;
    assert_eq!(code, 2, "--log needs --wait: {err}");
}
