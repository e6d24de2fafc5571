//! The Deployment and ReplicaSet rules, as pure functions of the objects (upstream
//! `pkg/controller/deployment/{sync,rolling,recreate,progress}.go`, `util/deployment_util.go`, and
//! `pkg/controller/replicaset/replica_set.go`). [`super::apps_loop`] applies what they decide.
//!
//! - ReplicaSet: active pods (not terminal, not deleting) owned by it are brought to `spec.replicas`
//!   (new pods from the template, `generateName: <rs>-`, controller ownerReference; surplus deleted
//!   not-ready first, then newest); status `replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//!   `availableReplicas` (ready; `minReadySeconds` is not modelled), `observedGeneration`.
//! - Deployment: the new ReplicaSet is the one whose template (without `pod-template-hash`) equals the
//!   Deployment's; when none, `<deployment>-<hash>` is made with the hash label on its selector,
//!   template and itself and `deployment.kubernetes.io/revision` one above the old ones. RollingUpdate
//!   scales the new one up within `replicas + maxSurge` and old ones (oldest first) down while
//!   `available - (replicas - maxUnavailable)` allows (25% each by default, surge rounded up,
//!   unavailable down, both 0 meaning unavailable 1); Recreate scales old ones to 0 and the new one up
//!   once no old pod remains. Status `replicas`, `updatedReplicas`, `readyReplicas`,
//!   `availableReplicas`, `unavailableReplicas`, `observedGeneration` and conditions `Available`
//!   (MinimumReplicasAvailable / MinimumReplicasUnavailable) and `Progressing` (NewReplicaSetCreated,
//!   ReplicaSetUpdated, NewReplicaSetAvailable) with upstream's messages. The hash is FNV-32a of the
//!   template's JSON in upstream's safe alphabet (upstream hashes the Go object dump, so values differ).
//!   Not modelled: `revisionHistoryLimit` cleanup, `progressDeadlineSeconds` expiry, `paused`,
//!   rollbacks.

use serde_json::{Value, json};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}

/// Whether `o` is controlled by the object with `owner_uid`.
pub fn controlled_by(o: &Value, owner_uid: &str) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == true && r["uid"] == owner_uid)
}

fn active(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn status_int(o: &Value, f: &str) -> i64 {
    o["status"][f].as_i64().unwrap_or(0)
}

/// What one ReplicaSet sync decides.
#[derive(Debug, Default, PartialEq)]
pub struct RsStep {
    /// Pods to create (each from [`rs_pod`]).
    pub create: usize,
    /// Pod names to delete.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: Value,
}

/// The ReplicaSet rules for `rs` and the pods it controls.
pub fn replicaset_step(rs: &Value, pods: &[Value]) -> RsStep {
    let mine: Vec<&Value> = pods
        .iter()
        .filter(|p| controlled_by(p, uid(rs)) && active(p))
        .collect();
    let want = replicas(rs).max(0) as usize;
    let mut step = RsStep::default();
    if rs["metadata"]["deletionTimestamp"].is_null() {
        if mine.len() < want {
            step.create = want - mine.len();
        } else if mine.len() > want {
            let mut order: Vec<&Value> = mine.clone();
            // getPodsToDelete: unready before ready, then the newest first.
            order.sort_by(|a, b| {
                let ra = super::super::api::disruption::pod_ready(a);
                let rb = super::super::api::disruption::pod_ready(b);
                ra.cmp(&rb).then_with(|| {
                    b["metadata"]["creationTimestamp"]
                        .as_str()
                        .cmp(&a["metadata"]["creationTimestamp"].as_str())
                        .then_with(|| name(b).cmp(name(a)))
                })
            });
            step.delete = order
                .iter()
                .take(mine.len() - want)
                .map(|p| name(p).to_string())
                .collect();
        }
    }
    let ready = mine
        .iter()
        .filter(|p| super::super::api::disruption::pod_ready(p))
        .count();
    step.status = json!({
        "replicas": mine.len(), "fullyLabeledReplicas": mine.len(), "readyReplicas": ready,
        "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"],
    });
    step
}

/// A new pod of `rs`.
pub fn rs_pod(rs: &Value) -> Value {
    let t = &rs["spec"]["template"];
    let mut meta = t["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["generateName"] = json!(format!("{}-", name(rs)));
    meta["namespace"] = rs["metadata"]["namespace"].clone();
    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name(rs),
        "uid": uid(rs), "controller": true, "blockOwnerDeletion": true}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]})
}

/// FNV-32a of the template's JSON, as upstream's `ComputeHash` encodes it (`rand.SafeEncodeString`).
pub fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| char::from(ALPHABET[usize::from(d) % ALPHABET.len()]))
        .collect()
}

fn without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    t
}

/// An int-or-percent of `total` (`intstr.GetScaledValueFromIntOrPercent`).
fn scaled(v: &Value, total: i64, round_up: bool, default_pct: i64) -> i64 {
    if let Some(n) = v.as_i64() {
        return n;
    }
    let pct = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(default_pct);
    let x = pct * total;
    if round_up { (x + 99) / 100 } else { x / 100 }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable).
fn fenceposts(d: &Value) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let n = replicas(d);
    let surge = scaled(&ru["maxSurge"], n, true, 25);
    let mut unavailable = scaled(&ru["maxUnavailable"], n, false, 25);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// What one Deployment sync decides.
#[derive(Debug, Default, PartialEq)]
pub struct DeployStep {
    /// A new ReplicaSet to create (then nothing else this round).
    pub create_rs: Option<Value>,
    /// `(replicaset name, replicas)` to set.
    pub scale: Vec<(String, i64)>,
    /// The revision annotation the Deployment should carry.
    pub revision: Option<String>,
    /// The status to write.
    pub status: Value,
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Deployment rules for `d`, the ReplicaSets it controls and their pods.
pub fn deployment_step(d: &Value, rss: &[Value], pods: &[Value]) -> DeployStep {
    let mut step = DeployStep::default();
    let mine: Vec<&Value> = rss.iter().filter(|r| controlled_by(r, uid(d))).collect();
    let template = &d["spec"]["template"];
    let new_rs = mine
        .iter()
        .copied()
        .find(|r| without_hash(&r["spec"]["template"]) == without_hash(template));
    let mut old: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|r| new_rs.is_none_or(|n| uid(n) != uid(r)))
        .collect();
    old.sort_by_key(|r| {
        (
            r["metadata"]["creationTimestamp"]
                .as_str()
                .map(String::from),
            name(r).to_string(),
        )
    });
    let want = replicas(d);
    let (surge, unavailable) = fenceposts(d);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let max_old_rev = old.iter().map(|r| revision(r)).max().unwrap_or(0);
    let Some(new_rs) = new_rs else {
        let hash = template_hash(template);
        let rs_name = format!("{}-{hash}", name(d));
        let mut t = template.clone();
        t["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let total: i64 = mine.iter().map(|r| replicas(r)).sum();
        // NewRSNewReplicas: a rolling update starts the new set within the surge.
        let start = if recreate || !old.iter().any(|r| replicas(r) > 0) {
            if recreate && old.iter().any(|r| replicas(r) > 0) {
                0
            } else {
                want
            }
        } else {
            (want + surge - total).clamp(0, want)
        };
        let mut labels = t["metadata"]["labels"].clone();
        labels[HASH_LABEL] = json!(hash);
        step.create_rs = Some(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": d["metadata"]["namespace"], "labels": labels,
                "annotations": {REVISION: (max_old_rev + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": want.to_string(),
                    "deployment.kubernetes.io/max-replicas": (want + surge).to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name(d),
                    "uid": uid(d), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": start, "selector": selector, "template": t,
                "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0)}}));
        step.status = status(
            d,
            &mine,
            None,
            &format!("Created new replica set \"{rs_name}\""),
            "NewReplicaSetCreated",
            unavailable,
        );
        return step;
    };
    step.revision = Some(match revision(new_rs) {
        0 => (max_old_rev + 1).to_string(),
        r => r.to_string(),
    });
    let old_pods = pods
        .iter()
        .filter(|p| active(p) && old.iter().any(|r| controlled_by(p, uid(r))))
        .count();
    if recreate {
        for r in &old {
            if replicas(r) != 0 {
                step.scale.push((name(r).to_string(), 0));
            }
        }
        if old_pods == 0 && replicas(new_rs) != want {
            step.scale.push((name(new_rs).to_string(), want));
        }
    } else {
        // reconcileNewReplicaSet
        let total: i64 = mine.iter().map(|r| replicas(r)).sum();
        let new_n = replicas(new_rs);
        if new_n > want {
            step.scale.push((name(new_rs).to_string(), want));
        } else if new_n < want && total < want + surge {
            let up = (want + surge - total).min(want - new_n);
            step.scale.push((name(new_rs).to_string(), new_n + up));
        }
        // reconcileOldReplicaSets
        let available: i64 = mine
            .iter()
            .map(|r| status_int(r, "availableReplicas"))
            .sum();
        let min_available = want - unavailable;
        let new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas");
        let old_total: i64 = old.iter().map(|r| replicas(r)).sum();
        let max_scaled_down = (total - min_available - new_unavailable).max(0);
        // cleanupUnhealthyReplicas, then scaleDownOldReplicaSetsForRollingUpdate.
        let mut budget = max_scaled_down.min(old_total);
        let mut room = (available - min_available).max(0);
        for r in &old {
            let n = replicas(r);
            if n == 0 {
                continue;
            }
            let unhealthy = (n - status_int(r, "availableReplicas")).max(0).min(budget);
            let mut cut = unhealthy;
            let healthy_cut = (n - cut).min(room);
            cut += healthy_cut;
            room -= healthy_cut;
            cut = cut.min(budget);
            budget -= cut;
            if cut > 0 {
                step.scale.push((name(r).to_string(), n - cut));
            }
        }
    }
    let scaled_to = |r: &Value| {
        step.scale
            .iter()
            .find(|(n, _)| n == name(r))
            .map_or(replicas(r), |(_, v)| *v)
    };
    let complete = scaled_to(new_rs) == want
        && status_int(new_rs, "availableReplicas") == want
        && old
            .iter()
            .all(|r| scaled_to(r) == 0 && status_int(r, "replicas") == 0);
    let (msg, reason) = if complete {
        (
            format!(
                "ReplicaSet \"{}\" has successfully progressed.",
                name(new_rs)
            ),
            "NewReplicaSetAvailable",
        )
    } else {
        (
            format!("ReplicaSet \"{}\" is progressing.", name(new_rs)),
            "ReplicaSetUpdated",
        )
    };
    step.status = status(d, &mine, Some(new_rs), &msg, reason, unavailable);
    step
}

/// `calculateStatus` plus the conditions.
fn status(
    d: &Value,
    mine: &[&Value],
    new_rs: Option<&Value>,
    msg: &str,
    reason: &str,
    unavailable: i64,
) -> Value {
    let sum = |f: &str| mine.iter().map(|r| status_int(r, f)).sum::<i64>();
    let available = sum("availableReplicas");
    let want = replicas(d);
    let total_spec: i64 = mine.iter().map(|r| replicas(r)).sum();
    let now = super::super::api::meta::now();
    let old_conds = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str, s: &str, reason: &str, message: &str| {
        let prev = old_conds.iter().find(|c| c["type"] == t);
        let since = prev
            .filter(|c| c["status"] == s)
            .map_or(json!(now), |c| c["lastTransitionTime"].clone());
        let updated = prev
            .filter(|c| c["status"] == s && c["reason"] == reason && c["message"] == message)
            .map_or(json!(now), |c| c["lastUpdateTime"].clone());
        json!({"type": t, "status": s, "reason": reason, "message": message,
            "lastUpdateTime": updated, "lastTransitionTime": since})
    };
    let avail = if available >= want - unavailable {
        cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let mut s = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": sum("replicas"),
        "updatedReplicas": new_rs.map_or(0, |r| status_int(r, "replicas")),
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "conditions": [avail, cond("Progressing", "True", reason, msg)],
    });
    let unavail = (total_spec - available).max(0);
    if unavail > 0 {
        s["unavailableReplicas"] = json!(unavail);
    }
    for f in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        if s[f] == 0 {
            if let Some(o) = s.as_object_mut() {
                o.remove(f);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(image: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "n", "uid": "d1", "generation": 2},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn ready_pod(rs: &Value, n: usize) -> Value {
        json!({"metadata": {"name": format!("{}-{n}", name(rs)), "creationTimestamp": format!("2026-01-01T00:00:0{n}Z"),
            "ownerReferences": [{"uid": uid(rs), "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn a_template_change_rolls_out_within_surge_and_unavailability() {
        let d = deploy("a");
        let first = deployment_step(&d, &[], &[]);
        let mut rs1 = first.create_rs.expect("new set");
        assert_eq!(rs1["spec"]["replicas"], 2);
        assert_eq!(rs1["metadata"]["annotations"][REVISION], "1");
        let hash = rs1["metadata"]["labels"][HASH_LABEL].clone();
        assert_eq!(
            rs1["spec"]["selector"]["matchLabels"],
            json!({"app": "web", HASH_LABEL: hash})
        );
        rs1["metadata"]["uid"] = json!("r1");
        rs1["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let pods = vec![ready_pod(&rs1, 1), ready_pod(&rs1, 2)];
        let s = replicaset_step(&rs1, &pods);
        assert_eq!((s.create, s.delete.len()), (0, 0));
        rs1["status"] = s.status;
        let steady = deployment_step(&d, &[rs1.clone()], &pods);
        assert_eq!(steady.scale, vec![]);
        assert_eq!(
            steady.status["conditions"][1]["reason"],
            "NewReplicaSetAvailable"
        );
        assert_eq!(steady.status["availableReplicas"], 2);
        // New image: a second set starts at the surge (25% of 2 rounds up to 1).
        let d2 = deploy("b");
        let roll = deployment_step(&d2, &[rs1.clone()], &pods);
        let mut rs2 = roll.create_rs.expect("second set");
        assert_eq!(rs2["spec"]["replicas"], 1);
        assert_eq!(rs2["metadata"]["annotations"][REVISION], "2");
        assert_ne!(rs2["metadata"]["name"], rs1["metadata"]["name"]);
        rs2["metadata"]["uid"] = json!("r2");
        // Until the new pod is available, no old pod goes (maxUnavailable 25% of 2 is 0).
        let waiting = deployment_step(&d2, &[rs1.clone(), rs2.clone()], &pods);
        assert_eq!(waiting.scale, vec![]);
        assert_eq!(
            waiting.status["conditions"][1]["reason"],
            "ReplicaSetUpdated"
        );
        rs2["status"] = json!({"replicas": 1, "availableReplicas": 1, "readyReplicas": 1});
        let next = deployment_step(&d2, &[rs1.clone(), rs2.clone()], &pods);
        assert_eq!(next.scale, vec![(name(&rs1).to_string(), 1)]);
    }

    #[test]
    fn replicasets_delete_unready_then_newest() {
        let rs = json!({"metadata": {"name": "r", "uid": "u"}, "spec": {"replicas": 1}});
        let mut unready = ready_pod(&rs, 1);
        unready["status"]["conditions"][0]["status"] = json!("False");
        let pods = vec![unready, ready_pod(&rs, 2), ready_pod(&rs, 3)];
        let s = replicaset_step(&rs, &pods);
        assert_eq!(s.delete, vec!["r-1".to_string(), "r-3".to_string()]);
        assert_eq!(s.status["readyReplicas"], 2);
    }
}
