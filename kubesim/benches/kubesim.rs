//! kubesim alone at 1,000 and 10,000 objects, over HTTP: creates/s, label-selector lists/s and
//! watch events/s (events delivered, summed over the watchers). Run: `cargo bench -p kubesim`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failed unwrap is a failed run

use futures::StreamExt as _;
use kubesim::{Cluster, ClusterConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Objects share their label among this many groups: a selector matches objects / GROUPS.
const GROUPS: usize = 100;
/// Concurrent clients creating objects.
const WRITERS: usize = 4;
/// Watchers of the namespace while objects change.
const WATCHERS: usize = 10;
/// Objects changed while the watchers watch.
const UPDATES: usize = 1_000;
/// Label-selector lists run for this long (or `MAX_LISTS` lists) at each size.
const LIST_TIME: Duration = Duration::from_secs(3);
const MAX_LISTS: usize = 2_000;

fn configmap(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:05}"), "labels": {"group": format!("g{}", i % GROUPS), "bench": "kubesim"}},
        "data": {"index": i.to_string(), "payload": "x".repeat(200)}})
}

async fn create_all(http: &reqwest::Client, base: &str, ns: &str, n: usize) -> f64 {
    let url = format!("{base}/api/v1/namespaces/{ns}/configmaps");
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.post(&url).json(&configmap(i)).send().await.unwrap();
                assert_eq!(r.status(), 201, "create cm-{i}");
            }
        })
        .buffer_unordered(WRITERS)
        .collect::<Vec<_>>()
        .await;
    n as f64 / start.elapsed().as_secs_f64()
}

async fn lists(http: &reqwest::Client, base: &str, ns: &str, n: usize) -> f64 {
    let url = format!("{base}/api/v1/namespaces/{ns}/configmaps?labelSelector=group%3Dg7");
    let start = Instant::now();
    let mut done = 0;
    while done < MAX_LISTS && start.elapsed() < LIST_TIME {
        let v: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), n / GROUPS, "objects the selector matches");
        done += 1;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Counts the events a watch delivers until it has seen `want`.
async fn watch_until(http: reqwest::Client, url: String, want: usize) {
    let mut body = http.get(&url).send().await.unwrap().bytes_stream();
    let (mut seen, mut buf) = (0, Vec::new());
    while seen < want {
        let chunk = body.next().await.expect("watch ended early").unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(p) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            if ev["type"] == "MODIFIED" {
                seen += 1;
            }
        }
    }
}

async fn watch_events(http: &reqwest::Client, base: &str, ns: &str, n: usize) -> f64 {
    let list: Value = http
        .get(format!("{base}/api/v1/namespaces/{ns}/configmaps?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
    let url = format!(
        "{base}/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=600"
    );
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|_| tokio::spawn(watch_until(http.clone(), url.clone(), UPDATES)))
        .collect();
    let start = Instant::now();
    futures::stream::iter(0..UPDATES)
        .map(|i| {
            let http = http.clone();
            let url = format!(
                "{base}/api/v1/namespaces/{ns}/configmaps/cm-{:05}",
                (i * 7) % n
            );
            async move {
                let r = http
                    .patch(&url)
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({"data": {"update": i.to_string()}}).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "patch");
            }
        })
        .buffer_unordered(WRITERS)
        .collect::<Vec<_>>()
        .await;
    for w in watchers {
        w.await.unwrap();
    }
    (WATCHERS * UPDATES) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let cluster = Cluster::start(ClusterConfig::default()).await.unwrap();
    let base = cluster.url();
    let http = reqwest::Client::new();
    println!(
        "kubesim over HTTP: {WRITERS} concurrent writers, selectors match 1/{GROUPS}, {WATCHERS} watchers of {UPDATES} updates"
    );
    for n in [1_000, 10_000] {
        let ns = format!("bench-{n}");
        let r = http
            .post(format!("{base}/api/v1/namespaces"))
            .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let creates = create_all(&http, &base, &ns, n).await;
        let lists = lists(&http, &base, &ns, n).await;
        let events = watch_events(&http, &base, &ns, n).await;
        println!(
            "{n:>6} objects: {creates:>8.0} creates/s  {lists:>8.1} label-selector lists/s  {events:>8.0} watch events/s"
        );
    }
    cluster.shutdown().await;
}
