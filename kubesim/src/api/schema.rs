//! CRD `openAPIV3Schema` handling: structural check, validation, defaulting and pruning.

use serde_json::{Map, Value};

/// `(reason, field, message)` as in `details.causes`.
pub type Cause = (String, String, String);

fn cause(reason: &str, field: &str, msg: String) -> Cause {
    (reason.to_string(), field.to_string(), msg)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Check that a schema is structural. `path` names the schema's location in the CRD.
pub fn structural_errors(schema: &Value, path: &str) -> Vec<Cause> {
    let mut out = vec![];
    if schema["type"].as_str() != Some("object") {
        out.push(cause(
            "FieldValueRequired",
            &format!("{path}.type"),
            "Required value: must be object at the root".into(),
        ));
    }
    check_node(schema, path, &mut out, false);
    if let Some(meta) = schema["properties"]["metadata"].as_object() {
        for k in meta.keys() {
            if !matches!(k.as_str(), "type" | "properties" | "description") {
                out.push(cause(
                    "FieldValueForbidden",
                    &format!("{path}.properties[metadata].{k}"),
                    "Forbidden: must not be specified".into(),
                ));
            }
        }
        if let Some(props) = meta.get("properties").and_then(Value::as_object) {
            for k in props.keys() {
                if k != "name" && k != "generateName" {
                    out.push(cause(
                        "FieldValueForbidden",
                        &format!("{path}.properties[metadata].properties[{k}]"),
                        "Forbidden: must not be specified".into(),
                    ));
                }
            }
        }
    }
    out
}

fn check_node(s: &Value, path: &str, out: &mut Vec<Cause>, in_junctor: bool) {
    let Some(m) = s.as_object() else { return };
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    if in_junctor {
        for k in [
            "type",
            "default",
            "additionalProperties",
            "nullable",
            "description",
            "title",
        ] {
            if m.contains_key(k) {
                out.push(cause(
                    "FieldValueForbidden",
                    &format!("{path}.{k}"),
                    "Forbidden: must be empty to be structural".into(),
                ));
            }
        }
    } else if !m.contains_key("type")
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.push(cause(
            "FieldValueRequired",
            &format!("{path}.type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    if m.contains_key("properties") && m.get("additionalProperties").is_some_and(|a| a.is_object())
    {
        out.push(cause(
            "FieldValueForbidden",
            &format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_node(v, &format!("{path}.properties[{k}]"), out, in_junctor);
        }
    }
    if let Some(items) = m.get("items") {
        check_node(items, &format!("{path}.items"), out, in_junctor);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(ap, &format!("{path}.additionalProperties"), out, in_junctor);
    }
    for j in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in m
            .get(j)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_node(sub, &format!("{path}.{j}[{i}]"), out, true);
        }
    }
    if let Some(not) = m.get("not") {
        check_node(not, &format!("{path}.not"), out, true);
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

/// Validate a value against a structural schema, collecting causes.
pub fn validate(s: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(m) = s.as_object() else { return };
    if v.is_null() {
        if m.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(t) = m.get("type").and_then(Value::as_str) {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: \"null\": {path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = m.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        let have = type_name(v);
        let ok = have == t
            || (t == "number" && have == "integer")
            || (int_or_string && (have == "integer" || have == "string"));
        if !ok {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: \"{have}\": {path} in body must be of type {t}: \"{have}\""
                ),
            ));
            return;
        }
    }
    if let Some(e) = m.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let allowed: Vec<String> = e.iter().map(short).collect();
        out.push(cause(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                short(v),
                allowed.join(", ")
            ),
        ));
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = m.get("minimum").and_then(Value::as_f64) {
            let excl = m.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            if x < min || (excl && x == min) {
                let op = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {v}: {path} in body should be {op} {}",
                        m["minimum"]
                    ),
                ));
            }
        }
        if let Some(max) = m.get("maximum").and_then(Value::as_f64) {
            let excl = m.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if x > max || (excl && x == max) {
                let op = if excl {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {v}: {path} in body should be {op} {}",
                        m["maximum"]
                    ),
                ));
            }
        }
    }
    if let Some(st) = v.as_str() {
        let n = st.chars().count() as u64;
        if let Some(min) = m.get("minLength").and_then(Value::as_u64)
            && n < min
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: \"{st}\": {path} in body should be at least {min} chars long"
                ),
            ));
        }
        if let Some(max) = m.get("maxLength").and_then(Value::as_u64)
            && n > max
        {
            out.push(cause(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(p) = m.get("pattern").and_then(Value::as_str)
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(st)
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: \"{st}\": {path} in body should match '{p}'"),
            ));
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        if let Some(min) = m.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {n}: {path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = m.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            out.push(cause(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} items"),
            ));
        }
        if let Some(items) = m.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(items, x, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(o) = v.as_object() {
        for r in m
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !o.contains_key(r)
            {
                out.push(cause(
                    "FieldValueRequired",
                    &child(path, r),
                    "Required value".into(),
                ));
            }
        }
        let props = m.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
                continue;
            }
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                validate(ps, x, &child(path, k), out);
            } else if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
                validate(ap, x, &child(path, k), out);
            }
        }
    }
    let matches = |sub: &Value| {
        let mut tmp = vec![];
        validate(sub, v, path, &mut tmp);
        tmp.is_empty()
    };
    for sub in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(sub, v, path, out);
    }
    if let Some(any) = m.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(matches)
    {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must match at least one schema (anyOf)",
                short(v)
            ),
        ));
    }
    if let Some(one) = m.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|s| matches(s)).count();
        if n != 1 {
            out.push(cause("FieldValueInvalid", path, format!("Invalid value: {}: {path} in body must validate one and only one schema (oneOf)", short(v))));
        }
    }
    if let Some(not) = m.get("not")
        && matches(not)
    {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body should not validate the schema (not)",
                short(v)
            ),
        ));
    }
}

/// Fill in `default`s of missing properties, recursively.
pub fn apply_defaults(s: &Value, v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(props) = s["properties"].as_object() {
                for (k, ps) in props {
                    if !o.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        o.insert(k.clone(), d.clone());
                    }
                }
                for (k, x) in o.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        apply_defaults(ps, x);
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for x in o.values_mut() {
                    apply_defaults(ap, x);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for x in a {
                    apply_defaults(items, x);
                }
            }
        }
        _ => {}
    }
}

/// Remove fields the schema does not know; returns their paths (`spec.foo`).
pub fn prune(s: &Value, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let embedded = s
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    match v {
        Value::Object(o) => {
            let props = s["properties"].as_object();
            let ap = s
                .get("additionalProperties")
                .filter(|a| a.is_object() || a.as_bool() == Some(true));
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let p = child(path, &k);
                if let Some(ps) = props.and_then(|p| p.get(&k)) {
                    if let Some(x) = o.get_mut(&k) {
                        prune(ps, x, &p, false, unknown);
                    }
                } else if let Some(ap) = ap {
                    if let Some(x) = o.get_mut(&k) {
                        prune(ap, x, &p, false, unknown);
                    }
                } else if !preserve {
                    o.remove(&k);
                    unknown.push(p);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter_mut().enumerate() {
                    prune(items, x, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// An empty object map, for callers building values.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_keeps_preserved_and_reports_unknown() {
        let s = json!({"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"integer"},"free":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}}});
        let mut v = json!({"apiVersion":"x/v1","kind":"K","metadata":{"name":"n"},"spec":{"a":1,"b":2,"free":{"z":1}}});
        let mut unknown = vec![];
        prune(&s, &mut v, "", true, &mut unknown);
        assert_eq!(unknown, vec!["spec.b".to_string()]);
        assert_eq!(v["spec"], json!({"a":1,"free":{"z":1}}));
        assert_eq!(v["metadata"]["name"], "n");
    }
}
