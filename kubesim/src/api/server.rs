//! The HTTP layer: routing of Kubernetes API paths to store operations.

use super::admission::{self, FieldValidation};
use super::apply;
use super::discovery;
use super::error::{ApiError, ApiResult};
use super::faults::FaultRules;
use super::patch::{self, JsonPatchError};
use super::rbac;
use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Propagation, Store};
use super::table::{partial, table};
use super::transform::{self, Repr, repr};
use super::watch::{self, WatchSpec};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Shared server state.
pub struct App {
    pub store: Arc<Store>,
    pub faults: Arc<FaultRules>,
    pub data_dir: PathBuf,
    pub addr: String,
}

fn respond(code: u16, ct: &str, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = ct.parse() {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn ok_json(code: u16, v: &Value) -> Response {
    respond(code, "application/json", v.to_string().into_bytes())
}

fn err(e: &ApiError) -> Response {
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
    // Authorization comes before anything else looks at the request, as upstream's filter chain.
    let authz = rbac::check(
        &app.store.lock(),
        &parts.method,
        parts.uri.path(),
        &q,
        &parts.headers,
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

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
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
fn parse_body(body: &[u8], h: &HeaderMap, ri: &ResourceInfo) -> ApiResult<Value> {
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

fn render_one(ri: &ResourceInfo, o: &Value, rep: Repr) -> Response {
    ok_json(200, &transform::object(ri, o, rep))
}

/// events.k8s.io/v1 Event as core v1 Event (as the real server converts between them).
fn core_event(e: &Value) -> Value {
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

fn list(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    rep: Repr,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let (mut items, rv) = {
        let st = app.store.lock();
        let mut items = st.list(ri, ns);
        if ri.group.is_empty()
            && ri.plural == "events"
            && let Some(er) = st.find("events.k8s.io", "events")
        {
            items.extend(st.list(er, ns).iter().map(core_event));
        }
        (items, st.rv)
    };
    items.retain(|o| labels.matches(o) && fields.matches(o));
    let pos = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    items.sort_by_key(pos);
    if let Some(c) = q.get("continue").filter(|c| !c.is_empty()) {
        let after = decode_continue(c)?;
        items.retain(|o| pos(o) > after);
    }
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let mut cont = None;
    let mut remaining = 0;
    if items.len() > limit {
        remaining = items.len() - limit;
        items.truncate(limit);
        cont = items.last().map(|o| encode_continue(&pos(o)));
    }
    let rv = rv.to_string();
    let out = match rep {
        Repr::Table => table(ri, &items, &rv, cont.as_deref()),
        _ => {
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(remaining);
            }
            if rep == Repr::Metadata {
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items.iter().map(partial).collect::<Vec<_>>()})
            } else {
                json!({"kind": format!("{}List", ri.kind), "apiVersion": ri.api_version(), "metadata": meta, "items": items})
            }
        }
    };
    Ok(ok_json(200, &out))
}

fn encode_continue(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(s: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect();
    String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())
}

fn watch_resp(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: Option<String>,
    q: &HashMap<String, String>,
    rep: Repr,
) -> ApiResult<Response> {
    let spec = WatchSpec {
        group: ri.group.clone(),
        plural: ri.plural.clone(),
        kind: ri.kind.clone(),
        api_version: ri.api_version(),
        namespace: ns,
        labels: LabelSelector::parse(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: FieldSelector::parse(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        resource_version: match q.get("resourceVersion").filter(|r| !r.is_empty()) {
            Some(r) => Some(
                r.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
            ),
            None => None,
        },
        send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        timeout: Duration::from_secs(
            q.get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800),
        ),
        metadata_only: rep == Repr::Metadata,
        table: (rep == Repr::Table).then(|| ri.clone()),
        headers_sent: std::cell::Cell::new(false),
    };
    let rx = watch::start(app.store.clone(), spec);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn create(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    mut obj: Value,
    manager: &str,
    fv: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("uid");
    }
    if ri.status
        && !ri.builtin
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    let warnings = admission::custom_resource(ri, &mut obj, fv)?;
    if ri.group == "apiextensions.k8s.io" {
        admission::crd(ri, &mut obj)?;
    }
    let mut st = app.store.lock();
    if obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
        && ri.namespaced
    {
        obj["metadata"]["namespace"] = obj["metadata"]
            .get("namespace")
            .cloned()
            .unwrap_or(json!(ns));
    }
    admission::builtin_create(ri, &mut obj, &app.data_dir)?;
    // The registry generates the name before validating admission runs, so refusals name the object.
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && let Some(g) = obj["metadata"]["generateName"]
            .as_str()
            .filter(|g| !g.is_empty())
    {
        obj["metadata"]["name"] = json!(format!("{g}{}", super::meta::name_suffix()));
    }
    if ri.builtin {
        admission::admit_create(&st, ri, ns, &mut obj)?;
    }
    let o = st.create(ri, ns, obj, manager)?;
    Ok((o, warnings))
}

#[allow(clippy::too_many_arguments)]
fn update(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    mut obj: Value,
    status: bool,
    manager: &str,
    fv: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let old = ri
        .schema
        .as_ref()
        .and_then(|_| app.store.lock().get(ri, ns, name).ok());
    let warnings = admission::custom_resource_update(ri, &mut obj, old.as_ref(), status, fv)?;
    let mut st = app.store.lock();
    let o = st.replace(ri, ns, name, obj, status, manager)?;
    Ok((o, warnings))
}

#[allow(clippy::too_many_arguments)]
fn patch_obj(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    ct: &str,
    body: &[u8],
    status: bool,
    manager: &str,
    force: bool,
    fv: FieldValidation,
) -> ApiResult<(u16, Value, Vec<String>)> {
    let parse_json = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    if ct == "application/apply-patch+yaml" {
        if !q_manager_given(manager) {
            return Err(ApiError::bad_request("PATCH /apply requires fieldManager"));
        }
        let s = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut applied: Value = serde_json::from_str(s)
            .or_else(|_| serde_saphyr::from_str(s))
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if let Some(m) = applied["metadata"].as_object_mut() {
            m.remove("uid");
            m.remove("managedFields");
        }
        let existing = app.store.lock().get(ri, ns, name).ok();
        let Some(current) = existing else {
            if status {
                return Err(ApiError::not_found(&ri.group, &ri.plural, name));
            }
            applied["metadata"]["name"] = json!(name);
            let (o, w) = create(app, ri, ns, applied.clone(), manager, fv)?;
            let mut owners2 = apply::Managers::new();
            let _ = apply::apply(&json!({}), &applied, manager, true, &mut owners2);
            app.store.lock().set_managers(ri, ns, name, owners2);
            return Ok((201, o, w));
        };
        let st = app.store.lock();
        let mut owners = st.managers(ri, ns, name);
        let (mgr, desired) = if status {
            (
                format!("{manager}/status"),
                json!({"status": applied.get("status").cloned().unwrap_or(json!({}))}),
            )
        } else {
            let mut a = applied.clone();
            if ri.status
                && let Some(o) = a.as_object_mut()
            {
                o.remove("status");
            }
            (manager.to_string(), a)
        };
        let result = apply::apply(&current, &desired, &mgr, force, &mut owners).map_err(|conflicts| {
            let av = ri.api_version();
            let causes: Vec<(String, String, String)> = conflicts.iter().map(|c| ("FieldManagerConflict".into(), c.field.clone(), format!("conflict with \"{}\" using {av}", c.manager))).collect();
            let lines: Vec<String> = conflicts.iter().map(|c| format!("conflict with \"{}\" using {av}: {}", c.manager, c.field)).collect();
            let mut e = ApiError::new(409, "Conflict", format!("Apply failed with {} conflict{}: {}", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }, lines.join("\n")));
            e.details = Some(json!({"name": name, "group": ri.group, "kind": ri.plural, "causes": causes.iter().map(|(r, f, m)| json!({"reason": r, "message": m, "field": f})).collect::<Vec<_>>()}));
            e
        })?;
        drop(st);
        let mut result = result;
        let warnings =
            admission::custom_resource_update(ri, &mut result, Some(&current), status, fv)?;
        let mut st = app.store.lock();
        let o = st.replace(ri, ns, name, result, status, manager)?;
        st.set_managers(ri, ns, name, owners);
        return Ok((200, o, warnings));
    }
    let current = app.store.lock().get(ri, ns, name)?;
    let mut doc = current.clone();
    match ct {
        "application/merge-patch+json" => patch::merge(&mut doc, &parse_json()?),
        "application/json-patch+json" => {
            patch::json_patch(&mut doc, &parse_json()?).map_err(|e| match e {
                JsonPatchError::TestFailed(m) => ApiError::new(422, "Invalid", m),
                JsonPatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
            })?
        }
        "application/strategic-merge-patch+json" if ri.builtin => {
            patch::strategic(&mut doc, &parse_json()?)
        }
        other => return Err(ApiError::unsupported_media(other)),
    }
    let warnings = admission::custom_resource_update(ri, &mut doc, Some(&current), status, fv)?;
    let o = app
        .store
        .lock()
        .replace(ri, ns, name, doc, status, manager)?;
    Ok((200, o, warnings))
}

fn q_manager_given(m: &str) -> bool {
    m != "unknown" && !m.is_empty()
}

fn delete(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    body: &[u8],
    q: &HashMap<String, String>,
    rep: Repr,
) -> ApiResult<Response> {
    let opts: Value = if body.starts_with(super::protobuf::MAGIC) {
        super::protobuf::decode_body(body)?
    } else if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let policy = opts["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").cloned());
    let policy = match policy.as_deref() {
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some("Background") => Propagation::Background,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
        None if opts["orphanDependents"] == json!(true) => Propagation::Orphan,
        None if ri.group == "batch" && ri.plural == "jobs" => Propagation::Orphan,
        None => Propagation::Background,
    };
    let mut st = app.store.lock();
    let cur = st.get(ri, ns, name)?;
    if let Some(p) = opts["preconditions"].as_object() {
        if let Some(uid) = p.get("uid").and_then(Value::as_str)
            && cur["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                &ri.group,
                &ri.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    cur["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = p.get("resourceVersion").and_then(Value::as_str)
            && cur["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(
                &ri.group,
                &ri.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
    }
    match st.delete(ri, ns, name, policy)? {
        Some(pending) => Ok(ok_json(200, &transform::object(ri, &pending, rep))),
        None => {
            let mut details =
                json!({"name": name, "kind": ri.plural, "uid": cur["metadata"]["uid"]});
            if !ri.group.is_empty() {
                details["group"] = json!(ri.group);
            }
            Ok(ok_json(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ))
        }
    }
}
