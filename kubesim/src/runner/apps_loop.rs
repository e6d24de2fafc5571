//! The Deployment and ReplicaSet controllers' loop: watches Deployments and ReplicaSets, and on every
//! change (or 250 ms) applies what [`super::apps`] decides through the API, as kube-controller-manager
//! does. Creations wait for the cache to show what the last round made (the controllers'
//! expectations), so a lagging watch never doubles pods or ReplicaSets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::apps;

fn values<K: serde::Serialize + Clone>(s: &Store<K>) -> Vec<Value>
where
    K: kube::Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    s.state()
        .iter()
        .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
        .collect()
}

fn meta<'a>(o: &'a Value, f: &str) -> &'a str {
    o["metadata"][f].as_str().unwrap_or_default()
}

/// A merge patch that makes `old` into `new` at the top level (removed keys become null).
fn replace_patch(old: &Value, new: &Value) -> Value {
    let mut p = new.clone();
    if let (Some(o), Some(m)) = (old.as_object(), p.as_object_mut()) {
        for k in o.keys() {
            m.entry(k.clone()).or_insert(Value::Null);
        }
    }
    p
}

/// Start the watches and the loop; the tasks end when aborted.
pub fn spawn(client: kube::Client, pods: Store<Pod>, wake: Arc<Notify>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![];
    let (deploys, dw) = reflector::store::<Deployment>();
    let (rss, rw) = reflector::store::<ReplicaSet>();
    {
        let w = Arc::clone(&wake);
        let s = watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(dw);
        tasks.push(tokio::spawn(async move {
            let mut s = std::pin::pin!(s);
            while s.next().await.is_some() {
                w.notify_one();
            }
        }));
    }
    {
        let w = Arc::clone(&wake);
        let s = watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(rw);
        tasks.push(tokio::spawn(async move {
            let mut s = std::pin::pin!(s);
            while s.next().await.is_some() {
                w.notify_one();
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let mut expect: HashMap<String, (Vec<String>, Instant)> = HashMap::new();
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(250), wake.notified()).await;
            if deploys.wait_until_ready().await.is_err() || rss.wait_until_ready().await.is_err() {
                return;
            }
            let pods = values(&pods);
            let rs_list = values(&rss);
            let deploy_list = values(&deploys);
            if let Err(e) = sync(&client, &deploy_list, &rs_list, &pods, &mut expect).await {
                tracing::debug!("kubesim apps controllers: {e}");
            }
        }
    }));
    tasks
}

/// Whether what the last round created for `owner` is in the cache yet (or long enough ago).
fn settled(
    expect: &mut HashMap<String, (Vec<String>, Instant)>,
    owner: &str,
    seen: impl Fn(&str) -> bool,
) -> bool {
    match expect.get(owner) {
        Some((names, at))
            if at.elapsed() < Duration::from_secs(5) && !names.iter().all(|n| seen(n)) =>
        {
            false
        }
        _ => {
            expect.remove(owner);
            true
        }
    }
}

async fn sync(
    client: &kube::Client,
    deploys: &[Value],
    rss: &[Value],
    pods: &[Value],
    expect: &mut HashMap<String, (Vec<String>, Instant)>,
) -> anyhow::Result<()> {
    for d in deploys {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name, uid) = (meta(d, "namespace"), meta(d, "name"), meta(d, "uid"));
        if !settled(expect, uid, |n| rss.iter().any(|r| meta(r, "name") == n)) {
            continue;
        }
        let step = apps::deployment_step(d, rss, pods);
        let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
        if let Some(rs) = &step.create_rs {
            let rs: ReplicaSet = serde_json::from_value(rs.clone())?;
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(made) => {
                    expect.insert(
                        uid.into(),
                        (made.metadata.name.into_iter().collect(), Instant::now()),
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (rs, n) in &step.scale {
            rs_api
                .patch(
                    rs,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": n}})),
                )
                .await?;
        }
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        if let Some(rev) = &step.revision
            && d["metadata"]["annotations"][apps::REVISION].as_str() != Some(rev.as_str())
        {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {apps::REVISION: rev}}})),
            )
            .await?;
        }
        if d["status"] != step.status {
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": replace_patch(&d["status"], &step.status)})),
            )
            .await?;
        }
    }
    for rs in rss {
        let (ns, name, uid) = (meta(rs, "namespace"), meta(rs, "name"), meta(rs, "uid"));
        if !settled(expect, uid, |n| pods.iter().any(|p| meta(p, "name") == n)) {
            continue;
        }
        let step = apps::replicaset_step(rs, pods);
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let mut made = vec![];
        for _ in 0..step.create {
            let pod: Pod = serde_json::from_value(apps::rs_pod(rs))?;
            match pod_api.create(&PostParams::default(), &pod).await {
                Ok(p) => made.extend(p.metadata.name),
                Err(e) => {
                    tracing::debug!("kubesim replicaset {ns}/{name}: creating a pod: {e}");
                    break;
                }
            }
        }
        if !made.is_empty() {
            expect.insert(uid.into(), (made, Instant::now()));
        }
        for p in &step.delete {
            match pod_api.delete(p, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if rs["status"] != step.status {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": replace_patch(&rs["status"], &step.status)})),
            )
            .await?;
        }
    }
    Ok(())
}
