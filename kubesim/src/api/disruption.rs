//! policy/v1 PodDisruptionBudgets and the pod `eviction` subresource.
//!
//! The status is what upstream's disruption controller computes (`pkg/controller/disruption/
//! disruption.go`, `getExpectedPodCount`, `countHealthyPods`, `updatePdbStatus`), done at once after
//! every write in the namespace as kubesim does for quotas: `currentHealthy` counts matching pods that
//! are Ready and not being deleted; `minAvailable` as a number expects the matching pods and desires
//! that many; a percentage or `maxUnavailable` expects the replicas of the pods' controllers
//! (ReplicaSets, through their Deployment) and desires `expected - maxUnavailable` or
//! `ceil(minAvailable% * expected)`; `disruptionsAllowed` is `currentHealthy - desiredHealthy`, at
//! least 0. Eviction (`pkg/registry/core/pod/storage/eviction.go`): a terminal, pending or deleting
//! pod is deleted at once; more than one budget is a 500; a budget that allows no disruption gives
//! 429 TooManyRequests "Cannot evict pod as it would violate the pod's disruption budget." with a
//! `DisruptionBudget` cause; otherwise the budget's `disruptionsAllowed` is decremented and the pod
//! deleted. Not modelled: `disruptedPods` (kubesim deletes an evicted pod at once, so the map would
//! be emptied by the next sync anyway) and `unhealthyPodEvictionPolicy` beyond its default.

use super::error::{ApiError, ApiResult};
use super::scale::format_selector;
use super::selectors::LabelSelector;
use super::store::{Propagation, State};
use serde_json::{Value, json};

/// The pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    let sel = &pdb["spec"]["selector"];
    if sel.is_null() {
        return false;
    }
    LabelSelector::parse(&format_selector(sel)).is_ok_and(|s| s.matches(pod))
}

/// An int-or-string against `expected` (`intstr.GetScaledValueFromIntOrPercent`).
fn scaled(v: &Value, expected: i64, round_up: bool) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    let x = pct * expected;
    Some(if round_up { (x + 99) / 100 } else { x / 100 })
}

/// The replicas the pods' controllers want (`getExpectedScale`), or the pod without one.
fn expected_scale(st: &State, ns: &str, pods: &[Value]) -> Result<i64, String> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for p in pods {
        let Some(owner) = p["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
        else {
            return Err(format!(
                "found no controller ref for pod \"{}\"",
                p["metadata"]["name"].as_str().unwrap_or_default()
            ));
        };
        let rs = (owner["kind"] == "ReplicaSet")
            .then(|| st.find("apps", "replicasets"))
            .flatten()
            .and_then(|ri| {
                st.get(ri, ns, owner["name"].as_str().unwrap_or_default())
                    .ok()
            });
        let Some(rs) = rs else {
            return Err(format!(
                "found no controllers for pod \"{}\"",
                p["metadata"]["name"].as_str().unwrap_or_default()
            ));
        };
        let deploy = rs["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true && o["kind"] == "Deployment")
            .and_then(|o| {
                st.find("apps", "deployments")
                    .and_then(|ri| st.get(ri, ns, o["name"].as_str().unwrap_or_default()).ok())
            });
        let (uid, replicas) = match &deploy {
            Some(d) => (
                &d["metadata"]["uid"],
                d["spec"]["replicas"].as_i64().unwrap_or(1),
            ),
            None => (
                &rs["metadata"]["uid"],
                rs["spec"]["replicas"].as_i64().unwrap_or(1),
            ),
        };
        if seen.insert(uid.to_string()) {
            total += replicas;
        }
    }
    Ok(total)
}

/// The status the disruption controller writes for `pdb` given the namespace's pods.
fn status_for(st: &State, ns: &str, pdb: &Value, pods: &[Value]) -> Value {
    let mine: Vec<Value> = pods.iter().filter(|p| selects(pdb, p)).cloned().collect();
    let generation = pdb["metadata"]["generation"].clone();
    let healthy = mine
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && pod_ready(p))
        .count() as i64;
    let spec = &pdb["spec"];
    let computed = match (&spec["minAvailable"], &spec["maxUnavailable"]) {
        (Value::Number(n), _) => Ok((mine.len() as i64, n.as_i64().unwrap_or(0))),
        (Value::Null, Value::Null) => Ok((mine.len() as i64, 1)),
        (min, Value::Null) => {
            expected_scale(st, ns, &mine).map(|e| (e, scaled(min, e, true).unwrap_or(0)))
        }
        (_, max) => expected_scale(st, ns, &mine)
            .map(|e| (e, (e - scaled(max, e, true).unwrap_or(0)).max(0))),
    };
    let old_cond = pdb["status"]["conditions"][0].clone();
    let cond = |status: &str, reason: &str, message: &str| {
        let since = match old_cond["status"].as_str() == Some(status) {
            true => old_cond["lastTransitionTime"].clone(),
            false => json!(super::meta::now()),
        };
        json!([{"type": "DisruptionAllowed", "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": since}])
    };
    match computed {
        Ok((expected, desired)) => {
            let mut allowed = healthy - desired;
            if expected <= 0 || allowed <= 0 {
                allowed = 0;
            }
            let (s, r) = match allowed > 0 {
                true => ("True", "SufficientPods"),
                false => ("False", "InsufficientPods"),
            };
            json!({"observedGeneration": generation, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                "desiredHealthy": desired, "expectedPods": expected, "conditions": cond(s, r, "")})
        }
        // failSafe: no disruption allowed while the budget cannot be computed.
        Err(why) => json!({"observedGeneration": generation, "disruptionsAllowed": 0,
            "currentHealthy": pdb["status"]["currentHealthy"].as_i64().unwrap_or(0),
            "desiredHealthy": pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
            "expectedPods": pdb["status"]["expectedPods"].as_i64().unwrap_or(0),
            "conditions": cond("False", "SyncFailed", &why)}),
    }
}

/// Recompute the status of every PodDisruptionBudget in `ns`.
pub fn refresh(st: &mut State, ns: &str) {
    let Some(ri) = st.find("policy", "poddisruptionbudgets").cloned() else {
        return;
    };
    let pdbs = st.list(&ri, Some(ns));
    if pdbs.is_empty() {
        return;
    }
    let pods = st
        .find("", "pods")
        .map(|r| st.list(r, Some(ns)))
        .unwrap_or_default();
    for pdb in pdbs {
        let status = status_for(st, ns, &pdb, &pods);
        if pdb["status"] != status {
            let mut next = pdb.clone();
            next["status"] = status;
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let name = pdb["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let _ = st.replace(&ri, ns, &name, next, true, "kube-controller-manager");
        }
    }
}

fn too_many(cause: String) -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}));
    e
}

/// `POST pods/<name>/eviction`: delete the pod if its budget allows, as upstream's EvictionREST.
pub fn evict(st: &mut State, ns: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let pod_ri = st
        .find("", "pods")
        .cloned()
        .ok_or_else(|| ApiError::internal("no pods"))?;
    let pod = st.get(&pod_ri, ns, name)?;
    if let Some(n) = body["metadata"]["name"].as_str()
        && !n.is_empty()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object"
        )));
    }
    let policy = match body["deleteOptions"]["propagationPolicy"].as_str() {
        Some("Orphan") => Propagation::Orphan,
        Some("Foreground") => Propagation::Foreground,
        _ => Propagation::Background,
    };
    let success =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || pod["metadata"]["deletionTimestamp"].is_string();
    if ignore_pdb {
        st.delete(&pod_ri, ns, name, policy)?;
        return Ok(success);
    }
    let pdb_ri = st
        .find("policy", "poddisruptionbudgets")
        .cloned()
        .ok_or_else(|| ApiError::internal("no poddisruptionbudgets"))?;
    let pdbs: Vec<Value> = st
        .list(&pdb_ri, Some(ns))
        .into_iter()
        .filter(|p| selects(p, &pod))
        .collect();
    if pdbs.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    if let Some(pdb) = pdbs.first() {
        let pdb_name = pdb["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = &pdb["status"];
        if status["observedGeneration"].as_i64() < pdb["metadata"]["generation"].as_i64() {
            return Err(too_many(format!(
                "The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        // IfHealthyBudget: a pod that is not ready may go while the budget is met.
        let healthy_budget = status["currentHealthy"].as_i64() >= status["desiredHealthy"].as_i64();
        let unhealthy_ok = !pod_ready(&pod)
            && (healthy_budget || pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow");
        if !unhealthy_ok {
            let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed < 0 {
                return Err(ApiError::forbidden(
                    "policy",
                    "poddisruptionbudgets",
                    &pdb_name,
                    "pdb disruptions allowed is negative",
                ));
            }
            if allowed == 0 {
                return Err(too_many(format!(
                    "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0)
                )));
            }
            let mut next = pdb.clone();
            next["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            st.replace(&pdb_ri, ns, &pdb_name, next, true, "kube-apiserver")?;
        }
    }
    st.delete(&pod_ri, ns, name, policy)?;
    Ok(success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up_as_upstream() {
        assert_eq!(scaled(&json!("50%"), 3, true), Some(2));
        assert_eq!(scaled(&json!("25%"), 4, true), Some(1));
        assert_eq!(scaled(&json!(2), 9, true), Some(2));
        assert_eq!(scaled(&json!("x"), 9, true), None);
    }
}
