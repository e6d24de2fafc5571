//! RBAC: authorizes impersonated requests against the stored Roles, ClusterRoles, RoleBindings and
//! ClusterRoleBindings, as upstream's impersonation filter, request-info resolver and RBAC authorizer do.
//!
//! Requests without `Impersonate-User` act as cluster-admin (kubesim has no authentication). With it,
//! the request runs as that user: [`impersonated_user`] builds the user's groups, [`Attributes::from_request`]
//! derives verb, API group, resource, subresource, namespace and name from the URL as upstream's
//! `RequestInfoFactory` does, and [`authorize`] walks ClusterRoleBindings, then the RoleBindings of the
//! request's namespace, looking for a rule that allows it. [`forbidden`] renders a denial as the API
//! server's 403 `Status`.
//!
//! Over 600 lines because of its unit tests (one per rule kind and impersonation case) at its end, in `mod tests`;
//! the code itself is under 600 lines.

use super::error::ApiError;
use super::store::State;
use axum::http::{HeaderMap, Method};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The API group of RBAC objects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const ANONYMOUS: &str = "system:anonymous";
const SA_PREFIX: &str = "system:serviceaccount:";

/// The user a request acts as: a name and its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// `alice`, `system:serviceaccount:<ns>:<name>`, ...
    pub name: String,
    /// Every group the user is in, including the implicit ones.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The user upstream's impersonation filter builds from `Impersonate-User` and `Impersonate-Group`:
    /// a service-account name without groups gets `system:serviceaccounts` and
    /// `system:serviceaccounts:<ns>`; any user but `system:anonymous` also gets `system:authenticated`
    /// unless `system:authenticated` or `system:unauthenticated` is already among its groups.
    pub fn impersonated(name: &str, groups: &[String]) -> UserInfo {
        let mut groups = groups.to_vec();
        if groups.is_empty()
            && let Some((ns, _)) = split_service_account(name)
        {
            groups = vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
        if name == ANONYMOUS {
            if !groups.iter().any(|g| g == UNAUTHENTICATED) {
                groups.push(UNAUTHENTICATED.to_string());
            }
        } else if !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.to_string(),
            groups,
        }
    }
}

/// `system:serviceaccount:<ns>:<name>` → `(ns, name)`.
fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SA_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// What a request does, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for
    /// non-resource requests the lower-cased HTTP method.
    pub verb: String,
    /// A request under `/api/<v>/...` or `/apis/<g>/<v>/...` (discovery documents are not).
    pub resource_request: bool,
    /// The URL path (what non-resource rules match).
    pub path: String,
    /// API group; empty for the core group.
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Namespace; empty for cluster-scoped requests (a namespace's own URL has its name here).
    pub namespace: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource (`status`, `log`, ...), or empty.
    pub subresource: String,
    /// Object name; empty for collections and creates (for list/watch, a `metadata.name` field selector).
    pub name: String,
}

impl Attributes {
    /// The attributes of an HTTP request, derived from method, path and query as upstream's
    /// `RequestInfoFactory` does.
    pub fn from_request(
        user: UserInfo,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
    ) -> Attributes {
        let mut a = Attributes {
            user,
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let parts: &[&str] = if path.trim_matches('/').is_empty() {
            &[]
        } else {
            &parts
        };
        if parts.len() < 3 {
            return a;
        }
        let mut rest = match parts[0] {
            "api" => &parts[1..],
            "apis" if parts.len() >= 4 => {
                a.api_group = parts[1].to_string();
                &parts[2..]
            }
            _ => return a,
        };
        a.resource_request = true;
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        let mut via_special_verb = false;
        if rest.first() == Some(&"watch") {
            // `/api/v1/watch/...`: the deprecated watch paths.
            a.verb = "watch".into();
            via_special_verb = true;
            rest = &rest[1..];
            if rest.is_empty() {
                return a;
            }
        } else {
            a.verb = match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .into();
        }
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            a.namespace = rest[1].to_string();
            // `/namespaces/<ns>/status` and `/finalize` are the namespace's own subresources.
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if rest.len() >= 3 && !via_special_verb {
            a.subresource = rest[2].to_string();
        }
        if rest.len() >= 2 {
            a.name = rest[1].to_string();
        }
        if let Some(r) = rest.first() {
            a.resource = r.to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
                "watch"
            } else {
                "list"
            }
            .into();
            if let Some(name) = query
                .get("fieldSelector")
                .and_then(|s| exact_name_in_selector(s))
            {
                a.name = name;
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// `resource` or `resource/subresource`, as rules and messages name it.
    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// `metadata.name=x` (or `==`) among the selector's terms, when `x` is a valid path segment.
fn exact_name_in_selector(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('=').filter(|(k, _)| !k.ends_with('!')))?;
        (k.trim() == "metadata.name"
            && !matches!(v, "" | "." | "..")
            && !v.contains('/')
            && !v.contains('%'))
        .then(|| v.to_string())
    })
}

/// The RBAC objects an authorization decision reads.
#[derive(Debug, Clone, Default)]
pub struct RbacObjects {
    /// Roles, each with its namespace in `metadata.namespace`.
    pub roles: Vec<Role>,
    /// ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// RoleBindings, each with its namespace in `metadata.namespace`.
    pub role_bindings: Vec<RoleBinding>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl RbacObjects {
    /// The stored RBAC objects plus the bootstrap policy (see [`RbacObjects::bootstrap`]); a stored
    /// object of the same name replaces a bootstrap one. Objects that do not parse are skipped.
    pub fn from_state(st: &State) -> RbacObjects {
        let mut out = RbacObjects::default();
        for plural in [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ] {
            for (_, obj) in st.range(RBAC_GROUP, plural, None) {
                let o: &Value = obj;
                match plural {
                    "roles" => out.roles.extend(Deserialize::deserialize(o).ok()),
                    "clusterroles" => out.cluster_roles.extend(Deserialize::deserialize(o).ok()),
                    "rolebindings" => out.role_bindings.extend(Deserialize::deserialize(o).ok()),
                    _ => out
                        .cluster_role_bindings
                        .extend(Deserialize::deserialize(o).ok()),
                }
            }
        }
        let boot = RbacObjects::bootstrap();
        for cr in boot.cluster_roles {
            if !out
                .cluster_roles
                .iter()
                .any(|c| c.metadata.name == cr.metadata.name)
            {
                out.cluster_roles.push(cr);
            }
        }
        for b in boot.cluster_role_bindings {
            if !out
                .cluster_role_bindings
                .iter()
                .any(|c| c.metadata.name == b.metadata.name)
            {
                out.cluster_role_bindings.push(b);
            }
        }
        out.aggregate();
        out
    }

    /// Upstream's ClusterRole aggregation controller
    /// (`pkg/controller/clusterroleaggregation`, `syncClusterRole`): a ClusterRole with an
    /// `aggregationRule` has the rules of every other ClusterRole whose labels match one of its
    /// selectors, in name order, without duplicates. kubesim computes them when authorizing
    /// instead of writing them into the object.
    fn aggregate(&mut self) {
        let snapshot = self.cluster_roles.clone();
        for role in &mut self.cluster_roles {
            let Some(rule) = &role.aggregation_rule else {
                continue;
            };
            let selectors = rule.cluster_role_selectors.clone().unwrap_or_default();
            let mut sources: Vec<&ClusterRole> = snapshot
                .iter()
                .filter(|c| c.metadata.name != role.metadata.name)
                .filter(|c| {
                    let labels = c.metadata.labels.clone().unwrap_or_default();
                    selectors.iter().any(|sel| selector_matches(sel, &labels))
                })
                .collect();
            sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let mut rules: Vec<PolicyRule> = Vec::new();
            for rule in sources.iter().flat_map(|c| c.rules.iter().flatten()) {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
            role.rules = Some(rules);
        }
    }

    /// The part of upstream's bootstrap policy that matters here (not stored as objects):
    /// `cluster-admin` bound to the group `system:masters`; `system:discovery` (GET on `/api`,
    /// `/apis`, `/openapi`, `/version`, health paths and their children) and `system:basic-user`
    /// (self subject access/rules reviews) bound to `system:authenticated`;
    /// `system:public-info-viewer` (health paths and `/version`) bound to `system:authenticated` and
    /// `system:unauthenticated`.
    pub fn bootstrap() -> RbacObjects {
        let role = |name: &str, rules: Value| -> Option<ClusterRole> {
            serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).ok()
        };
        let aggregated = |name: &str, label: &str| -> Option<ClusterRole> {
            serde_json::from_value(json!({"metadata": {"name": name},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}}))
            .ok()
        };
        let binding = |name: &str, groups: &[&str]| -> Option<ClusterRoleBinding> {
            let subjects: Vec<Value> = groups
                .iter()
                .map(|g| json!({"kind": "Group", "apiGroup": RBAC_GROUP, "name": g}))
                .collect();
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            }))
            .ok()
        };
        let public_urls = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
        let mut discovery_urls = vec![
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/openapi",
            "/openapi/*",
        ];
        discovery_urls.extend(public_urls);
        RbacObjects {
            cluster_roles: [
                role(
                    "cluster-admin",
                    json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                           {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
                ),
                role(
                    "system:discovery",
                    json!([{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
                ),
                role(
                    "system:public-info-viewer",
                    json!([{"nonResourceURLs": public_urls, "verbs": ["get"]}]),
                ),
                // The user-facing roles, which upstream fills by aggregation; their own
                // built-in rules for core resources (system:aggregate-to-*) are not modelled.
                aggregated("admin", "rbac.authorization.k8s.io/aggregate-to-admin"),
                aggregated("edit", "rbac.authorization.k8s.io/aggregate-to-edit"),
                aggregated("view", "rbac.authorization.k8s.io/aggregate-to-view"),
                role(
                    "system:basic-user",
                    json!([{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                           {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            cluster_role_bindings: [
                binding("cluster-admin", &["system:masters"]),
                binding("system:discovery", &[AUTHENTICATED]),
                binding("system:basic-user", &[AUTHENTICATED]),
                binding(
                    "system:public-info-viewer",
                    &[AUTHENTICATED, UNAUTHENTICATED],
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ..RbacObjects::default()
        }
    }
}

/// Whether `labels` match a label selector (`matchLabels` and `matchExpressions`, as
/// `metav1.LabelSelectorAsSelector`).
fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let plain = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    plain && expressions
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A rule allows the request.
    Allow,
    /// No rule allows it. `reason` is upstream's RBAC reason (`RBAC: role.rbac.authorization.k8s.io
    /// "x" not found` when a binding of the user names a missing role), or empty.
    Deny {
        /// Appended to the forbidden message after `: ` when not empty.
        reason: String,
    },
}

/// Whether the RBAC objects allow the request, as upstream's RBAC authorizer: the rules of every
/// ClusterRoleBinding naming the user (or one of its groups), then — for namespaced requests — of
/// every RoleBinding in the request's namespace naming it (a RoleBinding to a ClusterRole grants the
/// ClusterRole's rules in that namespace only).
pub fn authorize(a: &Attributes, rbac: &RbacObjects) -> Decision {
    let mut errors: Vec<String> = vec![];
    for b in &rbac.cluster_role_bindings {
        if !applies(&a.user, b.subjects.as_deref().unwrap_or_default(), "") {
            continue;
        }
        match role_rules(rbac, &b.role_ref, "") {
            Ok(rules) if rules.iter().any(|r| rule_allows(a, r)) => return Decision::Allow,
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if !a.namespace.is_empty() {
        for b in rbac
            .role_bindings
            .iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(a.namespace.as_str()))
        {
            if !applies(
                &a.user,
                b.subjects.as_deref().unwrap_or_default(),
                &a.namespace,
            ) {
                continue;
            }
            match role_rules(rbac, &b.role_ref, &a.namespace) {
                Ok(rules) if rules.iter().any(|r| rule_allows(a, r)) => return Decision::Allow,
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    let mut seen = vec![];
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    let reason = match seen.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", seen[0]),
        _ => format!("RBAC: [{}]", seen.join(", ")),
    };
    Decision::Deny { reason }
}

/// Whether one of the subjects is the user: `User` by name, `Group` by membership, `ServiceAccount`
/// by `system:serviceaccount:<ns>:<name>` (namespace defaulting to the binding's).
fn applies(user: &UserInfo, subjects: &[Subject], binding_ns: &str) -> bool {
    subjects.iter().any(|s| match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user.name == format!("{SA_PREFIX}{ns}:{}", s.name)
        }
        _ => false,
    })
}

/// The rules a binding's `roleRef` grants, or the error upstream reports for a missing role.
fn role_rules<'a>(
    rbac: &'a RbacObjects,
    r: &RoleRef,
    binding_ns: &str,
) -> Result<&'a [PolicyRule], String> {
    let rules = match r.kind.as_str() {
        "Role" => rbac
            .roles
            .iter()
            .find(|x| {
                x.metadata.name.as_deref() == Some(r.name.as_str())
                    && x.metadata.namespace.as_deref() == Some(binding_ns)
            })
            .map(|x| x.rules.as_deref())
            .ok_or_else(|| format!("role.{RBAC_GROUP} \"{}\" not found", r.name))?,
        "ClusterRole" => rbac
            .cluster_roles
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(r.name.as_str()))
            .map(|x| x.rules.as_deref())
            .ok_or_else(|| format!("clusterrole.{RBAC_GROUP} \"{}\" not found", r.name))?,
        other => return Err(format!("unsupported role reference kind: \"{other}\"")),
    };
    Ok(rules.unwrap_or_default())
}

fn has_or_all(list: &[String], wanted: &str) -> bool {
    list.iter().any(|x| x == "*" || x == wanted)
}

/// Upstream's `RuleAllows`.
fn rule_allows(a: &Attributes, rule: &PolicyRule) -> bool {
    if !has_or_all(&rule.verbs, &a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|u| {
                u == "*"
                    || *u == a.path
                    || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
            });
    }
    let combined = a.combined_resource();
    let resource_ok = rule
        .resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty()
                    && r.len() == a.subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(a.subresource.as_str()))
        });
    let names = rule.resource_names.as_deref().unwrap_or_default();
    has_or_all(rule.api_groups.as_deref().unwrap_or_default(), &a.api_group)
        && resource_ok
        && (names.is_empty() || names.contains(&a.name))
}

/// The 403 `Status` upstream writes for a denied request.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let detail = if !a.resource_request {
        format!(
            "User \"{}\" cannot {} path \"{}\"",
            a.user.name, a.verb, a.path
        )
    } else if !a.namespace.is_empty() {
        format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
            a.user.name,
            a.verb,
            a.combined_resource(),
            a.api_group,
            a.namespace
        )
    } else {
        format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" at the cluster scope",
            a.user.name,
            a.verb,
            a.combined_resource(),
            a.api_group
        )
    };
    let detail = if reason.is_empty() {
        detail
    } else {
        format!("{detail}: {reason}")
    };
    let qualified = match (a.resource.as_str(), a.api_group.as_str()) {
        ("", _) => String::new(),
        (r, "") => r.to_string(),
        (r, g) => format!("{r}.{g}"),
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {detail}")
    } else if a.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {detail}", a.name)
    };
    let mut details = serde_json::Map::new();
    for (k, v) in [
        ("name", &a.name),
        ("group", &a.api_group),
        ("kind", &a.resource),
    ] {
        if !v.is_empty() {
            details.insert(k.into(), json!(v));
        }
    }
    let mut e = ApiError::new(403, "Forbidden", message);
    e.details = Some(Value::Object(details));
    e
}

/// The user named by `Impersonate-User` (with `Impersonate-Group`s), or `None` without impersonation.
/// Groups (or a UID, or extras) without a user are refused with a 500, as upstream does.
pub fn impersonated_user(headers: &HeaderMap) -> Result<Option<UserInfo>, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let others = headers
        .keys()
        .any(|k| k.as_str() == "impersonate-uid" || k.as_str().starts_with("impersonate-extra-"));
    match user {
        Some(u) if !u.is_empty() => Ok(Some(UserInfo::impersonated(&u, &groups))),
        _ if !groups.is_empty() || others => Err(ApiError::internal(format!(
            "Internal error occurred: requested {groups:?} without impersonating a user"
        ))),
        _ => Ok(None),
    }
}

/// The hook the HTTP layer calls before dispatching a request. A bearer token authenticates as
/// its service account (an invalid one is 401, `src/api/tokens.rs`); on the TLS listener
/// (`secure`) a request without one is `system:anonymous`. An authenticated user that sends
/// impersonation headers must be allowed to `impersonate` the user (`users`) and each group
/// (`groups`), or service account (`serviceaccounts`), as upstream's impersonation filter. Requests
/// on the plain listener without a token act as cluster-admin, impersonating freely. Whoever
/// the request ends up acting as must be allowed by RBAC.
pub fn check(
    st: &State,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    secure: bool,
) -> Result<(), ApiError> {
    let authenticated = match super::tokens::bearer(headers) {
        Some(token) => Some(super::tokens::authenticate(st, token)?),
        None if secure => Some(UserInfo::impersonated(ANONYMOUS, &[])),
        None => None,
    };
    let impersonated = impersonated_user(headers)?;
    let user = match (authenticated, impersonated) {
        (None, None) => return Ok(()),
        (Some(u), None) | (None, Some(u)) => u,
        (Some(caller), Some(target)) => {
            check_impersonation(st, &caller, &target)?;
            target
        }
    };
    let attrs = Attributes::from_request(user, method.as_str(), path, query);
    match authorize(&attrs, &RbacObjects::from_state(st)) {
        Decision::Allow => Ok(()),
        Decision::Deny { reason } => Err(forbidden(&attrs, &reason)),
    }
}

/// Whether `caller` may impersonate `target` (`impersonate` on `serviceaccounts` in the account's
/// namespace, or on `users`, and on `groups` for each group asked for explicitly).
fn check_impersonation(st: &State, caller: &UserInfo, target: &UserInfo) -> Result<(), ApiError> {
    let objects = RbacObjects::from_state(st);
    let mut wanted: Vec<(String, String, String)> = vec![];
    match split_service_account(&target.name) {
        Some((ns, name)) => {
            wanted.push(("serviceaccounts".into(), ns.to_string(), name.to_string()))
        }
        None => wanted.push(("users".into(), String::new(), target.name.clone())),
    }
    for g in &target.groups {
        if g != AUTHENTICATED && !g.starts_with("system:serviceaccounts") {
            wanted.push(("groups".into(), String::new(), g.clone()));
        }
    }
    for (resource, ns, name) in wanted {
        let path = match ns.is_empty() {
            true => format!("/api/v1/{resource}/{name}"),
            false => format!("/api/v1/namespaces/{ns}/{resource}/{name}"),
        };
        let mut attrs = Attributes::from_request(caller.clone(), "GET", &path, &HashMap::new());
        attrs.verb = "impersonate".into();
        if let Decision::Deny { reason } = authorize(&attrs, &objects) {
            return Err(forbidden(&attrs, &reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo::impersonated(&format!("system:serviceaccount:{ns}:{name}"), &[])
    }

    fn attrs(user: UserInfo, method: &str, path: &str, query: &[(&str, &str)]) -> Attributes {
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Attributes::from_request(user, method, path, &q)
    }

    fn objects(v: Value) -> RbacObjects {
        let mut o = RbacObjects::bootstrap();
        for item in v.as_array().unwrap() {
            let it = item.clone();
            match item["kind"].as_str().unwrap() {
                "Role" => o.roles.push(serde_json::from_value(it).unwrap()),
                "ClusterRole" => o.cluster_roles.push(serde_json::from_value(it).unwrap()),
                "RoleBinding" => o.role_bindings.push(serde_json::from_value(it).unwrap()),
                "ClusterRoleBinding" => o
                    .cluster_role_bindings
                    .push(serde_json::from_value(it).unwrap()),
                k => panic!("{k}"),
            }
        }
        o.aggregate();
        o
    }

    #[test]
    fn edit_and_view_aggregate_the_roles_labelled_for_them() {
        let o = objects(json!([
            {"kind": "ClusterRole", "metadata": {"name": "widgets-edit", "labels": {
                "rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
             "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["create", "delete", "list"]}]},
            {"kind": "ClusterRole", "metadata": {"name": "widgets-view", "labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": "true"}},
             "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list"]}]},
            {"kind": "ClusterRole", "metadata": {"name": "unlabelled"},
             "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]},
            {"kind": "RoleBinding", "metadata": {"name": "alice", "namespace": "a"},
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "edit"},
             "subjects": [{"kind": "User", "name": "alice"}]},
            {"kind": "RoleBinding", "metadata": {"name": "bob", "namespace": "a"},
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "User", "name": "bob"}]}
        ]));
        let may = |who: &str, m: &str, p: &str| {
            let u = UserInfo::impersonated(who, &[]);
            authorize(&attrs(u, m, p, &[]), &o) == Decision::Allow
        };
        let widgets = "/apis/example.com/v1/namespaces/a/widgets";
        assert!(may("alice", "POST", widgets));
        assert!(may("alice", "DELETE", &format!("{widgets}/w")));
        assert!(!may(
            "alice",
            "POST",
            "/apis/example.com/v1/namespaces/b/widgets"
        ));
        assert!(!may("alice", "GET", "/api/v1/namespaces/a/secrets"));
        assert!(may("bob", "GET", widgets));
        assert!(!may("bob", "POST", widgets));
    }

    #[test]
    fn request_attributes_follow_upstream_request_info() {
        let u = sa("a", "s");
        let a = attrs(u.clone(), "GET", "/api/v1/namespaces/a/pods/p/log", &[]);
        assert_eq!(
            (
                a.verb.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.name.as_str()
            ),
            ("get", "a", "pods", "log", "p")
        );
        let a = attrs(
            u.clone(),
            "GET",
            "/apis/batch/v1/namespaces/a/jobs",
            &[("watch", "true")],
        );
        assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("watch", "batch"));
        let a = attrs(u.clone(), "GET", "/apis/batch/v1/jobs", &[]);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", ""));
        let a = attrs(u.clone(), "DELETE", "/api/v1/namespaces/a/configmaps", &[]);
        assert_eq!(a.verb, "deletecollection");
        let a = attrs(
            u.clone(),
            "PUT",
            "/apis/batch/v1/namespaces/a/jobs/j/status",
            &[],
        );
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str()),
            ("update", "status")
        );
        let a = attrs(u.clone(), "POST", "/api/v1/namespaces/a/configmaps", &[]);
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("create", ""));
        // A namespace's own URL is namespaced to itself; its status is a subresource.
        let a = attrs(u.clone(), "GET", "/api/v1/namespaces/a", &[]);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "a", "a")
        );
        let a = attrs(u.clone(), "PUT", "/api/v1/namespaces/a/finalize", &[]);
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("namespaces", "finalize")
        );
        // list/watch with a metadata.name field selector carry the name.
        let a = attrs(
            u.clone(),
            "GET",
            "/api/v1/namespaces/a/pods",
            &[("fieldSelector", "metadata.name=p1"), ("watch", "1")],
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "p1"));
        let a = attrs(
            u.clone(),
            "GET",
            "/api/v1/namespaces/a/pods",
            &[("fieldSelector", "metadata.name!=p1")],
        );
        assert_eq!(a.name, "");
        // Discovery is not a resource request.
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/batch",
            "/apis/batch/v1",
            "/version",
            "/openapi/v3",
        ] {
            let a = attrs(u.clone(), "GET", p, &[]);
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, "get");
        }
    }

    #[test]
    fn service_account_users_get_their_groups_unless_groups_are_given() {
        assert_eq!(
            sa("a", "s").groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:a",
                "system:authenticated"
            ]
        );
        let u = UserInfo::impersonated("system:serviceaccount:a:s", &["team".to_string()]);
        assert_eq!(u.groups, ["team", "system:authenticated"]);
        assert_eq!(
            UserInfo::impersonated("bob", &[]).groups,
            ["system:authenticated"]
        );
        assert_eq!(
            UserInfo::impersonated("system:anonymous", &[]).groups,
            ["system:unauthenticated"]
        );
    }

    #[test]
    fn rule_matching_wildcards_subresources_and_names() {
        let o = objects(json!([
            {"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": [
                {"apiGroups": ["*"], "resources": ["widgets"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "list"]},
                {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]},
            {"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "r"},
             "subjects": [{"kind": "User", "name": "bob"}]}
        ]));
        let bob = UserInfo::impersonated("bob", &[]);
        let allowed = |m: &str, p: &str, q: &[(&str, &str)]| {
            authorize(&attrs(bob.clone(), m, p, q), &o) == Decision::Allow
        };
        assert!(allowed(
            "DELETE",
            "/apis/example.com/v1/namespaces/x/widgets/w",
            &[]
        ));
        assert!(allowed("DELETE", "/apis/other.io/v1/widgets", &[]));
        assert!(!allowed(
            "GET",
            "/apis/example.com/v1/namespaces/x/widgets/w/status",
            &[]
        ));
        assert!(allowed("GET", "/api/v1/namespaces/x/pods/p/status", &[]));
        assert!(!allowed("GET", "/api/v1/namespaces/x/pods/p", &[]));
        assert!(allowed("GET", "/api/v1/namespaces/x/configmaps/one", &[]));
        assert!(!allowed("GET", "/api/v1/namespaces/x/configmaps/two", &[]));
        assert!(!allowed("GET", "/api/v1/namespaces/x/configmaps", &[]));
        assert!(allowed(
            "GET",
            "/api/v1/namespaces/x/configmaps",
            &[("fieldSelector", "metadata.name=one")]
        ));
        assert!(allowed("GET", "/metrics", &[]));
        assert!(allowed("GET", "/debug/pprof/heap", &[]));
        assert!(!allowed("POST", "/metrics", &[]));
        assert!(!allowed("GET", "/logs", &[]));
        // Discovery from the bootstrap policy.
        assert!(allowed("GET", "/apis", &[]));
        assert!(allowed("GET", "/openapi/v3/apis/batch/v1", &[]));
    }

    #[test]
    fn missing_roles_and_foreign_namespaces() {
        let o = objects(json!([
            {"kind": "Role", "metadata": {"name": "r", "namespace": "a"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
            {"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "b"},
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
             "subjects": [{"kind": "ServiceAccount", "name": "s"}]},
            {"kind": "RoleBinding", "metadata": {"name": "c", "namespace": "a"},
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
             "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "b"}]}
        ]));
        // The SA subject of binding "b" defaults to the binding's namespace; its Role is not in "b".
        let a = attrs(sa("b", "s"), "GET", "/api/v1/namespaces/b/pods/p", &[]);
        let d = authorize(&a, &o);
        assert_eq!(
            d,
            Decision::Deny {
                reason: "RBAC: role.rbac.authorization.k8s.io \"r\" not found".into()
            }
        );
        let Decision::Deny { reason } = d else {
            unreachable!()
        };
        assert_eq!(
            forbidden(&a, &reason).message,
            "pods \"p\" is forbidden: User \"system:serviceaccount:b:s\" cannot get resource \"pods\" in API group \"\" in the namespace \"b\": RBAC: role.rbac.authorization.k8s.io \"r\" not found"
        );
        // Binding "c" in namespace a names the SA of namespace b explicitly.
        let a = attrs(sa("b", "s"), "GET", "/api/v1/namespaces/a/pods/p", &[]);
        assert_eq!(authorize(&a, &o), Decision::Allow);
        let a = attrs(sa("a", "s"), "GET", "/api/v1/namespaces/a/pods/p", &[]);
        assert_eq!(
            authorize(&a, &o),
            Decision::Deny {
                reason: String::new()
            }
        );
    }

    #[test]
    fn forbidden_messages_as_upstream() {
        let u = sa("x", "y");
        let m = |a: Attributes| forbidden(&a, "").message;
        assert_eq!(
            m(attrs(
                u.clone(),
                "GET",
                "/apis/batch/v1/namespaces/x/jobs",
                &[]
            )),
            "jobs.batch is forbidden: User \"system:serviceaccount:x:y\" cannot list resource \"jobs\" in API group \"batch\" in the namespace \"x\""
        );
        assert_eq!(
            m(attrs(
                u.clone(),
                "GET",
                "/api/v1/namespaces/x/pods/p/log",
                &[]
            )),
            "pods \"p\" is forbidden: User \"system:serviceaccount:x:y\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"x\""
        );
        assert_eq!(
            m(attrs(
                u.clone(),
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                &[("watch", "true")]
            )),
            "customresourcedefinitions.apiextensions.k8s.io is forbidden: User \"system:serviceaccount:x:y\" cannot watch resource \"customresourcedefinitions\" in API group \"apiextensions.k8s.io\" at the cluster scope"
        );
        assert_eq!(
            m(attrs(u.clone(), "GET", "/logs", &[])),
            "forbidden: User \"system:serviceaccount:x:y\" cannot get path \"/logs\""
        );
        let e = forbidden(&attrs(u, "GET", "/api/v1/namespaces/x/secrets/s", &[]), "");
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(e.details, Some(json!({"name": "s", "kind": "secrets"})));
    }
}
