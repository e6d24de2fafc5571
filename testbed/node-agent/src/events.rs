//! The kubelet's events as `events.k8s.io/v1` Events, the way client-go's events library writes
//! them: the first occurrence of an (object, type, reason, action, note) is created, repeats are
//! counted in its `series`. A series is written at most once per 10 s per event, later repeats
//! being folded into one deferred write, so a pod stuck in a back-off loop costs the API server
//! little. Posting never blocks the caller: the API calls run in tasks of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How often one event's series is written at most.
const SERIES_INTERVAL: Duration = Duration::from_secs(10);
/// The API server's cap on `note`.
const MAX_NOTE: usize = 1024;

/// (regarding uid, field path, type, reason, action, note).
type Key = (String, String, String, String, String, String);

struct Entry {
    namespace: String,
    /// The Event's name once it was created.
    name: Option<String>,
    /// Occurrences so far, and how many the API server has been told of.
    count: i32,
    written: i32,
    last_write: Instant,
    /// A create or a deferred series write is on its way.
    busy: bool,
}

/// The object an event is about (`regarding`).
#[derive(Clone, Debug)]
pub struct Regarding {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// `spec.containers{name}` for a container's events.
    pub field_path: Option<String>,
}

impl Regarding {
    pub fn pod(pod: &Pod, field_path: Option<String>) -> Self {
        let m = &pod.metadata;
        Self {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone().unwrap_or_default(),
            field_path,
        }
    }
}

/// Writes events as `reportingController: kubelet` from `reportingInstance: <node>`.
pub struct Recorder {
    client: kube::Client,
    instance: String,
    seen: Mutex<HashMap<Key, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    pub fn new(client: kube::Client, instance: &str) -> Arc<Self> {
        Arc::new(Self {
            client,
            instance: instance.into(),
            seen: Mutex::default(),
        })
    }

    /// Record one occurrence; `type_` is `Normal` or `Warning`.
    pub fn post(
        self: &Arc<Self>,
        obj: &Regarding,
        type_: &str,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let mut note = note.to_string();
        if note.len() > MAX_NOTE {
            let mut cut = MAX_NOTE;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let key: Key = (
            obj.uid.clone(),
            obj.field_path.clone().unwrap_or_default(),
            type_.into(),
            reason.into(),
            action.into(),
            note.clone(),
        );
        let mut seen = lock(&self.seen);
        match seen.get_mut(&key) {
            None => {
                seen.insert(
                    key.clone(),
                    Entry {
                        namespace: obj.namespace.clone(),
                        name: None,
                        count: 1,
                        written: 0,
                        last_write: Instant::now(),
                        busy: true,
                    },
                );
                let this = Arc::clone(self);
                let (obj, type_, reason, action) = (
                    obj.clone(),
                    type_.to_string(),
                    reason.to_string(),
                    action.to_string(),
                );
                tokio::spawn(async move {
                    this.create(key, &obj, &type_, &reason, &action, &note)
                        .await;
                });
            }
            Some(e) => {
                e.count += 1;
                if !e.busy {
                    e.busy = true;
                    let delay =
                        (e.last_write + SERIES_INTERVAL).saturating_duration_since(Instant::now());
                    let this = Arc::clone(self);
                    tokio::spawn(async move { this.write_series(key, delay).await });
                }
            }
        }
    }

    /// Forget the events about an object that is gone.
    pub fn forget(&self, uid: &str) {
        lock(&self.seen).retain(|k, _| k.0 != uid);
    }

    async fn create(
        self: Arc<Self>,
        key: Key,
        obj: &Regarding,
        type_: &str,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let now = Timestamp::now();
        // client-go names events <object>.<hex of the unix nanoseconds>.
        let name = format!("{}.{:x}", obj.name, now.as_nanosecond().max(0));
        let mut regarding = json!({"apiVersion": obj.api_version, "kind": obj.kind,
            "namespace": obj.namespace, "name": obj.name, "uid": obj.uid,
            "resourceVersion": obj.resource_version});
        if let Some(f) = &obj.field_path {
            regarding["fieldPath"] = json!(f);
        }
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": obj.namespace},
            "eventTime": now.to_string(), "reportingController": "kubelet",
            "reportingInstance": self.instance, "action": action, "reason": reason,
            "regarding": regarding, "note": note, "type": type_,
        });
        let created = match serde_json::from_value::<Event>(ev) {
            Ok(ev) => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), &obj.namespace);
                api.create(&PostParams::default(), &ev)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let follow_up = {
            let mut seen = lock(&self.seen);
            match created {
                Err(e) => {
                    tracing::debug!("node-agent: event {reason} on {}: {e}", obj.name);
                    // A later occurrence tries again.
                    seen.remove(&key);
                    None
                }
                Ok(_) => seen.get_mut(&key).map(|e| {
                    e.name = Some(name);
                    e.written = 1;
                    e.last_write = Instant::now();
                    e.busy = e.count > e.written;
                    e.busy
                }),
            }
        };
        if follow_up == Some(true) {
            self.write_series(key, SERIES_INTERVAL).await;
        }
    }

    /// After `delay`, write the series of `key`'s event, and again (each time after the
    /// interval) while occurrences keep coming in meanwhile.
    async fn write_series(self: Arc<Self>, key: Key, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            let target = {
                let mut seen = lock(&self.seen);
                let Some(e) = seen.get_mut(&key) else {
                    return;
                };
                match &e.name {
                    Some(name) if e.count > e.written => {
                        Some((e.namespace.clone(), name.clone(), e.count))
                    }
                    _ => {
                        e.busy = false;
                        None
                    }
                }
            };
            let Some((ns, name, count)) = target else {
                return;
            };
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let last = serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or_default();
            let patch = json!({"series": {"count": count, "lastObservedTime": last}});
            let result = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await;
            let mut seen = lock(&self.seen);
            let Some(e) = seen.get_mut(&key) else {
                return;
            };
            match result {
                Ok(_) => {
                    e.written = count;
                    e.last_write = Instant::now();
                }
                Err(err) => {
                    tracing::debug!("node-agent: event series {name}: {err}");
                    // The event may have expired: the next occurrence creates a new one.
                    seen.remove(&key);
                    return;
                }
            }
            if e.count <= e.written {
                e.busy = false;
                return;
            }
            delay = SERIES_INTERVAL;
        }
    }
}
