//! The stage Jobs as the controller's watches show them (one reflector per watched scope),
//! overlaid with the controller's own writes until the watch catches up, so that reconciles
//! read Jobs without listing them and a reconcile right after a create or a delete does not
//! act on a cache that has not seen it yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::names;
use super::trim::StageJob;

/// How long a write of the controller's own overlays the cache at most: a watch that has not
/// shown it by then missed it (the Job went again), and the cache is right.
const OVERLAY_FOR: Duration = Duration::from_secs(30);

/// A write the cache may not show yet.
#[derive(Clone, Debug)]
enum Written {
    /// Created or changed by the controller: the object the API server returned.
    Job(Box<Job>),
    /// Deleted by the controller: the uid of the Job deleted.
    Deleted(String),
}

/// `(namespace, ReportJob)` -> Job name -> the write and when.
type Writes = HashMap<(String, String), HashMap<String, (Written, Instant)>>;

/// The stage Jobs of every watched scope.
#[derive(Default)]
pub struct JobCache {
    stores: Vec<Store<StageJob>>,
    written: Mutex<Writes>,
    /// The errors of the watches feeding `stores`.
    pub errors: WatchErrors,
}

/// The last error of the watches feeding a cache, cleared by their next event: what a
/// reconcile reports when the cache it needs has not listed yet (a 403 on list or watch).
#[derive(Clone, Debug, Default)]
pub struct WatchErrors(Arc<Mutex<Option<String>>>);

impl WatchErrors {
    /// Note a watch's outcome.
    pub fn note<T, E: std::error::Error>(&self, event: &Result<T, E>) {
        if let Ok(mut last) = self.0.lock() {
            *last = event
                .as_ref()
                .err()
                .map(|e| reportjob_core::error_text::error_chain(e));
        }
    }

    fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|l| l.clone())
    }
}

/// How long a reconcile waits for a cache's first list before it fails (and is retried).
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// Waits until every store has had its first complete list, so that an object missing from
/// it does not exist (rather than not being listed yet); fails with the watches' error.
pub async fn wait_ready<K>(stores: &[Store<K>], errors: &WatchErrors) -> Result<(), String>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let started = Instant::now();
    for store in stores {
        loop {
            let waited = tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready());
            match waited.await {
                // Ready, or its writer is gone (the controller is stopping).
                Ok(_) => break,
                Err(_) => {
                    if let Some(e) = errors.last() {
                        return Err(e);
                    }
                    if started.elapsed() > FIRST_LIST_WAIT {
                        return Err("the watch has not listed them yet".into());
                    }
                }
            }
        }
    }
    Ok(())
}

/// What a reconcile sees of one Job: live, or being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Live(Job),
    Terminating(Job),
}

impl JobCache {
    /// A cache over these reflector stores (disjoint scopes).
    pub fn new(stores: Vec<Store<StageJob>>, errors: WatchErrors) -> Self {
        JobCache {
            stores,
            written: Mutex::new(HashMap::new()),
            errors,
        }
    }

    /// See [`wait_ready`].
    pub async fn ready(&self) -> Result<(), String> {
        wait_ready(&self.stores, &self.errors).await
    }

    /// Record a Job of `reportjob` the API server returned for a create or a patch.
    pub fn wrote(&self, reportjob: &str, job: &Job) {
        let ns = job.namespace().unwrap_or_default();
        self.remember(
            ns,
            reportjob,
            job.name_any(),
            Written::Job(Box::new(job.clone())),
        );
    }

    /// Record the deletion of `reportjob`'s Job `name` in `ns` whose uid was `uid`.
    pub fn deleted(&self, ns: &str, reportjob: &str, name: &str, uid: &str) {
        self.remember(
            ns.to_string(),
            reportjob,
            name.to_string(),
            Written::Deleted(uid.to_string()),
        );
    }

    fn remember(&self, ns: String, reportjob: &str, name: String, w: Written) {
        if let Ok(mut m) = self.written.lock() {
            // Writes of ReportJobs not looked at since (deleted ones) go when they are old.
            m.retain(|_, jobs| {
                jobs.retain(|_, (_, at)| at.elapsed() < OVERLAY_FOR);
                !jobs.is_empty()
            });
            m.entry((ns, reportjob.to_string()))
                .or_default()
                .insert(name, (w, Instant::now()));
        }
    }

    /// The uid of `reportjob`'s Job `name` in `ns`, as best known.
    pub fn uid_of(&self, ns: &str, reportjob: &str, name: &str) -> Option<String> {
        self.jobs_of(ns, reportjob).into_iter().find_map(|s| {
            let (Seen::Live(j) | Seen::Terminating(j)) = s;
            (j.name_any() == name).then_some(j.metadata.uid?)
        })
    }

    /// The Jobs labelled as `reportjob`'s in `ns`, by name, as best known.
    pub fn jobs_of(&self, ns: &str, reportjob: &str) -> Vec<Seen> {
        let ours = |j: &StageJob| {
            j.namespace().as_deref() == Some(ns)
                && j.labels().get(names::REPORTJOB_LABEL).map(String::as_str) == Some(reportjob)
        };
        let mut cached: HashMap<String, Job> = HashMap::new();
        for store in &self.stores {
            for j in store.state_filter(ours) {
                cached.insert(j.name_any(), j.to_job());
            }
        }
        let mut out = HashMap::new();
        if let Ok(mut written) = self.written.lock() {
            let key = (ns.to_string(), reportjob.to_string());
            if let Some(jobs) = written.get_mut(&key) {
                jobs.retain(|name, (w, at)| {
                    let (view, keep) = overlay(cached.remove(name.as_str()), w, at.elapsed());
                    if let Some(v) = view {
                        out.insert(name.clone(), v);
                    }
                    keep
                });
                if jobs.is_empty() {
                    written.remove(&key);
                }
            }
        }
        for (name, j) in cached {
            out.entry(name).or_insert_with(|| seen(j));
        }
        let mut jobs: Vec<(String, Seen)> = out.into_iter().collect();
        jobs.sort_by(|a, b| a.0.cmp(&b.0));
        jobs.into_iter().map(|(_, s)| s).collect()
    }
}

impl JobCache {
    /// The Jobs of `stage` of every ReportJob in `ns`, as best known, with their
    /// ReportJob's name.
    pub fn stage_jobs_in(&self, ns: &str, stage: names::Stage) -> Vec<(String, Seen)> {
        fn label(j: &impl ResourceExt, key: &str) -> Option<String> {
            j.labels().get(key).cloned()
        }
        let mut owners: std::collections::BTreeSet<String> = self
            .stores
            .iter()
            .flat_map(|s| {
                s.state_filter(|j| {
                    j.namespace().as_deref() == Some(ns)
                        && label(j, names::STAGE_LABEL).as_deref() == Some(stage.as_str())
                })
            })
            .filter_map(|j| label(j.as_ref(), names::REPORTJOB_LABEL))
            .collect();
        if let Ok(written) = self.written.lock() {
            owners.extend(
                written
                    .keys()
                    .filter(|(n, _)| n == ns)
                    .map(|(_, rj)| rj.clone()),
            );
        }
        owners
            .into_iter()
            .flat_map(|rj| {
                self.jobs_of(ns, &rj)
                    .into_iter()
                    .filter(|s| {
                        let (Seen::Live(j) | Seen::Terminating(j)) = s;
                        label(j, names::STAGE_LABEL).as_deref() == Some(stage.as_str())
                    })
                    .map(move |s| (rj.clone(), s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn seen(j: Job) -> Seen {
    if j.metadata.deletion_timestamp.is_some() {
        Seen::Terminating(j)
    } else {
        Seen::Live(j)
    }
}

/// The resourceVersion as a number (an etcd revision, as the API server's
/// are); `None` when it is not one, and then the cache is trusted.
fn revision(j: &Job) -> Option<u64> {
    j.metadata.resource_version.as_deref()?.parse().ok()
}

/// What to see of a Job given the cache's copy and the controller's own write `age` ago,
/// and whether to keep the write. Pure.
fn overlay(cached: Option<Job>, w: &Written, age: Duration) -> (Option<Seen>, bool) {
    if age >= OVERLAY_FOR {
        return (cached.map(seen), false);
    }
    match (cached, w) {
        (None, Written::Job(j)) => (Some(seen((**j).clone())), true),
        (Some(c), Written::Job(j)) => match (revision(&c), revision(j)) {
            (Some(have), Some(wrote)) if have < wrote => (Some(seen((**j).clone())), true),
            _ => (Some(seen(c)), false),
        },
        // Gone from the cache too: nothing more to overlay.
        (None, Written::Deleted(_)) => (None, false),
        (Some(c), Written::Deleted(uid)) => {
            if c.metadata.uid.as_deref() == Some(uid.as_str()) {
                // Deleted, but the watch has not said so yet.
                (Some(Seen::Terminating(c)), true)
            } else {
                // A new Job of the same name, created since.
                (Some(seen(c)), false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn job(uid: &str, rv: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("rj-plan".into()),
                uid: Some(uid.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Job::default()
        }
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn a_created_job_the_cache_lacks_is_seen_until_the_cache_catches_up() {
        let w = Written::Job(Box::new(job("u1", "10")));
        assert_eq!(
            overlay(None, &w, NOW),
            (Some(Seen::Live(job("u1", "10"))), true)
        );
        assert_eq!(
            overlay(Some(job("u1", "9")), &w, NOW),
            (Some(Seen::Live(job("u1", "10"))), true)
        );
        assert_eq!(
            overlay(Some(job("u1", "10")), &w, NOW),
            (Some(Seen::Live(job("u1", "10"))), false)
        );
        assert_eq!(
            overlay(Some(job("u1", "12")), &w, NOW),
            (Some(Seen::Live(job("u1", "12"))), false)
        );
    }

    #[test]
    fn an_old_write_no_longer_overlays() {
        let w = Written::Job(Box::new(job("u1", "10")));
        assert_eq!(overlay(None, &w, OVERLAY_FOR), (None, false));
    }

    #[test]
    fn an_opaque_resource_version_trusts_the_cache() {
        let w = Written::Job(Box::new(job("u1", "b")));
        assert_eq!(
            overlay(Some(job("u1", "a")), &w, NOW),
            (Some(Seen::Live(job("u1", "a"))), false)
        );
    }

    #[test]
    fn a_deleted_job_is_terminating_until_the_cache_drops_it() {
        let w = Written::Deleted("u1".into());
        assert_eq!(
            overlay(Some(job("u1", "10")), &w, NOW),
            (Some(Seen::Terminating(job("u1", "10"))), true)
        );
        assert_eq!(overlay(None, &w, NOW), (None, false));
        // Created again under the same name: the new one is seen.
        assert_eq!(
            overlay(Some(job("u2", "20")), &w, NOW),
            (Some(Seen::Live(job("u2", "20"))), false)
        );
        let mut going = job("u1", "11");
        going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            overlay(Some(going.clone()), &w, NOW),
            (Some(Seen::Terminating(going)), true)
        );
    }
}
