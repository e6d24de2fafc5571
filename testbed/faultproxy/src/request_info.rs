//! The Kubernetes verb and resource of a request, resolved as the API server's RequestInfo
//! resolver does (`apiserver/pkg/endpoints/request/requestinfo.go`), so that faults and
//! request counts name requests the way RBAC rules and audit logs do.

use http::Method;

/// What a request is, in the API server's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// `proxy`; for a non-resource request the lowercase method.
    pub verb: String,
    /// The plural, plus `/subresource` when there is one (`reportjobs/status`); for a
    /// non-resource request the path (`/version`).
    pub resource: String,
    pub is_resource_request: bool,
    /// The API group (`""` for the core group).
    pub group: String,
    pub namespace: String,
    pub name: String,
    /// The `resourceVersion` query parameter, if any.
    pub resource_version: Option<String>,
}

impl RequestInfo {
    /// The resource without its subresource (`reportjobs` for `reportjobs/status`).
    pub fn plural(&self) -> &str {
        self.resource.split('/').next().unwrap_or_default()
    }

    /// `plural.group` (`reportjobs.reporting.dev`), or the plural for the core group, as
    /// `schema.GroupResource.String()` prints it in error messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural().to_string()
        } else {
            format!("{}.{}", self.plural(), self.group)
        }
    }
}

/// Verbs that can stand in the path before the resource (`/api/v1/watch/pods`).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// What may follow `namespaces/{name}` and still be the namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Resolves a request from its method, path and query.
pub fn resolve(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    let non_resource = || RequestInfo {
        verb: method.as_str().to_ascii_lowercase(),
        resource: path.to_string(),
        ..RequestInfo::default()
    };
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return non_resource();
    }
    let mut rest = &parts[1..];
    let mut group = "";
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return non_resource();
        }
        group = rest[0];
        rest = &rest[1..];
    }
    // The version.
    rest = &rest[1..];

    let mut verb = if SPECIAL_VERBS.contains(&rest[0]) {
        let special = rest[0];
        if rest.len() < 2 {
            // The API server answers these with an error; name them anyway.
            return RequestInfo {
                verb: special.to_string(),
                is_resource_request: true,
                group: group.to_string(),
                ..RequestInfo::default()
            };
        }
        rest = &rest[1..];
        special
    } else {
        match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
    };

    let mut namespace = "";
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = rest[1];
        // `namespaces/{ns}/{resource}...`, unless what follows is the namespace's own
        // subresource (`namespaces/{ns}/status`).
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }

    let resource = rest.first().copied().unwrap_or_default();
    let name = rest.get(1).copied().unwrap_or_default();
    let subresource = match rest.get(2) {
        Some(sub) if verb != "proxy" => *sub,
        _ => "",
    };

    let params = Query::parse(query);
    if name.is_empty() && verb == "get" {
        verb = if params.watch() { "watch" } else { "list" };
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }

    RequestInfo {
        verb: verb.to_string(),
        resource: if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        },
        is_resource_request: true,
        group: group.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        resource_version: params.first("resourceVersion").map(str::to_string),
    }
}

/// A query string's parameters, in order.
struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Self {
        Query(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
        )
    }

    fn first(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// `watch` as the API server's parameter codec reads a bool
    /// (`runtime.Convert_Slice_string_To_bool`): present and not `false`/`0` is true, so
    /// `watch=true`, `watch=1` and a bare `watch` all ask for a watch.
    fn watch(&self) -> bool {
        self.first("watch")
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vr(method: Method, path_and_query: &str) -> (String, String) {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let info = resolve(&method, path, query);
        (info.verb, info.resource)
    }

    fn pair(verb: &str, resource: &str) -> (String, String) {
        (verb.to_string(), resource.to_string())
    }

    #[test]
    fn core_and_group_resources() {
        let ns = "/api/v1/namespaces/default";
        assert_eq!(vr(Method::GET, &format!("{ns}/pods")), pair("list", "pods"));
        assert_eq!(
            vr(Method::GET, &format!("{ns}/pods/p")),
            pair("get", "pods")
        );
        assert_eq!(
            vr(Method::GET, &format!("{ns}/pods/p/log?follow=true")),
            pair("get", "pods/log")
        );
        assert_eq!(
            vr(Method::POST, &format!("{ns}/pods")),
            pair("create", "pods")
        );
        assert_eq!(
            vr(Method::PUT, &format!("{ns}/pods/p")),
            pair("update", "pods")
        );
        assert_eq!(
            vr(Method::DELETE, &format!("{ns}/pods/p")),
            pair("delete", "pods")
        );
        assert_eq!(
            vr(Method::DELETE, &format!("{ns}/pods")),
            pair("deletecollection", "pods")
        );
        let rj = "/apis/reporting.dev/v1alpha1/namespaces/t/reportjobs";
        assert_eq!(
            vr(Method::PATCH, &format!("{rj}/orders/status")),
            pair("patch", "reportjobs/status")
        );
        assert_eq!(
            vr(
                Method::GET,
                "/apis/reporting.dev/v1alpha1/reportjobs?watch=1"
            ),
            pair("watch", "reportjobs")
        );
        assert_eq!(
            vr(
                Method::GET,
                &format!("{rj}?labelSelector=a%3Db&watch=true&resourceVersion=7")
            ),
            pair("watch", "reportjobs")
        );
        assert_eq!(
            vr(Method::GET, &format!("{rj}?watch=false")),
            pair("list", "reportjobs")
        );
        assert_eq!(
            vr(Method::GET, &format!("{rj}?watch=0")),
            pair("list", "reportjobs")
        );
        assert_eq!(
            vr(Method::GET, &format!("{rj}?watch")),
            pair("watch", "reportjobs")
        );
        // A named GET stays a get whatever the query says, as upstream.
        assert_eq!(
            vr(Method::GET, &format!("{rj}/orders?watch=true")),
            pair("get", "reportjobs")
        );
        assert_eq!(
            vr(Method::GET, "/apis/batch/v1/jobs?limit=500"),
            pair("list", "jobs")
        );
        assert_eq!(
            vr(Method::HEAD, "/api/v1/namespaces/d/configmaps/c"),
            pair("get", "configmaps")
        );
    }

    #[test]
    fn namespaces_are_their_own_resource() {
        assert_eq!(
            vr(Method::GET, "/api/v1/namespaces"),
            pair("list", "namespaces")
        );
        assert_eq!(
            vr(Method::GET, "/api/v1/namespaces/t"),
            pair("get", "namespaces")
        );
        assert_eq!(
            vr(Method::DELETE, "/api/v1/namespaces/t"),
            pair("delete", "namespaces")
        );
        assert_eq!(
            vr(Method::PUT, "/api/v1/namespaces/t/finalize"),
            pair("update", "namespaces/finalize")
        );
        assert_eq!(
            vr(Method::GET, "/api/v1/namespaces/t/status"),
            pair("get", "namespaces/status")
        );
        let info = resolve(&Method::GET, "/api/v1/namespaces/t/configmaps/c", None);
        assert_eq!(
            (
                info.namespace.as_str(),
                info.name.as_str(),
                info.group.as_str()
            ),
            ("t", "c", "")
        );
    }

    #[test]
    fn special_verbs_in_the_path() {
        assert_eq!(
            vr(Method::GET, "/api/v1/watch/namespaces/d/pods"),
            pair("watch", "pods")
        );
        assert_eq!(
            vr(Method::GET, "/api/v1/proxy/namespaces/d/pods/p/x/y"),
            pair("proxy", "pods")
        );
    }

    #[test]
    fn non_resource_paths() {
        assert_eq!(vr(Method::GET, "/version"), pair("get", "/version"));
        assert_eq!(vr(Method::GET, "/apis"), pair("get", "/apis"));
        assert_eq!(vr(Method::GET, "/api/v1"), pair("get", "/api/v1"));
        assert_eq!(
            vr(Method::GET, "/apis/reporting.dev/v1alpha1"),
            pair("get", "/apis/reporting.dev/v1alpha1")
        );
        assert_eq!(
            vr(Method::GET, "/openapi/v3/apis/batch/v1"),
            pair("get", "/openapi/v3/apis/batch/v1")
        );
        assert_eq!(vr(Method::POST, "/"), pair("post", "/"));
        assert!(!resolve(&Method::GET, "/healthz", None).is_resource_request);
    }

    #[test]
    fn resource_version_and_qualified_resource() {
        let info = resolve(
            &Method::GET,
            "/apis/batch/v1/namespaces/d/jobs",
            Some("watch=true&resourceVersion=42"),
        );
        assert_eq!(info.resource_version.as_deref(), Some("42"));
        assert_eq!(info.qualified_resource(), "jobs.batch");
        let info = resolve(&Method::PATCH, "/api/v1/namespaces/d/pods/p/status", None);
        assert_eq!(info.qualified_resource(), "pods");
        assert_eq!(info.plural(), "pods");
    }
}
