//! The `Status` bodies the proxy answers injected failures with, shaped as the API server's
//! (`apimachinery/pkg/api/errors/errors.go`: reason from the code, the real message where a
//! client may read it, `details` naming the resource), so clients take the same paths as
//! with a real failure.

use serde_json::{Map, Value, json};

use crate::request_info::RequestInfo;

/// Said in messages that have free text upstream, so logs show where a failure came from.
const INJECTED: &str = "injected by faultproxy";

/// A failure `Status` for `code` on the request `info`.
pub fn failure(code: u16, info: &RequestInfo, retry_after_seconds: Option<u32>) -> Value {
    let qualified = info.qualified_resource();
    let named = |what: &str| {
        if info.name.is_empty() {
            format!("{qualified} {what}")
        } else {
            format!("{qualified} {:?} {what}", info.name)
        }
    };
    let (reason, message, resource_details) = match code {
        400 => ("BadRequest", format!("bad request ({INJECTED})"), false),
        401 => ("Unauthorized", "Unauthorized".to_string(), false),
        403 => (
            "Forbidden",
            named(&format!("is forbidden: {INJECTED}")),
            true,
        ),
        404 if info.name.is_empty() => (
            "NotFound",
            "the server could not find the requested resource".to_string(),
            false,
        ),
        404 => ("NotFound", named("not found"), true),
        405 => (
            "MethodNotAllowed",
            format!(
                "{} is not supported on resources of kind {qualified:?}",
                info.verb
            ),
            true,
        ),
        406 => (
            "NotAcceptable",
            format!("not acceptable ({INJECTED})"),
            false,
        ),
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} {:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                info.name
            ),
            true,
        ),
        410 => (
            "Expired",
            too_old_message(info.resource_version.as_deref()),
            false,
        ),
        413 => (
            "RequestEntityTooLarge",
            format!("Request entity too large: {INJECTED}"),
            false,
        ),
        415 => (
            "UnsupportedMediaType",
            format!("unsupported media type ({INJECTED})"),
            false,
        ),
        422 => ("Invalid", named(&format!("is invalid: {INJECTED}")), true),
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
            false,
        ),
        500 => (
            "InternalError",
            format!("Internal error occurred: {INJECTED}"),
            false,
        ),
        503 => (
            "ServiceUnavailable",
            format!("the server is currently unable to handle the request ({INJECTED})"),
            false,
        ),
        504 => (
            "Timeout",
            format!("Timeout: request did not complete within the allotted timeout ({INJECTED})"),
            false,
        ),
        c if c >= 500 => (
            "InternalError",
            format!(
                "an error on the server ({INJECTED}) has prevented the request from succeeding"
            ),
            false,
        ),
        // StatusReasonUnknown is the empty reason, which the API server omits.
        _ => (
            "",
            format!("the server responded with the status code {code} ({INJECTED})"),
            false,
        ),
    };

    let mut details = Map::new();
    if resource_details && info.is_resource_request {
        if !info.name.is_empty() {
            details.insert("name".into(), json!(info.name));
        }
        if !info.group.is_empty() {
            details.insert("group".into(), json!(info.group));
        }
        details.insert("kind".into(), json!(info.plural()));
    }
    if code == 500 {
        details.insert("causes".into(), json!([{ "message": INJECTED }]));
    }
    if let Some(seconds) = retry_after_seconds {
        details.insert("retryAfterSeconds".into(), json!(seconds));
    }

    let mut status = Map::new();
    status.insert("kind".into(), json!("Status"));
    status.insert("apiVersion".into(), json!("v1"));
    status.insert("metadata".into(), json!({}));
    status.insert("status".into(), json!("Failure"));
    status.insert("message".into(), json!(message));
    if !reason.is_empty() {
        status.insert("reason".into(), json!(reason));
    }
    if !details.is_empty() {
        status.insert("details".into(), Value::Object(details));
    }
    status.insert("code".into(), json!(code));
    Value::Object(status)
}

/// The in-stream event a watch gets when its resourceVersion is older than the store's
/// history: `{"type":"ERROR","object":<410 Expired Status>}` and a newline, as the API
/// server's JSON watch encoder writes it.
pub fn expired_watch_event(resource_version: Option<&str>) -> Vec<u8> {
    let event = json!({
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": too_old_message(resource_version),
            "reason": "Expired",
            "code": 410,
        }
    });
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The cacher's message for a watch or list from a compacted resourceVersion.
fn too_old_message(resource_version: Option<&str>) -> String {
    match resource_version.and_then(|rv| rv.parse::<u64>().ok()) {
        Some(rv) => format!("too old resource version: {rv} ({})", rv.saturating_add(1)),
        None => format!("too old resource version ({INJECTED})"),
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::request_info::resolve;

    #[test]
    fn conflict_reads_like_the_real_one() {
        let info = resolve(
            &Method::PATCH,
            "/apis/reporting.dev/v1alpha1/namespaces/t/reportjobs/orders/status",
            None,
        );
        let s = failure(409, &info, None);
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["code"], 409);
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on reportjobs.reporting.dev \"orders\": the object \
             has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(
            s["details"],
            json!({"name": "orders", "group": "reporting.dev", "kind": "reportjobs"})
        );
    }

    #[test]
    fn reasons_by_code() {
        let info = resolve(&Method::GET, "/api/v1/namespaces/d/configmaps/c", None);
        for (code, reason) in [
            (400, "BadRequest"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (409, "Conflict"),
            (410, "Expired"),
            (422, "Invalid"),
            (429, "TooManyRequests"),
            (500, "InternalError"),
            (502, "InternalError"),
            (503, "ServiceUnavailable"),
            (504, "Timeout"),
        ] {
            let s = failure(code, &info, None);
            assert_eq!(s["reason"], reason, "{code}");
            assert_eq!(s["kind"], "Status");
            assert_eq!(s["status"], "Failure");
        }
        assert_eq!(
            failure(404, &info, None)["message"],
            "configmaps \"c\" not found"
        );
        assert!(failure(418, &info, None).get("reason").is_none());
        assert_eq!(
            failure(429, &info, Some(3))["details"]["retryAfterSeconds"],
            3
        );
    }

    #[test]
    fn expired_event_is_one_line() {
        let line = expired_watch_event(Some("17"));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Expired");
        assert_eq!(v["object"]["message"], "too old resource version: 17 (18)");
    }
}
