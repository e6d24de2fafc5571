//! The engine's commands: `reportjob run` (every stage in one process, on one machine) and
//! each stage alone as the controller's pods run it: `snapshot`, `plan`, `worker`,
//! `assemble`, `cleanup`, and `notify` ([`notify`]); their output, termination log and
//! exit codes. Hidden from the top-level help (but `run`), called by name.

pub mod notify;

use std::path::Path;
use std::sync::Arc;

use crate::api::ValidSpec;
use crate::api::load::{load_valid_file, load_valid_str};
use crate::api::valid::Destination;
use crate::cli::client::progress::Reporter;
use crate::cli::{AssembleArgs, CleanupArgs, Common, EXIT_BAD_SPEC, PlanArgs, RunArgs, WorkerArgs};
use crate::database::throttle::Throttle;
use crate::error::{EXIT_OK, Error};
use crate::pipeline::StageContext;
use crate::run_local::{RunOptions, run as run_local};
use crate::source::Database;
use crate::stage_protocol::{ChunkSet, MAX_CHUNKS, StageResult, env};
use crate::staging::Layout;
use crate::storage::s3::{BucketConfig, S3Bucket};
use crate::storage::{LocalDir, Storage};

/// Why a command could not start.
struct Setup {
    message: String,
    code: i32,
}

fn setup_error(message: impl Into<String>) -> Setup {
    Setup {
        message: message.into(),
        code: EXIT_BAD_SPEC,
    }
}

/// Loads and validates the spec (the only validation a stage does); non-empty `params`
/// replace the values of `spec.source.parameters` (`--param`).
fn load_spec(common: &Common, params: &[String]) -> Result<ValidSpec, Setup> {
    let (text, origin) = match &common.file {
        Some(path) => {
            if params.is_empty() {
                return load_valid_file(path)
                    .map(|loaded| loaded.spec)
                    .map_err(|e| setup_error(e.to_string()));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| setup_error(format!("cannot read {}: {e}", path.display())))?;
            (text, path.display().to_string())
        }
        None => match std::env::var(env::SPEC) {
            Ok(text) => (text, env::SPEC.to_string()),
            Err(_) => {
                return Err(setup_error(format!(
                    "no spec: pass -f report.yaml (or set {})",
                    env::SPEC
                )));
            }
        },
    };
    let from_controller = common.file.is_none();
    let loaded = if params.is_empty() && from_controller {
        crate::api::load::load_generated_str(&text, &origin)
    } else if params.is_empty() {
        load_valid_str(&text, &origin)
    } else {
        crate::api::load::with_parameters(&text, &origin, params)
            .and_then(|text| load_valid_str(&text, &origin))
    };
    loaded
        .map(|loaded| loaded.spec)
        .map_err(|e| setup_error(e.to_string()))
}

/// Loads the spec and builds the stage context; `pool_size` is how many chunks run at once
/// (`None`: the spec's parallelism).
async fn build_stage(
    common: &Common,
    pool_size: Option<usize>,
    params: &[String],
) -> Result<StageContext, Setup> {
    let spec = load_spec(common, params)?;
    let pool_size = pool_size.unwrap_or(parallelism(&spec));
    // A missing flag is a usage error (exit 2), as clap's own are.
    let database_url = common.database_url.clone().ok_or_else(|| Setup {
        message: format!(
            "no database URL: pass --database-url or set {} (spec.source.connectionSecretRef \
             names the Kubernetes Secret {:?}, which only the cluster can read)",
            env::DATABASE_URL,
            spec.source.connection.name
        ),
        code: crate::error::EXIT_USAGE,
    })?;
    let (storage, layout) = open_destination(common, &spec).await?;
    let db = Database::new(&database_url, pool_size)
        .map_err(|e| setup_error(format!("--database-url: {e}")))?;
    Ok(StageContext {
        spec,
        db,
        storage,
        layout,
        cancel: Default::default(),
        snapshot: None,
    })
}

/// The destination's storage and the run's staging layout.
async fn open_destination(
    common: &Common,
    spec: &ValidSpec,
) -> Result<(Arc<dyn Storage>, Layout), Setup> {
    let (storage, output_key): (Arc<dyn Storage>, String) = match &spec.output.destination {
        Destination::Pvc { path, .. } => (
            Arc::new(LocalDir::new(&common.output_dir)),
            path.as_str().to_string(),
        ),
        Destination::Bucket(bucket) => {
            let from_engine = |e: Error| Setup {
                code: e.exit_code(),
                message: e.to_string(),
            };
            let config = BucketConfig {
                bucket: bucket.bucket.clone(),
                endpoint: bucket.endpoint.clone(),
                region: bucket.region.clone(),
                path_style: bucket.path_style,
                server_side_copy: bucket.server_side_copy,
            };
            let s3 =
                S3Bucket::connect(&config, common.s3_endpoint.as_deref()).map_err(from_engine)?;
            s3.check().await.map_err(from_engine)?;
            (Arc::new(s3), bucket.key.as_str().to_string())
        }
    };
    let run_id = match &common.run_id {
        Some(id) => id.clone(),
        None => spec
            .identity()
            .local_run_id()
            .parse()
            .map_err(|e: crate::staging::BadRunId| setup_error(e.to_string()))?,
    };
    Ok((storage, Layout::new(output_key, run_id)))
}

/// The spec's `chunking.parallelism` (at most 1000).
fn parallelism(spec: &ValidSpec) -> usize {
    usize::try_from(spec.chunking.parallelism.get()).unwrap_or(usize::MAX)
}

/// Prints an engine error with what to do next, and returns its exit code.
fn report_error(error: &Error, json: bool) -> i32 {
    let code = error.exit_code();
    let hint = if error.damaged_chunks().is_some() {
        "the damaged parts were removed: run the same spec again (`reportjob run`) to export those chunks again and finish"
    } else if error.is_permanent() {
        "this is a permanent error: fix the cause, then run the command again"
    } else {
        "this error may be transient: run the same command again to resume (exported chunks are kept)"
    };
    if json {
        let summary = crate::cli::summary::Summary {
            result: "failed",
            message: Some(error.to_string()),
            sqlstate: error.sqlstate(),
            permanent: Some(error.is_permanent()),
            ..Default::default()
        };
        println!("{}", summary.to_line());
    }
    eprintln!("error: {error}\n{hint}");
    code
}

/// Writes the stage's result as its termination message (one bounded JSON line).
fn write_termination_log(path: Option<&Path>, result: &StageResult) {
    if let Some(path) = path
        && let Err(e) = std::fs::write(path, result.to_line())
    {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

/// `reportjob run`.
pub async fn run(args: RunArgs) -> i32 {
    let stage = match build_stage(
        &args.common,
        args.parallelism.map(|p| p.max(1)),
        &args.params,
    )
    .await
    {
        Ok(stage) => stage,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    crate::cli::summary::Summary::refused(&e.message).to_line()
                );
            }
            eprintln!("error: {}", e.message);
            return e.code;
        }
    };
    if args.dry_run {
        return match stage.compute_plan().await {
            Ok(plan) => {
                if args.json {
                    let chunks = i64::try_from(plan.chunks.len()).unwrap_or(i64::MAX);
                    let summary = crate::cli::summary::Summary {
                        result: "dry_run",
                        chunks: Some(crate::cli::summary::Chunks {
                            total: chunks,
                            ..Default::default()
                        }),
                        run_id: Some(plan.run_id.clone()),
                        plan_digest: Some(plan.digest.clone()),
                        message: Some(format!(
                            "dry run: {chunks} chunks, about {} rows; nothing was exported",
                            plan.estimated_rows
                        )),
                        ..Default::default()
                    };
                    println!("{}", summary.to_line());
                } else {
                    println!("{}", plan_table(&plan));
                    println!("dry run: the spec is valid; nothing was exported or written");
                }
                EXIT_OK
            }
            Err(e) => report_error(&e, args.json),
        };
    }
    let options = RunOptions {
        parallelism: args.parallelism.unwrap_or(parallelism(&stage.spec)),
        retries: stage.spec.worker.retries_per_chunk,
    };
    let reporter = Reporter::new();
    let outcome = run_local(&stage, &options, &reporter).await;
    reporter.finish();
    match outcome {
        Ok(report) => {
            let m = &report.manifest;
            let link = &report.link;
            if args.json {
                use crate::cli::summary::{Chunks, Snapshot, Summary};
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let summary = Summary {
                    result: "succeeded",
                    location: Some(m.location.clone()),
                    url: link.as_ref().map(|l| l.url.clone()),
                    url_expires_at: link.as_ref().map(|l| l.expires_at.to_string()),
                    rows: Some(i64::try_from(m.rows).unwrap_or(i64::MAX)),
                    bytes: Some(i64::try_from(m.bytes).unwrap_or(i64::MAX)),
                    sha256: Some(m.sha256.clone()).filter(|s| !s.is_empty()),
                    files: (!m.files.is_empty())
                        .then(|| m.files.iter().map(crate::cli::summary::File::of).collect()),
                    chunks: Some(Chunks {
                        total: count(report.chunks),
                        succeeded: count(report.chunks),
                        failed: 0,
                        active: 0,
                        resumed: count(report.resumed_chunks),
                    }),
                    run_id: Some(m.run_id.clone()),
                    plan_digest: Some(m.plan_digest.clone()),
                    manifest: Some(report.manifest_location.clone()),
                    snapshot: m.snapshot.as_ref().map(|s| Snapshot {
                        id: s.id.to_string(),
                        taken_at: s.taken_at.to_string(),
                    }),
                    server_side_copies: Some(m.server_side_copies),
                    elapsed_seconds: Some(report.elapsed.as_secs_f64()),
                    ..Summary::default()
                };
                println!("{}", summary.to_line());
            } else {
                println!("report:   {}", m.location);
                println!("rows:     {}", m.rows);
                println!("bytes:    {}", m.bytes);
                if m.files.is_empty() {
                    println!("sha256:   {}", m.sha256);
                }
                for file in &m.files {
                    println!(
                        "file:     {} ({} rows, {} bytes, sha256 {})",
                        file.location, file.rows, file.bytes, file.sha256
                    );
                    if let Some(url) = &file.url {
                        println!("          {url}");
                    }
                }
                println!(
                    "chunks:   {} ({} resumed)",
                    report.chunks, report.resumed_chunks
                );
                if let Some(snapshot) = &m.snapshot {
                    println!("snapshot: {} (taken {})", snapshot.id, snapshot.taken_at);
                }
                println!("elapsed:  {:.2}s", report.elapsed.as_secs_f64());
                println!("manifest: {}", report.manifest_location);
                if let Some(link) = link {
                    println!("link:     {} (expires {})", link.url, link.expires_at);
                }
            }
            EXIT_OK
        }
        Err(e) => report_error(&e, args.json),
    }
}

/// Runs one stage command in the shape every pod expects: the spec and database from
/// `common`, a one-line summary (or the error) in the termination log, an exit code that
/// tells permanent from transient failures. `body` returns the stage's result and what to
/// print on stdout.
async fn stage_command<F, Fut>(common: &Common, log: Option<&Path>, body: F) -> i32
where
    F: FnOnce(StageContext) -> Fut,
    Fut: std::future::Future<Output = Result<(StageResult, String), Error>>,
{
    let mut stage = match build_stage(common, Some(1), &[]).await {
        Ok(stage) => stage,
        Err(e) => return e.fail(log),
    };
    if let Err(e) = attach_staged_snapshot(&mut stage).await {
        write_termination_log(log, &engine_failure(&e));
        return report_error(&e, false);
    }
    match body(stage).await {
        Ok((result, shown)) => {
            write_termination_log(log, &result);
            println!("{shown}");
            EXIT_OK
        }
        Err(e) => {
            write_termination_log(log, &engine_failure(&e));
            report_error(&e, false)
        }
    }
}

/// The snapshot generation the controller gave this pod (`REPORTJOB_SNAPSHOT_GENERATION`),
/// if any; a value that is not a small number is refused.
fn snapshot_generation() -> Result<Option<u32>, Error> {
    match std::env::var(crate::snapshot::GENERATION_ENV) {
        Err(_) => Ok(None),
        Ok(text) => text.trim().parse::<u32>().map(Some).map_err(|_| {
            Error::InvalidSpec(format!(
                "{} must be a snapshot generation (a number), got {:?}",
                crate::snapshot::GENERATION_ENV,
                text.chars().take(20).collect::<String>()
            ))
        }),
    }
}

/// In a cluster run under one snapshot, the stage reads the snapshot the holder pod staged
/// for its generation (waiting a bounded time for it to appear).
async fn attach_staged_snapshot(stage: &mut StageContext) -> Result<(), Error> {
    if stage.spec.source.consistency != crate::api::Consistency::Snapshot {
        return Ok(());
    }
    let Some(generation) = snapshot_generation()? else {
        return Ok(());
    };
    let record = crate::snapshot::staged(
        stage.storage.as_ref(),
        &stage.layout,
        generation,
        crate::snapshot::STAGED_WAIT,
    )
    .await?;
    stage.snapshot = Some(record);
    Ok(())
}

/// `reportjob snapshot`: the `<name>-snapshot` pod, which holds the run's snapshot.
pub async fn snapshot(args: crate::cli::SnapshotArgs) -> i32 {
    let log = args.termination_log.as_deref();
    let stage = match build_stage(&args.common, Some(1), &[]).await {
        Ok(stage) => stage,
        Err(e) => return e.fail(log),
    };
    let held = async {
        let generation = snapshot_generation()?.unwrap_or(0);
        crate::snapshot::hold(
            &stage.db,
            stage.storage.as_ref(),
            &stage.layout,
            stage.spec.source.snapshot_max,
            generation,
        )
        .await
    }
    .await;
    match held {
        Ok(line) => {
            println!("{line}");
            EXIT_OK
        }
        Err(e) => {
            write_termination_log(log, &engine_failure(&e));
            report_error(&e, false)
        }
    }
}

fn engine_failure(e: &Error) -> StageResult {
    StageResult::Failed {
        reason: e.label().into(),
        message: e.to_string(),
    }
}

impl Setup {
    /// Records the setup failure in the termination log and on stderr; returns the exit code.
    fn fail(self, log: Option<&Path>) -> i32 {
        eprintln!("error: {}", self.message);
        let failed = StageResult::Failed {
            reason: "setup".into(),
            message: self.message,
        };
        write_termination_log(log, &failed);
        self.code
    }
}

/// `reportjob plan`.
pub async fn plan(args: PlanArgs) -> i32 {
    let (json, write) = (args.json, args.write);
    stage_command(
        &args.common,
        args.termination_log.as_deref(),
        |stage| async move {
            let plan = if write {
                stage.plan_once().await?.0
            } else {
                stage.compute_plan().await?
            };
            let result = StageResult::Planned {
                run_id: plan.run_id.clone(),
                chunks: u64::try_from(plan.chunks.len()).unwrap_or(u64::MAX),
                digest: plan.digest.clone(),
                estimated_rows: plan.estimated_rows,
                strategy: serde_json::to_value(plan.strategy)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                warnings: plan.warnings.clone(),
            };
            let shown = if json {
                serde_json::to_string_pretty(&plan)
                    .map_err(|e| Error::Encoding(format!("cannot serialize the plan: {e}")))?
            } else if write {
                result.to_string()
            } else {
                plan_table(&plan)
            };
            Ok((result, shown))
        },
    )
    .await
}

fn plan_table(plan: &crate::plan::Plan) -> String {
    let mut out = format!(
        "plan of {} by {} ({:?} boundaries, ~{} rows, run {}):\n{:>6}  {:>12}  range\n",
        plan.source.description,
        plan.source.key_column,
        plan.strategy,
        plan.estimated_rows,
        plan.run_id,
        "chunk",
        "~rows"
    );
    for chunk in &plan.chunks {
        out.push_str(&format!(
            "{:>6}  {:>12}  {}\n",
            chunk.index,
            chunk.estimated_rows,
            chunk.describe()
        ));
    }
    out.push_str(&format!("digest: {}", plan.digest));
    out
}

/// `reportjob worker`.
pub async fn worker(args: WorkerArgs) -> i32 {
    let (retries, digest) = (args.retries, args.plan_digest.clone());
    let index = match chunk_of_index(args.index, args.chunks.as_deref()) {
        Ok(index) => index,
        Err(message) => {
            return Setup {
                message,
                code: EXIT_BAD_SPEC,
            }
            .fail(args.termination_log.as_deref());
        }
    };
    let throttle = match Throttle::parse(args.throttle.as_deref().unwrap_or_default()) {
        Ok(throttle) => throttle,
        Err(why) => {
            return Setup {
                message: format!("{}: {why}", env::THROTTLE),
                code: EXIT_BAD_SPEC,
            }
            .fail(args.termination_log.as_deref());
        }
    };
    stage_command(
        &args.common,
        args.termination_log.as_deref(),
        |stage| async move {
            let plan = stage.load_plan(digest.as_deref()).await?;
            // A busy database: the pod ends without starting its chunk (the Job starts it
            // again without spending a retry) and its message says why.
            stage
                .db
                .wait_while_busy(&throttle, THROTTLE_PATIENCE)
                .await?;
            let part = stage
                .export_chunk_retrying(&plan, index, retries, |attempt, e| {
                    eprintln!("attempt {attempt} failed, retrying: {e}")
                })
                .await?;
            let result = StageResult::Exported {
                chunk: u64::try_from(part.index).unwrap_or(u64::MAX),
                rows: part.rows,
                bytes: part.bytes,
                crc32: part.crc32,
            };
            let shown = result.to_string();
            Ok((result, shown))
        },
    )
    .await
}

/// How long a chunk worker waits for a busy database before its pod ends to say so.
const THROTTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// The plan chunk a worker exports: `index` itself, or the `index`-th of `chunks`.
fn chunk_of_index(index: usize, chunks: Option<&str>) -> Result<usize, String> {
    let Some(list) = chunks else {
        return Ok(index);
    };
    let listed = ChunkSet::parse(list, MAX_CHUNKS).map_err(|e| format!("--chunks: {e}"))?;
    listed.chunk_of_completion_index(index).ok_or_else(|| {
        format!(
            "completion index {index} is past the {} chunks listed in --chunks {list:?}",
            listed.len()
        )
    })
}

/// `reportjob cleanup`: removes the run's staging prefix (and, when asked, the report and
/// its manifest). It needs the destination only, no database.
pub async fn cleanup(args: CleanupArgs) -> i32 {
    let log = args.termination_log.as_deref();
    let result = async {
        let spec = load_spec(&args.common, &[])?;
        let (storage, layout) = open_destination(&args.common, &spec).await?;
        let engine = |e: Error| Setup {
            code: e.exit_code(),
            message: e.to_string(),
        };
        storage
            .delete_prefix(&layout.staging_prefix())
            .await
            .map_err(engine)?;
        let mut deleted = None;
        if args.delete_output {
            // What the run wrote, by the names the spec and the run's record give: the
            // report's key, or files 1 to --output-files of a split report; never the list
            // of a manifest at the destination (anyone who can write there can plant one
            // naming files the report never wrote). Then the manifest.
            let files = crate::staging::recorded_files(
                &layout,
                spec.output.split.is_some(),
                args.output_files,
            );
            for key in &files {
                storage.delete(key).await.map_err(engine)?;
            }
            storage
                .delete(&layout.manifest_key())
                .await
                .map_err(engine)?;
            deleted = Some(storage.location(&layout.output));
        }
        Ok::<StageResult, Setup>(StageResult::CleanedUp {
            removed: storage.location(&layout.staging_prefix()),
            deleted,
        })
    }
    .await;
    match result {
        Ok(result) => {
            write_termination_log(log, &result);
            println!("{result}");
            EXIT_OK
        }
        Err(e) => e.fail(log),
    }
}

/// `reportjob assemble`.
pub async fn assemble(args: AssembleArgs) -> i32 {
    let digest = args.plan_digest.clone();
    stage_command(
        &args.common,
        args.termination_log.as_deref(),
        |stage| async move {
            let m = stage.assemble_staged(digest.as_deref()).await?;
            let link = stage.download_link().await?;
            // A split report is its manifest: the result names it, with the files that fit.
            let (sha256, location) = if m.files.is_empty() {
                (m.sha256.clone(), m.location.clone())
            } else {
                let key = stage.layout.manifest_key();
                let sha256 = stage.storage.sha256(&key).await?.ok_or_else(|| {
                    Error::NotStaged(format!(
                        "the manifest {} is gone",
                        stage.storage.location(&key)
                    ))
                })?;
                (sha256, stage.storage.location(&key))
            };
            // The success notification goes from here, the one pod that knows the outcome.
            let mut notified = None;
            if stage.spec.notify.is_some() {
                let details = crate::notify::Details {
                    rows: i64::try_from(m.rows).ok(),
                    bytes: i64::try_from(m.bytes).ok(),
                    location: Some(location.clone()),
                    url: link.as_ref().map(|l| l.url.clone()),
                    message: None,
                };
                let report = crate::notify::notify_from_env(
                    stage.spec.notify.as_ref(),
                    crate::notify::Outcome::Succeeded,
                    details,
                )
                .await;
                eprintln!("{}", StageResult::Notified(report.clone()));
                notified = Some(report);
            }
            let result = StageResult::Assembled {
                snapshot: m.snapshot.clone(),
                rows: m.rows,
                bytes: m.bytes,
                sha256,
                location,
                url_expires_at: link.as_ref().map(|l| l.expires_at),
                url: link.map(|l| l.url),
                notified,
                file_count: None,
                files: Vec::new(),
            }
            .with_files(&m.files);
            let shown = result.to_string();
            Ok((result, shown))
        },
    )
    .await
}
