//! The run's snapshot holder (`consistency: Snapshot`): the `<name>-snapshot` Job is
//! created before planning and kept while the run is active; when it is gone (its pod
//! failed or ended) or a stage reports the snapshot lost, the export starts again under a
//! new snapshot (the next generation) until `worker.snapshotRestarts` is used up, then the
//! ReportJob fails with reason `SnapshotLost`.
//!
//! A suspended export holds no snapshot: the holder is a transaction left open, which holds
//! back vacuum on the whole database for as long as it lasts, so suspending releases it (and
//! the chunks read under it) and resuming, once admitted, exports every chunk again under a
//! new one. This does not count as a lost snapshot.

use kube::ResourceExt;

use super::{Action, Decision, RUNNING_RESYNC};
use crate::controller::events::{EventNote, action};
use crate::controller::job_state::{JobOutcome, job_outcome};
use crate::controller::jobs;
use crate::controller::names::Stage;
use reportjob_core::api::conditions::{self, reason};
use reportjob_core::api::{ChunkCounts, Consistency, Phase, ValidSpec};

/// The status of a suspended `Snapshot` run.
pub(super) const SUSPENDED_RELEASED: &str = "suspended by spec.suspend; the run's database \
     snapshot is released (an open transaction would hold back vacuum while suspended), so \
     resuming exports every chunk again under a new one";

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
        self.st.rows = None;
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
        let exporting = self.st.plan.is_some()
            && self
                .st
                .chunks
                .as_ref()
                .is_none_or(|c| c.succeeded < c.total);
        if exporting && self.rj().spec.suspend {
            return self.release_while_suspended();
        }
        let Some(job) = self.job(Stage::Snapshot) else {
            // Resuming a suspended export takes a run slot before it takes a snapshot.
            if exporting && self.st.phase == Some(Phase::Suspended) && self.resume_held_back() {
                return Some(Action::None);
            }
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
                if self.last_exit_code(Stage::Snapshot)
                    == Some(reportjob_core::stage_protocol::EXIT_PERMANENT)
                {
                    return Some(self.fail(
                        reason::SNAPSHOT_FAILED,
                        format!("the snapshot holder pod failed: {last}"),
                    ));
                }
                Some(self.snapshot_lost(spec, format!("the snapshot holder pod failed: {last}")))
            }
        }
    }

    /// A suspended export: its holder (and the chunks Job whose parts were read under its
    /// snapshot) is deleted, and the next generation is taken when the run resumes. `None`
    /// once released: the stages keep the run `Suspended`.
    fn release_while_suspended(&mut self) -> Option<Action> {
        let holder = self.job(Stage::Snapshot)?.name_any();
        let name = self.rj().name_any();
        let mut doomed = Vec::new();
        if self.job(Stage::Chunks).is_some() {
            doomed.push(Stage::Chunks.job_name(&name));
        }
        doomed.push(holder);
        self.next_snapshot();
        let message = SUSPENDED_RELEASED;
        self.set_phase(Phase::Suspended, message);
        self.condition(
            conditions::SUSPENDED,
            true,
            reason::SUSPENDED_BY_SPEC,
            "spec.suspend is set",
        );
        self.notes.push(EventNote::normal(
            reason::SNAPSHOT_RELEASED,
            action::RECONCILE,
            message,
        ));
        self.requeue = Some(RUNNING_RESYNC);
        Some(Action::DeleteJobs(doomed))
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
