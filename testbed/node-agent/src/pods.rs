//! The kubelet's pod lifecycle: the watch of the pods bound to this node, and one worker task
//! per pod that takes it from Pending to a terminal phase.
//!
//! A worker runs the init containers in order (each must exit 0), then the first container,
//! applying `restartPolicy` (restarts after a CrashLoopBackOff back-off: 1 s doubling to 10 s,
//! where upstream has 10 s to 5 min) and `activeDeadlineSeconds` (the pod is killed and fails
//! with reason DeadlineExceeded). Anything that keeps a container from starting for now (an
//! image not on the node, a missing Secret, a claim not bound yet) is reported as the
//! container's waiting reason and retried. A pod being deleted gets the kubelet's handshake:
//! SIGTERM to its process group, SIGKILL after `deletionGracePeriodSeconds` (at most 30 s), a
//! terminal status, then a DELETE with grace period 0 and the pod's uid as precondition. Each
//! worker is the only writer of its pod's status, so writes stay in order; after a terminal
//! phase none but terminal ones are made.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::AgentConfig;
use crate::events::{Recorder, Regarding};
use crate::images::Installed;
use crate::launch;
use crate::logfile::{self, Registry};
use crate::spawn::{Sig, Spawner, kill_group};
use crate::status::{self, ContainerModel, Phase, PodModel, State, Terminated};

mod container;

use container::Ran;

/// Why a container cannot start now.
#[derive(Debug)]
pub enum StartError {
    /// The image is not on the node: the pull failed (ErrImagePull).
    Image(String),
    /// A failed pull is backing off (ImagePullBackOff).
    ImageBackOff(String),
    /// Not on the node and `imagePullPolicy: Never` (ErrImageNeverPull).
    NeverPull(String),
    /// Something the container needs is missing or not ready: retried
    /// (CreateContainerConfigError).
    Config(String),
    /// The container can never start (RunContainerError): the pod fails.
    Other(String),
}

/// The longest deletion grace period honoured.
const MAX_GRACE: Duration = Duration::from_secs(30);
/// How long a container must run for its restart back-off to start over.
const BACKOFF_RESET: Duration = Duration::from_secs(20);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running container process.
struct Proc {
    ns: String,
    name: String,
    pgid: u32,
    /// The exit code to report instead of the process's (`kill_pod`, `fail_pod`).
    code_override: Option<i32>,
}

struct WorkerHandle {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: AbortHandle,
}

#[derive(Default)]
struct Pods {
    workers: HashMap<String, WorkerHandle>,
    /// Pods (by uid) whose worker finished with a terminal phase, and whether the final DELETE
    /// was sent: a terminal pod is never run again.
    finished: HashMap<String, bool>,
    stopped: bool,
}

/// The kubelet: shared state of the watch and the pod workers.
pub struct Kubelet {
    client: kube::Client,
    node_name: String,
    pub data_dir: PathBuf,
    api_host: String,
    api_port: u16,
    images: Installed,
    mount_ns: bool,
    spawner: Spawner,
    recorder: Arc<Recorder>,
    pub logs: Arc<Registry>,
    pods: Mutex<Pods>,
    /// Running processes by pod uid.
    procs: Mutex<HashMap<String, Proc>>,
}

impl Kubelet {
    pub fn new(client: kube::Client, cfg: &AgentConfig, images: Installed) -> anyhow::Result<Self> {
        let mount_ns = launch::mount_ns_available();
        if !mount_ns {
            tracing::warn!(
                "node-agent: no mount namespaces here; volumes are symlinked at their mount paths"
            );
        }
        Ok(Self {
            recorder: Recorder::new(client.clone(), &cfg.node_name),
            client,
            node_name: cfg.node_name.clone(),
            data_dir: cfg.data_dir.clone(),
            api_host: cfg.api_host.clone(),
            api_port: cfg.api_port,
            images,
            mount_ns,
            spawner: Spawner::new()?,
            logs: Arc::default(),
            pods: Mutex::default(),
            procs: Mutex::default(),
        })
    }

    /// Kill the running process group of pod `ns/name`; its container is reported with `code`.
    pub fn kill(&self, ns: &str, name: &str, code: i32) -> anyhow::Result<()> {
        let mut procs = lock(&self.procs);
        let p = procs
            .values_mut()
            .find(|p| p.ns == ns && p.name == name)
            .ok_or_else(|| anyhow::anyhow!("no running process for pod {ns}/{name}"))?;
        p.code_override = Some(code);
        kill_group(p.pgid, Sig::Kill);
        Ok(())
    }

    /// SIGKILL every process group started.
    pub fn kill_all(&self) {
        for p in lock(&self.procs).values() {
            kill_group(p.pgid, Sig::Kill);
        }
    }

    /// Stop every pod worker (no more status writes or starts).
    pub fn abort_workers(&self) {
        let mut pods = lock(&self.pods);
        pods.stopped = true;
        for (_, w) in pods.workers.drain() {
            w.task.abort();
        }
    }

    /// Wait until every process started has exited (or `limit` passed).
    pub async fn wait_for_processes(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let pids: Vec<u32> = lock(&self.procs).values().map(|p| p.pgid).collect();
            let running = pids.iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            });
            if !running || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A pod added or changed: hand it to its worker, or start one.
    fn dispatch(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        let mut pods = lock(&self.pods);
        if pods.stopped {
            return;
        }
        if let Some(w) = pods.workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        let deleting = pending_delete(&pod);
        if let Some(sent) = pods.finished.get_mut(&uid) {
            if deleting && !*sent {
                *sent = true;
                self.spawn_delete(&pod);
            }
            return;
        }
        if Phase::of(&pod).is_some_and(Phase::terminal) {
            // Finished before this agent saw it. A pod that became terminal while its deletion
            // waited is removed as the kubelet would.
            if deleting {
                pods.finished.insert(uid, true);
                self.spawn_delete(&pod);
            }
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let this = Arc::clone(self);
        let id = uid.clone();
        let task = tokio::spawn(async move { this.run_worker(id, rx).await });
        pods.workers.insert(
            uid,
            WorkerHandle {
                tx,
                task: task.abort_handle(),
            },
        );
    }

    /// A pod removed from the API server.
    fn gone(&self, uid: &str) {
        let mut pods = lock(&self.pods);
        if let Some(w) = pods.workers.get(uid) {
            w.tx.send_replace(None);
        }
        pods.finished.remove(uid);
        self.recorder.forget(uid);
    }

    fn spawn_delete(&self, pod: &Pod) {
        let client = self.client.clone();
        let m = &pod.metadata;
        let (ns, name, uid) = (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
            m.uid.clone().unwrap_or_default(),
        );
        tokio::spawn(async move { delete_now(&client, &ns, &name, &uid).await });
    }

    async fn run_worker(self: Arc<Self>, uid: String, rx: watch::Receiver<Option<Arc<Pod>>>) {
        let Some(pod) = rx.borrow().clone() else {
            lock(&self.pods).workers.remove(&uid);
            return;
        };
        let mut w = Worker::new(Arc::clone(&self), uid.clone(), rx, pod);
        let end = w.lifecycle().await;
        w.clean_up();
        let mut pods = lock(&self.pods);
        pods.workers.remove(&uid);
        if let End::Terminal { deleted } = end {
            // Updates that came in after the worker stopped looking: a deletion still needs
            // its final DELETE.
            let latest = w.rx.borrow().clone();
            if let Some(p) = latest {
                let delete = !deleted && pending_delete(&p);
                pods.finished.insert(uid, deleted || delete);
                if delete {
                    self.spawn_delete(&p);
                }
            }
        }
    }
}

/// Whether `pod` waits for the kubelet to finish its deletion.
fn pending_delete(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds != Some(0)
}

/// The kubelet's final DELETE of a terminated pod: grace period 0, only this uid.
async fn delete_now(client: &kube::Client, ns: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let mut pause = Duration::from_millis(100);
    for _ in 0..20 {
        match api.delete(name, &dp).await {
            Ok(_) => return,
            // Gone, or another pod of that name now (the precondition failed).
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::debug!("node-agent: deleting pod {ns}/{name}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Watch the pods bound to this node and dispatch them; the receiver fires after the first
/// complete list.
pub fn watch(kubelet: Arc<Kubelet>) -> (oneshot::Receiver<()>, JoinHandle<()>) {
    let (listed_tx, listed) = oneshot::channel();
    let task = tokio::spawn(async move {
        let api: Api<Pod> = Api::all(kubelet.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", kubelet.node_name));
        let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
        let mut listed_tx = Some(listed_tx);
        // Uids seen during a (re)list: the others are gone.
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) => kubelet.dispatch(p),
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        kubelet.gone(uid);
                    }
                }
                Ok(watcher::Event::Init) => relist = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    if let (Some(seen), Some(uid)) = (relist.as_mut(), p.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    kubelet.dispatch(p);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let known: Vec<String> = {
                            let pods = lock(&kubelet.pods);
                            pods.workers
                                .keys()
                                .chain(pods.finished.keys())
                                .filter(|u| !seen.contains(*u))
                                .cloned()
                                .collect()
                        };
                        for uid in known {
                            kubelet.gone(&uid);
                        }
                    }
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Err(e) => tracing::debug!("node-agent: pod watch: {e}"),
            }
        }
    });
    (listed, task)
}

/// Which of the pod's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Init(usize),
    Main,
}

/// Why a pod's run stops early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Being deleted: finish it and send the final DELETE.
    Deleted,
    /// Removed from the API server (or the agent stops): no more writes.
    Gone,
    /// `activeDeadlineSeconds` passed.
    Deadline,
}

/// How a worker ended.
enum End {
    Terminal { deleted: bool },
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Always,
    OnFailure,
    Never,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The restart back-off after `n` consecutive failures.
fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(4)).min(10))
}

/// One pod's lifecycle.
struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    ns: String,
    name: String,
    rx: watch::Receiver<Option<Arc<Pod>>>,
    pod: Arc<Pod>,
    model: PodModel,
    pod_dir: PathBuf,
    active_deadline: Option<Instant>,
    written: Option<Value>,
    terminal_written: bool,
    /// Failed pulls per image: when the back-off ends, how many failed.
    pulls: HashMap<String, (Instant, u32)>,
    /// Consecutive failures per container, for the restart back-off.
    failures: HashMap<String, u32>,
    /// Containers that ran in this pod (a later run rotates the log).
    ran: HashSet<String>,
}

impl Worker {
    fn new(
        k: Arc<Kubelet>,
        uid: String,
        rx: watch::Receiver<Option<Arc<Pod>>>,
        pod: Arc<Pod>,
    ) -> Self {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let model = PodModel::new(&pod);
        let active_deadline = deadline_of(&pod, model.start_time);
        let pod_dir = k
            .data_dir
            .join("pods")
            .join(&ns)
            .join(format!("{name}-{uid}"));
        Self {
            k,
            uid,
            ns,
            name,
            rx,
            pod,
            model,
            pod_dir,
            active_deadline,
            written: None,
            terminal_written: false,
            pulls: HashMap::new(),
            failures: HashMap::new(),
            ran: HashSet::new(),
        }
    }

    fn policy(&self) -> Policy {
        match self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
        {
            Some("Never") => Policy::Never,
            Some("OnFailure") => Policy::OnFailure,
            _ => Policy::Always,
        }
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    fn spec_container(&self, kind: Kind) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        match kind {
            Kind::Init(i) => spec.init_containers.as_ref()?.get(i).cloned(),
            Kind::Main => spec.containers.first().cloned(),
        }
    }

    fn model_mut(&mut self, kind: Kind) -> Option<&mut ContainerModel> {
        match kind {
            Kind::Init(i) => self.model.init.get_mut(i),
            Kind::Main => self.model.main.first_mut(),
        }
    }

    fn regarding(&self, kind: Kind, container: &str) -> Regarding {
        let field = match kind {
            Kind::Init(_) => format!("spec.initContainers{{{container}}}"),
            Kind::Main => format!("spec.containers{{{container}}}"),
        };
        Regarding::pod(&self.pod, Some(field))
    }

    fn event(
        &self,
        kind: Kind,
        container: &str,
        type_: &str,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.k.recorder.post(
            &self.regarding(kind, container),
            type_,
            reason,
            action,
            note,
        );
    }

    /// `name_namespace(uid)`, as upstream's `format.Pod`.
    fn pod_ref(&self) -> String {
        format!("{}_{}({})", self.name, self.ns, self.uid)
    }

    /// Write the model unless it is what was written last; never leave a terminal phase.
    async fn write(&mut self) {
        if self.terminal_written && !self.model.phase.terminal() {
            return;
        }
        let v = self.model.render();
        if self.written.as_ref() == Some(&v) {
            return;
        }
        if status::write(&self.k.client, &self.ns, &self.name, &self.uid, &v).await {
            self.terminal_written |= self.model.phase.terminal();
        }
        self.written = Some(v);
    }

    /// The latest pod, and whether the run must stop for it.
    fn check_stop(&mut self) -> Option<Stop> {
        let latest = self.rx.borrow_and_update().clone();
        match latest {
            None => return Some(Stop::Gone),
            Some(p) => self.pod = p,
        }
        // activeDeadlineSeconds may be set or shortened on a running pod: read it again, as
        // the kubelet does on every sync.
        self.active_deadline = deadline_of(&self.pod, self.model.start_time);
        if self.deleting() {
            return Some(Stop::Deleted);
        }
        if self.active_deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Stop::Deadline);
        }
        None
    }

    /// Wait until `until` (None: for a change only), returning early when the run must stop.
    async fn pause(&mut self, until: Option<Instant>) -> Result<(), Stop> {
        loop {
            if let Some(s) = self.check_stop() {
                return Err(s);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(());
            }
            let limit = earliest(until, self.active_deadline);
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Gone);
                    }
                }
                () = sleep_until(limit) => {}
            }
        }
    }

    async fn lifecycle(&mut self) -> End {
        if self.deleting() {
            return self.stopped(Stop::Deleted, Kind::Main, None).await;
        }
        let policy = self.policy();
        let resumed = Phase::of(&self.pod) == Some(Phase::Running);
        if resumed {
            // Picked up again (the agent restarted): the container that ran is gone.
            if let Err(end) = self.adopt(policy).await {
                return end;
            }
        } else {
            self.write().await;
            let mut i = 0;
            while i < self.model.init.len() {
                match self.run(Kind::Init(i)).await {
                    Ran::Exited(t) if t.exit_code == 0 => {
                        self.model.init[i].state = State::Terminated(t);
                        self.write().await;
                        i += 1;
                    }
                    Ran::Exited(t) => {
                        if policy == Policy::Never {
                            self.model.init[i].state = State::Terminated(t);
                            return self.finish(Phase::Failed, None, None).await;
                        }
                        if let Err(stop) = self.back_off(Kind::Init(i), t).await {
                            return self.stopped(stop, Kind::Init(i), None).await;
                        }
                    }
                    Ran::Stopped(stop, t) => return self.stopped(stop, Kind::Init(i), t).await,
                    Ran::CannotRun(msg) => return self.cannot_run(Kind::Init(i), &msg).await,
                }
            }
        }
        loop {
            match self.run(Kind::Main).await {
                Ran::Exited(t) => {
                    let restart = match policy {
                        Policy::Always => true,
                        Policy::OnFailure => t.exit_code != 0,
                        Policy::Never => false,
                    };
                    if !restart {
                        let phase = if t.exit_code == 0 {
                            Phase::Succeeded
                        } else {
                            Phase::Failed
                        };
                        if let Some(c) = self.model_mut(Kind::Main) {
                            c.state = State::Terminated(t);
                        }
                        return self.finish(phase, None, None).await;
                    }
                    if let Err(stop) = self.back_off(Kind::Main, t).await {
                        return self.stopped(stop, Kind::Main, None).await;
                    }
                }
                Ran::Stopped(stop, t) => return self.stopped(stop, Kind::Main, t).await,
                Ran::CannotRun(msg) => return self.cannot_run(Kind::Main, &msg).await,
            }
        }
    }

    /// Take over a pod that was Running before this agent: its init containers are done, its
    /// container's last run was lost (exit 137, ContainerStatusUnknown).
    async fn adopt(&mut self, policy: Policy) -> Result<(), End> {
        let status = self.pod.status.clone().unwrap_or_default();
        for c in &mut self.model.init {
            c.state = State::Terminated(Terminated {
                exit_code: 0,
                reason: "Completed".into(),
                message: None,
                started_at: None,
                finished_at: Timestamp::now(),
                container_id: None,
            });
        }
        let restarts = status
            .container_statuses
            .iter()
            .flatten()
            .next()
            .map_or(0, |c| c.restart_count);
        self.model.phase = Phase::Running;
        if let Some(c) = self.model_mut(Kind::Main) {
            c.restart_count = restarts;
        }
        let lost = Terminated::unknown();
        if policy == Policy::Never {
            if let Some(c) = self.model_mut(Kind::Main) {
                c.state = State::Terminated(lost);
            }
            return Err(self.finish(Phase::Failed, None, None).await);
        }
        if let Some(c) = self.model_mut(Kind::Main) {
            c.last = Some(lost);
            c.restart_count += 1;
        }
        Ok(())
    }

    /// A container exited and is to be started again: CrashLoopBackOff until the back-off
    /// passes.
    async fn back_off(&mut self, kind: Kind, t: Terminated) -> Result<(), Stop> {
        let ran_long = t.started_at.is_some_and(|s| {
            t.finished_at.duration_since(s).as_secs() >= BACKOFF_RESET.as_secs() as i64
        });
        let Some(name) = self.spec_container(kind).map(|c| c.name) else {
            return Err(Stop::Gone);
        };
        let n = self.failures.entry(name.clone()).or_insert(0);
        *n = if ran_long { 1 } else { *n + 1 };
        let delay = backoff(*n);
        let pod_ref = self.pod_ref();
        if let Some(c) = self.model_mut(kind) {
            c.last = Some(t);
            c.restart_count += 1;
            c.ready = false;
            c.state = State::waiting(
                "CrashLoopBackOff",
                Some(format!(
                    "back-off {}s restarting failed container={name} pod={pod_ref}",
                    delay.as_secs()
                )),
            );
        }
        self.event(
            kind,
            &name,
            "Warning",
            "BackOff",
            "Restart",
            &format!("Back-off restarting failed container {name} in pod {pod_ref}"),
        );
        self.write().await;
        self.pause(Some(Instant::now() + delay)).await
    }

    /// The run stopped for `stop`; `t` is how the container of `kind` ended, if it ran.
    async fn stopped(&mut self, stop: Stop, kind: Kind, t: Option<Terminated>) -> End {
        if let Some(t) = t
            && let Some(c) = self.model_mut(kind)
        {
            c.state = State::Terminated(t);
        }
        match stop {
            Stop::Gone => End::Gone,
            Stop::Deadline => {
                let msg = "Pod was active on the node longer than the specified deadline";
                self.k.recorder.post(
                    &Regarding::pod(&self.pod, None),
                    "Normal",
                    "DeadlineExceeded",
                    "Kill",
                    msg,
                );
                self.finish(Phase::Failed, Some("DeadlineExceeded"), Some(msg))
                    .await
            }
            Stop::Deleted => {
                // A container in its restart back-off ended as its last run did.
                if let Some(c) = self.model_mut(Kind::Main)
                    && matches!(c.state, State::Waiting { .. })
                    && let Some(last) = c.last.clone()
                {
                    c.state = State::Terminated(last);
                }
                let ok =
                    self.model.main.first().is_some_and(
                        |c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0),
                    );
                let phase = if ok { Phase::Succeeded } else { Phase::Failed };
                self.model.finish(phase, None, None);
                self.write().await;
                delete_now(&self.k.client, &self.ns, &self.name, &self.uid).await;
                End::Terminal { deleted: true }
            }
        }
    }

    async fn finish(&mut self, phase: Phase, reason: Option<&str>, message: Option<&str>) -> End {
        self.model.finish(phase, reason, message);
        self.write().await;
        End::Terminal { deleted: false }
    }

    /// The container can never start: the pod fails (RunContainerError).
    async fn cannot_run(&mut self, kind: Kind, msg: &str) -> End {
        let name = self
            .spec_container(kind)
            .map(|c| c.name)
            .unwrap_or_default();
        self.event(
            kind,
            &name,
            "Warning",
            "Failed",
            "Start",
            &format!("Error: {msg}"),
        );
        if let Some(c) = self.model_mut(kind) {
            c.state = State::Terminated(Terminated {
                exit_code: 128,
                reason: "StartError".into(),
                message: Some(msg.to_string()),
                started_at: None,
                finished_at: Timestamp::now(),
                container_id: None,
            });
        }
        self.finish(Phase::Failed, Some("RunContainerError"), Some(msg))
            .await
    }

    /// The pod is done on this node: its directory (emptyDirs, API-data volumes) goes.
    fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.pod_dir);
        for c in self.model.init.iter().chain(self.model.main.iter()) {
            self.k.logs.remove(&logfile::log_path(
                &self.k.data_dir,
                &self.ns,
                &self.name,
                &c.name,
            ));
        }
    }
}

/// When `pod`'s `activeDeadlineSeconds`, counted from its start, runs out.
fn deadline_of(pod: &Pod, start_time: Timestamp) -> Option<Instant> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let end = start_time.as_nanosecond() + i128::from(secs) * 1_000_000_000;
    let left = end - Timestamp::now().as_nanosecond();
    Some(Instant::now() + Duration::from_nanos(u64::try_from(left.max(0)).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_back_off_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10, 10]);
    }
}
