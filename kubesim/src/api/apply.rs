//! Server-side apply: field ownership per field manager, conflicts and forced takeovers.
//!
//! Ownership is tracked at leaf granularity (objects are recursed into; lists and scalars are
//! atomic leaves), which is what managedFields does for atomic lists.

use super::patch::merge;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Field manager name -> owned leaf paths (`.spec.size`).
pub type Managers = BTreeMap<String, BTreeSet<String>>;

const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "generateName",
    "selfLink",
];

/// Leaf paths of an object with their values.
pub fn leaves(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = v {
        for (k, val) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(meta) = val {
                    for (mk, mv) in meta {
                        if !UNOWNED_META.contains(&mk.as_str()) {
                            walk(mv, &format!(".metadata.{mk}"), &mut out);
                        }
                    }
                    // kubectl migrates this annotation's ownership by rewriting managedFields,
                    // which kubesim does not expose; leave it unowned so the migration is not a conflict.
                    out.remove(
                        ".metadata.annotations.kubectl.kubernetes.io/last-applied-configuration",
                    );
                }
                continue;
            }
            walk(val, &format!(".{k}"), &mut out);
        }
    }
    out
}

fn walk(v: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                walk(val, &format!("{path}.{k}"), out);
            }
        }
        _ => {
            out.insert(path.to_string(), v.clone());
        }
    }
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.trim_start_matches('.').split('.') {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn remove_at(v: &mut Value, path: &str) {
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = v;
    for s in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(*s)) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(*last);
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

/// A field owned by another manager that an apply would change.
#[derive(Debug, Clone)]
pub struct ApplyConflict {
    pub manager: String,
    pub field: String,
}

/// Apply `applied` on top of `current` for `manager`. Returns the new object or the conflicts.
pub fn apply(
    current: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    owners: &mut Managers,
) -> Result<Value, Vec<ApplyConflict>> {
    let wanted = leaves(applied);
    let mut conflicts = vec![];
    for (path, value) in &wanted {
        if at(current, path) == Some(value) {
            continue;
        }
        for (m, fields) in owners.iter() {
            if m == manager {
                continue;
            }
            if let Some(f) = fields.iter().find(|f| overlaps(f, path)) {
                conflicts.push(ApplyConflict {
                    manager: m.clone(),
                    field: f.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (m, fields) in owners.iter_mut() {
        if m != manager {
            fields.retain(|f| !wanted.keys().any(|p| overlaps(f, p)));
        }
    }
    let mut result = current.clone();
    if let Some(previous) = owners.get(manager) {
        for p in previous {
            let still_wanted = wanted.keys().any(|w| overlaps(w, p));
            let owned_elsewhere = owners
                .iter()
                .any(|(m, fs)| m != manager && fs.iter().any(|f| overlaps(f, p)));
            if !still_wanted && !owned_elsewhere {
                remove_at(&mut result, p);
            }
        }
    }
    merge(&mut result, &strip_nulls(applied));
    owners.retain(|_, f| !f.is_empty());
    owners.insert(manager.to_string(), wanted.into_keys().collect());
    Ok(result)
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// Record a non-apply write: the writer now owns every leaf it changed.
pub fn record_update(old: &Value, new: &Value, manager: &str, owners: &mut Managers) {
    let before = leaves(old);
    let after = leaves(new);
    let changed: Vec<String> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p.clone())
        .collect();
    let removed: Vec<&String> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    for fields in owners.values_mut() {
        fields.retain(|f| !changed.iter().any(|c| overlaps(f, c)) && !removed.contains(&f));
    }
    if !changed.is_empty() {
        owners
            .entry(manager.to_string())
            .or_default()
            .extend(changed);
    }
    owners.retain(|_, f| !f.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn other_managers_field_conflicts_unless_forced() {
        let mut owners = Managers::new();
        let a = apply(
            &json!({}),
            &json!({"spec": {"holder": "a"}}),
            "ma",
            false,
            &mut owners,
        )
        .unwrap();
        let err = apply(
            &a,
            &json!({"spec": {"holder": "b"}}),
            "mb",
            false,
            &mut owners,
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "ma");
        let b = apply(
            &a,
            &json!({"spec": {"holder": "b"}}),
            "mb",
            true,
            &mut owners,
        )
        .unwrap();
        assert_eq!(b["spec"]["holder"], "b");
    }

    #[test]
    fn fields_dropped_from_apply_are_removed() {
        let mut owners = Managers::new();
        let a = apply(
            &json!({}),
            &json!({"spec": {"x": 1, "y": 2}}),
            "m",
            false,
            &mut owners,
        )
        .unwrap();
        let b = apply(&a, &json!({"spec": {"x": 1}}), "m", false, &mut owners).unwrap();
        assert_eq!(b, json!({"spec": {"x": 1}}));
    }
}
