//! The object store: one revision counter, objects as JSON, watch history, GC and deletion.
//!
//! Over 600 lines for a reason: create, update, delete, garbage collection and the watch history
//! share one lock and the one revision counter, which is what makes writes and events totally
//! ordered; they stay in the one type that owns them.

use super::apply::{self, Managers};
use super::error::{ApiError, ApiResult};
use super::index::Indexes;
use super::meta::{finalizers, new_uid, normalize, now};
use super::resources::{ResourceInfo, builtins, from_crd};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::{broadcast, watch};

/// `(group, plural, namespace, name)`; namespace is empty for cluster-scoped objects.
pub type Key = (String, String, String, String);

/// One change, as watchers see it. The objects are shared with the store, never copied per
/// watcher; the object's JSON text is made once, by the first watcher that sends it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
    json: OnceLock<String>,
}

impl Change {
    /// The object as JSON text, serialized once for every watcher.
    pub fn object_json(&self) -> &str {
        self.json.get_or_init(|| self.object.to_string())
    }
}

/// Deletion propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Mutable store state, guarded by one lock so every write gets the next revision in order.
pub struct State {
    pub rv: u64,
    /// Objects are immutable once stored: a write stores a new `Arc`, so readers (lists,
    /// watches, history) share them without copying.
    pub objects: BTreeMap<Key, Arc<Value>>,
    index: Indexes,
    pub history: VecDeque<Arc<Change>>,
    /// Watches from revisions below this get 410 Expired.
    pub compacted: u64,
    pub owners: HashMap<Key, Managers>,
    pub resources: Vec<ResourceInfo>,
    pub data_dir: PathBuf,
    /// The key service-account tokens are signed with (made at start, `src/api/tokens.rs`).
    pub signing_key: Vec<u8>,
    /// The cluster CA (PEM), once the TLS listener made it; published as `kube-root-ca.crt`.
    pub ca_pem: Option<String>,
    tx: broadcast::Sender<Arc<Change>>,
}

const HISTORY_CAP: usize = 100_000;

/// Shared store handle.
pub struct Store {
    state: Mutex<State>,
    pub changes: broadcast::Sender<Arc<Change>>,
    /// Bumped to make every open watch end.
    pub watch_epoch: watch::Sender<u64>,
}

impl Store {
    pub fn new(data_dir: PathBuf) -> Arc<Store> {
        let (tx, _) = broadcast::channel(1 << 16);
        let (epoch, _) = watch::channel(0);
        let mut st = State {
            rv: 1,
            objects: BTreeMap::new(),
            index: Indexes::default(),
            history: VecDeque::new(),
            compacted: 0,
            owners: HashMap::new(),
            resources: builtins(),
            data_dir,
            signing_key: {
                use rand::Rng as _;
                rand::rng().random::<[u8; 32]>().to_vec()
            },
            ca_pem: None,
            tx: tx.clone(),
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let ri = st.find("", "namespaces").cloned();
            if let Some(ri) = ri {
                let _ = st.create(
                    &ri,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                    "kubesim",
                );
            }
        }
        if let Some(ri) = st.find("", "nodes").cloned() {
            let _ = st.create(&ri, "", super::services::node(), "kubesim");
        }
        Arc::new(Store {
            state: Mutex::new(st),
            changes: tx,
            watch_epoch: epoch,
        })
    }

    /// Publish the cluster CA as `kube-root-ca.crt` in every namespace (and in later ones).
    pub fn set_ca(&self, pem: &str) {
        let mut st = self.lock();
        st.ca_pem = Some(pem.to_string());
        let Some(ri) = st.find("", "namespaces").cloned() else {
            return;
        };
        let names: Vec<String> = st
            .list(&ri, None)
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect();
        for ns in names {
            super::serviceaccounts::ensure_root_ca(&mut st, &ns);
        }
    }

    /// Create (or point at `secure_port`) the `kubernetes` Service in `default`.
    pub fn ensure_kubernetes_service(&self, secure_port: u16) {
        let mut st = self.lock();
        let Some(ri) = st.find("", "services").cloned() else {
            return;
        };
        let svc = super::services::kubernetes_service(secure_port);
        match st.get(&ri, "default", "kubernetes") {
            Ok(mut cur) => {
                cur["spec"]["ports"] = svc["spec"]["ports"].clone();
                let _ = st.replace(&ri, "default", "kubernetes", cur, false, "kube-apiserver");
            }
            Err(_) => {
                let _ = st.create(&ri, "default", svc, "kube-apiserver");
            }
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Forget history: watches from older revisions get 410.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// End every open watch.
    pub fn drop_watches(&self) {
        self.watch_epoch.send_modify(|e| *e += 1);
    }

    /// A private copy of the objects, field managers, kinds and revision, with no history and no
    /// watchers: what a dry run writes to (`src/api/dryrun.rs`).
    pub fn fork(&self, data_dir: PathBuf) -> Arc<Store> {
        let (tx, _) = broadcast::channel(16);
        let (epoch, _) = watch::channel(0);
        let st = self.lock();
        let copy = State {
            rv: st.rv,
            objects: st.objects.clone(),
            index: st.index.clone(),
            history: VecDeque::new(),
            compacted: st.rv,
            owners: st.owners.clone(),
            resources: st.resources.clone(),
            data_dir,
            signing_key: st.signing_key.clone(),
            ca_pem: st.ca_pem.clone(),
            tx: tx.clone(),
        };
        Arc::new(Store {
            state: Mutex::new(copy),
            changes: tx,
            watch_epoch: epoch,
        })
    }
}

fn key_of(ri: &ResourceInfo, ns: &str, name: &str) -> Key {
    (
        ri.group.clone(),
        ri.plural.clone(),
        if ri.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn strip(v: &Value, drop_status: bool) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
        if drop_status {
            o.remove("status");
        }
    }
    v
}

impl State {
    pub fn find(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    pub fn find_version(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    fn emit(&mut self, key: &Key, kind: &'static str, object: Arc<Value>, old: Option<Arc<Value>>) {
        let c = Arc::new(Change {
            rv: self.rv,
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: key.2.clone(),
            kind,
            object,
            old,
            json: OnceLock::new(),
        });
        self.history.push_back(c.clone());
        while self.history.len() > HISTORY_CAP {
            if let Some(f) = self.history.pop_front() {
                self.compacted = f.rv;
            }
        }
        let _ = self.tx.send(c);
    }

    /// A private copy of an object (to change and write back).
    pub fn get(&self, ri: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Value> {
        self.get_shared(ri, ns, name).map(|v| (*v).clone())
    }

    /// An object as stored, shared.
    pub fn get_shared(&self, ri: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.objects
            .get(&key_of(ri, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))
    }

    /// Private copies of the objects of a resource, optionally in one namespace, ordered by
    /// namespace and name.
    pub fn list(&self, ri: &ResourceInfo, ns: Option<&str>) -> Vec<Value> {
        self.range(&ri.group, &ri.plural, ns)
            .map(|(_, v)| (**v).clone())
            .collect()
    }

    /// The stored objects of a resource, optionally in one namespace, in key order: a range of
    /// the map (keys sort by group, plural, namespace, name), not a scan of the whole store.
    pub fn range<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        // The first key past the range: the next namespace (or resource); "\0" sorts first.
        let (from, to): (Key, Key) = match ns {
            Some(n) => (
                (group.into(), plural.into(), n.into(), String::new()),
                (group.into(), plural.into(), format!("{n}\0"), String::new()),
            ),
            None => (
                (group.into(), plural.into(), String::new(), String::new()),
                (
                    group.into(),
                    format!("{plural}\0"),
                    String::new(),
                    String::new(),
                ),
            ),
        };
        self.objects.range(from..to)
    }

    /// Store `obj` under `key`, keeping the indexes in step.
    fn put(&mut self, key: &Key, obj: Arc<Value>) {
        if let Some(old) = self.objects.get(key) {
            self.index.remove(key, old);
        }
        self.index.add(key, &obj);
        self.objects.insert(key.clone(), obj);
    }

    /// Take the object under `key` out of the store and its indexes.
    fn take(&mut self, key: &Key) -> Option<Arc<Value>> {
        let old = self.objects.remove(key)?;
        self.index.remove(key, &old);
        Some(old)
    }

    fn set_type_meta(ri: &ResourceInfo, obj: &mut Value) {
        obj["apiVersion"] = json!(ri.api_version());
        obj["kind"] = json!(ri.kind);
    }

    /// Store a new or changed object under the next revision. No-op writes return `old`.
    fn commit(&mut self, key: &Key, mut new: Value) -> ApiResult<Value> {
        normalize(&mut new);
        let old = self.objects.get(key).cloned();
        if let Some(old) = &old {
            // Compared as if at the old revision; every path below sets the revision anew.
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if new == **old {
                return Ok((**old).clone());
            }
            if old["metadata"]["deletionTimestamp"].is_string() {
                let before = finalizers(old);
                if finalizers(&new).iter().any(|f| !before.contains(f)) {
                    return Err(ApiError::invalid(
                        &key.1,
                        &key.0,
                        &key.1,
                        &key.3,
                        vec![(
                            "FieldValueForbidden".into(),
                            "metadata.finalizers".into(),
                            "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                        )],
                    ));
                }
                new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"].clone();
                if finalizers(&new).is_empty() {
                    self.rv += 1;
                    return Ok(self.remove(key));
                }
            }
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let new = Arc::new(new);
        self.put(key, new.clone());
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.emit(key, kind, new.clone(), old);
        Ok((*new).clone())
    }

    /// Remove an object at the current revision, emit DELETED and collect its dependents.
    fn remove(&mut self, key: &Key) -> Value {
        let Some(obj) = self.take(key) else {
            return Value::Null;
        };
        self.owners.remove(key);
        let mut obj = Arc::unwrap_or_clone(obj);
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(key, "DELETED", Arc::new(obj.clone()), None);
        if key.0.is_empty() && key.1 == "serviceaccounts" && key.3 == "default" {
            super::serviceaccounts::ensure_default(self, &key.2);
        }
        if key.0.is_empty()
            && key.1 == "configmaps"
            && key.3 == super::serviceaccounts::ROOT_CA_CONFIGMAP
        {
            super::serviceaccounts::ensure_root_ca(self, &key.2);
        }
        if key.0.is_empty() && key.1 == "namespaces" {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.2 == key.3)
                .cloned()
                .collect();
            for k in inside {
                let _ = self.delete_key(&k, Propagation::Background);
            }
        }
        if key.0 == "apiextensions.k8s.io" && key.1 == "customresourcedefinitions" {
            let group = obj["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let crs: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.0 == group && k.1 == plural)
                .cloned()
                .collect();
            for k in crs {
                self.rv += 1;
                self.remove(&k);
            }
            self.resources
                .retain(|r| !(r.group == group && r.plural == plural));
        }
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.collect_dependents(uid);
        }
        self.release_foreground_owners();
        obj
    }

    fn dependents(&self, uid: &str) -> Vec<Key> {
        self.index.dependents(uid)
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.index.uid_exists(uid)
    }

    fn strip_owner(&mut self, key: &Key, uid: &str) {
        if let Some(mut v) = self.objects.get(key).map(|v| (**v).clone()) {
            if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
            }
            let _ = self.commit(key, v);
        }
    }

    /// The garbage collector's pass after an owner went away.
    fn collect_dependents(&mut self, uid: &str) {
        for dep in self.dependents(uid) {
            let Some(v) = self.objects.get(&dep) else {
                continue;
            };
            let others_alive = v["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != uid)
                .any(|r| r["uid"].as_str().is_some_and(|u| self.uid_exists(u)));
            if others_alive {
                self.strip_owner(&dep, uid);
            } else {
                let _ = self.delete_key(&dep, Propagation::Background);
            }
        }
    }

    /// Owners deleted in the foreground go once their dependents are gone.
    fn release_foreground_owners(&mut self) {
        let waiting: Vec<(Key, String)> = self
            .index
            .foreground()
            .into_iter()
            .filter_map(|k| {
                let uid = self.objects.get(&k)?["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                Some((k, uid))
            })
            .collect();
        for (k, uid) in waiting {
            if self.dependents(&uid).is_empty()
                && let Some(mut v) = self.objects.get(&k).map(|v| (**v).clone())
            {
                if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|x| x != "foregroundDeletion");
                }
                let _ = self.commit(&k, v);
            }
        }
    }

    /// Delete by key. Returns the object if deletion is pending on finalizers, None if it is gone.
    pub fn delete_key(&mut self, key: &Key, policy: Propagation) -> ApiResult<Option<Value>> {
        let Some(obj) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(&key.0, &key.1, &key.3));
        };
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut obj2 = (*obj).clone();
        match policy {
            Propagation::Orphan => {
                for dep in self.dependents(&uid) {
                    self.strip_owner(&dep, &uid);
                }
            }
            Propagation::Foreground => {
                let deps = self.dependents(&uid);
                if !deps.is_empty() && obj["metadata"]["deletionTimestamp"].is_null() {
                    let mut f = finalizers(&obj);
                    if !f.iter().any(|x| x == "foregroundDeletion") {
                        f.push("foregroundDeletion".into());
                    }
                    obj2["metadata"]["finalizers"] = json!(f);
                }
            }
            Propagation::Background => {}
        }
        if !finalizers(&obj2).is_empty() {
            if obj2["metadata"]["deletionTimestamp"].is_null() {
                obj2["metadata"]["deletionTimestamp"] = json!(now());
                obj2["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                // Written directly: commit would refuse the finalizer added for foreground deletion.
                self.rv += 1;
                obj2["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                let obj2 = Arc::new(obj2);
                self.put(key, obj2.clone());
                self.emit(key, "MODIFIED", obj2, Some(obj));
                if policy == Propagation::Foreground {
                    for dep in self.dependents(&uid) {
                        let _ = self.delete_key(&dep, Propagation::Foreground);
                    }
                    self.release_foreground_owners();
                }
            }
            return Ok(self.objects.get(key).map(|v| (**v).clone()));
        }
        self.rv += 1;
        self.remove(key);
        Ok(None)
    }

    /// Create an object (after admission). `manager` records field ownership.
    pub fn create(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        mut obj: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        Self::set_type_meta(ri, &mut obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match obj["metadata"]["generateName"].as_str() {
                Some(g) if !g.is_empty() => name = format!("{g}{}", super::meta::name_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        &ri.kind_group(),
                        &ri.group,
                        &ri.kind,
                        "",
                        vec![(
                            "FieldValueRequired".into(),
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            }
        }
        if ri.namespaced {
            if let Some(n) = obj["metadata"]["namespace"].as_str()
                && !n.is_empty()
                && n != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let nskey: Key = (
                String::new(),
                "namespaces".into(),
                String::new(),
                ns.to_string(),
            );
            if !self.objects.contains_key(&nskey) {
                return Err(ApiError::not_found("", "namespaces", ns));
            }
            if self.objects[&nskey]["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let key = key_of(ri, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&ri.group, &ri.plural, &name));
        }
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if !m["uid"].is_string() {
            m["uid"] = json!(new_uid());
        }
        m["creationTimestamp"] = json!(now());
        if let Some(o) = m.as_object_mut() {
            o.remove("resourceVersion");
            o.remove("deletionTimestamp");
            o.remove("deletionGracePeriodSeconds");
            o.remove("managedFields");
            o.remove("selfLink");
        }
        if ri.generation {
            obj["metadata"]["generation"] = json!(1);
        } else if let Some(o) = obj["metadata"].as_object_mut() {
            o.remove("generation");
        }
        let mut owners = Managers::new();
        apply::record_update(&json!({}), &obj, manager, &mut owners);
        let created = self.commit(&key, obj)?;
        self.owners.insert(key.clone(), owners);
        // The garbage collector deletes a dependent whose owners are all gone, also one created
        // after they went (a Job's pod created from a stale cache after the Job was deleted).
        let owner_uids: Vec<&str> = created["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uid"].as_str())
            .collect();
        if !owner_uids.is_empty() && !owner_uids.iter().any(|u| self.uid_exists(u)) {
            let _ = self.delete_key(&key, Propagation::Background);
            return Ok(created);
        }
        if ri.group.is_empty() && ri.plural == "namespaces" {
            super::serviceaccounts::ensure_default(self, &name);
        }
        if ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions" {
            let defined = from_crd(&created);
            for d in &defined {
                self.resources.retain(|r| {
                    !(r.group == d.group && r.version == d.version && r.plural == d.plural)
                });
            }
            self.resources.extend(defined);
        }
        Ok(created)
    }

    /// Replace an existing object (main resource or `/status`), enforcing the RV precondition,
    /// status-subresource rules and generation.
    pub fn replace(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        mut new: Value,
        status: bool,
        manager: &str,
    ) -> ApiResult<Value> {
        let key = key_of(ri, ns, name);
        let old = self.get(ri, ns, name)?;
        let rv = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !rv.is_empty() && Some(rv.as_str()) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(
                &ri.group,
                &ri.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(n) = new["metadata"]["name"].as_str()
            && !n.is_empty()
            && n != name
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        Self::set_type_meta(ri, &mut new);
        if status {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null()
                && let Some(o) = merged.as_object_mut()
            {
                o.remove("status");
            }
            new = merged;
        } else {
            if !new["metadata"].is_object() {
                new["metadata"] = json!({});
            }
            if ri.builtin {
                super::admission::builtin_update(ri, &old, &mut new)?;
            }
            for f in [
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                new["metadata"][f] = old["metadata"][f].clone();
            }
            if ri.status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            if ri.generation && strip(&new, ri.status) != strip(&old, ri.status) {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
                new["metadata"]["generation"] = json!(g + 1);
            }
        }
        let mut owners = self.owners.get(&key).cloned().unwrap_or_default();
        let m = if status {
            format!("{manager}/status")
        } else {
            manager.to_string()
        };
        apply::record_update(&old, &new, &m, &mut owners);
        let out = self.commit(&key, new)?;
        if self.objects.contains_key(&key) {
            self.owners.insert(key, owners);
        }
        if ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions" && !status
        {
            // An updated CRD serves its new schema (validation, CEL rules, columns) from then on.
            for d in from_crd(&out) {
                if let Some(r) = self
                    .resources
                    .iter_mut()
                    .find(|r| r.group == d.group && r.version == d.version && r.plural == d.plural)
                {
                    *r = d;
                }
            }
        }
        Ok(out)
    }

    /// The field managers of an object (for server-side apply).
    pub fn managers(&self, ri: &ResourceInfo, ns: &str, name: &str) -> Managers {
        self.owners
            .get(&key_of(ri, ns, name))
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_managers(&mut self, ri: &ResourceInfo, ns: &str, name: &str, m: Managers) {
        let key = key_of(ri, ns, name);
        if self.objects.contains_key(&key) {
            self.owners.insert(key, m);
        }
    }

    pub fn delete(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        policy: Propagation,
    ) -> ApiResult<Option<Value>> {
        self.delete_key(&key_of(ri, ns, name), policy)
    }
}
