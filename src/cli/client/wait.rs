//! Following a ReportJob until it is done (`submit --wait`, `reportjob wait`): a watch re-established by
//! kube's watcher (dropped watches, 410s, API-server restarts) with kube's default backoff,
//! `--timeout` and `--reconnect-timeout`, and the exit code and lines of how it ended.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;

use super::cluster::{ClusterArgs, connect, get_reportjob};
use super::duration::{human_duration, parse_duration};
use super::exit::{CommandResult, Exit, finish};
use super::output::{failure_message, outcome, output_lines, status_json};
use super::print::{Format, render};
use super::progress::WaitProgress;
use crate::api::ReportJob;

/// How waiting ended.
pub enum WaitEnd {
    /// Complete (`true`) or failed.
    Finished(Box<ReportJob>, bool),
    /// The ReportJob was deleted.
    Deleted(Box<ReportJob>),
    /// `--timeout` was reached.
    TimedOut(Box<ReportJob>, Duration),
    /// The API server could not be reached for `--reconnect-timeout`.
    Lost(Box<ReportJob>, String),
}

/// How long a ReportJob may go untouched by any controller (no finalizer, no status) before
/// the wait says so: a controller takes a new ReportJob up within a second or two.
pub const UNCLAIMED_AFTER: Duration = Duration::from_secs(30);

/// Whether no controller has taken `rj` up yet: it has neither the controller's finalizer
/// nor a status.
pub fn unclaimed(rj: &ReportJob) -> bool {
    let finalized = kube::ResourceExt::finalizers(rj)
        .iter()
        .any(|f| f == crate::controller::names::FINALIZER);
    !finalized && rj.status.as_ref().and_then(|s| s.phase).is_none()
}

/// What the wait says about a ReportJob no controller has taken up.
pub fn unclaimed_note(rj: &ReportJob) -> String {
    let ns = kube::ResourceExt::namespace(rj).unwrap_or_default();
    format!(
        "no controller has taken up ReportJob {ns}/{} yet: is the reportjob controller running, \
         and does it watch namespace {ns}? (`kubectl get deployments -A -l \
         app.kubernetes.io/name=reportjob`; the chart's watchNamespaces)",
        kube::ResourceExt::name_any(rj)
    )
}

/// When `rj`, created at its creation timestamp, counts as unclaimed for the wait.
fn unclaimed_deadline(rj: &ReportJob) -> tokio::time::Instant {
    let age = rj
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| jiff::Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + UNCLAIMED_AFTER.saturating_sub(age)
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

/// Follows the ReportJob through a watch until it finishes, the deadline passes or the
/// server stays away for `reconnect`. The watch yields each error once and then waits out
/// kube's [`DefaultBackoff`](kube::runtime::watcher::DefaultBackoff) (0.8 s doubling, at
/// most 30 s, with jitter) before trying again; `reconnect` is its own timer, so giving up
/// never waits for a backoff to end.
pub async fn wait_for(
    api: Api<ReportJob>,
    name: &str,
    timeout: Option<Duration>,
    reconnect: Duration,
    progress: &mut WaitProgress,
    initial: ReportJob,
) -> WaitEnd {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = initial;
    progress.update(&last);
    if let Some(done) = outcome(&last) {
        return WaitEnd::Finished(Box::new(last), done);
    }
    let stream = watch_object(api, name).default_backoff();
    futures::pin_mut!(stream);
    // Since when the watch has failed, and its last error.
    let mut failing: Option<(tokio::time::Instant, String)> = None;
    // Said once: no controller has taken the ReportJob up.
    let mut told_unclaimed = false;
    loop {
        let give_up = until(failing.as_ref().map(|(since, _)| *since + reconnect));
        let unclaimed_at = (!told_unclaimed && unclaimed(&last)).then(|| unclaimed_deadline(&last));
        let item = tokio::select! {
            _ = until(deadline) => {
                return WaitEnd::TimedOut(Box::new(last), timeout.unwrap_or_default());
            }
            _ = until(unclaimed_at) => {
                progress.line(&unclaimed_note(&last));
                told_unclaimed = true;
                continue;
            }
            _ = give_up => {
                let why = failing.map(|(_, why)| why).unwrap_or_default();
                return WaitEnd::Lost(Box::new(last), why);
            }
            item = stream.next() => item,
        };
        match item {
            Some(Ok(Some(rj))) => {
                if failing.take().is_some() {
                    progress.line("connection to the API server restored");
                }
                progress.update(&rj);
                if let Some(done) = outcome(&rj) {
                    return WaitEnd::Finished(Box::new(rj), done);
                }
                last = rj;
            }
            Some(Ok(None)) => return WaitEnd::Deleted(Box::new(last)),
            Some(Err(e)) => {
                let message = crate::error::error_chain(&e);
                match &mut failing {
                    Some((_, why)) => *why = message,
                    None => {
                        progress.line(&format!("watch interrupted, reconnecting: {message}"));
                        failing = Some((tokio::time::Instant::now(), message));
                    }
                }
            }
            None => return WaitEnd::Lost(Box::new(last), "the watch ended".into()),
        }
    }
}

/// How the end of a wait is printed on stdout: the lines for people, the one-object JSON of
/// `--json`, or the final ReportJob in an `-o` format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// The lines for people.
    Lines,
    /// `--json`.
    Json,
    /// `-o json|yaml|wide|name`.
    Format(Format),
}

/// Prints how waiting ended and returns the exit code.
pub fn report_end(end: &WaitEnd, ns: &str, name: &str, shown: Shown, waited: Duration) -> Exit {
    let as_json = shown != Shown::Lines;
    let (rj, result, code) = match end {
        WaitEnd::Finished(rj, true) => (rj, "succeeded", Exit::Ok),
        WaitEnd::Finished(rj, false) => (rj, "failed", Exit::Failed),
        WaitEnd::Deleted(rj) => (rj, "deleted", Exit::Failed),
        WaitEnd::TimedOut(rj, _) => (rj, "timeout", Exit::NoResult),
        WaitEnd::Lost(rj, _) => (rj, "lost", Exit::NoResult),
    };
    let status = rj.status.clone().unwrap_or_default();
    match shown {
        Shown::Lines => {}
        Shown::Json => println!("{}", status_json(rj, result)),
        Shown::Format(format) => {
            match render(std::slice::from_ref(&**rj), Some(format), false, false) {
                Ok(text) => print!("{text}"),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
    let phase = status.phase.map_or("Pending", |p| p.as_str());
    let chunks = status
        .chunks
        .as_ref()
        .map(|c| format!(", {}/{} chunks", c.succeeded, c.total))
        .unwrap_or_default();
    match end {
        WaitEnd::Finished(_, true) => {
            if !as_json {
                let elapsed = match (&status.start_time, &status.completion_time) {
                    (Some(s), Some(c)) => c.0.duration_since(s.0).as_secs(),
                    _ => waited.as_secs() as i64,
                };
                println!(
                    "ReportJob {ns}/{name} succeeded in {}",
                    human_duration(elapsed)
                );
                print!("{}", output_lines(&status));
            }
        }
        WaitEnd::Finished(_, false) if status.phase == Some(crate::api::Phase::Cancelled) => {
            eprintln!(
                "error: ReportJob {ns}/{name} was cancelled: {}",
                failure_message(&status)
            );
            eprintln!(
                "{}",
                crate::api::next_step::after_failure(
                    crate::api::conditions::reason::CANCELLED,
                    name,
                    ns
                )
            );
        }
        WaitEnd::Finished(_, false) => {
            eprintln!(
                "error: ReportJob {ns}/{name} failed: {}",
                failure_message(&status)
            );
            if let Some(failed) = status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
                eprintln!("failed chunks: {failed}");
            }
            let reason = status
                .conditions
                .iter()
                .find(|c| c.type_ == crate::api::conditions::FAILED && c.status == "True")
                .map_or("", |c| c.reason.as_str());
            eprintln!("{}", crate::api::next_step::after_failure(reason, name, ns));
        }
        WaitEnd::Deleted(_) => {
            eprintln!("error: ReportJob {ns}/{name} was deleted before it finished");
        }
        WaitEnd::TimedOut(_, after) => {
            eprintln!(
                "error: timed out after {} waiting for ReportJob {ns}/{name} ({phase}{chunks}); \
                 it goes on in the cluster: `reportjob status {name} -n {ns}`",
                human_duration(after.as_secs() as i64)
            );
        }
        WaitEnd::Lost(_, why) => {
            eprintln!(
                "error: lost the connection to the API server while waiting for ReportJob \
                 {ns}/{name} ({phase}{chunks}): {why}"
            );
        }
    }
    code
}

/// Follows a ReportJob just submitted or read: the progress, then how it ended.
pub async fn follow(
    api: Api<ReportJob>,
    rj: ReportJob,
    ns: &str,
    timeout: Option<Duration>,
    reconnect: Duration,
    shown: Shown,
) -> Exit {
    let started = Instant::now();
    let name = kube::ResourceExt::name_any(&rj);
    let mut progress = WaitProgress::new();
    let end = wait_for(api, &name, timeout, reconnect, &mut progress, rj).await;
    progress.finish();
    report_end(&end, ns, &name, shown, started.elapsed())
}

/// `reportjob wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Give up after this long (`90` seconds, `30s`, `30m`, `2h`, `1h30m`): exit 2.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Give up when the API server has been unreachable this long: exit 2.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub reconnect_timeout: Duration,
    /// Print the final status as one JSON object on stdout.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// Print the final ReportJob in this format on stdout.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Also follow the logs of its stage pods (as `logs -f`), on stderr.
    #[arg(long)]
    pub log: bool,
}

/// `reportjob wait NAME`: follows an existing ReportJob to its end, with the exit codes of
/// `submit --wait` (0 complete, 1 failed or deleted, 2 timeout or no server).
pub async fn wait(args: WaitArgs) -> i32 {
    finish(wait_inner(args).await)
}

async fn wait_inner(args: WaitArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client.clone(), &ns);
    let rj = get_reportjob(&api, &args.name, &ns).await?;
    let shown = shown(args.json, args.output);
    let following = follow(api, rj, &ns, args.timeout, args.reconnect_timeout, shown);
    if args.log {
        return Ok(with_logs(client, &ns, &args.name, following).await);
    }
    Ok(following.await)
}

/// How `--json` and `-o` ask for the end to be shown.
pub fn shown(json: bool, output: Option<Format>) -> Shown {
    match (json, output) {
        (_, Some(format)) => Shown::Format(format),
        (true, None) => Shown::Json,
        (false, None) => Shown::Lines,
    }
}

/// Runs `following` while the stage pods' logs are followed on stderr; the logs stop when it
/// ends (after the lines already read are printed).
pub async fn with_logs(
    client: kube::Client,
    ns: &str,
    name: &str,
    following: impl std::future::Future<Output = Exit>,
) -> Exit {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let logs = super::follow_logs::follow(
        client,
        ns.to_string(),
        name.to_string(),
        super::follow_logs::Filter::default(),
        super::follow_logs::Sink::Stderr,
        stop_rx,
    );
    let (exit, _) = tokio::join!(
        async {
            let exit = following.await;
            let _ = stop_tx.send(true);
            exit
        },
        logs
    );
    exit
}
