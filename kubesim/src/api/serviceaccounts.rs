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
        return;
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    let _ = st.create(&ri, ns, sa, "kube-controller-manager");
}
