//! The `default` ServiceAccount of every namespace, as upstream's serviceaccounts controller keeps it
//! (`pkg/controller/serviceaccount/serviceaccounts_controller.go`: created for each active namespace,
//! recreated when deleted while the namespace lives). kubesim does it synchronously, in the same
//! store write as the namespace, so it exists as soon as the namespace does.

use super::store::State;
use serde_json::json;

/// Make sure namespace `ns` has its `default` ServiceAccount (no-op when it has, or the namespace is
/// missing or terminating).
pub fn ensure_default(st: &mut State, ns: &str) {
    let Some(ns_ri) = st.find("", "namespaces").cloned() else {
        return;
    };
    let Ok(namespace) = st.get(&ns_ri, "", ns) else {
        return;
    };
    if namespace["metadata"]["deletionTimestamp"].is_string() {
        return;
    }
    let Some(ri) = st.find("", "serviceaccounts").cloned() else {
        return;
    };
    if st.get(&ri, ns, "default").is_ok() {
        ensure_root_ca(st, ns);
        return;
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    let _ = st.create(&ri, ns, sa, "kube-controller-manager");
    ensure_root_ca(st, ns);
}

/// Where service-account credentials are mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap with the cluster CA that every namespace has (`root-ca-cert-publisher`).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// The ServiceAccount admission plugin on a new pod (`plugin/pkg/admission/serviceaccount/admission.go`):
/// `serviceAccountName` defaults to `default`; the account must exist (`error looking up service
/// account <ns>/<name>: serviceaccount "<name>" not found`); unless the pod, or else the account, sets
/// `automountServiceAccountToken: false`, a `kube-api-access-<suffix>` projected volume (a bound token
/// valid 3607 s, `ca.crt` from `kube-root-ca.crt`, the namespace) is added and mounted read-only at
/// `/var/run/secrets/kubernetes.io/serviceaccount` in every container that has no mount there.
pub fn admit_pod(st: &State, ns: &str, pod: &mut serde_json::Value) -> Result<(), String> {
    let spec = &mut pod["spec"];
    let name = match spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(n) => n.to_string(),
        None => spec["serviceAccount"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string(),
    };
    spec["serviceAccountName"] = json!(name);
    spec["serviceAccount"] = json!(name);
    let sa = st
        .find("", "serviceaccounts")
        .and_then(|ri| st.get(ri, ns, &name).ok())
        .ok_or_else(|| {
            format!(
                "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
            )
        })?;
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let has_mount = |c: &serde_json::Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["mountPath"] == MOUNT_PATH)
    };
    let volume = format!("kube-api-access-{}", super::meta::name_suffix());
    let mut used = false;
    for key in ["initContainers", "containers"] {
        for c in spec[key].as_array_mut().into_iter().flatten() {
            if has_mount(c) {
                continue;
            }
            let mounts = &mut c["volumeMounts"];
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            if let Some(a) = mounts.as_array_mut() {
                a.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
                used = true;
            }
        }
    }
    if used {
        let vols = &mut spec["volumes"];
        if !vols.is_array() {
            *vols = json!([]);
        }
        if let Some(a) = vols.as_array_mut() {
            a.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}));
        }
    }
    Ok(())
}

/// Make sure namespace `ns` has the `kube-root-ca.crt` ConfigMap with the cluster CA, once the CA
/// is known, as upstream's `pkg/controller/certificates/rootcacertpublisher` keeps it.
pub fn ensure_root_ca(st: &mut State, ns: &str) {
    let Some(ca) = st.ca_pem.clone() else {
        return;
    };
    let Some(ri) = st.find("", "configmaps").cloned() else {
        return;
    };
    let want = json!({"ca.crt": ca});
    match st.get(&ri, ns, ROOT_CA_CONFIGMAP) {
        Ok(cm) if cm["data"] == want => {}
        Ok(mut cm) => {
            cm["data"] = want;
            let _ = st.replace(
                &ri,
                ns,
                ROOT_CA_CONFIGMAP,
                cm,
                false,
                "kube-controller-manager",
            );
        }
        Err(_) => {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROOT_CA_CONFIGMAP,
                "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": want});
            let _ = st.create(&ri, ns, cm, "kube-controller-manager");
        }
    }
}
