//! Patch application: JSON merge (RFC 7386), JSON patch (RFC 6902) and strategic merge.

use serde_json::{Map, Value};

/// RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("missing path element {t:?}"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("invalid index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("index {i} out of range"))?
            }
            _ => return Err(format!("cannot traverse into {t:?}")),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let toks = tokens(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid index {last:?}"))?;
                if i > a.len() {
                    return Err(format!("index {i} out of range"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(format!("cannot add at {path:?}")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = tokens(path)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err("cannot remove the root".into());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}: missing value")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove at {path:?}")),
    }
}

/// Why a JSON patch failed: a failed `test` or a malformed/inapplicable operation.
#[derive(Debug)]
pub enum JsonPatchError {
    TestFailed(String),
    Invalid(String),
}

/// RFC 6902 JSON patch. A `test` of `null` passes on a missing key, as in the Go implementation.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    use JsonPatchError::*;
    let ops = ops
        .as_array()
        .ok_or_else(|| Invalid("json patch must be an array".into()))?;
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| Invalid("missing path".into()))?;
        let value = || op.get("value").cloned().unwrap_or(Value::Null);
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(doc, path, value()).map_err(Invalid)?,
            "remove" => {
                remove(doc, path).map_err(Invalid)?;
            }
            "replace" => {
                let toks = tokens(path).map_err(Invalid)?;
                if get(doc, &toks).is_none() {
                    return Err(Invalid(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    )));
                }
                remove(doc, path).map_err(Invalid)?;
                add(doc, path, value()).map_err(Invalid)?;
            }
            "move" | "copy" => {
                let from = op["from"]
                    .as_str()
                    .ok_or_else(|| Invalid("missing from".into()))?;
                let v = get(doc, &tokens(from).map_err(Invalid)?)
                    .cloned()
                    .ok_or_else(|| Invalid(format!("missing from path {from}")))?;
                if op["op"] == "move" {
                    remove(doc, from).map_err(Invalid)?;
                }
                add(doc, path, v).map_err(Invalid)?;
            }
            "test" => {
                let toks = tokens(path).map_err(Invalid)?;
                let want = value();
                let have = get(doc, &toks).cloned().unwrap_or(Value::Null);
                if have != want {
                    return Err(TestFailed(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => return Err(Invalid(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

/// Merge key of a list field in built-in types, as the Go struct tags declare.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses"
        | "secrets"
        | "resourceClaims" => "name",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "tolerations" => "key",
        _ => return None,
    })
}

/// Primitive lists merged as sets.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge patch for built-in kinds: lists with a merge key are merged element-wise,
/// `$patch: delete|replace` and `$deleteFromPrimitiveList` are honoured, `$setElementOrder` and
/// `$retainKeys` directives are accepted.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut v = patch.clone();
        if let Value::Object(m) = &mut v {
            m.remove("$patch");
        }
        *target = v;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Value::Array(del)) = (t.get_mut(field), v) {
                have.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(have)), Value::Array(items)) => {
                if let Some(key) = merge_key(k) {
                    for item in items {
                        let id = &item[key];
                        let pos = have.iter().position(|h| &h[key] == id);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                have.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic(&mut have[i], item),
                            (None, false) => {
                                let mut fresh = Value::Object(Map::new());
                                strategic(&mut fresh, item);
                                have.push(fresh);
                            }
                        }
                    }
                } else if is_set_list(k) {
                    for item in items {
                        if !have.contains(item) {
                            have.push(item.clone());
                        }
                    }
                } else {
                    *have = items.clone();
                }
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic(existing, v),
            _ => {
                let mut fresh = Value::Null;
                if v.is_object() {
                    strategic(&mut fresh, v);
                } else {
                    fresh = v.clone();
                }
                t.insert(k.clone(), fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_of_null_passes_on_missing_key() {
        let mut d = json!({"metadata": {}});
        json_patch(
            &mut d,
            &json!([{"op":"test","path":"/metadata/finalizers","value":null},{"op":"add","path":"/metadata/finalizers","value":["a"]}]),
        )
        .unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["a"]));
        assert!(matches!(
            json_patch(
                &mut d,
                &json!([{"op":"test","path":"/metadata/finalizers","value":null}])
            ),
            Err(JsonPatchError::TestFailed(_))
        ));
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut d = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic(
            &mut d,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        );
        assert_eq!(
            d["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}])
        );
    }
}
