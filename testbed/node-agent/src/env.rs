//! A container's environment as the kubelet resolves it (`makeEnvironmentVariables`):
//! `envFrom` first, then `env` in order, with `$(VAR)` references to earlier variables expanded
//! in `value`; `fieldRef`, `resourceFieldRef`, `secretKeyRef` and `configMapKeyRef` sources; a
//! missing Secret or ConfigMap (or key) that is not optional keeps the container from starting
//! (`CreateContainerConfigError`) until it appears.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use crate::pods::StartError;

/// What a pod sees of its node.
pub struct NodeView<'a> {
    pub node_name: &'a str,
    /// Allocatable `cpu`, `memory` and `ephemeral-storage`: the default limits.
    pub allocatable: &'a [(&'a str, &'a str)],
}

/// Evaluate a `fieldRef` path against the pod.
pub fn field_ref(pod: &Pod, path: &str, node_name: &str) -> Option<String> {
    let meta = &pod.metadata;
    let lookup = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.trim_start_matches("['").trim_end_matches("']");
        map.as_ref().and_then(|m| m.get(key).cloned())
    };
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(node_name.into()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs" => {
            Some("127.0.0.1".into())
        }
        p if p.starts_with("metadata.annotations[") => {
            lookup(&meta.annotations, &p["metadata.annotations".len()..])
        }
        p if p.starts_with("metadata.labels[") => {
            lookup(&meta.labels, &p["metadata.labels".len()..])
        }
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                &meta.labels
            } else {
                &meta.annotations
            };
            Some(
                map.iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }
        _ => None,
    }
}

/// Evaluate a `resourceFieldRef` for container `c` (`limits.cpu`, `requests.memory`, ...): a limit
/// not set is the node's allocatable, a request not set is its limit when one is set, else 0;
/// the value is divided by `divisor` (default 1) and rounded up, as upstream's
/// `ExtractContainerResourceValue`.
pub fn resource_field_ref(
    c: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    node: &NodeView<'_>,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let res = c.resources.as_ref();
    let limit = res
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(name))
        .and_then(|q| parse_quantity(&q.0));
    let value = match kind {
        "limits" => limit.or_else(|| {
            node.allocatable
                .iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| parse_quantity(v))
        })?,
        "requests" => res
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(name))
            .and_then(|q| parse_quantity(&q.0))
            .or(limit)
            .unwrap_or(0.0),
        _ => return None,
    };
    let divisor = divisor
        .and_then(|d| parse_quantity(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let v = (value / divisor).ceil();
    // cpu rounds up to at least 1 when a limit or request is set (upstream: convertResourceCPUToString).
    let v = if name == "cpu" && value > 0.0 {
        v.max(1.0)
    } else {
        v
    };
    Some(format!("{v:.0}"))
}

/// A Kubernetes quantity (`500m`, `2Gi`, `1e3`, `64M`) as a number.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

pub fn secret_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key).map(|b| b.0.clone()))
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key).map(|v| v.clone().into_bytes()))
        })
}

pub fn configmap_value(c: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    c.data
        .as_ref()
        .and_then(|d| d.get(key).map(|v| v.clone().into_bytes()))
        .or_else(|| {
            c.binary_data
                .as_ref()
                .and_then(|d| d.get(key).map(|b| b.0.clone()))
        })
}

/// Expand `$(VAR)` references to earlier variables, as upstream does for `value`; `$$` escapes.
pub fn expand(v: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, val)) => out.push_str(val),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's own environment (the in-cluster service variables come first, from the
/// caller).
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    node: &NodeView<'_>,
    mut out: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, StartError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(name, _)| *name != k);
        out.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data.iter().flatten() {
                        set(
                            &mut out,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => {
                    return Err(StartError::Config(format!(
                        "secret \"{}\" not found",
                        r.name
                    )));
                }
                Err(e) => return Err(StartError::Config(format!("secret \"{}\": {e}", r.name))),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match cms.get_opt(&r.name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut out, format!("{prefix}{k}"), v.clone());
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => {
                    return Err(StartError::Config(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )));
                }
                Err(e) => {
                    return Err(StartError::Config(format!("configmap \"{}\": {e}", r.name)));
                }
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &out))
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                field_ref(pod, &f.field_path, node.node_name)
            } else if let Some(r) = &src.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => pod
                        .spec
                        .iter()
                        .flat_map(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                        })
                        .find(|x| x.name == name)
                        .unwrap_or(c),
                    None => c,
                };
                resource_field_ref(target, &r.resource, r.divisor.as_ref(), node)
            } else if let Some(k) = &src.secret_key_ref {
                let found = secrets.get_opt(&k.name).await.ok().flatten();
                match found.as_ref().and_then(|s| secret_value(s, &k.key)) {
                    Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                    None if k.optional == Some(true) => None,
                    None if found.is_none() => {
                        return Err(StartError::Config(format!(
                            "secret \"{}\" not found",
                            k.name
                        )));
                    }
                    None => {
                        return Err(StartError::Config(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            k.key, k.name
                        )));
                    }
                }
            } else if let Some(k) = &src.config_map_key_ref {
                let found = cms.get_opt(&k.name).await.ok().flatten();
                match found.as_ref().and_then(|s| configmap_value(s, &k.key)) {
                    Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                    None if k.optional == Some(true) => None,
                    None if found.is_none() => {
                        return Err(StartError::Config(format!(
                            "configmap \"{}\" not found",
                            k.name
                        )));
                    }
                    None => {
                        return Err(StartError::Config(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            k.key, k.name
                        )));
                    }
                }
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut out, e.name.clone(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_upstream_rules() {
        let env = vec![
            ("A".to_string(), "one".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "one-two");
        assert_eq!(expand("$(MISSING) $$(A) $ x", &env), "$(MISSING) $(A) $ x");
        assert_eq!(expand("tail $(", &env), "tail $(");
    }

    #[test]
    fn field_and_resource_refs() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u",
                "labels": {"app": "x"}, "annotations": {"a/b": "c"}},
            "spec": {"containers": [{"name": "c",
                "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}}]}
        }))
        .expect("pod");
        assert_eq!(
            field_ref(&pod, "spec.nodeName", "node").as_deref(),
            Some("node")
        );
        assert_eq!(
            field_ref(&pod, "metadata.annotations['a/b']", "node").as_deref(),
            Some("c")
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels", "node").as_deref(),
            Some("app=\"x\"")
        );
        let node = NodeView {
            node_name: "node",
            allocatable: &[("cpu", "16"), ("memory", "64Gi")],
        };
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            resource_field_ref(c, "limits.cpu", None, &node).as_deref(),
            Some("2")
        );
        assert_eq!(
            resource_field_ref(c, "limits.cpu", Some(&Quantity("1m".into())), &node).as_deref(),
            Some("1500")
        );
        assert_eq!(
            resource_field_ref(c, "requests.memory", Some(&Quantity("1Mi".into())), &node)
                .as_deref(),
            Some("1024")
        );
        assert_eq!(
            resource_field_ref(c, "limits.ephemeral-storage", None, &node),
            None
        );
        let bare: Container = serde_json::from_value(json!({"name": "b"})).expect("c");
        assert_eq!(
            resource_field_ref(&bare, "limits.cpu", None, &node).as_deref(),
            Some("16")
        );
        assert_eq!(
            resource_field_ref(&bare, "requests.cpu", None, &node).as_deref(),
            Some("0")
        );
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2x"), None);
    }
}
