//! The ReportDatabase resource: a database's shared budget, owned by the platform team.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A database many ReportJobs export from, and the budget they share: chunks exporting at
/// once, snapshot sessions held at once, fair between namespaces, paused while the database
/// is busy. Cluster-scoped: the platform team owns it; a ReportJob names it in
/// `spec.source.database`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[allow(clippy::duplicated_attributes)] // several printcolumn(type_ = "integer") entries
#[kube(
    group = "reporting.dev",
    version = "v1alpha1",
    kind = "ReportDatabase",
    status = "ReportDatabaseStatus",
    shortname = "rdb",
    category = "reports",
    doc = "A database many ReportJobs export from, and the budget they share: at most maxConcurrentChunks chunk pods exporting at once and maxSnapshots snapshot sessions held at once across every ReportJob that names it, dealt fairly between namespaces, and no new chunk while the database is busier than its throttle allows. Cluster-scoped, owned by the platform team; a ReportJob names it in spec.source.database.",
    printcolumn(
        name = "In Use",
        type_ = "integer",
        json_path = ".status.inUse",
        description = "Chunk pods its ReportJobs may run now"
    ),
    printcolumn(
        name = "Limit",
        type_ = "integer",
        json_path = ".spec.maxConcurrentChunks"
    ),
    printcolumn(
        name = "Waiting",
        type_ = "integer",
        json_path = ".status.waiting",
        description = "ReportJobs waiting for a chunk or snapshot slot"
    ),
    printcolumn(
        name = "Snapshots",
        type_ = "integer",
        json_path = ".status.snapshotsInUse",
        priority = 1
    ),
    printcolumn(
        name = "Throttled",
        type_ = "boolean",
        json_path = ".status.throttled",
        description = "A chunk worker found the database busier than spec.throttle allows"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReportDatabaseSpec {
    /// The namespaces whose ReportJobs may name this database. `{}` selects every
    /// namespace; a ReportJob in a namespace it does not select fails before it starts
    /// (`InvalidSpec`, naming the database) until the selector takes its namespace in.
    pub namespace_selector: LabelSelector,
    /// Chunk pods exporting at once, across every ReportJob that names this database (each
    /// holds one connection). Dealt fairly between the namespaces that wait, then between a
    /// namespace's runs, oldest first.
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent_chunks: i32,
    /// Runs with `consistency: Snapshot` holding their snapshot session at once, across every
    /// ReportJob that names this database; further ones wait in phase `Pending`. Default: no
    /// limit but `maxConcurrentChunks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_snapshots: Option<i32>,
    /// A namespace's weight in the fair sharing (default 1): a namespace of weight 2 gets
    /// twice the chunk pods of one of weight 1 while both wait.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 1000), extend("additionalProperties" = {"type": "integer", "minimum": 1, "maximum": 100}))]
    pub weights: BTreeMap<String, i32>,
    /// Thresholds on the database's own load: while one is exceeded, no new chunk starts
    /// (chunks exporting finish), and the ReportJobs say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSpec>,
}

/// Thresholds on the database's load, checked by each chunk worker before it exports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleSpec {
    /// Most sessions running a statement at once on the server (`pg_stat_activity` rows of
    /// client backends in state `active`, other than the check's own; reportjob's own
    /// exporting chunks count too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_active_sessions: Option<i32>,
    /// Most seconds a standby may lag behind its primary (`now() -
    /// pg_last_xact_replay_timestamp()`, read on the server the ReportJobs export from; a
    /// primary has no lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_replay_lag_seconds: Option<i32>,
}

/// What the controller last saw of the budget's use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportDatabaseStatus {
    /// Chunk pods the ReportJobs naming this database may run now.
    #[serde(default)]
    pub in_use: i32,
    /// ReportJobs waiting for a chunk pod or a snapshot slot.
    #[serde(default)]
    pub waiting: i32,
    /// Snapshot runs holding a session.
    #[serde(default)]
    pub snapshots_in_use: i32,
    /// Whether a chunk worker of a running ReportJob last found the database busier than
    /// `spec.throttle` allows.
    #[serde(default)]
    pub throttled: bool,
    /// Why it is throttled, or what is wrong with the spec.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Use per namespace (at most 100 namespaces, most chunk pods first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceUsage>,
    /// When this status was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One namespace's use of the budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceUsage {
    /// The namespace.
    pub namespace: String,
    /// Chunk pods its ReportJobs may run now.
    #[serde(default)]
    pub in_use: i32,
    /// Its ReportJobs waiting.
    #[serde(default)]
    pub waiting: i32,
}

impl ReportDatabaseSpec {
    /// The weight of `namespace` (1 unless set; at least 1).
    pub fn weight(&self, namespace: &str) -> u32 {
        self.weights
            .get(namespace)
            .and_then(|w| u32::try_from(*w).ok())
            .filter(|w| *w >= 1)
            .unwrap_or(1)
    }

    /// The chunk budget (at least 1).
    pub fn chunk_limit(&self) -> u32 {
        u32::try_from(self.max_concurrent_chunks)
            .unwrap_or(1)
            .max(1)
    }

    /// The snapshot cap, when there is one (at least 1).
    pub fn snapshot_limit(&self) -> Option<usize> {
        self.max_snapshots
            .map(|n| usize::try_from(n).unwrap_or(1).max(1))
    }
}
