//! One snapshot per run, against the real Postgres: while the report is exported, a writer
//! keeps moving amounts between rows whose keys lie in different chunks (the total over the
//! table never changes). Under `Snapshot` the report's total is the invariant and every key
//! appears once; under `PerChunk` how often it is not is printed. The snapshot's holder
//! killed mid-run: the export starts again under a new snapshot, or fails as `snapshot_lost`
//! when no restart is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::common;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, database_url, run_json, stderr};

const ACCOUNTS: i64 = 2000;
const START: i64 = 1000;
const INVARIANT: i64 = ACCOUNTS * START;

async fn accounts(db: &mut TestDb) {
    db.exec(&format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, amount bigint NOT NULL);
         INSERT INTO accounts SELECT g, {START} FROM generate_series(1, {ACCOUNTS}) AS g;"
    ))
    .await;
}

/// Moves amounts from a key in the lower half to one in the upper half (different chunks),
/// one transaction per move, until `stop`; counts the moves.
fn writer(
    table: String,
    stop: Arc<AtomicBool>,
    moves: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn = PgConnection::connect(&database_url()).await.unwrap();
        let sql = format!(
            "UPDATE {table} SET amount = amount + CASE WHEN id = $1 THEN -$3 ELSE $3 END WHERE id IN ($1, $2)"
        );
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let from = 1 + (i * 7919) % (ACCOUNTS / 2);
            let to = ACCOUNTS / 2 + 1 + (i * 104_729) % (ACCOUNTS / 2);
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(from as i32)
                .bind(to as i32)
                .bind(1 + i % 50)
                .execute(&mut conn)
                .await
                .unwrap();
            moves.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// The report's total and whether every key 1..=ACCOUNTS appears exactly once.
fn total_and_keys(csv: &str) -> (i64, bool) {
    let mut seen = vec![0u32; ACCOUNTS as usize + 1];
    let mut total = 0;
    for line in csv.lines().skip(1) {
        let (id, amount) = line.split_once(',').unwrap();
        seen[id.parse::<usize>().unwrap()] += 1;
        total += amount.parse::<i64>().unwrap();
    }
    (total, seen[1..].iter().all(|&n| n == 1))
}

fn spec(db: &TestDb, consistency: &str, restarts: i64) -> String {
    SpecBuilder::table(&db.table("accounts"))
        .key("id")
        .filter(&common::slow_filter(&db.schema, 0.0005))
        .chunk_size(100)
        .parallelism(2)
        .set("spec.source.consistency", consistency)
        .set("spec.worker.snapshotRestarts", restarts)
        .pvc("reports", "r.csv")
        .build_yaml()
}

/// Exports the accounts while the writer runs; returns the run's output, the report and
/// how many moves the writer made during the export.
async fn export_while_writing(db: &TestDb, yaml: String) -> (std::process::Output, String, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    let writing = writer(db.table("accounts"), stop.clone(), moves.clone());
    common::eventually("the writer to start", || {
        let n = moves.load(Ordering::Relaxed);
        async move { (n > 0).then_some(()) }
    })
    .await;
    let before = moves.load(Ordering::Relaxed);
    let (out, csv) = tokio::task::spawn_blocking(move || {
        let work = Workdir::new();
        let spec = work.spec("spec.yaml", &yaml);
        let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
        let csv = std::fs::read_to_string(work.output_dir().join("r.csv")).unwrap_or_default();
        (out, csv)
    })
    .await
    .unwrap();
    let during = moves.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    (out, csv, during)
}

#[tokio::test]
async fn one_snapshot_gives_the_invariant_total_and_every_key_once() {
    let mut db = TestDb::new("snap_total").await;
    accounts(&mut db).await;
    for _ in 0..2 {
        let (out, csv, moves) = export_while_writing(&db, spec(&db, "Snapshot", 2)).await;
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        let result = run_json(&out);
        assert_eq!(result["rows"], ACCOUNTS);
        assert!(
            result["chunks"]["total"].as_u64().unwrap() >= 15,
            "{result}"
        );
        assert!(
            moves > 20,
            "the export spans many writer transactions ({moves})"
        );
        let snapshot = &result["snapshot"];
        assert!(snapshot["id"].as_str().unwrap().contains('-'), "{result}");
        assert!(
            snapshot["taken_at"].as_str().unwrap().ends_with('Z'),
            "{result}"
        );
        let (total, keys_once) = total_and_keys(&csv);
        assert_eq!(
            total, INVARIANT,
            "the report's total over {moves} concurrent moves"
        );
        assert!(keys_once, "every key appears exactly once");
    }
    let now = db
        .checksum(&format!("SELECT sum(amount) FROM {}", db.table("accounts")))
        .await;
    assert_eq!(now.0, 1);

    let mut differing = 0;
    let runs = 3;
    for _ in 0..runs {
        let (out, csv, moves) = export_while_writing(&db, spec(&db, "PerChunk", 2)).await;
        assert!(out.status.success(), "run failed: {}", stderr(&out));
        assert!(run_json(&out)["snapshot"].is_null());
        let (total, keys_once) = total_and_keys(&csv);
        assert!(keys_once, "keys do not move between chunks in this test");
        if total != INVARIANT {
            differing += 1;
        }
        println!(
            "PerChunk: report total {total} (invariant {INVARIANT}, off by {}) over {moves} moves",
            total - INVARIANT
        );
    }
    println!("PerChunk: the total differed from the invariant in {differing} of {runs} runs");
}

/// Kills the snapshot holder of the run reading `schema` once one of its COPYs runs (the
/// COPY's session shares the holder's xmin: it imported the holder's snapshot).
fn kill_holder(schema: &str) -> tokio::task::JoinHandle<bool> {
    common::terminate_backend_found_by(format!(
        "SELECT h.pid FROM pg_stat_activity h
          WHERE h.application_name = 'reportjob snapshot holder'
            AND h.backend_xmin IN (
              SELECT c.backend_xmin FROM pg_stat_activity c
               WHERE c.state = 'active' AND c.query LIKE 'COPY%'
                 AND c.query LIKE '%{schema}%')
          LIMIT 1"
    ))
}

#[tokio::test]
async fn a_lost_snapshot_restarts_the_export_under_a_new_one() {
    let mut db = TestDb::new("snap_lost").await;
    accounts(&mut db).await;
    let killer = kill_holder(&db.schema);
    let (out, csv, _) = export_while_writing(&db, spec(&db, "Snapshot", 2)).await;
    assert!(killer.await.unwrap(), "the holder was killed");
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("starting the export again under a new snapshot (restart 1 of 2)"),
        "{}",
        stderr(&out)
    );
    let result = run_json(&out);
    assert_eq!(result["rows"], ACCOUNTS);
    let (total, keys_once) = total_and_keys(&csv);
    assert_eq!(total, INVARIANT);
    assert!(keys_once);

    let killer = kill_holder(&db.schema);
    let (out, csv, _) = export_while_writing(&db, spec(&db, "Snapshot", 0)).await;
    assert!(killer.await.unwrap(), "the holder was killed");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("snapshot_lost: the run's database snapshot"),
        "{}",
        stderr(&out)
    );
    assert!(csv.is_empty(), "no report mixing snapshots");
}

mod cluster {
    //! The same on the real control plane: the `<name>-snapshot` holder pod, the plan and chunk pods
    //! importing its snapshot, the holder killed mid-run.

    use super::*;
    use common::testbed::{Env, report, testbed};
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use kube::api::{Api, ListParams};
    use reportjob::api::Phase;

    const NAME: &str = "accounts";

    async fn setup(db_name: &str, prefix: &str) -> (TestDb, Env, &'static str) {
        let mut db = TestDb::new(db_name).await;
        accounts(&mut db).await;
        let mut env = Env::start().await;
        let ns = env.tenant(prefix).await;
        env.start_single_controller();
        (db, env, ns)
    }

    fn cluster_spec(db: &TestDb, restarts: i64) -> String {
        report(NAME, &db.table("accounts"), "accounts.csv")
            .filter(&common::slow_filter(&db.schema, 0.001))
            .chunk_size(200)
            .parallelism(2)
            .set("spec.worker.snapshotRestarts", restarts)
            .build_yaml()
    }

    async fn running_pod(env: &Env, ns: &str, stage: &str) -> Pod {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        let selector = format!("reporting.dev/stage={stage}");
        common::eventually(&format!("a running {stage} pod"), || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move {
                pods.list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            }
        })
        .await
    }

    /// Runs the ReportJob while the writer moves amounts; returns the finished ReportJob
    /// and the report's text (empty when there is none).
    async fn run_while_writing(
        env: &Env,
        db: &TestDb,
        ns: &str,
        yaml: String,
        kill_holder: bool,
        end: Phase,
    ) -> (reportjob::api::ReportJob, String) {
        let stop = Arc::new(AtomicBool::new(false));
        let moves = Arc::new(AtomicU64::new(0));
        let writing = writer(db.table("accounts"), stop.clone(), moves.clone());
        env.apply(ns, &yaml).await;
        if kill_holder {
            // Once chunks are being exported under it, the holder pod is killed.
            running_pod(env, ns, "chunks").await;
            let holder = running_pod(env, ns, "snapshot").await;
            testbed().agent().kill_pod(ns, &holder.name_any()).unwrap();
        }
        let done = env.wait_phase(ns, NAME, end, common::PATIENCE).await;
        stop.store(true, Ordering::Relaxed);
        writing.await.unwrap();
        assert!(
            moves.load(Ordering::Relaxed) > 20,
            "the writer ran during the export"
        );
        let csv = std::fs::read_to_string(env.pvc_dir(ns).join("accounts.csv")).unwrap_or_default();
        (done, csv)
    }

    async fn holder_released(env: &Env, ns: &str) {
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(env.client.clone(), ns);
        common::eventually("the snapshot holder Job to be deleted", || {
            let jobs = jobs.clone();
            async move {
                jobs.get_opt(&format!("{NAME}-snapshot"))
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_snapshot_across_pods_gives_the_exact_invariant() {
        let (db, env, ns) = setup("ksnap_total", "snap").await;
        let (done, csv) =
            run_while_writing(&env, &db, ns, cluster_spec(&db, 2), false, Phase::Succeeded).await;
        let status = done.status.unwrap();
        assert_eq!(status.rows, Some(ACCOUNTS));
        assert_eq!(status.snapshot_restarts, None);
        let (total, keys_once) = total_and_keys(&csv);
        assert_eq!(
            total, INVARIANT,
            "one moment of the database across all pods"
        );
        assert!(keys_once);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.pvc_dir(ns).join("accounts.csv.manifest.json")).unwrap(),
        )
        .unwrap();
        let recorded = status.output.unwrap().snapshot.unwrap();
        assert_eq!(
            manifest["snapshot"]["id"].as_str(),
            Some(recorded.id.as_str())
        );
        let taken: jiff::Timestamp = manifest["snapshot"]["taken_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The status keeps whole seconds (a Kubernetes Time).
        assert_eq!(taken.as_second(), recorded.taken_at.0.as_second());
        holder_released(&env, ns).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_holder_restarts_the_export_under_a_new_snapshot_then_fails_at_the_limit() {
        let (db, env, ns) = setup("ksnap_lost", "snaplost").await;
        let (done, csv) =
            run_while_writing(&env, &db, ns, cluster_spec(&db, 2), true, Phase::Succeeded).await;
        let status = done.status.unwrap();
        assert_eq!(status.snapshot_restarts, Some(1));
        assert_eq!(status.rows, Some(ACCOUNTS));
        let (total, keys_once) = total_and_keys(&csv);
        assert_eq!(total, INVARIANT, "no report mixes snapshots");
        assert!(keys_once);
        holder_released(&env, ns).await;

        let second = cluster_spec(&db, 0)
            .replace("name: accounts", "name: accounts2")
            .replace("accounts.csv", "accounts2.csv");
        let stop = Arc::new(AtomicBool::new(false));
        let moves = Arc::new(AtomicU64::new(0));
        let writing = writer(db.table("accounts"), stop.clone(), moves.clone());
        env.apply(ns, &second).await;
        running_pod(&env, ns, "chunks").await;
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        let holder = common::eventually("the second run's holder pod", || {
            let pods = pods.clone();
            async move {
                pods.list(
                    &ListParams::default()
                        .labels("reporting.dev/reportjob=accounts2,reporting.dev/stage=snapshot"),
                )
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            }
        })
        .await;
        testbed().agent().kill_pod(ns, &holder.name_any()).unwrap();
        let failed = env
            .wait_phase(ns, "accounts2", Phase::Failed, common::PATIENCE)
            .await;
        stop.store(true, Ordering::Relaxed);
        writing.await.unwrap();
        let status = failed.status.unwrap();
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(condition.reason, "SnapshotLost");
        assert!(
            condition
                .message
                .contains("worker.snapshotRestarts (0) restarts are used up"),
            "{}",
            condition.message
        );
        assert!(
            !env.pvc_dir(ns).join("accounts2.csv").exists(),
            "nothing published"
        );
    }
}
