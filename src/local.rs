//! The one-machine runner behind `reportjob run`: plan once, export chunks in parallel
//! with retries, assemble; a re-run of the same spec resumes where the last one stopped.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::error::{Result, backoff};
use crate::pipeline::Stage;
use crate::plan::Plan;
use crate::staging::{OutputManifest, PartManifest};

/// Knobs of a local run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Chunks exported at once.
    pub parallelism: usize,
    /// Retries of a chunk after a transient failure.
    pub retries: u32,
}

/// What a run reports as it goes.
pub trait Progress: Send + Sync {
    /// The plan is ready (`reused` when a staged plan was found).
    fn planned(&self, plan: &Plan, reused: bool);
    /// A chunk finished (`resumed` when its part was already staged).
    fn chunk_done(&self, part: &PartManifest, resumed: bool);
    /// A chunk failed transiently and will be retried.
    fn chunk_retry(&self, index: usize, attempt: u32, error: &crate::error::Error);
    /// All chunks are done; assembly starts.
    fn assembling(&self);
}

/// The outcome of a successful run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The report's manifest.
    pub manifest: OutputManifest,
    /// Where the manifest is.
    pub manifest_location: String,
    /// Chunks in the plan.
    pub chunks: usize,
    /// Chunks whose parts were already staged by an earlier run.
    pub resumed_chunks: usize,
    /// Whether the plan was reused from an earlier run.
    pub plan_reused: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs the whole pipeline on this machine.
pub async fn run(
    stage: &Stage,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport> {
    let started = Instant::now();
    let (plan, plan_reused) = stage.plan_once().await?;
    progress.planned(&plan, plan_reused);

    let mut pending = Vec::new();
    let mut resumed = 0;
    for chunk in &plan.chunks {
        match stage.finished_part(&plan, chunk.index).await? {
            Some(part) => {
                resumed += 1;
                progress.chunk_done(&part, true);
            }
            None => pending.push(chunk.index),
        }
    }

    let plan_ref = &plan;
    let mut exports = futures::stream::iter(pending)
        .map(|index| export_with_retries(stage, plan_ref, index, options.retries, progress))
        .buffer_unordered(options.parallelism.max(1));
    while let Some(result) = exports.next().await {
        // On the first failure the other exports are dropped (cancelled); their finished
        // parts stay staged for the next run.
        let part = result?;
        progress.chunk_done(&part, false);
    }
    drop(exports);

    progress.assembling();
    let manifest = stage.assemble(&plan).await?;
    Ok(RunReport {
        manifest_location: stage.storage.location(&stage.layout.manifest_key()),
        manifest,
        chunks: plan.chunks.len(),
        resumed_chunks: resumed,
        plan_reused,
        elapsed: started.elapsed(),
    })
}

async fn export_with_retries(
    stage: &Stage,
    plan: &Plan,
    index: usize,
    retries: u32,
    progress: &dyn Progress,
) -> Result<PartManifest> {
    let mut attempt = 0;
    loop {
        match stage.export_chunk(plan, index).await {
            Ok(part) => return Ok(part),
            Err(e) if !e.is_permanent() && attempt < retries => {
                attempt += 1;
                progress.chunk_retry(index, attempt, &e);
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
