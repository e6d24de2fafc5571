//! LimitRange as upstream: item defaulting (`SetDefaults_LimitRangeItem`), the LimitRanger admission
//! plugin for pods (container `default`/`defaultRequest`, `min`/`max`/`maxLimitRequestRatio` for
//! `Container` and `Pod` items, `plugin/pkg/admission/limitranger/admission.go`), the pod's own
//! defaulting of requests from limits (`SetDefaults_Pod`) and its QoS class (`qos.GetPodQOS`).

use super::quantity::Quantity;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

type Resources = BTreeMap<String, Quantity>;

fn resources(v: &Value) -> Resources {
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

/// `SetDefaults_LimitRangeItem` (pkg/apis/core/v1/defaults.go) for a LimitRange being stored.
pub fn default_items(lr: &mut Value) {
    for item in lr["spec"]["limits"].as_array_mut().into_iter().flatten() {
        if item["type"] != "Container" {
            continue;
        }
        let mut default = item["default"].as_object().cloned().unwrap_or_default();
        let mut request = item["defaultRequest"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // A missing default limit comes from max; a missing default request from default, then min.
        for (k, v) in item["max"].as_object().into_iter().flatten() {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &default {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in item["min"].as_object().into_iter().flatten() {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !request.is_empty() {
            item["defaultRequest"] = Value::Object(request);
        }
    }
}

/// `SetDefaults_Pod`: a container with limits gets equal requests where it has none.
pub fn default_pod_requests(pod: &mut Value) {
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array_mut().into_iter().flatten() {
            let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
                continue;
            };
            if !c["resources"]["requests"].is_object() {
                c["resources"]["requests"] = json!({});
            }
            if let Some(req) = c["resources"]["requests"].as_object_mut() {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.render();
    let Some(r) = req.get(res) else {
        return Some(format!(
            "Minimum {res} usage per {kind} is {e}.  No request is specified."
        ));
    };
    if *r < enforced {
        return Some(format!(
            "Minimum {res} usage per {kind} is {e}, but request is {}.",
            r.render()
        ));
    }
    match lim.get(res) {
        Some(l) if *l < enforced => Some(format!(
            "Minimum {res} usage per {kind} is {e}, but limit is {}.",
            l.render()
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.render();
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "Maximum {res} usage per {kind} is {e}.  No limit is specified."
        ));
    };
    if *l > enforced {
        return Some(format!(
            "Maximum {res} usage per {kind} is {e}, but limit is {}.",
            l.render()
        ));
    }
    match req.get(res) {
        Some(r) if *r > enforced => Some(format!(
            "Maximum {res} usage per {kind} is {e}, but request is {}.",
            r.render()
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.render();
    let r = req.get(res).map(|q| q.milli).unwrap_or(0);
    let l = lim.get(res).map(|q| q.milli).unwrap_or(0);
    if r == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0."
        ));
    }
    if l == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0."
        ));
    }
    #[allow(clippy::cast_precision_loss)] // ratios of quantities, as upstream's float64
    let observed = l as f64 / r as f64;
    #[allow(clippy::cast_precision_loss)]
    let max = enforced.milli as f64 / 1000.0;
    (observed > max).then(|| {
        format!("{res} max limit to request ratio per {kind} is {e}, but provided ratio is {observed:.6}.")
    })
}

fn check(kind: &str, item: &Value, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    for (k, v) in resources(&item["min"]) {
        errs.extend(min_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in resources(&item["max"]) {
        errs.extend(max_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in resources(&item["maxLimitRequestRatio"]) {
        errs.extend(ratio_constraint(kind, &k, v, req, lim));
    }
}

fn sum(lists: &[Resources]) -> Resources {
    let mut out = Resources::new();
    let keys: std::collections::BTreeSet<&String> = lists.iter().flat_map(|l| l.keys()).collect();
    for k in keys {
        // A key missing from any container leaves the pod total unset, as upstream's sum.
        if lists.iter().all(|l| l.contains_key(k)) {
            let t = lists
                .iter()
                .filter_map(|l| l.get(k))
                .fold(Quantity::zero(), |a, q| a.plus(*q));
            out.insert(k.clone(), t);
        }
    }
    out
}

/// `PodLimitFunc` for every LimitRange of the namespace: apply container defaults (recorded in the
/// `kubernetes.io/limit-ranger` annotation), then enforce the items. Err is the aggregate message.
pub fn admit_pod(limit_ranges: &[Value], pod: &mut Value) -> Result<(), String> {
    let mut errs = vec![];
    for lr in limit_ranges {
        let items: Vec<Value> = lr["spec"]["limits"].as_array().cloned().unwrap_or_default();
        // defaultContainerResourceRequirements: the Container item's default / defaultRequest.
        let (mut dlim, mut dreq) = (Map::new(), Map::new());
        for it in items.iter().filter(|i| i["type"] == "Container") {
            dlim.extend(it["default"].as_object().cloned().unwrap_or_default());
            dreq.extend(
                it["defaultRequest"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        let mut notes = vec![];
        for key in ["containers", "initContainers"] {
            for c in pod["spec"][key].as_array_mut().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let (mut set_req, mut set_lim) = (vec![], vec![]);
                for (field, defaults, set) in [
                    ("limits", &dlim, &mut set_lim),
                    ("requests", &dreq, &mut set_req),
                ] {
                    if defaults.is_empty() {
                        continue;
                    }
                    if !c["resources"][field].is_object() {
                        c["resources"][field] = json!({});
                    }
                    if let Some(m) = c["resources"][field].as_object_mut() {
                        for (k, v) in defaults {
                            if !m.contains_key(k) {
                                m.insert(k.clone(), v.clone());
                                set.push(k.clone());
                            }
                        }
                    }
                }
                set_req.sort();
                set_lim.sort();
                if !set_req.is_empty() {
                    notes.push(format!(
                        "{} request for container {name}",
                        set_req.join(", ")
                    ));
                }
                if !set_lim.is_empty() {
                    notes.push(format!("{} limit for container {name}", set_lim.join(", ")));
                }
            }
        }
        if !notes.is_empty() {
            if !pod["metadata"]["annotations"].is_object() {
                pod["metadata"]["annotations"] = json!({});
            }
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
                json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
        let containers: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let reqs: Vec<Resources> = containers
            .iter()
            .map(|c| resources(&c["resources"]["requests"]))
            .collect();
        let lims: Vec<Resources> = containers
            .iter()
            .map(|c| resources(&c["resources"]["limits"]))
            .collect();
        for it in &items {
            match it["type"].as_str() {
                Some("Container") => {
                    for (r, l) in reqs.iter().zip(&lims) {
                        check("Container", it, r, l, &mut errs);
                    }
                }
                Some("Pod") => check("Pod", it, &sum(&reqs), &sum(&lims), &mut errs),
                _ => {}
            }
        }
    }
    // utilerrors.NewAggregate: duplicates dropped, one message alone, several as "[a, b]".
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// `qos.GetPodQOS`: Guaranteed when every container limits cpu and memory to its requests,
/// BestEffort when nothing is requested or limited, Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let req = resources(&c["resources"]["requests"]);
            let lim = resources(&c["resources"]["limits"]);
            let compute = |k: &String| k == "cpu" || k == "memory";
            if req
                .iter()
                .chain(lim.iter())
                .any(|(k, q)| compute(k) && q.milli != 0)
            {
                any = true;
            }
            for r in ["cpu", "memory"] {
                match (req.get(r), lim.get(r)) {
                    (Some(a), Some(b)) if a == b => {}
                    (None, Some(_)) => {}
                    _ => guaranteed = false,
                }
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_annotate_then_max_refuses() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "max": {"memory": "1Gi"}}]}});
        default_items(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["defaultRequest"]["cpu"], "500m");
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "main"}]}});
        admit_pod(std::slice::from_ref(&lr), &mut pod).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
            "128Mi"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main"
        );
        assert_eq!(qos_class(&pod), "Guaranteed");
        let mut big = json!({"metadata": {}, "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "2Gi"}}}]}});
        assert_eq!(
            admit_pod(&[lr], &mut big).unwrap_err(),
            "Maximum memory usage per Container is 1Gi, but limit is 2Gi."
        );
    }
}
