//! The client commands `submit`, `status`, `retry`, `cancel` and `logs`: they talk to the
//! Kubernetes API about ReportJobs, for people at a terminal and for CI pipelines.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::watch_object;
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

use crate::api::conditions::{COMPLETE, FAILED};
use crate::api::load::{LoadError, load_str};
use crate::api::{API_VERSION, KIND, ReportJob, ReportJobStatus};
use crate::notify::{group_digits, human_bytes};

/// `submit --wait`: the report is complete; other commands: done.
pub const EXIT_OK: i32 = 0;
/// The report failed (or was deleted while waited for); other commands: the API refused
/// the request or the object does not exist.
pub const EXIT_FAILED: i32 = 1;
/// No result: bad usage, no usable kubeconfig, the API server unreachable, `--timeout`
/// reached, or the connection lost for longer than `--reconnect-timeout`.
pub const EXIT_NO_RESULT: i32 = 2;
/// The spec was refused, locally or by the API server (or an apply conflict).
pub const EXIT_REFUSED: i32 = 3;

/// Field manager of `submit`'s server-side apply.
pub const FIELD_MANAGER: &str = "reportjob-submit";
/// Annotation `retry` sets; the controller re-runs the failed chunks when it changes.
pub const RETRY_ANNOTATION: &str = "reporting.dev/retry";
/// Label of the pods of a ReportJob.
pub const REPORTJOB_LABEL: &str = "reporting.dev/reportjob";
/// Label of the stage of a pod.
pub const STAGE_LABEL: &str = "reporting.dev/stage";
/// Annotation of an Indexed Job's pods with their completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Which cluster and namespace.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Namespace of the ReportJob. Default: the one in the manifest (submit), else the
    /// kubeconfig context's namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The kubeconfig file. Default: KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. Default: the current context.
    #[arg(long)]
    pub context: Option<String>,
}

/// `reportjob submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The ReportJob manifest (YAML).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ReportJob (instead of the manifest's metadata.name). Submitting a name
    /// again updates that ReportJob (server-side apply).
    #[arg(long, conflicts_with = "generate_name")]
    pub name: Option<String>,
    /// Create a new ReportJob named PREFIX plus a random suffix (a fresh run every time).
    #[arg(long, value_name = "PREFIX")]
    pub generate_name: Option<String>,
    /// Follow the ReportJob until it completes or fails; the exit code tells which.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (`90` seconds, `30s`, `30m`, `2h`, `1h30m`).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
    /// With --wait: give up when the API server has been unreachable this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub reconnect_timeout: Duration,
    /// Print the final status as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Take over fields another field manager set (server-side apply `force`).
    #[arg(long)]
    pub force_conflicts: bool,
}

/// `reportjob status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the ReportJob's status as JSON instead.
    #[arg(long)]
    pub json: bool,
}

/// `reportjob retry`.
#[derive(Args, Debug)]
pub struct RetryArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `reportjob cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete the ReportJob instead of suspending it.
    #[arg(long)]
    pub delete: bool,
}

/// The stages whose pods `logs` shows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageName {
    /// The plan pod.
    Plan,
    /// The chunk pods.
    Chunks,
    /// The assemble pod.
    Assemble,
}

impl StageName {
    fn as_str(self) -> &'static str {
        match self {
            StageName::Plan => "plan",
            StageName::Chunks => "chunks",
            StageName::Assemble => "assemble",
        }
    }
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
    #[arg(long, value_enum)]
    pub stage: Option<StageName>,
    /// Only the pods that exported this chunk (its index in the plan).
    #[arg(long)]
    pub chunk: Option<usize>,
    /// Only the last N lines of each pod's log.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
}

/// Parses `90` (seconds), `500ms`, `30s`, `30m`, `2h`, `1d` or sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("invalid duration {text:?}: use e.g. 90 (seconds), 30s, 30m, 2h or 1h30m");
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let ms = number.checked_mul(unit_ms).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// `5s`, `3m12s`, `2h5m`, `3d4h`.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s % 60 == 0 => format!("{}m", s / 60),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ if s % 86400 / 3600 == 0 => format!("{}d", s / 86400),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn since(t: jiff::Timestamp) -> i64 {
    jiff::Timestamp::now().duration_since(t).as_secs()
}

/// A command that could not do its work: what to print and the exit code.
struct Failure {
    code: i32,
    message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Runs a command body, printing its failure.
fn finish(result: Result<i32, Failure>) -> i32 {
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

/// A kube error for people: the API server's message, or the transport error's causes.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => crate::error::error_chain(other),
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The client and the namespace to use.
async fn connect(args: &ClusterArgs) -> Result<(Client, String), Failure> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                fail(
                    EXIT_NO_RESULT,
                    format!("--kubeconfig: {}", crate::error::error_chain(&e)),
                )
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| {
                    fail(
                        EXIT_NO_RESULT,
                        format!("--kubeconfig: {}", crate::error::error_chain(&e)),
                    )
                })?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options).await.map_err(|e| {
            fail(
                EXIT_NO_RESULT,
                format!("kubeconfig: {}", crate::error::error_chain(&e)),
            )
        })?,
        None => Config::infer().await.map_err(|e| {
            fail(
                EXIT_NO_RESULT,
                format!(
                    "no cluster configuration (pass --kubeconfig or set KUBECONFIG): {}",
                    crate::error::error_chain(&e)
                ),
            )
        })?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    crate::install_crypto_provider();
    let client = Client::try_from(config).map_err(|e| {
        fail(
            EXIT_NO_RESULT,
            format!("kubernetes client: {}", describe(&e)),
        )
    })?;
    Ok((client, namespace))
}

/// Reads a ReportJob, telling a missing one apart.
async fn get_reportjob(api: &Api<ReportJob>, name: &str, ns: &str) -> Result<ReportJob, Failure> {
    match api.get_opt(name).await {
        Ok(Some(rj)) => Ok(rj),
        Ok(None) => Err(fail(
            EXIT_FAILED,
            format!("ReportJob {ns}/{name} not found"),
        )),
        Err(e) => Err(api_failure(&e, &format!("reading ReportJob {ns}/{name}"))),
    }
}

/// API errors: a refusal is 1, not reaching the server is 2.
fn api_failure(e: &kube::Error, doing: &str) -> Failure {
    let code = if api_code(e).is_some() {
        EXIT_FAILED
    } else {
        EXIT_NO_RESULT
    };
    let mut message = format!("{doing}: {}", describe(e));
    if api_code(e) == Some(404) {
        message.push_str(" (is the ReportJob CRD installed? `reportjob crd | kubectl apply -f -`)");
    }
    fail(code, message)
}

// ---------------------------------------------------------------------------------------
// submit

/// `reportjob submit`.
pub async fn submit(args: SubmitArgs) -> i32 {
    finish(submit_inner(args).await)
}

async fn submit_inner(args: SubmitArgs) -> Result<i32, Failure> {
    let shown = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| fail(EXIT_NO_RESULT, format!("cannot read {shown}: {e}")))?;
    load_str(&text, &shown).map_err(|e| match e {
        LoadError::Read { .. } => fail(EXIT_NO_RESULT, e.to_string()),
        other => fail(EXIT_REFUSED, other.to_string()),
    })?;
    let raw: Value = serde_saphyr::from_str(&text)
        .map_err(|e| fail(EXIT_REFUSED, format!("{shown} is not valid YAML: {e}")))?;
    let meta = &raw["metadata"];
    let file_ns = meta["namespace"].as_str().map(str::to_string);
    if let (Some(flag), Some(file)) = (&args.cluster.namespace, &file_ns)
        && flag != file
    {
        return Err(fail(
            EXIT_NO_RESULT,
            format!("the namespace of {shown} ({file}) does not match --namespace ({flag})"),
        ));
    }
    let generate_name = args
        .generate_name
        .clone()
        .or_else(|| {
            (args.name.is_none() && meta["name"].as_str().is_none())
                .then(|| meta["generateName"].as_str().map(str::to_string))
                .flatten()
        })
        .filter(|p| !p.is_empty());
    let name = match &generate_name {
        Some(_) => None,
        None => Some(
            args.name
                .clone()
                .or_else(|| meta["name"].as_str().map(str::to_string))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    fail(
                        EXIT_NO_RESULT,
                        format!(
                            "{shown} has no metadata.name: pass --name NAME or --generate-name PREFIX"
                        ),
                    )
                })?,
        ),
    };

    let (client, default_ns) = connect(&args.cluster).await?;
    let ns = args
        .cluster
        .namespace
        .clone()
        .or(file_ns)
        .unwrap_or(default_ns);
    let mut metadata = json!({ "namespace": ns });
    for key in ["labels", "annotations"] {
        if meta[key].is_object() {
            metadata[key] = meta[key].clone();
        }
    }
    match (&name, &generate_name) {
        (Some(name), _) => metadata["name"] = json!(name),
        (None, Some(prefix)) => metadata["generateName"] = json!(prefix),
        (None, None) => {}
    }
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": raw["spec"],
    });
    let api: Api<ReportJob> = Api::namespaced(client.clone(), &ns);

    let (rj, what) = match &name {
        Some(name) => {
            let before = api
                .get_opt(name)
                .await
                .map_err(|e| submit_failure(&e, &ns, name))?;
            let mut params = PatchParams::apply(FIELD_MANAGER);
            if args.force_conflicts {
                params = params.force();
            }
            let after = api
                .patch(name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| submit_failure(&e, &ns, name))?;
            let what = match &before {
                None => "created",
                Some(b) if b.resource_version() == after.resource_version() => "unchanged",
                Some(_) => "configured",
            };
            if args.wait
                && let Some(before) = &before
                && let Some(done) = outcome(before)
            {
                eprintln!(
                    "note: ReportJob {ns}/{name} already existed and had {}; that result is what \
                     --wait reports. For a new run use --generate-name, or `reportjob retry {name}` \
                     after a failure.",
                    if done { "completed" } else { "failed" }
                );
            }
            (after, what)
        }
        None => {
            let dynamic: DynamicObject = serde_json::from_value(object)
                .map_err(|e| fail(EXIT_REFUSED, format!("{shown}: {e}")))?;
            let dapi: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<ReportJob>(&()));
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            let created = dapi
                .create(&params, &dynamic)
                .await
                .map_err(|e| submit_failure(&e, &ns, generate_name.as_deref().unwrap_or("")))?;
            let rj: ReportJob = serde_json::to_value(&created)
                .and_then(serde_json::from_value)
                .map_err(|e| fail(EXIT_FAILED, format!("the API server's answer: {e}")))?;
            (rj, "created")
        }
    };
    let name = rj.name_any();
    eprintln!("reportjob.reporting.dev/{name} {what} in namespace {ns}");
    if !args.json {
        println!("{name}");
    }
    if !args.wait {
        if args.json {
            println!("{}", status_json(&rj, "submitted"));
        }
        return Ok(EXIT_OK);
    }
    let started = Instant::now();
    let mut progress = Progress::new();
    let end = wait_for(
        api,
        &name,
        args.timeout,
        args.reconnect_timeout,
        &mut progress,
        rj,
    )
    .await;
    progress.finish();
    Ok(report_end(&end, &ns, &name, args.json, started.elapsed()))
}

fn submit_failure(e: &kube::Error, ns: &str, name: &str) -> Failure {
    match api_code(e) {
        Some(400 | 409 | 422) => {
            let mut message = format!(
                "the API server refused ReportJob {ns}/{name}: {}",
                describe(e)
            );
            if api_code(e) == Some(409) {
                message.push_str(" (pass --force-conflicts to take these fields over)");
            }
            fail(EXIT_REFUSED, message)
        }
        Some(404) => fail(
            EXIT_NO_RESULT,
            format!(
                "cannot submit ReportJob {ns}/{name}: {} (is the ReportJob CRD installed? \
                 `reportjob crd | kubectl apply -f -`; does namespace {ns} exist?)",
                describe(e)
            ),
        ),
        _ => fail(
            EXIT_NO_RESULT,
            format!("cannot submit ReportJob {ns}/{name}: {}", describe(e)),
        ),
    }
}

/// `Some(true)` when the ReportJob is complete, `Some(false)` when it failed: by its
/// `Complete`/`Failed` conditions, or its phase when it has neither condition.
pub fn outcome(rj: &ReportJob) -> Option<bool> {
    outcome_of(rj.status.as_ref()?)
}

fn outcome_of(status: &ReportJobStatus) -> Option<bool> {
    let mut decided = false;
    for c in &status.conditions {
        if c.type_ == COMPLETE || c.type_ == FAILED {
            decided = true;
            if c.status == "True" {
                return Some(c.type_ == COMPLETE);
            }
        }
    }
    if decided {
        return None;
    }
    match status.phase? {
        crate::api::Phase::Succeeded => Some(true),
        crate::api::Phase::Failed => Some(false),
        _ => None,
    }
}

/// How waiting ended.
enum WaitEnd {
    /// Complete (`true`) or failed.
    Finished(Box<ReportJob>, bool),
    /// The ReportJob was deleted.
    Deleted(Box<ReportJob>),
    /// `--timeout` was reached.
    TimedOut(Box<ReportJob>, Duration),
    /// The API server could not be reached for `--reconnect-timeout`.
    Lost(Box<ReportJob>, String),
}

/// Follows the ReportJob through a watch (re-established after dropped watches, 410s and
/// API-server restarts) until it finishes, the deadline passes or the server stays away.
async fn wait_for(
    api: Api<ReportJob>,
    name: &str,
    timeout: Option<Duration>,
    reconnect: Duration,
    progress: &mut Progress,
    initial: ReportJob,
) -> WaitEnd {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = initial;
    progress.update(&last);
    if let Some(done) = outcome(&last) {
        return WaitEnd::Finished(Box::new(last), done);
    }
    let stream = watch_object(api, name);
    futures::pin_mut!(stream);
    let mut failing_since: Option<Instant> = None;
    let mut errors: u32 = 0;
    loop {
        let sleep_until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
        };
        let item = tokio::select! {
            _ = sleep_until => return WaitEnd::TimedOut(Box::new(last), timeout.unwrap_or_default()),
            item = stream.next() => item,
        };
        match item {
            Some(Ok(Some(rj))) => {
                if failing_since.take().is_some() {
                    progress.line("connection to the API server restored");
                }
                errors = 0;
                progress.update(&rj);
                if let Some(done) = outcome(&rj) {
                    return WaitEnd::Finished(Box::new(rj), done);
                }
                last = rj;
            }
            Some(Ok(None)) => return WaitEnd::Deleted(Box::new(last)),
            Some(Err(e)) => {
                errors += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                let message = crate::error::error_chain(&e);
                if since.elapsed() >= reconnect {
                    return WaitEnd::Lost(Box::new(last), message);
                }
                if errors == 1 {
                    progress.line(&format!("watch interrupted, reconnecting: {message}"));
                }
                let pause = Duration::from_millis(250u64 << errors.min(5).saturating_sub(1))
                    .min(Duration::from_secs(5));
                let sleep_until = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => futures::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = sleep_until => return WaitEnd::TimedOut(Box::new(last), timeout.unwrap_or_default()),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            None => return WaitEnd::Lost(Box::new(last), "the watch ended".into()),
        }
    }
}

/// Prints how waiting ended and returns the exit code.
fn report_end(end: &WaitEnd, ns: &str, name: &str, as_json: bool, waited: Duration) -> i32 {
    let (rj, result, code) = match end {
        WaitEnd::Finished(rj, true) => (rj, "succeeded", EXIT_OK),
        WaitEnd::Finished(rj, false) => (rj, "failed", EXIT_FAILED),
        WaitEnd::Deleted(rj) => (rj, "deleted", EXIT_FAILED),
        WaitEnd::TimedOut(rj, _) => (rj, "timeout", EXIT_NO_RESULT),
        WaitEnd::Lost(rj, _) => (rj, "lost", EXIT_NO_RESULT),
    };
    let status = rj.status.clone().unwrap_or_default();
    if as_json {
        println!("{}", status_json(rj, result));
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
        WaitEnd::Finished(_, false) => {
            eprintln!(
                "error: ReportJob {ns}/{name} failed: {}",
                failure_message(&status)
            );
            if let Some(failed) = status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
                eprintln!("failed chunks: {failed}");
            }
            eprintln!(
                "see `reportjob status {name} -n {ns}` and `reportjob logs {name} -n {ns}`; \
                 `reportjob retry {name} -n {ns}` re-runs the failed chunks"
            );
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

fn failure_message(status: &ReportJobStatus) -> String {
    status
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == FAILED)
                .map(|c| format!("{}: {}", c.reason, c.message))
        })
        .unwrap_or_else(|| "no message".to_string())
}

fn output_lines(status: &ReportJobStatus) -> String {
    let mut out = String::new();
    let rows = status.output.as_ref().map(|o| o.rows).or(status.rows);
    let bytes = status.output.as_ref().map(|o| o.bytes).or(status.bytes);
    if let Some(o) = &status.output {
        out.push_str(&format!("location: {}\n", o.location));
        if let Some(url) = &o.url {
            match &o.url_expires_at {
                Some(t) => out.push_str(&format!("url:      {url} (expires {})\n", t.0)),
                None => out.push_str(&format!("url:      {url}\n")),
            }
        }
    }
    if let Some(rows) = rows {
        out.push_str(&format!("rows:     {rows}\n"));
    }
    if let Some(bytes) = bytes {
        out.push_str(&format!("bytes:    {bytes} ({})\n", human_bytes(bytes)));
    }
    if let Some(o) = &status.output {
        out.push_str(&format!("sha256:   {}\n", o.sha256));
    }
    out
}

/// The final status of `submit --json`.
fn status_json(rj: &ReportJob, result: &str) -> Value {
    let status = rj.status.clone().unwrap_or_default();
    let output = status.output.as_ref();
    json!({
        "name": rj.name_any(),
        "namespace": rj.namespace(),
        "result": result,
        "phase": status.phase.map(|p| p.as_str()),
        "location": output.map(|o| &o.location),
        "url": output.and_then(|o| o.url.as_ref()),
        "url_expires_at": output.and_then(|o| o.url_expires_at.as_ref()).map(|t| t.0.to_string()),
        "rows": output.map(|o| o.rows).or(status.rows),
        "bytes": output.map(|o| o.bytes).or(status.bytes),
        "sha256": output.map(|o| &o.sha256),
        "message": status.message,
        "failed_chunks": status.failed_chunks,
        "chunks": status.chunks.as_ref().map(|c| json!({
            "total": c.total, "succeeded": c.succeeded, "failed": c.failed, "active": c.active,
        })),
    })
}

/// Progress while waiting: a bar on a terminal, plain lines on stderr otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_key: Option<(String, i64, i64, i64)>,
    last_rows: Option<i64>,
    last_line: Instant,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} chunks  {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last_key: None,
            last_rows: None,
            last_line: Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn update(&mut self, rj: &ReportJob) {
        let status = rj.status.clone().unwrap_or_default();
        let phase = status.phase.map_or("Pending", |p| p.as_str()).to_string();
        let chunks = status.chunks.clone().unwrap_or_default();
        let rows = status.rows.or(status.output.as_ref().map(|o| o.rows));
        let secs = match (&status.start_time, &status.completion_time) {
            (Some(s), Some(c)) => c.0.duration_since(s.0).as_secs_f64(),
            (Some(s), None) => since(s.0) as f64,
            _ => self.started.elapsed().as_secs_f64(),
        };
        let rate = match rows {
            Some(r) if secs >= 1.0 => {
                format!(", {} rows/s", group_digits((r as f64 / secs) as i64))
            }
            _ => String::new(),
        };
        let rows_text = rows
            .map(|r| format!(", {} rows", group_digits(r)))
            .unwrap_or_default();
        let failed = if chunks.failed > 0 {
            format!(" ({} failed)", chunks.failed)
        } else {
            String::new()
        };
        if let Some(bar) = &self.bar {
            bar.set_length(chunks.total.max(0) as u64);
            bar.set_position(chunks.succeeded.max(0) as u64);
            bar.set_message(format!("{phase}{failed}{rows_text}{rate}"));
            return;
        }
        let key = (phase.clone(), chunks.total, chunks.succeeded, chunks.failed);
        let changed = self.last_key.as_ref() != Some(&key);
        let rows_moved =
            rows != self.last_rows && self.last_line.elapsed() >= Duration::from_secs(10);
        if changed || rows_moved {
            let counts = if status.chunks.is_some() {
                format!(
                    ": {}/{} chunks{failed}{rows_text}{rate}",
                    chunks.succeeded, chunks.total
                )
            } else {
                String::new()
            };
            eprintln!(
                "[{:>6}] {phase}{counts}",
                human_duration(self.started.elapsed().as_secs() as i64),
            );
            self.last_key = Some(key);
            self.last_rows = rows;
            self.last_line = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

// ---------------------------------------------------------------------------------------
// status

/// `reportjob status`.
pub async fn status(args: StatusArgs) -> i32 {
    finish(status_inner(args).await)
}

async fn status_inner(args: StatusArgs) -> Result<i32, Failure> {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client.clone(), &ns);
    let rj = get_reportjob(&api, &args.name, &ns).await?;
    if args.json {
        println!("{}", status_json(&rj, result_word(&rj)));
        return Ok(EXIT_OK);
    }
    let events: Api<Event> = Api::namespaced(client, &ns);
    let selector = format!(
        "involvedObject.kind={KIND},involvedObject.name={}",
        args.name
    );
    let listed = events.list(&ListParams::default().fields(&selector)).await;
    let (events, events_error) = match listed {
        Ok(list) => (list.items, None),
        Err(e) => (Vec::new(), Some(describe(&e))),
    };
    print!("{}", render_status(&rj, &events, events_error.as_deref()));
    Ok(EXIT_OK)
}

fn result_word(rj: &ReportJob) -> &'static str {
    match outcome(rj) {
        Some(true) => "succeeded",
        Some(false) => "failed",
        None => "running",
    }
}

/// Rows of cells as aligned columns, indented by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            line.push(' ');
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$} ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.first_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The readable summary `reportjob status` prints.
fn render_status(rj: &ReportJob, events: &[Event], events_error: Option<&str>) -> String {
    let status = rj.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        out.push_str(&format!("{:<12} {value}\n", format!("{label}:")));
    };
    field("Name", rj.name_any());
    field("Namespace", rj.namespace().unwrap_or_default());
    field(
        "Phase",
        status.phase.map_or("Pending", |p| p.as_str()).to_string(),
    );
    if rj.spec.suspend {
        field("Suspend", "true (spec.suspend)".to_string());
    }
    if let Some(c) = &status.chunks {
        let mut text = format!("{}/{} chunks", c.succeeded, c.total);
        let mut extra = Vec::new();
        if c.active > 0 {
            extra.push(format!("{} active", c.active));
        }
        if c.failed > 0 {
            extra.push(format!("{} failed", c.failed));
        }
        if !extra.is_empty() {
            text.push_str(&format!(" ({})", extra.join(", ")));
        }
        field("Progress", text);
    } else if let Some(p) = &status.progress {
        field("Progress", format!("{p} chunks"));
    }
    if let Some(failed) = status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
        field("Failed", format!("chunks {failed}"));
    }
    if let Some(rows) = status.rows.or(status.output.as_ref().map(|o| o.rows)) {
        field("Rows", group_digits(rows));
    }
    if let Some(bytes) = status.bytes.or(status.output.as_ref().map(|o| o.bytes)) {
        field("Bytes", format!("{} ({bytes})", human_bytes(bytes)));
    }
    if let Some(start) = &status.start_time {
        field(
            "Started",
            format!("{} ({} ago)", start.0, human_duration(since(start.0))),
        );
    }
    if let Some(done) = &status.completion_time {
        field(
            "Completed",
            format!("{} ({} ago)", done.0, human_duration(since(done.0))),
        );
    }
    if let Some(start) = &status.start_time {
        let end = status
            .completion_time
            .as_ref()
            .map_or_else(jiff::Timestamp::now, |t| t.0);
        field(
            "Elapsed",
            human_duration(end.duration_since(start.0).as_secs()),
        );
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        field("Message", message.to_string());
    }
    if let Some(o) = &status.output {
        out.push_str("Output:\n");
        out.push_str(&format!("  Location:  {}\n", o.location));
        if let Some(url) = &o.url {
            out.push_str(&format!("  URL:       {url}\n"));
        }
        if let Some(t) = &o.url_expires_at {
            let left = -since(t.0);
            let when = if left > 0 {
                format!("in {}", human_duration(left))
            } else {
                "expired".to_string()
            };
            out.push_str(&format!("  Expires:   {} ({when})\n", t.0));
        }
        out.push_str(&format!("  Rows:      {}\n", group_digits(o.rows)));
        out.push_str(&format!(
            "  Bytes:     {} ({})\n",
            human_bytes(o.bytes),
            o.bytes
        ));
        out.push_str(&format!("  SHA256:    {}\n", o.sha256));
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![vec![
            "TYPE".to_string(),
            "STATUS".into(),
            "REASON".into(),
            "AGE".into(),
            "MESSAGE".into(),
        ]];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                human_duration(since(c.last_transition_time.0)),
                c.message.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out.push_str("Events:\n");
    let uid = rj.metadata.uid.as_deref();
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| match (uid, e.involved_object.uid.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .collect();
    mine.sort_by_key(|e| event_time(e));
    let recent = &mine[mine.len().saturating_sub(10)..];
    if let Some(error) = events_error {
        out.push_str(&format!("  <cannot list events: {error}>\n"));
    } else if recent.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![vec![
            "AGE".to_string(),
            "TYPE".into(),
            "REASON".into(),
            "MESSAGE".into(),
        ]];
        for e in recent {
            let mut message = e.message.clone().unwrap_or_default();
            if let Some(count) = e.count.filter(|c| *c > 1) {
                message.push_str(&format!(" (x{count})"));
            }
            rows.push(vec![
                event_time(e).map_or("?".to_string(), |t| human_duration(since(t))),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                message,
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

// ---------------------------------------------------------------------------------------
// retry, cancel

/// `reportjob retry`.
pub async fn retry(args: RetryArgs) -> i32 {
    finish(retry_inner(args).await)
}

async fn retry_inner(args: RetryArgs) -> Result<i32, Failure> {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    let rj = get_reportjob(&api, name, &ns).await?;
    let status = rj.status.unwrap_or_default();
    if outcome_of(&status) != Some(false) {
        return Err(fail(
            EXIT_FAILED,
            format!(
                "ReportJob {ns}/{name} is {}, not failed: there is nothing to retry",
                status.phase.map_or("Pending", |p| p.as_str())
            ),
        ));
    }
    let token = format!(
        "{}-{:04x}",
        jiff::Timestamp::now().as_second(),
        rand::random::<u16>()
    );
    let patch = json!({"metadata": {"annotations": {RETRY_ANNOTATION: token}}});
    api.patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_failure(&e, &format!("annotating ReportJob {ns}/{name}")))?;
    println!("ReportJob {ns}/{name}: retry requested ({RETRY_ANNOTATION}={token})");
    match status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
        Some(failed) => println!("the controller re-runs the failed chunks: {failed}"),
        None => println!("the controller re-runs the failed stage"),
    }
    Ok(EXIT_OK)
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some("reportjob".to_string()),
        ..PatchParams::default()
    }
}

/// `reportjob cancel`.
pub async fn cancel(args: CancelArgs) -> i32 {
    finish(cancel_inner(args).await)
}

async fn cancel_inner(args: CancelArgs) -> Result<i32, Failure> {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    if args.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => println!("ReportJob {ns}/{name} deleted"),
            Err(e) if api_code(&e) == Some(404) => {
                return Err(fail(
                    EXIT_FAILED,
                    format!("ReportJob {ns}/{name} not found"),
                ));
            }
            Err(e) => return Err(api_failure(&e, &format!("deleting ReportJob {ns}/{name}"))),
        }
        return Ok(EXIT_OK);
    }
    let patch = json!({"spec": {"suspend": true}});
    match api
        .patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => {
            return Err(fail(
                EXIT_FAILED,
                format!("ReportJob {ns}/{name} not found"),
            ));
        }
        Err(e) => {
            return Err(api_failure(
                &e,
                &format!("suspending ReportJob {ns}/{name}"),
            ));
        }
    }
    println!(
        "ReportJob {ns}/{name} suspended (spec.suspend=true): its chunk pods are stopped and no \
         new ones start"
    );
    println!(
        "resume: kubectl patch reportjob {name} -n {ns} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'"
    );
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------
// logs

/// Parses compact ranges such as `0-2,7,9-10`.
fn parse_ranges(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 10_000_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The plan chunk a chunk pod exports: its completion index, mapped through the
/// `REPORTJOB_CHUNKS` list the pod was given when the Job covers only some chunks.
fn pod_chunk(pod: &Pod) -> Option<usize> {
    let index: usize = pod
        .annotations()
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse()
        .ok()?;
    let listed = pod.spec.as_ref().and_then(|s| {
        s.containers.first()?.env.as_ref()?.iter().find_map(|e| {
            (e.name == "REPORTJOB_CHUNKS")
                .then(|| e.value.clone())
                .flatten()
        })
    });
    match listed.and_then(|l| parse_ranges(&l)) {
        Some(chunks) => chunks.get(index).copied(),
        None => Some(index),
    }
}

fn stage_rank(pod: &Pod) -> usize {
    match pod.labels().get(STAGE_LABEL).map(String::as_str) {
        Some("plan") => 0,
        Some("chunks") => 1,
        Some("assemble") => 2,
        _ => 3,
    }
}

/// `reportjob logs`.
pub async fn logs(args: LogsArgs) -> i32 {
    finish(logs_inner(args).await)
}

async fn logs_inner(args: LogsArgs) -> Result<i32, Failure> {
    let (client, ns) = connect(&args.cluster).await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let name = &args.name;
    let mut selector = format!("{REPORTJOB_LABEL}={name}");
    if let Some(stage) = args.stage {
        selector.push_str(&format!(",{STAGE_LABEL}={}", stage.as_str()));
    } else if args.chunk.is_some() {
        selector.push_str(&format!(",{STAGE_LABEL}=chunks"));
    }
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
        let what = match (args.stage, args.chunk) {
            (_, Some(i)) => format!(" for chunk {i}"),
            (Some(s), None) => format!(" in stage {}", s.as_str()),
            (None, None) => String::new(),
        };
        return Err(fail(
            EXIT_FAILED,
            format!(
                "no pods of ReportJob {ns}/{name}{what} (finished pods may have been cleaned up)"
            ),
        ));
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
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1d "), Ok(Duration::from_secs(86400)));
        for bad in ["", "m", "10x", "1.5h", "-5", "h1", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(-3), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7500), "2h5m");
        assert_eq!(human_duration(7200), "2h");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d4h");
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_ranges("0-2,7,9-10"), Some(vec![0, 1, 2, 7, 9, 10]));
        assert_eq!(parse_ranges(""), Some(vec![]));
        assert_eq!(parse_ranges("3-1"), None);
        assert_eq!(parse_ranges("a"), None);
    }

    fn with_status(status: serde_json::Value) -> ReportJob {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"pvc": {"claimName": "c", "path": "r.csv"}}}
            },
            "status": status,
        }))
        .expect("a ReportJob")
    }

    fn cond(type_: &str, status: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "m",
               "lastTransitionTime": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn outcome_follows_conditions_then_phase() {
        assert_eq!(outcome(&with_status(json!({}))), None);
        assert_eq!(
            outcome(&with_status(
                json!({"conditions": [cond("Complete", "True")]})
            )),
            Some(true)
        );
        assert_eq!(
            outcome(&with_status(
                json!({"conditions": [cond("Failed", "True")]})
            )),
            Some(false)
        );
        // A Failed=False condition wins over a phase that says otherwise.
        assert_eq!(
            outcome(&with_status(
                json!({"phase": "Failed", "conditions": [cond("Failed", "False")]})
            )),
            None
        );
        assert_eq!(
            outcome(&with_status(json!({"phase": "Succeeded"}))),
            Some(true)
        );
        assert_eq!(outcome(&with_status(json!({"phase": "Running"}))), None);
    }

    #[test]
    fn status_json_names_the_output() {
        let rj = with_status(json!({
            "phase": "Succeeded",
            "output": {"location": "reports/r.csv", "rows": 10, "bytes": 99, "sha256": "ab"},
        }));
        let v = status_json(&rj, "succeeded");
        assert_eq!(v["name"], "r");
        assert_eq!(v["namespace"], "default");
        assert_eq!(v["phase"], "Succeeded");
        assert_eq!(v["location"], "reports/r.csv");
        assert_eq!(v["rows"], 10);
        assert_eq!(v["bytes"], 99);
        assert_eq!(v["sha256"], "ab");
        assert!(v["url"].is_null());
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "last column".into()],
        ]);
        assert_eq!(t, "  A     BB  C\n  long  x   last column\n");
    }
}
