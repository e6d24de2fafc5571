//! Results that cannot be forged: someone who may create pods in the namespace creates a
//! pod naming the assemble Job as its controller owner, with the stage labels, whose
//! termination message claims `{"result":"Assembled","rows":42,...}`. The real report is
//! published and the forged figures never reach the status: the real Job controller does not
//! count a pod it did not create (no job-tracking finalizer), and the controller accepts a
//! result only from a pod whose spec is the Job's template (unit tests in
//! `controller::pod_identity` and the decision tests cover the refusal and the rerun).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use reportjob::api::Phase;
use serde_json::json;

use crate::common;
use common::TestDb;
use common::testbed::{Env, report};

/// A webhook receiver that answers 200 after `delay`: it keeps the real assemble pod busy
/// (it notifies before it writes its result) while the forged pod finishes.
async fn slow_receiver(delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_pod_owned_by_the_assemble_job_is_ignored_and_the_real_report_published() {
    let mut db = TestDb::new("forged_pod").await;
    db.exec(
        "CREATE TABLE src (id bigint PRIMARY KEY, note text);
         INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 700) AS g;
         ANALYZE src;",
    )
    .await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let ns = env.tenant("forge").await;
    let url = slow_receiver(Duration::from_secs(6)).await;
    env.secret(ns, "hook", &[("url", &url)]).await;
    env.start_single_controller();
    let spec = report("r", &table, "out/r.csv").notify("hook", None, Some("success"));
    env.apply(ns, &spec.build_yaml()).await;

    // The attacker waits for the assemble Job and reads its UID and pod labels.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let job = common::eventually("the assemble Job", || async {
        jobs.get_opt("r-assemble").await.ok().flatten()
    })
    .await;
    let uid = job.metadata.uid.clone().unwrap();
    let template = job.spec.as_ref().unwrap().template.clone();
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    let container = template.spec.as_ref().unwrap().containers[0].clone();
    let forged_result = json!({
        "result": "Assembled", "rows": 42, "bytes": 4200,
        "sha256": "deadbeef".repeat(8),
        "location": "/reportjob/output/out/r.csv"
    })
    .to_string();
    let forged: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "r-assemble-forged",
            "labels": labels,
            "annotations": job.metadata.annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "r-assemble",
                "uid": uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{
                "name": container.name,
                // The worker image itself, with its environment: only the command differs.
                "image": container.image,
                "env": container.env,
                "command": ["/bin/sh", "-c", "printf '%s' \"$FORGED\" > /dev/termination-log"],
            }]
        }
    }))
    .unwrap();
    let mut forged = forged;
    forged.spec.as_mut().unwrap().containers[0]
        .env
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(json!({"name": "FORGED", "value": forged_result})).unwrap());
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    pods.create(&PostParams::default(), &forged).await.unwrap();

    let rj = env
        .wait_for(ns, "r", common::PATIENCE, "Succeeded or Failed", |rj| {
            matches!(
                rj.status.as_ref().and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::Failed)
            )
        })
        .await;
    let status = rj.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    let output = status.output.clone().unwrap();
    assert_eq!(output.rows, 700, "the real row count, not the forged 42");
    assert_ne!(output.sha256, "deadbeef".repeat(8));
    let file = common::testbed::output_file(&env, ns, "out/r.csv");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(common::sha256_hex(&bytes), output.sha256);
    db.assert_report_matches(&file, &db.all("src"), "", false)
        .await;
    // The real Job controller counts only the pods it created (they carry its job-tracking
    // finalizer), so the forged pod's success never completes the Job; where a controller
    // does see the forged pod as a candidate result, it refuses it by name. Either way the
    // forged 42 rows never reach the status.
    if let Some(refused) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ForeignResultRefused")
    {
        assert!(
            refused.message.contains("r-assemble-forged"),
            "{}",
            refused.message
        );
    }
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.message.contains("42 rows")),
        "{:#?}",
        status.conditions
    );
}
