//! The `/scale` subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets and custom resources
//! whose CRD declares `subresources.scale`, as upstream's `pkg/registry/apps/deployment/storage`
//! `ScaleREST` and `apiextensions-apiserver/pkg/registry/customresource` `ScaleREST`: GET renders the
//! object's replicas (spec and status) and selector; PUT and PATCH (applied to the Scale) set only the
//! spec replicas, through the object's own update (so generation, validation and resourceVersion
//! preconditions are the object's).

use super::error::{ApiError, ApiResult};
use super::resources::{ResourceInfo, ScalePaths};
use serde_json::{Value, json};

/// The value at a `.a.b` path.
fn at<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .fold(obj, |v, k| &v[k])
}

/// Set the value at a `.a.b` path, making objects on the way.
fn set_at(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    for k in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[k];
    }
    *cur = value;
}

/// A `metav1.LabelSelector` as the string `metav1.FormatLabelSelector` writes.
pub fn format_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.sort();
    parts.join(",")
}

/// The Scale of `obj`.
pub fn scale_of(ri: &ResourceInfo, paths: &ScalePaths, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut status = json!({"replicas": at(obj, &paths.status_replicas).as_i64().unwrap_or(0)});
    let selector = match &paths.label_selector {
        Some(p) => at(obj, p).as_str().map(String::from),
        None if ri.builtin => Some(format_selector(&obj["spec"]["selector"])),
        None => None,
    };
    if let Some(s) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": at(obj, &paths.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// The object with the replicas of a new Scale written to it, or the Scale's validation error.
pub fn apply_scale(paths: &ScalePaths, name: &str, obj: &Value, scale: &Value) -> ApiResult<Value> {
    let replicas = &scale["spec"]["replicas"];
    let n = match replicas {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {v} is not an integer"
            ))
        })?,
    };
    if n < 0 {
        return Err(ApiError::invalid(
            "Scale.autoscaling",
            "autoscaling",
            "Scale",
            name,
            vec![(
                "FieldValueInvalid".into(),
                "spec.replicas".into(),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            )],
        ));
    }
    let mut out = obj.clone();
    set_at(&mut out, &paths.spec_replicas, json!(n));
    // A Scale that names a resourceVersion makes it the update's precondition.
    match scale["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => out["metadata"]["resourceVersion"] = json!(rv),
        _ => {
            if let Some(m) = out["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_and_writes_the_declared_paths() {
        let paths = ScalePaths {
            spec_replicas: ".spec.size".into(),
            status_replicas: ".status.ready".into(),
            label_selector: Some(".status.selector".into()),
        };
        let ri = crate::api::resources::builtins()
            .into_iter()
            .find(|r| r.plural == "deployments")
            .expect("deployments");
        let obj = json!({"metadata": {"name": "w", "namespace": "n", "resourceVersion": "7"},
            "spec": {"size": 3}, "status": {"ready": 2, "selector": "app=w"}});
        let s = scale_of(&ri, &paths, &obj);
        assert_eq!(s["spec"], json!({"replicas": 3}));
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=w"}));
        let out = apply_scale(&paths, "w", &obj, &json!({"spec": {"replicas": 5}})).expect("ok");
        assert_eq!(out["spec"]["size"], json!(5));
        assert!(out["metadata"]["resourceVersion"].is_null());
        let e =
            apply_scale(&paths, "w", &obj, &json!({"spec": {"replicas": -1}})).expect_err("neg");
        assert_eq!(
            e.message,
            "Scale.autoscaling \"w\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            format_selector(&json!({"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}]})),
            "a=1,b=2,t in (x,y)"
        );
    }
}
