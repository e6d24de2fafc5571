//! ResourceQuota as upstream: the admission check on create (`plugin/pkg/admission/resourcequota/
//! controller.go` `checkRequest`, the pod evaluator's `Constraints` and `PodUsageFunc` in
//! `pkg/quota/v1/evaluator/core/pods.go`, object counts `count/<resource>.<group>`) and the quota
//! controller's `status.hard`/`status.used`, recomputed from the store after every write in the namespace.

use super::error::{ApiError, ApiResult};
use super::quantity::Quantity;
use super::resources::ResourceInfo;
use super::store::State;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

type Usage = BTreeMap<String, Quantity>;

/// Resources the pod evaluator tracks (`podResources`).
const POD_RESOURCES: [&str; 11] = [
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Quota on these makes every container state them (`validationSet`).
const VALIDATION_SET: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// The legacy object-count names (`pkg/quota/v1/evaluator/core/registry.go`).
fn legacy_count(ri: &ResourceInfo) -> Option<&'static str> {
    if !ri.group.is_empty() {
        return None;
    }
    match ri.plural.as_str() {
        "configmaps" => Some("configmaps"),
        "secrets" => Some("secrets"),
        "persistentvolumeclaims" => Some("persistentvolumeclaims"),
        "services" => Some("services"),
        "resourcequotas" => Some("resourcequotas"),
        "replicationcontrollers" => Some("replicationcontrollers"),
        _ => None,
    }
}

/// `count/jobs.batch`, `count/pods`.
fn count_name(ri: &ResourceInfo) -> String {
    format!("count/{}", ri.qualified())
}

fn is_pods(ri: &ResourceInfo) -> bool {
    ri.group.is_empty() && ri.plural == "pods"
}

fn resource_list(v: &Value) -> Usage {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| {
            let s = match q {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((k.clone(), Quantity::parse(&s)?))
        })
        .collect()
}

/// `podComputeUsageHelper`.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::new();
    out.insert("pods".into(), Quantity::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    out
}

fn add_into(acc: &mut Usage, u: &Usage) {
    for (k, q) in u {
        let cur = acc.get(k).copied().unwrap_or_else(Quantity::zero);
        acc.insert(k.clone(), cur.plus(*q));
    }
}

/// `PodRequests`/`PodLimits`: the containers' sum, at least the largest init container.
fn pod_totals(pod: &Value, field: &str) -> Usage {
    let mut total = Usage::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        add_into(&mut total, &resource_list(&c["resources"][field]));
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (k, q) in resource_list(&c["resources"][field]) {
            if total.get(&k).is_none_or(|t| q > *t) {
                total.insert(k, q);
            }
        }
    }
    total
}

/// `PodUsageFunc`: count/pods always; compute resources (and `pods`) unless the pod is terminal.
fn pod_usage(pod: &Value) -> Usage {
    let mut out = Usage::new();
    out.insert("count/pods".into(), Quantity::count(1));
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !terminal {
        let u = compute_usage(&pod_totals(pod, "requests"), &pod_totals(pod, "limits"));
        add_into(&mut out, &u);
    }
    out
}

/// What one object of `ri` uses.
fn usage(ri: &ResourceInfo, obj: &Value) -> Usage {
    let mut u = if is_pods(ri) {
        pod_usage(obj)
    } else {
        Usage::new()
    };
    u.insert(count_name(ri), Quantity::count(1));
    if let Some(l) = legacy_count(ri) {
        u.insert(l.into(), Quantity::count(1));
    }
    u
}

/// Whether `name` is a resource the evaluator for `ri` tracks (`MatchingResources`).
fn tracks(ri: &ResourceInfo, name: &str) -> bool {
    (is_pods(ri)
        && (POD_RESOURCES.contains(&name)
            || name.starts_with("requests.hugepages-")
            || name.starts_with("hugepages-")))
        || name == count_name(ri)
        || legacy_count(ri) == Some(name)
}

/// `Constraints`: quota on cpu/memory requires every container to state them.
fn pod_constraints(required: &BTreeSet<String>, pod: &Value) -> Option<String> {
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let have = compute_usage(
                &resource_list(&c["resources"]["requests"]),
                &resource_list(&c["resources"]["limits"]),
            );
            for r in required.iter().filter(|r| !have.contains_key(*r)) {
                missing
                    .entry(r.clone())
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, q)| format!("{k}={}", q.render()))
        .collect::<Vec<_>>()
        .join(",")
}

fn quotas(st: &State, ns: &str) -> Vec<Value> {
    st.find("", "resourcequotas")
        .map(|ri| st.list(ri, Some(ns)))
        .unwrap_or_default()
}

/// `checkRequest` for the creation of `obj` (already defaulted and named) in `ns`.
pub fn admit_create(st: &State, ri: &ResourceInfo, ns: &str, obj: &Value) -> ApiResult<()> {
    if !ri.namespaced {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let forbid = |why: String| ApiError::forbidden(&ri.group, &ri.plural, name, &why);
    let delta = usage(ri, obj);
    for q in quotas(st, ns) {
        let qname = q["metadata"]["name"].as_str().unwrap_or_default();
        let hard = resource_list(&q["status"]["hard"]);
        let matching: BTreeSet<String> = hard.keys().filter(|k| tracks(ri, k)).cloned().collect();
        if matching.is_empty() {
            continue;
        }
        if is_pods(ri) {
            let required: BTreeSet<String> = matching
                .iter()
                .filter(|k| VALIDATION_SET.contains(&k.as_str()))
                .cloned()
                .collect();
            if let Some(why) = pod_constraints(&required, obj) {
                return Err(forbid(format!("failed quota: {qname}: {why}")));
            }
        }
        let used = resource_list(&q["status"]["used"]);
        if hard.keys().any(|k| !used.contains_key(k)) {
            return Err(forbid(format!("status unknown for quota: {qname}")));
        }
        let requested: Usage = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let exceeded: Vec<&String> = requested
            .iter()
            .filter(|(k, r)| used[*k].plus(**r) > hard[*k])
            .map(|(k, _)| k)
            .collect();
        if !exceeded.is_empty() {
            let mask = |u: &Usage| -> Usage {
                u.iter()
                    .filter(|(k, _)| exceeded.contains(k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            return Err(forbid(format!(
                "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested)),
                pretty(&mask(&used)),
                pretty(&mask(&hard))
            )));
        }
    }
    Ok(())
}

/// The quota controller's sync: `status.hard` from `spec.hard`, `status.used` from the namespace's objects.
pub fn refresh(st: &mut State, ns: &str) {
    let list = quotas(st, ns);
    if list.is_empty() {
        return;
    }
    let Some(qri) = st.find("", "resourcequotas").cloned() else {
        return;
    };
    let mut total = Usage::new();
    let kinds: Vec<ResourceInfo> = st
        .resources
        .iter()
        .filter(|r| r.namespaced)
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    for ri in kinds {
        // One version per group/resource.
        if !seen.insert((ri.group.clone(), ri.plural.clone())) {
            continue;
        }
        for o in st.list(&ri, Some(ns)) {
            add_into(&mut total, &usage(&ri, &o));
        }
    }
    for q in list {
        let hard = q["spec"]["hard"].clone();
        let mut used = serde_json::Map::new();
        for k in hard.as_object().into_iter().flatten().map(|(k, _)| k) {
            let v = total.get(k).copied().unwrap_or_else(Quantity::zero);
            used.insert(k.clone(), json!(v.render()));
        }
        let mut next = q.clone();
        next["status"] = json!({"hard": hard, "used": used});
        if next != q {
            let name = q["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Err(e) = st.replace(&qri, ns, &name, next, true, "resourcequota-controller") {
                tracing::debug!("kubesim: quota {ns}/{name} status: {}", e.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::builtins;

    fn pods() -> ResourceInfo {
        builtins()
            .into_iter()
            .find(|r| r.plural == "pods")
            .unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn constraints_name_missing_limits_per_container() {
        let req: BTreeSet<String> = ["limits.cpu".to_string(), "limits.memory".to_string()].into();
        let pod = json!({"spec": {"containers": [{"name": "main"}, {"name": "side", "resources": {"limits": {"cpu": "1"}}}]}});
        assert_eq!(
            pod_constraints(&req, &pod).as_deref(),
            Some("must specify limits.cpu for: main; limits.memory for: main,side")
        );
    }

    #[test]
    fn terminal_pods_count_only_as_objects() {
        let done = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}});
        let u = usage(&pods(), &done);
        assert!(
            u.contains_key("count/pods")
                && !u.contains_key("pods")
                && !u.contains_key("requests.cpu")
        );
    }
}
