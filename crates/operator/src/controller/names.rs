//! Names, labels and annotations of everything the controller creates, in one place.

use std::collections::BTreeMap;

use sha2::Digest;

use reportjob_core::api::{ReportJob, ReportJobSpec, RunIdentity};
pub use reportjob_core::names::{
    MANAGED_BY, MANAGED_BY_LABEL, MAX_LABEL, MAX_REPORTJOB_NAME, MAX_SCHEDULE_NAME,
    REPORTJOB_LABEL, STAGE_LABEL, check_reportjob_name,
};

/// The finalizer that holds a deleted ReportJob until its staging data is removed.
pub const FINALIZER: &str = "reporting.dev/cleanup";
/// Set to a new value to re-run the failed stage (only the failed chunks) of a failed ReportJob.
pub const RETRY_ANNOTATION: &str = "reporting.dev/retry";
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

/// Hash of the spec fields frozen once planning starts (everything but `suspend`,
/// `ttlSecondsAfterFinished` and `notify`), to notice and report changes after planning.
/// This is a different question from [`RunIdentity`]'s (which staged data a run may
/// resume: only what shapes the output), so it covers `worker` and `parallelism` too:
/// the run goes on exactly as planned, and a change to them is reported as ignored.
pub fn spec_hash(spec: &ReportJobSpec) -> String {
    let mut frozen = serde_json::json!({
        "source": spec.source,
        "chunking": spec.chunking,
        "output": spec.output,
        "worker": spec.worker,
    });
    // Fields added after the first release are left out while they hold their defaults, so
    // the hash of a spec that does not use them is what an older controller computed (a run
    // in flight across an upgrade is not taken for an edited one).
    let later = [
        (
            "source",
            "consistency",
            serde_json::json!(reportjob_core::api::Consistency::default()),
        ),
        (
            "source",
            "snapshotMaxSeconds",
            serde_json::json!(reportjob_core::api::spec::default_snapshot_max_seconds()),
        ),
        (
            "output",
            "timeZone",
            serde_json::json!(reportjob_core::api::spec::default_time_zone()),
        ),
        (
            "worker",
            "snapshotRestarts",
            serde_json::json!(reportjob_core::api::spec::default_snapshot_restarts()),
        ),
    ];
    for (part, field, default) in later {
        if let Some(map) = frozen[part].as_object_mut()
            && map.get(field) == Some(&default)
        {
            map.remove(field);
        }
    }
    // Fields added inside an older block (`output.csv`), likewise.
    let later_nested = [
        ("output", "csv", "bom", serde_json::json!(false)),
        (
            "output",
            "csv",
            "lineEnding",
            serde_json::json!(reportjob_core::api::LineEnding::default()),
        ),
    ];
    for (part, block, field, default) in later_nested {
        if let Some(map) = frozen[part][block].as_object_mut()
            && map.get(field) == Some(&default)
        {
            map.remove(field);
        }
    }
    let digest = sha2::Sha256::digest(frozen.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_a_spec_that_uses_no_new_field_ignores_their_defaults() {
        let rj = reportjob_core::api::load::load_str(reportjob_core::api::test_specs::MINIMAL, "t")
            .unwrap();
        let mut explicit = rj.spec.clone();
        explicit.source.consistency = reportjob_core::api::Consistency::Snapshot;
        assert_eq!(spec_hash(&rj.spec), spec_hash(&explicit));
        // What a controller without these fields hashed: the spec's JSON without them.
        let mut old = serde_json::json!({
            "source": rj.spec.source,
            "chunking": rj.spec.chunking,
            "output": rj.spec.output,
            "worker": rj.spec.worker,
        });
        for (part, field) in [
            ("source", "consistency"),
            ("source", "snapshotMaxSeconds"),
            ("output", "timeZone"),
            ("worker", "snapshotRestarts"),
        ] {
            assert!(
                old[part].as_object_mut().unwrap().remove(field).is_some(),
                "{field}"
            );
        }
        for field in ["bom", "lineEnding"] {
            assert!(
                old["output"]["csv"]
                    .as_object_mut()
                    .unwrap()
                    .remove(field)
                    .is_some(),
                "{field}"
            );
        }
        // `output.jsonl` is absent unless set: not in the JSON at all.
        assert!(old["output"].get("jsonl").is_none());
        // No other field joined the JSON of a spec that does not use it: a new field must
        // be left out at its default (here or by its serialization), else every ReportJob
        // in flight across an upgrade would be taken for an edited one.
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        };
        let frozen = serde_json::json!({
            "source": keys(&old["source"]),
            "chunking": keys(&old["chunking"]),
            "output": keys(&old["output"]),
            "csv": keys(&old["output"]["csv"]),
            "worker": keys(&old["worker"]),
        });
        assert_eq!(
            frozen,
            serde_json::json!({
                "source": "connectionSecretRef,keyColumn,statementTimeoutSeconds,table",
                "chunking": "chunkSize,maxChunks,parallelism",
                "output": "compression,csv,deleteWithReportJob,destination,format",
                "csv": "delimiter,header,nullString",
                "worker": "retriesPerChunk,sameNode",
            }),
            "the fields of the first release, and no other"
        );
        let digest = sha2::Sha256::digest(old.to_string().as_bytes());
        assert_eq!(spec_hash(&rj.spec), hex::encode(&digest[..8]));
        // A value other than the default still counts.
        let mut per_chunk = rj.spec.clone();
        per_chunk.source.consistency = reportjob_core::api::Consistency::PerChunk;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&per_chunk));
        let mut bom = rj.spec.clone();
        bom.output.csv.bom = true;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&bom));
        let mut crlf = rj.spec.clone();
        crlf.output.csv.line_ending = reportjob_core::api::LineEnding::Crlf;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&crlf));
    }

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
