//! A fault-injecting HTTP proxy between a controller under test and the real kube-apiserver:
//! the controller's kubeconfig points at the proxy, which forwards everything over TLS as
//! the admin client certificate, and a test can make chosen requests fail, cut or expire
//! open watches, and drop every connection, to see the controller survive what a real API
//! server does under load, upgrades and restarts.
//!
//! The proxy authenticates upstream as whoever its client certificate names (the cluster
//! admin in the testbed), whatever the client sends: a client behind it is authorized as
//! that identity, so RBAC tests must not go through it. Only the controller connects
//! through it; kubectl and the tests' own clients talk to the API server directly.

mod request_info;
mod server;
mod status;
mod upstream;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::broadcast;

pub use request_info::{RequestInfo, resolve as resolve_request};

/// Where the proxy forwards to, and as whom.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA the API server's serving certificate is checked against (PEM).
    pub ca_pem: String,
    /// The client certificate the proxy presents (PEM; a chain may follow the leaf).
    pub client_cert_pem: String,
    /// Its key (PEM: PKCS#8, or PKCS#1 RSA, or SEC1 EC).
    pub client_key_pem: String,
}

/// What a matched request gets instead of (or on top of) being forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A Kubernetes `Status` body with this HTTP code, its reason as the API server would
    /// give it: 409 `Conflict` (with upstream's "Operation cannot be fulfilled on ... the
    /// object has been modified" message), 404 `NotFound`, 500 `InternalError`, 503
    /// `ServiceUnavailable`, 504 `Timeout`, 422 `Invalid`, 410 `Expired`... `Status(429)` is
    /// `TooManyRequests { retry_after_seconds: 1 }`. The request does not reach upstream.
    /// Note that kube retries 429, 503 and 504 by itself.
    Status(u16),
    /// 429 `TooManyRequests` with a `Retry-After` header (and `details.retryAfterSeconds`),
    /// as API priority and fairness rejects a request.
    TooManyRequests { retry_after_seconds: u32 },
    /// The connection is closed without an answer (the client sees a connection error).
    Reset,
    /// For a watch: forwarded, then the stream ends cleanly after this many events
    /// (bookmarks included). Matches watches only.
    EndWatchEarly { after_events: u32 },
    /// For a watch: a 200 whose stream is one in-stream ERROR event carrying a 410
    /// `Expired` Status, then its end, as the API server answers a watch from a compacted
    /// resourceVersion (kube's watcher then re-lists). Does not reach upstream. Matches
    /// watches only.
    WatchGone,
}

impl Fault {
    fn watch_only(&self) -> bool {
        matches!(self, Fault::EndWatchEarly { .. } | Fault::WatchGone)
    }
}

/// How to start a proxy beyond its upstream: [`FaultProxy::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The address to listen on; `127.0.0.1:0` (any free port) by default.
    pub listen: SocketAddr,
    /// Answer `GET /debug/requests` on the proxy's own port (not forwarded, not counted)
    /// with the counts of [`FaultProxy::requests_by_agent`] as JSON, `{agent: {"verb
    /// resource": count}}`. Off by default; no Kubernetes API path starts with `/debug`.
    pub debug_requests: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            debug_requests: false,
        }
    }
}

/// `(verb, resource)`, e.g. `("patch", "reportjobs/status")`.
pub type RequestKey = (String, String);

/// Response bodies the proxy sends: streamed from upstream, or made here.
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A pending `fail_next`.
#[derive(Debug)]
struct Rule {
    verb: String,
    resource: String,
    remaining: u32,
    fault: Fault,
}

impl Rule {
    fn matches(&self, info: &RequestInfo) -> bool {
        let verb = self.verb == "*" || self.verb == info.verb;
        let resource = match self.resource.as_str() {
            "*" => true,
            // RBAC's `*/status`: that subresource of any resource.
            pattern if pattern.starts_with("*/") => info
                .resource
                .split_once('/')
                .is_some_and(|(_, sub)| sub == &pattern[2..]),
            pattern => pattern == info.resource,
        };
        verb && resource && (!self.fault.watch_only() || info.verb == "watch")
    }
}

#[derive(Debug, Default)]
struct Counts {
    by_request: BTreeMap<RequestKey, u64>,
    by_agent: BTreeMap<String, BTreeMap<RequestKey, u64>>,
}

/// What the connection and request tasks share with the handle.
struct Shared {
    client: upstream::UpstreamClient,
    /// `https://host:port` of the API server.
    base: String,
    rules: Mutex<Vec<Rule>>,
    counts: Mutex<Counts>,
    watch_commands: broadcast::Sender<watch::Command>,
    /// Whether `GET /debug/requests` is answered here ([`Options::debug_requests`]).
    debug_requests: bool,
    /// Bumped to close every client connection.
    connections: tokio::sync::watch::Sender<u64>,
}

/// A lock that outlives a panicking holder: the data are counters and rule lists, whole
/// after any single update.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, info: &RequestInfo, agent: String) {
        let key = (info.verb.clone(), info.resource.clone());
        let mut counts = lock(&self.counts);
        *counts.by_request.entry(key.clone()).or_default() += 1;
        *counts
            .by_agent
            .entry(agent)
            .or_default()
            .entry(key)
            .or_default() += 1;
    }

    /// The fault for this request, if a pending rule matches (the oldest first); counts the
    /// rule down.
    fn take_fault(&self, info: &RequestInfo) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let i = rules
            .iter()
            .position(|r| r.remaining > 0 && r.matches(info))?;
        let rule = &mut rules[i];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            rules.remove(i);
        }
        Some(fault)
    }

    /// The counts by agent as `GET /debug/requests` answers them: `{agent: {"verb
    /// resource": count}}`.
    fn requests_json(&self) -> serde_json::Value {
        let counts = lock(&self.counts);
        let by_agent = counts.by_agent.iter().map(|(agent, keys)| {
            let keys = keys
                .iter()
                .map(|((verb, resource), n)| (format!("{verb} {resource}"), (*n).into()))
                .collect::<serde_json::Map<_, _>>();
            (agent.clone(), serde_json::Value::Object(keys))
        });
        serde_json::Value::Object(by_agent.collect())
    }
}

/// A running proxy on `127.0.0.1`, serving plain HTTP/1.1 on its own runtime (its own
/// threads, as a separate process would be), so that it keeps serving whatever the test's
/// runtime is doing. Stopped by [`FaultProxy::stop`] or on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and starts serving. Does not block on the upstream: a wrong
    /// address shows as 502s. May be called from inside or outside an async context.
    pub fn start(upstream: Upstream) -> anyhow::Result<FaultProxy> {
        FaultProxy::start_with(upstream, Options::default())
    }

    /// [`FaultProxy::start`] with [`Options`]: another listening address, the
    /// `/debug/requests` endpoint.
    pub fn start_with(upstream: Upstream, options: Options) -> anyhow::Result<FaultProxy> {
        let base = upstream::base_url(&upstream)?;
        let client = upstream::client(&upstream)?;
        let listener = std::net::TcpListener::bind(options.listen)
            .with_context(|| format!("binding {}", options.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("faultproxy")
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
        };
        let listener = match listener {
            Ok(listener) => listener,
            Err(e) => {
                // Dropping a runtime may not block when called from an async context.
                runtime.shutdown_background();
                return Err(e).context("registering the listener");
            }
        };
        let (watch_commands, _) = broadcast::channel(64);
        let (connections, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            client,
            base,
            rules: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            watch_commands,
            debug_requests: options.debug_requests,
            connections,
        });
        runtime.spawn(server::serve(listener, shared.clone()));
        Ok(FaultProxy {
            shared,
            addr,
            runtime: Some(runtime),
        })
    }

    /// `http://ADDRESS:PORT` (`http://127.0.0.1:PORT` unless [`Options::listen`] said otherwise).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig whose server is the proxy, with a user without credentials (the
    /// proxy brings its own) and namespace `default`.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let kubeconfig = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: faultproxy
  cluster:
    server: {}
users:
- name: faultproxy
  user: {{}}
contexts:
- name: faultproxy
  context:
    cluster: faultproxy
    user: faultproxy
    namespace: default
current-context: faultproxy
",
            self.url()
        );
        std::fs::write(path, kubeconfig).with_context(|| format!("writing {}", path.display()))
    }

    /// The next `times` requests matching `verb` and `resource` get `fault`. `"*"` matches
    /// any verb or resource (`"*/status"` any resource's status subresource); verbs and
    /// resources are as RBAC names them (see [`RequestInfo`]). Rules are tried oldest
    /// first; a request takes at most one fault. `EndWatchEarly` and `WatchGone` match only
    /// watches.
    pub fn fail_next(&self, verb: &str, resource: &str, times: u32, fault: Fault) {
        if times == 0 {
            return;
        }
        lock(&self.shared.rules).push(Rule {
            verb: verb.to_string(),
            resource: resource.to_string(),
            remaining: times,
            fault,
        });
    }

    /// Forgets every pending `fail_next`.
    pub fn clear_faults(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many injections are still pending, over all rules.
    pub fn pending_faults(&self) -> u64 {
        lock(&self.shared.rules)
            .iter()
            .map(|r| u64::from(r.remaining))
            .sum()
    }

    /// Ends every watch stream open now, cleanly at an event boundary (the client sees
    /// the stream end and re-watches from its last resourceVersion).
    pub fn end_watches(&self) {
        let _ = self.shared.watch_commands.send(watch::Command::End);
    }

    /// Every watch open now gets an in-stream ERROR event with a 410 `Expired` Status, then
    /// ends, as after an etcd compaction (kube's watcher then re-lists). A protobuf watch
    /// just ends.
    pub fn expire_watches(&self) {
        let _ = self.shared.watch_commands.send(watch::Command::Expire);
    }

    /// Closes every open client connection at once, watches and requests in flight
    /// included, as an API server restart would. New connections are served as before.
    pub fn drop_connections(&self) {
        self.shared.connections.send_modify(|n| *n += 1);
    }

    /// Requests seen so far by `(verb, resource)`, e.g. `("patch", "reportjobs/status")`;
    /// non-resource requests as `(method, path)`. Faulted requests count; a watch counts
    /// once, when it starts.
    pub fn requests(&self) -> BTreeMap<RequestKey, u64> {
        lock(&self.shared.counts).by_request.clone()
    }

    /// The same counts by client: the User-Agent's first word (`kubectl`, `reportjob`,
    /// `unknown` when there is none).
    pub fn requests_by_agent(&self) -> BTreeMap<String, BTreeMap<RequestKey, u64>> {
        lock(&self.shared.counts).by_agent.clone()
    }

    /// Stops serving: every connection is closed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Waiting is not allowed on an async thread; the tasks are dropped on the
                // proxy's own threads right after.
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.url())
            .field("upstream", &self.shared.base)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn info(method: Method, path: &str, query: Option<&str>) -> RequestInfo {
        request_info::resolve(&method, path, query)
    }

    #[test]
    fn rules_match_by_verb_and_resource() {
        let rule = |verb: &str, resource: &str, fault: Fault| Rule {
            verb: verb.into(),
            resource: resource.into(),
            remaining: 1,
            fault,
        };
        let status_patch = info(
            Method::PATCH,
            "/apis/reporting.dev/v1/namespaces/t/reportjobs/a/status",
            None,
        );
        let watch = info(Method::GET, "/api/v1/pods", Some("watch=true"));
        let list = info(Method::GET, "/api/v1/pods", None);
        assert!(rule("patch", "reportjobs/status", Fault::Status(500)).matches(&status_patch));
        assert!(!rule("patch", "reportjobs", Fault::Status(500)).matches(&status_patch));
        assert!(rule("*", "*/status", Fault::Status(500)).matches(&status_patch));
        assert!(!rule("*", "*/log", Fault::Status(500)).matches(&status_patch));
        assert!(rule("*", "*", Fault::Reset).matches(&list));
        assert!(rule("*", "pods", Fault::WatchGone).matches(&watch));
        assert!(!rule("*", "pods", Fault::WatchGone).matches(&list));
        assert!(!rule("*", "*", Fault::EndWatchEarly { after_events: 1 }).matches(&list));
    }
}
