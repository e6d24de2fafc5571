//! CEL `x-kubernetes-validations` of CRD schemas, evaluated on create and update as
//! apiextensions-apiserver's `schema/cel/validation.go` does.
//!
//! Rules run at the schema node that declares them, with `self` bound to the value there; transition
//! rules (those naming `oldSelf`) run only when the node has a correlated old value (update, same
//! property path, list-map items matched by their keys), unless `optionalOldSelf`, which binds
//! `oldSelf` to an optional. A false rule yields a cause at the node's path (plus `fieldPath`) of the
//! `reason`'s type, with the `messageExpression` result, else `message`, else `failed rule: <rule>`.
//! Errors of rules without `oldSelf` on a value equal to its old value are ratcheted to warnings
//! (CRDValidationRatcheting, on by default since 1.30). The environment is the CEL standard library
//! plus the Kubernetes string and list extensions and regex `find`/`findAll`.

use super::schema::Cause;
use cel::extractors::This;
use cel::objects::{Map, OptionalValue};
use cel::{Context, Env, ExecutionError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The strings extension is what k8s.io/apiserver/pkg/cel/library registers as `ext.Strings`
    // (charAt, indexOf, lastIndexOf, lowerAscii, upperAscii, replace, split, substring, trim, join);
    // the lists extension brings slice/flatten/distinct/reverse/sort.
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension");
    Arc::new(env)
});

/// What CEL validation found: causes (errors) and warnings (ratcheted errors).
#[derive(Debug, Default)]
pub struct Outcome {
    pub causes: Vec<Cause>,
    pub warnings: Vec<String>,
}

/// Evaluate every `x-kubernetes-validations` rule of `schema` over `new`; `old` on update.
pub fn validate(schema: &Value, new: &Value, old: Option<&Value>) -> Outcome {
    let mut out = Outcome::default();
    walk(schema, new, old, "", false, &mut out);
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent_equal`: the nearest correlated ancestor equals its old value (ratcheting).
fn walk(
    s: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    parent_equal: bool,
    out: &mut Outcome,
) {
    // Only non-null values are validated; a rule checks a nullable child from its parent.
    if v.is_null() || !s.is_object() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    let equal = match old {
        Some(o) => o == v,
        None => parent_equal,
    };
    if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            eval_rule(rule, s, v, old, path, equal, out);
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(sub, v, old, path, parent_equal, out);
    }
    match v {
        Value::Object(o) => {
            // Maps correlate unless atomic (`MapIsCorrelatable`).
            let correlatable =
                s.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic");
            let old_map = old.and_then(Value::as_object).filter(|_| correlatable);
            let props = s.get("properties").and_then(Value::as_object);
            let ap = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, x) in o {
                let sub = props.and_then(|p| p.get(k)).or(ap);
                if let Some(sub) = sub {
                    let ox = old_map.and_then(|m| m.get(k));
                    walk(sub, x, ox, &child(path, k), equal, out);
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = s.get("items") else { return };
            // Only list-type=map items correlate, by their map keys.
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let is_map = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            let old_items = old
                .and_then(Value::as_array)
                .filter(|_| is_map && !keys.is_empty());
            for (i, x) in a.iter().enumerate() {
                let ox = old_items.and_then(|olds| {
                    olds.iter()
                        .find(|o| keys.iter().all(|k| o.get(*k) == x.get(*k)))
                });
                walk(items, x, ox, &format!("{path}[{i}]"), equal, out);
            }
        }
        _ => {}
    }
}

fn type_of(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("object")
}

/// The rule's text for error messages (`ruleErrorString`): its message, else its rule.
fn rule_error_string(rule: &Value) -> String {
    match rule.get("message").and_then(Value::as_str).map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => rule["rule"].as_str().unwrap_or_default().trim().to_string(),
    }
}

fn eval_rule(
    rule: &Value,
    s: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    equal: bool,
    out: &mut Outcome,
) {
    let text = rule["rule"].as_str().unwrap_or_default();
    let ty = type_of(s);
    let field = if path.is_empty() { "<root>" } else { path };
    let program = match ENV.compile(text) {
        Ok(p) => p,
        Err(e) => {
            out.causes
                .push(invalid(field, ty, format!("rule compile error: {e}")));
            return;
        }
    };
    let uses_old = program.references().has_variable("oldSelf");
    let optional_old = rule["optionalOldSelf"].as_bool() == Some(true);
    if uses_old && old.is_none() && !optional_old {
        // Transition rules are evaluated only if there is a comparable existing value.
        return;
    }
    let ctx = context(s, v, old, uses_old, optional_old);
    let detail = match program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => return,
        Ok(cel::Value::Bool(false)) => None,
        Ok(other) => Some(format!(
            "{other:?} is not a bool evaluating rule: {}",
            rule_error_string(rule)
        )),
        Err(e) => Some(format!(
            "{} evaluating rule: {}",
            error_text(&e),
            rule_error_string(rule)
        )),
    };
    if let Some(d) = detail {
        // Evaluation errors are reported at the node, never ratcheted away.
        out.causes.push(invalid(field, ty, d));
        return;
    }
    let mut at = path.to_string();
    if let Some(fp) = rule["fieldPath"].as_str().filter(|f| !f.is_empty()) {
        at = join_field_path(&at, fp);
    }
    if at.is_empty() {
        at = "<root>".into();
    }
    // The message context binds oldSelf as the rule's does not when optional: upstream evaluates
    // messageExpression with the non-optional activation.
    let msg = rule["messageExpression"]
        .as_str()
        .filter(|m| !m.is_empty())
        .and_then(|m| {
            let p = ENV.compile(m).ok()?;
            let c = context(s, v, old, p.references().has_variable("oldSelf"), false);
            match p.execute(&c).ok()? {
                cel::Value::String(st) => {
                    let t = st.trim();
                    (!t.is_empty() && !t.contains('\n')).then(|| t.to_string())
                }
                _ => None,
            }
        })
        .unwrap_or_else(
            || match rule.get("message").and_then(Value::as_str).map(str::trim) {
                Some(m) if !m.is_empty() => m.to_string(),
                _ => format!("failed rule: {}", rule_error_string(rule)),
            },
        );
    let cause = match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => (
            "FieldValueForbidden".to_string(),
            at,
            format!("Forbidden: {msg}"),
        ),
        Some("FieldValueRequired") => (
            "FieldValueRequired".to_string(),
            at,
            format!("Required value: {msg}"),
        ),
        Some("FieldValueDuplicate") => (
            "FieldValueDuplicate".to_string(),
            at,
            format!("Duplicate value: \"{ty}\""),
        ),
        _ => invalid(&at, ty, msg),
    };
    if !uses_old && equal {
        out.warnings.push(format!("{}: {}", cause.1, cause.2));
    } else {
        out.causes.push(cause);
    }
}

fn invalid(field: &str, ty: &str, detail: String) -> Cause {
    (
        "FieldValueInvalid".to_string(),
        field.to_string(),
        format!("Invalid value: \"{ty}\": {detail}"),
    )
}

fn error_text(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        other => other.to_string(),
    }
}

/// `fieldPath` (`.a.b`, `.a['b']`, `['a']`) appended to `base` as a field path.
fn join_field_path(base: &str, fp: &str) -> String {
    let mut out = base.to_string();
    let mut rest = fp;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out = child(&out, &r[..end]);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            out = child(&out, &r[..end]);
            rest = r.get(end + 2..).unwrap_or("");
        } else {
            out = child(&out, rest);
            break;
        }
    }
    out
}

fn context(
    s: &Value,
    v: &Value,
    old: Option<&Value>,
    uses_old: bool,
    optional_old: bool,
) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    ctx.add_variable_from_value("self", to_cel(v, s));
    if uses_old {
        let o = old.map(|o| to_cel(o, s));
        let bound = if optional_old {
            let opt = match o {
                Some(x) => OptionalValue::of(x),
                None => OptionalValue::none(),
            };
            cel::Value::Opaque(Arc::new(opt))
        } else {
            o.unwrap_or(cel::Value::Null)
        };
        ctx.add_variable_from_value("oldSelf", bound);
    }
    register_k8s_library(&mut ctx);
    ctx
}

/// Kubernetes list and regex library functions the extensions lack
/// (k8s.io/apiserver/pkg/cel/library/lists.go, regex.go).
fn register_k8s_library(ctx: &mut Context<'static, 'static>) {
    let _ = ctx.add_function("isSorted", |This(list): This<Arc<Vec<cel::Value>>>| {
        list.windows(2)
            .all(|w| w[0].partial_cmp(&w[1]).is_some_and(|o| o.is_le()))
    });
    let _ = ctx.add_function(
        "sum",
        |This(list): This<Arc<Vec<cel::Value>>>| -> cel::Value {
            if list.iter().any(|x| matches!(x, cel::Value::Float(_))) {
                cel::Value::Float(list.iter().map(num).sum())
            } else {
                cel::Value::Int(list.iter().map(|x| num(x) as i64).sum())
            }
        },
    );
    let _ = ctx.add_function(
        "find",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<cel::Value, ExecutionError> {
            let r =
                regex::Regex::new(&re).map_err(|e| ExecutionError::function_error("find", e))?;
            Ok(r.find(&s)
                .map(|m| m.as_str())
                .unwrap_or("")
                .to_string()
                .into())
        },
    );
    let _ = ctx.add_function(
        "findAll",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<cel::Value, ExecutionError> {
            let r =
                regex::Regex::new(&re).map_err(|e| ExecutionError::function_error("findAll", e))?;
            let all: Vec<cel::Value> = r
                .find_iter(&s)
                .map(|m| m.as_str().to_string().into())
                .collect();
            Ok(cel::Value::List(Arc::new(all)))
        },
    );
}

fn num(x: &cel::Value) -> f64 {
    match x {
        cel::Value::Int(i) => *i as f64,
        cel::Value::UInt(u) => *u as f64,
        cel::Value::Float(f) => *f,
        _ => 0.0,
    }
}

/// JSON to a CEL value, typed by the schema as `UnstructuredToVal` does (a `number` is a double).
fn to_cel(v: &Value, s: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if type_of(s) == "number" {
                cel::Value::Float(n.as_f64().unwrap_or_default())
            } else if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(st) => cel::Value::String(Arc::new(st.clone())),
        Value::Array(a) => {
            let items = s.get("items").unwrap_or(&Value::Null);
            cel::Value::List(Arc::new(a.iter().map(|x| to_cel(x, items)).collect()))
        }
        Value::Object(o) => {
            let props = s.get("properties");
            let ap = s.get("additionalProperties").unwrap_or(&Value::Null);
            let m: HashMap<String, cel::Value> = o
                .iter()
                .map(|(k, x)| {
                    let sub = props.and_then(|p| p.get(k)).unwrap_or(ap);
                    (k.clone(), to_cel(x, sub))
                })
                .collect();
            cel::Value::Map(Map::from(m))
        }
    }
}

/// Compile every rule of a CRD version schema, as the CRD's own validation does; causes name the
/// rule (`...x-kubernetes-validations[0].rule`).
pub fn crd_rule_errors(s: &Value, path: &str) -> Vec<Cause> {
    let mut out = vec![];
    check_rules(s, path, &mut out);
    out
}

fn check_rules(s: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(m) = s.as_object() else { return };
    for (i, rule) in m
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        let text = rule["rule"].as_str().unwrap_or_default();
        match ENV.compile(text) {
            Err(e) => out.push((
                "FieldValueInvalid".into(),
                format!("{at}.rule"),
                format!(
                    "Invalid value: {}: compilation failed: {e}",
                    Value::from(text)
                ),
            )),
            Ok(p) => {
                if rule["optionalOldSelf"].as_bool() == Some(true)
                    && !p.references().has_variable("oldSelf")
                {
                    out.push((
                        "FieldValueInvalid".into(),
                        format!("{at}.optionalOldSelf"),
                        "Invalid value: true: may not be set if oldSelf is not used in rule".into(),
                    ));
                }
            }
        }
        if let Some(me) = rule["messageExpression"].as_str().filter(|m| !m.is_empty())
            && let Err(e) = ENV.compile(me)
        {
            out.push((
                "FieldValueInvalid".into(),
                format!("{at}.messageExpression"),
                format!(
                    "Invalid value: {}: compilation failed: {e}",
                    Value::from(me)
                ),
            ));
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_rules(v, &format!("{path}.properties[{k}]"), out);
        }
    }
    if let Some(items) = m.get("items") {
        check_rules(items, &format!("{path}.items"), out);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        check_rules(ap, &format!("{path}.additionalProperties"), out);
    }
}

#[cfg(test)]
#[path = "cel_tests.rs"]
mod tests;

/// Admission hook: run the rules of `schema` over `obj` (on update against `old`) unless the
/// schema validation already found a blocking error (strategy.go `hasBlockingErr`), adding causes
/// and returning the ratcheting warnings. A `/status` write is checked as the object it will make:
/// the old object with the new status (the status strategy's `PrepareForUpdate`).
pub fn admit(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
    status: bool,
    causes: &mut Vec<Cause>,
) -> Vec<String> {
    if !has_rules(schema) {
        return vec![];
    }
    let blocking = causes.iter().any(|(reason, _, msg)| {
        matches!(
            reason.as_str(),
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        ) || (reason == "FieldValueInvalid" && msg.contains(" in body must be of type "))
    });
    if blocking {
        causes.push((
            "FieldValueInvalid".into(),
            "<nil>".into(),
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        ));
        return vec![];
    }
    let effective;
    let new = match old {
        Some(o) if status => {
            let mut e = o.clone();
            e["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            effective = e;
            &effective
        }
        _ => obj,
    };
    let out = validate(schema, new, old);
    causes.extend(out.causes);
    out.warnings
}

fn has_rules(s: &Value) -> bool {
    let Some(m) = s.as_object() else { return false };
    m.contains_key("x-kubernetes-validations")
        || m.get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.values().any(has_rules))
        || ["items", "additionalProperties"]
            .iter()
            .any(|k| m.get(*k).is_some_and(has_rules))
        || m.get("allOf")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(has_rules))
}
