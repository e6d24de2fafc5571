//! kubesim as a cluster one could install into (issue 13), over HTTP with kube and kubectl: the
//! `kubernetes` Service and a Node pods are bound to, Services with distinct ClusterIPs, evictions
//! refused by a PodDisruptionBudget, a pod's own service-account token under RBAC, readiness
//! probes, and Deployments whose rollouts replace their pods.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{call, kubectl, kubectl_ok, text, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

async fn start() -> common::Env {
    common::start(
        true,
        &[
            ("busybox", "/bin/sh"),
            ("kubectl", "/usr/bin/kubectl"),
            ("python", "/usr/bin/python3"),
        ],
        &[],
    )
    .await
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_distinct_cluster_ips_and_pods_are_bound_to_the_node() {
    let env = start().await;
    let kc = &env.kc;
    let svcs = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: api}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
"#;
    kubectl_ok(kc, &["apply", "-f", "-"], svcs).await;
    let out = kubectl_ok(
        kc,
        &[
            "get",
            "services",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}{"\n"}{end}"#,
        ],
        "",
    )
    .await;
    let ips: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let names: Vec<&str> = ips.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["api", "db", "kubernetes", "web"]);
    assert_eq!(ips[1].1, "None");
    assert_eq!(ips[2].1, "10.96.0.1");
    let (api_ip, web_ip) = (ips[0].1, ips[3].1);
    assert_ne!(api_ip, web_ip);
    for ip in [api_ip, web_ip] {
        let ip: std::net::Ipv4Addr = ip.parse().unwrap();
        let o = ip.octets();
        assert!(
            o[0] == 10 && (96..112).contains(&o[1]),
            "{ip} outside 10.96.0.0/12"
        );
    }
    // Defaults, and the kubernetes Service pointing at the TLS listener.
    let api: Api<Service> = Api::default_namespaced(env.client.clone());
    let web = serde_json::to_value(api.get("web").await.unwrap()).unwrap();
    assert_eq!(web["spec"]["type"], "ClusterIP");
    assert_eq!(web["spec"]["clusterIPs"], json!([web_ip]));
    assert_eq!(web["spec"]["ports"][0]["protocol"], "TCP");
    let k = serde_json::to_value(api.get("kubernetes").await.unwrap()).unwrap();
    assert_eq!(k["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        k["spec"]["ports"][0]["targetPort"],
        env.cluster.secure_port()
    );
    // A ClusterIP is immutable; one in use cannot be asked for.
    let o = kubectl(
        kc,
        &[
            "patch",
            "service",
            "web",
            "-p",
            r#"{"spec":{"clusterIP":"10.96.9.9"}}"#,
        ],
        "",
    )
    .await;
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        r#"The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.9.9"}: may not change once set"#
    );
    let taken = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: copy}}\nspec: {{clusterIP: {api_ip}, ports: [{{port: 1}}]}}\n"
    );
    let o = kubectl(kc, &["create", "-f", "-"], &taken).await;
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        format!(
            r#"The Service "copy" is invalid: spec.clusterIPs: Invalid value: []string{{"{api_ip}"}}: failed to allocate IP {api_ip}: provided IP is already allocated"#
        )
    );
    // An unchanged re-apply keeps the allocated address.
    kubectl_ok(kc, &["apply", "-f", "-"], svcs).await;
    let again = serde_json::to_value(api.get("web").await.unwrap()).unwrap();
    assert_eq!(again["spec"]["clusterIP"], web_ip);

    // kubectl get prints upstream's columns (printService, printNode).
    let table = kubectl_ok(kc, &["get", "service", "web"], "").await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        rows[1][..5],
        ["web", "ClusterIP", web_ip, "<none>", "80/TCP"]
    );

    // The node, and a pod bound to it by the scheduler (PodScheduled, spec.nodeName).
    let nodes = kubectl_ok(kc, &["get", "nodes", "-o", "name"], "").await;
    assert_eq!(nodes, "node/kubesim\n");
    let table = kubectl_ok(kc, &["get", "nodes"], "").await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(rows[1][..3], ["kubesim", "Ready", "<none>"]);
    assert_eq!(rows[1][4], "v1.33.0-kubesim");
    kubectl_ok(
        kc,
        &[
            "run",
            "one",
            "--image=busybox",
            "--restart=Never",
            "--",
            "-c",
            "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
        ],
        "",
    )
    .await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let done = wait_for("pod one to finish", || async {
        pods.get("one")
            .await
            .ok()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
    })
    .await;
    assert_eq!(done.spec.unwrap().node_name.as_deref(), Some("kubesim"));
    let conds = done.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let log = kubectl_ok(kc, &["logs", "one"], "").await;
    assert_eq!(log, format!("127.0.0.1:{}\n", env.cluster.secure_port()));
    env.cluster.shutdown().await;
}

const SERVER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox
        args: ["-c", "echo VERSION; exec sleep 600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollouts_replace_pods_and_pdbs_refuse_evictions() {
    let env = start().await;
    let kc = &env.kc;
    kubectl_ok(kc, &["apply", "-f", "-"], &SERVER.replace("VERSION", "v1")).await;
    let out = kubectl_ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
        "",
    )
    .await;
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let rss: Api<ReplicaSet> = Api::default_namespaced(env.client.clone());
    let first = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    let rs1 = first[0].metadata.name.clone().unwrap();
    let hash = first[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs1, format!("web-{hash}"));
    let v1_pods: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(v1_pods.len(), 2);
    for p in &v1_pods {
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", rs1.as_str())
        );
        assert!(ready(p));
    }
    let table = kubectl_ok(kc, &["get", "deployment", "web"], "").await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(rows[1][..4], ["web", "2/2", "2", "2"]);
    let deploys: Api<Deployment> = Api::default_namespaced(env.client.clone());
    let st = serde_json::to_value(deploys.get("web").await.unwrap().status).unwrap();
    assert_eq!(
        (
            &st["replicas"],
            &st["updatedReplicas"],
            &st["readyReplicas"],
            &st["availableReplicas"]
        ),
        (&json!(2), &json!(2), &json!(2), &json!(2))
    );
    assert_eq!(st["conditions"][0]["type"], "Available");
    assert_eq!(st["conditions"][0]["reason"], "MinimumReplicasAvailable");
    assert_eq!(st["conditions"][1]["reason"], "NewReplicaSetAvailable");

    // A budget that needs both pods: evicting one is refused with upstream's 429.
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec: {minAvailable: 2, selector: {matchLabels: {app: web}}}\n";
    kubectl_ok(kc, &["apply", "-f", "-"], pdb).await;
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(env.client.clone());
    let s = wait_for("the budget's status", || async {
        let s = serde_json::to_value(pdbs.get("web").await.ok()?.status).ok()?;
        (s["currentHealthy"] == 2).then_some(s)
    })
    .await;
    assert_eq!(
        (
            &s["desiredHealthy"],
            &s["disruptionsAllowed"],
            &s["expectedPods"]
        ),
        (&json!(2), &json!(0), &json!(2))
    );
    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
    let table = kubectl_ok(kc, &["get", "pdb", "web"], "").await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(rows[1][..4], ["web", "2", "N/A", "0"]);
    let victim = v1_pods[0].metadata.name.clone().unwrap();
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim}});
    let path = format!("/api/v1/namespaces/default/pods/{victim}/eviction");
    let (code, body) = call(&env, "POST", &path, Some(eviction.clone())).await;
    assert_eq!(code, 429);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests", "code": 429,
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]}})
    );
    assert!(
        pods.get(&victim).await.is_ok(),
        "a refused eviction deleted the pod"
    );
    // One disruption allowed: the eviction deletes the pod and its ReplicaSet replaces it.
    kubectl_ok(
        kc,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":1}}"#,
        ],
        "",
    )
    .await;
    wait_for("the budget to allow one disruption", || async {
        let s = pdbs.get("web").await.ok()?.status?;
        (s.disruptions_allowed == 1).then_some(())
    })
    .await;
    let (code, body) = call(&env, "POST", &path, Some(eviction)).await;
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    assert!(pods.get_opt(&victim).await.unwrap().is_none());
    wait_for("a replacement pod", || async {
        let l = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        (l.items.len() == 2 && l.items.iter().all(ready)).then_some(())
    })
    .await;

    // A template change rolls out through a second ReplicaSet; the old one ends at 0.
    kubectl_ok(kc, &["apply", "-f", "-"], &SERVER.replace("VERSION", "v2")).await;
    let out = kubectl_ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
        "",
    )
    .await;
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
    let d = deploys.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let all = rss.list(&ListParams::default()).await.unwrap().items;
    let sizes: Vec<(String, i32)> = all
        .iter()
        .map(|r| {
            (
                r.metadata.name.clone().unwrap(),
                r.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect();
    assert_eq!(sizes.len(), 2);
    assert!(sizes.contains(&(rs1.clone(), 0)), "{sizes:?}");
    let now = wait_for("only new pods", || async {
        let l = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        let names: Vec<String> = l
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        (l.items.len() == 2
            && l.items
                .iter()
                .all(|p| !p.metadata.name.as_ref().unwrap().starts_with(&rs1)))
        .then_some(names)
    })
    .await;
    for n in &now {
        assert_eq!(kubectl_ok(kc, &["logs", n], "").await, "v2\n");
    }
    // kubectl scale goes through /scale.
    kubectl_ok(kc, &["scale", "deployment/web", "--replicas=3"], "").await;
    let (code, scale) = call(
        &env,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"], json!({"replicas": 3}));
    wait_for("three pods", || async {
        let l = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        (l.items.len() == 3).then_some(())
    })
    .await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_own_token_reads_configmaps_only_when_rbac_allows() {
    let env = start().await;
    let kc = &env.kc;
    kubectl_ok(kc, &["create", "namespace", "team"], "").await;
    kubectl_ok(
        kc,
        &[
            "-n",
            "team",
            "create",
            "configmap",
            "settings",
            "--from-literal=a=b",
        ],
        "",
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "team");
    // kubectl in the pod finds no kubeconfig and uses the in-cluster config: the
    // KUBERNETES_SERVICE_* variables and the mounted token, CA and namespace.
    let run = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "kubectl", "args": ["get", "configmaps", "-o", "name"]}]}}))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
            wait_for("the kubectl pod to finish", || async {
                let p = pods.get(name).await.ok()?;
                let phase = p.status.as_ref()?.phase.clone()?;
                matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
            })
            .await
        }
    };
    assert_eq!(run("denied").await, "Failed");
    let log = kubectl_ok(kc, &["-n", "team", "logs", "denied"], "").await;
    assert_eq!(
        log.trim(),
        r#"Error from server (Forbidden): configmaps is forbidden: User "system:serviceaccount:team:default" cannot list resource "configmaps" in API group "" in the namespace "team""#
    );
    kubectl_ok(
        kc,
        &[
            "-n",
            "team",
            "create",
            "role",
            "read-cm",
            "--verb=list",
            "--resource=configmaps",
        ],
        "",
    )
    .await;
    kubectl_ok(
        kc,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "read-cm",
            "--role=read-cm",
            "--serviceaccount=team:default",
        ],
        "",
    )
    .await;
    assert_eq!(run("allowed").await, "Succeeded");
    let log = kubectl_ok(kc, &["-n", "team", "logs", "allowed"], "").await;
    assert_eq!(log, "configmap/kube-root-ca.crt\nconfigmap/settings\n");

    // The projected volume the ServiceAccount admission added, and what it holds.
    let p = serde_json::to_value(pods.get("allowed").await.unwrap()).unwrap();
    let vol = &p["spec"]["volumes"][0];
    assert!(
        vol["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{vol}"
    );
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(
        p["spec"]["containers"][0]["volumeMounts"][0],
        json!({"name": vol["name"], "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    );
    // automountServiceAccountToken: false on the pod: no volume, no token.
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "none"}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": false,
        "containers": [{"name": "main", "image": "busybox", "args": ["-c", "test -e /var/run/secrets/kubernetes.io/serviceaccount/token && echo token || echo no token"]}]}}))
    .unwrap();
    let made = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert!(made.spec.unwrap().volumes.is_none());
    wait_for("pod none to finish", || async {
        let p = pods.get("none").await.ok()?;
        (p.status?.phase? == "Succeeded").then_some(())
    })
    .await;
    assert_eq!(
        kubectl_ok(kc, &["-n", "team", "logs", "none"], "").await,
        "no token\n"
    );

    // TokenRequest over HTTP, and what the token authenticates as on the TLS listener.
    let (code, tr) = call(
        &env,
        "POST",
        "/api/v1/namespaces/team/serviceaccounts/default/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}})),
    )
    .await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(
        tr["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert!(tr["status"]["expirationTimestamp"].is_string());
    let token = tr["status"]["token"].as_str().unwrap();
    let as_sa = env.cluster.client_with_token(Some(token)).await.unwrap();
    let in_team: Api<ConfigMap> = Api::namespaced(as_sa.clone(), "team");
    assert_eq!(
        in_team
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let refusal = |r: Result<kube::api::ObjectList<ConfigMap>, kube::Error>| match r {
        Err(kube::Error::Api(e)) => (e.code, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let in_default: Api<ConfigMap> = Api::namespaced(as_sa, "default");
    assert_eq!(
        refusal(in_default.list(&ListParams::default()).await),
        (403, r#"configmaps is forbidden: User "system:serviceaccount:team:default" cannot list resource "configmaps" in API group "" in the namespace "default""#.to_string())
    );
    let forged = env
        .cluster
        .client_with_token(Some("not-a-token"))
        .await
        .unwrap();
    assert_eq!(
        refusal(
            Api::<ConfigMap>::namespaced(forged, "team")
                .list(&ListParams::default())
                .await
        ),
        (401, "Unauthorized".to_string())
    );
    let anonymous = env.cluster.client_with_token(None).await.unwrap();
    assert_eq!(
        refusal(Api::<ConfigMap>::namespaced(anonymous, "team").list(&ListParams::default()).await),
        (403, r#"configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" in the namespace "team""#.to_string())
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_an_http_probe() {
    let env = start().await;
    let (up, down) = (free_port(), free_port());
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    // The unprobed pod serves nothing at all (a port picked as free may be taken by another
    // test by the time a server binds it, and the pod would restart).
    let pod = |name: &str, serve_port: Option<u16>, probe_port: u16| -> Pod {
        let args = match serve_port {
            Some(port) => json!(["-m", "http.server", port.to_string(), "--bind", "127.0.0.1"]),
            None => json!(["-c", "import time; time.sleep(3600)"]),
        };
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{
            "name": "main", "image": "python",
            "args": args,
            "ports": [{"name": "http", "containerPort": probe_port}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("serving", Some(up), up))
        .await
        .unwrap();
    wait_for("the probed pod to be Ready", || async {
        pods.get("serving").await.ok().filter(ready)
    })
    .await;
    // Probing a port nobody serves: running, never Ready.
    pods.create(&PostParams::default(), &pod("unserved", None, down))
        .await
        .unwrap();
    let running = wait_for("the second pod to run for a few probes", || async {
        let p = pods.get("unserved").await.ok()?;
        let started = p.status.as_ref()?.start_time.clone()?;
        let age = jiff::Timestamp::now().as_second() - started.0.as_second();
        (age >= 4).then_some(p)
    })
    .await;
    let text = text(&kubectl(&env.kc, &["get", "pod", "unserved", "--no-headers"], "").await);
    assert!(!ready(&running), "{text}");
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(&cols[..4], ["unserved", "0/1", "Running", "0"], "{text}");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_always_restarts_the_container_with_back_off() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "crash"}, "spec": {"containers": [{
        "name": "main", "image": "busybox", "args": ["-c", "echo run; exit 3"]}]}}),
    )
    .unwrap();
    let made = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(made.spec.unwrap().restart_policy.as_deref(), Some("Always"));
    let st = wait_for("a second restart", || async {
        let s = serde_json::to_value(pods.get("crash").await.ok()?.status).ok()?;
        let c = &s["containerStatuses"][0];
        (c["restartCount"].as_u64()? >= 2 && c["state"]["waiting"].is_object()).then_some(s)
    })
    .await;
    let c = &st["containerStatuses"][0];
    assert_eq!(st["phase"], "Running");
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    let out = kubectl_ok(&env.kc, &["get", "pod", "crash", "--no-headers"], "").await;
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&cols[..3], ["crash", "0/1", "CrashLoopBackOff"], "{out}");
    env.cluster.shutdown().await;
}
