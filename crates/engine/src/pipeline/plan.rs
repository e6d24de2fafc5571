//! Stage one: the plan. Resolves the spec against the database, cuts the key range into
//! chunks from its statistics, and stages `plan.json` (once: a staged plan is reused).

use crate::error::{Error, Result};
use crate::formats::PartEncoding;
use crate::source::resolve;
use crate::source::stats::key_stats;
use reportjob_core::plan::{Plan, chunks_from_boundaries};

use super::{PLAN_VERSION, StageContext, part_format, to_json};

impl StageContext {
    /// Computes a plan from the database (writes nothing).
    pub async fn compute_plan(&self) -> Result<Plan> {
        let mut session = self.db.session(&self.session_setup(true)).await?;
        let resolved = resolve(&mut session, &self.spec.source).await?;
        let chunking = &self.spec.chunking;
        let chunk_size = match &self.spec.output.split {
            Some(split) => split.chunk_size(chunking.chunk_size),
            None => chunking.chunk_size,
        };
        let stats = key_stats(
            &mut session,
            &resolved,
            chunk_size.get(),
            u64::from(chunking.max_chunks.get()),
            u64::from(chunking.parallelism.get()),
        )
        .await?;
        session.finish().await?;
        let chunks = chunks_from_boundaries(
            &stats.boundaries,
            stats.estimated_rows,
            stats.null_rows,
            resolved.key_nullable,
        );
        let format = part_format(&self.spec);
        let mut warnings = resolved.warnings;
        warnings.extend(PartEncoding::new(&format).warnings(&resolved.source));
        Ok(Plan {
            version: PLAN_VERSION,
            run_id: self.layout.run_id.to_string(),
            source: resolved.source,
            format,
            estimated_rows: stats.estimated_rows + stats.null_rows,
            strategy: stats.strategy,
            chunks,
            created_at: jiff::Timestamp::now().to_string(),
            snapshot: self.snapshot.clone(),
            digest: String::new(),
            warnings,
        }
        .seal())
    }

    /// The staged plan of this run, if one was written and is intact.
    pub async fn staged_plan(&self) -> Result<Option<Plan>> {
        let key = self.layout.plan_key();
        let Some(bytes) = self.storage.read(&key).await? else {
            return Ok(None);
        };
        let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidStaged(format!(
                "{} is not a valid plan: {e}",
                self.storage.location(&key)
            ))
        })?;
        if let Err(why) = plan.check_against(&self.spec.source) {
            return Err(Error::InvalidStaged(format!(
                "{} {why}",
                self.storage.location(&key)
            )));
        }
        Ok(Some(plan))
    }

    /// Loads the staged plan, checking it against `expected_digest` when given.
    pub async fn load_plan(&self, expected_digest: Option<&str>) -> Result<Plan> {
        let plan = self.staged_plan().await?.ok_or_else(|| {
            Error::NotStaged(format!(
                "no plan at {}; run `reportjob plan --write` first",
                self.storage.location(&self.layout.plan_key())
            ))
        })?;
        if let Some(expected) = expected_digest
            && expected != plan.digest
        {
            return Err(Error::InvalidStaged(format!(
                "the staged plan has digest {}, expected {expected}",
                plan.digest
            )));
        }
        Ok(plan)
    }

    /// Returns the staged plan when there is one (a resumed run), else plans and stages.
    /// The plan is computed once per run and never recomputed.
    pub async fn plan_once(&self) -> Result<(Plan, bool)> {
        if let Some(plan) = self.staged_plan().await? {
            return Ok((plan, true));
        }
        let plan = self.compute_plan().await?;
        let json = to_json(&plan, "plan")?;
        self.storage.write(&self.layout.plan_key(), json).await?;
        Ok((plan, false))
    }
}
