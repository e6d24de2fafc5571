//! Round two of kubesim's fidelity, over HTTP with real kubectl and real processes: upstream's server-side
//! printing (`kubectl get` columns and pod STATUS), ResourceQuota and LimitRange admission with upstream's
//! messages, the Job controller's FailedCreate events and back-off, missing image pull secrets, and
//! `readOnlyRootFilesystem`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Env, text};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const CEILING: Duration = Duration::from_secs(90);

async fn start(run_pods: bool) -> Env {
    common::start(run_pods, &[("busybox", "/bin/sh")], &[]).await
}

async fn kubectl_in(kc: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kc).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("kubectl must be on PATH; these tests do not skip without it");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

async fn ok(kc: &Path, args: &[&str]) -> String {
    let o = kubectl_in(kc, args, None).await;
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl apply -f -` of one object; the output (stdout and stderr) and whether it succeeded.
async fn apply(kc: &Path, ns: &str, obj: &Value) -> (bool, String) {
    let o = kubectl_in(kc, &["-n", ns, "apply", "-f", "-"], Some(&obj.to_string())).await;
    (o.status.success(), text(&o))
}

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + CEILING;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, image: &str, script: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": ["/bin/sh", "-c", script]}]}})
}

async fn namespace(env: &Env, ns: &str) {
    ok(&env.kc, &["create", "namespace", ns]).await;
}

/// The header line of `kubectl get` as words.
fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The row of `kubectl get` output whose first word is `name`, as words.
fn row(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|w| w.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"))
}

async fn pod_phase(api: &Api<Pod>, name: &str) -> Option<String> {
    api.get(name).await.ok()?.status?.phase
}

async fn wait_phase(api: &Api<Pod>, name: &str, want: &[&str]) -> String {
    wait_for(&format!("pod {name} in {want:?}"), || async {
        pod_phase(api, name)
            .await
            .filter(|p| want.contains(&p.as_str()))
    })
    .await
}

async fn events_for(client: &kube::Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut evs: Vec<Event> = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect();
    evs.sort_by_key(|e| {
        e.metadata
            .resource_version
            .clone()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
    });
    evs
}

// ---------------------------------------------------------------------------------------------
// Tables

#[tokio::test]
async fn kubectl_get_prints_upstream_columns_and_pod_status() {
    let env = start(true).await;
    let kc = &env.kc;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for (name, script) in [
        ("done", "true"),
        ("broken", "exit 3"),
        ("busy", "sleep 600"),
    ] {
        assert!(apply(kc, "default", &pod(name, "busybox", script)).await.0);
    }
    assert!(
        apply(
            kc,
            "default",
            &pod("nopull", "registry.example/none:1", "true")
        )
        .await
        .0
    );
    let mut cfg = pod("nosecret", "busybox", "true");
    cfg["spec"]["containers"][0]["env"] =
        json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]);
    assert!(apply(kc, "default", &cfg).await.0);
    wait_phase(&api, "done", &["Succeeded"]).await;
    wait_phase(&api, "broken", &["Failed"]).await;
    wait_phase(&api, "busy", &["Running"]).await;
    let waiting = |n: &'static str, reasons: &'static [&'static str]| {
        let api = api.clone();
        async move {
            wait_for(&format!("{n} waiting in {reasons:?}"), || async {
                let p = api.get(n).await.ok()?;
                let r = p
                    .status?
                    .container_statuses?
                    .first()?
                    .state
                    .clone()?
                    .waiting?
                    .reason?;
                reasons.contains(&r.as_str()).then_some(r)
            })
            .await
        }
    };
    waiting("nopull", &["ErrImagePull", "ImagePullBackOff"]).await;
    waiting("nosecret", &["CreateContainerConfigError"]).await;

    let out = ok(kc, &["get", "pods"]).await;
    assert_eq!(
        header(&out),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(row(&out, "done")[1..4], ["0/1", "Completed", "0"], "{out}");
    assert_eq!(row(&out, "broken")[1..4], ["0/1", "Error", "0"], "{out}");
    assert_eq!(row(&out, "busy")[1..4], ["1/1", "Running", "0"], "{out}");
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&row(&out, "nopull")[2].as_str()),
        "{out}"
    );
    assert_eq!(
        row(&out, "nosecret")[2],
        "CreateContainerConfigError",
        "{out}"
    );
    let wide = ok(kc, &["get", "pods", "-o", "wide"]).await;
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{wide}"
    );
    assert_eq!(
        row(&wide, "busy")[5..],
        // Bound to the cluster's one node by the scheduler stand-in.
        ["127.0.0.1", "kubesim", "<none>", "<none>"],
        "{wide}"
    );

    ok(
        kc,
        &[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "/bin/sh",
            "-c",
            "true",
        ],
    )
    .await;
    wait_for("job once complete", || async {
        let out = ok(kc, &["get", "job", "once"]).await;
        (row(&out, "once")[1] == "Complete").then_some(())
    })
    .await;
    let out = ok(kc, &["get", "jobs"]).await;
    assert_eq!(
        header(&out),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{out}"
    );
    assert_eq!(row(&out, "once")[1..3], ["Complete", "1/1"], "{out}");

    ok(
        kc,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    )
    .await;
    ok(kc, &["create", "configmap", "c", "--from-literal=a=1"]).await;
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "v"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    assert!(apply(kc, "default", &pvc).await.0);
    let out = ok(kc, &["get", "secrets"]).await;
    assert_eq!(header(&out), ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    assert_eq!(row(&out, "s")[1..3], ["Opaque", "2"], "{out}");
    let out = ok(kc, &["get", "configmaps", "c"]).await;
    assert_eq!(header(&out), ["NAME", "DATA", "AGE"], "{out}");
    assert_eq!(row(&out, "c")[1], "1");
    let out = ok(kc, &["get", "namespaces"]).await;
    assert_eq!(header(&out), ["NAME", "STATUS", "AGE"], "{out}");
    assert_eq!(row(&out, "default")[1], "Active");
    let out = ok(kc, &["get", "pvc"]).await;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(row(&out, "v")[1], "Bound");
    assert_eq!(row(&out, "v")[3..5], ["1Gi", "RWO"], "{out}");
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ResourceQuota and LimitRange admission

fn quota(hard: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": hard}})
}

async fn quota_status(env: &Env, ns: &str) -> Value {
    let out = ok(&env.kc, &["-n", ns, "get", "quota", "q", "-o", "json"]).await;
    serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
}

#[tokio::test]
async fn quota_counts_pods_and_jobs_and_refuses_with_upstream_message() {
    let env = start(false).await;
    let kc = &env.kc;
    namespace(&env, "q1").await;
    assert!(
        apply(
            kc,
            "q1",
            &quota(json!({"pods": "1", "count/jobs.batch": "1"}))
        )
        .await
        .0
    );
    let st = wait_for("quota status", || async {
        let st = quota_status(&env, "q1").await;
        st["used"].is_object().then_some(st)
    })
    .await;
    assert_eq!(
        st,
        json!({"hard": {"pods": "1", "count/jobs.batch": "1"}, "used": {"pods": "0", "count/jobs.batch": "0"}})
    );

    let (fine, out) = apply(kc, "q1", &pod("a", "busybox", "true")).await;
    assert!(fine, "{out}");
    assert_eq!(quota_status(&env, "q1").await["used"]["pods"], "1");
    let (fine, out) = apply(kc, "q1", &pod("b", "busybox", "true")).await;
    assert!(!fine, "a second pod must be refused: {out}");
    assert!(
        out.contains("Error from server (Forbidden): error when creating \"STDIN\": pods \"b\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
        "{out}"
    );
    // A pod that has finished no longer counts against `pods`, as PodUsageFunc.
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "q1");
    api.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    assert_eq!(quota_status(&env, "q1").await["used"]["pods"], "0");
    let (fine, out) = apply(kc, "q1", &pod("b", "busybox", "true")).await;
    assert!(fine, "room again after a pod finished: {out}");

    ok(
        kc,
        &[
            "-n",
            "q1",
            "create",
            "job",
            "j1",
            "--image=busybox",
            "--",
            "true",
        ],
    )
    .await;
    let o = kubectl_in(
        kc,
        &[
            "-n",
            "q1",
            "create",
            "job",
            "j2",
            "--image=busybox",
            "--",
            "true",
        ],
        None,
    )
    .await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("jobs.batch \"j2\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1, used: count/jobs.batch=1, limited: count/jobs.batch=1"),
        "{}",
        text(&o)
    );
    let out = ok(kc, &["-n", "q1", "get", "quota"]).await;
    assert_eq!(header(&out), ["NAME", "REQUEST", "LIMIT", "AGE"], "{out}");
    assert!(out.contains("count/jobs.batch: 1/1, pods: 1/1"), "{out}");
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn quota_on_limits_requires_them_and_limit_range_defaults_fill_them() {
    let env = start(false).await;
    let kc = &env.kc;
    namespace(&env, "q2").await;
    assert!(
        apply(
            kc,
            "q2",
            &quota(json!({"limits.cpu": "2", "limits.memory": "1Gi", "requests.cpu": "1"}))
        )
        .await
        .0
    );
    wait_for("quota status", || async {
        quota_status(&env, "q2").await["used"]
            .is_object()
            .then_some(())
    })
    .await;
    let (fine, out) = apply(kc, "q2", &pod("bare", "busybox", "true")).await;
    assert!(!fine, "{out}");
    assert!(
        out.contains("pods \"bare\" is forbidden: failed quota: q: must specify limits.cpu for: main; limits.memory for: main; requests.cpu for: main"),
        "{out}"
    );
    let mut sized = pod("sized", "busybox", "true");
    sized["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}});
    let (fine, out) = apply(kc, "q2", &sized).await;
    assert!(fine, "{out}");
    let used = quota_status(&env, "q2").await["used"].clone();
    assert_eq!(
        used,
        json!({"limits.cpu": "500m", "limits.memory": "256Mi", "requests.cpu": "500m"})
    );
    let mut big = pod("big", "busybox", "true");
    big["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "2", "memory": "256Mi"}, "requests": {"cpu": "100m"}});
    let (fine, out) = apply(kc, "q2", &big).await;
    assert!(!fine, "{out}");
    assert!(
        out.contains("pods \"big\" is forbidden: exceeded quota: q, requested: limits.cpu=2, used: limits.cpu=500m, limited: limits.cpu=2"),
        "{out}"
    );

    // A LimitRange's defaults make the same bare pod acceptable, and they show on the stored pod.
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "250m", "memory": "64Mi"},
            "defaultRequest": {"cpu": "100m"}, "max": {"memory": "512Mi"}}]}});
    assert!(apply(kc, "q2", &lr).await.0);
    let (fine, out) = apply(kc, "q2", &pod("bare", "busybox", "true")).await;
    assert!(fine, "{out}");
    let p: Value =
        serde_json::from_str(&ok(kc, &["-n", "q2", "get", "pod", "bare", "-o", "json"]).await)
            .unwrap();
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main"
    );
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let mut huge = pod("huge", "busybox", "true");
    huge["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Gi"}});
    let (fine, out) = apply(kc, "q2", &huge).await;
    assert!(!fine, "{out}");
    assert!(
        out.contains("pods \"huge\" is forbidden: Maximum memory usage per Container is 512Mi, but limit is 1Gi."),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn job_refused_by_quota_records_failed_create_and_backs_off() {
    let env = start(true).await;
    let kc = &env.kc;
    namespace(&env, "q3").await;
    assert!(
        apply(
            kc,
            "q3",
            &quota(json!({"limits.cpu": "1", "limits.memory": "1Gi"}))
        )
        .await
        .0
    );
    wait_for("quota status", || async {
        quota_status(&env, "q3").await["used"]
            .is_object()
            .then_some(())
    })
    .await;
    ok(
        kc,
        &[
            "-n",
            "q3",
            "create",
            "job",
            "j",
            "--image=busybox",
            "--",
            "/bin/sh",
            "-c",
            "true",
        ],
    )
    .await;
    let first = wait_for("a FailedCreate event", || async {
        events_for(&env.client, "q3", "j", "FailedCreate")
            .await
            .into_iter()
            .next()
    })
    .await;
    let seen_first = Instant::now();
    let msg = first.message.clone().unwrap_or_default();
    assert!(msg.starts_with("Error creating: pods \"j-"), "{msg}");
    assert!(
        msg.ends_with(
            "\" is forbidden: failed quota: q: must specify limits.cpu for: j; limits.memory for: j"
        ),
        "{msg}"
    );
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.involved_object.kind.as_deref(), Some("Job"));
    assert_eq!(
        first.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("job-controller")
    );
    // Retries back off (1 s, then 2 s, ...): a third attempt cannot come within 2 s of the first.
    wait_for("a third FailedCreate", || async {
        (events_for(&env.client, "q3", "j", "FailedCreate")
            .await
            .len()
            >= 3)
            .then_some(())
    })
    .await;
    assert!(
        seen_first.elapsed() >= Duration::from_secs(2),
        "retries must back off, not loop: {:?}",
        seen_first.elapsed()
    );
    let pods = ok(
        kc,
        &["-n", "q3", "get", "pods", "-l", "job-name=j", "-o", "name"],
    )
    .await;
    assert!(pods.trim().is_empty(), "no pod was admitted: {pods}");
    let events = ok(kc, &["-n", "q3", "get", "events"]).await;
    assert_eq!(
        header(&events),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    assert!(
        events.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 6 && w[1..6] == ["Warning", "FailedCreate", "job/j", "Error", "creating:"]
        }),
        "{events}"
    );
    let described = ok(kc, &["-n", "q3", "describe", "job", "j"]).await;
    assert!(described.contains("FailedCreate"), "{described}");
    assert!(
        described.contains("must specify limits.cpu for: j; limits.memory for: j"),
        "{described}"
    );
    // Once the quota is gone the Job's next retry creates its pod and it completes.
    ok(kc, &["-n", "q3", "delete", "quota", "q"]).await;
    wait_for("job j complete", || async {
        let out = ok(kc, &["-n", "q3", "get", "job", "j"]).await;
        (row(&out, "j")[1] == "Complete").then_some(())
    })
    .await;
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Image pull secrets

#[tokio::test]
async fn missing_image_pull_secret_warns_and_the_pull_proceeds() {
    let env = start(true).await;
    let kc = &env.kc;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    ok(
        kc,
        &[
            "create",
            "secret",
            "generic",
            "present",
            "--from-literal=.dockerconfigjson={}",
        ],
    )
    .await;
    let mut missing = pod("missing", "busybox", "true");
    missing["spec"]["imagePullSecrets"] =
        json!([{"name": "regcred"}, {"name": "present"}, {"name": "other"}]);
    let mut fine = pod("fine", "busybox", "true");
    fine["spec"]["imagePullSecrets"] = json!([{"name": "present"}]);
    assert!(apply(kc, "default", &missing).await.0);
    assert!(apply(kc, "default", &fine).await.0);
    assert_eq!(
        wait_phase(&api, "missing", &["Succeeded", "Failed"]).await,
        "Succeeded"
    );
    assert_eq!(
        wait_phase(&api, "fine", &["Succeeded", "Failed"]).await,
        "Succeeded"
    );
    let evs = wait_for("FailedToRetrieveImagePullSecret", || async {
        let e = events_for(
            &env.client,
            "default",
            "missing",
            "FailedToRetrieveImagePullSecret",
        )
        .await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        evs[0].message.as_deref(),
        Some(
            "Unable to retrieve some image pull secrets (regcred, other); attempting to pull the image may not succeed."
        )
    );
    assert_eq!(evs[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        evs[0].source.as_ref().and_then(|s| s.component.as_deref()),
        Some("kubelet")
    );
    assert!(
        events_for(
            &env.client,
            "default",
            "fine",
            "FailedToRetrieveImagePullSecret"
        )
        .await
        .is_empty(),
        "a pod whose pull secrets exist gets no warning"
    );
    let described = ok(kc, &["describe", "pod", "missing"]).await;
    assert!(
        described.contains("FailedToRetrieveImagePullSecret"),
        "{described}"
    );
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// readOnlyRootFilesystem

#[tokio::test]
async fn read_only_root_filesystem_leaves_only_volumes_writable() {
    let env = start(true).await;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let scratch = env.dir.path().join("mnt/scratch").display().to_string();
    let probe = env.dir.path().join("probe").display().to_string();
    let script = "echo kept > \"$SCRATCH/f\" && cat \"$SCRATCH/f\"; \
        if (echo x > \"$PROBE\") 2>/dev/null; then echo rootfs-writable; else echo rootfs-refused; fi; \
        if (echo x > /tmp/kubesim-ro-probe-$$) 2>/dev/null; then rm -f /tmp/kubesim-ro-probe-$$; echo tmp-writable; else echo tmp-refused; fi; \
        (echo x > \"$PROBE\") 2>&1 | grep -o 'Read-only file system' || true";
    let make = |name: &str, ro: bool| {
        let mut p = pod(name, "busybox", script);
        p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        let c = &mut p["spec"]["containers"][0];
        c["env"] =
            json!([{"name": "SCRATCH", "value": scratch}, {"name": "PROBE", "value": probe}]);
        c["volumeMounts"] = json!([{"name": "scratch", "mountPath": scratch}]);
        if ro {
            c["securityContext"] = json!({"readOnlyRootFilesystem": true});
        }
        p
    };
    let log = |name: &'static str| {
        let api = api.clone();
        async move { api.logs(name, &Default::default()).await.unwrap() }
    };
    api.create(
        &PostParams::default(),
        &serde_json::from_value(make("ro", true)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        wait_phase(&api, "ro", &["Succeeded", "Failed"]).await,
        "Succeeded",
        "{}",
        log("ro").await
    );
    assert_eq!(
        log("ro").await,
        "kept\nrootfs-refused\ntmp-refused\nRead-only file system\n"
    );
    assert!(
        !Path::new(&probe).exists(),
        "nothing reached the host outside the volume"
    );
    // Without the flag the same writes go through (the negative case).
    api.create(
        &PostParams::default(),
        &serde_json::from_value(make("rw", false)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        wait_phase(&api, "rw", &["Succeeded", "Failed"]).await,
        "Succeeded",
        "{}",
        log("rw").await
    );
    assert_eq!(log("rw").await, "kept\nrootfs-writable\ntmp-writable\n");
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Protobuf responses

async fn raw_get(url: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn protobuf_is_served_for_built_in_kinds_and_json_for_custom_resources() {
    use kubesim::api::protobuf::decode_body;
    let env = start(false).await;
    let kc = &env.kc;
    assert!(apply(kc, "default", &pod("p", "busybox", "true")).await.0);
    let base = env.cluster.url().to_string();
    let pb = "application/vnd.kubernetes.protobuf, application/json";
    let (code, ct, body) = raw_get(&format!("{base}/api/v1/namespaces/default/pods/p"), pb).await;
    assert_eq!(
        (code, ct.as_str()),
        (200, "application/vnd.kubernetes.protobuf")
    );
    assert!(body.starts_with(b"k8s\0"), "the protobuf envelope");
    let (_, json_ct, json_body) = raw_get(
        &format!("{base}/api/v1/namespaces/default/pods/p"),
        "application/json",
    )
    .await;
    assert_eq!(json_ct, "application/json", "JSON when JSON comes first");
    let as_json: Value = serde_json::from_slice(&json_body).unwrap();
    let decoded = decode_body(&body).unwrap();
    assert_eq!(decoded["metadata"]["uid"], as_json["metadata"]["uid"]);
    assert_eq!(decoded["spec"]["containers"], as_json["spec"]["containers"]);
    assert_eq!(
        decoded["metadata"]["creationTimestamp"],
        as_json["metadata"]["creationTimestamp"]
    );
    let (_, ct, body) = raw_get(&format!("{base}/api/v1/namespaces/default/pods"), pb).await;
    assert_eq!(ct, "application/vnd.kubernetes.protobuf");
    let list = decode_body(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "p");
    // Errors are Status objects in the negotiated encoding.
    let (code, ct, body) =
        raw_get(&format!("{base}/api/v1/namespaces/default/pods/nope"), pb).await;
    assert_eq!(
        (code, ct.as_str()),
        (404, "application/vnd.kubernetes.protobuf")
    );
    let status = decode_body(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    // Custom resources have no protobuf: JSON, as the apiextensions server answers.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    assert!(apply(kc, "default", &crd).await.0);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    wait_for("widget created", || async {
        apply(kc, "default", &w).await.0.then_some(())
    })
    .await;
    let (code, ct, body) = raw_get(
        &format!("{base}/apis/example.com/v1/namespaces/default/widgets/w"),
        pb,
    )
    .await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["metadata"]["name"],
        "w"
    );
    env.cluster.shutdown().await;
}
