//! A core/v1 Event recorder as client-go's `record.EventRecorder` writes them: one Event per distinct
//! (object, type, reason, message), later repeats bump `count` and `lastTimestamp` with a patch, as the
//! EventCorrelator does (its similar-message aggregation after 10 events is not modelled).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// (involved uid, type, reason, message).
type EventKey = (String, String, String, String);

/// Who reports (`source.component`, `reportingComponent`) and from where (`source.host`).
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    host: String,
    /// (involved uid, type, reason, message) -> (event name, count).
    seen: Mutex<HashMap<EventKey, (String, i64)>>,
}

/// The object an event is about, as `involvedObject`.
pub struct Involved<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: &'a str,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str, host: &str) -> Self {
        Self {
            client,
            component,
            host: host.into(),
            seen: Mutex::default(),
        }
    }

    /// Record `reason`/`message` of type `Warning` or `Normal`; failures are logged, never returned.
    pub async fn event(&self, obj: &Involved<'_>, type_: &str, reason: &str, message: &str) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), obj.namespace);
        let key = (
            obj.uid.to_string(),
            type_.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Timestamp::now().to_string();
        let prior = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some((name, count)) = prior {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .is_ok()
            {
                self.remember(key, name, count + 1);
                return;
            }
        }
        // client-go names events <object>.<hex of the unix nanoseconds>.
        let name = format!("{}.{:x}", obj.name, Timestamp::now().as_nanosecond().max(0));
        let mut source = json!({"component": self.component});
        if !self.host.is_empty() {
            source["host"] = json!(self.host);
        }
        let ev: Value = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": obj.namespace},
            "involvedObject": {"apiVersion": obj.api_version, "kind": obj.kind, "namespace": obj.namespace,
                "name": obj.name, "uid": obj.uid, "resourceVersion": obj.resource_version},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": source,
            "reportingComponent": self.component, "reportingInstance": self.host,
        });
        let ev: Event = match serde_json::from_value(ev) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("kubesim runner: event: {e}");
                return;
            }
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => self.remember(key, name, 1),
            Err(e) => tracing::debug!("kubesim runner: event {reason}: {e}"),
        }
    }

    fn remember(&self, key: EventKey, name: String, count: i64) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (name, count));
    }
}
