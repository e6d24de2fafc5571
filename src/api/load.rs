//! Reading a ReportJob from YAML, with strict field checking and errors that name the field.

use std::path::Path;

use serde_json::Value;

use super::validate::{FieldError, validate};
use super::{API_VERSION, KIND, ReportJob, schema::crd};

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

/// Reads and validates a ReportJob from a YAML file.
pub fn load_file(path: &Path) -> Result<ReportJob, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    load_str(&text, &shown)
}

/// Reads and validates a ReportJob from YAML text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str) -> Result<ReportJob, LoadError> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| LoadError::Yaml {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    let invalid = |errors| LoadError::Invalid {
        path: origin.to_string(),
        errors,
    };
    let mut errors = Vec::new();
    check_kind(&value, &mut errors);
    let schema = crd_schema();
    if let (Some(spec), Some(spec_schema)) = (value.get("spec"), schema.pointer("/properties/spec"))
    {
        unknown_fields(spec, spec_schema, "spec", &mut errors);
    } else if value.get("spec").is_none() {
        errors.push(FieldError::new("spec", "is required"));
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let rj: ReportJob = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        invalid(vec![FieldError::new(&field, &e.inner().to_string())])
    })?;
    let errors = validate(&rj.spec);
    if errors.is_empty() {
        Ok(rj)
    } else {
        Err(invalid(errors))
    }
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

fn crd_schema() -> Value {
    let crd = crd();
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
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
