//! Client behaviours of a cluster one installs into (issue #13), over HTTP with real kubectl and the
//! `kube` client: `dryRun=All` on every write, the `default` ServiceAccount of every namespace,
//! `log?follow=true`, Tables on watches, `PartialObjectMetadata` on every verb, and DELETE of an object
//! held by finalizers.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Env, text};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt as _;

const CEILING: Duration = Duration::from_secs(120);
const TABLE: &str = "application/json;as=Table;g=meta.k8s.io;v=v1";
const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// A CRD shaped like reportjob's own (`src/api/spec.rs`): short name `rj`, the same printer columns.
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: reportjobs.reporting.dev
spec:
  group: reporting.dev
  scope: Namespaced
  names: {kind: ReportJob, plural: reportjobs, singular: reportjob, shortNames: [rj]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Chunks, type: string, jsonPath: .status.progress}
    - {name: Rows, type: integer, jsonPath: .status.rows}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    - {name: Output, type: string, jsonPath: .status.output.location, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [parallelism]
            properties:
              parallelism: {type: integer, minimum: 1, maximum: 10}
          status:
            type: object
            properties:
              phase: {type: string}
              progress: {type: string}
              rows: {type: integer}
              output: {type: object, properties: {location: {type: string}}}
"#;

fn kubectl_cmd(kc: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kc).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn start(run_pods: bool) -> Env {
    common::start(run_pods, &[("busybox", "/bin/sh")], &[]).await
}

async fn kubectl(kc: &Path, args: &[&str], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = kubectl_cmd(kc, args)
        .spawn()
        .expect("kubectl must be on PATH; these tests do not skip without it");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(CEILING, child.wait_with_output())
        .await
        .expect("kubectl did not finish")
        .unwrap()
}

async fn ok(kc: &Path, args: &[&str], stdin: &str) -> String {
    let o = kubectl(kc, args, stdin).await;
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
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

/// One HTTP request; status and JSON body.
async fn call(
    env: &Env,
    method: &str,
    path: &str,
    accept: Option<&str>,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(
        method.parse().unwrap(),
        format!("{}{path}", env.cluster.url()),
    );
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    if let Some(b) = body {
        r = r.header("content-type", content_type).body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The store's current resourceVersion, as a list reports it.
async fn store_rv(env: &Env) -> String {
    let (code, list) = call(env, "GET", "/api/v1/namespaces", None, "", None).await;
    assert_eq!(code, 200);
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The first `n` cells of a Table row.
fn head(cells: &Value, n: usize) -> Value {
    json!(cells.as_array().unwrap().iter().take(n).collect::<Vec<_>>())
}

/// A watch's events, one JSON value per line, read as they come.
struct Watch {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Watch {
    async fn open(env: &Env, path: &str, accept: &str) -> Watch {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", env.cluster.url()))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "watch {path}");
        Watch {
            body: Box::pin(r.bytes_stream()),
            buf: vec![],
        }
    }

    async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + CEILING;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("watch stalled")
                .expect("watch ended")
                .unwrap();
            self.buf.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_all_admits_like_a_real_write_and_stores_nothing() {
    let env = start(false).await;
    ok(&env.kc, &["apply", "-f", "-"], CRD).await;
    let rv0 = store_rv(&env).await;

    // kubectl apply --dry-run=server: created (server dry run), then nothing is there.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"k": "v"}});
    let out = ok(
        &env.kc,
        &["apply", "--dry-run=server", "-f", "-"],
        &cm.to_string(),
    )
    .await;
    assert_eq!(out.trim(), "configmap/dry created (server dry run)");
    let o = kubectl(&env.kc, &["get", "configmap", "dry"], "").await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("configmaps \"dry\" not found"),
        "{}",
        text(&o)
    );
    assert_eq!(
        store_rv(&env).await,
        rv0,
        "a dry run consumes no resourceVersion"
    );

    // The response is what would have been stored: generateName, uid, creationTimestamp, no RV.
    let (code, created) = call(
        &env,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        None,
        "application/json",
        Some(json!({"metadata": {"generateName": "gen-"}, "data": {"a": "b"}})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let name = created["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert!(created["metadata"]["resourceVersion"].is_null());
    assert_eq!(created["kind"], "ConfigMap");
    assert_eq!(created["data"], json!({"a": "b"}));

    // Validation and defaulting are those of a real request.
    let bad = json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob", "metadata": {"name": "r"}, "spec": {"parallelism": 0}});
    let rj_path = "/apis/reporting.dev/v1alpha1/namespaces/default/reportjobs";
    let (dry_code, dry_err) = call(
        &env,
        "POST",
        &format!("{rj_path}?dryRun=All"),
        None,
        "application/json",
        Some(bad.clone()),
    )
    .await;
    let (real_code, real_err) =
        call(&env, "POST", rj_path, None, "application/json", Some(bad)).await;
    assert_eq!((dry_code, &dry_err), (real_code, &real_err));
    assert_eq!(dry_code, 422);
    let rv0 = store_rv(&env).await;

    // Updates, every patch type, and delete of a real object: answered, not stored.
    ok(
        &env.kc,
        &["create", "configmap", "real", "--from-literal=k=v"],
        "",
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let stored = cms.get("real").await.unwrap();
    let rv1 = stored.metadata.resource_version.clone().unwrap();
    let path = "/api/v1/namespaces/default/configmaps/real?dryRun=All";
    let mut put = serde_json::to_value(&stored).unwrap();
    put["data"] = json!({"k": "put"});
    let patches = [
        ("PUT", "application/json", put),
        (
            "PATCH",
            "application/merge-patch+json",
            json!({"data": {"k": "merge"}}),
        ),
        (
            "PATCH",
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/data/k", "value": "json"}]),
        ),
        (
            "PATCH",
            "application/strategic-merge-patch+json",
            json!({"data": {"k": "strategic"}}),
        ),
    ];
    for (method, ct, body) in patches {
        let (code, o) = call(&env, method, path, None, ct, Some(body)).await;
        assert_eq!(code, 200, "{method} {ct}: {o}");
        assert_ne!(o["data"]["k"], "v", "{ct}: the response shows the change");
        assert_eq!(o["metadata"]["resourceVersion"], json!(rv1), "{ct}");
    }
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "real"}, "data": {"k": "applied"}});
    let out = ok(
        &env.kc,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        &applied.to_string(),
    )
    .await;
    assert_eq!(
        out.trim(),
        "configmap/real serverside-applied (server dry run)"
    );
    let out = ok(
        &env.kc,
        &["delete", "configmap", "real", "--dry-run=server"],
        "",
    )
    .await;
    assert_eq!(out.trim(), "configmap \"real\" deleted (server dry run)");
    let after = cms.get("real").await.unwrap();
    assert_eq!(after.data.unwrap()["k"], "v");
    assert_eq!(after.metadata.resource_version.unwrap(), rv1);

    // A dry-run DELETE of an object held by a finalizer answers it with deletionTimestamp, stores nothing.
    cms.patch(
        "real",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    let rv2 = store_rv(&env).await;
    let (code, o) = call(
        &env,
        "DELETE",
        path,
        None,
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200, "{o}");
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    assert!(
        cms.get("real")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    assert_eq!(store_rv(&env).await, rv2);

    // Unknown values: upstream's ValidateDryRun error.
    let (code, e) = call(
        &env,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=Bogus",
        None,
        "application/json",
        Some(json!({"metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(code, 422, "{e}");
    assert_eq!(
        e["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Bogus\"}: supported values: \"All\""
    );

    // No watch event was sent for any of it: a watch from before sees only the next real write.
    let mut w = Watch::open(
        &env,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv2}"),
        "application/json",
    )
    .await;
    ok(
        &env.kc,
        &["create", "configmap", "next", "--from-literal=a=b"],
        "",
    )
    .await;
    let ev = w.next().await;
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "next");
    let _ = rv0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    let env = start(false).await;
    for ns in ["default", "kube-system", "kube-public"] {
        let out = ok(
            &env.kc,
            &[
                "get",
                "serviceaccount",
                "default",
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.name}",
            ],
            "",
        )
        .await;
        assert_eq!(out, "default", "namespace {ns}");
    }
    ok(&env.kc, &["create", "namespace", "team"], "").await;
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(env.client.clone(), "team");
    let names: Vec<String> = sas
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(names, ["default"]);
    // Deleted, it comes back (the serviceaccounts controller recreates it), with a new uid.
    let uid = sas.get("default").await.unwrap().metadata.uid.unwrap();
    ok(
        &env.kc,
        &["delete", "serviceaccount", "default", "-n", "team"],
        "",
    )
    .await;
    wait_for("the default ServiceAccount to be recreated", || async {
        sas.get("default")
            .await
            .ok()
            .filter(|s| s.metadata.uid.as_deref() != Some(uid.as_str()))
    })
    .await;
    // A dry-run namespace creates nothing, its ServiceAccount neither.
    ok(
        &env.kc,
        &["create", "namespace", "ghost", "--dry-run=server"],
        "",
    )
    .await;
    let o = kubectl(
        &env.kc,
        &["get", "serviceaccounts", "-n", "ghost", "-o", "name"],
        "",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_until_the_container_exits() {
    let env = start(true).await;
    let go = env.dir.path().join("go");
    let script = format!(
        "echo one; while [ ! -e {} ]; do sleep 0.1; done; echo two; sleep 0.3; echo three",
        go.display()
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script]}]}});
    ok(&env.kc, &["apply", "-f", "-"], &pod.to_string()).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    wait_for("the pod to run", || async {
        pods.get("talker")
            .await
            .ok()?
            .status?
            .phase
            .filter(|p| p == "Running")
    })
    .await;
    let mut child = kubectl_cmd(&env.kc, &["logs", "-f", "talker"])
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(CEILING, lines.next_line())
        .await
        .expect("no first line")
        .unwrap();
    assert_eq!(first.as_deref(), Some("one"));
    // Only now does the container go on: a log that closed after "one" would miss the rest.
    std::fs::write(&go, b"").unwrap();
    let mut rest = vec![];
    while let Some(l) = tokio::time::timeout(CEILING, lines.next_line())
        .await
        .expect("kubectl logs -f did not end when the container exited")
        .unwrap()
    {
        rest.push(l);
    }
    assert_eq!(rest, ["two", "three"]);
    let status = tokio::time::timeout(CEILING, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let phase = pods.get("talker").await.unwrap().status.unwrap().phase;
    assert_eq!(phase.as_deref(), Some("Succeeded"));
    // tailLines still works, with and without follow.
    assert_eq!(
        ok(&env.kc, &["logs", "--tail=1", "talker"], "").await,
        "three\n"
    );
    assert_eq!(
        ok(&env.kc, &["logs", "-f", "--tail=2", "talker"], "").await,
        "two\nthree\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_serve_tables_with_printer_columns() {
    let env = start(false).await;
    ok(&env.kc, &["apply", "-f", "-"], CRD).await;
    let rj = json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob", "metadata": {"name": "a"}, "spec": {"parallelism": 2}});
    ok(&env.kc, &["apply", "-f", "-"], &rj.to_string()).await;
    let status_path = "/apis/reporting.dev/v1alpha1/namespaces/default/reportjobs/a/status";
    let set_status = |phase: &'static str, progress: &'static str, rows: i64| {
        let env = &env;
        async move {
            let (code, o) = call(
                env,
                "PATCH",
                status_path,
                None,
                "application/merge-patch+json",
                Some(json!({"status": {"phase": phase, "progress": progress, "rows": rows}})),
            )
            .await;
            assert_eq!(code, 200, "{o}");
        }
    };
    set_status("Running", "1/3", 42).await;

    // Over HTTP: the first event has the column definitions, later ones only rows.
    let mut w = Watch::open(
        &env,
        "/apis/reporting.dev/v1alpha1/namespaces/default/reportjobs?watch=true",
        TABLE,
    )
    .await;
    let first = w.next().await;
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    let names: Vec<&str> = first["object"]["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Phase", "Chunks", "Rows", "Age", "Output"]);
    let cells = &first["object"]["rows"][0]["cells"];
    assert_eq!(head(cells, 4), json!(["a", "Running", "1/3", 42]));
    assert_eq!(
        first["object"]["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
    set_status("Succeeded", "3/3", 100).await;
    let second = w.next().await;
    assert_eq!(second["type"], "MODIFIED");
    assert_eq!(second["object"]["kind"], "Table");
    assert!(second["object"]["columnDefinitions"].is_null(), "{second}");
    assert_eq!(
        head(&second["object"]["rows"][0]["cells"], 4),
        json!(["a", "Succeeded", "3/3", 100])
    );

    // Built-in kinds get their server-side printer on a watch too.
    ok(
        &env.kc,
        &[
            "create",
            "configmap",
            "c",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        "",
    )
    .await;
    let mut cw = Watch::open(
        &env,
        "/api/v1/namespaces/default/configmaps?watch=true",
        TABLE,
    )
    .await;
    let ev = cw.next().await;
    let names: Vec<&str> = ev["object"]["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Data", "Age"]);
    assert_eq!(head(&ev["object"]["rows"][0]["cells"], 2), json!(["c", 2]));

    // kubectl get rj -w prints the printer columns for the rows the watch brings.
    let mut child = kubectl_cmd(&env.kc, &["get", "rj", "-w"]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(CEILING, lines.next_line())
            .await
            .expect("kubectl get -w stalled")
            .unwrap()
            .expect("kubectl get -w ended")
    };
    let header: Vec<String> = next_line()
        .await
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(header, ["NAME", "PHASE", "CHUNKS", "ROWS", "AGE"]);
    let listed = next_line().await;
    assert_eq!(
        listed.split_whitespace().take(4).collect::<Vec<_>>(),
        ["a", "Succeeded", "3/3", "100"]
    );
    set_status("Failed", "2/3", 7).await;
    let watched = next_line().await;
    assert_eq!(
        watched.split_whitespace().take(4).collect::<Vec<_>>(),
        ["a", "Failed", "2/3", "7"],
        "a watched row with the printer columns"
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_object_metadata_on_every_verb() {
    let env = start(false).await;
    let base = "/api/v1/namespaces/default/configmaps";
    let is_meta = |o: &Value, name: &str| {
        assert_eq!(o["kind"], "PartialObjectMetadata", "{o}");
        assert_eq!(o["apiVersion"], "meta.k8s.io/v1", "{o}");
        assert_eq!(o["metadata"]["name"], name, "{o}");
        assert!(o.get("data").is_none(), "{o}");
    };
    let (code, o) = call(
        &env,
        "POST",
        base,
        Some(META),
        "application/json",
        Some(json!({"metadata": {"name": "m"}, "data": {"k": "v"}})),
    )
    .await;
    assert_eq!(code, 201);
    is_meta(&o, "m");
    let (_, o) = call(&env, "GET", &format!("{base}/m"), Some(META), "", None).await;
    is_meta(&o, "m");
    let (_, l) = call(&env, "GET", base, Some(META_LIST), "", None).await;
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    // Items by name: kube-root-ca.crt (every namespace has it), then m.
    is_meta(&l["items"][0], "kube-root-ca.crt");
    is_meta(&l["items"][1], "m");
    let (code, o) = call(
        &env,
        "PUT",
        &format!("{base}/m"),
        Some(META),
        "application/json",
        Some(json!({"metadata": {"name": "m"}, "data": {"k": "w"}})),
    )
    .await;
    assert_eq!(code, 200);
    is_meta(&o, "m");
    for (ct, body) in [
        (
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"a": "1"}}}),
        ),
        (
            "application/strategic-merge-patch+json",
            json!({"metadata": {"labels": {"b": "2"}}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "add", "path": "/metadata/labels/c", "value": "3"}]),
        ),
    ] {
        let (code, o) = call(
            &env,
            "PATCH",
            &format!("{base}/m"),
            Some(META),
            ct,
            Some(body),
        )
        .await;
        assert_eq!(code, 200, "{ct}: {o}");
        is_meta(&o, "m");
    }
    // kube's metadata API parses the answer of a metadata-only PATCH.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let pm = cms
        .patch_metadata(
            "m",
            &PatchParams::apply("meta-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "finalizers": ["example.com/hold"]}})),
        )
        .await
        .unwrap();
    assert_eq!(pm.types.unwrap().kind, "PartialObjectMetadata");
    let labels = pm.metadata.labels.unwrap();
    assert_eq!(labels.len(), 3, "{labels:?}");
    // The full representation is unchanged.
    assert_eq!(cms.get("m").await.unwrap().data.unwrap()["k"], "w");

    // A watch of metadata; then DELETE of the object held by a finalizer answers 200 with it.
    let mut w = Watch::open(&env, &format!("{base}?watch=true"), META).await;
    let ev = w.next().await;
    is_meta(&ev["object"], "m");
    let (code, o) = call(
        &env,
        "DELETE",
        &format!("{base}/m"),
        Some(META),
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200);
    is_meta(&o, "m");
    assert!(o["metadata"]["deletionTimestamp"].is_string());
    let (code, o) = call(
        &env,
        "DELETE",
        &format!("{base}/m"),
        None,
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        o["kind"], "ConfigMap",
        "DELETE of a pending object answers the object: {o}"
    );
    // Released, it goes: the answer to a DELETE that removes is a Status, never transformed.
    cms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let (_, o) = call(
        &env,
        "POST",
        base,
        None,
        "application/json",
        Some(json!({"metadata": {"name": "gone"}})),
    )
    .await;
    assert_eq!(o["kind"], "ConfigMap");
    let (code, o) = call(
        &env,
        "DELETE",
        &format!("{base}/gone"),
        Some(META),
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(o["kind"], "Status", "{o}");
    assert_eq!(o["status"], "Success");
}
