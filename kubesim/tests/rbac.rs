//! RBAC enforcement for impersonated requests: Roles, ClusterRoles and their bindings, through a kube
//! client impersonating a service account (`Cluster::client_as`), raw HTTP and kubectl `--as`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubesim::{Cluster, ClusterConfig};
use serde_json::{Value, json};

const SA: &str = "system:serviceaccount:team-a:worker";

async fn cluster() -> (Cluster, kube::Client) {
    let c = Cluster::start(ClusterConfig::default()).await.unwrap();
    let admin = c.client().await.unwrap();
    for ns in ["team-a", "team-b"] {
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
    }
    (c, admin)
}

/// Create any object (the RBAC kinds, ConfigMaps, ...) as the admin, through its raw URL.
async fn create(admin: &kube::Client, url: &str, obj: Value) {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&obj).unwrap())
        .unwrap();
    let _: Value = admin.request(req).await.unwrap();
}

async fn role(admin: &kube::Client, ns: &str, name: &str, rules: Value) {
    create(
        admin,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

async fn cluster_role(admin: &kube::Client, name: &str, rules: Value) {
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

async fn role_binding(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    role_kind: &str,
    subjects: Value,
) {
    create(
        admin,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
               "subjects": subjects}),
    )
    .await;
}

async fn cluster_role_binding(admin: &kube::Client, name: &str, subjects: Value) {
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects}),
    )
    .await;
}

fn worker_sa() -> Value {
    json!([{"kind": "ServiceAccount", "name": "worker", "namespace": "team-a"}])
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

async fn seed_configmaps(admin: &kube::Client) {
    for ns in ["team-a", "team-b"] {
        let api: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
        for name in ["one", "two"] {
            api.create(&PostParams::default(), &cm(name)).await.unwrap();
        }
    }
}

/// The API error of a failed call: (code, reason, message).
fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn assert_forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    let (code, reason, message) = api_err(r);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{message}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_binding_grants_verbs_in_its_namespace_only() {
    let (c, admin) = cluster().await;
    seed_configmaps(&admin).await;
    role(
        &admin,
        "team-a",
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "cm-reader", "Role", worker_sa()).await;
    let sa = c.client_as(SA).await.unwrap();

    let in_a: Api<ConfigMap> = Api::namespaced(sa.clone(), "team-a");
    let names: Vec<String> = in_a
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    // Every namespace also holds kube-root-ca.crt, as upstream.
    assert_eq!(names, ["kube-root-ca.crt", "one", "two"]);
    assert_eq!(
        in_a.get("one").await.unwrap().data.unwrap()["k"],
        "v".to_string()
    );

    // Verbs the Role does not grant.
    let m = assert_forbidden(in_a.create(&PostParams::default(), &cm("three")).await);
    assert_eq!(
        m,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
        )
    );
    let m = assert_forbidden(in_a.delete("one", &Default::default()).await);
    assert!(m.contains("cannot delete resource \"configmaps\""), "{m}");
    assert!(in_a.get("one").await.is_ok(), "the denied delete deleted");

    // Another namespace, and the cluster-wide list.
    let in_b: Api<ConfigMap> = Api::namespaced(sa.clone(), "team-b");
    let m = assert_forbidden(in_b.get("one").await);
    assert!(m.ends_with("in the namespace \"team-b\""), "{m}");
    let all: Api<ConfigMap> = Api::all(sa);
    let m = assert_forbidden(all.list(&ListParams::default()).await);
    assert!(m.ends_with("at the cluster scope"), "{m}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_role_via_role_binding_is_namespaced() {
    let (c, admin) = cluster().await;
    seed_configmaps(&admin).await;
    cluster_role(
        &admin,
        "cm-viewer",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "cm-viewer", "ClusterRole", worker_sa()).await;
    let sa = c.client_as(SA).await.unwrap();

    let in_a: Api<ConfigMap> = Api::namespaced(sa.clone(), "team-a");
    assert_eq!(
        in_a.list(&ListParams::default()).await.unwrap().items.len(),
        3,
        "one, two and kube-root-ca.crt"
    );
    let in_b: Api<ConfigMap> = Api::namespaced(sa.clone(), "team-b");
    assert_forbidden(in_b.list(&ListParams::default()).await);
    let all: Api<ConfigMap> = Api::all(sa.clone());
    assert_forbidden(all.list(&ListParams::default()).await);

    // The same ClusterRole through a ClusterRoleBinding reaches every namespace.
    cluster_role_binding(&admin, "cm-viewer", worker_sa()).await;
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4 + 5,
        "two in each team namespace, kube-root-ca.crt in each of the five namespaces"
    );
    assert_eq!(in_b.get("two").await.unwrap().metadata.name.unwrap(), "two");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subresource_needs_its_own_rule() {
    let (c, admin) = cluster().await;
    let jobs_admin: Api<Job> = Api::namespaced(admin.clone(), "team-a");
    let job: Job = serde_json::from_value(
        json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .unwrap();
    jobs_admin
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    Api::<Pod>::namespaced(admin.clone(), "team-a")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap(),
        )
        .await
        .unwrap();
    role(
        &admin,
        "team-a",
        "jobs",
        json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]},
               {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "jobs", "Role", worker_sa()).await;
    let sa = c.client_as(SA).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(sa.clone(), "team-a");
    let pods: Api<Pod> = Api::namespaced(sa.clone(), "team-a");
    let status = Patch::Merge(json!({"status": {"active": 1}}));

    assert!(jobs.get("j").await.is_ok());
    let m = assert_forbidden(
        jobs.patch_status("j", &PatchParams::default(), &status)
            .await,
    );
    assert_eq!(
        m,
        format!(
            "jobs.batch \"j\" is forbidden: User \"{SA}\" cannot patch resource \"jobs/status\" in API group \"batch\" in the namespace \"team-a\""
        )
    );
    assert!(pods.get("p").await.is_ok());
    let m = assert_forbidden(pods.logs("p", &Default::default()).await);
    assert_eq!(
        m,
        format!(
            "pods \"p\" is forbidden: User \"{SA}\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"team-a\""
        )
    );

    // `jobs/status` grants the subresource; `*/log` any resource's log.
    role(
        &admin,
        "team-a",
        "subresources",
        json!([{"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["patch"]},
               {"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "subresources", "Role", worker_sa()).await;
    let j = jobs
        .patch_status("j", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(j.status.unwrap().active, Some(1));
    assert_eq!(pods.logs("p", &Default::default()).await.unwrap(), "");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_names_restrict_get() {
    let (c, admin) = cluster().await;
    seed_configmaps(&admin).await;
    role(
        &admin,
        "team-a",
        "only-one",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "list", "update"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "only-one", "Role", worker_sa()).await;
    let sa = c.client_as(SA).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sa, "team-a");

    let one = api.get("one").await.unwrap();
    let m = assert_forbidden(api.get("two").await);
    assert_eq!(
        m,
        format!(
            "configmaps \"two\" is forbidden: User \"{SA}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
        )
    );
    // A plain list names no object; a metadata.name field selector does.
    assert_forbidden(api.list(&ListParams::default()).await);
    let listed = api
        .list(&ListParams::default().fields("metadata.name=one"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_forbidden(
        api.list(&ListParams::default().fields("metadata.name=two"))
            .await,
    );
    assert!(
        api.replace("one", &PostParams::default(), &one)
            .await
            .is_ok()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_forbidden_without_rule_with_upstream_message() {
    let (c, admin) = cluster().await;
    Api::<Secret>::namespaced(admin.clone(), "team-a")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    role(
        &admin,
        "team-a",
        "everything-but-secrets",
        json!([{"apiGroups": [""], "resources": ["configmaps", "pods", "events"], "verbs": ["*"]},
               {"apiGroups": ["batch"], "resources": ["*"], "verbs": ["*"]}]),
    )
    .await;
    role_binding(
        &admin,
        "team-a",
        "everything-but-secrets",
        "Role",
        worker_sa(),
    )
    .await;
    let sa = c.client_as(SA).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(sa, "team-a");

    let (code, reason, message) = api_err(secrets.get("db").await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "secrets \"db\" is forbidden: User \"system:serviceaccount:team-a:worker\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team-a\""
    );
    assert_eq!(
        assert_forbidden(secrets.list(&ListParams::default()).await),
        "secrets is forbidden: User \"system:serviceaccount:team-a:worker\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\""
    );

    // The raw Status body: reason, code and details as upstream.
    let url = format!("{}/api/v1/namespaces/team-a/secrets/db", c.url());
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Impersonate-User", SA)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["code"], 403);
    assert_eq!(body["details"], json!({"name": "db", "kind": "secrets"}));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimpersonated_requests_are_admin() {
    let (c, admin) = cluster().await;
    // No RBAC objects at all: the unimpersonated client still does anything.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "team-a");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        Api::<ConfigMap>::all(admin.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        5,
        "kube-root-ca.crt in default, kube-system, kube-public, team-a, team-b"
    );
    secrets.delete("s", &Default::default()).await.unwrap();

    // The same request impersonating a user without bindings is refused...
    let bob = c.client_as("bob").await.unwrap();
    assert_forbidden(
        Api::<Secret>::namespaced(bob, "team-a")
            .list(&ListParams::default())
            .await,
    );
    // ...and allowed again for a member of system:masters (bootstrap cluster-admin binding).
    let master = c
        .client_as_groups("carol", &["system:masters"])
        .await
        .unwrap();
    assert!(
        Api::<Secret>::namespaced(master, "team-a")
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_users_and_discovery() {
    let (c, admin) = cluster().await;
    seed_configmaps(&admin).await;
    cluster_role(
        &admin,
        "cm-list",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
    )
    .await;
    // Every service account of team-a, through its implicit group.
    role_binding(
        &admin,
        "team-a",
        "cm-list",
        "ClusterRole",
        json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccounts:team-a"},
               {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "dave"}]),
    )
    .await;
    let lp = ListParams::default();
    for user in ["system:serviceaccount:team-a:other", "dave"] {
        let client = c.client_as(user).await.unwrap();
        assert_eq!(
            Api::<ConfigMap>::namespaced(client, "team-a")
                .list(&lp)
                .await
                .unwrap()
                .items
                .len(),
            3,
            "{user}: one, two and kube-root-ca.crt"
        );
    }
    // team-b's service accounts are not in the group; explicit groups replace the implicit ones.
    let b = c
        .client_as("system:serviceaccount:team-b:worker")
        .await
        .unwrap();
    assert_forbidden(Api::<ConfigMap>::namespaced(b, "team-a").list(&lp).await);
    let regrouped = c.client_as_groups(SA, &["testers"]).await.unwrap();
    assert_forbidden(
        Api::<ConfigMap>::namespaced(regrouped, "team-a")
            .list(&lp)
            .await,
    );

    // Discovery and /version are open to any authenticated user; other paths are not.
    let http = reqwest::Client::new();
    for path in [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/batch/v1",
        "/version",
        "/openapi/v3",
    ] {
        let r = http
            .get(format!("{}{path}", c.url()))
            .header("Impersonate-User", "nobody")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = http
        .get(format!("{}/metrics", c.url()))
        .header("Impersonate-User", "nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        "forbidden: User \"nobody\" cannot get path \"/metrics\""
    );
    // A group without a user is refused.
    let r = http
        .get(format!("{}/api/v1/namespaces", c.url()))
        .header("Impersonate-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_to_missing_role_explains_the_denial() {
    let (c, admin) = cluster().await;
    role_binding(&admin, "team-a", "not-there", "Role", worker_sa()).await;
    let sa = c.client_as(SA).await.unwrap();
    let m = assert_forbidden(
        Api::<ConfigMap>::namespaced(sa, "team-a")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        m,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\": RBAC: role.rbac.authorization.k8s.io \"not-there\" not found"
        )
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_as_service_account_is_forbidden() {
    let (c, admin) = cluster().await;
    seed_configmaps(&admin).await;
    role(
        &admin,
        "team-a",
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
    )
    .await;
    role_binding(&admin, "team-a", "cm-reader", "Role", worker_sa()).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    c.write_kubeconfig(&kc).unwrap();
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .arg(format!("--as={SA}"))
            .args(args)
            .output()
            .expect("kubectl 1.32 must be on PATH; this test does not skip without it")
    };

    let o = kubectl(&["get", "secrets", "-n", "team-a"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!(
            "Error from server (Forbidden): secrets is forbidden: User \"{SA}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\""
        )),
        "{stderr}"
    );
    let o = kubectl(&["get", "configmaps", "-n", "team-b"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Error from server (Forbidden)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // What the Role grants works through kubectl's discovery and printing.
    let o = kubectl(&["get", "configmaps", "-n", "team-a", "-o", "name"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "configmap/kube-root-ca.crt\nconfigmap/one\nconfigmap/two\n"
    );
    c.shutdown().await;
}
