//! Server behaviours over real HTTP with a kube client: KUBESIM.md's ten server behaviours.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kubesim::{Cluster, ClusterConfig};
use serde_json::{Value, json};

async fn cluster() -> (Cluster, kube::Client) {
    let c = Cluster::start(ClusterConfig::default()).await.unwrap();
    let client = c.client().await.unwrap();
    (c, client)
}

fn crd_json() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}
    })
}

async fn widgets(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd_json()).unwrap(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})).unwrap()
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}})).unwrap()
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn noop_patch_changes_no_resource_version() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api.create(&PostParams::default(), &cm("x")).await.unwrap();
    let b = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(a.metadata.resource_version, b.metadata.resource_version);
    let c = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap();
    let (rb, rc): (u64, u64) = (
        b.metadata.resource_version.unwrap().parse().unwrap(),
        c.metadata.resource_version.unwrap().parse().unwrap(),
    );
    assert!(rc > rb);
}

#[tokio::test]
async fn status_write_on_main_resource_is_ignored_and_generation_tracks_spec() {
    let (_c, client) = cluster().await;
    let api = widgets(&client).await;
    let mut w = widget("w", json!({"size": 1}));
    w.data["status"] = json!({"phase": "Sneaky"});
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(w.data.get("status").is_none());
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "X"}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert!(w.data.get("status").is_none());
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}, "spec": {"size": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["status"]["phase"], "Done");
    assert_eq!(w.data["spec"]["size"], 1);
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.data["status"]["phase"], "Done");
}

#[tokio::test]
async fn stale_resource_version_is_conflict_and_duplicate_create_already_exists() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api.create(&PostParams::default(), &cm("x")).await.unwrap();
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("x"))
                .await
                .unwrap_err()
        ),
        (409, "AlreadyExists".into())
    );
    let mut b = a.clone();
    b.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("x", &PostParams::default(), &b).await.unwrap();
    assert_eq!(
        code(
            api.replace("x", &PostParams::default(), &b)
                .await
                .unwrap_err()
        ),
        (409, "Conflict".into())
    );
    let mut g: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    g = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    assert_eq!(
        code(api.get("missing").await.unwrap_err()),
        (404, "NotFound".into())
    );
}

#[tokio::test]
async fn finalizer_holds_deletion_until_removed() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("f")).await.unwrap();
    let fin = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}]);
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(fin.clone()).unwrap()),
    )
    .await
    .unwrap();
    // A second test of null now fails with 422 Invalid.
    let e = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(fin).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (422, "Invalid".into()));
    let pending = api.delete("f", &DeleteParams::default()).await.unwrap();
    let obj = pending
        .left()
        .expect("object returned while finalizers pend");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let add = json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "new/one"}]);
    assert_eq!(
        code(
            api.patch(
                "f",
                &PatchParams::default(),
                &Patch::<()>::Json(serde_json::from_value(add).unwrap())
            )
            .await
            .unwrap_err()
        )
        .0,
        422
    );
    let rel = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x/y"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(rel).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(code(api.get("f").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn empty_finalizers_labels_annotations_are_omitted() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let o: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "e", "finalizers": [], "labels": {}, "annotations": {}}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
    let raw: Value = client
        .request(http_get("/api/v1/namespaces/default/configmaps/e"))
        .await
        .unwrap();
    let meta = raw["metadata"].as_object().unwrap();
    assert!(
        !meta.contains_key("finalizers")
            && !meta.contains_key("labels")
            && !meta.contains_key("annotations"),
        "{raw}"
    );
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(vec![]).unwrap()
}

fn owned_cm(name: &str, owner: &ConfigMap) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}]}})).unwrap()
}

#[tokio::test]
async fn background_deletes_dependents_and_orphan_strips_owner_references() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let owner = api
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_cm("dep", &owner))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(code(api.get("dep").await.unwrap_err()).0, 404);

    let owner = api
        .create(&PostParams::default(), &cm("owner2"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_cm("dep2", &owner))
        .await
        .unwrap();
    api.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let dep = api.get("dep2").await.unwrap();
    assert!(dep.metadata.owner_references.is_none());

    let owner = api
        .create(&PostParams::default(), &cm("owner3"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_cm("dep3", &owner))
        .await
        .unwrap();
    api.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    assert_eq!(code(api.get("dep3").await.unwrap_err()).0, 404);
    assert_eq!(code(api.get("owner3").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn a_dependent_created_after_its_owner_is_gone_is_collected() {
    // As a Job controller working from a stale cache creates a pod for a deleted Job.
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let owner = api
        .create(&PostParams::default(), &cm("gone"))
        .await
        .unwrap();
    api.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_cm("late", &owner))
        .await
        .unwrap();
    assert_eq!(code(api.get("late").await.unwrap_err()).0, 404);
    // One live owner among gone ones keeps it.
    let live = api
        .create(&PostParams::default(), &cm("live"))
        .await
        .unwrap();
    let mut both = owned_cm("kept", &owner);
    both.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .extend(owned_cm("x", &live).metadata.owner_references.unwrap());
    api.create(&PostParams::default(), &both).await.unwrap();
    assert!(api.get("kept").await.is_ok());
}

#[tokio::test]
async fn crd_rejects_non_structural_schema() {
    let (_c, client) = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let mut bad = crd_json();
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"properties": {"a": {"type": "string"}}});
    let e = crds
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("properties[spec].type"), "{}", s.message);
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn custom_resources_are_validated_defaulted_and_pruned() {
    let (_c, client) = cluster().await;
    let api = widgets(&client).await;
    let w = api
        .create(
            &PostParams::default(),
            &widget("ok", json!({"size": 3, "junk": 1, "extra": {"kept": true}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["mode"], "fast");
    assert!(w.data["spec"].get("junk").is_none());
    assert_eq!(w.data["spec"]["extra"]["kept"], true);
    let e = api
        .create(
            &PostParams::default(),
            &widget("bad", json!({"size": 11, "mode": "odd"})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("spec.size") && s.message.contains("spec.mode"),
        "{}",
        s.message
    );
    let e = api
        .create(&PostParams::default(), &widget("missing", json!({})))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert!(
        s.message.contains("spec.size: Required value"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_field() {
    let (_c, client) = cluster().await;
    let api = widgets(&client).await;
    let _ = api;
    let body = serde_json::to_vec(&widget("s", json!({"size": 1, "foo": 1}))).unwrap();
    let req = http::Request::post(
        "/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict",
    )
    .header("content-type", "application/json")
    .body(body)
    .unwrap();
    let e = client.request::<Value>(req).await.unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "strict decoding error: unknown field \"spec.foo\""
    );
}

#[tokio::test]
async fn strategic_merge_is_415_for_custom_resources_and_merges_builtin_lists() {
    let (_c, client) = cluster().await;
    let api = widgets(&client).await;
    api.create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    let e = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e).0, 415);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client);
    let p = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "b", "image": "z"}]}})),
        )
        .await
        .unwrap();
    let images: Vec<_> = p
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.image.unwrap())
        .collect();
    assert_eq!(images, vec!["x", "z"]);
}

#[tokio::test]
async fn apply_creates_then_conflicts_with_other_manager_unless_forced() {
    let (_c, client) = cluster().await;
    let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::default_namespaced(client);
    let body = |h: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": h}});
    api.patch("l", &PatchParams::apply("a"), &Patch::Apply(body("a")))
        .await
        .unwrap();
    let e = api
        .patch("l", &PatchParams::apply("b"), &Patch::Apply(body("b")))
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "Conflict".into()));
    let l = api
        .patch(
            "l",
            &PatchParams::apply("b").force(),
            &Patch::Apply(body("b")),
        )
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn label_selectors_and_paging() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for (n, tier) in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "cache")] {
        let o: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": {"tier": tier}}}))
                .unwrap();
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (web,db)"))
                .await
                .unwrap()
        ),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier!=web"))
                .await
                .unwrap()
        ),
        // Every namespace has kube-root-ca.crt, which has no tier label, as upstream.
        vec!["b", "d", "kube-root-ca.crt"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        vec!["c"]
    );
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    assert_eq!(names(first), vec!["a", "b", "c"]);
    let rest = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest), vec!["d", "kube-root-ca.crt"]);
}

#[tokio::test]
async fn watch_from_compacted_rv_gets_410_event() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = a.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b")).await.unwrap();
    // Before compaction: the watch replays events after rv, in order.
    let mut s = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }
    c.faults().compact();
    let mut s = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn injected_faults_fail_the_next_requests_then_clear() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    // 500, not 503: kube retries 503s by itself.
    c.faults().fail_next("create", "configmaps", 2, 500);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("a"))
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("a"))
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
}

#[tokio::test]
async fn restart_keeps_store_and_port() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("kept"))
        .await
        .unwrap();
    let port = c.port();
    c.restart().await.unwrap();
    assert_eq!(c.port(), port);
    api.get("kept").await.unwrap();
}

#[tokio::test]
async fn lease_manager_flow_take_renew_conflict_release() {
    let (_c, client) = cluster().await;
    let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::default_namespaced(client);
    assert_eq!(code(api.get("lead").await.unwrap_err()).0, 404);
    let l = serde_json::from_value(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lead"}})).unwrap();
    api.create(&PostParams::default(), &l).await.unwrap();
    assert_eq!(
        code(api.create(&PostParams::default(), &l).await.unwrap_err()),
        (409, "AlreadyExists".into())
    );
    let take = |h: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": h, "leaseDurationSeconds": 4}});
    api.patch(
        "lead",
        &PatchParams::apply("mgr-a"),
        &Patch::Apply(take("a")),
    )
    .await
    .unwrap();
    let renew = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"leaseTransitions": 1}});
    api.patch(
        "lead",
        &PatchParams::apply("mgr-a"),
        &Patch::Strategic(renew),
    )
    .await
    .unwrap();
    let e = api
        .patch(
            "lead",
            &PatchParams::apply("mgr-b"),
            &Patch::Apply(take("b")),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("mgr-a") && s.message.contains(".spec.holderIdentity"),
        "{}",
        s.message
    );
    let release = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": null, "leaseDurationSeconds": null}});
    let l = api
        .patch(
            "lead",
            &PatchParams::apply("mgr-a"),
            &Patch::Strategic(release),
        )
        .await
        .unwrap();
    assert!(l.spec.as_ref().unwrap().holder_identity.is_none());
    assert_eq!(l.spec.unwrap().lease_transitions, Some(1));
    let l = api
        .patch(
            "lead",
            &PatchParams::apply("mgr-b"),
            &Patch::Apply(take("b")),
        )
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn watch_with_field_selector_reports_leaving_objects_as_deleted() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let o: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "b", "labels": {"x": "1"}}})).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
    let rv = a.metadata.resource_version.unwrap();
    let mut s = api
        .watch(&WatchParams::default().labels("x=1").timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "2"}}})),
    )
    .await
    .unwrap();
    let mut seen = vec![];
    while let Some(ev) = s.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => {
                seen.push(format!("DELETED {}", o.metadata.name.unwrap()));
                break;
            }
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            _ => {}
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED b"]);
}

#[tokio::test]
async fn recorder_events_get_series_and_show_as_core_events_by_involved_object() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (_c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let o = cms
        .create(&PostParams::default(), &cm("subject"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tester".into(),
            instance: Some("i".into()),
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "Twice".into(),
        note: Some("n".into()),
        action: "Act".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&o, &());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let new: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client.clone());
    let items = new.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].series.as_ref().unwrap().count, 2);
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client);
    let sel = format!(
        "involvedObject.name=subject,involvedObject.namespace=default,involvedObject.kind=ConfigMap,involvedObject.uid={}",
        o.metadata.uid.unwrap()
    );
    let items = core
        .list(&ListParams::default().fields(&sel))
        .await
        .unwrap()
        .items;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0].reason.as_deref(),
            items[0].message.as_deref(),
            items[0].count
        ),
        (Some("Twice"), Some("n"), Some(2))
    );
    let none = core
        .list(&ListParams::default().fields("involvedObject.name=other"))
        .await
        .unwrap()
        .items;
    assert!(none.is_empty());
}
