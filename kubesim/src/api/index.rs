//! The store's secondary indexes: objects by uid, dependents by owner uid, and the owners
//! waiting on foreground deletion, so garbage collection never scans the whole store.

use super::store::Key;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Indexes kept in step with the store's objects (see `State::put` and `State::take`).
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    by_uid: HashMap<String, BTreeSet<Key>>,
    dependents: HashMap<String, BTreeSet<Key>>,
    foreground: BTreeSet<Key>,
}

fn uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["uid"].as_str()
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

fn in_foreground_deletion(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
}

impl Indexes {
    /// Record `obj` stored under `key`.
    pub fn add(&mut self, key: &Key, obj: &Value) {
        if let Some(u) = uid(obj) {
            self.by_uid
                .entry(u.to_string())
                .or_default()
                .insert(key.clone());
        }
        for o in owner_uids(obj) {
            self.dependents
                .entry(o.to_string())
                .or_default()
                .insert(key.clone());
        }
        if in_foreground_deletion(obj) {
            self.foreground.insert(key.clone());
        }
    }

    /// Forget `obj`, which was stored under `key`.
    pub fn remove(&mut self, key: &Key, obj: &Value) {
        if let Some(u) = uid(obj)
            && let Some(set) = self.by_uid.get_mut(u)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_uid.remove(u);
            }
        }
        for o in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(o) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(o);
                }
            }
        }
        self.foreground.remove(key);
    }

    /// Whether an object with this uid is stored.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// Keys of the objects that name `uid` among their owners, in key order.
    pub fn dependents(&self, uid: &str) -> Vec<Key> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Keys of the objects holding the `foregroundDeletion` finalizer, in key order.
    pub fn foreground(&self) -> Vec<Key> {
        self.foreground.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> Key {
        ("".into(), "pods".into(), "ns".into(), name.into())
    }

    #[test]
    fn indexes_follow_adds_and_removes() {
        let mut ix = Indexes::default();
        let owner = json!({"metadata": {"uid": "u-job", "finalizers": ["foregroundDeletion"]}});
        let pod = json!({"metadata": {"uid": "u-pod", "ownerReferences": [{"uid": "u-job"}, {"uid": "u-other"}]}});
        ix.add(&key("job"), &owner);
        ix.add(&key("pod"), &pod);
        assert!(ix.uid_exists("u-job") && ix.uid_exists("u-pod"));
        assert_eq!(ix.dependents("u-job"), vec![key("pod")]);
        assert_eq!(ix.dependents("u-other"), vec![key("pod")]);
        assert_eq!(ix.foreground(), vec![key("job")]);
        ix.remove(&key("pod"), &pod);
        assert!(!ix.uid_exists("u-pod"));
        assert!(ix.dependents("u-job").is_empty() && ix.dependents("u-other").is_empty());
        ix.remove(&key("job"), &owner);
        assert!(!ix.uid_exists("u-job") && ix.foreground().is_empty());
    }

    #[test]
    fn a_uid_two_objects_carry_exists_until_both_are_gone() {
        let mut ix = Indexes::default();
        let a = json!({"metadata": {"uid": "same"}});
        ix.add(&key("a"), &a);
        ix.add(&key("b"), &a);
        ix.remove(&key("b"), &a);
        assert!(ix.uid_exists("same"));
        ix.remove(&key("a"), &a);
        assert!(!ix.uid_exists("same"));
    }
}
