//! Names, labels and annotations of everything the controller creates, in one place.

use std::collections::BTreeMap;

use reportjob_core::api::ReportJob;
use reportjob_core::identity::RunIdentity;
pub use reportjob_core::identity::spec_hash;
pub use reportjob_core::names::{
    MANAGED_BY, MANAGED_BY_LABEL, MAX_LABEL, MAX_REPORTJOB_NAME, MAX_SCHEDULE_NAME,
    REPORTJOB_LABEL, STAGE_LABEL, check_reportjob_name,
};

/// The finalizer that holds a deleted ReportJob until its staging data is removed.
pub const FINALIZER: &str = "reporting.dev/cleanup";
/// Set to a new value to re-run the failed stage (only the failed chunks) of a failed ReportJob.
pub const RETRY_ANNOTATION: &str = "reporting.dev/retry";
/// Annotation `reportjob cancel` sets on a ReportJob to end its run for good (its value,
/// the time of the request, is for people).
pub const CANCEL_ANNOTATION: &str = "reporting.dev/cancel";
/// Annotation on the chunks Job: the plan's chunk indexes it exports, as compact ranges;
/// completion index `i` exports the `i`-th of them.
pub const CHUNKS_ANNOTATION: &str = "reporting.dev/chunks";
/// Annotation on every stage Job: the hash of the spec it was built from.
pub const SPEC_HASH_ANNOTATION: &str = "reporting.dev/spec-hash";
/// Annotation on the plan Job: the spec the run was planned with (JSON), the controller's
/// one record of it once the ReportJob's spec changed.
pub const SPEC_ANNOTATION: &str = "reporting.dev/spec";
/// Field manager of the controller's writes.
pub const FIELD_MANAGER: &str = "reportjob-controller";

/// The stages, each run as one Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Computes and stages the plan.
    Plan,
    /// Exports the chunks (an Indexed Job).
    Chunks,
    /// Joins the parts into the report.
    Assemble,
    /// Removes staging data after the ReportJob is deleted.
    Cleanup,
    /// Sends the failure notification (success is sent by the assemble pod).
    Notify,
    /// Holds the run's database snapshot (`consistency: Snapshot`).
    Snapshot,
}

impl Stage {
    /// The stage's label value and Job name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Chunks => "chunks",
            Stage::Assemble => "assemble",
            Stage::Cleanup => "cleanup",
            Stage::Notify => "notify",
            Stage::Snapshot => "snapshot",
        }
    }

    /// The stage of a label value.
    pub fn parse(value: &str) -> Option<Stage> {
        [
            Stage::Plan,
            Stage::Chunks,
            Stage::Assemble,
            Stage::Cleanup,
            Stage::Notify,
            Stage::Snapshot,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// The name of the stage's Job for a ReportJob: `<name>-<stage>`.
    pub fn job_name(self, reportjob: &str) -> String {
        format!("{reportjob}-{}", self.as_str())
    }
}

/// The labels of an object that belongs to `reportjob`'s `stage`.
pub fn labels(reportjob: &str, stage: Stage) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (REPORTJOB_LABEL.to_string(), reportjob.to_string()),
        (STAGE_LABEL.to_string(), stage.as_str().to_string()),
    ])
}

/// The run id of a ReportJob: from its uid, so that a ReportJob deleted and created again
/// under the same name starts a new run instead of resuming the old one's staging data.
pub fn run_id(rj: &ReportJob) -> String {
    RunIdentity::cluster_run_id(rj.metadata.uid.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_derived_name_of_the_longest_name_fits_in_a_label() {
        let name = "a".repeat(MAX_REPORTJOB_NAME);
        for stage in [
            Stage::Plan,
            Stage::Chunks,
            Stage::Assemble,
            Stage::Cleanup,
            Stage::Notify,
            Stage::Snapshot,
        ] {
            assert!(stage.job_name(&name).len() <= MAX_LABEL, "{stage:?}");
        }
        // The chunks Job's pods' hostname, with the highest index maxChunks allows.
        let hostname = format!("{}-99999", Stage::Chunks.job_name(&name));
        assert_eq!(hostname.len(), MAX_LABEL);
        assert!(check_reportjob_name(&name).is_ok());
        let e = check_reportjob_name(&format!("{name}x")).expect_err("one too long");
        assert!(e.contains("at most 50"), "{e}");
        // A 60-character name (the issue's) gave 65 to 69 character job-name labels.
        assert!(check_reportjob_name(&"r".repeat(60)).is_err());
        // A schedule's runs: `<schedule>-<minutes>` with 9 digits still fits.
        let run = format!("{}-{}", "s".repeat(MAX_SCHEDULE_NAME), 999_999_999);
        assert!(check_reportjob_name(&run).is_ok(), "{run}");
    }

    #[test]
    fn job_names_and_stage_labels_round_trip() {
        assert_eq!(Stage::Chunks.job_name("orders"), "orders-chunks");
        for stage in [Stage::Plan, Stage::Chunks, Stage::Assemble, Stage::Cleanup] {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
        assert_eq!(Stage::parse("other"), None);
        let l = labels("orders", Stage::Plan);
        assert_eq!(l[STAGE_LABEL], "plan");
        assert_eq!(l[REPORTJOB_LABEL], "orders");
    }
}
