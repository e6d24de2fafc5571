//! The kubelet stand-in: runs each Pod's first container as a local process in a private mount namespace.
//!
//! Volumes are host directories under the data dir, bind-mounted at the container's `mountPath` inside a
//! private mount namespace (`unshare --mount --propagation private`), so the host's tree never sees the
//! mounts. Mountpoints that do not exist yet are created (empty) on the host filesystem before binding;
//! that is the one trace left outside the data dir. Without mount namespaces (checked once), the same
//! script creates symlinks at the mount paths instead, which keeps reads and writes at the same paths.
//!
//! Over 600 lines for a reason: one `impl Kubelet` (about 640 lines) is the pod lifecycle (start-time
//! checks, env and volume resolution, launch, status writes retried until taken, kill and deadline
//! handling), all of it under the runner's one lock; split across modules it would be one state
//! machine in several places. Its unit tests add about 120 lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::RunnerConfig;
use super::events::Recorder;
use super::identity::{self, FsGroup, Identity};
use super::images;
pub use super::images::{resolve, resolve_image};
use super::probe;
use std::os::unix::fs::PermissionsExt as _;

/// Shell script run as `sh -c SCRIPT sh PROG ARGS...`: binds (or links) each volume, changes directory, execs.
/// All paths arrive as environment variables, never interpolated into the script.
const LAUNCH_SCRIPT: &str = r#"set -e
i=0
while [ "$i" -lt "${KUBESIM_NMOUNTS:-0}" ]; do
  eval "src=\${KUBESIM_MSRC_$i}; dst=\${KUBESIM_MDST_$i}"
  if [ "$KUBESIM_MODE" = bind ]; then
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; fi
    mount --bind "$src" "$dst"
  else
    mkdir -p "$(dirname "$dst")"
    if [ -d "$dst" ] && [ ! -L "$dst" ] && [ -d "$src" ]; then rmdir "$dst" 2>/dev/null || true; fi
    ln -sfn "$src" "$dst"
  fi
  unset "KUBESIM_MSRC_$i" "KUBESIM_MDST_$i"
  i=$((i+1))
done
if [ -n "$KUBESIM_WORKDIR" ]; then mkdir -p "$KUBESIM_WORKDIR"; fi
if [ -n "$KUBESIM_RO_ROOT" ]; then
  # readOnlyRootFilesystem: every mount of this namespace but the volumes (and the kernel's /proc,
  # /sys, /dev) becomes read-only; remount,bind changes only this namespace's mount, never the host's.
  for mp in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u); do
    mp=$(printf '%b' "$mp")
    case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
    if printf '%s\n' "$KUBESIM_RW" | grep -qxF -- "$mp"; then continue; fi
    if ! mount -o remount,bind,ro "$mp" 2>/dev/null && [ "$mp" = / ]; then
      echo "kubesim: cannot make the root filesystem read-only" >&2; exit 126
    fi
  done
fi
if [ -n "$KUBESIM_WORKDIR" ]; then cd "$KUBESIM_WORKDIR"; fi
uid=$KUBESIM_UID gid=$KUBESIM_GID groups=$KUBESIM_GROUPS
unset KUBESIM_NMOUNTS KUBESIM_WORKDIR KUBESIM_MODE KUBESIM_UID KUBESIM_GID KUBESIM_GROUPS KUBESIM_RO_ROOT KUBESIM_RW
if [ -n "$groups" ]; then
  exec setpriv --reuid="$uid" --regid="$gid" --groups="$groups" -- "$@"
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
"#;

/// Upstream's cap on a termination message.
const MAX_MESSAGE: usize = 4096;

/// Why a container could not start.
#[derive(Debug)]
pub enum StartError {
    /// Image not mapped: the pull failed (reason ErrImagePull); retried after a back-off.
    Image(String),
    /// A failed pull is backing off (reason ImagePullBackOff).
    ImageBackOff(String),
    /// Missing Secret/ConfigMap key: stays Pending and is retried (reason CreateContainerConfigError).
    Config(String),
    /// Anything else (I/O, spawn).
    Other(String),
}

/// One running pod process.
struct Proc {
    ns: String,
    name: String,
    pgid: u32,
    /// A terminate task is already running for it.
    dying: bool,
    /// Exit code to report instead of the real one (fail_pod, kill_pod).
    code_override: Option<i32>,
}

/// Shared state of the kubelet stand-in.
pub struct Kubelet {
    client: kube::Client,
    cfg: RunnerConfig,
    mount_ns: bool,
    procs: Mutex<HashMap<String, Proc>>,
    started: Mutex<HashSet<String>>,
    retry_at: Mutex<HashMap<String, Instant>>,
    /// Failed image pulls per pod uid: when the back-off ends and how many pulls failed.
    pulls: Mutex<HashMap<String, (Instant, u32)>>,
    /// Per-pod directories (emptyDir, secret and configMap volumes, termination log), removed with the pod.
    pod_dirs: Mutex<HashMap<String, PathBuf>>,
    /// The kubelet's events (`source.component: kubelet`).
    recorder: Recorder,
    /// Pods a binding was sent for (the scheduler stand-in binds each once).
    binding: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Send `sig` to a whole process group.
fn kill_group(pgid: u32, sig: &str) {
    // Never signal "group 0" (our own) or init.
    if pgid <= 1 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pgid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Whether `unshare --mount` with bind mounts works here (checked once at startup).
pub fn mount_ns_available() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("d=$(mktemp -d) && mount --bind \"$d\" \"$d\" && umount \"$d\" && rmdir \"$d\"")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Evaluate a fieldRef path against the pod.
fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let lookup = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.trim_start_matches("['").trim_end_matches("']");
        map.as_ref().and_then(|m| m.get(key).cloned())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some("kubesim".into()),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        p if p.starts_with("metadata.annotations[") => {
            lookup(&meta.annotations, &p["metadata.annotations".len()..])
        }
        p if p.starts_with("metadata.labels[") => {
            lookup(&meta.labels, &p["metadata.labels".len()..])
        }
        _ => None,
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key).map(|b| b.0.clone()))
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key).map(|v| v.clone().into_bytes()))
        })
}

fn configmap_value(c: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    c.data
        .as_ref()
        .and_then(|d| d.get(key).map(|v| v.clone().into_bytes()))
        .or_else(|| {
            c.binary_data
                .as_ref()
                .and_then(|d| d.get(key).map(|b| b.0.clone()))
        })
}

/// The last 80 lines / 2048 bytes of a log, as upstream's FallbackToLogsOnError.
fn log_tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(80);
    let mut tail = lines[start..].join("\n");
    if tail.len() > 2048 {
        let mut cut = tail.len() - 2048;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

impl Kubelet {
    /// A kubelet for pods in the API server behind `client`.
    pub fn new(client: kube::Client, cfg: RunnerConfig) -> Self {
        let mount_ns = mount_ns_available();
        if !mount_ns {
            tracing::warn!(
                "kubesim runner: no mount namespaces; volumes are symlinked at their mount paths"
            );
        }
        Self {
            cfg,
            mount_ns,
            procs: Mutex::default(),
            started: Mutex::default(),
            retry_at: Mutex::default(),
            pulls: Mutex::default(),
            pod_dirs: Mutex::default(),
            recorder: Recorder::new(client.clone(), "kubelet", ""),
            binding: Mutex::default(),
            client,
        }
    }

    /// Start pods not started yet; kill processes whose pod is gone or being deleted.
    pub async fn sync(self: &Arc<Self>, pods: &[Arc<Pod>]) {
        let live: HashMap<String, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
            .collect();
        let doomed: Vec<(String, u32, Option<i64>)> = lock(&self.procs)
            .iter_mut()
            .filter(|(_, p)| !p.dying)
            .filter(|(uid, _)| {
                live.get(*uid)
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            })
            .map(|(uid, p)| {
                p.dying = true;
                let grace = live
                    .get(uid)
                    .and_then(|p| p.spec.as_ref()?.termination_grace_period_seconds);
                (uid.clone(), p.pgid, grace)
            })
            .collect();
        // Pods gone from the API with no process left: forget them and remove their directories.
        let gone: Vec<(String, PathBuf)> = {
            let procs = lock(&self.procs);
            lock(&self.pod_dirs)
                .iter()
                .filter(|(uid, _)| !live.contains_key(*uid) && !procs.contains_key(*uid))
                .map(|(uid, dir)| (uid.clone(), dir.clone()))
                .collect()
        };
        lock(&self.binding).retain(|uid| live.contains_key(uid));
        for (uid, dir) in gone {
            lock(&self.pod_dirs).remove(&uid);
            lock(&self.started).remove(&uid);
            lock(&self.retry_at).remove(&uid);
            lock(&self.pulls).remove(&uid);
            let _ = std::fs::remove_dir_all(&dir);
        }
        for (uid, pgid, grace) in doomed {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.terminate(&uid, pgid, grace).await });
        }
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if node.is_none_or(str::is_empty) && pod.metadata.deletion_timestamp.is_none() {
                // The scheduler's part: bind the pod to the one node, then run it once the
                // binding is seen.
                if lock(&self.binding).insert(uid.clone()) {
                    let this = Arc::clone(self);
                    let pod = Pod::clone(pod);
                    tokio::spawn(async move { this.bind(&pod).await });
                }
                continue;
            }
            if node != Some(crate::api::services::NODE_NAME) {
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if pod.metadata.deletion_timestamp.is_some()
                || matches!(phase, Some("Succeeded" | "Failed" | "Running"))
                || lock(&self.started).contains(&uid)
                || lock(&self.retry_at)
                    .get(&uid)
                    .is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            lock(&self.started).insert(uid.clone());
            tracing::debug!(pod = ?pod.metadata.name, "kubesim kubelet: new pod");
            let this = Arc::clone(self);
            let pod = Pod::clone(pod);
            tokio::spawn(async move { this.run(pod).await });
        }
    }

    /// Bind `pod` to the node through `pods/<name>/binding`, as kube-scheduler does.
    async fn bind(&self, pod: &Pod) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": crate::api::services::NODE_NAME}});
        let req = axum::http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(binding.to_string().into_bytes());
        let Ok(req) = req else {
            return;
        };
        if let Err(e) = self.client.request_text(req).await {
            tracing::debug!("kubesim scheduler: binding {ns}/{name}: {e}");
            // Try again on a later sync unless the pod was bound meanwhile.
            if let Some(uid) = pod.metadata.uid.as_deref() {
                lock(&self.binding).remove(uid);
            }
        }
    }

    /// SIGTERM the group, then SIGKILL after the grace period (capped at 2s).
    async fn terminate(&self, uid: &str, pgid: u32, grace: Option<i64>) {
        kill_group(pgid, "TERM");
        let grace = Duration::from_secs(u64::try_from(grace.unwrap_or(30)).unwrap_or(0))
            .min(Duration::from_secs(2));
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && lock(&self.procs).contains_key(uid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Once the process is reaped, its task has already killed the rest of the group.
        if lock(&self.procs).contains_key(uid) {
            kill_group(pgid, "KILL");
        }
    }

    /// Kill a pod's process; it is reported with `code` (137 for a SIGKILL as upstream).
    pub fn kill(&self, ns: &str, name: &str, code: Option<i32>) -> anyhow::Result<()> {
        let mut procs = lock(&self.procs);
        let proc = procs
            .values_mut()
            .find(|p| p.ns == ns && p.name == name)
            .ok_or_else(|| anyhow::anyhow!("no running process for pod {ns}/{name}"))?;
        proc.code_override = code;
        kill_group(proc.pgid, "KILL");
        Ok(())
    }

    /// Kill every process started (shutdown / Drop).
    pub fn kill_all(&self) {
        for p in lock(&self.procs).values() {
            kill_group(p.pgid, "KILL");
        }
    }

    async fn patch_status(&self, pod: &Pod, status: serde_json::Value) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // Like the kubelet's status manager, keep trying until the API server takes the
        // status (or the pod is gone): a pod that ends while the API server restarts must
        // still be reported, or its Job never finishes. Bounded, so a dropped cluster's
        // tasks end.
        let mut pause = Duration::from_millis(50);
        let give_up = Instant::now() + Duration::from_secs(300);
        loop {
            match api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::debug!("kubesim runner: pod {ns}/{name} status: {e}");
                    if Instant::now() >= give_up {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Run one pod to completion and report it.
    async fn run(self: Arc<Self>, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first().cloned())
            .unwrap_or_default();
        let now = Timestamp::now();
        tracing::debug!(pod = ?pod.metadata.name, "kubesim kubelet: starting");
        if pod
            .status
            .as_ref()
            .is_none_or(|s| s.container_statuses.as_ref().is_none_or(Vec::is_empty))
        {
            // The kubelet reports a container it is about to create as waiting, ContainerCreating.
            self.patch_status(
                &pod,
                json!({"phase": "Pending", "containerStatuses": [{
                "name": container.name, "image": container.image, "imageID": "", "ready": false,
                "restartCount": 0, "started": false,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            )
            .await;
        }
        let (mut child, pod_dir, log_path) = match self.start(&pod, &container).await {
            Ok(v) => v,
            Err(
                e @ (StartError::Config(_) | StartError::Image(_) | StartError::ImageBackOff(_)),
            ) => {
                // The pod stays Pending and the kubelet tries again on a later sync.
                let (reason, msg) = match e {
                    StartError::Image(m) => ("ErrImagePull", m),
                    StartError::ImageBackOff(m) => ("ImagePullBackOff", m),
                    StartError::Config(m) | StartError::Other(m) => {
                        ("CreateContainerConfigError", m)
                    }
                };
                lock(&self.started).remove(&uid);
                lock(&self.retry_at).insert(uid, Instant::now() + Duration::from_secs(1));
                self.patch_status(
                    &pod,
                    json!({"phase": "Pending", "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": reason, "message": msg}}}]}),
                )
                .await;
                return;
            }
            Err(StartError::Other(msg)) => {
                let reason = "RunContainerError";
                self.patch_status(
                    &pod,
                    json!({"phase": "Failed", "startTime": now.to_string(),
                    "reason": reason, "message": msg, "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": reason, "message": msg}}}]}),
                )
                .await;
                return;
            }
        };
        let pgid = child.id().unwrap_or(0);
        tracing::debug!(pod = ?pod.metadata.name, pgid, "kubesim kubelet: started");
        lock(&self.procs).insert(
            uid.clone(),
            Proc {
                ns: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                pgid,
                dying: false,
                code_override: None,
            },
        );
        let started = now.to_string();
        let cond = |ready: &str| {
            json!([
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": Timestamp::now().to_string()},
                {"type": "Ready", "status": ready, "lastTransitionTime": Timestamp::now().to_string()},
            ])
        };
        let running = |ready: bool| {
            json!({"phase": "Running", "startTime": started, "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}], "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": cond(if ready { "True" } else { "False" }), "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": ready,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}}]})
        };
        // A bad probe was refused before the start; here it is known to parse.
        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| probe::http_probe(p, &container).ok().flatten());
        self.patch_status(&pod, running(probe.is_none())).await;
        let prober = probe.map(|p| {
            let (this, pod) = (Arc::clone(&self), pod.clone());
            let (ready, not_ready) = (running(true), running(false));
            let uid = uid.clone();
            tokio::spawn(async move {
                tokio::time::sleep(p.initial_delay).await;
                let mut r = probe::Readiness::default();
                while lock(&this.procs).contains_key(&uid) {
                    let ok = probe::check(&p).await;
                    if let Some(now) = r.record(ok, &p) {
                        let status = if now { &ready } else { &not_ready };
                        this.patch_status(&pod, status.clone()).await;
                    }
                    tokio::time::sleep(p.period).await;
                }
            })
        });
        let status = child.wait().await;
        if let Some(t) = prober {
            t.abort();
        }
        // The whole group goes with the main process, as when a container's init process exits.
        kill_group(pgid, "KILL");
        let override_code = lock(&self.procs).remove(&uid).and_then(|p| p.code_override);
        let code = match status {
            Ok(s) => exit_code(s),
            Err(_) => 128 + 9,
        };
        let code = override_code.unwrap_or(code);
        let mut message = std::fs::read(pod_dir.join("termination-log")).unwrap_or_default();
        message.truncate(MAX_MESSAGE);
        let mut message = String::from_utf8_lossy(&message).into_owned();
        if message.is_empty()
            && code != 0
            && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            message = log_tail(&std::fs::read(&log_path).unwrap_or_default());
        }
        let mut terminated = json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": started, "finishedAt": Timestamp::now().to_string()});
        if !message.is_empty() {
            terminated["message"] = json!(message);
        }
        self.patch_status(
            &pod,
            json!({"phase": if code == 0 { "Succeeded" } else { "Failed" },
            "conditions": cond("False"), "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": {"terminated": terminated}}]}),
        )
        .await;
        // A pod being deleted gracefully is finished off once its process is gone, as the kubelet does.
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if let Ok(current) = api.get(name).await
            && current.metadata.deletion_timestamp.is_some()
        {
            let _ = api
                .delete(name, &DeleteParams::default().grace_period(0))
                .await;
        }
    }

    /// Resolve image, env and volumes, then spawn the process.
    async fn start(
        &self,
        pod: &Pod,
        c: &Container,
    ) -> Result<(tokio::process::Child, PathBuf, PathBuf), StartError> {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let image = c.image.clone().unwrap_or_default();
        images::warn_missing_pull_secrets(&self.client, &self.recorder, pod, &ns).await;
        let image_prog = self.ensure_image(&uid, &image)?;
        let read_only_root = c
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem)
            == Some(true);
        if read_only_root && !self.mount_ns {
            return Err(StartError::Other(
                "kubesim: readOnlyRootFilesystem needs mount namespaces, which are unavailable here"
                    .into(),
            ));
        }
        let (program, args): (PathBuf, Vec<String>) = match c.command.as_deref() {
            Some([first, rest @ ..]) => {
                let prog =
                    resolve_image(&self.cfg.images, first).unwrap_or_else(|| PathBuf::from(first));
                (
                    prog,
                    rest.iter()
                        .cloned()
                        .chain(c.args.iter().flatten().cloned())
                        .collect(),
                )
            }
            _ => (image_prog, c.args.clone().unwrap_or_default()),
        };
        if let Some(p) = &c.readiness_probe {
            probe::http_probe(p, c).map_err(StartError::Config)?;
        }
        let image_uid = resolve(&self.cfg.image_users, &image).unwrap_or(0);
        let ident = identity::effective(pod, c, image_uid).map_err(StartError::Config)?;
        let fs_group = identity::fs_group(pod).map_err(StartError::Config)?;
        let mut env = self.service_env();
        env.extend(self.env(pod, c, &ns).await?);
        let io = |e: std::io::Error| StartError::Other(e.to_string());
        let pod_dir = self
            .cfg
            .data_dir
            .join("pods")
            .join(&ns)
            .join(format!("{name}-{uid}"));
        std::fs::create_dir_all(&pod_dir).map_err(io)?;
        lock(&self.pod_dirs).insert(uid.clone(), pod_dir.clone());
        let mounts = self.volumes(pod, c, &ns, &pod_dir, fs_group).await?;
        let term_log = pod_dir.join("termination-log");
        std::fs::write(&term_log, b"").map_err(io)?;
        // The kubelet creates the termination-message file world-writable (kuberuntime_container.go).
        std::fs::set_permissions(&term_log, std::fs::Permissions::from_mode(0o666)).map_err(io)?;
        let log_dir = self.cfg.data_dir.join("logs").join(&ns);
        std::fs::create_dir_all(&log_dir).map_err(io)?;
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(io)?;

        let mut all_mounts = mounts;
        all_mounts.push((
            term_log,
            PathBuf::from(
                c.termination_message_path
                    .as_deref()
                    .unwrap_or("/dev/termination-log"),
            ),
        ));
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.clone());
        let spec = Launch {
            program: program.clone(),
            args,
            env,
            mounts: all_mounts,
            working_dir: c.working_dir.clone(),
            hostname,
            mount_ns: self.mount_ns,
            identity: ident,
            read_only_root,
        };
        let child = launch(&spec, log)
            .map_err(|e| StartError::Other(format!("spawn {}: {e}", program.display())))?;
        Ok((child, pod_dir, log_path))
    }

    /// The `kubernetes` Service's variables every container gets (`kubelet_pods.go`
    /// `getServiceEnvVarMap`): pods are processes of this host, so the host is 127.0.0.1 and the
    /// port the API server's TLS listener, where upstream has the Service's ClusterIP and 443.
    fn service_env(&self) -> Vec<(String, String)> {
        let port = self.cfg.api_port;
        if port == 0 {
            return vec![];
        }
        let host = "127.0.0.1";
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), host.into()),
            ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
            ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
        ]
    }

    /// Fill a projected volume's directory: a service-account token bound to the pod (TokenRequest),
    /// configMap and secret items, downwardAPI field references; files get `defaultMode` (0644).
    async fn projected(
        &self,
        pod: &Pod,
        ns: &str,
        p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
        dir: &Path,
    ) -> Result<(), StartError> {
        let io = |e: std::io::Error| StartError::Other(e.to_string());
        let mode = u32::try_from(p.default_mode.unwrap_or(0o644)).unwrap_or(0o644) & 0o777;
        let mut files: Vec<(String, Vec<u8>)> = vec![];
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let sa = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let mut spec = json!({"expirationSeconds": t.expiration_seconds.unwrap_or(3600),
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                        "name": pod.metadata.name, "uid": pod.metadata.uid}});
                if let Some(a) = t.audience.as_ref().filter(|a| !a.is_empty()) {
                    spec["audiences"] = json!([a]);
                }
                let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
                let req = axum::http::Request::post(format!(
                    "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
                ))
                .header("content-type", "application/json")
                .body(body.to_string().into_bytes())
                .map_err(|e| StartError::Other(e.to_string()))?;
                let answer: serde_json::Value = self
                    .client
                    .request(req)
                    .await
                    .map_err(|e| StartError::Config(format!("failed to fetch token: {e}")))?;
                let token = answer["status"]["token"].as_str().unwrap_or_default();
                files.push((t.path.clone(), token.as_bytes().to_vec()));
            }
            if let Some(cm) = &src.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
                let name = cm.name.clone();
                match api.get_opt(&name).await.ok().flatten() {
                    Some(m) => {
                        for item in cm.items.iter().flatten() {
                            match configmap_value(&m, &item.key) {
                                Some(v) => files.push((item.path.clone(), v)),
                                None if cm.optional == Some(true) => {}
                                None => {
                                    return Err(StartError::Config(format!(
                                        "configmap references non-existent config key: {}",
                                        item.key
                                    )));
                                }
                            }
                        }
                        if cm.items.is_none() {
                            for (k, v) in m.data.iter().flatten() {
                                files.push((k.clone(), v.clone().into_bytes()));
                            }
                        }
                    }
                    None if cm.optional == Some(true) => {}
                    None => {
                        return Err(StartError::Config(format!(
                            "configmap \"{name}\" not found"
                        )));
                    }
                }
            }
            if let Some(sec) = &src.secret {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
                let name = sec.name.clone();
                match api.get_opt(&name).await.ok().flatten() {
                    Some(found) => {
                        let keys: Vec<(String, String)> = match &sec.items {
                            Some(items) => items
                                .iter()
                                .map(|i| (i.key.clone(), i.path.clone()))
                                .collect(),
                            None => found
                                .data
                                .iter()
                                .flat_map(|d| d.keys().map(|k| (k.clone(), k.clone())))
                                .collect(),
                        };
                        for (k, path) in keys {
                            if let Some(v) = secret_value(&found, &k) {
                                files.push((path, v));
                            }
                        }
                    }
                    None if sec.optional == Some(true) => {}
                    None => {
                        return Err(StartError::Config(format!("secret \"{name}\" not found")));
                    }
                }
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref
                        && let Some(v) = field_ref(pod, &f.field_path)
                    {
                        files.push((item.path.clone(), v.into_bytes()));
                    }
                }
            }
        }
        for (path, data) in files {
            // Item paths are relative and may not climb out (`validateLocalDescendingPath`).
            if path.split('/').any(|c| c == "..") || path.starts_with('/') {
                return Err(StartError::Config(format!(
                    "invalid projected path {path:?}"
                )));
            }
            let file = dir.join(&path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&file, data).map_err(io)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        Ok(())
    }

    /// `EnsureImageExists`: a mapped image is present on the node; an unmapped one fails to pull
    /// (ErrImagePull), then backs off (ImagePullBackOff) before the next attempt, as
    /// pkg/kubelet/images/image_manager.go does (back-off 1 s doubling to 10 s here, 10 s to 300 s
    /// upstream).
    fn ensure_image(&self, uid: &str, image: &str) -> Result<PathBuf, StartError> {
        if let Some(p) = resolve_image(&self.cfg.images, image) {
            lock(&self.pulls).remove(uid);
            return Ok(p);
        }
        let now = Instant::now();
        let mut pulls = lock(&self.pulls);
        let entry = pulls.entry(uid.to_string()).or_insert((now, 0));
        if now < entry.0 {
            return Err(StartError::ImageBackOff(format!(
                "Back-off pulling image {image:?}"
            )));
        }
        entry.1 += 1;
        entry.0 = now + Duration::from_secs(1 << entry.1.min(4)).min(Duration::from_secs(10));
        // applyDefaultImageTag, then the runtime's error for a reference no registry has.
        let tagged =
            if image.contains('@') || image.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                image.to_string()
            } else {
                format!("{image}:latest")
            };
        Err(StartError::Image(format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image {tagged:?}: failed to resolve reference {tagged:?}: {tagged}: not found"
        )))
    }

    async fn env(
        &self,
        pod: &Pod,
        c: &Container,
        ns: &str,
    ) -> Result<Vec<(String, String)>, StartError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let mut out: Vec<(String, String)> = Vec::new();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.secret_ref {
                match secrets.get_opt(&r.name).await {
                    Ok(Some(s)) => {
                        let keys: Vec<String> = s
                            .data
                            .iter()
                            .flat_map(|d| d.keys().cloned())
                            .chain(s.string_data.iter().flat_map(|d| d.keys().cloned()))
                            .collect();
                        for k in keys {
                            if let Some(v) = secret_value(&s, &k) {
                                out.push((
                                    format!("{prefix}{k}"),
                                    String::from_utf8_lossy(&v).into_owned(),
                                ));
                            }
                        }
                    }
                    _ if r.optional == Some(true) => {}
                    _ => {
                        return Err(StartError::Config(format!(
                            "secret \"{}\" not found",
                            r.name
                        )));
                    }
                }
            }
            if let Some(r) = &from.config_map_ref {
                match cms.get_opt(&r.name).await {
                    Ok(Some(cm)) => {
                        for (k, v) in cm.data.iter().flatten() {
                            out.push((format!("{prefix}{k}"), v.clone()));
                        }
                    }
                    _ if r.optional == Some(true) => {}
                    _ => {
                        return Err(StartError::Config(format!(
                            "configmap \"{}\" not found",
                            r.name
                        )));
                    }
                }
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                Some(expand(v, &out))
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    field_ref(pod, &f.field_path)
                } else if let Some(k) = &src.secret_key_ref {
                    let found = secrets.get_opt(&k.name).await.ok().flatten();
                    match found.as_ref().and_then(|s| secret_value(s, &k.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                        None if k.optional == Some(true) => None,
                        None if found.is_none() => {
                            return Err(StartError::Config(format!(
                                "secret \"{}\" not found",
                                k.name
                            )));
                        }
                        None => {
                            return Err(StartError::Config(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                k.key, k.name
                            )));
                        }
                    }
                } else if let Some(k) = &src.config_map_key_ref {
                    let found = cms.get_opt(&k.name).await.ok().flatten();
                    match found.as_ref().and_then(|s| configmap_value(s, &k.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                        None if k.optional == Some(true) => None,
                        None if found.is_none() => {
                            return Err(StartError::Config(format!(
                                "configmap \"{}\" not found",
                                k.name
                            )));
                        }
                        None => {
                            return Err(StartError::Config(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                k.key, k.name
                            )));
                        }
                    }
                } else {
                    None
                }
            } else {
                Some(String::new())
            };
            if let Some(v) = value {
                out.retain(|(k, _)| *k != e.name);
                out.push((e.name.clone(), v));
            }
        }
        Ok(out)
    }

    /// Host directories for the container's volume mounts, as (source, mountPath) pairs.
    async fn volumes(
        &self,
        pod: &Pod,
        c: &Container,
        ns: &str,
        pod_dir: &Path,
        fs_group: Option<FsGroup>,
    ) -> Result<Vec<(PathBuf, PathBuf)>, StartError> {
        let io = |e: std::io::Error| StartError::Other(e.to_string());
        let mut dirs: HashMap<String, PathBuf> = HashMap::new();
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
        {
            // Secret, configMap and projected volumes are mounted read-only (their ownership masks
            // are r--r-----).
            let read_only = v.secret.is_some() || v.config_map.is_some() || v.projected.is_some();
            let owned = v.persistent_volume_claim.is_some() || v.empty_dir.is_some() || read_only;
            let dir = if let Some(pvc) = &v.persistent_volume_claim {
                self.cfg.data_dir.join("pvc").join(ns).join(&pvc.claim_name)
            } else if let Some(s) = &v.secret {
                let dir = pod_dir.join("volumes").join(&v.name);
                let name = s.secret_name.clone().unwrap_or_default();
                let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
                match api.get_opt(&name).await {
                    Ok(Some(sec)) => {
                        std::fs::create_dir_all(&dir).map_err(io)?;
                        let keys: Vec<String> = sec
                            .data
                            .iter()
                            .flat_map(|d| d.keys().cloned())
                            .chain(sec.string_data.iter().flat_map(|d| d.keys().cloned()))
                            .collect();
                        for k in keys {
                            if let Some(val) = secret_value(&sec, &k) {
                                std::fs::write(dir.join(&k), val).map_err(io)?;
                            }
                        }
                    }
                    _ if s.optional == Some(true) => {}
                    _ => return Err(StartError::Config(format!("secret \"{name}\" not found"))),
                }
                dir
            } else if let Some(p) = &v.projected {
                let dir = pod_dir.join("volumes").join(&v.name);
                std::fs::create_dir_all(&dir).map_err(io)?;
                self.projected(pod, ns, p, &dir).await?;
                dir
            } else if let Some(cm) = &v.config_map {
                let dir = pod_dir.join("volumes").join(&v.name);
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
                match api.get_opt(&cm.name).await {
                    Ok(Some(m)) => {
                        std::fs::create_dir_all(&dir).map_err(io)?;
                        for (k, val) in m.data.iter().flatten() {
                            std::fs::write(dir.join(k), val).map_err(io)?;
                        }
                        for (k, val) in m.binary_data.iter().flatten() {
                            std::fs::write(dir.join(k), &val.0).map_err(io)?;
                        }
                    }
                    _ if cm.optional == Some(true) => {}
                    _ => {
                        return Err(StartError::Config(format!(
                            "configmap \"{}\" not found",
                            cm.name
                        )));
                    }
                }
                dir
            } else {
                // emptyDir and anything else: a per-pod directory, world-writable as the kubelet
                // makes emptyDir (empty_dir.go: setupDir, 0777).
                let dir = pod_dir.join("volumes").join(&v.name);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(io)?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                        .map_err(io)?;
                }
                dir
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            if let Some(fs) = fs_group.filter(|_| owned) {
                identity::set_volume_ownership(&dir, fs, read_only).map_err(io)?;
            }
            dirs.insert(v.name.clone(), dir);
        }
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(dir) = dirs.get(&m.name) else {
                return Err(StartError::Config(format!("volume {:?} not found", m.name)));
            };
            let src = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let p = dir.join(sub);
                    if !p.exists() {
                        std::fs::create_dir_all(&p).map_err(io)?;
                    }
                    p
                }
                None => dir.clone(),
            };
            out.push((src, PathBuf::from(&m.mount_path)));
        }
        Ok(out)
    }
}

/// Everything needed to start one container process.
pub struct Launch {
    /// The executable standing for the entrypoint (or `command[0]`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The container's environment (the process gets nothing else but PATH, HOME, HOSTNAME).
    pub env: Vec<(String, String)>,
    /// (host source, path seen by the process) pairs.
    pub mounts: Vec<(PathBuf, PathBuf)>,
    /// Working directory as seen by the process.
    pub working_dir: Option<String>,
    /// HOSTNAME value.
    pub hostname: String,
    /// Bind mounts in a private mount namespace (true) or symlinks (fallback).
    pub mount_ns: bool,
    /// The UID, GID and supplementary groups the process runs with (set by `setpriv` after the mounts).
    pub identity: Identity,
    /// `readOnlyRootFilesystem`: all but the mounts in `mounts` read-only (needs `mount_ns`).
    pub read_only_root: bool,
}

/// Start a container process in its own process group, output to `log`.
pub fn launch(l: &Launch, log: std::fs::File) -> std::io::Result<tokio::process::Child> {
    let mut cmd = if l.mount_ns {
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--"]);
        cmd.args(["/bin/sh", "-c", LAUNCH_SCRIPT, "sh"]);
        cmd
    } else {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", LAUNCH_SCRIPT, "sh"]);
        cmd
    };
    cmd.arg(&l.program).args(&l.args);
    cmd.env_clear();
    cmd.env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    // Runtimes take HOME from the image's /etc/passwd; a numeric user without an entry gets "/".
    cmd.env("HOME", if l.identity.uid == 0 { "/root" } else { "/" });
    cmd.env("KUBESIM_UID", l.identity.uid.to_string());
    cmd.env("KUBESIM_GID", l.identity.gid.to_string());
    let groups: Vec<String> = l.identity.groups.iter().map(u32::to_string).collect();
    cmd.env("KUBESIM_GROUPS", groups.join(","));
    cmd.env("HOSTNAME", &l.hostname);
    cmd.env("KUBESIM_MODE", if l.mount_ns { "bind" } else { "link" });
    cmd.env("KUBESIM_NMOUNTS", l.mounts.len().to_string());
    for (i, (src, dst)) in l.mounts.iter().enumerate() {
        cmd.env(format!("KUBESIM_MSRC_{i}"), src);
        cmd.env(format!("KUBESIM_MDST_{i}"), dst);
    }
    cmd.env("KUBESIM_WORKDIR", l.working_dir.clone().unwrap_or_default());
    if l.read_only_root {
        cmd.env("KUBESIM_RO_ROOT", "1");
        let rw: Vec<String> = l
            .mounts
            .iter()
            .map(|(_, dst)| dst.components().collect::<PathBuf>().display().to_string())
            .collect();
        cmd.env("KUBESIM_RW", rw.join("\n"));
    }
    for (k, v) in &l.env {
        cmd.env(k, v);
    }
    let log2 = log.try_clone()?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// The exit code Kubernetes reports: the process's, or 128 + signal when killed.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}

/// Expand `$(VAR)` references to earlier variables, as upstream does for `value`.
fn expand(v: &str, env: &[(String, String)]) -> String {
    let mut out = v.to_string();
    for (k, val) in env.iter().rev() {
        out = out.replace(&format!("$({k})"), val);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, script: &str, mount_ns: bool) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello $(not expanded) 'q' \"dq\"".into())],
            mounts: vec![
                (dir.join("pvc"), dir.join("seen/data")),
                (dir.join("term"), dir.join("seen/dev/termination-log")),
            ],
            working_dir: Some(dir.join("seen/data").display().to_string()),
            hostname: "job-0".into(),
            mount_ns,
            identity: Identity {
                uid: 0,
                gid: 0,
                groups: vec![],
            },
            read_only_root: false,
        }
    }

    async fn run_and_check(mount_ns: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pvc")).expect("pvc");
        std::fs::write(dir.path().join("term"), b"").expect("term");
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let script = r#"echo "$GREETING" > out; echo "bye" > "$(dirname "$PWD")/dev/termination-log"; env | grep -c KUBESIM_ >&2; exit 3"#;
        let mut child = launch(&spec(dir.path(), script, mount_ns), log).expect("launch");
        let status = child.wait().await.expect("wait");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert_eq!(exit_code(status), 3, "log: {log}");
        assert_eq!(log.trim(), "0", "no KUBESIM_ variables reach the process");
        let out =
            std::fs::read_to_string(dir.path().join("pvc/out")).expect("written through the mount");
        assert_eq!(out, "hello $(not expanded) 'q' \"dq\"\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("term")).expect("term"),
            "bye\n"
        );
        if mount_ns {
            assert!(
                std::fs::read_dir(dir.path().join("seen/data"))
                    .expect("mountpoint")
                    .next()
                    .is_none(),
                "the bind mount is invisible outside the pod's mount namespace"
            );
        }
    }

    #[tokio::test]
    async fn process_sees_volumes_at_mount_paths_in_private_namespace() {
        if mount_ns_available() {
            run_and_check(true).await;
        }
    }

    #[tokio::test]
    async fn symlink_fallback_keeps_paths_working() {
        run_and_check(false).await;
    }

    #[tokio::test]
    async fn killing_the_group_takes_background_children_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "sleep 30 & echo $! > \"$0\"; wait".into(),
                dir.path().join("bg").display().to_string(),
            ],
            env: vec![],
            mounts: vec![],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: false,
            identity: Identity {
                uid: 0,
                gid: 0,
                groups: vec![],
            },
            read_only_root: false,
        };
        let mut child = launch(&l, log).expect("launch");
        let pgid = child.id().expect("pid");
        let bg = loop {
            if let Ok(s) = std::fs::read_to_string(dir.path().join("bg"))
                && !s.trim().is_empty()
            {
                break s.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        kill_group(pgid, "KILL");
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("exits")
            .expect("wait");
        assert_eq!(exit_code(status), 137);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let alive =
            std::fs::read_to_string(format!("/proc/{bg}/stat")).is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "background child {bg} survived the group kill");
    }

    #[test]
    fn log_tail_keeps_last_80_lines() {
        let log: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(log.as_bytes());
        assert!(tail.starts_with("line 120"));
        assert!(tail.ends_with("line 199"));
    }
}
