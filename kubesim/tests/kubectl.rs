//! kubectl 1.32 against kubesim: apply (client- and server-side), get, wait, describe, delete.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kubesim::{Cluster, ClusterConfig};
use serde_json::json;
use std::path::Path;
use std::process::Output;

const KUBECTL: &str = "kubectl";

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              mode: {type: string, enum: [fast, slow], default: fast}
          status:
            type: object
            properties:
              phase: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

async fn kubectl(kc: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .output()
        .await
        .expect(
            "kubectl 1.32 must be on PATH (/usr/bin/kubectl); these tests do not skip without it",
        )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn ok(kc: &Path, args: &[&str]) -> String {
    let o = kubectl(kc, args).await;
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_custom_resources_end_to_end() {
    let c = Cluster::start(ClusterConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    c.write_kubeconfig(&kc).unwrap();
    let kc = kc.as_path();

    ok(kc, &["apply", "-f", &write(dir.path(), "crd.yaml", CRD)]).await;

    // Valid custom resource: defaults filled.
    let w1 = write(
        dir.path(),
        "w1.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    );
    ok(kc, &["apply", "-f", &w1]).await;
    let y = ok(kc, &["get", "widget", "w1", "-o", "yaml"]).await;
    assert!(y.contains("mode: fast") && y.contains("size: 3"), "{y}");

    // Unknown field rejected under Strict (kubectl's default).
    let unk = write(
        dir.path(),
        "unk.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w9}\nspec: {size: 3, foo: 1}\n",
    );
    let o = kubectl(kc, &["apply", "-f", &unk]).await;
    assert!(
        !o.status.success() && text(&o).contains("unknown field \"spec.foo\""),
        "{}",
        text(&o)
    );

    // Invalid value rejected naming the field.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w8}\nspec: {size: 11}\n",
    );
    let o = kubectl(kc, &["apply", "-f", &bad]).await;
    assert!(
        !o.status.success() && text(&o).contains("spec.size"),
        "{}",
        text(&o)
    );

    // Server-side apply, and a second client-side apply that changes a field.
    let w2 = write(
        dir.path(),
        "w2.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 2, mode: slow}\n",
    );
    ok(kc, &["apply", "--server-side", "-f", &w2]).await;
    let w1b = write(
        dir.path(),
        "w1b.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 4}\n",
    );
    ok(kc, &["apply", "-f", &w1b]).await;

    // Printer columns, by plural and short name.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(c.client().await.unwrap(), "default", &ar);
    api.patch_status(
        "w2",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let table = ok(kc, &["get", "widgets"]).await;
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("NAME")
            && header.contains("PHASE")
            && header.contains("SIZE")
            && header.contains("AGE"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("w2") && l.contains("Running") && l.contains('2')),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("w1") && l.contains('4')),
        "{table}"
    );
    let short = ok(kc, &["get", "wd"]).await;
    assert!(short.contains("PHASE") && short.contains("w2"), "{short}");

    // wait completes once a status patch sets the condition.
    let kc_owned = kc.to_path_buf();
    let waiter = tokio::spawn(async move {
        kubectl(
            &kc_owned,
            &[
                "wait",
                "--for=condition=Ready",
                "widgets/w1",
                "--timeout=30s",
            ],
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !waiter.is_finished(),
        "wait returned before the condition was set"
    );
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let o = waiter.await.unwrap();
    assert!(
        o.status.success() && text(&o).contains("condition met"),
        "{}",
        text(&o)
    );

    // describe shows events.k8s.io events about the object.
    let w1obj = api.get("w1").await.unwrap();
    let events: Api<DynamicObject> = Api::namespaced_with(
        c.client().await.unwrap(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let ev: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "w1.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Reconcile", "reason": "Reconciled", "note": "all good",
        "type": "Normal", "reportingController": "widget-controller", "reportingInstance": "x",
        "regarding": {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "namespace": "default", "uid": w1obj.metadata.uid}
    })).unwrap();
    events.create(&Default::default(), &ev).await.unwrap();
    let d = ok(kc, &["describe", "widget", "w1"]).await;
    assert!(d.contains("Reconciled") && d.contains("all good"), "{d}");

    // delete waits on a finalizer removed later.
    let w3 = write(
        dir.path(),
        "w3.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3, finalizers: [example.com/hold]}\nspec: {size: 1}\n",
    );
    ok(kc, &["apply", "-f", &w3]).await;
    let kc_owned = kc.to_path_buf();
    let deleter = tokio::spawn(async move {
        kubectl(&kc_owned, &["delete", "widget", "w3", "--timeout=30s"]).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !deleter.is_finished(),
        "delete returned while the finalizer held the object"
    );
    assert!(
        api.get("w3")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    api.patch(
        "w3",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let o = deleter.await.unwrap();
    assert!(
        o.status.success() && text(&o).contains("deleted"),
        "{}",
        text(&o)
    );
    c.shutdown().await;
}
