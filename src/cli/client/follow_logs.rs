//! Following the logs of a ReportJob's stage pods as they come and go (`logs -f`,
//! `submit --wait --log`, `wait --log`): a watch on its pods starts one log stream per pod once
//! its container has started, and every line is printed with a `[stage/chunk]` prefix.

use std::collections::HashSet;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::exit::CommandError;
use super::stage_pods::{pod_chunk, selector};
use crate::controller::names::{STAGE_LABEL, Stage};

/// Which pods are followed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    /// Only this stage.
    pub stage: Option<Stage>,
    /// Only the pods of this plan chunk.
    pub chunk: Option<usize>,
}

/// Where the lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `logs -f`.
    Stdout,
    /// `--log` beside the progress of a wait (whose result goes to stdout).
    Stderr,
}

impl Sink {
    fn line(self, text: &str) {
        match self {
            Sink::Stdout => println!("{text}"),
            Sink::Stderr => eprintln!("{text}"),
        }
    }
}

/// How long streams of pods still running are given to end once following stops.
const GRACE: Duration = Duration::from_secs(5);

/// `[chunks/3]`, `[plan]`: the prefix of a pod's lines.
pub fn prefix(pod: &Pod) -> String {
    let stage = pod
        .labels()
        .get(STAGE_LABEL)
        .cloned()
        .unwrap_or_else(|| "?".into());
    match (Stage::parse(&stage), pod_chunk(pod)) {
        (Some(Stage::Chunks), Some(chunk)) => format!("[{stage}/{chunk}]"),
        _ => format!("[{stage}]"),
    }
}

/// Whether the pod's container has started (its log can be followed: upstream refuses the log
/// of a container still waiting to start).
fn started(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running" | "Succeeded" | "Failed")
    )
}

fn wanted(pod: &Pod, filter: &Filter) -> bool {
    filter.chunk.is_none() || pod_chunk(pod) == filter.chunk
}

/// Streams one pod's log to the sink, line by line, until the container ends.
async fn stream(pods: Api<Pod>, pod: Pod, sink: Sink) {
    let name = pod.name_any();
    let prefix = prefix(&pod);
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    match pods.log_stream(&name, &params).await {
        Ok(reader) => {
            let mut lines = reader.lines();
            while let Some(line) = lines.next().await {
                match line {
                    Ok(line) => sink.line(&format!("{prefix} {line}")),
                    Err(e) => {
                        sink.line(&format!("{prefix} <log of pod/{name} interrupted: {e}>"));
                        break;
                    }
                }
            }
        }
        Err(e) => sink.line(&format!(
            "{prefix} <no log of pod/{name}: {}>",
            super::cluster::describe(&e)
        )),
    }
}

/// Follows the pods of ReportJob `ns/name` until `stop` turns true; then the pods not seen yet
/// are read once more (a pod that started and ended between two watch events) and the running
/// streams get [`GRACE`] to end.
pub async fn follow(
    client: Client,
    ns: String,
    name: String,
    filter: Filter,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CommandError> {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let labels = selector(&name, filter.stage, filter.chunk);
    let events = watcher(pods.clone(), watcher::Config::default().labels(&labels))
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(events);
    let mut seen: HashSet<String> = HashSet::new();
    let mut streams = JoinSet::new();
    let start = |pod: Pod, streams: &mut JoinSet<()>, seen: &mut HashSet<String>| {
        if started(&pod) && wanted(&pod, &filter) && seen.insert(pod.name_any()) {
            streams.spawn(stream(pods.clone(), pod, sink));
        }
    };
    while !*stop.borrow() {
        tokio::select! {
            event = events.try_next() => match event {
                Ok(Some(pod)) => start(pod, &mut streams, &mut seen),
                Ok(None) => break,
                // The watcher retries with backoff; say so once per error.
                Err(e) => sink.line(&format!("<watching the pods of {ns}/{name}: {e}>")),
            },
            _ = stop.changed() => {}
        }
    }
    if let Ok(list) = pods.list(&ListParams::default().labels(&labels)).await {
        let mut late = list.items;
        late.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        for pod in late {
            start(pod, &mut streams, &mut seen);
        }
    }
    let drained = tokio::time::timeout(GRACE, async {
        while streams.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        streams.abort_all();
    }
    Ok(())
}
