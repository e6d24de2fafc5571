//! The stage commands: `run`, `plan`, `worker` and `assemble`, their output and exit codes.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::progress::Reporter;
use super::{AssembleArgs, CleanupArgs, Common, EXIT_BAD_SPEC, PlanArgs, RunArgs, WorkerArgs};
use crate::api::ReportJob;
use crate::api::load::{load_file, load_str};
use crate::error::{EXIT_OK, Error};
use crate::local::{RunOptions, run as run_local};
use crate::pipeline::{Stage, derive_run_id};
use crate::source::Database;
use crate::staging::Layout;
use crate::storage::s3::S3Bucket;
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

fn load_spec(common: &Common) -> Result<ReportJob, Setup> {
    match &common.file {
        Some(path) => load_file(path).map_err(|e| setup_error(e.to_string())),
        None => match std::env::var("REPORTJOB_SPEC") {
            Ok(text) => load_str(&text, "REPORTJOB_SPEC").map_err(|e| setup_error(e.to_string())),
            Err(_) => Err(setup_error(
                "no spec: pass -f report.yaml (or set REPORTJOB_SPEC)",
            )),
        },
    }
}

/// Loads the spec and builds the stage context; `pool_size` is how many chunks run at once
/// (`None`: the spec's parallelism).
async fn build_stage(common: &Common, pool_size: Option<usize>) -> Result<Stage, Setup> {
    let rj = load_spec(common)?;
    let pool_size = pool_size.unwrap_or(usize::try_from(rj.spec.chunking.parallelism).unwrap_or(1));
    let database_url = common.database_url.clone().ok_or_else(|| {
        setup_error(format!(
            "no database URL: pass --database-url or set DATABASE_URL (spec.source.connectionSecretRef \
             names the Kubernetes Secret {:?}, which only the cluster can read)",
            rj.spec.source.connection_secret_ref.name
        ))
    })?;
    let (storage, layout) = open_destination(common, &rj).await?;
    let db = Database::new(&database_url, pool_size)
        .map_err(|e| setup_error(format!("--database-url: {e}")))?;
    Ok(Stage {
        spec: rj.spec,
        db,
        storage,
        layout,
        cancel: Default::default(),
    })
}

/// The destination's storage and the run's staging layout.
async fn open_destination(
    common: &Common,
    rj: &ReportJob,
) -> Result<(Arc<dyn Storage>, Layout), Setup> {
    let destination = &rj.spec.output.destination;
    let (storage, output_key): (Arc<dyn Storage>, String) =
        match (&destination.pvc, &destination.bucket) {
            (Some(pvc), _) => (
                Arc::new(LocalDir::new(&common.output_dir)),
                pvc.path.clone(),
            ),
            (None, Some(bucket)) => {
                let from_engine = |e: Error| Setup {
                    code: e.exit_code(),
                    message: e.to_string(),
                };
                let (s3, key) = S3Bucket::connect(bucket, common.s3_endpoint.as_deref())
                    .map_err(from_engine)?;
                s3.check().await.map_err(from_engine)?;
                (Arc::new(s3), key)
            }
            (None, None) => return Err(setup_error("spec.output.destination: no destination")),
        };
    let run_id = match &common.run_id {
        Some(id) => id.clone(),
        None => derive_run_id(&rj.spec, &output_key)
            .parse()
            .map_err(|e: crate::staging::BadRunId| setup_error(e.to_string()))?,
    };
    Ok((storage, Layout::new(output_key, run_id)))
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
        println!(
            "{}",
            json!({
                "status": "failed",
                "error": error.to_string(),
                "sqlstate": error.sqlstate(),
                "permanent": error.is_permanent(),
            })
        );
    }
    eprintln!("error: {error}\n{hint}");
    code
}

fn write_termination_log(path: Option<&Path>, text: &str) {
    if let Some(path) = path {
        let mut text = text.to_string();
        // Kubernetes keeps at most 4096 bytes of a termination message.
        if text.len() > 4000 {
            let mut cut = 4000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
}

/// `reportjob run`.
pub async fn run(args: RunArgs) -> i32 {
    let stage = match build_stage(&args.common, args.parallelism.map(|p| p.max(1))).await {
        Ok(stage) => stage,
        Err(e) => {
            eprintln!("error: {}", e.message);
            return e.code;
        }
    };
    let options = RunOptions {
        parallelism: args
            .parallelism
            .unwrap_or(usize::try_from(stage.spec.chunking.parallelism).unwrap_or(1)),
        retries: u32::try_from(stage.spec.worker.retries_per_chunk).unwrap_or(0),
    };
    let reporter = Reporter::new();
    let outcome = run_local(&stage, &options, &reporter).await;
    reporter.finish();
    match outcome {
        Ok(report) => {
            let m = &report.manifest;
            let link = &report.link;
            if args.json {
                println!(
                    "{}",
                    json!({
                        "status": "succeeded",
                        "location": m.location,
                        "manifest": report.manifest_location,
                        "rows": m.rows,
                        "bytes": m.bytes,
                        "sha256": m.sha256,
                        "chunks": report.chunks,
                        "resumed_chunks": report.resumed_chunks,
                        "server_side_copies": m.server_side_copies,
                        "run_id": m.run_id,
                        "url": link.as_ref().map(|l| &l.url),
                        "url_expires_at": link.as_ref().map(|l| l.expires_at.to_string()),
                        "plan_digest": m.plan_digest,
                        "elapsed_seconds": report.elapsed.as_secs_f64(),
                    })
                );
            } else {
                println!("report:   {}", m.location);
                println!("rows:     {}", m.rows);
                println!("bytes:    {}", m.bytes);
                println!("sha256:   {}", m.sha256);
                println!(
                    "chunks:   {} ({} resumed)",
                    report.chunks, report.resumed_chunks
                );
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
/// tells permanent from transient failures. `body` returns the termination-log summary
/// and what to print on stdout.
async fn stage_command<F, Fut>(common: &Common, log: Option<&Path>, body: F) -> i32
where
    F: FnOnce(Stage) -> Fut,
    Fut: std::future::Future<Output = Result<(String, String), Error>>,
{
    let stage = match build_stage(common, Some(1)).await {
        Ok(stage) => stage,
        Err(e) => {
            write_termination_log(log, &e.message);
            eprintln!("error: {}", e.message);
            return e.code;
        }
    };
    match body(stage).await {
        Ok((summary, shown)) => {
            write_termination_log(log, &summary);
            println!("{shown}");
            EXIT_OK
        }
        Err(e) => {
            write_termination_log(log, &e.to_string());
            report_error(&e, false)
        }
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
            let summary = plan.summary_line();
            let shown = if json {
                serde_json::to_string_pretty(&plan).unwrap_or_default()
            } else if write {
                summary.clone()
            } else {
                plan_table(&plan)
            };
            Ok((summary, shown))
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
            write_termination_log(args.termination_log.as_deref(), &message);
            eprintln!("error: {message}");
            return EXIT_BAD_SPEC;
        }
    };
    stage_command(
        &args.common,
        args.termination_log.as_deref(),
        |stage| async move {
            let plan = stage.load_plan(digest.as_deref()).await?;
            let part = stage
                .export_chunk_retrying(&plan, index, retries, |attempt, e| {
                    eprintln!("attempt {attempt} failed, retrying: {e}")
                })
                .await?;
            let summary = format!(
                "chunk={} rows={} bytes={} sha256={}",
                part.index, part.rows, part.bytes, part.sha256
            );
            Ok((summary.clone(), summary))
        },
    )
    .await
}

/// The plan chunk a worker exports: `index` itself, or the `index`-th of `chunks`.
fn chunk_of_index(index: usize, chunks: Option<&str>) -> Result<usize, String> {
    let Some(list) = chunks else {
        return Ok(index);
    };
    let listed = crate::staging::parse_ranges(list).map_err(|e| format!("--chunks: {e}"))?;
    listed.get(index).copied().ok_or_else(|| {
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
        let rj = load_spec(&args.common)?;
        let (storage, layout) = open_destination(&args.common, &rj).await?;
        let engine = |e: Error| Setup {
            code: e.exit_code(),
            message: e.to_string(),
        };
        storage
            .delete_prefix(&layout.staging_prefix())
            .await
            .map_err(engine)?;
        let mut summary = format!("removed={}", storage.location(&layout.staging_prefix()));
        if args.delete_output {
            storage.delete(&layout.output).await.map_err(engine)?;
            storage
                .delete(&layout.manifest_key())
                .await
                .map_err(engine)?;
            summary.push_str(&format!(" deleted={}", storage.location(&layout.output)));
        }
        Ok::<String, Setup>(summary)
    }
    .await;
    match result {
        Ok(summary) => {
            write_termination_log(log, &summary);
            println!("{summary}");
            EXIT_OK
        }
        Err(e) => {
            write_termination_log(log, &e.message);
            eprintln!("error: {}", e.message);
            e.code
        }
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
            let mut summary = format!(
                "rows={} bytes={} sha256={} location={}",
                m.rows, m.bytes, m.sha256, m.location
            );
            let link = stage.download_link().await?;
            // The success notification goes from here, the one pod that knows the outcome.
            if stage.spec.notify.is_some() {
                let details = crate::notify::Details {
                    rows: i64::try_from(m.rows).ok(),
                    bytes: i64::try_from(m.bytes).ok(),
                    location: Some(m.location.clone()),
                    url: link.as_ref().map(|l| l.url.clone()),
                    message: None,
                };
                let line = crate::notify::notify_from_env(
                    &stage.spec,
                    crate::notify::Outcome::Succeeded,
                    details,
                )
                .await;
                eprintln!("{line}");
                let fields = crate::controller::step::parse_fields(&line);
                match fields.get("notified").map(String::as_str) {
                    Some("true") => summary.push_str(" notified=true"),
                    _ => summary.push_str(&format!(
                        " notified=false notify_reason={}",
                        fields.get("reason").map_or("NotifyFailed", String::as_str)
                    )),
                }
            }
            // The link goes last: it is the longest field and the controller reads it whole.
            if let Some(link) = link {
                summary.push_str(&format!(
                    " url_expires_at={} url={}",
                    link.expires_at, link.url
                ));
            }
            Ok((summary.clone(), summary))
        },
    )
    .await
}
