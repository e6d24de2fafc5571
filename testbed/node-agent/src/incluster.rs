//! What in-cluster clients need from the kubelet: the `kubernetes` Service's environment variables
//! (`getServiceEnvVarMap`), pointing at the API server's real address because no Service IP is
//! routable here, and service-account tokens bound to the pod (a TokenRequest, as the projected
//! `kube-api-access-*` volume gets them).

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::pods::StartError;

/// The `kubernetes` Service's variables every container gets, with the API server's address in
/// place of the Service's ClusterIP and port 443 (none when `port` is 0).
pub fn service_env(host: &str, port: u16) -> Vec<(String, String)> {
    if port == 0 || host.is_empty() {
        return vec![];
    }
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), host.into()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), format!("tcp://{url_host}:{port}")),
        (
            format!("KUBERNETES_PORT_{port}_TCP"),
            format!("tcp://{url_host}:{port}"),
        ),
        (format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host.into()),
    ]
}

/// A token for the pod's service account from `serviceaccounts/<sa>/token`, bound to the pod.
pub async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: Option<i64>,
) -> Result<String, StartError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let mut spec = json!({"expirationSeconds": expiration_seconds.unwrap_or(3600),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name, "uid": pod.metadata.uid}});
    if let Some(a) = audience.filter(|a| !a.is_empty()) {
        spec["audiences"] = json!([a]);
    }
    let req: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))
    .map_err(|e| StartError::Other(e.to_string()))?;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let answer: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| {
            StartError::Config(format!(
                "failed to fetch token for service account {ns}/{sa}: {e}"
            ))
        })?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| StartError::Config(format!("no token for service account {ns}/{sa}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_variables_point_at_the_api_server() {
        let env = service_env("127.0.0.1", 6443);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("127.0.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("6443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://127.0.0.1:6443"));
        assert_eq!(get("KUBERNETES_PORT_6443_TCP_ADDR"), Some("127.0.0.1"));
        assert!(service_env("127.0.0.1", 0).is_empty());
        assert_eq!(
            service_env("::1", 6443)[3].1,
            "tcp://[::1]:6443".to_string()
        );
    }
}
