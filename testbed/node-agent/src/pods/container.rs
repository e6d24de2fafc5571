//! Starting and running one container of a pod: the image (with the kubelet's pull back-off),
//! identity, environment, volumes and log are resolved, retried while something keeps the
//! container from starting; the process is launched and watched until it exits, with the
//! deletion handshake's SIGTERM and SIGKILL, `activeDeadlineSeconds` and readiness probing
//! along the way; its end becomes the container's terminated state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Kind, MAX_GRACE, Proc, StartError, Stop, Worker, earliest, lock, sleep_until};
use crate::env::{self, NodeView};
use crate::images;
use crate::launch::{self, Launch, Mount};
use crate::logfile;
use crate::spawn::{Sig, kill_group};
use crate::status::{MAX_MESSAGE, Phase, State, Terminated};
use crate::{identity, incluster, node, probe, volumes};

/// How one container run ended.
pub(super) enum Ran {
    Exited(Terminated),
    Stopped(Stop, Option<Terminated>),
    CannotRun(String),
}

async fn next_probe(rx: &mut Option<mpsc::Receiver<bool>>) -> bool {
    match rx {
        Some(r) => match r.recv().await {
            Some(v) => v,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A container ready to start.
struct Prepared {
    launch: Launch,
    log: logfile::Writer,
    term_file: PathBuf,
    image_id: String,
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

impl Worker {
    /// Start the container of `kind` (waiting out what keeps it from starting) and run it to
    /// its end.
    pub(super) async fn run(&mut self, kind: Kind) -> Ran {
        let Some(c) = self.spec_container(kind) else {
            return Ran::CannotRun("no such container in the pod's spec".into());
        };
        let prepared = loop {
            if let Some(stop) = self.check_stop() {
                return Ran::Stopped(stop, None);
            }
            let err = match self.prepare(kind, &c).await {
                Ok(p) => break p,
                Err(StartError::Other(m)) => return Ran::CannotRun(m),
                Err(e) => e,
            };
            let image = c.image.clone().unwrap_or_default();
            let (reason, msg, retry) = match err {
                StartError::Image(m) => ("ErrImagePull", m, Duration::from_secs(1)),
                StartError::ImageBackOff(m) => {
                    let left = self
                        .pulls
                        .get(&image)
                        .map_or(Duration::from_secs(1), |(at, _)| {
                            at.saturating_duration_since(Instant::now())
                        });
                    ("ImagePullBackOff", m, left.max(Duration::from_millis(100)))
                }
                StartError::NeverPull(m) => ("ErrImageNeverPull", m, Duration::from_secs(1)),
                StartError::Config(m) | StartError::Other(m) => {
                    ("CreateContainerConfigError", m, Duration::from_secs(1))
                }
            };
            if reason == "CreateContainerConfigError" {
                self.event(
                    kind,
                    &c.name,
                    "Warning",
                    "Failed",
                    "Create",
                    &format!("Error: {msg}"),
                );
            }
            if let Some(m) = self.model_mut(kind) {
                m.state = State::waiting(reason, Some(msg));
                m.ready = false;
            }
            self.write().await;
            if let Err(stop) = self.pause(Some(Instant::now() + retry)).await {
                return Ran::Stopped(stop, None);
            }
        };
        let Prepared {
            launch: spec,
            log,
            term_file,
            image_id,
        } = prepared;
        let spawned = match launch::launch(&self.k.spawner, &spec).await {
            Ok(s) => s,
            Err(e) => {
                return Ran::CannotRun(format!("failed to start {}: {e}", spec.program.display()));
            }
        };
        let pgid = spawned.pid;
        let started = Timestamp::now();
        lock(&self.k.procs).insert(
            self.uid.clone(),
            Proc {
                ns: self.ns.clone(),
                name: self.name.clone(),
                pgid,
                code_override: None,
            },
        );
        let log_path = log.path.clone();
        let pump = tokio::spawn(logfile::pump(spawned.stdout, spawned.stderr, log));
        let probe = match kind {
            Kind::Main => c
                .readiness_probe
                .as_ref()
                .and_then(|p| probe::http_probe(p, &c).ok().flatten()),
            Kind::Init(_) => None,
        };
        let container_id = format!("node-agent://{}-{pgid}", self.uid);
        let has_probe = probe.is_some();
        if let Some(m) = self.model_mut(kind) {
            m.state = State::Running {
                started_at: started,
            };
            m.container_id = Some(container_id.clone());
            m.image_id = image_id;
            m.ready = kind == Kind::Main && !has_probe;
        }
        if kind == Kind::Main {
            self.model.phase = Phase::Running;
        }
        self.event(
            kind,
            &c.name,
            "Normal",
            "Created",
            "Create",
            "Container created",
        );
        self.event(
            kind,
            &c.name,
            "Normal",
            "Started",
            "Start",
            "Container started",
        );
        self.write().await;
        let (probe_tx, probe_rx) = mpsc::channel::<bool>(4);
        let mut probe_rx = Some(probe_rx);
        let prober = probe.map(|p| {
            tokio::spawn(async move {
                tokio::time::sleep(p.initial_delay).await;
                let mut r = probe::Readiness::default();
                loop {
                    let ok = probe::check(&p).await;
                    if let Some(now) = r.record(ok, &p)
                        && probe_tx.send(now).await.is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(p.period).await;
                }
            })
        });
        let mut exit = spawned.exit;
        let mut stop: Option<Stop> = None;
        let mut kill_at: Option<Instant> = None;
        let mut term_since: Option<Instant> = None;
        let mut watching = true;
        let status = loop {
            let deadline = if stop.is_none() {
                self.active_deadline
            } else {
                None
            };
            tokio::select! {
                r = &mut exit => break r.ok().and_then(Result::ok),
                changed = self.rx.changed(), if watching => {
                    watching = changed.is_ok();
                    let latest = if watching { self.rx.borrow_and_update().clone() } else { None };
                    match latest {
                        None => {
                            if stop != Some(Stop::Gone) {
                                stop = Some(Stop::Gone);
                                kill_group(pgid, Sig::Term);
                                kill_at = Some(Instant::now() + Duration::from_secs(2));
                            }
                        }
                        Some(p) => {
                            self.pod = p;
                            // A deadline set or shortened on the running pod applies at once.
                            self.active_deadline = super::deadline_of(&self.pod, self.model.start_time);
                            if self.deleting() && matches!(stop, None | Some(Stop::Deadline)) {
                                let since = *term_since.get_or_insert_with(Instant::now);
                                if stop.is_none() {
                                    self.event(kind, &c.name, "Normal", "Killing", "Kill",
                                        &format!("Stopping container {}", c.name));
                                    kill_group(pgid, Sig::Term);
                                }
                                stop = Some(Stop::Deleted);
                                kill_at = earliest(kill_at, Some(since + self.deletion_grace()));
                            } else if self.deleting() && stop == Some(Stop::Deleted) {
                                // A second delete may shorten the grace period.
                                if let Some(since) = term_since {
                                    kill_at = earliest(kill_at, Some(since + self.deletion_grace()));
                                }
                            }
                        }
                    }
                }
                ready = next_probe(&mut probe_rx) => {
                    if let Some(m) = self.model_mut(Kind::Main) {
                        m.ready = ready;
                    }
                    self.write().await;
                }
                () = sleep_until(deadline) => {
                    stop = Some(Stop::Deadline);
                    term_since = Some(Instant::now());
                    kill_group(pgid, Sig::Term);
                    kill_at = Some(Instant::now() + self.termination_grace());
                }
                () = sleep_until(kill_at) => {
                    kill_group(pgid, Sig::Kill);
                    kill_at = None;
                }
            }
        };
        if let Some(p) = prober {
            p.abort();
        }
        // The whole group goes with the main process, as when a container's init exits.
        kill_group(pgid, Sig::Kill);
        let code_override = lock(&self.k.procs)
            .remove(&self.uid)
            .and_then(|p| p.code_override);
        let code = code_override.unwrap_or_else(|| status.map_or(137, launch::exit_code));
        let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        let mut message = std::fs::read(&term_file).unwrap_or_default();
        message.truncate(MAX_MESSAGE);
        let mut message = String::from_utf8_lossy(&message).into_owned();
        if message.is_empty()
            && code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            message = log_tail(&std::fs::read(&log_path).unwrap_or_default());
        }
        let t = Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: Some(message).filter(|m| !m.is_empty()),
            started_at: Some(started),
            finished_at: Timestamp::now(),
            container_id: Some(container_id),
        };
        if let Some(m) = self.model_mut(kind) {
            m.ready = false;
        }
        match stop {
            Some(s) => Ran::Stopped(s, Some(t)),
            None => Ran::Exited(t),
        }
    }

    /// `deletionGracePeriodSeconds` (or the pod's termination grace period), at most 30 s.
    fn deletion_grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_GRACE)
    }

    /// `terminationGracePeriodSeconds`, at most 30 s.
    fn termination_grace(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_GRACE)
    }

    /// `EnsureImageExists`: a mapped image is on the node; an unmapped one fails to pull
    /// (ErrImagePull), then backs off (ImagePullBackOff) before the next attempt (2 s doubling
    /// to 10 s here, 10 s to 300 s upstream).
    fn ensure_image(&mut self, kind: Kind, c: &Container) -> Result<PathBuf, StartError> {
        let image = c.image.clone().unwrap_or_default();
        if let Some(p) = images::resolve(&self.k.images.programs, &image) {
            self.pulls.remove(&image);
            self.event(
                kind,
                &c.name,
                "Normal",
                "Pulled",
                "Pull",
                &format!("Container image {image:?} already present on machine"),
            );
            return Ok(p);
        }
        if c.image_pull_policy.as_deref() == Some("Never") {
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            self.event(kind, &c.name, "Warning", "ErrImageNeverPull", "Pull", &msg);
            return Err(StartError::NeverPull(msg));
        }
        let now = Instant::now();
        let entry = self.pulls.entry(image.clone()).or_insert((now, 0));
        if now < entry.0 {
            let note = format!("Back-off pulling image {image:?}");
            self.event(kind, &c.name, "Normal", "BackOff", "Pull", &note);
            self.event(
                kind,
                &c.name,
                "Warning",
                "Failed",
                "Pull",
                "Error: ImagePullBackOff",
            );
            return Err(StartError::ImageBackOff(note));
        }
        entry.1 += 1;
        entry.0 = now + Duration::from_secs(1 << entry.1.min(4)).min(Duration::from_secs(10));
        let tagged = images::with_default_tag(&image);
        let msg = format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image {tagged:?}: failed to resolve reference {tagged:?}: {tagged}: not found"
        );
        self.event(
            kind,
            &c.name,
            "Normal",
            "Pulling",
            "Pull",
            &format!("Pulling image {image:?}"),
        );
        self.event(
            kind,
            &c.name,
            "Warning",
            "Failed",
            "Pull",
            &format!("Failed to pull image {image:?}: {msg}"),
        );
        self.event(
            kind,
            &c.name,
            "Warning",
            "Failed",
            "Pull",
            "Error: ErrImagePull",
        );
        Err(StartError::Image(msg))
    }

    /// Resolve image, identity, environment and volumes, and open the log.
    async fn prepare(&mut self, kind: Kind, c: &Container) -> Result<Prepared, StartError> {
        let io = |e: std::io::Error| StartError::Other(e.to_string());
        let pod = Arc::clone(&self.pod);
        images::warn_missing_pull_secrets(&self.k.client, &self.k.recorder, &pod).await;
        let image_prog = self.ensure_image(kind, c)?;
        let image = c.image.clone().unwrap_or_default();
        let read_only_root = c
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem)
            == Some(true);
        if read_only_root && !self.k.mount_ns {
            return Err(StartError::Other(
                "readOnlyRootFilesystem needs mount namespaces, which are unavailable here".into(),
            ));
        }
        let (program, args): (PathBuf, Vec<String>) = match c.command.as_deref() {
            Some([first, rest @ ..]) => (
                images::resolve(&self.k.images.programs, first)
                    .unwrap_or_else(|| PathBuf::from(first)),
                rest.iter()
                    .cloned()
                    .chain(c.args.iter().flatten().cloned())
                    .collect(),
            ),
            _ => (image_prog.clone(), c.args.clone().unwrap_or_default()),
        };
        if kind == Kind::Main
            && let Some(p) = &c.readiness_probe
        {
            probe::http_probe(p, c).map_err(StartError::Config)?;
        }
        let image_uid = images::resolve(&self.k.images.users, &image).unwrap_or(0);
        let ident = identity::effective(&pod, c, image_uid).map_err(StartError::Config)?;
        let fs_group = identity::fs_group(&pod).map_err(StartError::Config)?;
        let node = NodeView {
            node_name: &self.k.node_name,
            allocatable: &node::CAPACITY,
        };
        let service = incluster::service_env(&self.k.api_host, self.k.api_port);
        let env = env::resolve(&self.k.client, &pod, c, &node, service).await?;
        // Arguments may refer to the environment too.
        let args = args.iter().map(|a| env::expand(a, &env)).collect();
        std::fs::create_dir_all(&self.pod_dir).map_err(io)?;
        let cx = volumes::VolumeContext {
            client: &self.k.client,
            pod: &pod,
            pod_dir: &self.pod_dir,
            fs_group,
            node: &node,
        };
        let mut mounts = volumes::mounts(&cx, c, &env).await?;
        let term_dir = self.pod_dir.join("termination");
        std::fs::create_dir_all(&term_dir).map_err(io)?;
        let term_file = term_dir.join(&c.name);
        std::fs::write(&term_file, b"").map_err(io)?;
        // The kubelet makes the termination-message file world-writable.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&term_file, std::fs::Permissions::from_mode(0o666))
                .map_err(io)?;
        }
        mounts.push(Mount {
            source: term_file.clone(),
            target: PathBuf::from(
                c.termination_message_path
                    .as_deref()
                    .unwrap_or("/dev/termination-log"),
            ),
            read_only: false,
        });
        if let Some(target) = launch::hidden_by(&program, &mounts) {
            return Err(StartError::Other(format!(
                "the container's program {} is under {}, a mount path of the pod's volumes, which hides it: the image's program must live outside every volume's mount path",
                program.display(),
                target.display()
            )));
        }
        let first_run = self.ran.insert(c.name.clone());
        let log = logfile::start(
            &self.k.logs,
            &self.k.data_dir,
            &self.ns,
            &self.name,
            &c.name,
            first_run,
        )
        .map_err(io)?;
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        Ok(Prepared {
            launch: Launch {
                program,
                args,
                env,
                mounts,
                working_dir: c.working_dir.clone(),
                hostname,
                mount_ns: self.k.mount_ns,
                identity: ident,
                read_only_root,
            },
            log,
            term_file,
            image_id: format!("node-agent://{}", image_prog.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_last_80_lines() {
        let log: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(log.as_bytes());
        assert!(tail.starts_with("line 120"));
        assert!(tail.ends_with("line 199"));
    }
}
