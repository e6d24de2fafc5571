//! Stage pods on a cluster as a platform team meets it, on the real control plane: a namespace whose
//! ResourceQuota requires limits (met by the controller's default resources; named in the
//! status when they are off), an image that cannot be pulled, a freshly provisioned volume
//! (root-owned, 0755) written through fsGroup (and refused without it), a forged pod that
//! claims a stage's result, and a bucket endpoint that answers with credentials.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::common;

use common::TestDb;
use common::free_port;
use common::testbed::{Env, WORKER_IMAGE, report};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, ResourceQuota};
use kube::api::{Api, ListParams, PostParams};
use reportjob::api::{Phase, ReportJob};
use reportjob::stage_protocol::StageResult;
use serde_json::json;

/// The Failed condition's reason and message.
fn failure(rj: &ReportJob) -> (String, String) {
    let c = rj
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .unwrap()
        .clone();
    (c.reason, c.message)
}

/// The notes of the Events of a namespace, or of those recorded on ReportJob `name` with
/// `reason`.
async fn event_notes(env: &Env, ns: &str, about: Option<(&str, &str)>) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            about.is_none_or(|(name, reason)| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
        })
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_pulls_and_volume_ownership_are_met_by_the_defaults_or_named_in_the_status() {
    let mut db = TestDb::new("stage_start").await;
    db.numbers(1_500).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let quota = env.tenant("quota").await;
    let pull = env.tenant("pull").await;
    let fresh_a = env.tenant("fresh-a").await;
    let fresh_b = env.tenant("fresh-b").await;
    // Every pod of `quota` must state its memory limit and requests.
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), quota);
    let compute = json!({"metadata": {"name": "compute"}, "spec": {"hard": {
        "requests.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi"}}});
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(compute).unwrap(),
        )
        .await
        .unwrap();

    // The controller's defaults: resources that satisfy the quota, and fsGroup for fresh
    // volumes. Both ReportJobs complete, exactly.
    let addr = format!("127.0.0.1:{}", free_port());
    env.start_controller(&["--leader-election=false", "--metrics-addr", &addr]);
    for ns in [quota, fresh_a] {
        env.apply(ns, &report("fits", &table, "fits.csv").build_yaml())
            .await;
    }
    for ns in [quota, fresh_a] {
        env.wait_phase(ns, "fits", Phase::Succeeded, common::PATIENCE)
            .await;
        db.assert_report_matches(&env.pvc_dir(ns).join("fits.csv"), &db.all("src"), "", false)
            .await;
    }
    env.kill_controller(0);

    // A controller with the defaults off: no resources, and a pod security context without
    // fsGroup. It may run one more image, which no registry has.
    let addr = format!("127.0.0.1:{}", free_port());
    let missing_image = "registry.example/reportjob-missing:1";
    env.start_controller(&[
        "--leader-election=false",
        "--metrics-addr",
        &addr,
        "--stage-pods",
        r#"{"resources": {}, "podSecurityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true}}"#,
        "--allowed-worker-images",
        &format!("{WORKER_IMAGE},{missing_image}"),
    ]);
    let quick = |spec: common::spec::SpecBuilder| {
        spec.set("spec.worker.startTimeoutSeconds", 30).build_yaml()
    };
    env.apply(quota, &quick(report("unfit", &table, "unfit.csv")))
        .await;
    env.apply(
        pull,
        &quick(report("unpulled", &table, "unpulled.csv").set("spec.worker.image", missing_image)),
    )
    .await;
    env.apply(
        fresh_b,
        &report("no-fsgroup", &table, "no.csv").build_yaml(),
    )
    .await;

    // The quota is named while the run waits, in the message and in an Event.
    let waiting = env
        .wait_for(quota, "unfit", common::PATIENCE, "named the quota", |rj| {
            rj.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("cannot create pods"))
        })
        .await;
    let message = waiting.status.unwrap().message.unwrap();
    // The snapshot holder and the plan Job both start at once (the plan pod waits for the
    // snapshot); either may be the one named.
    let stuck = |m: &str| {
        [
            "the snapshot Job cannot create pods: ",
            "the plan Job cannot create pods: ",
        ]
        .iter()
        .any(|p| m.contains(p))
    };
    assert!(
        stuck(&message) && message.contains("compute") && message.contains("limits.memory"),
        "{message}"
    );
    // Then the start timeout fails it, and the stuck Job goes.
    let failed = env
        .wait_phase(quota, "unfit", Phase::Failed, common::PATIENCE)
        .await;
    let (reason, message) = failure(&failed);
    assert_eq!(reason, "StartTimeout");
    assert!(
        message.starts_with("no pod of the ")
            && message.contains(" Job ran for 30s (spec.worker.startTimeoutSeconds): ")
            && stuck(&message)
            && message.contains("compute"),
        "{message}"
    );
    let notes = event_notes(&env, quota, Some(("unfit", "CannotCreatePods"))).await;
    assert!(
        notes.iter().any(|n| n.contains("compute")),
        "an Event names the quota: {notes:?}"
    );
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), quota);
    common::eventually("every stuck Job to be deleted", || async {
        let left = jobs
            .list(&ListParams::default().labels("reporting.dev/reportjob=unfit"))
            .await
            .unwrap()
            .items;
        left.is_empty().then_some(())
    })
    .await;

    // The image that cannot be pulled: named, then the timeout, and no pod left trying.
    let failed = env
        .wait_phase(pull, "unpulled", Phase::Failed, common::PATIENCE)
        .await;
    let (reason, message) = failure(&failed);
    assert_eq!(reason, "StartTimeout");
    assert!(
        message.contains("cannot start: ") && message.contains("ImagePull"),
        "{message}"
    );
    let notes = event_notes(&env, pull, Some(("unpulled", "PodCannotStart"))).await;
    assert!(
        notes.iter().any(|n| n.contains(missing_image)),
        "an Event names the image: {notes:?}"
    );
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), pull);
    common::eventually("no pod left pulling", || async {
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;

    // Without fsGroup the fresh volume is root's: the plan cannot stage, and says why.
    let failed = env
        .wait_phase(fresh_b, "no-fsgroup", Phase::Failed, common::PATIENCE)
        .await;
    let (reason, message) = failure(&failed);
    // The snapshot holder is the first to write to the volume; a permission error is
    // permanent, so the run fails at once rather than trying new snapshots.
    assert_eq!(reason, "SnapshotFailed");
    assert!(message.contains("ermission denied"), "{message}");
    assert!(!env.pvc_dir(fresh_b).join("no.csv").exists());
}

/// A pod (not created by the ReportJob's Jobs) that carries the stage labels and writes a
/// result line as its termination message.
fn forged_pod(name: &str, reportjob: &str, stage: &str, result: &StageResult) -> Pod {
    let line = result.to_line().replace('\'', "");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "reporting.dev/reportjob": reportjob,
            "reporting.dev/stage": stage,
            "app.kubernetes.io/managed-by": "reportjob",
        }},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "reportjob", "image": WORKER_IMAGE,
            "command": ["/bin/sh", "-c", format!("printf '%s' '{line}' > /dev/termination-log")],
        }]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_and_remote_bodies_never_reach_the_status() {
    let mut db = TestDb::new("forged").await;
    db.numbers(2_000).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let victim = env.tenant("victim").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), victim);
    let forgeries = [
        forged_pod(
            "a-forged-plan",
            "real",
            "plan",
            &StageResult::Planned {
                run_id: "rj-0123456789ab".into(),
                chunks: 1,
                digest: format!("sha256:{}", "0".repeat(64)),
                estimated_rows: 1,
                strategy: "keyRange".into(),
                warnings: vec![],
            },
        ),
        forged_pod(
            "a-forged-assemble",
            "real",
            "assemble",
            &StageResult::Assembled {
                rows: 7,
                bytes: 7,
                sha256: "0".repeat(64),
                location: "/reportjob/output/elsewhere.csv".into(),
                url: Some("https://evil.example/download".into()),
                url_expires_at: None,
                notified: None,
                snapshot: None,
                file_count: None,
                files: Vec::new(),
            },
        ),
    ];
    for pod in &forgeries {
        pods.create(&PostParams::default(), pod).await.unwrap();
    }
    // Both forged pods have finished with their claims before the ReportJob exists.
    for pod in &forgeries {
        let name = pod.metadata.name.clone().unwrap();
        common::eventually(&format!("{name} to finish"), || async {
            let p = pods.get(&name).await.unwrap();
            (p.status.and_then(|s| s.phase).as_deref() == Some("Succeeded")).then_some(())
        })
        .await;
    }

    // A bucket endpoint that answers everything with credentials, as a metadata service
    // would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let body = r#"{"AccessKeyId":"ASIAFORGEDFORGED","SecretAccessKey":"wJalrXUtnFEMIsecret","Token":"IQoJb3JpZ2luX2VjEForged"}"#;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    env.secret(
        victim,
        "s3",
        &[
            ("AWS_ACCESS_KEY_ID", "reportjob"),
            ("AWS_SECRET_ACCESS_KEY", "reportjob-secret"),
        ],
    )
    .await;

    env.start_single_controller();
    env.apply(victim, &report("real", &table, "real.csv").build_yaml())
        .await;
    let bucket = report("leaky", &table, "leaky.csv")
        .bucket("s3://reports/leaky.csv")
        .bucket_field("endpoint", format!("http://127.0.0.1:{port}"))
        .bucket_field("region", "us-east-1")
        .bucket_field("pathStyle", true)
        .bucket_field("credentialsSecretRef", json!({"name": "s3"}));
    env.apply(victim, &bucket.build_yaml()).await;

    // The real run's own results, not the forged ones.
    let done = env
        .wait_phase(victim, "real", Phase::Succeeded, common::PATIENCE)
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.plan.as_ref().unwrap().chunks, 4, "2000 rows / 500");
    assert_ne!(
        status.plan.as_ref().unwrap().digest,
        format!("sha256:{}", "0".repeat(64))
    );
    let output = status.output.unwrap();
    assert_eq!(output.rows, 2_000);
    assert_eq!(output.location, "pvc://reports/real.csv");
    assert_eq!(output.url, None);
    db.assert_report_matches(
        &env.pvc_dir(victim).join("real.csv"),
        &db.all("src"),
        "",
        false,
    )
    .await;

    // The bucket run fails, and nothing of the endpoint's body is shown anywhere.
    let failed = env
        .wait_phase(victim, "leaky", Phase::Failed, common::PATIENCE)
        .await;
    let everything = format!(
        "{}\n{:?}\n{}\n{}",
        serde_json::to_string(&failed.status).unwrap(),
        event_notes(&env, victim, None).await,
        env.pod_logs(victim),
        env.controller_log(0),
    );
    let (_, message) = failure(&failed);
    assert!(
        message.contains("400"),
        "the status names the HTTP status: {message}"
    );
    for secret in [
        "ASIAFORGEDFORGED",
        "wJalrXUtnFEMIsecret",
        "IQoJb3JpZ2lu",
        "AccessKeyId",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into the status, events or logs:\n{everything}"
        );
    }
}
