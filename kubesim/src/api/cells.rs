//! The cells of upstream's printers (`pkg/printers/internalversion/printers.go`: `printPod`, `printJob`,
//! `printEvent`, `printPersistentVolumeClaim`, `printResourceQuota`, `printRoleBinding`, ...).

use super::meta::{age, human_duration};
use serde_json::{Value, json};

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

pub fn name(o: &Value) -> Value {
    o["metadata"]["name"].clone()
}

pub fn created(o: &Value) -> Value {
    json!(translate(&o["metadata"]["creationTimestamp"]))
}

/// `translateTimestampSince`: `<unknown>` for a zero time.
pub fn translate(ts: &Value) -> String {
    match ts.as_str() {
        Some(t) if !t.is_empty() => age(t),
        _ => "<unknown>".into(),
    }
}

pub fn len_of(v: &Value) -> i64 {
    let n = v
        .as_object()
        .map(serde_json::Map::len)
        .or_else(|| v.as_array().map(Vec::len))
        .unwrap_or(0);
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `printPod`: READY `n/m`, STATUS as the kubelet's container states make it, RESTARTS, AGE; wide
/// IP, NODE, NOMINATED NODE, READINESS GATES.
pub fn pod_status(pod: &Value) -> (String, i64, i64, i64) {
    let st = &pod["status"];
    let mut reason = s(&st["phase"]);
    if st["reason"].as_str().is_some_and(|r| !r.is_empty()) {
        reason = s(&st["reason"]);
    }
    for c in st["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let total =
        i64::try_from(pod["spec"]["containers"].as_array().map_or(0, Vec::len)).unwrap_or(0);
    let (mut ready, mut restarts) = (0, 0);
    let mut has_running = false;
    let statuses: Vec<Value> = st["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in statuses.iter().rev() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let state = &c["state"];
        let waiting = state["waiting"]["reason"].as_str().unwrap_or_default();
        let term = &state["terminated"];
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if term.is_object() && term["reason"].as_str().is_some_and(|r| !r.is_empty()) {
            reason = s(&term["reason"]);
        } else if term.is_object() {
            reason = match term["signal"].as_i64() {
                Some(sig) if sig != 0 => format!("Signal:{sig}"),
                _ => format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
            };
        } else if c["ready"] == true && state["running"].is_object() {
            has_running = true;
            ready += 1;
        }
    }
    if reason == "Completed" && has_running {
        let pod_ready = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        reason = if pod_ready { "Running" } else { "NotReady" }.into();
    }
    let terminal = matches!(st["phase"].as_str(), Some("Succeeded" | "Failed"));
    if pod["metadata"]["deletionTimestamp"].is_string() {
        if st["reason"] == "NodeLost" {
            reason = "Unknown".into();
        } else if !terminal {
            reason = "Terminating".into();
        }
    }
    (reason, ready, total, restarts)
}

pub fn pod_cells(pod: &Value) -> Vec<Value> {
    let (reason, ready, total, restarts) = pod_status(pod);
    let none = |v: &Value| match v.as_str() {
        Some(x) if !x.is_empty() => x.to_string(),
        _ => "<none>".into(),
    };
    let ip = pod["status"]["podIPs"][0]["ip"].clone();
    let gates = match pod["spec"]["readinessGates"].as_array() {
        Some(g) if !g.is_empty() => {
            let conds = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ok = g
                .iter()
                .filter(|r| {
                    conds
                        .iter()
                        .find(|c| c["type"] == r["conditionType"])
                        .is_some_and(|c| c["status"] == "True")
                })
                .count();
            format!("{ok}/{}", g.len())
        }
        _ => "<none>".into(),
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        created(pod),
        json!(none(&ip)),
        json!(none(&pod["spec"]["nodeName"])),
        json!(none(&pod["status"]["nominatedNodeName"])),
        json!(gates),
    ]
}

pub fn has_condition(job: &Value, t: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == t)
        .is_some_and(|c| c["status"] == "True")
}

pub fn seconds(ts: &Value) -> Option<i64> {
    ts.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

pub fn job_cells(job: &Value) -> Vec<Value> {
    let succeeded = job["status"]["succeeded"].as_i64().unwrap_or(0);
    let completions = match job["spec"]["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match job["spec"]["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        seconds(&job["status"]["startTime"]),
        seconds(&job["status"]["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(jiff::Timestamp::now().as_second() - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if job["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = containers.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<String> = containers.iter().map(|c| s(&c["image"])).collect();
    let selector = job["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        name(job),
        json!(status),
        json!(completions),
        json!(duration),
        created(job),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(selector),
    ]
}

pub fn event_cells(e: &Value) -> Vec<Value> {
    let first = match e["firstTimestamp"].as_str() {
        Some(t) if !t.is_empty() => age(t),
        _ => translate(&e["eventTime"]),
    };
    let mut last = match e["lastTimestamp"].as_str() {
        Some(t) if !t.is_empty() => age(t),
        _ => first.clone(),
    };
    let mut count = e["count"].as_i64().unwrap_or(0);
    if e["series"].is_object() {
        last = translate(&e["series"]["lastObservedTime"]);
        count = e["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let obj = &e["involvedObject"];
    let kind = s(&obj["kind"]).to_lowercase();
    let target = match obj["name"].as_str() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    };
    let component = Some(s(&e["source"]["component"]))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| s(&e["reportingComponent"]));
    let host = Some(s(&e["source"]["host"]))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| s(&e["reportingInstance"]));
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        e["type"].clone(),
        e["reason"].clone(),
        json!(target),
        json!(s(&obj["fieldPath"])),
        json!(source),
        json!(s(&e["message"]).trim()),
        json!(first),
        json!(count),
        name(e),
    ]
}

pub fn quota_cells(q: &Value) -> Vec<Value> {
    let mut keys: Vec<String> = q["status"]["hard"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    let (mut req, mut lim) = (vec![], vec![]);
    for k in keys {
        let used = q["status"]["used"][&k].as_str().unwrap_or("0").to_string();
        let hard = q["status"]["hard"][&k].as_str().unwrap_or("0").to_string();
        let line = format!("{k}: {used}/{hard}");
        if k.split('.').next() == Some("limits") && k.contains('.') {
            lim.push(line);
        } else {
            req.push(line);
        }
    }
    vec![
        name(q),
        json!(req.join(", ")),
        json!(lim.join(", ")),
        created(q),
    ]
}

pub fn binding_cells(b: &Value) -> Vec<Value> {
    let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
    let of = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|x| x["kind"] == kind)
            .map(|x| {
                if kind == "ServiceAccount" {
                    format!("{}/{}", s(&x["namespace"]), s(&x["name"]))
                } else {
                    s(&x["name"])
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(b),
        json!(format!(
            "{}/{}",
            s(&b["roleRef"]["kind"]),
            s(&b["roleRef"]["name"])
        )),
        created(b),
        json!(of("User")),
        json!(of("Group")),
        json!(of("ServiceAccount")),
    ]
}

pub fn pvc_cells(p: &Value) -> Vec<Value> {
    let phase = if p["metadata"]["deletionTimestamp"].is_string() {
        json!("Terminating")
    } else {
        p["status"]["phase"].clone()
    };
    let bound = p["spec"]["volumeName"]
        .as_str()
        .is_some_and(|v| !v.is_empty());
    let modes = p["status"]["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m.as_str()? {
            "ReadWriteOnce" => Some("RWO"),
            "ReadOnlyMany" => Some("ROX"),
            "ReadWriteMany" => Some("RWX"),
            "ReadWriteOncePod" => Some("RWOP"),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",");
    let unset = |v: &Value| {
        v.as_str()
            .map_or_else(|| "<unset>".to_string(), String::from)
    };
    vec![
        name(p),
        phase,
        json!(s(&p["spec"]["volumeName"])),
        json!(if bound {
            s(&p["status"]["capacity"]["storage"])
        } else {
            String::new()
        }),
        json!(if bound { modes } else { String::new() }),
        json!(s(&p["spec"]["storageClassName"])),
        json!(unset(&p["spec"]["volumeAttributesClassName"])),
        created(p),
        json!(unset(&p["spec"]["volumeMode"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_follows_container_states() {
        let waiting = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(pod_status(&waiting).0, "ImagePullBackOff");
        let done = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded", "containerStatuses": [{"ready": false, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_status(&done), ("Completed".into(), 0, 1, 0));
        let running = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running", "containerStatuses": [{"ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&running), ("Running".into(), 1, 1, 0));
        let new = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(pod_status(&new).0, "Pending");
    }
}
