//! ReportDatabase budgets on the real control plane: chunk pods shared by the ReportJobs of
//! three namespaces (sampled: never above the budget, also across a controller restart; the
//! namespaces served side by side), a
//! namespace the database does not select refused, Snapshot runs capped by `maxSnapshots`, a
//! missing database waited for, and a busy database (sessions held active) throttling new
//! chunks until it is quiet. Every report is loaded back and compared with its source.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::TestDb;
use common::testbed::{Env, report};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use reportjob::api::{Phase, ReportJob};
use reportjob::database::ReportDatabase;
use serde_json::{Value, json};

/// The ceiling of a whole budgeted batch (every run of it waits its turn).
const BATCH: Duration = Duration::from_secs(3 * 180);

/// Applies the cluster-scoped ReportDatabase `name`; deletes it when dropped.
struct Database {
    name: String,
    kubeconfig: std::path::PathBuf,
}

impl Database {
    async fn apply(env: &Env, name: &str, spec: Value) -> Database {
        let api: Api<ReportDatabase> = Api::all(env.client.clone());
        let body = json!({
            "apiVersion": "reporting.dev/v1alpha1",
            "kind": "ReportDatabase",
            "metadata": {"name": name},
            "spec": spec,
        });
        api.patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap();
        Database {
            name: name.to_string(),
            kubeconfig: env.kubeconfig.clone(),
        }
    }

    async fn status(&self, env: &Env) -> reportjob::database::ReportDatabaseStatus {
        let api: Api<ReportDatabase> = Api::all(env.client.clone());
        api.get(&self.name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "reportdatabase", &self.name, "--ignore-not-found"])
            .output();
    }
}

fn phase(rj: &ReportJob) -> Option<Phase> {
    rj.status.as_ref().and_then(|s| s.phase)
}

fn condition<'a>(
    rj: &'a ReportJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    rj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Chunk pods of `ns` that are not done: created by an admitted grant, running or about to.
async fn live_chunk_pods(env: &Env, ns: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels("reporting.dev/stage=chunks"))
        .await
        .unwrap();
    listed
        .items
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_namespaces_share_a_databases_chunk_budget_fairly_and_never_exceed_it() {
    let mut db = TestDb::new("rdb_fair").await;
    db.numbers(2_000).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let namespaces = [
        env.tenant("rdb-a").await,
        env.tenant("rdb-b").await,
        env.tenant("rdb-c").await,
    ];
    let outsider = env.tenant("rdb-x").await;
    let tag = namespaces[0];
    for ns in namespaces {
        let labelled = env.kubectl(&[
            "label",
            "namespace",
            ns,
            &format!("reportjob-test-db={tag}"),
        ]);
        assert!(labelled.status.success(), "{labelled:?}");
    }
    let name = format!("orders-{tag}");
    let database = Database::apply(
        &env,
        &name,
        json!({
            "namespaceSelector": {"matchLabels": {"reportjob-test-db": tag}},
            "maxConcurrentChunks": 4,
        }),
    )
    .await;
    env.start_controller(&[]);
    // Five runs per namespace, applied namespace by namespace (a's first): each wants 2 chunk
    // pods for 4 chunks, 30 pods asked of a budget of 4.
    let runs: Vec<(&str, String)> = namespaces
        .iter()
        .flat_map(|ns| (0..5).map(move |i| (*ns, format!("r{i}"))))
        .collect();
    for (ns, run) in &runs {
        let spec = report(run, &table, &format!("{run}.csv"))
            .database(&name)
            .consistency("PerChunk")
            .chunk_size(500)
            .parallelism(2);
        env.apply(ns, &spec.build_yaml()).await;
    }
    env.apply(
        outsider,
        &report("r0", &table, "r0.csv")
            .database(&name)
            .consistency("PerChunk")
            .build_yaml(),
    )
    .await;

    // Sampled until every run is done: the live chunk pods of the three namespaces, when
    // each run finished (by sample), and what a waiting run and the database say.
    let mut most_pods = 0;
    let mut most_in_use = 0;
    let mut finished_at: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut waiting_message = None;
    let mut database_waiting = 0;
    let deadline = Instant::now() + BATCH;
    let mut sample = 0usize;
    let mut restarted = false;
    while finished_at.len() < runs.len() {
        // Midway, the controller is killed and another starts: the budget is read from the
        // Jobs that exist, not remembered, so the new one keeps it.
        if !restarted && finished_at.len() >= 3 {
            env.kill_controller(0);
            env.start_controller(&[]);
            restarted = true;
        }
        assert!(
            Instant::now() < deadline,
            "the runs did not all finish: done {finished_at:?}\n{}",
            env.controller_log(usize::from(restarted))
        );
        sample += 1;
        let mut pods = 0;
        for ns in namespaces {
            pods += live_chunk_pods(&env, ns).await;
            for rj in env.rjs(ns).list(&ListParams::default()).await.unwrap() {
                let key = (ns.to_string(), rj.metadata.name.clone().unwrap());
                match phase(&rj) {
                    Some(Phase::Succeeded) => {
                        finished_at.entry(key).or_insert(sample);
                    }
                    Some(Phase::Failed) => panic!("{key:?} failed: {:?}", rj.status),
                    _ => {}
                }
                let message = rj.status.as_ref().and_then(|s| s.message.clone());
                if let Some(m) = message.filter(|m| m.starts_with("waiting for database")) {
                    waiting_message = Some(m);
                }
            }
        }
        most_pods = most_pods.max(pods);
        let status = database.status(&env).await;
        most_in_use = most_in_use.max(status.in_use);
        database_waiting = database_waiting.max(status.waiting);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "budget 4: at most {most_pods} chunk pods live, status inUse at most {most_in_use}, \
         {database_waiting} runs waiting at most; finished at samples {finished_at:?}"
    );
    assert!(most_pods <= 4, "{most_pods} chunk pods ran at once");
    assert!(most_pods >= 2, "the budget was used: {most_pods}");
    assert!(most_in_use <= 4, "status inUse {most_in_use}");
    assert!(database_waiting > 0, "the database counted waiting runs");
    let message = waiting_message.expect("a waiting run says so");
    assert!(
        message.starts_with(&format!("waiting for database {name}: "))
            && message.contains("/4 chunks in use")
            && message.contains("runs ahead"),
        "{message}"
    );
    // Side by side: every namespace finishes a run before any other finishes all of its.
    for x in namespaces {
        for y in namespaces.iter().filter(|y| **y != x) {
            let first_x = finished_at
                .iter()
                .filter(|((ns, _), _)| ns == x)
                .map(|(_, s)| *s)
                .min()
                .unwrap();
            let last_y = finished_at
                .iter()
                .filter(|((ns, _), _)| ns == y)
                .map(|(_, s)| *s)
                .max()
                .unwrap();
            assert!(
                first_x <= last_y,
                "{x} finished its first run after {y} finished all of its: {finished_at:?}"
            );
        }
    }
    for (ns, run) in &runs {
        db.assert_report_matches(
            &env.pvc_dir(ns).join(format!("{run}.csv")),
            &db.all("src"),
            "",
            false,
        )
        .await;
    }
    // The namespace the database does not select: refused before it starts.
    let refused = env
        .wait_phase(outsider, "r0", Phase::Failed, common::PATIENCE)
        .await;
    let message = refused.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "spec.source.database.name: ReportDatabase {name} does not select namespace {outsider}"
        )),
        "{message}"
    );
    // Once done, nothing is in use and `kubectl get reportdatabases` shows the columns.
    let mut last = None;
    let settled = common::poll(common::PATIENCE, async || {
        let status = database.status(&env).await;
        let done = status.in_use == 0 && status.waiting == 0;
        last = Some(status);
        done.then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "the database's status still shows use after every run finished: {last:?}\n{}",
        env.controller_log(1)
    );
    let listed = env.kubectl(&["get", "reportdatabases", &name]);
    let text = common::stdout(&listed);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "IN", "USE", "LIMIT", "WAITING", "THROTTLED", "AGE"],
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], [name.as_str(), "0", "4", "0", "false"], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_runs_of_a_database_hold_at_most_max_snapshots_sessions() {
    let mut db = TestDb::new("rdb_snap").await;
    db.numbers(1_500).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let ns = env.tenant("rdb-s").await;
    let name = format!("snapshots-{ns}");
    let _database = Database::apply(
        &env,
        &name,
        json!({"namespaceSelector": {}, "maxConcurrentChunks": 6, "maxSnapshots": 1}),
    )
    .await;
    env.start_controller(&[]);
    let runs = ["s0", "s1", "s2"];
    for run in runs {
        let spec = report(run, &table, &format!("{run}.csv"))
            .database(&name)
            .consistency("Snapshot")
            .chunk_size(500)
            .parallelism(2);
        env.apply(ns, &spec.build_yaml()).await;
    }
    // Runs holding a snapshot: started, not ended. Sampled until all are done.
    let mut most_holding = 0;
    let mut queued_message = None;
    let deadline = Instant::now() + BATCH;
    loop {
        assert!(Instant::now() < deadline, "{}", env.controller_log(0));
        let rjs = env
            .rjs(ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let holding = rjs
            .iter()
            .filter(|rj| {
                rj.status.as_ref().is_some_and(|s| s.start_time.is_some())
                    && !phase(rj).is_some_and(Phase::is_terminal)
            })
            .count();
        most_holding = most_holding.max(holding);
        for rj in &rjs {
            if let Some(c) = condition(rj, "Queued").filter(|c| c.status == "True")
                && c.reason == "DatabaseSnapshotsInUse"
            {
                queued_message = Some(c.message.clone());
            }
            if phase(rj) == Some(Phase::Failed) {
                panic!("{:?} failed: {:?}", rj.metadata.name, rj.status);
            }
        }
        if rjs
            .iter()
            .filter(|rj| phase(rj) == Some(Phase::Succeeded))
            .count()
            == runs.len()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most_holding, 1, "runs holding a snapshot at once");
    let message = queued_message.expect("a run waited for a snapshot slot");
    assert!(
        message.contains(&format!(
            "waiting for database {name}: 1/1 snapshot sessions in use"
        )),
        "{message}"
    );
    for run in runs {
        db.assert_report_matches(
            &env.pvc_dir(ns).join(format!("{run}.csv")),
            &db.all("src"),
            "",
            false,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_database_throttles_new_chunks_until_it_is_quiet_and_a_missing_one_is_waited_for() {
    let mut db = TestDb::new("rdb_busy").await;
    db.numbers(1_000).await;
    let table = db.table("src");
    let mut env = Env::start().await;
    let ns = env.tenant("rdb-t").await;
    let name = format!("busy-{ns}");
    env.start_controller(&[]);
    let spec = report("r", &table, "r.csv")
        .database(&name)
        .consistency("PerChunk")
        .chunk_size(500)
        .parallelism(2);
    env.apply(ns, &spec.build_yaml()).await;
    // Named before the platform team created it: the run waits and says why.
    let waiting = env
        .wait_for(
            ns,
            "r",
            common::PATIENCE,
            "waiting for its database",
            |rj| {
                condition(rj, "Queued")
                    .is_some_and(|c| c.status == "True" && c.reason == "DatabaseUnavailable")
            },
        )
        .await;
    assert!(
        waiting
            .status
            .unwrap()
            .message
            .unwrap_or_default()
            .contains(&format!("ReportDatabase {name} does not exist")),
    );
    // The database gets busy: twelve sessions held active, above the throttle's eight.
    let marker = format!("reportjob_sleeper_{}", ns.replace('-', "_"));
    let sleepers: Vec<_> = (0..12)
        .map(|_| {
            let sql = format!("SELECT pg_sleep(600) AS {marker}");
            tokio::spawn(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&common::database_url())
                    .await
                    .unwrap();
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
            })
        })
        .collect();
    let active = format!(
        "SELECT count(*)::bigint FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    common::eventually("twelve sleeping sessions", async || {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&common::database_url())
            .await
            .ok()?;
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(active.clone()))
            .fetch_one(&mut conn)
            .await
            .ok()?;
        (n == 12).then_some(())
    })
    .await;
    let database = Database::apply(
        &env,
        &name,
        json!({
            "namespaceSelector": {},
            "maxConcurrentChunks": 4,
            "throttle": {"maxActiveSessions": 8},
        }),
    )
    .await;
    let throttled = env
        .wait_for(ns, "r", common::PATIENCE, "throttled", |rj| {
            condition(rj, "Throttled").is_some_and(|c| c.status == "True")
        })
        .await;
    let why = condition(&throttled, "Throttled").unwrap().message.clone();
    assert!(
        why.contains(&format!(
            "throttled by ReportDatabase {name}: database busy: "
        )) && why.contains("more than maxActiveSessions 8"),
        "{why}"
    );
    // No chunk started while the database was busy.
    let chunks = throttled.status.as_ref().and_then(|s| s.chunks.clone());
    assert_eq!(chunks.map(|c| c.succeeded), Some(0));
    common::eventually("the database's status to say throttled", async || {
        database.status(&env).await.throttled.then_some(())
    })
    .await;
    // Quiet again: the run goes on and its report is exact.
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    ))
    .await;
    for sleeper in sleepers {
        sleeper.await.unwrap();
    }
    let done = env.wait_phase(ns, "r", Phase::Succeeded, BATCH).await;
    assert_eq!(
        condition(&done, "Throttled").map(|c| c.status.as_str()),
        Some("False")
    );
    db.assert_report_matches(&env.pvc_dir(ns).join("r.csv"), &db.all("src"), "", false)
        .await;
}
