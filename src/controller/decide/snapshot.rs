//! The run's snapshot holder (`consistency: Snapshot`): the `<name>-snapshot` Job is
//! created before planning and kept while the run is active; when it is gone (its pod
//! failed or ended) or a stage reports the snapshot lost, the export starts again under a
//! new snapshot (the next generation) until `worker.snapshotRestarts` is used up, then the
//! ReportJob fails with reason `SnapshotLost`.

use kube::ResourceExt;

use super::{Action, Decision, RUNNING_RESYNC};
use crate::api::conditions::reason;
use crate::api::{ChunkCounts, Consistency, ValidSpec};
use crate::controller::events::{EventNote, action};
use crate::controller::jobs;
use crate::controller::names::Stage;
use crate::controller::observe::{JobOutcome, job_outcome};

/// What a stage pod's failure says when the run's snapshot was lost.
pub(super) const LOST_MARK: &str = "snapshot_lost";

impl Decision<'_> {
    /// The generation of the run's snapshot: how many times it was lost and taken again.
    pub(super) fn snapshot_generation(&self) -> u32 {
        u32::try_from(self.st.snapshot_generation.unwrap_or(0)).unwrap_or(0)
    }

    /// A new snapshot for the run: every chunk is exported again under it.
    pub(super) fn next_snapshot(&mut self) {
        self.st.snapshot_generation = Some(i64::from(self.snapshot_generation()) + 1);
        self.st.completed_chunks = None;
        self.st.failed_chunks = None;
        if let Some(c) = self.st.chunks.as_mut() {
            *c = ChunkCounts {
                total: c.total,
                ..Default::default()
            };
        }
    }

    /// Keeps the holder of an active run: creates it when missing; when it ended, the
    /// snapshot is lost. `None` when the run may go on.
    pub(super) fn snapshot_holder(&mut self, spec: &ValidSpec, run_id: &str) -> Option<Action> {
        if spec.source.consistency != Consistency::Snapshot {
            return None;
        }
        self.snapshot_generation = Some(self.snapshot_generation());
        let Some(job) = self.job(Stage::Snapshot) else {
            self.requeue = Some(RUNNING_RESYNC);
            if self.st.plan.is_none() {
                // The plan Job follows at once: one status write for both.
                self.planning_status();
            }
            let job =
                jobs::snapshot_job(&self.job_context(spec), run_id, self.snapshot_generation());
            return Some(Action::CreateJob(Box::new(job)));
        };
        match job_outcome(job) {
            JobOutcome::Running => {
                self.watch_pods(Stage::Snapshot, Some(spec.worker.start_timeout))
            }
            JobOutcome::Complete => {
                Some(self.snapshot_lost(spec, "the snapshot holder pod ended".into()))
            }
            JobOutcome::Failed { message, .. } => {
                let last = self.pod_failure(Stage::Snapshot).unwrap_or(message);
                // A holder that could never work (the staging area not writable, the role not
                // allowed to export a snapshot) fails the run: a new snapshot cannot help.
                if self.last_exit_code(Stage::Snapshot) == Some(crate::error::EXIT_PERMANENT) {
                    return Some(self.fail(
                        reason::SNAPSHOT_FAILED,
                        format!("the snapshot holder pod failed: {last}"),
                    ));
                }
                Some(self.snapshot_lost(spec, format!("the snapshot holder pod failed: {last}")))
            }
        }
    }

    /// The run's snapshot is lost: parts read under it can never be joined with parts read
    /// under another, so every chunk is exported again under a new snapshot (the plan's
    /// ranges are kept), or the ReportJob fails once the restarts are used up.
    pub(super) fn snapshot_lost(&mut self, spec: &ValidSpec, why: String) -> Action {
        let used = u32::try_from(self.st.snapshot_restarts.unwrap_or(0)).unwrap_or(0);
        let limit = spec.worker.snapshot_restarts;
        if used >= limit {
            return self.fail(
                reason::SNAPSHOT_LOST,
                format!(
                    "the run's database snapshot was lost and worker.snapshotRestarts ({limit}) \
                     restarts are used up: {why}"
                ),
            );
        }
        self.st.snapshot_restarts = Some(i64::from(used) + 1);
        self.next_snapshot();
        let message = format!(
            "the run's database snapshot was lost ({why}); exporting every chunk again under a \
             new snapshot (restart {} of {limit})",
            used + 1
        );
        self.notes.push(EventNote::warning(
            reason::SNAPSHOT_RESTARTED,
            action::RECONCILE,
            &message,
        ));
        self.st.message = Some(message);
        self.requeue = Some(RUNNING_RESYNC);
        let name = self.rj().name_any();
        let doomed: Vec<String> = [Stage::Chunks, Stage::Assemble, Stage::Snapshot]
            .into_iter()
            .filter(|s| self.job(*s).is_some())
            .map(|s| s.job_name(&name))
            .collect();
        if doomed.is_empty() {
            Action::None
        } else {
            Action::DeleteJobs(doomed)
        }
    }

    /// A finished run releases its snapshot: the holder Job is deleted.
    pub(super) fn release_snapshot(&self) -> Option<Action> {
        let job = self.job(Stage::Snapshot)?;
        Some(Action::DeleteJobs(vec![job.name_any()]))
    }
}
