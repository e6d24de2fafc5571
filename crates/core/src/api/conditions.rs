//! Condition types and reasons as named constants, and the merge rule for conditions.
//!
//! Every reason the project writes (in conditions, in events, in the notification results
//! of the stage pods) is a constant of [`reason`]. They live here, in the API layer, so
//! that the stage pods (`notify`) and the controller share them without the pods
//! depending on the controller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The plan was computed and staged.
pub const PLANNED: &str = "Planned";
/// The report is assembled and published.
pub const COMPLETE: &str = "Complete";
/// The ReportJob failed.
pub const FAILED: &str = "Failed";
/// The ReportJob is suspended.
pub const SUSPENDED: &str = "Suspended";
/// The completion notification of `spec.notify` was delivered (or why not).
pub const NOTIFIED: &str = "Notified";

/// Condition type: the run waits for one of the controller's run slots
/// (`--max-concurrent-runs`) or for stage pod budget (`--max-stage-pods-per-namespace`).
pub const QUEUED: &str = "Queued";
/// Condition type: a chunk worker found the run's ReportDatabase busier than its throttle
/// allows (its chunk did not start), or no longer does.
pub const THROTTLED: &str = "Throttled";
/// Condition type: whether the staging data of a cancelled run was removed.
pub const STAGING_REMOVED: &str = "StagingRemoved";

/// Condition type: the spec changed after planning started and the change is ignored.
pub const SPEC_CHANGE_IGNORED: &str = "SpecChangeIgnored";

/// Condition type: a stage Job counted the success of a pod it did not build from its
/// template (someone else created it naming the Job as owner); its result was refused and
/// the stage ran again. The message starts with how many times.
pub const RESULT_REFUSED: &str = "ForeignResultRefused";

/// Reason: the spec breaks a rule the schema cannot express.
pub const REASON_INVALID_SPEC: &str = reason::INVALID_SPEC;

/// Reasons, as they appear in conditions and events (CamelCase).
pub mod reason {
    /// The spec breaks a rule the schema cannot express.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A stage Job counted a pod it did not build; the stage runs again.
    pub const FOREIGN_POD: &str = "ForeignPodResult";
    /// The plan Job is running.
    pub const PLANNING: &str = "Planning";
    /// The plan is staged.
    pub const PLAN_STAGED: &str = "PlanStaged";
    /// The database role may do more than read (a warning; the run goes on).
    pub const EXCESS_PRIVILEGES: &str = "ExcessPrivileges";
    /// Chunks are being exported.
    pub const EXPORTING: &str = "Exporting";
    /// The parts are being assembled.
    pub const ASSEMBLING: &str = "Assembling";
    /// The report is published.
    pub const PUBLISHED: &str = "ReportPublished";
    /// The report is complete (event).
    pub const COMPLETED: &str = "Completed";
    /// The spec sets `suspend`.
    pub const SUSPENDED_BY_SPEC: &str = "SuspendedBySpec";
    /// The chunks Job was suspended (event).
    pub const SUSPENDED: &str = "Suspended";
    /// `suspend` was cleared.
    pub const RESUMED: &str = "Resumed";
    /// Not failed.
    pub const NO_FAILURE: &str = "NoFailure";
    /// Failed, for a failure without a reason of its own.
    pub const FAILED: &str = "Failed";
    /// The plan Job failed.
    pub const PLAN_FAILED: &str = "PlanFailed";
    /// The run's database snapshot was lost more often than `worker.snapshotRestarts` allows.
    pub const SNAPSHOT_LOST: &str = "SnapshotLost";
    /// The snapshot holder failed for a reason a new snapshot cannot fix (exit code 3).
    pub const SNAPSHOT_FAILED: &str = "SnapshotFailed";
    /// The run's database snapshot was lost; the export starts again under a new one.
    pub const SNAPSHOT_RESTARTED: &str = "SnapshotRestarted";
    /// A suspended run released its database snapshot; resuming exports under a new one.
    pub const SNAPSHOT_RELEASED: &str = "SnapshotReleased";
    /// A chunk failed after its retries (or at once, permanently).
    pub const CHUNKS_FAILED: &str = "ChunksFailed";
    /// The assemble Job failed.
    pub const ASSEMBLE_FAILED: &str = "AssembleFailed";
    /// The chunks Job ran past `activeDeadlineSeconds` (also the Job controller's reason).
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The stage Job's result could not be read.
    pub const BAD_RESULT: &str = "BadStageResult";
    /// A retry was requested with the retry annotation.
    pub const RETRYING: &str = "Retrying";
    /// `reportjob cancel` ended the run for good.
    pub const CANCELLED: &str = "Cancelled";
    /// The staging data of a cancelled run was removed (or there was none).
    pub const STAGING_REMOVED: &str = "StagingRemoved";
    /// A stage pod cannot start (e.g. its Secret is missing).
    pub const POD_CANNOT_START: &str = "PodCannotStart";
    /// A stage Job cannot create its pods (a ResourceQuota, a LimitRange, admission).
    pub const CANNOT_CREATE_PODS: &str = "CannotCreatePods";
    /// No pod of a stage ran for `spec.worker.startTimeoutSeconds`.
    pub const START_TIMEOUT: &str = "StartTimeout";
    /// The spec changed after planning started.
    pub const SPEC_CHANGED: &str = "SpecChangedAfterPlanning";
    /// The spec did not change after planning started.
    pub const SPEC_UNCHANGED: &str = "SpecUnchanged";
    /// The planned spec could not be read back.
    pub const PLANNED_SPEC_UNREADABLE: &str = "PlannedSpecUnreadable";
    /// The cleanup Job was created (event).
    pub const CLEANING_UP: &str = "CleaningUp";
    /// The cleanup Job failed (event).
    pub const CLEANUP_FAILED: &str = "CleanupFailed";
    /// As many runs are in flight as the controller runs at once (`--max-concurrent-runs`).
    pub const RUN_LIMIT_REACHED: &str = "RunLimitReached";
    /// As many runs of the namespace are in flight as one namespace runs at once
    /// (`--max-concurrent-runs-per-namespace`).
    pub const NAMESPACE_RUN_LIMIT_REACHED: &str = "NamespaceRunLimitReached";
    /// The run got a run slot and started (or its chunks Job got pods of the budget).
    pub const ADMITTED: &str = "Admitted";
    /// The run's ReportDatabase has no chunk pod free for it (`maxConcurrentChunks`).
    pub const DATABASE_BUDGET: &str = "DatabaseBudgetInUse";
    /// The run's ReportDatabase has as many Snapshot runs holding a session as
    /// `maxSnapshots` allows.
    pub const DATABASE_SNAPSHOTS: &str = "DatabaseSnapshotsInUse";
    /// The ReportDatabase the run names does not exist (or cannot be read yet).
    pub const DATABASE_UNAVAILABLE: &str = "DatabaseUnavailable";
    /// A chunk worker found the database busier than the ReportDatabase's throttle allows.
    pub const DATABASE_BUSY: &str = "DatabaseBusy";
    /// The chunk workers no longer find the database too busy.
    pub const DATABASE_QUIET: &str = "DatabaseQuiet";
    /// The run is waiting for its ReportDatabase (event, once).
    pub const WAITING_FOR_DATABASE: &str = "WaitingForDatabase";
    /// The namespace's chunk pods (`--max-stage-pods-per-namespace`) are all in use.
    pub const STAGE_POD_BUDGET: &str = "StagePodBudgetInUse";
    /// A reconcile failed (event).
    pub const RECONCILE_ERROR: &str = "ReconcileError";
    /// The webhook accepted the notification.
    pub const WEBHOOK_DELIVERED: &str = "WebhookDelivered";
    /// The notification failed for a reason the result does not say.
    pub const NOTIFY_FAILED: &str = "NotifyFailed";
    /// No `spec.notify`.
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    /// `spec.notify.when` excludes this outcome.
    pub const NOT_REQUESTED: &str = "NotRequested";
    /// A variable the notification needs is missing.
    pub const NOTIFY_MISCONFIGURED: &str = "NotifyMisconfigured";
    /// The last webhook attempt timed out.
    pub const WEBHOOK_TIMEOUT: &str = "WebhookTimeout";
    /// The receiver could not be connected to.
    pub const WEBHOOK_UNREACHABLE: &str = "WebhookUnreachable";
    /// The receiver answered 5xx.
    pub const WEBHOOK_SERVER_ERROR: &str = "WebhookServerError";
    /// The receiver answered 429.
    pub const WEBHOOK_THROTTLED: &str = "WebhookThrottled";
    /// The receiver answered 3xx or 4xx (other than 429): not retried.
    pub const WEBHOOK_REJECTED: &str = "WebhookRejected";
    /// The request failed after connecting (connection reset, bad answer).
    pub const WEBHOOK_REQUEST_FAILED: &str = "WebhookRequestFailed";
    /// The URL is not an http(s) URL.
    pub const WEBHOOK_INVALID_URL: &str = "WebhookInvalidUrl";
}

/// Sets `new` in `conditions`, keeping the existing `lastTransitionTime` when the status
/// did not flip, so that a re-written condition does not look like a new transition.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let time: Time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time: time,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, secs: i64) -> Condition {
        Condition {
            type_: COMPLETE.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::from_second(secs).expect("valid time")),
        }
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut conditions = vec![cond("False", 10)];
        set_condition(&mut conditions, cond("False", 20));
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            cond("False", 10).last_transition_time
        );
    }

    #[test]
    fn transition_time_changes_on_flip() {
        let mut conditions = vec![cond("False", 10)];
        set_condition(&mut conditions, cond("True", 20));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(
            conditions[0].last_transition_time,
            cond("True", 20).last_transition_time
        );
    }
}
