//! Discovery documents (aggregated v2 and legacy), `/version` and `/openapi/v3`.

use super::resources::ResourceInfo;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Content type of aggregated discovery responses.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-kubesim", "gitCommit": "kubesim",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

/// Resources grouped by group then version (core group is "").
fn grouped(rs: &[ResourceInfo]) -> BTreeMap<String, BTreeMap<String, Vec<&ResourceInfo>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<&ResourceInfo>>> = BTreeMap::new();
    for r in rs {
        out.entry(r.group.clone())
            .or_default()
            .entry(r.version.clone())
            .or_default()
            .push(r);
    }
    out
}

/// One served subresource as discovery lists it.
struct Subresource {
    name: &'static str,
    group: String,
    version: String,
    kind: String,
    verbs: &'static [&'static str],
}

/// The subresources kubesim serves for `r`, with the kinds and verbs upstream's discovery lists
/// (`status` and `scale` as the registries' `Update`/`Patch`/`Get` storage; `pods/eviction`
/// `policy/v1 Eviction`, `pods/binding` `Binding`, `serviceaccounts/token`
/// `authentication.k8s.io/v1 TokenRequest`, create only; `pods/log` get only).
fn subresources(r: &ResourceInfo) -> Vec<Subresource> {
    let sub = |name, group: &str, version: &str, kind: &str, verbs| Subresource {
        name,
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        verbs,
    };
    const RW: &[&str] = &["get", "patch", "update"];
    let mut out = vec![];
    let core = r.group.is_empty();
    if core && r.plural == "pods" {
        out.push(sub("binding", "", "v1", "Binding", &["create"]));
        out.push(sub("eviction", "policy", "v1", "Eviction", &["create"]));
        out.push(sub("log", "", "v1", "Pod", &["get"]));
    }
    if r.scale.is_some() {
        out.push(sub("scale", "autoscaling", "v1", "Scale", RW));
    }
    if r.status {
        out.push(sub("status", &r.group, &r.version, &r.kind, RW));
    }
    if core && r.plural == "serviceaccounts" {
        out.push(sub(
            "token",
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            &["create"],
        ));
    }
    out
}

fn agg_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = subresources(r)
        .iter()
        .map(|sr| {
            json!({"subresource": sr.name, "responseKind": {"group": sr.group, "version": sr.version, "kind": sr.kind}, "verbs": sr.verbs})
        })
        .collect();
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// `APIGroupDiscoveryList` for `/api` (core) or `/apis` (named groups).
pub fn aggregated(rs: &[ResourceInfo], core: bool) -> Value {
    let items: Vec<Value> = grouped(rs)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            let vs: Vec<Value> = versions
                .iter()
                .rev()
                .map(|(v, rs)| json!({"version": v, "resources": rs.iter().map(|r| agg_resource(r)).collect::<Vec<_>>(), "freshness": "Current"}))
                .collect();
            json!({"metadata": meta, "versions": vs})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

pub fn api_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

pub fn api_group_list(rs: &[ResourceInfo]) -> Value {
    let groups: Vec<Value> = grouped(rs)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .keys()
                .rev()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(rs: &[ResourceInfo], group: &str) -> Option<Value> {
    let g = grouped(rs).remove(group)?;
    let vs: Vec<Value> = g
        .keys()
        .rev()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}),
    )
}

/// `APIResourceList` for one group/version.
pub fn resource_list(rs: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&ResourceInfo> = rs
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut resources = vec![];
    for r in &mine {
        let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS});
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        resources.push(v);
        for sr in subresources(r) {
            let mut v = json!({"name": format!("{}/{}", r.plural, sr.name), "singularName": "", "namespaced": r.namespaced, "kind": sr.kind, "verbs": sr.verbs});
            // Upstream names the group and version of a subresource whose kind lives elsewhere.
            if sr.group != r.group || sr.version != r.version {
                v["group"] = json!(sr.group);
                v["version"] = json!(sr.version);
            }
            resources.push(v);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3` index.
pub fn openapi_index(rs: &[ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for (g, versions) in grouped(rs) {
        for v in versions.keys() {
            let p = gv_path(&g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=kubesim{}", rs.len())}),
            );
        }
    }
    json!({"paths": paths})
}

fn schema_name(r: &ResourceInfo) -> String {
    let g = if r.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        r.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{g}.{}.{}", r.version, r.kind)
}

/// An OpenAPI v3 document for one group/version: a schema per kind and, per resource, a PATCH
/// operation declaring `fieldValidation` and the group-version-kind (what kubectl checks).
pub fn openapi_gv(rs: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&ResourceInfo> = rs
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let q = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for r in mine {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let name = schema_name(r);
        let mut schema = r.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        if let Some(props) = schema["properties"].as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert(
                "metadata".into(),
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        schemas.insert(name.clone(), schema);
        let base = format!("/{}", gv_path(group, version));
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let reference = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}});
        let op = |id: &str, params: Vec<Value>| json!({"operationId": id, "parameters": params, "responses": reference, "x-kubernetes-action": id, "x-kubernetes-group-version-kind": gvk});
        let body_params = vec![q("dryRun"), q("fieldManager"), q("fieldValidation")];
        let mut patch_params = body_params.clone();
        patch_params.push(q("force"));
        paths.insert(
            coll.clone(),
            json!({"get": op("list", vec![]), "post": op("post", body_params.clone())}),
        );
        paths.insert(format!("{coll}/{{name}}"), json!({"get": op("get", vec![]), "put": op("put", body_params.clone()), "patch": op("patch", patch_params.clone()), "delete": op("delete", vec![])}));
        if r.status {
            paths.insert(format!("{coll}/{{name}}/status"), json!({"get": op("get", vec![]), "put": op("put", body_params), "patch": op("patch", patch_params)}));
        }
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": schemas}}),
    )
}
