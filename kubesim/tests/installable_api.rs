//! The API side of issue 13 without pods: discovery of the new kinds and subresources (aggregated,
//! legacy and as kubectl prints it), `/scale` of a custom resource, and impersonation by a
//! token-authenticated caller.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{call, kubectl, kubectl_ok};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

async fn start() -> common::Env {
    common::start(false, &[], &[]).await
}

fn find<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_the_new_kinds_and_subresources_as_upstream() {
    let env = start().await;
    // Legacy: /api/v1 and /apis/apps/v1.
    let (_, core) = call(&env, "GET", "/api/v1", None).await;
    let r = &core["resources"];
    assert_eq!(
        find(r, "name", "pods/eviction"),
        &json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy",
            "version": "v1", "kind": "Eviction", "verbs": ["create"]})
    );
    assert_eq!(
        find(r, "name", "serviceaccounts/token"),
        &json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
            "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    );
    assert_eq!(find(r, "name", "services")["shortNames"], json!(["svc"]));
    assert_eq!(find(r, "name", "services")["categories"], json!(["all"]));
    assert_eq!(find(r, "name", "nodes")["namespaced"], false);
    let (_, apps) = call(&env, "GET", "/apis/apps/v1", None).await;
    assert_eq!(
        find(&apps["resources"], "name", "deployments/scale"),
        &json!({"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
            "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    );
    // Aggregated discovery, as kubectl asks for it.
    let resp = reqwest::Client::new()
        .get(format!("{}/apis", env.cluster.url()))
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )
        .send()
        .await
        .unwrap();
    let agg: Value = resp.json().await.unwrap();
    let group = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = find(
        &group["versions"][0]["resources"],
        "resource",
        "deployments",
    );
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert_eq!(deploy["categories"], json!(["all"]));
    assert_eq!(
        find(&deploy["subresources"], "subresource", "scale"),
        &json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]})
    );
    // kubectl api-resources reads the same.
    let out = kubectl_ok(&env.kc, &["api-resources", "--no-headers"], "").await;
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for want in [
        vec!["deployments", "deploy", "apps/v1", "true", "Deployment"],
        vec!["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
        vec!["nodes", "no", "v1", "false", "Node"],
        vec!["services", "svc", "v1", "true", "Service"],
        vec![
            "poddisruptionbudgets",
            "pdb",
            "policy/v1",
            "true",
            "PodDisruptionBudget",
        ],
    ] {
        assert!(rows.contains(&want), "{want:?} missing from:\n{out}");
    }
    env.cluster.shutdown().await;
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pools.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: pools, singular: pool, kind: Pool}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.ready, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, maximum: 5}}}
          status: {type: object, properties: {ready: {type: integer}, selector: {type: string}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_declaring_scale_serve_it() {
    let env = start().await;
    let kc = &env.kc;
    kubectl_ok(kc, &["apply", "-f", "-"], CRD).await;
    kubectl_ok(
        kc,
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Pool\nmetadata: {name: p}\nspec: {size: 1}\n",
    )
    .await;
    let base = "/apis/example.com/v1/namespaces/default/pools/p";
    let resp = reqwest::Client::new()
        .patch(format!("{}{base}/status", env.cluster.url()))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"status": {"ready": 1, "selector": "app=p"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (code, scale) = call(&env, "GET", &format!("{base}/scale"), None).await;
    assert_eq!(code, 200);
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"], json!({"replicas": 1}));
    assert_eq!(scale["status"], json!({"replicas": 1, "selector": "app=p"}));
    kubectl_ok(kc, &["scale", "pool/p", "--replicas=3"], "").await;
    let size = kubectl_ok(kc, &["get", "pool", "p", "-o", "jsonpath={.spec.size}"], "").await;
    assert_eq!(size, "3");
    // The object's own schema still applies through /scale.
    let o = kubectl(kc, &["scale", "pool/p", "--replicas=9"], "").await;
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "The Pool \"p\" is invalid: spec.size: Invalid value: 9: spec.size in body should be less than or equal to 5"
    );
    let o = kubectl(kc, &["scale", "pool/p", "--replicas=-1"], "").await;
    assert!(!o.status.success());
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_may_impersonate_only_with_the_impersonate_verb() {
    let env = start().await;
    let (code, tr) = call(
        &env,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/default/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
    )
    .await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    // A token asking to act as cluster-admin's group is refused...
    let impersonating = |groups: bool| {
        let token = token.clone();
        let url = env.cluster.secure_url();
        let ca = env.cluster.ca_der().to_vec();
        async move {
            let mut cfg = kube::Config::new(url.parse().unwrap());
            cfg.root_cert = Some(vec![ca]);
            cfg.auth_info.token = Some(token.into());
            cfg.auth_info.impersonate = Some("alice".into());
            if groups {
                cfg.auth_info.impersonate_groups = Some(vec!["system:masters".into()]);
            }
            let client = kube::Client::try_from(cfg).unwrap();
            Api::<ConfigMap>::namespaced(client, "default")
                .list(&ListParams::default())
                .await
        }
    };
    match impersonating(true).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            (e.code, e.message.as_str()),
            (
                403,
                r#"users "alice" is forbidden: User "system:serviceaccount:default:default" cannot impersonate resource "users" in API group "" at the cluster scope"#
            )
        ),
        other => panic!("impersonation was not refused: {other:?}"),
    }
    // ...and allowed once RBAC grants impersonating users and groups.
    kubectl_ok(
        &env.kc,
        &[
            "create",
            "clusterrole",
            "imp",
            "--verb=impersonate",
            "--resource=users,groups",
        ],
        "",
    )
    .await;
    kubectl_ok(
        &env.kc,
        &[
            "create",
            "clusterrolebinding",
            "imp",
            "--clusterrole=imp",
            "--serviceaccount=default:default",
        ],
        "",
    )
    .await;
    let listed = impersonating(true).await.unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "kube-root-ca.crt, read as system:masters"
    );
    env.cluster.shutdown().await;
}
