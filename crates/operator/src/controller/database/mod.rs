//! ReportDatabase budgets at run time: the watches of ReportDatabases and Namespaces, what
//! a run's database says about it ([`Standing`]), its share of the database's chunk budget
//! across namespaces ([`fair`]), and the ReportDatabases' status ([`status`]). The budget
//! is counted in the pods and sessions the controller itself starts; it never reads the
//! database's Secret.

pub mod fair;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use reportjob_core::database::selector::selects;
use reportjob_core::database::{ReportDatabase, ReportDatabaseSpec};

/// What a run's `spec.source.database` says about it.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// It names none: no shared budget.
    Unbudgeted,
    /// It names one the controller cannot use yet (not found, or not listed): the run waits.
    Unavailable {
        /// The ReportDatabase.
        name: String,
        /// Why.
        why: String,
    },
    /// Its namespace is not one the ReportDatabase selects: the run fails.
    NotAllowed {
        /// The ReportDatabase.
        name: String,
        /// Why.
        why: String,
    },
    /// Its budget applies.
    Member {
        /// The ReportDatabase.
        name: String,
        /// Its spec.
        spec: Box<ReportDatabaseSpec>,
    },
}

/// How long a reconcile waits for the ReportDatabase and Namespace watches to have listed.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// The ReportDatabases and Namespaces as the watches show them, and one lock per database
/// that serialises its runs' budget decisions (across namespaces).
pub struct Databases {
    databases: Store<ReportDatabase>,
    namespaces: Store<Namespace>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Databases {
    /// Starts the two watches (cluster-wide); returns the registry and the tasks draining
    /// them (aborted at shutdown).
    pub fn watch(client: &Client) -> (Databases, Vec<tokio::task::JoinHandle<()>>) {
        let (databases, db_task) = cluster_cache::<ReportDatabase>(
            Api::all(client.clone()),
            |db| {
                db.managed_fields_mut().clear();
                db.annotations_mut().clear();
            },
            "ReportDatabases",
        );
        let (namespaces, ns_task) = cluster_cache::<Namespace>(
            Api::all(client.clone()),
            |ns| {
                // Only the labels are read (the ReportDatabases' selectors).
                ns.managed_fields_mut().clear();
                ns.annotations_mut().clear();
                ns.spec = None;
                ns.status = None;
            },
            "namespaces",
        );
        (
            Databases {
                databases,
                namespaces,
                locks: Mutex::new(HashMap::new()),
            },
            vec![db_task, ns_task],
        )
    }

    /// What `database` (named by a run in `namespace`) says about the run.
    pub async fn standing(&self, namespace: &str, database: Option<&str>) -> Standing {
        let Some(name) = database else {
            return Standing::Unbudgeted;
        };
        let name = name.to_string();
        let listed = [
            (
                ready_within(&self.databases, STORE_WAIT).await,
                "ReportDatabases",
            ),
            (
                ready_within(&self.namespaces, STORE_WAIT).await,
                "namespaces",
            ),
        ];
        if let Some((_, what)) = listed.iter().find(|(ready, _)| !ready) {
            return Standing::Unavailable {
                why: format!(
                    "the controller cannot list {what} yet (is the ReportDatabase CRD \
                     installed, and may the controller watch {what}?)"
                ),
                name,
            };
        }
        let Some(db) = self.databases.get(&reflector::ObjectRef::new(&name)) else {
            return Standing::Unavailable {
                why: format!("ReportDatabase {name} does not exist"),
                name,
            };
        };
        let labels = self
            .namespaces
            .get(&reflector::ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        match selects(&db.spec.namespace_selector, &labels) {
            Ok(true) => Standing::Member {
                name,
                spec: Box::new(db.spec.clone()),
            },
            Ok(false) => Standing::NotAllowed {
                why: format!(
                    "ReportDatabase {name} does not select namespace {namespace} \
                     (spec.namespaceSelector); ask the platform team to add it"
                ),
                name,
            },
            Err(e) => Standing::NotAllowed {
                why: format!("ReportDatabase {name} has an invalid namespaceSelector: {e}"),
                name,
            },
        }
    }

    /// The spec of ReportDatabase `name`, if the watch shows it.
    pub fn spec(&self, name: &str) -> Option<ReportDatabaseSpec> {
        self.databases
            .get(&reflector::ObjectRef::new(name))
            .map(|db| db.spec.clone())
    }

    /// Every ReportDatabase the watch shows.
    pub fn all(&self) -> Vec<Arc<ReportDatabase>> {
        self.databases.state()
    }

    /// Holds the decisions of `name`'s runs until the guard is dropped.
    pub async fn lock(&self, name: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .locks
            .lock()
            .ok()?
            .entry(name.to_string())
            .or_default()
            .clone();
        Some(lock.lock_owned().await)
    }
}

/// Whether `store` has listed, waiting at most `wait`.
async fn ready_within<K>(store: &Store<K>, wait: Duration) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    tokio::time::timeout(wait, store.wait_until_ready())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A cluster-wide watch that only fills a store, drained on a task of its own.
fn cluster_cache<K>(
    api: Api<K>,
    trim: impl FnMut(&mut K) + Send + 'static,
    what: &'static str,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer);
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(
                    error = %reportjob_core::error_text::error_chain(&e),
                    "watching {what} failed"
                );
            }
        }
    });
    (reader, task)
}
