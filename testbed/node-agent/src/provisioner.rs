//! A host-path dynamic provisioner for the node's default StorageClass.
//!
//! The class (`reclaimPolicy: Delete`, `volumeBindingMode: Immediate`) names the provisioner
//! [`PROVISIONER`]; the kube-controller-manager's PV controller, finding no in-tree plugin for
//! it, waits for an external one (it annotates claims with
//! `volume.kubernetes.io/storage-provisioner`). This is that external provisioner: for each
//! pending claim of the class without a volume it creates a PersistentVolume `pvc-<claim uid>`
//! pre-bound to the claim (`claimRef` with the uid), whose `hostPath` is
//! `<data_dir>/pv/<namespace>/<claim>` (made root-owned 0755, as a fresh volume), and the PV
//! controller binds the pair. When a claim is deleted, its volume is Released and this deletes
//! the PersistentVolume but keeps the directory: tests read what pods wrote there from the host.
//! A later claim of the same namespace and name gets the same directory, contents included.
//!
//! The directory layout is a contract: the harness and tests read volumes at [`volume_dir`].

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::sync::Notify;

/// The provisioner name the StorageClass carries.
pub const PROVISIONER: &str = "reporting.dev/node-agent-hostpath";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Where the volume of claim `claim` in `namespace` lives on the host.
pub fn volume_dir(data_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    data_dir.join("pv").join(namespace).join(claim)
}

/// Create the StorageClass `name` (the default class) unless it exists.
pub async fn ensure_class(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))?;
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The PersistentVolume for `claim`, or `None` when the claim is not ours to provision.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &str,
    data_dir: &Path,
) -> Option<PersistentVolume> {
    let m = &claim.metadata;
    let spec = claim.spec.as_ref()?;
    let pending = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    if !pending
        || m.deletion_timestamp.is_some()
        || spec.storage_class_name.as_deref() != Some(class)
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
    {
        return None;
    }
    let (ns, name, uid) = (
        m.namespace.as_deref()?,
        m.name.as_deref()?,
        m.uid.as_deref()?,
    );
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_string(), |q| q.0.clone());
    let modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let path = volume_dir(data_dir, ns, name);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"),
            "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "volumeMode": spec.volume_mode.as_deref().unwrap_or("Filesystem"),
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid},
        },
    }))
    .ok()
}

/// Whether `pv` is a volume of ours whose claim is gone (Released, reclaim policy Delete).
pub fn to_delete(pv: &PersistentVolume) -> bool {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    ours && released && delete && pv.metadata.deletion_timestamp.is_none()
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        std::fs::create_dir_all(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Watch claims and volumes and provision or delete volumes, forever.
pub async fn run(client: kube::Client, class: String, data_dir: PathBuf) {
    let wake = Arc::new(Notify::new());
    let claims = spawn_store(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        Arc::clone(&wake),
    );
    let volumes = spawn_store(
        Api::<PersistentVolume>::all(client.clone()),
        Arc::clone(&wake),
    );
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    // Volumes created or deleted by us that the cache may not show yet.
    let mut created: HashSet<String> = HashSet::new();
    let mut deleted: HashSet<String> = HashSet::new();
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(2), wake.notified()).await;
        let known: HashSet<String> = volumes
            .state()
            .iter()
            .filter_map(|v| v.metadata.name.clone())
            .collect();
        created.retain(|n| !known.contains(n));
        deleted.retain(|n| known.contains(n));
        for claim in claims.state() {
            let Some(pv) = volume_for(&claim, &class, &data_dir) else {
                continue;
            };
            let Some(name) = pv.metadata.name.clone() else {
                continue;
            };
            if known.contains(&name) || created.contains(&name) {
                continue;
            }
            let path = pv
                .spec
                .as_ref()
                .and_then(|s| s.host_path.as_ref())
                .map(|h| PathBuf::from(&h.path));
            if let Some(path) = &path
                && let Err(e) = make_dir(path)
            {
                tracing::warn!("node-agent: volume directory {}: {e}", path.display());
                continue;
            }
            match pv_api.create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    tracing::debug!("node-agent: provisioned {name}");
                    created.insert(name);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    created.insert(name);
                }
                Err(e) => tracing::warn!("node-agent: creating volume {name}: {e}"),
            }
        }
        for pv in volumes.state() {
            let Some(name) = pv.metadata.name.clone() else {
                continue;
            };
            if !to_delete(&pv) || deleted.contains(&name) {
                continue;
            }
            match pv_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    deleted.insert(name);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!("node-agent: deleting volume {name}: {e}"),
            }
        }
    }
}

/// A cache of every `K`, kept by a task that wakes `wake` on each change.
fn spawn_store<K>(api: Api<K>, wake: Arc<Notify>) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::debug!("node-agent: provisioner watch: {e}");
            }
            wake.notify_one();
        }
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).expect("claim")
    }

    #[test]
    fn pending_claims_of_the_class_get_a_pre_bound_host_path_volume() {
        let c = claim(json!({
            "metadata": {"name": "reports", "namespace": "t1", "uid": "u-1"},
            "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "2Gi"}}},
            "status": {"phase": "Pending"}}));
        let pv = volume_for(&c, "standard", Path::new("/data")).expect("ours");
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        let spec = pv.spec.expect("spec");
        assert_eq!(
            spec.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/data/pv/t1/reports")
        );
        assert_eq!(
            spec.host_path.and_then(|h| h.type_).as_deref(),
            Some("DirectoryOrCreate")
        );
        let cr = spec.claim_ref.expect("claimRef");
        assert_eq!(
            (
                cr.namespace.as_deref(),
                cr.name.as_deref(),
                cr.uid.as_deref()
            ),
            (Some("t1"), Some("reports"), Some("u-1"))
        );
        assert_eq!(
            spec.capacity
                .and_then(|c| c.get("storage").map(|q| q.0.clone())),
            Some("2Gi".into())
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        // Other classes, bound claims and claims being deleted are not ours.
        let other = claim(
            json!({"metadata": {"name": "a", "namespace": "t", "uid": "u"},
            "spec": {"storageClassName": "fast"}}),
        );
        assert!(volume_for(&other, "standard", Path::new("/d")).is_none());
        let bound = claim(
            json!({"metadata": {"name": "a", "namespace": "t", "uid": "u"},
            "spec": {"storageClassName": "standard", "volumeName": "pvc-u"},
            "status": {"phase": "Bound"}}),
        );
        assert!(volume_for(&bound, "standard", Path::new("/d")).is_none());
    }

    #[test]
    fn only_our_released_volumes_are_deleted() {
        let pv = |ann: &str, phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({
                "metadata": {"name": "pvc-1", "annotations": {PROVISIONED_BY: ann}},
                "spec": {"persistentVolumeReclaimPolicy": "Delete"},
                "status": {"phase": phase}}))
            .expect("pv")
        };
        assert!(to_delete(&pv(PROVISIONER, "Released")));
        assert!(!to_delete(&pv(PROVISIONER, "Bound")));
        assert!(!to_delete(&pv("someone-else", "Released")));
    }
}
