//! The verb handlers behind the routes of [`super::server`]: list and watch (with continue
//! tokens), create, update, patch (every patch type and server-side apply) and delete.

use super::admission::{self, FieldValidation};
use super::apply;
use super::error::{ApiError, ApiResult};
use super::patch::{self, JsonPatchError};
use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{App, core_event, ok_json, respond};
use super::store::Propagation;
use super::table::{partial, table};
use super::transform::{self, Repr};
use super::watch::{self, WatchSpec};
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn list(
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
    // Selected under the lock from the namespace's range; only shared handles leave it.
    let (mut items, rv) = {
        let st = app.store.lock();
        let selected = |o: &Value| labels.matches(o) && fields.matches(o);
        let mut items: Vec<Arc<Value>> = st
            .range(&ri.group, &ri.plural, ns)
            .filter(|(_, o)| selected(o))
            .map(|(_, o)| o.clone())
            .collect();
        if ri.group.is_empty()
            && ri.plural == "events"
            && let Some(er) = st.find("events.k8s.io", "events")
        {
            items.extend(
                st.range(&er.group, &er.plural, ns)
                    .map(|(_, o)| core_event(o))
                    .filter(|o| selected(o))
                    .map(Arc::new),
            );
        }
        (items, st.rv)
    };
    let pos = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    items.sort_by_cached_key(|o| pos(o));
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
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items.iter().map(|o| partial(o)).collect::<Vec<_>>()})
            } else {
                // Serialized from the shared objects: no copy of the list as a Value.
                let list = ListOut {
                    api_version: ri.api_version(),
                    items: items.iter().map(|o| &**o).collect(),
                    kind: format!("{}List", ri.kind),
                    metadata: meta,
                };
                return Ok(respond(
                    200,
                    "application/json",
                    serde_json::to_vec(&list).unwrap_or_default(),
                ));
            }
        }
    };
    Ok(ok_json(200, &out))
}

/// A list response, its keys in the order `json!` gives them.
#[derive(serde::Serialize)]
struct ListOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    items: Vec<&'a Value>,
    kind: String,
    metadata: Value,
}

pub(super) fn encode_continue(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn decode_continue(s: &str) -> ApiResult<String> {
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

pub(super) fn watch_resp(
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

pub(super) fn create(
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
pub(super) fn update(
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
pub(super) fn patch_obj(
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
    // As upstream's patch handler (GuaranteedUpdate): the patch is applied to the object as
    // stored, and when another write lands between the read and the write, it is applied
    // again to the newer object; only a patch that names a resourceVersion of its own gets
    // the Conflict.
    let mut attempt = 0;
    loop {
        attempt += 1;
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
        let patch_names_a_version =
            doc["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"];
        let warnings = admission::custom_resource_update(ri, &mut doc, Some(&current), status, fv)?;
        match app.store.lock().replace(ri, ns, name, doc, status, manager) {
            Ok(o) => return Ok((200, o, warnings)),
            Err(e) if e.code == 409 && !patch_names_a_version && attempt < MAX_PATCH_ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    }
}

/// How often a patch is applied again after a concurrent write (upstream retries until it
/// lands; a bound keeps a pathological writer from spinning a request forever).
const MAX_PATCH_ATTEMPTS: u32 = 16;

pub(super) fn q_manager_given(m: &str) -> bool {
    m != "unknown" && !m.is_empty()
}

pub(super) fn delete(
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
