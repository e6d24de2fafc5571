//! The events the controller records about a ReportJob, and their text, in one place.
//! The reasons themselves are constants of [`reason`] (shared with the conditions and
//! with the stage pods' notification results).

use reportjob_core::api::conditions::{self, reason};
use reportjob_core::api::{Phase, ReportJobStatus};

/// An event to record about the ReportJob.
#[derive(Clone, Debug, PartialEq)]
pub struct EventNote {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What the controller did (one of the [`action`] names).
    pub action: &'static str,
    /// Human-readable note.
    pub message: String,
}

/// What the controller was doing when it recorded an event (the event's `action`).
pub mod action {
    /// Validating the spec.
    pub const VALIDATE: &str = "Validate";
    /// Planning.
    pub const PLAN: &str = "Plan";
    /// Exporting chunks.
    pub const EXPORT: &str = "Export";
    /// Assembling the report.
    pub const ASSEMBLE: &str = "Assemble";
    /// Removing staging data.
    pub const CLEANUP: &str = "Cleanup";
    /// Retrying a failed stage.
    pub const RETRY: &str = "Retry";
    /// Cancelling the run.
    pub const CANCEL: &str = "Cancel";
    /// Anything else.
    pub const RECONCILE: &str = "Reconcile";
}

impl EventNote {
    /// A Normal event.
    pub fn normal(reason: &str, action: &'static str, message: &str) -> EventNote {
        EventNote {
            warning: false,
            reason: reason.to_string(),
            action,
            message: message.to_string(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &str, action: &'static str, message: &str) -> EventNote {
        EventNote {
            warning: true,
            reason: reason.to_string(),
            action,
            message: message.to_string(),
        }
    }

    /// A reconcile that failed (its error's text).
    pub fn reconcile_error(message: String) -> EventNote {
        EventNote::warning(reason::RECONCILE_ERROR, action::RECONCILE, &message)
    }

    /// The cleanup Job was created.
    pub fn cleaning_up() -> EventNote {
        EventNote::normal(
            reason::CLEANING_UP,
            action::CLEANUP,
            "removing staging data",
        )
    }

    /// The cleanup Job failed with `last`.
    pub fn cleanup_failed(last: &str) -> EventNote {
        EventNote::warning(
            reason::CLEANUP_FAILED,
            action::CLEANUP,
            &format!("staging data may be left behind: {last}"),
        )
    }
}

/// The `Notified` condition's message.
pub fn notified_message(ok: bool, why: &str) -> String {
    if ok {
        "the webhook accepted the notification".to_string()
    } else {
        format!("the notification was not delivered ({why}); the report itself is unaffected")
    }
}

/// `N chunks, plan digest <first 12 hex digits>`.
pub fn plan_summary(chunks: i64, digest: &str) -> String {
    format!("{chunks} chunks, plan digest {}", short(digest))
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// Events for phase transitions.
pub fn phase_notes(old: &ReportJobStatus, new: &ReportJobStatus) -> Vec<EventNote> {
    if old.phase == new.phase {
        return Vec::new();
    }
    let message = new.message.clone().unwrap_or_default();
    match new.phase {
        // Planning starts every run: the status says so (phase, `startTime`), and the
        // `PlanStaged` event that ends it is the one worth a request (every request per run
        // counts at scale; BENCHMARKS.md measures them).
        Some(Phase::Planning) => Vec::new(),
        Some(Phase::Running) => {
            let mut notes = Vec::new();
            if let Some(plan) = &new.plan
                && old.plan.is_none()
            {
                // One event for both: the plan is staged and its chunks are exporting.
                notes.push(EventNote::normal(
                    reason::PLAN_STAGED,
                    action::PLAN,
                    &format!(
                        "{}; exporting chunks",
                        plan_summary(plan.chunks, &plan.digest)
                    ),
                ));
            } else if old.phase == Some(Phase::Suspended) {
                notes.push(EventNote::normal(
                    reason::RESUMED,
                    action::EXPORT,
                    "resumed",
                ));
            } else if old.phase != Some(Phase::Failed) {
                notes.push(EventNote::normal(
                    reason::EXPORTING,
                    action::EXPORT,
                    "exporting chunks",
                ));
            }
            notes
        }
        Some(Phase::Suspended) => vec![EventNote::normal(
            reason::SUSPENDED,
            action::EXPORT,
            &message,
        )],
        // Likewise the status shows assembling; `Completed` (or the failure) ends it.
        Some(Phase::Assembling) => Vec::new(),
        Some(Phase::Succeeded) => vec![EventNote::normal(
            reason::COMPLETED,
            action::ASSEMBLE,
            &message,
        )],
        Some(Phase::Failed) => {
            let why = new
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::FAILED)
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| reason::FAILED.into());
            if why == reason::INVALID_SPEC {
                Vec::new() // noted once by the validation
            } else {
                vec![EventNote {
                    warning: true,
                    reason: why,
                    action: action::RECONCILE,
                    message,
                }]
            }
        }
        Some(Phase::Cancelled) => vec![EventNote::normal(
            reason::CANCELLED,
            action::CANCEL,
            &message,
        )],
        Some(Phase::Pending) | None => Vec::new(),
    }
}
