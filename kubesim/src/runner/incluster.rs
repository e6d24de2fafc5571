//! What in-cluster clients need from the kubelet: the `kubernetes` Service's environment variables
//! and projected volumes (the `kube-api-access-*` volume the ServiceAccount admission adds: a bound
//! token from a TokenRequest, `ca.crt` from `kube-root-ca.crt`, the namespace), as upstream's
//! `pkg/kubelet/kubelet_pods.go` `getServiceEnvVarMap` and `pkg/volume/projected`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use serde_json::json;

use super::kubelet::{StartError, configmap_value, field_ref, secret_value};

/// The `kubernetes` Service's variables every container gets (`kubelet_pods.go`
/// `getServiceEnvVarMap`): pods are processes of this host, so the host is 127.0.0.1 and the
/// port the API server's TLS listener, where upstream has the Service's ClusterIP and 443.
pub fn service_env(port: u16) -> Vec<(String, String)> {
    if port == 0 {
        return vec![];
    }
    let host = "127.0.0.1";
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), host.into()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
    ]
}

/// Fill a projected volume's directory: a service-account token bound to the pod (TokenRequest),
/// configMap and secret items, downwardAPI field references; files get `defaultMode` (0644).
pub async fn projected(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    dir: &Path,
) -> Result<(), StartError> {
    let io = |e: std::io::Error| StartError::Other(e.to_string());
    let mode = u32::try_from(p.default_mode.unwrap_or(0o644)).unwrap_or(0o644) & 0o777;
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for src in p.sources.iter().flatten() {
        if let Some(t) = &src.service_account_token {
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let mut spec = json!({"expirationSeconds": t.expiration_seconds.unwrap_or(3600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                    "name": pod.metadata.name, "uid": pod.metadata.uid}});
            if let Some(a) = t.audience.as_ref().filter(|a| !a.is_empty()) {
                spec["audiences"] = json!([a]);
            }
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
            let req = axum::http::Request::post(format!(
                "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
            ))
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| StartError::Other(e.to_string()))?;
            let answer: serde_json::Value = client
                .request(req)
                .await
                .map_err(|e| StartError::Config(format!("failed to fetch token: {e}")))?;
            let token = answer["status"]["token"].as_str().unwrap_or_default();
            files.push((t.path.clone(), token.as_bytes().to_vec()));
        }
        if let Some(cm) = &src.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let name = cm.name.clone();
            match api.get_opt(&name).await.ok().flatten() {
                Some(m) => {
                    for item in cm.items.iter().flatten() {
                        match configmap_value(&m, &item.key) {
                            Some(v) => files.push((item.path.clone(), v)),
                            None if cm.optional == Some(true) => {}
                            None => {
                                return Err(StartError::Config(format!(
                                    "configmap references non-existent config key: {}",
                                    item.key
                                )));
                            }
                        }
                    }
                    if cm.items.is_none() {
                        for (k, v) in m.data.iter().flatten() {
                            files.push((k.clone(), v.clone().into_bytes()));
                        }
                    }
                }
                None if cm.optional == Some(true) => {}
                None => {
                    return Err(StartError::Config(format!(
                        "configmap \"{name}\" not found"
                    )));
                }
            }
        }
        if let Some(sec) = &src.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            let name = sec.name.clone();
            match api.get_opt(&name).await.ok().flatten() {
                Some(found) => {
                    let keys: Vec<(String, String)> = match &sec.items {
                        Some(items) => items
                            .iter()
                            .map(|i| (i.key.clone(), i.path.clone()))
                            .collect(),
                        None => found
                            .data
                            .iter()
                            .flat_map(|d| d.keys().map(|k| (k.clone(), k.clone())))
                            .collect(),
                    };
                    for (k, path) in keys {
                        if let Some(v) = secret_value(&found, &k) {
                            files.push((path, v));
                        }
                    }
                }
                None if sec.optional == Some(true) => {}
                None => {
                    return Err(StartError::Config(format!("secret \"{name}\" not found")));
                }
            }
        }
        if let Some(d) = &src.downward_api {
            for item in d.items.iter().flatten() {
                if let Some(f) = &item.field_ref
                    && let Some(v) = field_ref(pod, &f.field_path)
                {
                    files.push((item.path.clone(), v.into_bytes()));
                }
            }
        }
    }
    for (path, data) in files {
        // Item paths are relative and may not climb out (`validateLocalDescendingPath`).
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            return Err(StartError::Config(format!(
                "invalid projected path {path:?}"
            )));
        }
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&file, data).map_err(io)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    Ok(())
}
