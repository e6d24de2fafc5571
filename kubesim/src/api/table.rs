//! `meta.k8s.io/v1` Table and PartialObjectMetadata renderings of objects.

use super::meta::age;
use super::resources::ResourceInfo;
use serde_json::{Value, json};

/// The metadata-only form of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// Evaluate a simple JSONPath (`.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`) as printer columns use.
pub fn jsonpath(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = vec![obj.clone()];
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(field).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = filter.split_once("==")?;
                let want = v.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .iter()
                    .flat_map(|x| x.as_array().cloned().unwrap_or_default())
                    .filter(|e| {
                        e[k.trim()].as_str() == Some(want)
                            || e[k.trim()].as_i64().map(|n| n.to_string()).as_deref() == Some(want)
                    })
                    .collect();
            } else if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|x| x.as_array().cloned().unwrap_or_default())
                    .collect();
            } else {
                let i: usize = inner.parse().ok()?;
                cur = cur.iter().filter_map(|x| x.get(i).cloned()).collect();
            }
        } else {
            return None;
        }
    }
    match cur.len() {
        0 => None,
        1 => cur.pop(),
        _ => Some(Value::String(
            cur.iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
}

fn col(name: &str, ty: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
}

fn cell(obj: &Value, path: &str, ty: &str) -> Value {
    match jsonpath(obj, path) {
        None => Value::Null,
        Some(v) if ty == "date" => v.as_str().map(|s| json!(age(s))).unwrap_or(Value::Null),
        Some(v) => v,
    }
}

/// A Table of objects: upstream's printer for built-in kinds; NAME, the CRD's printer columns (or AGE) otherwise.
pub fn table<V: std::borrow::Borrow<Value>>(
    ri: &ResourceInfo,
    objs: &[V],
    rv: &str,
    continue_token: Option<&str>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(p) = super::printers::builtin(ri) {
        let rows: Vec<Value> = objs
            .iter()
            .map(|o| o.borrow())
            .map(|o| json!({"cells": (p.cells)(o), "object": partial(o)}))
            .collect();
        return json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": p.columns, "rows": rows});
    }
    let mut defs = vec![col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    )];
    let mut cols: Vec<(String, String)> = vec![];
    let mut add_age = true;
    if !ri.printer_columns.is_empty() {
        add_age = false;
        for pc in &ri.printer_columns {
            let ty = pc["type"].as_str().unwrap_or("string");
            defs.push(col(
                pc["name"].as_str().unwrap_or_default(),
                ty,
                pc["format"].as_str().unwrap_or_default(),
                pc["description"].as_str().unwrap_or_default(),
                pc["priority"].as_i64().unwrap_or(0),
            ));
            cols.push((
                pc["jsonPath"].as_str().unwrap_or_default().to_string(),
                ty.to_string(),
            ));
        }
    }
    if add_age {
        defs.push(col("Age", "date", "", "CreationTimestamp", 0));
        cols.push((".metadata.creationTimestamp".into(), "date".into()));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| o.borrow())
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|(p, ty)| cell(o, p, ty)));
            json!({"cells": cells, "object": partial(o)})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_jsonpath_picks_condition_status() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Complete\")].status"),
            Some(json!("True"))
        );
        assert_eq!(jsonpath(&o, ".status.conditions[0].type"), Some(json!("A")));
        assert_eq!(jsonpath(&o, ".status.phase"), None);
    }
}
