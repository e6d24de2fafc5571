//! Request counts by client, verb and resource (`GET /debug/requests`, JSON), so that a
//! benchmark can count what a controller asks of the API server from the server's side,
//! independently of the controller's own metrics. Watches count once, when they start.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method, header};

/// The path the counts are served at (no Kubernetes API lives under `/debug`).
pub const PATH: &str = "/debug/requests";

/// `client -> "verb resource" -> count`.
#[derive(Debug, Default)]
pub struct RequestCounts(Mutex<BTreeMap<String, BTreeMap<String, u64>>>);

impl RequestCounts {
    /// Counts one request.
    pub fn record(&self, method: &Method, headers: &HeaderMap, segs: &[&str], watch: bool) {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let client = agent
            .split(['/', ' '])
            .next()
            .unwrap_or("unknown")
            .to_string();
        let (resource, named) = resource_of(segs);
        let verb = verb_of(method, named, watch);
        if let Ok(mut counts) = self.0.lock() {
            *counts
                .entry(client)
                .or_default()
                .entry(format!("{verb} {resource}"))
                .or_default() += 1;
        }
    }

    /// The counts as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let counts = self.0.lock().map(|c| c.clone()).unwrap_or_default();
        serde_json::to_vec(&counts).unwrap_or_default()
    }
}

/// The Kubernetes verb of a request.
pub fn verb_of(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// The resource (`jobs`, `reportjobs/status`) a path names, and whether it names one object.
pub fn resource_of(segs: &[&str]) -> (String, bool) {
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segs {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return (segs.first().copied().unwrap_or("").to_string(), false),
    };
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    match rest {
        [] => (String::new(), false),
        [plural] => ((*plural).to_string(), false),
        [plural, _name] => ((*plural).to_string(), true),
        [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_resource_and_verb() {
        let segs = |p: &str| {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let of = |p: &str| {
            let s = segs(p);
            let r: Vec<&str> = s.iter().map(String::as_str).collect();
            resource_of(&r)
        };
        assert_eq!(of("/api/v1/namespaces/ns/pods"), ("pods".into(), false));
        assert_eq!(of("/api/v1/namespaces"), ("namespaces".into(), false));
        assert_eq!(of("/api/v1/namespaces/ns"), ("namespaces".into(), true));
        assert_eq!(
            of("/apis/reporting.dev/v1alpha1/namespaces/ns/reportjobs/r/status"),
            ("reportjobs/status".into(), true)
        );
        assert_eq!(of("/apis/batch/v1/jobs"), ("jobs".into(), false));
        assert_eq!(verb_of(&Method::GET, false, true), "watch");
        assert_eq!(verb_of(&Method::GET, true, false), "get");
        assert_eq!(verb_of(&Method::PATCH, true, false), "patch");
    }
}
