//! Where a Job is, read from its conditions: the one reading every part of the controller
//! shares (the observation, the decisions, the pod budget).

use k8s_openapi::api::batch::v1::Job;

/// Where a Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished.
    Running,
    /// `Complete`.
    Complete,
    /// `Failed` (or `FailureTarget`), with the Job's reason and message.
    Failed { reason: String, message: String },
}

/// A Job's outcome from its conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let active = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if active("Complete").is_some() {
        return JobOutcome::Complete;
    }
    match active("Failed").or_else(|| active("FailureTarget")) {
        Some(c) => JobOutcome::Failed {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        },
        None => JobOutcome::Running,
    }
}
