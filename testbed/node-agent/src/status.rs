//! A pod's status as the agent reports it, and the writes of it.
//!
//! [`PodModel`] holds the kubelet-owned part of `status`: phase, IPs, start time, the
//! container statuses and the conditions `PodReadyToStartContainers`, `Initialized`,
//! `ContainersReady` and `Ready` (others, like the scheduler's `PodScheduled`, are left alone:
//! writes are strategic merge patches, which merge conditions by type). Writes go to
//! `pods/<name>/status` carrying the pod's uid (a pod recreated under the same name refuses
//! them) and are retried until the API server takes them; once a terminal phase was written no
//! other phase is (the API server would refuse to move a pod out of Succeeded or Failed).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Where every pod runs.
pub const POD_IP: &str = "127.0.0.1";
/// Upstream's cap on a termination message.
pub const MAX_MESSAGE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    pub fn of(pod: &Pod) -> Option<Phase> {
        match pod.status.as_ref()?.phase.as_deref()? {
            "Pending" => Some(Phase::Pending),
            "Running" => Some(Phase::Running),
            "Succeeded" => Some(Phase::Succeeded),
            "Failed" => Some(Phase::Failed),
            _ => None,
        }
    }
}

/// API time: RFC 3339 in whole seconds.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// How a container run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

impl Terminated {
    /// A container the agent has no trace of when the pod ends (never started, or lost).
    pub fn unknown() -> Self {
        Self {
            exit_code: 137,
            reason: "ContainerStatusUnknown".into(),
            message: Some("The container could not be located when the pod was terminated".into()),
            started_at: None,
            finished_at: Timestamp::now(),
            container_id: None,
        }
    }

    fn json(&self) -> Value {
        let mut t = json!({"exitCode": self.exit_code, "reason": self.reason,
            "finishedAt": time(self.finished_at)});
        if let Some(m) = self.message.as_ref().filter(|m| !m.is_empty()) {
            t["message"] = json!(m);
        }
        if let Some(s) = self.started_at {
            t["startedAt"] = json!(time(s));
        }
        if let Some(id) = &self.container_id {
            t["containerID"] = json!(id);
        }
        t
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> Self {
        State::Waiting {
            reason: reason.into(),
            message,
        }
    }

    fn json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message.as_ref().filter(|m| !m.is_empty()) {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
            State::Terminated(t) => json!({"terminated": t.json()}),
        }
    }
}

/// One container's status.
#[derive(Clone, Debug)]
pub struct ContainerModel {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub restart_count: i32,
    pub state: State,
    pub last: Option<Terminated>,
    pub ready: bool,
}

impl ContainerModel {
    fn new(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            container_id: None,
            restart_count: 0,
            state: State::waiting(reason, None),
            last: None,
            ready: false,
        }
    }

    pub fn done(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    fn json(&self) -> Value {
        let mut c = json!({"name": self.name, "image": self.image, "imageID": self.image_id,
            "ready": self.ready, "restartCount": self.restart_count,
            "started": matches!(self.state, State::Running { .. }),
            "state": self.state.json(),
            "lastState": self.last.as_ref().map_or_else(|| json!({}), |t| json!({"terminated": t.json()}))});
        if let Some(id) = &self.container_id {
            c["containerID"] = json!(id);
        }
        c
    }
}

/// The kubelet-owned part of a pod's status.
#[derive(Clone, Debug)]
pub struct PodModel {
    pub phase: Phase,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub start_time: Timestamp,
    pub init: Vec<ContainerModel>,
    pub main: Vec<ContainerModel>,
    generation: Option<i64>,
    /// Per condition type: its last status and since when.
    transitions: HashMap<&'static str, (bool, Timestamp)>,
}

impl PodModel {
    /// Pending, every container waiting; the start time is the one the pod already reports
    /// (a pod picked up again) or now.
    pub fn new(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        let main_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let image = |c: &k8s_openapi::api::core::v1::Container| c.image.clone().unwrap_or_default();
        Self {
            phase: Phase::Pending,
            reason: None,
            message: None,
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or_else(Timestamp::now, |t| t.0),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| ContainerModel::new(&c.name, &image(c), "PodInitializing"))
                .collect(),
            main: spec
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut m = ContainerModel::new(&c.name, &image(c), main_reason);
                    if i > 0 {
                        m.state = State::waiting(
                            "CreateContainerError",
                            Some("node-agent runs a pod's first container only".into()),
                        );
                    }
                    m
                })
                .collect(),
            generation: pod.metadata.generation,
            transitions: HashMap::new(),
        }
    }

    pub fn initialized(&self) -> bool {
        self.init.iter().all(ContainerModel::done)
    }

    /// End the pod: its phase, every container not terminated reported as unknown, nothing
    /// ready.
    pub fn finish(&mut self, phase: Phase, reason: Option<&str>, message: Option<&str>) {
        self.phase = phase;
        self.reason = reason.map(str::to_string);
        self.message = message.map(str::to_string);
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.ready = false;
            if !matches!(c.state, State::Terminated(_)) {
                c.state = State::Terminated(Terminated::unknown());
            }
        }
    }

    fn condition(
        &mut self,
        type_: &'static str,
        ok: bool,
        reason: Option<&str>,
        message: Option<String>,
    ) -> Value {
        let now = Timestamp::now();
        let since = match self.transitions.get(type_) {
            Some((was, since)) if *was == ok => *since,
            _ => {
                self.transitions.insert(type_, (ok, now));
                now
            }
        };
        let (reason, message) = if ok { (None, None) } else { (reason, message) };
        json!({"type": type_, "status": if ok { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": time(since),
            "reason": reason, "message": message})
    }

    /// The status object to write.
    pub fn render(&mut self) -> Value {
        let terminal = self.phase.terminal();
        let initialized = self.initialized();
        let incomplete: Vec<String> = self
            .init
            .iter()
            .filter(|c| !c.done())
            .map(|c| c.name.clone())
            .collect();
        // The first container decides readiness: the agent runs no other.
        let ready = !terminal && self.main.first().is_some_and(|c| c.ready);
        let unready: Vec<String> = self
            .main
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone())
            .collect();
        let (ready_reason, ready_message) = if terminal {
            ("PodCompleted", None)
        } else {
            (
                "ContainersNotReady",
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", !terminal, None, None),
            self.condition(
                "Initialized",
                initialized,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            ),
            self.condition(
                "ContainersReady",
                ready,
                Some(ready_reason),
                ready_message.clone(),
            ),
            self.condition("Ready", ready, Some(ready_reason), ready_message),
        ];
        let mut st = json!({
            "phase": self.phase.as_str(), "reason": self.reason, "message": self.message,
            "hostIP": POD_IP, "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP, "podIPs": [{"ip": POD_IP}],
            "startTime": time(self.start_time),
            "conditions": conditions,
            "containerStatuses": self.main.iter().map(ContainerModel::json).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            st["initContainerStatuses"] = json!(
                self.init
                    .iter()
                    .map(ContainerModel::json)
                    .collect::<Vec<_>>()
            );
        }
        if let Some(g) = self.generation {
            st["observedGeneration"] = json!(g);
        }
        st
    }
}

/// Write `status` to the pod through `pods/<name>/status`. Retried (up to 5 minutes) while the
/// API server cannot be reached or answers 429/5xx; `false` when it refused the write or the
/// pod is gone.
pub async fn write(client: &kube::Client, ns: &str, name: &str, uid: &str, status: &Value) -> bool {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"uid": uid}, "status": status});
    let mut pause = Duration::from_millis(50);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(patch.clone()),
            )
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 404 => return false,
            Err(kube::Error::Api(e)) if e.code != 429 && e.code != 409 && e.code < 500 => {
                tracing::warn!("node-agent: pod {ns}/{name} status refused: {}", e.message);
                return false;
            }
            Err(e) => {
                tracing::debug!("node-agent: pod {ns}/{name} status: {e}");
                if tokio::time::Instant::now() >= give_up {
                    return false;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"initContainers": [{"name": "i", "image": "x"}],
                "containers": [{"name": "c", "image": "x"}, {"name": "side", "image": "y"}]}
        }))
        .expect("pod")
    }

    #[test]
    fn the_status_parses_and_tracks_conditions() {
        let mut m = PodModel::new(&pod());
        let v = m.render();
        let st: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(v).expect("pod status");
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let cond = |st: &k8s_openapi::api::core::v1::PodStatus, t: &str| {
            st.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t)
                .map(|c| (c.status.clone(), c.message.clone()))
        };
        assert_eq!(
            cond(&st, "Initialized"),
            Some((
                "False".into(),
                Some("containers with incomplete status: [i]".into())
            ))
        );
        m.init[0].state = State::Terminated(Terminated {
            exit_code: 0,
            reason: "Completed".into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::now(),
            container_id: None,
        });
        m.phase = Phase::Running;
        m.main[0].state = State::Running {
            started_at: Timestamp::now(),
        };
        m.main[0].ready = true;
        let st: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(m.render()).expect("pod status");
        assert_eq!(cond(&st, "Initialized"), Some(("True".into(), None)));
        assert_eq!(cond(&st, "Ready"), Some(("True".into(), None)));
        m.finish(Phase::Failed, Some("DeadlineExceeded"), Some("too long"));
        let st: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(m.render()).expect("pod status");
        assert_eq!(cond(&st, "Ready"), Some(("False".into(), None)));
        assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
        let main = st.container_statuses.unwrap_or_default();
        assert_eq!(
            main[0]
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| (t.exit_code, t.reason.clone())),
            Some((137, Some("ContainerStatusUnknown".into())))
        );
    }
}
