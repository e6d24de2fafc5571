//! The HTTP layer: routing of Kubernetes API paths to store operations.

use super::admission::FieldValidation;
use super::discovery;
use super::error::{ApiError, ApiResult};
use super::faults::FaultRules;
use super::rbac;
use super::resources::ResourceInfo;
use super::selectors::LabelSelector;
use super::store::{Propagation, Store};
use super::transform::{self, Repr, repr};
use super::verbs::{create, delete, list, patch_obj, update, watch_resp};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Shared server state.
pub struct App {
    pub store: Arc<Store>,
    pub faults: Arc<FaultRules>,
    pub data_dir: PathBuf,
    pub addr: String,
    /// The TLS listener's app: requests authenticate with bearer tokens (none is anonymous).
    pub secure: bool,
    /// Requests served, by client, verb and resource.
    pub requests: Arc<super::requests::RequestCounts>,
}

pub(super) fn respond(code: u16, ct: &str, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = ct.parse() {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub(super) fn ok_json(code: u16, v: &Value) -> Response {
    respond(code, "application/json", v.to_string().into_bytes())
}

pub(super) fn err(e: &ApiError) -> Response {
    ok_json(e.code, &e.status())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The single entry point for every request.
pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let q = parse_query(parts.uri.query());
    if parts.uri.path() == super::requests::PATH {
        return respond(200, "application/json", app.requests.to_json());
    }
    {
        let segs: Vec<&str> = parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        app.requests
            .record(&parts.method, &parts.headers, &segs, watch);
    }
    // Authorization comes before anything else looks at the request, as upstream's filter chain.
    let authz = rbac::check(
        &app.store.lock(),
        &parts.method,
        parts.uri.path(),
        &q,
        &parts.headers,
        app.secure,
    );
    if let Err(e) = authz {
        return err(&e);
    }
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return err(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resp = match route(&app, &parts.method, &parts.headers, &segs, &q, &bytes).await {
        Ok(r) => r,
        Err(e) => err(&e),
    };
    if prefers_protobuf(&parts.headers) && !q.get("watch").is_some_and(|w| w == "true" || w == "1")
    {
        return as_protobuf(resp).await;
    }
    resp
}

/// Whether the first media type of `Accept` that kubesim can serve is protobuf (without `as=`),
/// as upstream's content negotiation picks the client's first acceptable type.
fn prefers_protobuf(h: &HeaderMap) -> bool {
    let a = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    a.split(',')
        .map(str::trim)
        .find(|m| {
            let media = m.split(';').next().unwrap_or_default().trim();
            matches!(
                media,
                "application/json" | "application/yaml" | "*/*" | "application/*"
            ) || media == super::protobuf::MEDIA_TYPE
        })
        .is_some_and(|m| {
            m.split(';').next().unwrap_or_default().trim() == super::protobuf::MEDIA_TYPE
                && !m.contains("as=")
        })
}

/// Re-encode a JSON response of a built-in kind (object, list or Status) as protobuf; anything
/// kubesim has no protobuf schema for (custom resources, discovery, Tables) stays JSON, as upstream
/// falls back to JSON where protobuf is not registered.
async fn as_protobuf(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return err(&ApiError::internal("buffering a response"));
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| super::protoenc::encode_object(&v));
    let mut out = match encoded {
        Some(pb) => {
            let mut r = Response::from_parts(parts, Body::from(pb));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(super::protobuf::MEDIA_TYPE),
            );
            r
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    };
    out.headers_mut().remove(header::CONTENT_LENGTH);
    out
}

async fn route(
    app: &Arc<App>,
    method: &Method,
    h: &HeaderMap,
    segs: &[&str],
    q: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult<Response> {
    let aggregated = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .contains("as=APIGroupDiscoveryList");
    let resources = || app.store.lock().resources.clone();
    let agg = |v: Value| respond(200, discovery::AGGREGATED, v.to_string().into_bytes());
    match segs {
        ["version"] => return Ok(ok_json(200, &discovery::version())),
        ["healthz"] | ["readyz"] | ["livez"] => {
            return Ok(respond(200, "text/plain", b"ok".to_vec()));
        }
        ["api"] if aggregated => return Ok(agg(discovery::aggregated(&resources(), true))),
        ["api"] => return Ok(ok_json(200, &discovery::api_versions(&app.addr))),
        ["apis"] if aggregated => return Ok(agg(discovery::aggregated(&resources(), false))),
        ["apis"] => return Ok(ok_json(200, &discovery::api_group_list(&resources()))),
        ["openapi", "v2"] => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        ["openapi", "v3"] => return Ok(ok_json(200, &discovery::openapi_index(&resources()))),
        ["openapi", "v3", "api", v] => {
            return discovery::openapi_gv(&resources(), "", v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(not_found_path);
        }
        ["openapi", "v3", "apis", g, v] => {
            return discovery::openapi_gv(&resources(), g, v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(not_found_path);
        }
        ["api", v] => {
            return discovery::resource_list(&resources(), "", v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(not_found_path);
        }
        ["apis", g] => {
            return discovery::api_group(&resources(), g)
                .map(|d| ok_json(200, &d))
                .ok_or_else(not_found_path);
        }
        ["apis", g, v] => {
            return discovery::resource_list(&resources(), g, v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(not_found_path);
        }
        _ => {}
    }
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    let (ri, ns, name, sub) = {
        let st = app.store.lock();
        let (ns, plural, name, sub) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if st
                    .find_version(group, version, plural)
                    .is_some_and(|r| r.namespaced) =>
            {
                (
                    Some(ns.to_string()),
                    *plural,
                    tail.first().copied(),
                    tail.get(1).copied(),
                )
            }
            [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
            [] => return Err(not_found_path()),
        };
        let ri = st
            .find_version(group, version, plural)
            .cloned()
            .ok_or_else(not_found_path)?;
        (ri, ns, name, sub)
    };
    if let (Some(n), Some(s)) = (name, sub)
        && let Some(r) = super::subresources::serve(
            app,
            &ri,
            ns.as_deref().unwrap_or_default(),
            n,
            s,
            method,
            h,
            body,
        )
    {
        return r;
    }
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false)
            if matches!(q.get("watch").map(String::as_str), Some("true") | Some("1")) =>
        {
            "watch"
        }
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let dry_run = super::dryrun::requested(verb, q, body)?;
    if let Some(code) = app.faults.take(verb, &ri.plural) {
        return Err(ApiError::for_code(code));
    }
    let ns_s = ns.clone().unwrap_or_default();
    if ri.namespaced && ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(not_found_path());
    }
    let status = match sub {
        None => false,
        Some("status") if ri.status => true,
        Some("log") if ri.group.is_empty() && ri.plural == "pods" && verb == "get" => {
            return super::logs::pod_log(app, &ri, &ns_s, name.unwrap_or_default(), q);
        }
        Some(_) => return Err(not_found_path()),
    };
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let fv = FieldValidation::parse(q.get("fieldValidation").map(String::as_str));
    let rep = repr(h);
    // A dry run writes to a private copy of the store, then answers as upstream's dry-run storage.
    let (scratch, _scratch_dir) = match dry_run {
        true => super::dryrun::scratch(app).map(|(a, d)| (Some(a), Some(d)))?,
        false => (None, None),
    };
    let before = name.and_then(|n| app.store.lock().get(&ri, &ns_s, n).ok());
    let app = scratch.as_ref().unwrap_or(app);
    let resp = serve(
        app, &ri, verb, ns, name, status, h, q, body, &manager, fv, rep,
    );
    let resp = match (dry_run, resp) {
        (true, Ok(r)) => Ok(super::dryrun::finish(r, verb, before.as_ref(), body).await),
        (_, r) => r,
    };
    if resp.is_ok()
        && ri.namespaced
        && !matches!(verb, "get" | "list" | "watch")
        && !ns_s.is_empty()
    {
        // The quota controller's recalculation, done at once instead of eventually.
        let mut st = app.store.lock();
        super::quota::refresh(&mut st, &ns_s);
        // The disruption controller's sync, likewise.
        super::disruption::refresh(&mut st, &ns_s);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn serve(
    app: &Arc<App>,
    ri: &ResourceInfo,
    verb: &str,
    ns: Option<String>,
    name: Option<&str>,
    status: bool,
    h: &HeaderMap,
    q: &HashMap<String, String>,
    body: &[u8],
    manager: &str,
    fv: FieldValidation,
    rep: Repr,
) -> ApiResult<Response> {
    let ri = ri.clone();
    let ns_s = ns.clone().unwrap_or_default();
    match verb {
        "get" => {
            let o = app.store.lock().get(&ri, &ns_s, name.unwrap_or_default())?;
            Ok(render_one(&ri, &o, rep))
        }
        "list" => list(app, &ri, ns.as_deref(), q, rep),
        "watch" => watch_resp(app, &ri, ns, q, rep),
        "create" => {
            let obj = parse_body(body, h, &ri)?;
            let (o, warnings) = create(app, &ri, &ns_s, obj, manager, fv)?;
            Ok(with_warnings(
                ok_json(201, &transform::object(&ri, &o, rep)),
                &warnings,
            ))
        }
        "update" => {
            let obj = parse_body(body, h, &ri)?;
            let (o, warnings) = update(
                app,
                &ri,
                &ns_s,
                name.unwrap_or_default(),
                obj,
                status,
                manager,
                fv,
            )?;
            Ok(with_warnings(
                ok_json(200, &transform::object(&ri, &o, rep)),
                &warnings,
            ))
        }
        "patch" => {
            let ct = h
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ct = ct.split(';').next().unwrap_or_default().trim().to_string();
            let force = q.get("force").is_some_and(|f| f == "true");
            let (code, o, warnings) = patch_obj(
                app,
                &ri,
                &ns_s,
                name.unwrap_or_default(),
                &ct,
                body,
                status,
                manager,
                force,
                fv,
            )?;
            Ok(with_warnings(
                ok_json(code, &transform::object(&ri, &o, rep)),
                &warnings,
            ))
        }
        "delete" => delete(app, &ri, &ns_s, name.unwrap_or_default(), body, q, rep),
        "deletecollection" => {
            let labels = LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let mut st = app.store.lock();
            let names: Vec<(String, String)> = st
                .list(&ri, ns.as_deref())
                .into_iter()
                .filter(|o| labels.matches(o))
                .map(|o| {
                    (
                        o["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        o["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            for (n, name) in names {
                let _ = st.delete(&ri, &n, &name, Propagation::Background);
            }
            Ok(ok_json(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

pub(super) fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = format!("299 - \"{}\"", w.replace('"', "\\\"")).parse() {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// The request body as JSON. Protobuf is decoded for built-in kinds, as upstream's protobuf
/// serializer is registered only for types compiled into the server; custom resources get 415 with
/// the media types their codec accepts (apiextensions-apiserver `customresource_handler.go`).
pub(super) fn parse_body(body: &[u8], h: &HeaderMap, ri: &ResourceInfo) -> ApiResult<Value> {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media == super::protobuf::MEDIA_TYPE && ri.builtin {
        return super::protobuf::decode_body(body);
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(if ri.builtin {
            ApiError::unsupported_media_for(ct, super::protobuf::BUILTIN_MEDIA_TYPES)
        } else {
            ApiError::unsupported_media_for(ct, "application/json, application/yaml")
        });
    }
    let v: Value = if ct.contains("yaml") {
        let s = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        serde_json::from_str(s)
            .or_else(|_| serde_saphyr::from_str(s))
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    Ok(v)
}

pub(super) fn render_one(ri: &ResourceInfo, o: &Value, rep: Repr) -> Response {
    ok_json(200, &transform::object(ri, o, rep))
}

/// events.k8s.io/v1 Event as core v1 Event (as the real server converts between them).
pub(super) fn core_event(e: &Value) -> Value {
    let mut c = json!({
        "kind": "Event", "apiVersion": "v1", "metadata": e["metadata"],
        "involvedObject": e["regarding"], "reason": e["reason"], "message": e["note"], "type": e["type"],
        "action": e["action"], "eventTime": e["eventTime"], "reportingComponent": e["reportingController"],
        "reportingInstance": e["reportingInstance"], "source": {"component": e["reportingController"]},
        "related": e["related"],
    });
    if e["series"].is_object() {
        c["count"] = e["series"]["count"].clone();
        c["lastTimestamp"] = e["series"]["lastObservedTime"].clone();
        c["firstTimestamp"] = e["eventTime"].clone();
    } else {
        c["count"] = json!(1);
        c["firstTimestamp"] = e["eventTime"].clone();
        c["lastTimestamp"] = e["eventTime"].clone();
    }
    if let Some(o) = c.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    c
}
