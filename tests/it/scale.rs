//! Database connection pressure: the controller's cap on runs in flight
//! (`--max-concurrent-runs`) holds the ReportJobs beyond it in `Pending` (condition `Queued`)
//! and starts them in creation order, each completing exactly; suspended runs hold no slot,
//! so another namespace's run goes ahead, and resuming waits for a slot like a start; and a
//! stage whose connect is refused for want of a slot (SQLSTATE 53300, here a role's
//! `CONNECTION LIMIT`) waits for one instead of failing.

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use reportjob::api::{Phase, ReportJob};
use sqlx::{Connection, postgres::PgConnection};
use tokio::io::AsyncBufReadExt;

use crate::common::spec::SpecBuilder;
use crate::common::testbed::{Env, report};
use crate::common::{self, TestDb, Workdir};

async fn orders(db: &mut TestDb, rows: i64) -> String {
    db.exec(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2));
         INSERT INTO orders SELECT g, 'order \"' || g || E'\"\\n', g * 1.25
           FROM generate_series(1, {rows}) AS g;
         ANALYZE orders;"
    ))
    .await;
    db.table("orders")
}

/// What a watch of the namespace's ReportJobs saw over a whole run.
#[derive(Debug, Default)]
struct Seen {
    /// The most runs in flight (started, not finished) at any resourceVersion.
    most_in_flight: usize,
    /// The ReportJobs in the order their runs started.
    started: Vec<String>,
    /// The ReportJobs seen waiting with the condition `Queued`.
    queued: Vec<String>,
}

/// Watches the ReportJobs of `ns` until `total` of them finished, recording every state
/// (events come in resourceVersion order, so the count of runs in flight is exact at every
/// step, not sampled).
fn watch_runs(env: &Env, ns: &str, total: usize) -> tokio::task::JoinHandle<Seen> {
    let api: kube::Api<ReportJob> = env.rjs(ns);
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut in_flight: BTreeMap<String, bool> = BTreeMap::new();
        let mut finished: BTreeMap<String, bool> = BTreeMap::new();
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let Ok(rj) = event else { continue };
            let name = rj.metadata.name.clone().unwrap_or_default();
            let status = rj.status.clone().unwrap_or_default();
            let done = status.phase.is_some_and(Phase::is_terminal);
            let flying = status.start_time.is_some() && !done;
            if flying && !seen.started.contains(&name) {
                seen.started.push(name.clone());
            }
            let waiting = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Queued" && c.status == "True");
            if waiting && !seen.queued.contains(&name) {
                assert_eq!(status.phase, Some(Phase::Pending), "{name} queued");
                seen.queued.push(name.clone());
            }
            in_flight.insert(name.clone(), flying);
            finished.insert(name, done);
            let now = in_flight.values().filter(|f| **f).count();
            seen.most_in_flight = seen.most_in_flight.max(now);
            if finished.values().filter(|d| **d).count() == total {
                break;
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_cap_wait_queued_and_start_in_creation_order_then_all_complete_exactly() {
    let mut db = TestDb::new("run_cap").await;
    let table = orders(&mut db, 3_000).await;
    let mut env = Env::start().await;
    let ns = env.tenant("capped").await;
    let addr = format!("127.0.0.1:{}", common::free_port());
    env.start_controller(&[
        "--leader-election=false",
        "--metrics-addr",
        &addr,
        "--max-concurrent-runs",
        "2",
    ]);
    let names: Vec<String> = (0..5).map(|i| format!("run-{i}")).collect();
    let seen = watch_runs(&env, ns, names.len());
    // One snapshot per run (the default consistency): each holds a connection for its run.
    for name in &names {
        let yaml = report(name, &table, &format!("{name}.csv"))
            .chunk_size(1_000)
            .parallelism(2)
            .set("spec.source.consistency", "Snapshot")
            .build_yaml();
        env.apply(ns, &yaml).await;
    }
    let seen = tokio::time::timeout(common::PATIENCE * 2, seen)
        .await
        .expect("every run finished within the patience")
        .unwrap();
    assert_eq!(seen.most_in_flight, 2, "{seen:?}");
    // The first two start at once (in either order); the queued ones in creation order.
    let mut first: Vec<String> = seen.started[..2].to_vec();
    first.sort();
    assert_eq!(first, names[..2], "{seen:?}");
    assert_eq!(
        seen.started[2..],
        names[2..],
        "queued runs start in creation order: {seen:?}"
    );
    let mut queued = seen.queued.clone();
    queued.sort();
    assert_eq!(queued, names[2..], "{seen:?}");
    for name in &names {
        let rj = env
            .wait_phase(ns, name, Phase::Succeeded, common::PATIENCE)
            .await;
        let status = rj.status.unwrap();
        assert_eq!(status.rows, Some(3_000), "{name}");
        assert!(status.output.unwrap().snapshot.is_some(), "{name}");
        db.assert_report_matches(
            &env.pvc_dir(ns).join(format!("{name}.csv")),
            &db.all("orders"),
            "",
            false,
        )
        .await;
    }
}

/// A role allowed `limit` connections, with read access to `db`'s schema; dropped at the end.
async fn limited_role(db: &mut TestDb, limit: u32) -> String {
    let role = format!("{}_limited", db.schema);
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit};
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};",
        schema = db.schema
    ))
    .await;
    role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_for_too_many_connections_waits_for_a_slot_and_the_run_completes() {
    let mut db = TestDb::new("slot_wait").await;
    let table = orders(&mut db, 2_000).await;
    // Two slots: the run's snapshot holder and its one session; both are taken.
    let role = limited_role(&mut db, 2).await;
    let url = format!(
        "{}/{}",
        common::server_url().replacen("postgres@", &format!("{role}@"), 1),
        common::database_url().rsplit('/').next().unwrap()
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(PgConnection::connect(&url).await.unwrap());
    }
    let refused = PgConnection::connect(&url).await.err().unwrap();
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("53300"),
        "{refused}"
    );

    let work = Workdir::new();
    let yaml = SpecBuilder::table(&table)
        .key("id")
        .chunk_size(500)
        .parallelism(1)
        .set("spec.source.consistency", "Snapshot")
        .pvc("reports", "orders.csv")
        .build_yaml();
    let spec = work.spec("spec.yaml", &yaml);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args([
            "run",
            "-f",
            spec.to_str().unwrap(),
            "--json",
            "--output-dir",
        ])
        .arg(work.output_dir())
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .env_remove("REPORTJOB_SPEC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut log = String::new();
    // The run says it waits for a slot (a condition, not a guess at how long it takes)...
    let waiting = tokio::time::timeout(common::PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains("waiting for a connection slot") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(waiting, Ok(true)),
        "the run did not wait for a slot: {log}"
    );
    // ...and is still running: the refusal did not fail it.
    assert!(child.try_wait().unwrap().is_none(), "{log}");
    // The slots free up: the run takes them and completes.
    for conn in held {
        conn.close().await.unwrap();
    }
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let out = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("the run ends")
        .unwrap();
    let rest = rest.await.unwrap();
    assert!(out.status.success(), "{log}{rest}");
    assert!(rest.contains("got a connection slot"), "{log}{rest}");
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}{rest}"));
    assert_eq!(result["rows"], 2_000, "{result}");
    db.assert_report_matches(
        &work.output_dir().join("orders.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    db.exec(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role};
         REVOKE ALL ON SCHEMA {schema} FROM {role};
         DROP ROLE {role};",
        schema = db.schema
    ))
    .await;
}

/// Watches the chunk pods of `ns` until `stop` fires, counting those not finished at every
/// event (resourceVersion order: exact, not sampled); returns the most at once and the
/// ReportJobs whose pods ran.
fn watch_chunk_pods(
    env: &Env,
    ns: &str,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<(usize, std::collections::BTreeSet<String>)> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(env.client.clone(), ns);
    tokio::spawn(async move {
        let mut running: BTreeMap<String, bool> = BTreeMap::new();
        let mut most = 0;
        let mut owners = std::collections::BTreeSet::new();
        let config = watcher::Config::default().labels("reporting.dev/stage=chunks");
        let stream = watcher(api, config);
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = &mut stop => break,
                event = stream.next() => event,
            };
            let Some(Ok(event)) = event else { continue };
            match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                    let live = !matches!(phase.as_deref(), Some("Succeeded" | "Failed"));
                    if let Some(owner) = pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("reporting.dev/reportjob"))
                    {
                        owners.insert(owner.clone());
                    }
                    running.insert(name, live);
                }
                watcher::Event::Delete(pod) => {
                    running.remove(&pod.metadata.name.clone().unwrap_or_default());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            most = most.max(running.values().filter(|l| **l).count());
        }
        (most, owners)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaces_chunk_pods_never_exceed_its_budget_and_every_run_completes_exactly() {
    let mut db = TestDb::new("pod_budget").await;
    let table = orders(&mut db, 2_000).await;
    let mut env = Env::start().await;
    let ns = env.tenant("budgeted").await;
    let addr = format!("127.0.0.1:{}", common::free_port());
    env.start_controller(&[
        "--leader-election=false",
        "--metrics-addr",
        &addr,
        "--max-stage-pods-per-namespace",
        "3",
    ]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let pods = watch_chunk_pods(&env, ns, stop_rx);
    let names: Vec<String> = (0..4).map(|i| format!("many-{i}")).collect();
    // Four runs of 10 chunks, each asking for 3 pods at once: 12 wanted, 3 allowed.
    for name in &names {
        let yaml = report(name, &table, &format!("{name}.csv"))
            .filter(&common::slow_filter(&db.schema, 0.0005))
            .chunk_size(200)
            .parallelism(3)
            .set("spec.source.consistency", "PerChunk")
            .build_yaml();
        env.apply(ns, &yaml).await;
    }
    for name in &names {
        let rj = env
            .wait_phase(ns, name, Phase::Succeeded, common::PATIENCE * 2)
            .await;
        assert_eq!(rj.status.unwrap().rows, Some(2_000), "{name}");
    }
    stop_tx.send(()).unwrap();
    let (most, owners) = pods.await.unwrap();
    assert!(
        most <= 3,
        "{most} chunk pods ran at once in {ns}, the budget is 3"
    );
    assert!(most >= 2, "the budget was used ({most})");
    let expected: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(owners, expected);
    for name in &names {
        db.assert_report_matches(
            &env.pvc_dir(ns).join(format!("{name}.csv")),
            &db.all("orders"),
            "",
            false,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_runs_hold_no_slot_so_another_namespace_runs_and_resumes_wait_their_turn() {
    let mut db = TestDb::new("fair_slots").await;
    let table = orders(&mut db, 1_200).await;
    let mut env = Env::start().await;
    let team_a = env.tenant("team-a").await;
    let team_b = env.tenant("team-b").await;
    let addr = format!("127.0.0.1:{}", common::free_port());
    env.start_controller(&[
        "--leader-election=false",
        "--metrics-addr",
        &addr,
        "--max-concurrent-runs",
        "2",
    ]);
    // Team a's three runs, created suspended: each is planned, then pauses holding no slot,
    // so the third gets one although the cap is two.
    let names = ["a1", "a2", "a3"];
    for name in names {
        let yaml = report(name, &table, &format!("{name}.csv"))
            .set("spec.suspend", true)
            .build_yaml();
        env.apply(team_a, &yaml).await;
    }
    for name in names {
        env.wait_phase(team_a, name, Phase::Suspended, common::PATIENCE)
            .await;
    }
    // Nor a snapshot: each holder Job (an open transaction, holding back vacuum) is deleted,
    // and its pod with it.
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(env.client.clone(), team_a);
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), team_a);
    common::eventually(
        "the suspended runs' snapshot holders to be gone",
        || async {
            let jobs = jobs.list(&Default::default()).await.ok()?;
            let pods = pods.list(&Default::default()).await.ok()?;
            let holding = |name: Option<&String>| name.is_some_and(|n| n.contains("-snapshot"));
            let held = jobs.items.iter().any(|j| holding(j.metadata.name.as_ref()))
                || pods.items.iter().any(|p| holding(p.metadata.name.as_ref()));
            (!held).then_some(())
        },
    )
    .await;
    for name in names {
        let status = env.rjs(team_a).get(name).await.unwrap().status.unwrap();
        assert!(
            status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("snapshot is released")),
            "{name}: {:?}",
            status.message
        );
    }
    // Another team's run is not starved by them.
    env.apply(team_b, &report("b1", &table, "b1.csv").build_yaml())
        .await;
    env.wait_phase(team_b, "b1", Phase::Succeeded, common::PATIENCE)
        .await;
    db.assert_report_matches(
        &env.pvc_dir(team_b).join("b1.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    // Team b runs a slow one, holding a slot; all three of a's resume: one slot is free, so
    // one resumes and two wait, suspended, saying why.
    let slow = report("b2", &table, "b2.csv")
        .filter(&common::slow_filter(&db.schema, 0.01))
        .chunk_size(200)
        .parallelism(1);
    env.apply(team_b, &slow.build_yaml()).await;
    env.wait_phase(team_b, "b2", Phase::Running, common::PATIENCE)
        .await;
    for name in names {
        let resume = serde_json::json!({"spec": {"suspend": false}});
        env.merge_patch(team_a, name, resume).await;
    }
    let waiting = common::eventually("two resumes waiting for a run slot", || async {
        let mut waiting = 0;
        for name in names {
            let rj = env.rjs(team_a).get(name).await.ok()?;
            let status = rj.status?;
            if status.phase == Some(Phase::Suspended)
                && status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("resuming when a run slot frees: queued: 2"))
            {
                waiting += 1;
            }
        }
        (waiting == 2).then_some(waiting)
    })
    .await;
    assert_eq!(waiting, 2);
    // As runs end, the others resume, each under a new snapshot; every report is exact.
    for name in names {
        env.wait_phase(team_a, name, Phase::Succeeded, common::PATIENCE)
            .await;
        db.assert_report_matches(
            &env.pvc_dir(team_a).join(format!("{name}.csv")),
            &db.all("orders"),
            "",
            false,
        )
        .await;
    }
    env.wait_phase(team_b, "b2", Phase::Succeeded, common::PATIENCE)
        .await;
}
