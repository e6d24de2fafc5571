//! Reading a ReportJob from YAML, with strict field checking and errors that name the field.

use std::path::Path;

use serde_json::Value;

use super::validate::{FieldError, validate};
use super::{API_VERSION, KIND, ReportJob, ValidSpec, schema::crd};

/// Why a ReportJob file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The document breaks the schema or the rules of a ReportJob.
    #[error("{path}: invalid ReportJob:\n{}", list(.errors))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found, each naming its field.
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A ReportJob read from YAML: the resource as written and its validated spec.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The resource as written (metadata and spec).
    pub resource: ReportJob,
    /// Its spec, validated.
    pub spec: ValidSpec,
}

/// Reads and validates a ReportJob from a YAML file.
pub fn load_file(path: &Path) -> Result<ReportJob, LoadError> {
    load_valid_file(path).map(|loaded| loaded.resource)
}

/// Reads and validates a ReportJob from YAML text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str) -> Result<ReportJob, LoadError> {
    load_valid_str(text, origin).map(|loaded| loaded.resource)
}

/// Reads a ReportJob from a YAML file, keeping its validated spec.
pub fn load_valid_file(path: &Path) -> Result<Loaded, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    load_valid_str(&text, &shown)
}

/// Reads a ReportJob from YAML text, keeping its validated spec; `origin` names it in errors.
pub fn load_valid_str(text: &str, origin: &str) -> Result<Loaded, LoadError> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| LoadError::Yaml {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    load_value(value, origin, Fields::CheckUnknown)
}

/// Reads the ReportJob the controller hands its stage pods (`REPORTJOB_SPEC`): JSON it
/// serialized from a typed spec, so no field can be unknown, and the walk that would look
/// for one (it needs the CRD's schema, built from the types in every pod) is left out;
/// everything else is checked as [`load_valid_str`] checks it. Text that is not JSON is
/// read as YAML, with every check.
pub fn load_generated_str(text: &str, origin: &str) -> Result<Loaded, LoadError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => load_value(value, origin, Fields::Typed),
        Err(_) => load_valid_str(text, origin),
    }
}

/// Whether unknown fields are looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// As `kubectl --validate=strict` would.
    CheckUnknown,
    /// The text was serialized from a typed spec.
    Typed,
}

fn load_value(value: Value, origin: &str, fields: Fields) -> Result<Loaded, LoadError> {
    let invalid = |errors| LoadError::Invalid {
        path: origin.to_string(),
        errors,
    };
    let mut errors = Vec::new();
    check_kind(&value, &mut errors);
    let schema = match fields {
        Fields::CheckUnknown => Some(crd_schema()),
        Fields::Typed => None,
    };
    match (value.get("spec"), schema) {
        (None, _) => errors.push(FieldError::new("spec", "is required")),
        (Some(_), None) => {}
        (Some(spec), Some(Ok(schema))) => match schema.pointer("/properties/spec") {
            Some(spec_schema) => unknown_fields(spec, spec_schema, "spec", &mut errors),
            None => errors.push(FieldError::new(
                "spec",
                "cannot be checked: the CRD schema has no spec",
            )),
        },
        (Some(_), Some(Err(message))) => errors.push(FieldError::new(
            "spec",
            &format!("cannot be checked: {message}"),
        )),
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let resource: ReportJob = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        invalid(vec![FieldError::new(&field, &e.inner().to_string())])
    })?;
    let name_error = resource
        .metadata
        .name
        .as_deref()
        .and_then(|name| crate::names::check_reportjob_name(name).err());
    let spec = validate(&resource.spec).map_err(|mut errors| {
        if let Some(m) = &name_error {
            errors.insert(0, FieldError::new("metadata.name", m));
        }
        invalid(errors)
    })?;
    if let Some(m) = name_error {
        return Err(invalid(vec![FieldError::new("metadata.name", &m)]));
    }
    Ok(Loaded { resource, spec })
}

fn check_kind(value: &Value, errors: &mut Vec<FieldError>) {
    match value.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(FieldError::new(
            "apiVersion",
            &format!("is {other:?}, expected {API_VERSION:?}"),
        )),
        None => errors.push(FieldError::new("apiVersion", "is required")),
    }
    match value.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        Some(other) => errors.push(FieldError::new(
            "kind",
            &format!("is {other:?}, expected {KIND:?}"),
        )),
        None => errors.push(FieldError::new("kind", "is required")),
    }
}

/// The CRD's OpenAPI schema as JSON, built once.
fn crd_schema() -> Result<&'static Value, String> {
    static SCHEMA: std::sync::LazyLock<Result<Value, String>> = std::sync::LazyLock::new(|| {
        let crd = crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or("the CRD has no OpenAPI schema")?;
        serde_json::to_value(schema).map_err(|e| format!("the CRD schema is not JSON: {e}"))
    });
    SCHEMA.as_ref().map_err(Clone::clone)
}

/// Reports fields the schema does not know, as `kubectl --validate=strict` would.
fn unknown_fields(value: &Value, schema: &Value, at: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let path = format!("{at}.{key}");
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => unknown_fields(child, child_schema, &path, errors),
                    (None, Some(add)) if add.is_object() => {
                        unknown_fields(child, add, &path, errors)
                    }
                    (None, _) if props.is_some() => {
                        errors.push(FieldError::new(&path, "unknown field"))
                    }
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item, item_schema, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// A manifest (YAML text) with `spec.source.parameters` replaced by `values`, each keeping
/// the `type` its position had: what `--param` does. Returned as JSON text (which is YAML),
/// to be loaded and validated like any manifest.
pub fn with_parameters(text: &str, origin: &str, values: &[String]) -> Result<String, LoadError> {
    let mut doc: Value = serde_saphyr::from_str(text).map_err(|e| LoadError::Yaml {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    let old = doc
        .pointer("/spec/source/parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let params: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut p = serde_json::Map::new();
            p.insert("value".into(), Value::String(v.clone()));
            if let Some(t) = old.get(i).and_then(|o| o.get("type")) {
                p.insert("type".into(), t.clone());
            }
            Value::Object(p)
        })
        .collect();
    match doc
        .pointer_mut("/spec/source")
        .and_then(Value::as_object_mut)
    {
        Some(source) => {
            source.insert("parameters".into(), Value::Array(params));
        }
        None => {
            return Err(LoadError::Invalid {
                path: origin.to_string(),
                errors: vec![FieldError::new("spec.source", "is required")],
            });
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
        "metadata": {"name": "r"},
        "spec": {"source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                 "output": {"destination": {"pvc": {"claimName": "c", "path": "r.csv"}}}}}"#;

    #[test]
    fn the_controllers_json_is_validated_like_a_file_without_the_schema_walk() {
        let from_file = load_valid_str(MANIFEST, "file").unwrap();
        let generated = load_generated_str(MANIFEST, "REPORTJOB_SPEC").unwrap();
        assert_eq!(from_file.spec, generated.spec);
        // Still validated: a bad spec is refused the same way.
        let bad = MANIFEST.replace(r#""keyColumn": "id""#, r#""keyColumn": "1 bad""#);
        assert!(load_generated_str(&bad, "REPORTJOB_SPEC").is_err());
        let kind = MANIFEST.replace("ReportJob", "ReportSchedule");
        assert!(load_generated_str(&kind, "REPORTJOB_SPEC").is_err());
        // Unknown fields are the one thing only a user's file is checked for (a typed spec
        // serialized by the controller has none).
        let unknown = MANIFEST.replace(r#""table": "t""#, r#""table": "t", "extra": 1"#);
        assert!(load_valid_str(&unknown, "file").is_err());
        assert!(load_generated_str(&unknown, "REPORTJOB_SPEC").is_ok());
        // YAML (a person setting REPORTJOB_SPEC by hand) gets every check.
        let yaml = "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {name: r}\n\
                    spec: {source: {connectionSecretRef: {name: db}, table: t, keyColumn: id, extra: 1},\n\
                    output: {destination: {pvc: {claimName: c, path: r.csv}}}}\n";
        assert!(load_generated_str(yaml, "REPORTJOB_SPEC").is_err());
    }
}
