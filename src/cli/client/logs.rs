//! `reportjob logs NAME`: the logs of a ReportJob's pods, one header per pod, by stage
//! and chunk; with `-f`, every stage pod followed as it starts until the ReportJob ends
//! ([`follow_logs`](super::follow_logs)).

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::cluster::{ClusterArgs, api_failure, connect, describe, get_reportjob};
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::follow_logs::{self, Filter, Sink};
use super::output::outcome;
use super::stage_pods::{pod_chunk, selector};
use crate::api::ReportJob;
use crate::controller::names::{STAGE_LABEL, Stage};

/// The stages whose pods `logs` shows, as `--stage` takes them.
fn stage_parser() -> impl clap::builder::TypedValueParser<Value = Stage> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new(Stage::Plan.as_str()).help("The plan pod"),
        PossibleValue::new(Stage::Chunks.as_str()).help("The chunk pods"),
        PossibleValue::new(Stage::Assemble.as_str()).help("The assemble pod"),
        PossibleValue::new(Stage::Snapshot.as_str())
            .help("The snapshot holder pod (consistency: Snapshot)"),
        PossibleValue::new(Stage::Notify.as_str()).help("The failure notification pod"),
        PossibleValue::new(Stage::Cleanup.as_str()).help("The cleanup pod, after a delete"),
    ])
    .try_map(|s| Stage::parse(&s).ok_or_else(|| format!("unknown stage {s:?}")))
}

/// `reportjob logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Only the pods of this stage.
    #[arg(long, value_parser = stage_parser())]
    pub stage: Option<Stage>,
    /// Only the pods that exported this chunk (its index in the plan).
    #[arg(long)]
    pub chunk: Option<usize>,
    /// Only the last N lines of each pod's log.
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub tail: Option<i64>,
    /// Follow the logs of every stage pod as it starts, each line prefixed `[stage/chunk]`,
    /// until the ReportJob completes, fails or is deleted.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

/// Plan, chunks, assemble, then the rest.
fn stage_rank(pod: &Pod) -> usize {
    match pod.labels().get(STAGE_LABEL).and_then(|s| Stage::parse(s)) {
        Some(Stage::Plan) => 0,
        Some(Stage::Chunks) => 1,
        Some(Stage::Assemble) => 2,
        _ => 3,
    }
}

/// `reportjob logs`.
pub async fn logs(args: LogsArgs) -> i32 {
    finish(logs_inner(args).await)
}

async fn logs_inner(args: LogsArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    if args.follow {
        return follow(client, &ns, &args).await;
    }
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let name = &args.name;
    let selector = selector(name, args.stage, args.chunk);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_failure(&e, &format!("listing the pods of ReportJob {ns}/{name}")))?;
    let mut found: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| args.chunk.is_none() || pod_chunk(p) == args.chunk)
        .collect();
    if found.is_empty() {
        // No pods, or no ReportJob at all: say which (a typo'd name is not "cleaned up").
        let rjs: Api<ReportJob> = Api::namespaced(pods.into_client(), &ns);
        get_reportjob(&rjs, name, &ns).await?;
        let what = match (args.stage, args.chunk) {
            (_, Some(i)) => format!(" for chunk {i}"),
            (Some(s), None) => format!(" in stage {}", s.as_str()),
            (None, None) => String::new(),
        };
        return Err(CommandError::failed(format!(
            "no pods of ReportJob {ns}/{name}{what} (finished pods may have been cleaned up)"
        )));
    }
    found.sort_by_key(|p| {
        (
            stage_rank(p),
            pod_chunk(p).unwrap_or(0),
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    });
    let params = LogParams {
        tail_lines: args.tail,
        ..LogParams::default()
    };
    for pod in &found {
        let pod_name = pod.name_any();
        let stage = pod
            .labels()
            .get(STAGE_LABEL)
            .cloned()
            .unwrap_or_else(|| "?".into());
        let mut facts = vec![format!("stage {stage}")];
        if let Some(chunk) = pod_chunk(pod) {
            facts.push(format!("chunk {chunk}"));
        }
        if let Some(phase) = pod.status.as_ref().and_then(|s| s.phase.clone()) {
            facts.push(phase);
        }
        println!("==> pod/{pod_name} ({}) <==", facts.join(", "));
        match pods.logs(&pod_name, &params).await {
            Ok(text) => {
                print!("{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    println!();
                }
            }
            Err(e) => println!("<no logs: {}>", describe(&e)),
        }
    }
    Ok(Exit::Ok)
}

/// `logs -f`: the pods followed until the ReportJob has an outcome or is gone.
async fn follow(client: kube::Client, ns: &str, args: &LogsArgs) -> CommandResult {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let api: Api<ReportJob> = Api::namespaced(client.clone(), ns);
    let name = args.name.clone();
    get_reportjob(&api, &name, ns).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ended = async move {
        let changes = kube::runtime::watcher::watch_object(api, &name).default_backoff();
        futures::pin_mut!(changes);
        while let Some(change) = changes.next().await {
            match change {
                Ok(Some(rj)) if outcome(&rj).is_none() => {}
                Ok(_) => break,
                Err(_) => {} // retried with backoff
            }
        }
        let _ = stop_tx.send(true);
    };
    let filter = Filter {
        stage: args.stage,
        chunk: args.chunk,
    };
    let following = follow_logs::follow(
        client,
        ns.to_string(),
        args.name.clone(),
        filter,
        Sink::Stdout,
        stop_rx,
    );
    let ((), followed) = tokio::join!(ended, following);
    followed?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::builder::TypedValueParser;
    use serde_json::json;

    #[test]
    fn plan_chunks_and_assemble_pods_come_in_that_order() {
        let pod = |stage: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "labels": {STAGE_LABEL: stage}}}),
            )
            .expect("a pod")
        };
        assert_eq!(stage_rank(&pod("plan")), 0);
        assert_eq!(stage_rank(&pod("chunks")), 1);
        assert_eq!(stage_rank(&pod("assemble")), 2);
        assert_eq!(stage_rank(&pod("cleanup")), 3);
    }

    #[test]
    fn stage_takes_every_stage_that_has_pods() {
        let cmd = clap::Command::new("t");
        let arg = clap::Arg::new("stage");
        let parse = |s: &str| stage_parser().parse_ref(&cmd, Some(&arg), std::ffi::OsStr::new(s));
        assert_eq!(parse("plan").ok(), Some(Stage::Plan));
        assert_eq!(parse("chunks").ok(), Some(Stage::Chunks));
        assert_eq!(parse("assemble").ok(), Some(Stage::Assemble));
        assert_eq!(parse("snapshot").ok(), Some(Stage::Snapshot));
        assert_eq!(parse("notify").ok(), Some(Stage::Notify));
        assert_eq!(parse("cleanup").ok(), Some(Stage::Cleanup));
        for bad in ["Plan", "worker", ""] {
            assert!(parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
