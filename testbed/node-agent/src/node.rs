//! The Node object and its liveness, as the kubelet keeps them: the node registers itself
//! (created with its status, or its status updated when it exists), then renews its Lease in
//! `kube-node-lease` every 10 s and re-posts its status (condition heartbeats) every 60 s. The
//! kube-controller-manager's node lifecycle controller taints the node and evicts its pods when
//! the lease goes stale, so the renewals keep going whatever fails in between.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::AgentConfig;

/// The namespace of node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// What the node offers: every pod fits.
pub const CAPACITY: [(&str, &str); 4] = [
    ("cpu", "16"),
    ("memory", "64Gi"),
    ("pods", "5000"),
    ("ephemeral-storage", "100Gi"),
];

/// The registered Node's uid (the Lease's owner) and the kubelet version it reports.
#[derive(Clone, Debug)]
pub struct Registered {
    uid: String,
    version: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The Node's status as the kubelet posts it; `since` is when the conditions last changed.
fn status(node_name: &str, port: u16, version: &str, since: &str) -> Value {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let resources: serde_json::Map<String, Value> = CAPACITY
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    json!({
        "capacity": resources, "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": read_trimmed("/etc/machine-id"),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": "node-agent://0.1",
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// Create the Node, or update its status (and labels) when it exists.
pub async fn register(
    client: &kube::Client,
    cfg: &AgentConfig,
    port: u16,
) -> anyhow::Result<Registered> {
    let version = client.apiserver_version().await?.git_version;
    let uid = post_node(client, &cfg.node_name, port, &version).await?;
    Ok(Registered { uid, version })
}

async fn post_node(
    client: &kube::Client,
    node_name: &str,
    port: u16,
    version: &str,
) -> anyhow::Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let since = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let labels = json!({
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    let st = status(node_name, port, version, &since);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name, "labels": labels},
        "spec": {}, "status": st,
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(n) => return Ok(n.metadata.uid.unwrap_or_default()),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    api.patch(
        node_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels}})),
    )
    .await?;
    let n = api
        .patch_status(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": st})),
        )
        .await?;
    Ok(n.metadata.uid.unwrap_or_default())
}

/// Re-post the Node's status with fresh heartbeats (re-registering a deleted Node).
async fn heartbeat(
    client: &kube::Client,
    node_name: &str,
    port: u16,
    reg: &mut Registered,
    since: &str,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let st = status(node_name, port, &reg.version, since);
    match api
        .patch_status(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": st})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            reg.uid = post_node(client, node_name, port, &reg.version).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Renew (or create) the node's Lease.
async fn renew(client: &kube::Client, node_name: &str, reg: &Registered) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    if let Some(mut lease) = api.get_opt(node_name).await? {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(node_name.into());
        spec.lease_duration_seconds = Some(LEASE_SECONDS);
        spec.renew_time = Some(now);
        api.replace(node_name, &PostParams::default(), &lease)
            .await?;
        return Ok(());
    }
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node_name, "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                "uid": reg.uid}]},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": serde_json::to_value(&now)?},
    }))?;
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // Made meanwhile: the next renewal updates it.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Renew the Lease every 10 s (1 s after a failure) and post heartbeats every 60 s, forever.
pub async fn keep_alive(client: kube::Client, cfg: AgentConfig, port: u16, mut reg: Registered) {
    let since = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut next_status = tokio::time::Instant::now() + STATUS_EVERY;
    loop {
        let mut pause = RENEW_EVERY;
        if let Err(e) = renew(&client, &cfg.node_name, &reg).await {
            tracing::warn!("node-agent: renewing the node lease: {e:#}");
            pause = Duration::from_secs(1);
        }
        if tokio::time::Instant::now() >= next_status {
            match heartbeat(&client, &cfg.node_name, port, &mut reg, &since).await {
                Ok(()) => next_status = tokio::time::Instant::now() + STATUS_EVERY,
                Err(e) => {
                    tracing::warn!("node-agent: posting the node status: {e:#}");
                    pause = Duration::from_secs(1);
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_parses_as_a_node_status() {
        let v = status("n1", 10250, "v1.37.2", "2024-01-01T00:00:00Z");
        let st: k8s_openapi::api::core::v1::NodeStatus =
            serde_json::from_value(v).expect("node status");
        let ready = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(
            st.daemon_endpoints
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port),
            Some(10250)
        );
        let info = st.node_info.expect("info");
        assert_eq!(
            (info.kubelet_version.as_str(), info.architecture.as_str()),
            ("v1.37.2", "amd64")
        );
        let addrs = st.addresses.unwrap_or_default();
        assert_eq!(addrs[0].type_, "InternalIP");
        assert_eq!(addrs[1].address, "n1");
    }
}
