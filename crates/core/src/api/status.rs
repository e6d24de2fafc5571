//! The ReportJob status: phase, conditions, chunk progress and the output.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of a ReportJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportJobStatus {
    /// Where the ReportJob is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Planned`, `Complete`, `Failed`, `Suspended` and others, as `metav1.Condition`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The plan the chunks are exported against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// Chunk counts from the chunk Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkCounts>,
    /// `succeeded/total` chunks, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Indexes of chunks exported so far, as compact ranges (`0-36,40`); a retry re-runs
    /// only the chunks not listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_chunks: Option<String>,
    /// How many times the export started again under a new database snapshot after the
    /// run's snapshot was lost (`consistency: Snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_restarts: Option<i64>,
    /// The generation of the snapshot the run reads now: one more for every new snapshot
    /// after the first (a restart after a loss, or a retry of a failed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_generation: Option<i64>,
    /// The last `reporting.dev/retry` annotation value the controller acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
    /// Indexes of chunks that failed after their retries, as compact ranges (`7,19-21`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_chunks: Option<String>,
    /// Rows exported so far: the sum of the chunks done while exporting, the report's rows
    /// once it is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Bytes of the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// When the ReportJob started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the ReportJob finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The assembled report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputStatus>,
    /// A human-readable summary of the current state or of the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phase of a ReportJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing started yet.
    Pending,
    /// The plan Job is running.
    Planning,
    /// Chunks are being exported.
    Running,
    /// The assemble Job is writing the report.
    Assembling,
    /// The report is complete.
    Succeeded,
    /// The ReportJob failed; see `message` and the `Failed` condition.
    Failed,
    /// `spec.suspend` is set.
    Suspended,
    /// Ended for good by `reportjob cancel` (the `reporting.dev/cancel` annotation): its
    /// pods stopped, its snapshot released, its staging data removed; kept for the record.
    Cancelled,
}

impl Phase {
    /// The phase's name as it appears in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Planning => "Planning",
            Phase::Running => "Running",
            Phase::Assembling => "Assembling",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Suspended => "Suspended",
            Phase::Cancelled => "Cancelled",
        }
    }

    /// Succeeded, Failed and Cancelled are terminal: the run does not go on by itself.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// The plan of a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// Identifier of the run; staging data lives under `<output>.parts/<runId>/`.
    pub run_id: String,
    /// sha256 of the plan, checked by every chunk worker.
    pub digest: String,
    /// Number of chunks in the plan.
    pub chunks: i64,
    /// Hash of the spec fields the plan was made for (source, chunking, output, worker);
    /// changes to them after planning started are ignored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
}

/// Chunk counts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkCounts {
    /// Chunks in the plan.
    pub total: i64,
    /// Chunks exported.
    pub succeeded: i64,
    /// Chunks failed after their retries.
    pub failed: i64,
    /// Chunks being exported now.
    pub active: i64,
}

/// The assembled report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatus {
    /// Path on the volume or object URL of the report.
    pub location: String,
    /// A signed download link (bucket destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the download link expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<Time>,
    /// Data rows in the report (the header is not counted).
    pub rows: i64,
    /// Size of the report in bytes.
    pub bytes: i64,
    /// sha256 of the report's bytes, hex.
    pub sha256: String,
    /// The database snapshot the report shows (`consistency: Snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<OutputSnapshot>,
    /// How many files a split report (`spec.output.split`) has. `location`, `url` and
    /// `sha256` are then its manifest's, which lists every file with its own link, and
    /// `rows` and `bytes` are totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<i64>,
    /// The first files of a split report (at most about 30, as many as a pod's
    /// termination message carries), in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<OutputFileStatus>,
}

/// One file of a split report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileStatus {
    /// Path on the volume or object URL of the file.
    pub location: String,
    /// Data rows in the file.
    pub rows: i64,
    /// Size of the file in bytes.
    pub bytes: i64,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
}

/// The moment of the database a report shows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSnapshot {
    /// The exported snapshot's identifier.
    pub id: String,
    /// When it was taken.
    pub taken_at: Time,
}
