//! The stage Jobs' `FailedCreate` events (why a Job cannot create its pods: a quota, a
//! LimitRange, an admission webhook), from one watch per scope with the field selector
//! `reason=FailedCreate`, so that a reconcile reads them without listing events.

use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::cache::{WatchErrors, wait_ready};

/// The field selector of the watch.
pub const FAILED_CREATE: &str = "reason=FailedCreate";

/// The `FailedCreate` events of every watched scope.
pub struct EventCache {
    stores: Vec<Store<Event>>,
    errors: WatchErrors,
}

impl EventCache {
    /// A cache over these reflector stores (disjoint scopes).
    pub fn new(stores: Vec<Store<Event>>, errors: WatchErrors) -> Self {
        EventCache { stores, errors }
    }

    /// See [`wait_ready`].
    pub async fn ready(&self) -> Result<(), String> {
        wait_ready(&self.stores, &self.errors).await
    }

    /// The `FailedCreate` events about the object `uid` in `ns`.
    pub fn failed_creates(&self, ns: &str, uid: &str) -> Vec<Event> {
        self.stores
            .iter()
            .flat_map(|s| {
                s.state_filter(|e| {
                    e.namespace().as_deref() == Some(ns)
                        && e.involved_object.uid.as_deref() == Some(uid)
                        && e.reason.as_deref() == Some("FailedCreate")
                })
            })
            .map(|e| (*e).clone())
            .collect()
    }
}

/// What reconciles never read: the cache holds less.
pub fn reduce(event: &mut Event) {
    event.metadata.managed_fields = None;
}
