//! The Job controller and kubelet stand-in: a client of the API server that runs Jobs' pods as local processes.
//!
//! Like upstream, it only talks to the API server: Jobs and Pods are watched through kube-runtime
//! reflectors (which re-list after dropped watches, 410s and API-server restarts), pods are created with
//! owner references to their Job, and statuses are written through the `/status` subresource.
//! [`job::job_step`] holds every Job rule as a pure function; this module is the thin loop around it.

pub mod apps;
pub mod apps_loop;
pub mod events;
pub mod identity;
pub mod images;
pub mod job;
pub mod kubelet;
pub mod pod;
pub mod probe;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use job::JobTiming;
use kubelet::Kubelet;

/// What the runner needs to run pods.
#[derive(Clone, Debug, Default)]
pub struct RunnerConfig {
    /// Root of kubesim's data directory (`logs/`, `pvc/`, `pods/`).
    pub data_dir: PathBuf,
    /// Image reference to local executable mapping.
    pub images: Vec<(String, PathBuf)>,
    /// Image reference to the image's default user (its `USER`); images not listed run as root (0).
    pub image_users: Vec<(String, u32)>,
    /// The API server's TLS port on 127.0.0.1, given to pods as `KUBERNETES_SERVICE_PORT`
    /// (0: pods get no in-cluster API access).
    pub api_port: u16,
    /// The cluster CA (PEM), mounted into pods as `ca.crt`.
    pub ca_pem: String,
}

/// Handle on a running Job controller and pod runner; dropping it kills every pod process.
pub struct RunnerHandle {
    kubelet: Arc<Kubelet>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunnerHandle {
    /// SIGKILL a running pod's process group; the pod fails with exit code 137.
    pub async fn kill_pod(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        self.kubelet.kill(ns, name, None)
    }

    /// Make a running pod's process end now and report exit code `code`.
    pub async fn fail_pod(&self, ns: &str, name: &str, code: i32) -> anyhow::Result<()> {
        self.kubelet.kill(ns, name, Some(code))
    }

    /// Stop the controller and kill every pod process it started.
    pub async fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.kubelet.kill_all();
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the Job controller and pod runner as clients of the API server.
pub async fn spawn(client: kube::Client, cfg: RunnerConfig) -> anyhow::Result<RunnerHandle> {
    spawn_with_timing(client, cfg, JobTiming::default()).await
}

/// [`spawn`] with explicit retry backoff.
pub async fn spawn_with_timing(
    client: kube::Client,
    cfg: RunnerConfig,
    timing: JobTiming,
) -> anyhow::Result<RunnerHandle> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let kubelet = Arc::new(Kubelet::new(client.clone(), cfg));
    let wake_jobs = Arc::new(Notify::new());
    let wake_pods = Arc::new(Notify::new());

    let (jobs, job_writer) = reflector::store::<Job>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let mut tasks = Vec::new();
    {
        let (wj, wp) = (Arc::clone(&wake_jobs), Arc::clone(&wake_pods));
        let stream = watcher(Api::<Job>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(job_writer);
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!("kubesim runner: job watch: {e}");
                }
                wj.notify_one();
                wp.notify_one();
            }
        }));
    }
    {
        let (wj, wp) = (Arc::clone(&wake_jobs), Arc::clone(&wake_pods));
        let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(pod_writer);
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!("kubesim runner: pod watch: {e}");
                }
                wj.notify_one();
                wp.notify_one();
            }
        }));
    }
    // Wait for both caches here, once. A reflector Store's readiness wakes only the last
    // task that polled it (kube-runtime's DelayedInit keeps one waker), so the two loops
    // below must not both wait on it while it is pending: one of them would sleep forever.
    if jobs.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
        anyhow::bail!("the runner's watches ended before their first list");
    }
    {
        let kubelet = Arc::clone(&kubelet);
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let _ =
                    tokio::time::timeout(Duration::from_millis(250), wake_pods.notified()).await;
                if pods.wait_until_ready().await.is_err() {
                    return;
                }
                let state = pods.state();
                tracing::trace!(pods = state.len(), "kubesim kubelet: sync");
                kubelet.sync(&state).await;
            }
        }));
    }
    {
        let wake_apps = Arc::new(Notify::new());
        let w = Arc::clone(&wake_apps);
        let pods_for_apps = pods.clone();
        // Pod changes wake the apps controllers too (readiness drives rollouts).
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        tasks.push(tokio::spawn(async move {
            loop {
                ticks.tick().await;
                w.notify_one();
            }
        }));
        tasks.extend(apps_loop::spawn(client.clone(), pods_for_apps, wake_apps));
    }
    {
        let client_for_events = client.clone();
        let mut ctl = Controller {
            client,
            jobs,
            pods,
            timing,
            expectations: HashMap::new(),
            latest: Mutex::new(HashMap::new()),
            recorder: events::Recorder::new(client_for_events, "job-controller", ""),
            create_backoff: HashMap::new(),
        };
        tasks.push(tokio::spawn(async move {
            let mut next = Duration::from_millis(250);
            loop {
                let _ = tokio::time::timeout(next, wake_jobs.notified()).await;
                if ctl.jobs.wait_until_ready().await.is_err()
                    || ctl.pods.wait_until_ready().await.is_err()
                {
                    return;
                }
                next = ctl.reconcile_all().await;
            }
        }));
    }
    Ok(RunnerHandle { kubelet, tasks })
}

/// Pod names a Job's last reconcile created or deleted, not yet seen so in the cache.
struct Expectation {
    created: Vec<String>,
    deleted: Vec<String>,
    since: Instant,
}

struct Controller {
    client: kube::Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    timing: JobTiming,
    expectations: HashMap<String, Expectation>,
    /// Jobs as returned by our own status writes (newer than the cache until the watch catches up).
    latest: Mutex<HashMap<String, Job>>,
    /// Records `FailedCreate` Warning events on Jobs, as the controller's pod control does.
    recorder: events::Recorder,
    /// Per Job uid: consecutive refused pod creations and when to try again (the workqueue's
    /// rate limiter, `DefaultJobApiBackOff` 1 s doubling to `MaxJobApiBackOff` 60 s).
    create_backoff: HashMap<String, (u32, Instant)>,
}

/// The requeue delay after `failures` consecutive sync errors (`ItemExponentialFailureRateLimiter`).
pub fn api_backoff(failures: u32) -> Duration {
    (Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1).min(6)))
        .min(Duration::from_secs(60))
}

fn rv(obj: &Job) -> u64 {
    obj.metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

impl Controller {
    /// Reconcile every Job; returns how long to sleep at most.
    async fn reconcile_all(&mut self) -> Duration {
        let mut next = Duration::from_millis(500);
        let pods = self.pods.state();
        let jobs = self.jobs.state();
        let live: std::collections::HashSet<String> =
            jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
        self.expectations.retain(|uid, _| live.contains(uid));
        self.create_backoff.retain(|uid, _| live.contains(uid));
        if let Ok(mut latest) = self.latest.lock() {
            latest.retain(|uid, _| live.contains(uid));
        }
        // Pods grouped by their controlling owner's uid, once per pass.
        let mut by_owner: HashMap<String, Vec<Pod>> = HashMap::new();
        for p in &pods {
            if let Some(o) = p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
            {
                by_owner
                    .entry(o.uid.clone())
                    .or_default()
                    .push(Pod::clone(p));
            }
        }
        for job in jobs {
            let Some(uid) = job.metadata.uid.clone() else {
                continue;
            };
            let mut job = Job::clone(&job);
            if let Ok(latest) = self.latest.lock()
                && let Some(mine) = latest.get(&uid)
                && rv(mine) > rv(&job)
            {
                job = mine.clone();
            }
            let owned: Vec<Pod> = by_owner.remove(&uid).unwrap_or_default();
            if let Some(exp) = self.expectations.get(&uid) {
                let seen = |n: &String| owned.iter().any(|p| p.metadata.name.as_ref() == Some(n));
                let gone = |n: &String| {
                    owned
                        .iter()
                        .find(|p| p.metadata.name.as_ref() == Some(n))
                        .is_none_or(|p| {
                            p.metadata.deletion_timestamp.is_some()
                                || p.status
                                    .as_ref()
                                    .and_then(|s| s.phase.as_deref())
                                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
                        })
                };
                let met = exp.created.iter().all(seen) && exp.deleted.iter().all(gone);
                if !met && exp.since.elapsed() < Duration::from_secs(5) {
                    next = next.min(Duration::from_millis(50));
                    continue;
                }
                self.expectations.remove(&uid);
            }
            match self.reconcile(&job, &owned).await {
                Ok(Some(d)) => next = next.min(d),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("kubesim runner: job {uid}: {e}");
                    next = next.min(Duration::from_millis(200));
                }
            }
        }
        next
    }

    async fn reconcile(&mut self, job: &Job, pods: &[Pod]) -> anyhow::Result<Option<Duration>> {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let step = job::job_step(job, pods, Timestamp::now(), &self.timing);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut exp = Expectation {
            created: Vec::new(),
            deleted: Vec::new(),
            since: Instant::now(),
        };
        for p in &step.pods_to_delete {
            match pod_api.delete(p, &DeleteParams::background()).await {
                Ok(_) => exp.deleted.push(p.clone()),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut requeue = step.requeue_after;
        let waiting = self
            .create_backoff
            .get(&uid)
            .map(|(_, at)| at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        if let Some(d) = waiting.filter(|_| !step.pods_to_create.is_empty()) {
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        } else {
            for index in &step.pods_to_create {
                let pod = pod::build_pod(job, *index, &pod::random_suffix());
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        exp.created.extend(p.metadata.name);
                        self.create_backoff.remove(&uid);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(kube::Error::Api(e)) => {
                        // RealPodControl.createPods: a Warning event on the Job, then the sync fails and the
                        // Job is requeued with the rate limiter's back-off; the rest waits for the retry.
                        self.recorder
                            .event(
                                &events::Involved {
                                    api_version: "batch/v1",
                                    kind: "Job",
                                    namespace: &ns,
                                    name: &name,
                                    uid: &uid,
                                    resource_version: job
                                        .metadata
                                        .resource_version
                                        .as_deref()
                                        .unwrap_or_default(),
                                },
                                "Warning",
                                "FailedCreate",
                                &format!("Error creating: {}", e.message),
                            )
                            .await;
                        let failures = self.create_backoff.get(&uid).map_or(0, |(n, _)| *n) + 1;
                        let delay = api_backoff(failures);
                        self.create_backoff
                            .insert(uid.clone(), (failures, Instant::now() + delay));
                        requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !exp.created.is_empty() || !exp.deleted.is_empty() {
            self.expectations.insert(uid.clone(), exp);
        }
        let old = job.status.clone().unwrap_or_default();
        if step.new_status != old {
            let patch = status_patch(
                &serde_json::to_value(&old)?,
                &serde_json::to_value(&step.new_status)?,
            );
            let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
            let updated = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": patch})),
                )
                .await?;
            if let Ok(mut latest) = self.latest.lock() {
                latest.insert(uid, updated);
            }
        }
        if step.delete_job {
            let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue)
    }
}

/// A merge patch turning `old` into `new` at the top level (removed fields become null).
fn status_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    let mut patch = new.clone();
    if let (Some(o), Some(p)) = (old.as_object(), patch.as_object_mut()) {
        for k in o.keys() {
            p.entry(k.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}
