//! The command line: parses arguments ([`parse_args`], also as the kubectl plugin
//! `kubectl-reportjob`) and hands each command to one of the three programs the binary is:
//! [`client`] (the user's commands, talking to the Kubernetes API), [`stage`] (the engine:
//! `reportjob run`, and each stage as the controller's pods run it) and [`manager`] (the
//! controller's start-up and the chart's uninstall hook).

pub mod client;
pub mod manager;
pub mod stage;
pub mod summary;

use client::{
    cancel, completion, download, list, logs, resume, retry, schedule, status, submit, suspend,
    wait,
};
use stage::notify;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::{EXIT_OK, EXIT_PERMANENT};

/// reportjob: export big Postgres tables and queries as CSV, JSON Lines, Parquet or Excel
/// reports, in chunks, in parallel.
#[derive(Parser, Debug)]
#[command(name = "reportjob", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "REPORTJOB_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole export on this machine: plan, export chunks in parallel, assemble.
    Run(RunArgs),
    /// Print (or stage, with --write) the chunk plan without exporting.
    Plan(PlanArgs),
    /// Export one chunk of a staged plan (the chunk Job's pods run this).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Assemble the staged parts into the report (the assemble Job's pod runs this).
    #[command(hide = true)]
    Assemble(AssembleArgs),
    /// Export the run's database snapshot, stage its id and hold it until stopped (the
    /// snapshot Job's pod runs this).
    #[command(hide = true)]
    Snapshot(SnapshotArgs),
    /// Print the ReportJob CustomResourceDefinition as YAML (with --schedule, ReportSchedule's;
    /// with --database, ReportDatabase's; with --markdown, its field reference as in
    /// docs/reference/).
    Crd {
        /// Print the ReportSchedule CRD instead.
        #[arg(long, conflicts_with = "database")]
        schedule: bool,
        /// Print the ReportDatabase CRD instead.
        #[arg(long)]
        database: bool,
        /// Print the field reference generated from the CRD's schema, as Markdown.
        #[arg(long)]
        markdown: bool,
    },
    /// Create (or update) a ReportJob in the cluster; with --wait, follow it to the end.
    Submit(submit::SubmitArgs),
    /// List ReportJobs (-A: in every namespace; -l: by labels).
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Show a ReportJob's progress, output, conditions and recent events.
    Status(status::StatusArgs),
    /// Follow an existing ReportJob to its end; exits as `submit --wait` does.
    Wait(wait::WaitArgs),
    /// Re-run the failed chunks of a failed ReportJob.
    Retry(retry::RetryArgs),
    /// End a ReportJob's run for good: pods stopped, snapshot released, staging removed
    /// (or delete it with --delete).
    Cancel(cancel::CancelArgs),
    /// Pause a ReportJob (spec.suspend); `resume` goes on where it stopped.
    Suspend(suspend::SuspendArgs),
    /// Resume a suspended ReportJob.
    Resume(resume::ResumeArgs),
    /// Print the logs of a ReportJob's pods (-f: follow them as they run).
    Logs(logs::LogsArgs),
    /// Download a bucket report through its signed link, checking its size and sha256.
    Download(download::DownloadArgs),
    /// Work with ReportSchedules: `trigger NAME` creates one run now.
    Schedule(schedule::ScheduleArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// Send the completion webhook of spec.notify (stage pods run this).
    #[command(hide = true)]
    Notify(notify::NotifyArgs),
    /// Run the Kubernetes controller (the operator) that reconciles ReportJobs into Jobs.
    Controller(ControllerArgs),
    /// Delete every ReportJob and wait until the controller has finalized them (the chart's
    /// pre-delete hook runs this, so `helm uninstall` leaves none stuck on its finalizer).
    Uninstall(manager::uninstall::UninstallArgs),
    /// Remove a run's staging data (the cleanup Job's pod runs this after a ReportJob is
    /// deleted); with --delete-output, the report too.
    #[command(hide = true)]
    Cleanup(CleanupArgs),
}

/// Where the spec, the database and the output are.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The ReportJob YAML file. Without it, the spec is read from REPORTJOB_SPEC
    /// (the ReportJob as JSON or YAML), as the controller passes it to pods.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Postgres URL; used instead of the spec's connectionSecretRef.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory that stands for the PVC: a `pvc` destination's path is taken relative to it.
    #[arg(long, default_value = "./reports", env = "REPORTJOB_OUTPUT_DIR")]
    pub output_dir: PathBuf,
    /// Endpoint of the S3-compatible store, overriding the spec's `bucket.endpoint` (which
    /// may only resolve inside the cluster). Credentials come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "REPORTJOB_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Identifier of the run (staging goes to `<output>.parts/<run id>/`). Default: derived
    /// from the spec, so running the same spec again resumes it.
    #[arg(long, env = "REPORTJOB_RUN_ID")]
    pub run_id: Option<crate::staging::RunId>,
}

/// `reportjob run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Chunks exported at once (overrides spec.chunking.parallelism).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// A value for `$1`, `$2`... of the spec's query or where, in order (repeat the flag);
    /// replaces the values of spec.source.parameters, keeping their types.
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// Print one JSON object with the outcome on stdout.
    #[arg(long)]
    pub json: bool,
    /// Validate the spec and preview the plan (chunks, estimated rows) without exporting or
    /// writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `reportjob plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Stage the plan (plan.json) and print a one-line summary: chunk count and digest.
    /// A plan already staged for this run is kept, never recomputed.
    #[arg(long)]
    pub write: bool,
    /// Also write the summary (or the error) to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// `reportjob worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: Common,
    /// The chunk to export (an Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: usize,
    /// Refuse a staged plan whose digest differs.
    #[arg(long, env = "REPORTJOB_PLAN_DIGEST")]
    pub plan_digest: Option<String>,
    /// The plan chunks this Job exports, as compact ranges (`0-6,9`): the Job's completion
    /// index `i` then means the `i`-th of them. Default: the index is the chunk.
    #[arg(long, env = "REPORTJOB_CHUNKS")]
    pub chunks: Option<String>,
    /// Retries after transient failures inside this process (pods leave it to the Job).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// The ReportDatabase's throttle the controller hands down
    /// (`maxActiveSessions=N,maxReplayLagSeconds=S`): the chunk starts only while the
    /// database's load is within it.
    #[arg(long, env = "REPORTJOB_THROTTLE", hide = true)]
    pub throttle: Option<String>,
    /// Also write the summary (or the error) to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// `reportjob controller`.
#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Image of the stage pods unless a ReportJob's spec.worker.image names one.
    #[arg(long, env = "REPORTJOB_WORKER_IMAGE", default_value = concat!("ghcr.io/reportjob/reportjob:", env!("CARGO_PKG_VERSION")))]
    pub worker_image: String,
    /// Other images a spec's worker.image may name, comma-separated: exact references or
    /// prefixes ending in `*`. The --worker-image is always allowed; empty: only it.
    #[arg(long, value_delimiter = ',', env = "REPORTJOB_ALLOWED_WORKER_IMAGES")]
    pub allowed_worker_images: Vec<String>,
    /// Let a spec choose its stage pods' service account (spec.worker.serviceAccountName).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_service_account_override: bool,
    /// Let webhook URLs and bucket endpoints be link-local addresses (169.254.0.0/16,
    /// fe80::/10, fd00:ec2::254), where cloud metadata services answer; refused by default.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_link_local_endpoints: bool,
    /// Default settings of every stage pod, as YAML or JSON: nodeSelector, tolerations,
    /// affinity, priorityClassName, imagePullSecrets, podLabels, podAnnotations, env, volumes,
    /// volumeMounts, securityContext (as in spec.worker), resources and serviceAccountName.
    /// Unset resources default to requests cpu 100m / memory 64Mi, limit memory 256Mi.
    #[arg(long, env = "REPORTJOB_STAGE_PODS", default_value = "")]
    pub stage_pods: String,
    /// Most ReportJob runs in flight at once, all namespaces together (0: no cap). A run
    /// holds database connections from its start (under consistency: Snapshot one for its
    /// whole run), so the default keeps a burst of runs well within a Postgres
    /// max_connections of 100; the others wait in phase Pending (condition Queued) and
    /// start as runs end or are suspended (a suspended run holds no slot), the namespaces
    /// with the fewest runs in flight first.
    #[arg(long, env = "REPORTJOB_MAX_CONCURRENT_RUNS", default_value_t = 25)]
    pub max_concurrent_runs: usize,
    /// Most ReportJob runs in flight at once in one namespace (0: no cap but the one above).
    /// Whatever it is, free slots go first to the namespaces with the fewest runs in flight,
    /// and a suspended run holds none.
    #[arg(
        long,
        env = "REPORTJOB_MAX_CONCURRENT_RUNS_PER_NAMESPACE",
        default_value_t = 0
    )]
    pub max_concurrent_runs_per_namespace: usize,
    /// Most chunk worker pods running at once in one namespace, all its ReportJobs together
    /// (0: no budget). Each run's chunks Job gets a fair share (round robin over the
    /// namespace's exporting runs, oldest first) of what the others leave free.
    #[arg(
        long,
        env = "REPORTJOB_MAX_STAGE_PODS_PER_NAMESPACE",
        default_value_t = 0
    )]
    pub max_stage_pods_per_namespace: u32,
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(long, value_delimiter = ',', env = "REPORTJOB_NAMESPACES")]
    pub namespaces: Vec<String>,
    /// Address of the metrics and health endpoints (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Elect a leader through a Lease, so that only one replica reconciles.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "reportjob-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease (default: the pod's name, from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Kubeconfig file (default: in-cluster config, or KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Tests only: a file holding the time (RFC 3339) the ReportSchedule loop takes as now,
    /// read at each sync (the loop then looks again every second).
    #[arg(long, env = "REPORTJOB_CLOCK_FILE", hide = true)]
    pub clock_file: Option<PathBuf>,
}

/// `reportjob cleanup`.
#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Delete the report and its manifest too.
    #[arg(long)]
    pub delete_output: bool,
    /// With --delete-output, how many files the run recorded for a split report
    /// (status.output.fileCount): files 1 to N of the split naming scheme are deleted.
    /// Without it a split report's files stay; a manifest at the destination is never
    /// taken for the list.
    #[arg(long, value_name = "N", requires = "delete_output")]
    pub output_files: Option<u64>,
    /// Also write the summary (or the error) to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// `reportjob snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub common: Common,
    /// Also write the error to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// `reportjob assemble`.
#[derive(Args, Debug)]
pub struct AssembleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Refuse a staged plan whose digest differs.
    #[arg(long, env = "REPORTJOB_PLAN_DIGEST")]
    pub plan_digest: Option<String>,
    /// Also write the summary (or the error) to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// The name kubectl runs a plugin by: `kubectl reportjob ...` executes `kubectl-reportjob`.
pub const PLUGIN_BINARY: &str = "kubectl-reportjob";

/// How the program is called in help and usage: `kubectl reportjob` when the binary is
/// installed or linked as `kubectl-reportjob` (a kubectl plugin), else `reportjob`.
pub fn program_name(argv0: &std::ffi::OsStr) -> &'static str {
    let base = std::path::Path::new(argv0)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if base == PLUGIN_BINARY {
        "kubectl reportjob"
    } else {
        "reportjob"
    }
}

/// The command-line definition, named for how it was called.
pub fn command_named(name: &'static str) -> clap::Command {
    Cli::command().name(name).bin_name(name)
}

/// Parses the process arguments (exiting with clap's usage error on bad input), with help and
/// usage naming `kubectl reportjob` when run as a kubectl plugin.
pub fn parse_args() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = program_name(args.first().map(|a| a.as_os_str()).unwrap_or_default());
    let matches = command_named(name).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command and returns the process exit code.
pub async fn dispatch(cli: Cli) -> i32 {
    init_tracing(cli.log_format);
    let code = run_command(cli.command).await;
    let cleanup = crate::cleanup_tasks();
    cleanup.close();
    if tokio::time::timeout(std::time::Duration::from_secs(30), cleanup.wait())
        .await
        .is_err()
    {
        eprintln!("warning: some cleanup (aborting uploads) did not finish in 30 s");
    }
    code
}

/// Which resource `reportjob crd` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    /// ReportJob.
    ReportJob,
    /// ReportSchedule.
    ReportSchedule,
    /// ReportDatabase.
    ReportDatabase,
}

impl CrdKind {
    fn of(schedule: bool, database: bool) -> CrdKind {
        match (schedule, database) {
            (true, _) => CrdKind::ReportSchedule,
            (false, true) => CrdKind::ReportDatabase,
            (false, false) => CrdKind::ReportJob,
        }
    }

    /// The CRD as the YAML committed in `crds/`.
    pub fn yaml(self) -> Result<String, String> {
        match self {
            CrdKind::ReportJob => crate::api::schema::crd_yaml(),
            CrdKind::ReportSchedule => crate::schedule::crd::crd_yaml(),
            CrdKind::ReportDatabase => crate::database::crd::crd_yaml(),
        }
    }
}

/// The field reference of a resource, as committed in `docs/reference/`.
pub fn reference_markdown(kind: CrdKind) -> String {
    match kind {
        CrdKind::ReportSchedule => crate::api::reference::markdown(
            &crate::schedule::crd::crd(),
            "ReportSchedule reference",
            "A ReportSchedule creates a ReportJob from its template on a cron schedule. \
             The template's `spec` is a ReportJob's: see the \
             [ReportJob reference](reportjob.md).",
        ),
        CrdKind::ReportDatabase => crate::api::reference::markdown(
            &crate::database::crd::crd(),
            "ReportDatabase reference",
            "A ReportDatabase is the budget a platform team sets for a database many teams \
             export from; a ReportJob names it in `spec.source.database`. How budgets work: \
             [database budgets](../databases.md).",
        ),
        CrdKind::ReportJob => crate::api::reference::markdown(
            &crate::api::schema::crd(),
            "ReportJob reference",
            "Every field of a ReportJob, from the CRD the API server validates against. \
             The concepts behind them are in [concepts](../concepts.md).",
        ),
    }
}

async fn run_command(command: Command) -> i32 {
    match command {
        Command::Crd {
            schedule,
            database,
            markdown: true,
        } => {
            print!("{}", reference_markdown(CrdKind::of(schedule, database)));
            EXIT_OK
        }
        Command::Crd {
            schedule,
            database,
            markdown: false,
        } => match CrdKind::of(schedule, database).yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                EXIT_OK
            }
            Err(message) => {
                eprintln!("error: {message}");
                EXIT_PERMANENT
            }
        },
        Command::Run(args) => stage::run(args).await,
        Command::Plan(args) => stage::plan(args).await,
        Command::Snapshot(args) => stage::snapshot(args).await,
        Command::Worker(args) => stage::worker(args).await,
        Command::Assemble(args) => stage::assemble(args).await,
        Command::Submit(args) => submit::submit(args).await,
        Command::List(args) => list::list(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Wait(args) => wait::wait(args).await,
        Command::Retry(args) => retry::retry(args).await,
        Command::Cancel(args) => cancel::cancel(args).await,
        Command::Suspend(args) => suspend::suspend(args).await,
        Command::Resume(args) => resume::resume(args).await,
        Command::Logs(args) => logs::logs(args).await,
        Command::Download(args) => download::download(args).await,
        Command::Schedule(args) => schedule::schedule(args).await,
        Command::Completion(args) => completion::completion(args),
        Command::Notify(args) => notify::notify(args).await,
        Command::Cleanup(args) => stage::cleanup(args).await,
        Command::Controller(args) => manager::controller(args).await,
        Command::Uninstall(args) => manager::uninstall::uninstall(args).await,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a pod's log (the controller's, a stage's) is plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Exit code for errors in loading the spec.
pub const EXIT_BAD_SPEC: i32 = EXIT_PERMANENT;
