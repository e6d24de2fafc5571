//! The controller's watches: one helper for every kind it caches. Each watch of a scope (a
//! namespace, or all of them) keeps the trimmed view of its objects in a store that
//! reconciles read, notes its errors for readiness and logs them; a watch whose changes
//! also trigger reconciles (the stage Jobs) is handed back as a stream instead.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::cache::{JobCache, WatchErrors};
use super::event_cache::{self, EventCache};
use super::names;
use super::pod_cache::PodCache;
use super::trim;

/// The API of a namespaced kind in one watched scope: a namespace, or all of them.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watches the `K`s of `scope` that `config` selects, with backoff, keeping what `trim`
/// leaves of each in the returned store; the store fills while the stream is polled.
pub fn reflected<K>(
    client: &Client,
    scope: Option<&str>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(scoped_api::<K>(client, scope), config)
        .default_backoff()
        .modify(trim)
        .reflect(writer);
    (reader, stream)
}

/// A watch that only fills a store (see [`reflected`]), drained on a task of its own: each
/// outcome is noted in `errors` (the caches' readiness) and a failure logged as `what`.
pub fn cache<K>(
    client: &Client,
    scope: Option<&str>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
    errors: WatchErrors,
    what: &'static str,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, stream) = reflected(client, scope, config, trim);
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            errors.note(&event);
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

/// The stage Jobs' changes of one scope, which also trigger their owners' reconciles.
pub type JobChanges = futures::stream::BoxStream<'static, Result<trim::StageJob, watcher::Error>>;

/// Everything the controller watches besides the ReportJobs, over every scope: the caches
/// reconciles read, the stage Jobs' changes per scope, and the tasks draining the rest.
pub struct Watched {
    /// The stage Jobs.
    pub jobs: JobCache,
    /// The stage pods.
    pub pods: PodCache,
    /// The FailedCreate events of stage Jobs.
    pub events: EventCache,
    /// Per scope, in the order given: the stage Jobs' changes.
    pub job_changes: Vec<JobChanges>,
    /// The tasks that drain the pod and event watches (aborted at shutdown).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the watches of every scope. One watch of the stage Jobs per scope feeds the Job
/// cache and then triggers the owners' reconciles, so a reconcile a Job's change triggers
/// sees it.
pub fn watch_scopes(client: &Client, scopes: &[Option<String>]) -> Watched {
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        names::MANAGED_BY_LABEL,
        names::MANAGED_BY
    ));
    let (job_errors, pod_errors, event_errors) = Default::default();
    let (mut job_stores, mut pod_stores, mut event_stores) = (Vec::new(), Vec::new(), Vec::new());
    let mut job_changes: Vec<JobChanges> = Vec::new();
    let mut tasks = Vec::new();
    for scope in scopes.iter().map(Option::as_deref) {
        let (pods, task) = cache(
            client,
            scope,
            owned.clone(),
            trim::stage_pod,
            WatchErrors::clone(&pod_errors),
            "pods",
        );
        pod_stores.push(pods);
        tasks.push(task);
        let failed_create = watcher::Config::default().fields(event_cache::FAILED_CREATE);
        let (events, task) = cache(
            client,
            scope,
            failed_create,
            event_cache::reduce,
            WatchErrors::clone(&event_errors),
            "FailedCreate events",
        );
        event_stores.push(events);
        tasks.push(task);
        // What reconciles never read is trimmed: the cache holds less.
        let (jobs, stream) = reflected(client, scope, owned.clone(), trim::stage_job);
        let errors = WatchErrors::clone(&job_errors);
        job_changes.push(
            stream
                .touched_objects()
                .inspect(move |event| errors.note(event))
                .boxed(),
        );
        job_stores.push(jobs);
    }
    Watched {
        jobs: JobCache::new(job_stores, job_errors),
        pods: PodCache::new(pod_stores, pod_errors),
        events: EventCache::new(event_stores, event_errors),
        job_changes,
        tasks,
    }
}
