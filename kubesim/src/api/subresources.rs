//! Routing of the subresources that are not the object itself: `pods/binding` (the scheduler's
//! write of `spec.nodeName`, upstream `BindingREST`), `pods/eviction` (`src/api/disruption.rs`),
//! `serviceaccounts/token` (`src/api/tokens.rs`) and `/scale` (`src/api/scale.rs`).

use super::error::{ApiError, ApiResult};
use super::patch;
use super::resources::ResourceInfo;
use super::server::{App, ok_json, parse_body};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Serve `sub` of object `name`, or `None` when `sub` is not one of these.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    sub: &str,
    method: &Method,
    h: &HeaderMap,
    body: &[u8],
) -> Option<ApiResult<Response>> {
    let core = ri.group.is_empty();
    let post = method == Method::POST;
    let out = match sub {
        "binding" if core && ri.plural == "pods" && post => bind(app, ri, ns, name, h, body),
        "eviction" if core && ri.plural == "pods" && post => {
            parse_body(body, h, ri).and_then(|b| {
                let mut st = app.store.lock();
                let r = super::disruption::evict(&mut st, ns, name, &b);
                super::disruption::refresh(&mut st, ns);
                super::quota::refresh(&mut st, ns);
                r.map(|v| ok_json(201, &v))
            })
        }
        "token" if core && ri.plural == "serviceaccounts" && post => parse_body(body, h, ri)
            .and_then(|b| {
                super::tokens::token_request(&app.store.lock(), ns, name, &b)
                    .map(|v| ok_json(201, &v))
            }),
        "scale" if ri.scale.is_some() => scale(app, ri, ns, name, method, h, body),
        "binding" | "eviction" | "token" if post => return None,
        "binding" | "eviction" | "token" => Err(ApiError::method_not_allowed()),
        _ => return None,
    };
    Some(out)
}

/// `BindingREST.Create` (`assignPod`): set `spec.nodeName` of an unbound pod and its
/// `PodScheduled` condition; a bound pod is 409.
fn bind(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    h: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let b = parse_body(body, h, ri)?;
    let node = b["target"]["name"].as_str().unwrap_or_default().to_string();
    if b["target"]["kind"]
        .as_str()
        .is_some_and(|k| !k.is_empty() && k != "Node")
    {
        return Err(ApiError::invalid(
            "Binding",
            "",
            "Binding",
            name,
            vec![(
                "FieldValueNotSupported".into(),
                "target.kind".into(),
                format!(
                    "Unsupported value: \"{}\": supported values: \"Node\"",
                    b["target"]["kind"].as_str().unwrap_or_default()
                ),
            )],
        ));
    }
    let mut st = app.store.lock();
    let pod = st.get(ri, ns, name)?;
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Err(ApiError::conflict(
            "",
            "pods",
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(cur) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "",
            "pods",
            name,
            &format!("pod {name} is already assigned to node \"{cur}\""),
        ));
    }
    let mut next = pod.clone();
    next["spec"]["nodeName"] = json!(node);
    if let Some(m) = next["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    st.replace(ri, ns, name, next, false, "kube-scheduler")?;
    let mut with_cond = st.get(ri, ns, name)?;
    let conds = with_cond["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.insert(
        0,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": super::meta::now()}),
    );
    with_cond["status"]["conditions"] = json!(conds);
    st.replace(ri, ns, name, with_cond, true, "kube-scheduler")?;
    Ok(ok_json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn scale(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    method: &Method,
    h: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let Some(paths) = ri.scale.clone() else {
        return Err(ApiError::method_not_allowed());
    };
    let current = app.store.lock().get(ri, ns, name)?;
    let now = super::scale::scale_of(ri, &paths, &current);
    let wanted = match method.as_str() {
        "GET" => return Ok(ok_json(200, &now)),
        "PUT" => serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?,
        "PATCH" => {
            let ct = h
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = now.clone();
            match ct.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => patch::json_patch(&mut doc, &p)
                    .map_err(|e| ApiError::new(422, "Invalid", format!("{e:?}")))?,
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    patch::merge(&mut doc, &p)
                }
                other => return Err(ApiError::unsupported_media(other)),
            }
            doc
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let mut next = super::scale::apply_scale(&paths, name, &current, &wanted)?;
    super::admission::custom_resource_update(
        ri,
        &mut next,
        Some(&current),
        false,
        super::admission::FieldValidation::Ignore,
    )?;
    let mut st = app.store.lock();
    let stored = st.replace(ri, ns, name, next, false, "kube-controller-manager")?;
    super::disruption::refresh(&mut st, ns);
    Ok(ok_json(200, &super::scale::scale_of(ri, &paths, &stored)))
}
