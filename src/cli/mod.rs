//! The command line: parses arguments and delegates to the stage commands.

mod progress;
mod stages;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{EXIT_OK, EXIT_PERMANENT};

/// reportjob: export big Postgres tables and queries as CSV, in chunks, in parallel.
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
    Worker(WorkerArgs),
    /// Assemble the staged parts into the report (the assemble Job's pod runs this).
    Assemble(AssembleArgs),
    /// Print the ReportJob CustomResourceDefinition as YAML.
    Crd,
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
    pub run_id: Option<String>,
}

/// `reportjob run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Chunks exported at once (overrides spec.chunking.parallelism).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Print one JSON object with the outcome on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// Retries after transient failures inside this process (pods leave it to the Job).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Also write the summary (or the error) to this file, e.g. /dev/termination-log.
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

async fn run_command(command: Command) -> i32 {
    match command {
        Command::Crd => {
            print!("{}", crate::api::schema::crd_yaml());
            EXIT_OK
        }
        Command::Run(args) => stages::run(args).await,
        Command::Plan(args) => stages::plan(args).await,
        Command::Worker(args) => stages::worker(args).await,
        Command::Assemble(args) => stages::assemble(args).await,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Exit code for errors in loading the spec.
pub const EXIT_BAD_SPEC: i32 = EXIT_PERMANENT;
