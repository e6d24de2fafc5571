//! Round two of kubesim's fidelity, over HTTP with real kubectl and real processes: protobuf request
//! bodies from kubectl's imperative commands, pod identity (runAsUser/runAsGroup/fsGroup/
//! supplementalGroups, runAsNonRoot) and volume ownership, image pull errors.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Env, text};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

async fn kubectl(kc: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .output()
        .await
        .expect("kubectl must be on PATH; these tests do not skip without it")
}

async fn ok(kc: &Path, args: &[&str]) -> String {
    let o = kubectl(kc, args).await;
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn start(run_pods: bool) -> Env {
    common::start(
        run_pods,
        &[("busybox", "/bin/sh"), ("distroless-sh", "/bin/sh")],
        &[("distroless-sh", 65532)],
    )
    .await
}

async fn wait_for<T, F, Fut>(what: &str, ceiling: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + ceiling;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Protobuf bodies

#[tokio::test]
async fn kubectl_imperative_commands_send_protobuf_and_work() {
    let env = start(false).await;
    let kc = &env.kc;
    // The README's own commands, unchanged.
    ok(kc, &["create", "namespace", "analytics"]).await;
    ok(
        kc,
        &[
            "-n",
            "analytics",
            "create",
            "secret",
            "generic",
            "reporting-db",
            "--from-literal=url=postgres://...",
        ],
    )
    .await;
    let s: Secret = Api::namespaced(env.client.clone(), "analytics")
        .get("reporting-db")
        .await
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        s.data.unwrap()["url"].0,
        b"postgres://...".to_vec(),
        "the literal arrives as the Secret's data"
    );
    let ns: Namespace = Api::all(env.client.clone()).get("analytics").await.unwrap();
    assert_eq!(ns.metadata.name.as_deref(), Some("analytics"));

    ok(
        kc,
        &[
            "-n",
            "analytics",
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "--from-literal=b=two words",
        ],
    )
    .await;
    let cm: ConfigMap = Api::namespaced(env.client.clone(), "analytics")
        .get("settings")
        .await
        .unwrap();
    let data = cm.data.unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "two words"));

    ok(
        kc,
        &["-n", "analytics", "create", "serviceaccount", "worker"],
    )
    .await;
    let _: ServiceAccount = Api::namespaced(env.client.clone(), "analytics")
        .get("worker")
        .await
        .unwrap();

    ok(
        kc,
        &[
            "-n",
            "analytics",
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "/bin/sh",
            "-c",
            "exit 0",
        ],
    )
    .await;
    let j: Job = Api::namespaced(env.client.clone(), "analytics")
        .get("once")
        .await
        .unwrap();
    let pod = j.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("busybox"));
    assert_eq!(
        c.command.clone().unwrap(),
        vec!["/bin/sh", "-c", "exit 0"],
        "the command survives the protobuf body"
    );

    ok(
        kc,
        &[
            "-n",
            "analytics",
            "label",
            "secret",
            "reporting-db",
            "tier=db",
        ],
    )
    .await;
    ok(
        kc,
        &[
            "-n",
            "analytics",
            "annotate",
            "secret",
            "reporting-db",
            "owner=reports team",
        ],
    )
    .await;
    let s: Secret = Api::namespaced(env.client.clone(), "analytics")
        .get("reporting-db")
        .await
        .unwrap();
    assert_eq!(s.metadata.labels.unwrap()["tier"], "db");
    assert_eq!(s.metadata.annotations.unwrap()["owner"], "reports team");

    // A second create of the same name is AlreadyExists (kubectl's create-secret wording).
    let o = kubectl(
        kc,
        &[
            "-n",
            "analytics",
            "create",
            "secret",
            "generic",
            "reporting-db",
            "--from-literal=x=y",
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("failed to create secret secrets \"reporting-db\" already exists"),
        "{}",
        text(&o)
    );
    env.cluster.shutdown().await;
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    fn field(num: u8, b: &[u8], out: &mut Vec<u8>) {
        out.push(num << 3 | 2);
        assert!(b.len() < 128);
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    let mut tm = vec![];
    field(1, api_version.as_bytes(), &mut tm);
    field(2, kind.as_bytes(), &mut tm);
    let mut unk = vec![];
    field(1, &tm, &mut unk);
    field(2, raw, &mut unk);
    let mut out = b"k8s\0".to_vec();
    out.extend(unk);
    out
}

#[tokio::test]
async fn protobuf_refusals_over_raw_http() {
    let env = start(false).await;
    let http = reqwest::Client::new();
    let url = env.cluster.url();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{url}{path}"))
            .header("Content-Type", "application/vnd.kubernetes.protobuf")
            .body(body)
            .send()
    };
    // ConfigMap{metadata{name: "pb"}} decodes like its JSON.
    let mut meta = vec![0x0a, 2];
    meta.extend(b"pb");
    let mut cm = vec![0x0a, meta.len() as u8];
    cm.extend(&meta);
    let r = post(
        "/api/v1/namespaces/default/configmaps",
        envelope("v1", "ConfigMap", &cm),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["metadata"]["name"], "pb");
    assert_eq!(v["metadata"]["namespace"], "default");
    // Without the magic: 400.
    let r = post(
        "/api/v1/namespaces/default/configmaps",
        b"\x0a\x00".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // A truncated message: 400, nothing stored.
    let mut bad = envelope("v1", "ConfigMap", &cm);
    bad.truncate(bad.len() - 1);
    let r = post("/api/v1/namespaces/default/configmaps", bad)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Custom resources have no protobuf codec upstream: 415 naming the accepted types.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let r = http
        .post(format!(
            "{url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        ))
        .json(&crd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/apis/example.com/v1/namespaces/default/widgets",
        envelope("example.com/v1", "Widget", &[]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "UnsupportedMediaType");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("application/json, application/yaml"),
        "{v}"
    );
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Pod identity and volumes

fn pod_with(
    name: &str,
    image: &str,
    script: &str,
    pod_sc: Value,
    container_sc: Value,
    mount: &str,
) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "securityContext": pod_sc,
            "volumes": [{"name": "out", "persistentVolumeClaim": {"claimName": "out"}}],
            "containers": [{"name": "main", "image": image, "command": ["/bin/sh", "-c", script],
                "env": [{"name": "OUT", "value": mount}],
                "securityContext": container_sc,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "out", "mountPath": mount}]}]}})
}

async fn create_pvc(env: &Env) {
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "out"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "default",
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(&()),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(pvc).unwrap(),
    )
    .await
    .unwrap();
}

async fn run_pod(env: &Env, pod: Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p: Pod = serde_json::from_value(pod).unwrap();
    let name = p.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    wait_for(
        &format!("pod {name} finished"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let p = api.get(&name).await.ok()?;
                let phase = p.status.as_ref()?.phase.clone()?;
                matches!(phase.as_str(), "Succeeded" | "Failed").then_some(p)
            }
        },
    )
    .await
}

fn terminated(p: &Pod) -> (i32, String) {
    let t = p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    (t.exit_code, t.message.unwrap_or_default())
}

fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

#[tokio::test]
async fn non_root_pod_needs_fs_group_to_write_a_fresh_volume() {
    let env = start(true).await;
    create_pvc(&env).await;
    let pvc_dir = env.dir.path().join("data/pvc/default/out");
    let m = std::fs::metadata(&pvc_dir).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (0, 0, 0o755),
        "a fresh volume is root-owned 0755"
    );
    let mount = env.mount("out");
    let script = r#"id -u; id -g; id -G; echo hi > "$OUT/f""#;

    // UID 65532 without fsGroup: EACCES on the volume root.
    let p = run_pod(
        &env,
        pod_with(
            "nofs",
            "busybox",
            script,
            json!({"runAsUser": 65532}),
            json!({}),
            &mount,
        ),
    )
    .await;
    let (code, msg) = terminated(&p);
    assert_ne!(code, 0, "{msg}");
    assert!(msg.contains("Permission denied"), "{msg}");
    assert!(msg.starts_with("65532\n0\n"), "runs as 65532:0: {msg}");
    assert!(!pvc_dir.join("f").exists());

    // With fsGroup the kubelet gives the volume to the group: the write succeeds.
    let p = run_pod(
        &env,
        pod_with(
            "withfs",
            "busybox",
            r#"id -u; id -g; id -G; echo hi > "$OUT/f"; ls -ln "$OUT/f" > /dev/termination-log"#,
            json!({"runAsUser": 65532, "runAsGroup": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}),
            json!({}),
            &mount,
        ),
    )
    .await;
    let (code, msg) = terminated(&p);
    assert_eq!(code, 0, "{msg}");
    assert!(
        msg.contains(" 65532 2000 "),
        "setgid directory gives new files the fsGroup: {msg}"
    );
    let m = std::fs::metadata(&pvc_dir).unwrap();
    assert_eq!((m.gid(), m.permissions().mode() & 0o7777), (2000, 0o2775));
    let log = std::fs::read_to_string(env.dir.path().join("data/logs/default/withfs.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[..2], ["65532", "1000"]);
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort_unstable();
    assert_eq!(groups, ["1000", "2000", "3000"]);

    // The image's declared user applies when the pod names none; the container level wins.
    let p = run_pod(
        &env,
        pod_with(
            "imageuser",
            "distroless-sh",
            "id -u > /dev/termination-log",
            json!({}),
            json!({}),
            &mount,
        ),
    )
    .await;
    assert_eq!(terminated(&p), (0, "65532\n".into()));
    let p = run_pod(
        &env,
        pod_with(
            "override",
            "distroless-sh",
            "id -u > /dev/termination-log",
            json!({"runAsUser": 1001}),
            json!({"runAsUser": 1002}),
            &mount,
        ),
    )
    .await;
    assert_eq!(terminated(&p), (0, "1002\n".into()));
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn fs_group_change_policy_on_root_mismatch_skips_a_matching_volume() {
    let env = start(true).await;
    create_pvc(&env).await;
    let mount = env.mount("out");
    let pvc_dir = env.dir.path().join("data/pvc/default/out");
    let sc = json!({"runAsUser": 65532, "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"});
    let p = run_pod(
        &env,
        pod_with(
            "first",
            "busybox",
            r#"mkdir "$OUT/d""#,
            sc.clone(),
            json!({}),
            &mount,
        ),
    )
    .await;
    assert_eq!(terminated(&p).0, 0);
    // A file the group cannot write, left inside a volume whose root already matches.
    std::fs::write(pvc_dir.join("d/locked"), b"x").unwrap();
    std::fs::set_permissions(
        pvc_dir.join("d/locked"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let p = run_pod(
        &env,
        pod_with(
            "second",
            "busybox",
            r#"echo y > "$OUT/d/locked""#,
            sc,
            json!({}),
            &mount,
        ),
    )
    .await;
    assert_ne!(terminated(&p).0, 0, "OnRootMismatch left the file alone");
    let always = json!({"runAsUser": 65532, "fsGroup": 2000});
    let p = run_pod(
        &env,
        pod_with(
            "third",
            "busybox",
            r#"echo y > "$OUT/d/locked""#,
            always,
            json!({}),
            &mount,
        ),
    )
    .await;
    assert_eq!(
        terminated(&p).0,
        0,
        "Always walks the volume: {:?}",
        terminated(&p)
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn run_as_non_root_is_refused_at_container_start() {
    let env = start(true).await;
    create_pvc(&env).await;
    let mount = env.mount("out");
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p: Pod = serde_json::from_value(pod_with(
        "rootimage",
        "busybox",
        "exit 0",
        json!({"runAsNonRoot": true}),
        json!({}),
        &mount,
    ))
    .unwrap();
    let created = api.create(&PostParams::default(), &p).await.unwrap();
    let uid = created.metadata.uid.unwrap();
    let (reason, msg) = wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(20),
        || {
            let api = api.clone();
            async move {
                // The kubelet reports ContainerCreating before it tries the container.
                waiting(&api.get("rootimage").await.ok()?).filter(|(r, _)| r != "ContainerCreating")
            }
        },
    )
    .await;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(
        msg,
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"rootimage_default({uid})\", container: main)"
        )
    );
    let p = api.get("rootimage").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    // An explicit root UID breaks the policy with the other message; a non-root image passes.
    let p: Pod = serde_json::from_value(pod_with(
        "rootuser",
        "distroless-sh",
        "exit 0",
        json!({"runAsNonRoot": true}),
        json!({"runAsUser": 0}),
        &mount,
    ))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    let (_, msg) = wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(20),
        || {
            let api = api.clone();
            async move {
                // The kubelet reports ContainerCreating before it tries the container.
                waiting(&api.get("rootuser").await.ok()?).filter(|(r, _)| r != "ContainerCreating")
            }
        },
    )
    .await;
    assert!(
        msg.starts_with("container's runAsUser breaks non-root policy"),
        "{msg}"
    );
    let p = run_pod(
        &env,
        pod_with(
            "nonroot",
            "distroless-sh",
            "exit 0",
            json!({"runAsNonRoot": true}),
            json!({}),
            &mount,
        ),
    )
    .await;
    assert_eq!(terminated(&p).0, 0);
    env.cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Images

#[tokio::test]
async fn unmapped_image_is_err_image_pull_then_image_pull_back_off() {
    let env = start(true).await;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "noimage"},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.example/unknown"}]}}))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "ErrImagePull then ImagePullBackOff: {seen:?}"
        );
        let p = api.get("noimage").await.unwrap();
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Pending"), "never fails the pod");
        // The kubelet first reports the container as ContainerCreating while it pulls.
        if let Some(w) = waiting(&p)
            && seen.last() != Some(&w)
            && !(seen.is_empty() && w.0 == "ContainerCreating")
        {
            seen.push(w);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen[0].0, "ErrImagePull");
    assert!(
        seen[0]
            .1
            .contains("failed to pull and unpack image \"registry.example/unknown:latest\""),
        "{:?}",
        seen[0]
    );
    assert_eq!(
        seen[1],
        (
            "ImagePullBackOff".to_string(),
            "Back-off pulling image \"registry.example/unknown\"".to_string()
        )
    );
    assert_eq!(seen[2].0, "ErrImagePull", "pulled again after the back-off");
    env.cluster.shutdown().await;
}
