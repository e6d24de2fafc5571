//! A kube-runtime Controller (owns, finalizer, Recorder, status patches) keeps working through
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! dropped watches, a 410 compaction and an API server restart, without duplicates.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Fin, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use kubesim::{Cluster, ClusterConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    phase: Option<String>,
    size: Option<i64>,
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Failure(#[from] kube::Error);

async fn apply(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, Failure> {
    let ns = w.namespace().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = w.controller_owner_ref(&()).unwrap();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-cm", w.name_any()), "ownerReferences": [owner]},
        "data": {"size": w.spec.size.to_string()}});
    cms.patch(
        &format!("{}-cm", w.name_any()),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(cm),
    )
    .await?;
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"phase": "Ready", "size": w.spec.size}});
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(status),
        )
        .await?;
    ctx.recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some("ok".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &w.object_ref(&()),
        )
        .await?;
    Ok(Action::await_change())
}

async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<Failure>> {
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap_or_default());
    finalizer(&api, "example.com/cleanup", w, |ev| async move {
        match ev {
            Fin::Apply(w) => apply(w, ctx).await,
            Fin::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // A generous ceiling: a loaded machine slows the controller, a fast one never waits this long.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ready(api: &Api<Widget>, name: &str, size: i64) {
    eventually(&format!("{name} ready with size {size}"), || async {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|w| w.status)
            .is_some_and(|s| s.phase.as_deref() == Some("Ready") && s.size == Some(size))
    })
    .await;
}

fn widget(name: &str, size: i64) -> Widget {
    Widget::new(name, WidgetSpec { size })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_survives_dropped_watches_compaction_and_restart_without_duplicates() {
    let c = Cluster::start(ClusterConfig::default()).await.unwrap();
    let client = c.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "widget-controller".into(),
                instance: None,
            },
        ),
    });
    let ctrl = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(500)),
            ctx,
        )
        .for_each(|_| async {});
    let ctrl = tokio::spawn(ctrl);

    widgets
        .create(&PostParams::default(), &widget("w1", 1))
        .await
        .unwrap();
    ready(&widgets, "w1", 1).await;
    let w1_cm_uid = cms.get("w1-cm").await.unwrap().uid();
    assert_eq!(
        widgets.get("w1").await.unwrap().finalizers(),
        ["example.com/cleanup"]
    );

    // Dropped watches: the controller re-watches and sees new objects.
    c.faults().drop_watches();
    widgets
        .create(&PostParams::default(), &widget("w2", 2))
        .await
        .unwrap();
    ready(&widgets, "w2", 2).await;

    // Compaction while the watches' last RVs fall behind: they get 410 and relist.
    for i in 0..3 {
        let n: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("noise-{i}")}})).unwrap();
        cms.create(&PostParams::default(), &n).await.unwrap();
    }
    c.faults().compact();
    c.faults().drop_watches();
    widgets
        .create(&PostParams::default(), &widget("w3", 3))
        .await
        .unwrap();
    ready(&widgets, "w3", 3).await;

    // API server restart on the same port.
    c.restart().await.unwrap();
    widgets
        .create(&PostParams::default(), &widget("w4", 4))
        .await
        .unwrap();
    ready(&widgets, "w4", 4).await;
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    ready(&widgets, "w1", 5).await;
    eventually("w1-cm updated", || async {
        cms.get("w1-cm")
            .await
            .ok()
            .and_then(|c| c.data)
            .is_some_and(|d| d["size"] == "5")
    })
    .await;

    // Deleting runs the finalizer cleanup; GC removes the owned ConfigMap.
    widgets
        .delete("w2", &DeleteParams::default())
        .await
        .unwrap();
    eventually("w2 gone", || async {
        widgets.get_opt("w2").await.unwrap().is_none()
    })
    .await;
    eventually("w2-cm collected", || async {
        cms.get_opt("w2-cm").await.unwrap().is_none()
    })
    .await;

    // No duplicates: one ConfigMap per widget, w1's never recreated.
    let mut owned: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|n| !n.starts_with("noise") && n != "kube-root-ca.crt")
        .collect();
    owned.sort();
    assert_eq!(owned, ["w1-cm", "w3-cm", "w4-cm"]);
    assert_eq!(cms.get("w1-cm").await.unwrap().uid(), w1_cm_uid);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client.clone());
    assert!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Reconciled"))
    );
    ctrl.abort();
    c.shutdown().await;
}
