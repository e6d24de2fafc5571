//! The ReportDatabases' status (`kubectl get reportdatabases`: IN USE, LIMIT, WAITING,
//! THROTTLED) and metrics: computed from the ReportJobs that name each one and their chunks
//! Jobs ([`usage`], pure), written every few seconds when it changed ([`run`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::Context;
use super::super::budget::claim;
use super::super::metrics::{DatabaseLabel, DatabaseNamespaceLabel};
use super::super::names::{self, Stage};
use reportjob_core::api::conditions::{self, reason};
use reportjob_core::api::{Consistency, Phase, ReportJob};
use reportjob_core::database::{NamespaceUsage, ReportDatabase, ReportDatabaseStatus};

/// How often the status is computed.
const EVERY: Duration = Duration::from_secs(2);

/// Most namespaces listed in a status.
const MAX_NAMESPACES: usize = 100;

/// One run that names the database, as its status counts it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunUse {
    /// Its namespace.
    pub namespace: String,
    /// The chunk pods its chunks Job may run.
    pub chunks: u32,
    /// It waits for the database (its `Queued` condition says so).
    pub waiting: bool,
    /// A Snapshot run holding its session.
    pub snapshot: bool,
    /// Why a chunk worker found the database too busy (its `Throttled` condition).
    pub throttled: Option<String>,
}

/// The status the runs add up to (without its time and generation).
pub fn usage(runs: &[RunUse]) -> ReportDatabaseStatus {
    let mut per_ns: BTreeMap<&str, NamespaceUsage> = BTreeMap::new();
    for run in runs {
        let entry = per_ns
            .entry(run.namespace.as_str())
            .or_insert_with(|| NamespaceUsage {
                namespace: run.namespace.clone(),
                ..Default::default()
            });
        entry.in_use = entry.in_use.saturating_add(to_i32(run.chunks));
        entry.waiting = entry.waiting.saturating_add(i32::from(run.waiting));
    }
    let mut namespaces: Vec<NamespaceUsage> = per_ns
        .into_values()
        .filter(|n| n.in_use > 0 || n.waiting > 0)
        .collect();
    namespaces.sort_by(|a, b| b.in_use.cmp(&a.in_use).then(a.namespace.cmp(&b.namespace)));
    namespaces.truncate(MAX_NAMESPACES);
    let throttled = runs.iter().find_map(|r| r.throttled.clone());
    ReportDatabaseStatus {
        in_use: to_i32(runs.iter().map(|r| r.chunks).sum()),
        waiting: to_i32(runs.iter().filter(|r| r.waiting).count() as u32),
        snapshots_in_use: to_i32(runs.iter().filter(|r| r.snapshot).count() as u32),
        throttled: throttled.is_some(),
        message: throttled.unwrap_or_default(),
        namespaces,
        last_update_time: None,
        observed_generation: None,
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A ReportJob's use of its database, from its status and its chunks Job's `charge`.
pub fn run_use(rj: &ReportJob, chunks: u32) -> RunUse {
    let status = rj.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let finished = status.phase.is_some_and(Phase::is_terminal);
    // A finished run waits for nothing, whatever condition its status still holds.
    let waiting = !finished
        && condition(conditions::QUEUED).is_some_and(|c| {
            [
                reason::DATABASE_BUDGET,
                reason::DATABASE_SNAPSHOTS,
                reason::DATABASE_UNAVAILABLE,
            ]
            .contains(&c.reason.as_str())
        });
    let snapshot = rj.spec.source.consistency == Consistency::Snapshot
        && status.start_time.is_some()
        && !finished
        && status.phase != Some(Phase::Suspended);
    RunUse {
        namespace: rj.namespace().unwrap_or_default(),
        chunks,
        waiting,
        snapshot,
        throttled: condition(conditions::THROTTLED).map(|c| c.message.clone()),
    }
}

/// Writes each ReportDatabase's status every [`EVERY`] when it changed, and sets the
/// database gauges; runs until aborted.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(EVERY).await;
        for db in ctx.databases.all() {
            // A database none of the watched ReportJobs names is another controller's to
            // count (or nobody's): its status is left as it is.
            let Some(status) = status_of(&ctx, &db) else {
                continue;
            };
            publish_metrics(&ctx, &db, &status);
            let mut old = db.status.clone().unwrap_or_default();
            old.last_update_time = None;
            if old == status {
                continue;
            }
            if let Err(e) = write(&ctx, &db, status).await {
                tracing::warn!(database = %db.name_any(), error = %e, "cannot write the ReportDatabase's status");
            }
        }
    }
}

fn status_of(ctx: &Context, db: &ReportDatabase) -> Option<ReportDatabaseStatus> {
    let name = db.name_any();
    let members: Vec<Arc<ReportJob>> = ctx
        .gate
        .all_reportjobs()
        .into_iter()
        .filter(|r| r.spec.source.database.as_ref().map(|d| d.name.as_str()) == Some(&name))
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut charges: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut namespaces: Vec<String> = members
        .iter()
        .map(|r| r.namespace().unwrap_or_default())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        for (owner, seen) in ctx.jobs.stage_jobs_in(&ns, Stage::Chunks) {
            charges.insert((ns.clone(), owner), claim(&seen).0);
        }
    }
    let runs: Vec<RunUse> = members
        .iter()
        .map(|r| {
            let key = (r.namespace().unwrap_or_default(), r.name_any());
            run_use(r, charges.get(&key).copied().unwrap_or(0))
        })
        .collect();
    let mut status = usage(&runs);
    status.observed_generation = db.metadata.generation;
    Some(status)
}

fn publish_metrics(ctx: &Context, db: &ReportDatabase, status: &ReportDatabaseStatus) {
    let gauges = &ctx.metrics.databases;
    let label = DatabaseLabel {
        database: db.name_any(),
    };
    gauges
        .chunks_in_use
        .get_or_create(&label)
        .set(i64::from(status.in_use));
    gauges
        .chunk_limit
        .get_or_create(&label)
        .set(i64::from(db.spec.max_concurrent_chunks));
    gauges
        .runs_waiting
        .get_or_create(&label)
        .set(i64::from(status.waiting));
    gauges
        .snapshots_in_use
        .get_or_create(&label)
        .set(i64::from(status.snapshots_in_use));
    gauges
        .throttled
        .get_or_create(&label)
        .set(i64::from(status.throttled));
    for ns in &status.namespaces {
        let label = DatabaseNamespaceLabel {
            database: db.name_any(),
            report_namespace: ns.namespace.clone(),
        };
        gauges
            .namespace_chunks_in_use
            .get_or_create(&label)
            .set(i64::from(ns.in_use));
        gauges
            .namespace_runs_waiting
            .get_or_create(&label)
            .set(i64::from(ns.waiting));
    }
}

async fn write(
    ctx: &Context,
    db: &ReportDatabase,
    mut status: ReportDatabaseStatus,
) -> Result<(), kube::Error> {
    status.last_update_time = Some(Time(jiff::Timestamp::now()));
    let api: Api<ReportDatabase> = Api::all(ctx.client.clone());
    let body = json!({
        "apiVersion": ReportDatabase::api_version(&()),
        "kind": ReportDatabase::kind(&()),
        "status": status,
    });
    api.patch_status(
        &db.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ns: &str, chunks: u32, waiting: bool, snapshot: bool) -> RunUse {
        RunUse {
            namespace: ns.into(),
            chunks,
            waiting,
            snapshot,
            throttled: None,
        }
    }

    #[test]
    fn a_finished_run_waits_for_nothing_whatever_its_conditions_still_say() {
        let mut rj = reportjob_core::api::load::load_str(
            r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {name: orders, namespace: a}
spec:
  source:
    connectionSecretRef: {name: db, key: url}
    table: public.orders
    keyColumn: id
    database: {name: orders}
  output:
    destination:
      pvc: {claimName: reports, path: orders.csv}
"#,
            "test",
        )
        .expect("valid spec");
        let queued = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: conditions::QUEUED.into(),
            status: "True".into(),
            reason: reason::DATABASE_BUDGET.into(),
            message: "waiting for database orders".into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let mut status = reportjob_core::api::ReportJobStatus {
            phase: Some(Phase::Running),
            conditions: vec![queued],
            ..Default::default()
        };
        rj.status = Some(status.clone());
        assert!(run_use(&rj, 0).waiting, "a running run waiting for pods");
        for phase in [Phase::Succeeded, Phase::Failed] {
            status.phase = Some(phase);
            rj.status = Some(status.clone());
            assert!(!run_use(&rj, 0).waiting, "{phase:?}");
        }
    }

    #[test]
    fn the_status_adds_up_the_runs_per_namespace() {
        let mut runs = vec![
            run("a", 2, false, true),
            run("a", 1, false, false),
            run("b", 1, false, true),
            run("c", 0, true, false),
            run("d", 0, false, false),
        ];
        let status = usage(&runs);
        assert_eq!(
            (
                status.in_use,
                status.waiting,
                status.snapshots_in_use,
                status.throttled
            ),
            (4, 1, 2, false)
        );
        let listed: Vec<(&str, i32, i32)> = status
            .namespaces
            .iter()
            .map(|n| (n.namespace.as_str(), n.in_use, n.waiting))
            .collect();
        // Most pods first; a namespace neither using nor waiting is left out.
        assert_eq!(listed, vec![("a", 3, 0), ("b", 1, 0), ("c", 0, 1)]);
        runs[1].throttled = Some("database busy: 9 active sessions".into());
        let status = usage(&runs);
        assert!(status.throttled);
        assert_eq!(status.message, "database busy: 9 active sessions");
    }
}
