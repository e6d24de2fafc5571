//! Raw-HTTP behaviours: watch streams (bookmarks, streaming lists, metadata-only), discovery,
//! Tables, pod logs, PVCs and the Job deletion default.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use futures::StreamExt;
use kubesim::{Cluster, ClusterConfig};
use serde_json::{Value, json};
use std::time::Duration;

async fn start() -> (Cluster, reqwest::Client) {
    (
        Cluster::start(ClusterConfig::default()).await.unwrap(),
        reqwest::Client::new(),
    )
}

async fn post(h: &reqwest::Client, c: &Cluster, path: &str, body: Value) -> Value {
    let r = h
        .post(format!("{}{path}", c.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "POST {path}");
    r.json().await.unwrap()
}

async fn get(
    h: &reqwest::Client,
    c: &Cluster,
    path: &str,
    accept: &str,
) -> (reqwest::StatusCode, String, Value) {
    let r = h
        .get(format!("{}{path}", c.url()))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let s = r.status();
    (s, ct, r.json().await.unwrap_or(Value::Null))
}

/// Read watch lines until `n` events or the stream ends.
async fn events(h: &reqwest::Client, url: String, accept: &str, n: usize) -> Vec<Value> {
    let r = h.get(url).header("accept", accept).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut buf = Vec::new();
    let mut out = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while out.len() < n {
        let next = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("watch stalled");
        let Some(chunk) = next else { break };
        buf.extend_from_slice(&chunk.unwrap());
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

// Watches below use Secrets: every namespace holds the kube-root-ca.crt ConfigMap, as upstream.
#[tokio::test]
async fn watch_sends_synthetic_added_then_changes_and_bookmarks_with_kind() {
    let (c, h) = start().await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/secrets?",
        json!({"metadata": {"name": "a"}}),
    )
    .await;
    let url = format!(
        "{}/api/v1/namespaces/default/secrets?&watch=true&allowWatchBookmarks=true&timeoutSeconds=30",
        c.url()
    );
    let h2 = h.clone();
    let watching = tokio::spawn(async move { events(&h2, url, "application/json", 4).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/secrets?",
        json!({"metadata": {"name": "b"}}),
    )
    .await;
    let evs = watching.await.unwrap();
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "a");
    assert_eq!(evs[1]["type"], "ADDED");
    assert_eq!(evs[1]["object"]["metadata"]["name"], "b");
    let bm = evs
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark within the watch");
    assert_eq!(bm["object"]["kind"], "Secret");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    assert!(
        bm["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
}

#[tokio::test]
async fn streaming_list_ends_initial_events_with_annotated_bookmark() {
    let (c, h) = start().await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/secrets?",
        json!({"metadata": {"name": "a"}}),
    )
    .await;
    let url = format!(
        "{}/api/v1/namespaces/default/secrets?&watch=true&timeoutSeconds=5&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0",
        c.url()
    );
    let evs = events(&h, url, "application/json", 2).await;
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[1]["type"], "BOOKMARK");
    assert_eq!(
        evs[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn metadata_only_list_and_watch_serve_partial_object_metadata() {
    let (c, h) = start().await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/configmaps?",
        json!({"metadata": {"name": "a"}, "data": {"secret": "x"}}),
    )
    .await;
    let (_, _, l) = get(
        &h,
        &c,
        "/api/v1/namespaces/default/configmaps?&limit=500",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert!(l["metadata"]["resourceVersion"].is_string());
    assert_eq!(l["items"][0]["kind"], "PartialObjectMetadata");
    assert!(l["items"][0].get("data").is_none());
    let url = format!("{}/api/v1/configmaps?&watch=true&timeoutSeconds=2", c.url());
    let evs = events(
        &h,
        url,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        1,
    )
    .await;
    assert_eq!(evs[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "a");
}

#[tokio::test]
async fn dropped_watches_end_cleanly() {
    let (c, h) = start().await;
    let url = format!(
        "{}/api/v1/namespaces/default/secrets?&watch=true&timeoutSeconds=60",
        c.url()
    );
    let h2 = h.clone();
    let watching = tokio::spawn(async move { events(&h2, url, "application/json", 100).await });
    // Drop watches until this one (maybe not established yet on a loaded machine) ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    while !watching.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "watch did not end");
        c.faults().drop_watches();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evs = watching.await.unwrap();
    assert!(evs.is_empty());
}

#[tokio::test]
async fn aggregated_discovery_echoes_content_type_and_lists_new_crd_group() {
    let (c, h) = start().await;
    let agg =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (_, ct, _) = get(&h, &c, "/apis", agg).await;
    assert_eq!(
        ct,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    post(&h, &c, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Gadget", "plural": "gadgets", "shortNames": ["gd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })).await;
    let (_, _, d) = get(&h, &c, "/apis", agg).await;
    let g = d["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "example.com")
        .expect("group listed");
    let r = &g["versions"][0]["resources"][0];
    assert_eq!(
        (
            r["resource"].as_str(),
            r["scope"].as_str(),
            r["shortNames"][0].as_str()
        ),
        (Some("gadgets"), Some("Cluster"), Some("gd"))
    );
    let (s, _, l) = get(&h, &c, "/apis/example.com/v1", "application/json").await;
    assert_eq!(s, 200);
    assert_eq!(l["resources"][0]["name"], "gadgets");
    let (s, _, _) = get(&h, &c, "/openapi/v2", "application/json").await;
    assert_eq!(s, 404);
    let (_, _, o) = get(
        &h,
        &c,
        "/openapi/v3/apis/example.com/v1",
        "application/json",
    )
    .await;
    let patch = &o["paths"]["/apis/example.com/v1/gadgets/{name}"]["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Gadget");
}

#[tokio::test]
async fn table_for_pods_has_upstream_columns_and_partial_objects() {
    let (c, h) = start().await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/pods",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .await;
    let (_, _, t) = get(
        &h,
        &c,
        "/api/v1/namespaces/default/pods?limit=500",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    assert_eq!(t["kind"], "Table");
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // printers.go podColumnDefinitions; the wide ones at priority 1.
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(t["rows"][0]["cells"][0], "p");
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
    assert_eq!(t["rows"][0]["cells"][2], "Pending");
    assert_eq!(t["rows"][0]["cells"][3], "0");
    assert!(t["rows"][0]["cells"][4].as_str().unwrap().ends_with('s'));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn pod_log_is_served_from_the_data_dir_and_pvcs_bind_to_a_directory() {
    let (c, h) = start().await;
    post(
        &h,
        &c,
        "/api/v1/namespaces/default/pods",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .await;
    std::fs::create_dir_all(c.data_dir().join("logs/default")).unwrap();
    std::fs::write(c.data_dir().join("logs/default/p.log"), "one\ntwo\n").unwrap();
    let log = h
        .get(format!("{}/api/v1/namespaces/default/pods/p/log", c.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log, "one\ntwo\n");
    let pvc = post(&h, &c, "/api/v1/namespaces/default/persistentvolumeclaims", json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).await;
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert!(c.data_dir().join("pvc/default/data").is_dir());
}

#[tokio::test]
async fn job_delete_without_policy_orphans_its_pods() {
    let (c, h) = start().await;
    let job = post(&h, &c, "/apis/batch/v1/namespaces/default/jobs", json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never"}}}})).await;
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"]
    );
    let owner = json!({"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job["metadata"]["uid"], "controller": true});
    post(&h, &c, "/api/v1/namespaces/default/pods", json!({"metadata": {"name": "j-1", "ownerReferences": [owner]}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).await;
    let r = h
        .delete(format!(
            "{}/apis/batch/v1/namespaces/default/jobs/j",
            c.url()
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    let (s, _, pod) = get(
        &h,
        &c,
        "/api/v1/namespaces/default/pods/j-1",
        "application/json",
    )
    .await;
    assert_eq!(s, 200);
    assert!(pod["metadata"].get("ownerReferences").is_none());
    let (s, _, e) = get(
        &h,
        &c,
        "/apis/batch/v1/namespaces/default/jobs/j",
        "application/json",
    )
    .await;
    assert_eq!(
        (s.as_u16(), e["reason"].as_str(), e["code"].as_u64()),
        (404, Some("NotFound"), Some(404))
    );
    assert_eq!(e["details"]["group"], "batch");
}

#[tokio::test]
async fn default_and_kube_system_namespaces_exist_and_missing_namespace_is_404() {
    let (c, h) = start().await;
    for ns in ["default", "kube-system"] {
        let (s, _, n) = get(
            &h,
            &c,
            &format!("/api/v1/namespaces/{ns}"),
            "application/json",
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(n["status"]["phase"], "Active");
    }
    let r = h
        .post(format!("{}/api/v1/namespaces/nope/configmaps", c.url()))
        .json(&json!({"metadata": {"name": "a"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
