//! `?dryRun=All` on writes: the request runs through the same admission and store code against a
//! private copy of the store, so it is validated, defaulted and answered exactly like a real one,
//! while the real store, its resourceVersion and every watch stay untouched.
//!
//! Checked against upstream `apiserver/pkg/registry/generic/registry/dryrun.go` (`DryRunnableStorage`:
//! a dry-run create answers the object without a resourceVersion, a dry-run update answers the
//! updated object with the resourceVersion it was read with) and
//! `apimachinery/pkg/apis/meta/v1/validation/validation.go` (`ValidateDryRun`, reported by the
//! create/update/patch/delete handlers as 422 Invalid on `CreateOptions` etc.).

use super::error::{ApiError, ApiResult};
use super::server::App;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether the request is a dry run (`?dryRun=`, or for DELETE also `dryRun` in the DeleteOptions body,
/// where kubectl puts it); an unsupported value is upstream's 422 on the verb's options kind.
pub fn requested(verb: &str, q: &HashMap<String, String>, body: &[u8]) -> ApiResult<bool> {
    let from_body = || {
        let opts = if body.starts_with(super::protobuf::MAGIC) {
            super::protobuf::decode_body(body).ok()?
        } else {
            serde_json::from_slice::<Value>(body).ok()?
        };
        let values: Vec<&str> = opts["dryRun"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let v = match q.get("dryRun").filter(|d| !d.is_empty()) {
        Some(v) => v.clone(),
        None if matches!(verb, "delete" | "deletecollection") => match from_body() {
            Some(v) => v,
            None => return Ok(false),
        },
        None => return Ok(false),
    };
    let options = match verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        "patch" => "PatchOptions",
        "delete" | "deletecollection" => "DeleteOptions",
        _ => return Ok(false),
    };
    if v.split(',').all(|x| x == "All") {
        return Ok(true);
    }
    let v = v
        .split(',')
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::invalid(
        &format!("{options}.meta.k8s.io"),
        "meta.k8s.io",
        options,
        "",
        vec![(
            "FieldValueNotSupported".into(),
            "dryRun".into(),
            format!("Unsupported value: []string{{{v}}}: supported values: \"All\""),
        )],
    ))
}

/// A server over a private copy of the store (history and watchers excluded) and a throwaway
/// data directory, so admission side effects (PVC directories) do not reach the real one either.
pub fn scratch(app: &App) -> ApiResult<(Arc<App>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(format!("dry run: {e}")))?;
    let store = app.store.fork(dir.path().to_path_buf());
    Ok((
        Arc::new(App {
            store,
            faults: app.faults.clone(),
            data_dir: dir.path().to_path_buf(),
            addr: app.addr.clone(),
            secure: app.secure,
            requests: app.requests.clone(),
        }),
        dir,
    ))
}

/// The response object as upstream's dry-run storage returns it: nothing was stored, so a created
/// object has no resourceVersion and an updated one keeps the version it was read with (`before`,
/// the stored object before the request) or, for a PUT, the version the client sent (`sent`).
pub fn fix_response(
    verb: &str,
    code: u16,
    obj: &mut Value,
    before: Option<&Value>,
    sent: Option<&Value>,
) {
    if obj["kind"] == json!("Status") || !obj["metadata"].is_object() {
        return;
    }
    let rv = match (verb, code) {
        (_, 201) => None,
        ("update", _) => sent
            .and_then(|s| s["metadata"]["resourceVersion"].as_str())
            .filter(|r| !r.is_empty())
            .map(String::from),
        _ => before
            .and_then(|b| b["metadata"]["resourceVersion"].as_str())
            .map(String::from),
    };
    match (rv, obj["metadata"].as_object_mut()) {
        (Some(rv), Some(m)) => {
            m.insert("resourceVersion".into(), json!(rv));
        }
        (None, Some(m)) => {
            m.remove("resourceVersion");
        }
        _ => {}
    }
}

/// Rewrite a dry-run write's JSON response with [`fix_response`]; headers (warnings) are kept.
pub async fn finish(
    resp: axum::response::Response,
    verb: &str,
    before: Option<&Value>,
    body: &[u8],
) -> axum::response::Response {
    let (mut parts, b) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(b, usize::MAX).await else {
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    };
    let Ok(mut obj) = serde_json::from_slice::<Value>(&bytes) else {
        return axum::response::Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let sent = if verb == "update" {
        sent_object(body)
    } else {
        None
    };
    fix_response(verb, parts.status.as_u16(), &mut obj, before, sent.as_ref());
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(obj.to_string()))
}

/// The object a PUT sent, in whichever encoding it came.
fn sent_object(body: &[u8]) -> Option<Value> {
    if body.starts_with(super::protobuf::MAGIC) {
        return super::protobuf::decode_body(body).ok();
    }
    serde_json::from_slice(body).ok().or_else(|| {
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| serde_saphyr::from_str(s).ok())
    })
}
