//! Watch streams: newline-delimited JSON events, bookmarks, timeouts and 410 for compacted RVs.

use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Change, Store};
use super::table::partial;
use super::transform::watch_table;
use bytes::Bytes;
use serde_json::{Value, json};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What a watch asks for.
pub struct WatchSpec {
    pub group: String,
    pub plural: String,
    pub kind: String,
    pub api_version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub metadata_only: bool,
    /// Events carry Tables of this kind (`as=Table`), see `transform::watch_table`.
    pub table: Option<ResourceInfo>,
    /// Whether a Table with column definitions has been sent (only the first event has them).
    pub headers_sent: Cell<bool>,
}

impl WatchSpec {
    fn matches(&self, c: &Change) -> bool {
        c.group == self.group
            && c.plural == self.plural
            && self.namespace.as_ref().is_none_or(|n| *n == c.namespace)
    }

    fn selected(&self, v: &Value) -> bool {
        self.labels.matches(v) && self.fields.matches(v)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        match &self.table {
            _ if kind == "ERROR" => event_line(kind, &obj.to_string()),
            Some(ri) => event_line(
                kind,
                &watch_table(ri, obj, !self.headers_sent.replace(true)).to_string(),
            ),
            None if self.metadata_only => event_line(kind, &partial(obj).to_string()),
            None => event_line(kind, &obj.to_string()),
        }
    }

    /// The line for a change's object: whole objects use the change's JSON text, shared by
    /// every watcher.
    fn change_line(&self, kind: &str, c: &Change) -> Bytes {
        if self.table.is_none() && !self.metadata_only {
            event_line(kind, c.object_json())
        } else {
            self.line(kind, &c.object)
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        if self.table.is_some() {
            // A Table with no rows: only the resourceVersion matters to a client.
            let t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": null, "rows": []});
            let mut s = json!({"type": "BOOKMARK", "object": t}).to_string();
            s.push('\n');
            return Bytes::from(s);
        }
        let (kind, av) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.kind.clone(), self.api_version.clone())
        };
        let mut s = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": av, "metadata": meta}}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// The event a change means for this watch, given selectors (leaving the selection is DELETED).
    fn event_for(&self, c: &Change) -> Option<Bytes> {
        let now_in = self.selected(&c.object);
        let was_in = c.old.as_ref().is_some_and(|o| self.selected(o));
        let kind = match (c.kind, was_in, now_in) {
            ("DELETED", _, true) => "DELETED",
            ("ADDED", _, true) => "ADDED",
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            _ => return None,
        };
        Some(self.change_line(kind, c))
    }
}

/// `{"object":<object>,"type":<kind>}` and a newline (the key order `json!` gives); `kind` is
/// one of the fixed event types.
fn event_line(kind: &str, object_json: &str) -> Bytes {
    let mut s = String::with_capacity(object_json.len() + kind.len() + 24);
    s.push_str("{\"object\":");
    s.push_str(object_json);
    s.push_str(",\"type\":\"");
    s.push_str(kind);
    s.push_str("\"}\n");
    Bytes::from(s)
}

fn expired(rv: u64, oldest: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({oldest})"), "reason": "Expired", "code": 410})
}

/// Start a watch; the receiver yields the response body chunks.
pub fn start(store: Arc<Store>, spec: WatchSpec) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut epoch = store.watch_epoch.subscribe();
    epoch.mark_unchanged();
    // Snapshot under the lock so no change falls between history and live events.
    let (mut live, initial, snapshot_rv, too_old) = {
        let st = store.lock();
        let live = store.changes.subscribe();
        let mut initial: Vec<Bytes> = vec![];
        let mut too_old = None;
        match spec.resource_version {
            Some(rv) if rv > 0 && !spec.send_initial_events => {
                if rv < st.compacted {
                    too_old = Some(expired(rv, st.compacted));
                } else {
                    // History is in revision order: start at the first change after `rv`.
                    let first = st.history.partition_point(|c| c.rv <= rv);
                    for c in st.history.range(first..).filter(|c| spec.matches(c)) {
                        if let Some(b) = spec.event_for(c) {
                            initial.push(b);
                        }
                    }
                }
            }
            _ => {
                for (_, v) in st.range(&spec.group, &spec.plural, spec.namespace.as_deref()) {
                    if spec.selected(v) {
                        initial.push(spec.line("ADDED", v));
                    }
                }
                if spec.send_initial_events {
                    initial.push(spec.bookmark(st.rv, true));
                }
            }
        }
        (live, initial, st.rv, too_old)
    };
    tokio::spawn(async move {
        if let Some(status) = too_old {
            let _ = tx.send(spec.line("ERROR", &status)).await;
            return;
        }
        for b in initial {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let mut seen = snapshot_rv;
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if spec.bookmarks {
                        let _ = tx.send(spec.bookmark(seen, false)).await;
                    }
                    return;
                }
                _ = epoch.changed() => return,
                _ = tick.tick() => {
                    if spec.bookmarks && tx.send(spec.bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                r = live.recv() => match r {
                    Ok(c) => {
                        if c.rv <= seen {
                            continue;
                        }
                        seen = c.rv;
                        if spec.matches(&c) && let Some(b) = spec.event_for(&c) && tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_what_json_gives() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a\"b"}, "data": {"k": "v\n"}});
        let want = format!("{}\n", json!({"type": "MODIFIED", "object": obj}));
        assert_eq!(event_line("MODIFIED", &obj.to_string()), Bytes::from(want));
    }
}
