//! The controller end to end on the real control plane: the real `reportjob` binary as stage
//! pods, the real Postgres; every report is loaded back and compared with its source.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use std::time::Duration;

use common::TestDb;
use common::spec::SpecBuilder;
use common::testbed::{Env, Fault, output_file, report, testbed};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use reportjob::api::Phase;

const LONG: Duration = common::PATIENCE;

/// A table of `rows` rows with a bigint key and a few typed columns.
async fn orders(db: &mut TestDb, rows: i64) -> String {
    db.exec(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2), created_at timestamptz);
         INSERT INTO orders SELECT g * 3, 'customer, \"' || (g % 97) || E'\"\\n', g * 1.25,
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
           FROM generate_series(1, {rows}) AS g;
         ANALYZE orders;"
    ))
    .await;
    db.table("orders")
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}\n{}",
        common::stdout(o),
        common::stderr(o)
    );
    common::stdout(o)
}

/// The cluster with one controller and a tenant namespace of the test's own (named after `prefix`), and a fresh `rows`-row
/// orders table in its own schema: where most tests here start.
async fn one_controller(
    db_name: &str,
    prefix: &str,
    rows: i64,
) -> (TestDb, String, Env, &'static str) {
    let mut db = TestDb::new(db_name).await;
    let table = orders(&mut db, rows).await;
    let mut env = Env::start().await;
    let ns = env.tenant(prefix).await;
    env.start_single_controller();
    (db, table, env, ns)
}

/// Asserts that the report at `path` on `ns`'s volume holds exactly the orders table's rows.
async fn assert_orders_report(db: &mut TestDb, env: &Env, ns: &str, path: &str) {
    db.assert_report_matches(&env.pvc_dir(ns).join(path), &db.all("orders"), "", false)
        .await;
}

async fn event_reasons(env: &Env, ns: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applied_reportjob_completes_with_exact_output() {
    let mut db = TestDb::new("ctl_basic").await;
    let table = orders(&mut db, 4_000).await;
    let mut env = Env::bare().await;
    let ns = env.reserve("analytics");
    // As a user would: CRD, namespace, Secret, then the ReportJob, all with kubectl (the CRD
    // is shared: not while a chart test has changed it).
    let crd_lock = common::testbed::cluster_scoped_lock().await;
    ok(&env.kubectl(&[
        "apply",
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/crds/reportjob.yaml"),
    ]));
    drop(crd_lock);
    // A new CRD is served once it is established, as a user's script would wait for.
    ok(&env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/reportjobs.reporting.dev",
        "--timeout=180s",
    ]));
    let setup = env.dir.path().join("setup.yaml");
    std::fs::write(
        &setup,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}}}\nstringData: {{url: '{}'}}\n---\n\
             apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: reports, namespace: {ns}}}\n\
             spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n",
            common::database_url()
        ),
    )
    .unwrap();
    ok(&env.kubectl(&["apply", "-f", setup.to_str().unwrap()]));
    env.start_single_controller();
    let rj = env.dir.path().join("rj.yaml");
    std::fs::write(
        &rj,
        report("orders", &table, "exports/orders.csv").build_yaml(),
    )
    .unwrap();
    ok(&env.kubectl(&["-n", ns, "apply", "-f", rj.to_str().unwrap()]));

    let waited = env.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Complete",
        "rj/orders",
        "--timeout=180s",
    ]);
    if !waited.status.success() {
        env.wait_phase(ns, "orders", Phase::Succeeded, Duration::from_secs(1))
            .await;
    }
    assert!(ok(&waited).contains("condition met"));

    let done = env.rjs(ns).get("orders").await.unwrap();
    let status = done.status.clone().unwrap();
    let chunks = status.chunks.clone().unwrap();
    assert!(chunks.total >= 4, "4000 rows in chunks of 500: {chunks:?}");
    assert_eq!((chunks.succeeded, chunks.failed), (chunks.total, 0));
    assert_eq!(status.rows, Some(4_000));
    let output = status.output.clone().unwrap();
    assert_eq!(output.rows, 4_000);
    let file = output_file(&env, ns, "exports/orders.csv");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        u64::try_from(output.bytes).unwrap()
    );
    db.assert_report_matches(&file, &db.all("orders"), "", false)
        .await;

    let table_out = ok(&env.kubectl(&["-n", ns, "get", "rj"]));
    let header = table_out.lines().next().unwrap();
    for column in ["NAME", "PHASE", "CHUNKS", "ROWS", "AGE"] {
        assert!(header.contains(column), "{table_out}");
    }
    let progress = format!("{}/{}", chunks.total, chunks.total);
    assert!(
        table_out.contains("Succeeded")
            && table_out.contains(&progress)
            && table_out.contains("4000"),
        "{table_out}"
    );
    let wide = ok(&env.kubectl(&["-n", ns, "get", "rj", "-o", "wide"]));
    assert!(
        wide.contains("OUTPUT") && wide.contains("exports/orders.csv"),
        "{wide}"
    );

    // Stage Jobs exist with the contract's names and labels; events tell the story.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let names: Vec<String> = jobs
        .list(&ListParams::default().labels("reporting.dev/reportjob=orders"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    for job in ["orders-plan", "orders-chunks", "orders-assemble"] {
        assert!(names.contains(&job.to_string()), "{names:?}");
    }
    // The test connects as the superuser `postgres`: the plan warns about it. Events are
    // recorded after the status they describe, so they are waited for.
    let expected = ["ExcessPrivileges", "PlanStaged", "Completed"];
    common::eventually("the run's events", || async {
        let reasons = event_reasons(&env, ns, "orders").await;
        expected
            .iter()
            .all(|r| reasons.contains(&r.to_string()))
            .then_some(())
    })
    .await;
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    assert!(
        conditions.contains(&("Planned".into(), "True".into())),
        "{conditions:?}"
    );
    let planned = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Planned")
        .unwrap();
    assert!(
        planned
            .message
            .contains("warning: the database role \"postgres\" is a superuser"),
        "{}",
        planned.message
    );
    assert!(
        conditions.contains(&("Failed".into(), "False".into())),
        "{conditions:?}"
    );
    assert_eq!(status.observed_generation, done.metadata.generation);
}

/// A ReportJob whose chunks take about a second each (every row sleeps 4 ms, through the schema's
/// `slow_row`), so that
/// tests can act while they run.
fn slow_report(name: &str, table: &str, path: &str) -> SpecBuilder {
    let schema = table.split_once('.').map_or("public", |(schema, _)| schema);
    report(name, table, path)
        .filter(&common::slow_filter(schema, 0.004))
        .chunk_size(250)
        .parallelism(2)
}

fn succeeded_chunks(rj: &reportjob::api::ReportJob) -> i64 {
    rj.status
        .as_ref()
        .and_then(|s| s.chunks.as_ref())
        .map_or(0, |c| c.succeeded)
}

fn phase(rj: &reportjob::api::ReportJob) -> Option<Phase> {
    rj.status.as_ref().and_then(|s| s.phase)
}

async fn pods_of(env: &Env, ns: &str, selector: &str) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), ns);
    pods.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

fn completion_index(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    use kube::ResourceExt;
    pod.annotations()
        .get("batch.kubernetes.io/job-completion-index")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_chunk_pod_is_retried_and_output_stays_exact() {
    let (mut db, table, env, ns) = one_controller("ctl_kill", "kill", 1_000).await;
    env.apply(
        ns,
        &slow_report("orders", &table, "orders.csv").build_yaml(),
    )
    .await;
    env.wait_phase(ns, "orders", Phase::Running, LONG).await;
    // Kill the first chunk pod seen running.
    let victim = common::eventually("a chunk pod running", || async {
        pods_of(&env, ns, "reporting.dev/stage=chunks")
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    use kube::ResourceExt;
    testbed().agent().kill_pod(ns, &victim.name_any()).unwrap();
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    let status = done.status.unwrap();
    assert_eq!(status.chunks.as_ref().unwrap().failed, 0);
    assert_eq!(status.rows, Some(1_000));
    // The killed index ran twice; every other index once.
    let chunk_pods = pods_of(&env, ns, "reporting.dev/stage=chunks").await;
    let killed_index = completion_index(&victim);
    let runs = chunk_pods
        .iter()
        .filter(|p| completion_index(p) == killed_index)
        .count();
    assert_eq!(runs, 2, "the killed chunk is retried once");
    assert_eq!(chunk_pods.len(), 4 + 1);
    assert_orders_report(&mut db, &env, ns, "orders.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_chunk_error_fails_at_once_and_retry_reruns_only_unfinished_chunks() {
    let (mut db, table, env, ns) = one_controller("ctl_perm", "perm", 1_000).await;
    // Ten chunks of about 3 s each, two at a time: when two are done (the status may show
    // it up to 5 s late: progress-only writes are spaced), at most four are done and two in
    // flight, so at least four fail once the column is gone.
    // Re-running only the unfinished chunks is what PerChunk does (under one snapshot a
    // retry exports every chunk again under a new one).
    let spec = slow_report("orders", &table, "orders.csv")
        .filter(&common::slow_filter(
            table.split_once('.').map_or("public", |(schema, _)| schema),
            0.03,
        ))
        .columns(&["id", "customer", "amount"])
        .chunk_size(100)
        .set("spec.source.consistency", "PerChunk");
    env.apply(ns, &spec.build_yaml()).await;
    env.wait_for(ns, "orders", LONG, "2 chunks done", |rj| {
        succeeded_chunks(rj) >= 2
    })
    .await;
    // The column goes away while chunks remain: they fail with a permanent error.
    db.exec("ALTER TABLE orders RENAME COLUMN customer TO buyer")
        .await;
    let failed = env.wait_phase(ns, "orders", Phase::Failed, LONG).await;
    let status = failed.status.clone().unwrap();
    let message = status.message.clone().unwrap();
    assert!(
        message.contains("customer"),
        "the message names the column: {message}"
    );
    let failed_chunks = status.failed_chunks.clone().expect("failedChunks");
    let completed_before = status.completed_chunks.clone().unwrap();
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "ChunksFailed")
    );
    // No retries of a permanent failure: every failed index ran exactly once.
    let chunk_pods = pods_of(&env, ns, "reporting.dev/stage=chunks").await;
    let failed_pods: Vec<String> = chunk_pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .map(completion_index)
        .collect();
    let mut distinct = failed_pods.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        failed_pods.len(),
        distinct.len(),
        "a permanently failed index was retried"
    );

    // Fix the cause, ask for a retry: only the chunks not exported run again.
    db.exec("ALTER TABLE orders RENAME COLUMN buyer TO customer")
        .await;
    env.merge_patch(
        ns,
        "orders",
        serde_json::json!({"metadata": {"annotations": {"reporting.dev/retry": "1"}}}),
    )
    .await;
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let rerun = jobs.get("orders-chunks").await.unwrap();
    use kube::ResourceExt;
    let total = done.status.as_ref().unwrap().chunks.as_ref().unwrap().total;
    let done_before =
        reportjob::stage_protocol::ChunkSet::parse(&completed_before, usize::MAX).unwrap();
    let expected: Vec<usize> = (0..usize::try_from(total).unwrap())
        .filter(|i| !done_before.contains(*i))
        .collect();
    assert_eq!(
        rerun.annotations()["reporting.dev/chunks"],
        reportjob::stage_protocol::ChunkSet::from_indexes(expected.clone()).to_string(),
        "the retry covers exactly the chunks not exported before (failed: {failed_chunks})"
    );
    assert_eq!(
        rerun.spec.unwrap().completions,
        Some(i32::try_from(expected.len()).unwrap())
    );
    assert_eq!(done.status.unwrap().rows, Some(1_000));
    db.assert_report_matches(
        &env.pvc_dir(ns).join("orders.csv"),
        &format!("SELECT id, customer, amount FROM {table}"),
        "",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_damaged_on_the_volume_is_exported_again_by_a_retry() {
    let (mut db, table, env, ns) = one_controller("ctl_damaged", "damaged", 1_000).await;
    // Ten slow chunks, two at a time: the first part is in well before the last chunk ends
    // (assembly starts only then).
    env.apply(
        ns,
        &slow_report("orders", &table, "orders.csv")
            .chunk_size(100)
            // Re-exporting exactly the damaged chunks is what PerChunk does.
            .set("spec.source.consistency", "PerChunk")
            .build_yaml(),
    )
    .await;
    let staging = env.pvc_dir(ns).join("orders.csv.parts");
    let (part, index) = common::eventually("a part exported", || async {
        let run = std::fs::read_dir(&staging).ok()?.flatten().next()?.path();
        let manifest = std::fs::read_dir(&run)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
            })?;
        let stem = manifest.file_stem()?.to_string_lossy().to_string();
        let index: usize = stem.strip_prefix("part-")?.parse().ok()?;
        Some((run.join(format!("{stem}.csv")), index))
    })
    .await;
    // Flip one byte: same size, another sha256.
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&part, &bytes).unwrap();
    let rj = env.rjs(ns).get("orders").await.unwrap();
    assert!(
        succeeded_chunks(&rj) < 10,
        "the part was damaged before every chunk was exported"
    );

    let failed = env.wait_phase(ns, "orders", Phase::Failed, LONG).await;
    let status = failed.status.clone().unwrap();
    let message = status.message.clone().unwrap();
    assert!(message.contains("damaged"), "{message}");
    assert_eq!(
        status.failed_chunks.as_deref(),
        Some(index.to_string().as_str())
    );
    assert!(!part.exists(), "assembly deleted the damaged part");

    env.merge_patch(
        ns,
        "orders",
        serde_json::json!({"metadata": {"annotations": {"reporting.dev/retry": "1"}}}),
    )
    .await;
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let rerun = jobs.get("orders-chunks").await.unwrap();
    use kube::ResourceExt;
    assert_eq!(
        rerun.annotations()["reporting.dev/chunks"],
        index.to_string(),
        "the retry exports exactly the damaged chunk"
    );
    assert_eq!(done.status.unwrap().rows, Some(1_000));
    assert_orders_report(&mut db, &env, ns, "orders.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_at_each_stage_resumes_without_duplicates_through_api_faults() {
    let mut db = TestDb::new("ctl_restart").await;
    let table = orders(&mut db, 1_000).await;
    let mut env = Env::start().await;
    let ns = env.tenant("restart").await;
    // Every controller here reaches the API server through the fault proxy.
    env.start_controller_through_proxy();
    env.apply(
        ns,
        &slow_report("orders", &table, "orders.csv").build_yaml(),
    )
    .await;

    // Planning: kill the controller as soon as the plan Job exists.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    env.wait_phase(ns, "orders", Phase::Planning, LONG).await;
    env.kill_controller(0);
    env.start_controller_through_proxy();
    // Chunks running: kill it again, and break the API around the new one: failed status
    // writes, a conflict, throttling, and its watches answered 410 Gone (it must re-list).
    env.wait_for(ns, "orders", LONG, "a chunk done", |rj| {
        succeeded_chunks(rj) >= 1
    })
    .await;
    env.kill_controller(1);
    let proxy = env.proxy();
    proxy.fail_next("patch", "reportjobs/status", 3, Fault::Status(500));
    proxy.fail_next("patch", "reportjobs/status", 1, Fault::Status(409));
    proxy.fail_next(
        "list",
        "jobs",
        1,
        Fault::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    proxy.fail_next("watch", "*", 2, Fault::WatchGone);
    env.start_controller_through_proxy();
    // Its watches are cut while the chunks run.
    env.wait_for(ns, "orders", LONG, "two chunks done", |rj| {
        succeeded_chunks(rj) >= 2
    })
    .await;
    env.proxy().end_watches();
    // Assembling: kill it the moment it is seen, then the API goes away for a moment (every
    // connection reset) under the next controller.
    let seen = env
        .wait_for(ns, "orders", LONG, "assembling or done", |rj| {
            matches!(phase(rj), Some(Phase::Assembling | Phase::Succeeded))
        })
        .await;
    env.kill_controller(2);
    env.proxy().drop_connections();
    env.proxy().fail_next("*", "*", 3, Fault::Reset);
    env.start_controller_through_proxy();
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    println!("killed while {:?}", phase(&seen));

    // The finished run releases its snapshot: the holder Job is deleted by the reconcile
    // after the one that wrote Succeeded, so it is waited for.
    common::eventually("the snapshot holder Job released", || async {
        jobs.get_opt("orders-snapshot")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // One Job per stage, one pod per plan and assembly, one per chunk.
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        all.len(),
        3,
        "{:?}",
        all.iter()
            .map(|j| j.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(pods_of(&env, ns, "reporting.dev/stage=plan").await.len(), 1);
    assert_eq!(
        pods_of(&env, ns, "reporting.dev/stage=assemble")
            .await
            .len(),
        1
    );
    assert_eq!(
        pods_of(&env, ns, "reporting.dev/stage=chunks").await.len(),
        4
    );
    assert_eq!(done.status.unwrap().rows, Some(1_000));
    assert_orders_report(&mut db, &env, ns, "orders.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_reportjob_removes_its_jobs_pods_and_staging() {
    let (_db, table, env, ns) = one_controller("ctl_delete", "del", 1_000).await;
    env.apply(
        ns,
        &slow_report("orders", &table, "out/orders.csv").build_yaml(),
    )
    .await;
    let running = env
        .wait_for(ns, "orders", LONG, "a chunk done", |rj| {
            succeeded_chunks(rj) >= 1
        })
        .await;
    let run = running.status.unwrap().plan.unwrap().run_id;
    let staging = env.pvc_dir(ns).join(format!("out/orders.csv.parts/{run}"));
    assert!(
        staging.join("plan.json").exists(),
        "staging exists while running"
    );
    assert_eq!(
        running.metadata.finalizers.unwrap(),
        ["reporting.dev/cleanup"]
    );
    env.rjs(ns)
        .delete("orders", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    common::eventually("the ReportJob to be released", || async {
        env.rjs(ns)
            .get_opt("orders")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!staging.exists(), "staging data removed");
    assert!(!env.pvc_dir(ns).join("out/orders.csv").exists());
    // The Jobs go too: on a real API server a Job being deleted stays (with its
    // deletionTimestamp) until the garbage collector has removed its pods.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    common::eventually("no Jobs left", || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    // Pods go with their Jobs (GC), also one the Job controller created from a stale cache
    // after its Job was deleted; none of the stages keeps running.
    common::eventually("no pods left", || async {
        pods_of(&env, ns, "reporting.dev/reportjob=orders")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_pauses_the_chunks_releases_the_snapshot_and_resume_finishes_exactly() {
    let (mut db, table, env, ns) = one_controller("ctl_suspend", "susp", 1_000).await;
    // Chunks of 5 s (250 rows at 20 ms): the suspend comes while the first ones export
    // (the status shows progress only 5 s after its last write, so a done chunk is not
    // waited for: it could be the run's end).
    let schema = table.split_once('.').map_or("public", |(schema, _)| schema);
    env.apply(
        ns,
        &slow_report("orders", &table, "orders.csv")
            .filter(&common::slow_filter(schema, 0.02))
            .build_yaml(),
    )
    .await;
    env.wait_phase(ns, "orders", Phase::Running, LONG).await;
    let patch = |suspend: bool| serde_json::json!({"spec": {"suspend": suspend}});
    env.merge_patch(ns, "orders", patch(true)).await;
    let suspended = env.wait_phase(ns, "orders", Phase::Suspended, LONG).await;
    let s = suspended.status.unwrap();
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
    );
    assert!(
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("snapshot is released")),
        "{:?}",
        s.message
    );
    // Under one snapshot (the default) the holder goes, and the chunks read under it: the
    // chunks Job is created again, suspended, for the next snapshot.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    common::eventually("the chunks Job suspended and no holder", || async {
        let job = jobs.get("orders-chunks").await.ok()?;
        let spec_suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        let active = job.status.as_ref().and_then(|s| s.active).unwrap_or(0);
        let holder = jobs.get_opt("orders-snapshot").await.ok()?;
        (spec_suspended && active == 0 && holder.is_none()).then_some(())
    })
    .await;
    env.merge_patch(ns, "orders", patch(false)).await;
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    let s = done.status.unwrap();
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "False")
    );
    assert_eq!(s.rows, Some(1_000));
    assert_orders_report(&mut db, &env, ns, "orders.csv").await;
}

/// Runs the `reportjob` CLI against the test cluster in `ns`: exit code, stdout, stderr.
fn cli(env: &Env, ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .args(args)
            .args(["-n", ns, "--kubeconfig"])
            .arg(&env.kubeconfig)
            .output()
            .unwrap()
    });
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_pods_releases_the_snapshot_removes_staging_and_keeps_the_reportjob() {
    let (mut db, table, env, ns) = one_controller("ctl_cancel", "cancel", 1_000).await;
    // The run connects as a role of its own, so its sessions can be told from every other
    // test's in pg_stat_activity.
    let role = format!("{}_cancel", db.schema);
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};",
        schema = db.schema
    ))
    .await;
    let url = format!(
        "{}/{}",
        common::server_url().replacen("postgres@", &format!("{role}@"), 1),
        common::database_url().rsplit('/').next().unwrap()
    );
    env.secret(ns, "db-cancel", &[("url", &url)]).await;
    let sessions = async |db: &mut TestDb| -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&role)
            .fetch_one(&mut db.conn)
            .await
            .unwrap()
    };
    // Chunks of 5 s (250 rows at 20 ms), under one snapshot (the default).
    let schema = table.split_once('.').map_or("public", |(schema, _)| schema);
    env.apply(
        ns,
        &slow_report("orders", &table, "orders.csv")
            .set("spec.source.connectionSecretRef.name", "db-cancel")
            .filter(&common::slow_filter(schema, 0.02))
            .build_yaml(),
    )
    .await;
    env.wait_phase(ns, "orders", Phase::Running, LONG).await;
    common::eventually("the holder's and a chunk's sessions", async || {
        (sessions(&mut db).await >= 2).then_some(())
    })
    .await;

    let (code, out, err) = cli(&env, ns, &["cancel", "orders"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("ReportJob {ns}/orders cancelled")),
        "{out}"
    );
    let cancelled = env.wait_phase(ns, "orders", Phase::Cancelled, LONG).await;
    assert!(cancelled.status.unwrap().completion_time.is_some());
    // Every stage Job goes (the holder's with it, so the snapshot is released), and no
    // session of the run is left holding back vacuum.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    common::eventually("no stage Job but the cleanup", || async {
        let names: Vec<String> = jobs
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(kube::ResourceExt::name_any)
            .collect();
        names.iter().all(|n| n == "orders-cleanup").then_some(())
    })
    .await;
    common::eventually("no session of the run", async || {
        (sessions(&mut db).await == 0).then_some(())
    })
    .await;
    let kept = common::eventually("staging removed", || async {
        let rj = Api::<reportjob::api::ReportJob>::namespaced(env.client.clone(), ns)
            .get("orders")
            .await
            .ok()?;
        let removed = rj
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "StagingRemoved" && c.status == "True");
        removed.then_some(rj)
    })
    .await;
    assert_eq!(kept.status.unwrap().phase, Some(Phase::Cancelled));
    let volume = env.pvc_dir(ns);
    assert!(!volume.join("orders.csv").exists());
    assert!(
        !volume.join("orders.csv.parts").exists()
            || std::fs::read_dir(volume.join("orders.csv.parts"))
                .unwrap()
                .next()
                .is_none(),
        "staging left: {:?}",
        std::fs::read_dir(volume.join("orders.csv.parts")).map(|d| d.count())
    );
    assert!(
        event_reasons(&env, ns, "orders")
            .await
            .contains(&"Cancelled".to_string())
    );

    // A cancelled run does not come back: retry is refused, wait ends at once with exit 1.
    let (code, _, err) = cli(&env, ns, &["retry", "orders"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was cancelled"), "{err}");
    let (code, _, err) = cli(&env, ns, &["wait", "orders"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("ReportJob {ns}/orders was cancelled")),
        "{err}"
    );
    assert!(err.contains("does not run again"), "{err}");
    let (code, _, err) = cli(&env, ns, &["cancel", "orders"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is Cancelled: there is no run to cancel"),
        "{err}"
    );
    db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reportjobs_fail_with_invalid_spec_naming_the_field_and_create_nothing() {
    let mut env = Env::start().await;
    let ns = env.tenant("invalid").await;
    env.start_single_controller();
    let base = |name: &str| report(name, "public.orders", "ok.csv");
    let cases: Vec<(String, &str)> = vec![
        (
            base("c1").set("spec.source.table", "orders; drop table x"),
            "spec.source.table",
        ),
        (base("c2").key("id\""), "spec.source.keyColumn"),
        (
            base("c3").pvc("reports", "../etc/passwd"),
            "spec.output.destination.pvc.path",
        ),
        (
            base("c4").pvc("reports", "/abs/report.csv"),
            "spec.output.destination.pvc.path",
        ),
        (base("c5").columns(&["a", "b;c"]), "spec.source.columns[1]"),
        (base("c6").columns(&["a", "a"]), "spec.source.columns[1]"),
        (
            base("c7").set("spec.source.table", "a.b.c.d"),
            "spec.source.table",
        ),
        (
            base("c8")
                .unset("spec.source.table")
                .set("spec.source.query", "select (1"),
            "spec.source.query",
        ),
        (
            base("c9")
                .unset("spec.source.table")
                .set("spec.source.query", "select 1 as id")
                .filter("id > 1"),
            "spec.source.where",
        ),
        (
            base("c10")
                .unset("spec.source.table")
                .set("spec.source.query", "select 1 as id")
                .columns(&["id"]),
            "spec.source.columns",
        ),
        (base("c11").filter("a = (1"), "spec.source.where"),
        (
            base("c12").bucket("gs://b/k"),
            "spec.output.destination.bucket.url",
        ),
        (
            base("c13").bucket("s3://bucket/"),
            "spec.output.destination.bucket.url",
        ),
    ]
    .into_iter()
    .map(|(spec, field)| (spec.build_yaml(), field))
    .collect();
    let mut refused_at_admission = Vec::new();
    for (yaml, _) in &cases {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        let created = env
            .rjs(ns)
            .patch(
                &name,
                &kube::api::PatchParams::apply("test"),
                &kube::api::Patch::Apply(value),
            )
            .await;
        if created.is_err() {
            refused_at_admission.push(name);
        }
    }
    // The paths (c3, c4), where/columns with a query (c9, c10) and the bucket URLs (c12, c13)
    // are refused at admission by the CRD's CEL rules; the rest reaches the controller's own
    // validation (what only parsing SQL or identifiers can tell).
    assert_eq!(
        refused_at_admission,
        ["c3", "c4", "c9", "c10", "c12", "c13"],
        "refused at admission"
    );
    for (yaml, field) in &cases {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap();
        if env.rjs(ns).get_opt(name).await.unwrap().is_none() {
            continue;
        }
        let failed = env.wait_phase(ns, name, Phase::Failed, LONG).await;
        let status = failed.status.unwrap();
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(condition.reason, "InvalidSpec", "{name}");
        assert!(
            condition.message.contains(field),
            "{name}: {} should name {field}",
            condition.message
        );
        // The event may be recorded just after the status is written.
        common::eventually(&format!("{name}: an InvalidSpec event"), || async {
            let reasons = event_reasons(&env, ns, name).await;
            reasons.contains(&"InvalidSpec".to_string()).then_some(())
        })
        .await;
    }
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no Jobs for invalid specs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_another_namespace_is_never_used() {
    let mut db = TestDb::new("ctl_secret").await;
    let table = orders(&mut db, 100).await;
    let mut env = Env::start().await;
    let team_a = env.tenant("team-a").await;
    let team_b = env.tenant("team-b").await;
    env.secret(team_a, "only-in-a", &[("url", &common::database_url())])
        .await;
    env.start_single_controller();
    // A namespace field on the reference is not part of the API. Server-side apply refuses
    // it (a field not declared in the schema); a create prunes it, and the pods of team-b
    // look for the Secret in team-b, where it does not exist.
    let yaml = report("steal", &table, "x.csv").set(
        "spec.source.connectionSecretRef",
        serde_json::json!({"name": "only-in-a", "key": "url", "namespace": team_a}),
    );
    let refused = env
        .rjs(team_b)
        .patch(
            "steal",
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(yaml.build()),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("field not declared in schema"),
        "{refused}"
    );
    // Sent as it is (a typed ReportJob would drop the field before it leaves the test).
    let raw: kube::api::DynamicObject = serde_json::from_value(yaml.build()).unwrap();
    let resource = kube::api::ApiResource::erase::<reportjob::api::ReportJob>(&());
    kube::Api::<kube::api::DynamicObject>::namespaced_with(env.client.clone(), team_b, &resource)
        .create(&kube::api::PostParams::default(), &raw)
        .await
        .unwrap();
    let stuck = env
        .wait_for(
            team_b,
            "steal",
            LONG,
            "reporting the missing Secret",
            |rj| {
                rj.status
                    .as_ref()
                    .and_then(|s| s.message.clone())
                    .is_some_and(|m| m.contains("cannot start") && m.contains("only-in-a"))
            },
        )
        .await;
    assert_eq!(phase(&stuck), Some(Phase::Planning));
    // The Event is recorded after the status that says the same is written.
    common::eventually("a PodCannotStart event", || async {
        let reasons = event_reasons(&env, team_b, "steal").await;
        reasons
            .contains(&"PodCannotStart".to_string())
            .then_some(())
    })
    .await;
    assert!(!env.pvc_dir(team_b).join("x.csv").exists());
    let stored = env.rjs(team_b).get("steal").await.unwrap();
    let stored_ref = serde_json::to_value(&stored.spec.source.connection_secret_ref).unwrap();
    assert!(stored_ref.get("namespace").is_none(), "{stored_ref}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_killing_it_hands_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let mut db = TestDb::new("ctl_leader").await;
    let table = orders(&mut db, 500).await;
    let mut env = Env::start().await;
    let ns = env.tenant("lead").await;
    for _ in 0..2 {
        let addr = format!("127.0.0.1:{}", common::free_port());
        env.start_controller(&[
            "--lease-duration-seconds",
            "3",
            "--metrics-addr",
            &addr,
            "--lease-namespace",
            ns,
        ]);
    }
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), ns);
    let holder = || async {
        leases
            .get_opt("reportjob-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    let first = common::eventually("a leader", holder).await;
    env.apply(ns, &report("one", &table, "one.csv").build_yaml())
        .await;
    env.wait_phase(ns, "one", Phase::Succeeded, LONG).await;
    let acted: Vec<bool> = (0..2)
        .map(|n| env.controller_log(n).contains("created Job"))
        .collect();
    assert_eq!(
        acted.iter().filter(|a| **a).count(),
        1,
        "exactly one replica acts: {acted:?}"
    );
    let leader = acted.iter().position(|a| *a).unwrap();
    env.kill_controller(leader);
    env.apply(ns, &report("two", &table, "two.csv").build_yaml())
        .await;
    env.wait_phase(ns, "two", Phase::Succeeded, LONG).await;
    let second = holder().await.unwrap();
    assert_ne!(first, second, "the lease changed hands");
    assert!(env.controller_log(1 - leader).contains("became the leader"));
    assert_orders_report(&mut db, &env, ns, "two.csv").await;
}

/// How a test webhook receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// 200 every time.
    Ok,
    /// 500 to the first two requests, then 200.
    FailTwice,
    /// Never answers.
    Silent,
}

type Bodies = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver on loopback that answers 200 and keeps every request body.
async fn receiver() -> (String, Bodies) {
    receiver_answering(Answer::Ok).await
}

/// A webhook receiver on loopback that keeps every request body and answers as told.
async fn receiver_answering(answer: Answer) -> (String, Bodies) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            let body = &data[end + 4..end + 4 + length];
                            let seen = {
                                let mut kept = kept.lock().unwrap();
                                kept.push(serde_json::from_slice(body).unwrap());
                                kept.len()
                            };
                            let status = match answer {
                                Answer::Silent => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                    return;
                                }
                                Answer::FailTwice if seen <= 2 => "500 Internal Server Error",
                                _ => "200 OK",
                            };
                            let response = format!(
                                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            );
                            let _ = socket.write_all(response.as_bytes()).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_sent_once_per_outcome_from_the_pods() {
    let mut db = TestDb::new("ctl_notify").await;
    let table = orders(&mut db, 500).await;
    let mut env = Env::start().await;
    let ns = env.tenant("notify").await;
    let (url, bodies) = receiver().await;
    env.secret(ns, "hook", &[("url", &url)]).await;
    env.start_single_controller();
    let good = report("good", &table, "good.csv").notify("hook", Some("json"), Some("always"));
    env.apply(ns, &good.build_yaml()).await;
    let bad =
        report("bad", &table, "bad.csv")
            .key("nope")
            .notify("hook", Some("slack"), Some("failure"));
    env.apply(ns, &bad.build_yaml()).await;
    let notified = |rj: &reportjob::api::ReportJob| {
        rj.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Notified"))
    };
    let good = env
        .wait_for(ns, "good", LONG, "Succeeded and notified", notified)
        .await;
    let bad = env
        .wait_for(ns, "bad", LONG, "Failed and notified", notified)
        .await;
    assert_eq!(phase(&good), Some(Phase::Succeeded));
    assert_eq!(phase(&bad), Some(Phase::Failed));
    for rj in [&good, &bad] {
        let c = rj
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Notified")
            .unwrap();
        assert_eq!(c.status, "True", "{c:?}");
    }
    // Later reconciles send nothing more: a TTL set now makes the controller reconcile each
    // finished ReportJob again (the spec change, then the TTL's end) until it deletes it.
    for name in ["good", "bad"] {
        let ttl = serde_json::json!({"spec": {"ttlSecondsAfterFinished": 1}});
        env.merge_patch(ns, name, ttl).await;
    }
    common::eventually("both ReportJobs deleted after their TTL", || async {
        let good = env.rjs(ns).get_opt("good").await.ok()?;
        let bad = env.rjs(ns).get_opt("bad").await.ok()?;
        (good.is_none() && bad.is_none()).then_some(())
    })
    .await;
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    let json = bodies
        .iter()
        .find(|b| b.get("specversion").is_some())
        .expect("the JSON event");
    assert_eq!(json["type"], "dev.reporting.reportjob.succeeded");
    assert_eq!(json["data"]["name"], "good");
    assert_eq!(json["data"]["namespace"], ns);
    assert_eq!(json["data"]["rows"], 500);
    let slack = bodies
        .iter()
        .find(|b| b.get("text").is_some())
        .expect("the Slack message");
    let text = slack["text"].as_str().unwrap();
    assert!(text.contains("bad") && text.contains("nope"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_webhook_gets_the_third_attempt_and_a_silent_one_leaves_the_report_complete() {
    let mut db = TestDb::new("ctl_hooks").await;
    let table = orders(&mut db, 200).await;
    let mut env = Env::start().await;
    let ns = env.tenant("hooks").await;
    let (flaky_url, flaky) = receiver_answering(Answer::FailTwice).await;
    let (silent_url, silent) = receiver_answering(Answer::Silent).await;
    env.secret(ns, "flaky", &[("url", &flaky_url)]).await;
    env.secret(ns, "silent", &[("url", &silent_url)]).await;
    env.start_single_controller();
    for name in ["flaky", "silent"] {
        let spec = report(name, &table, &format!("{name}.csv")).notify(name, None, None);
        env.apply(ns, &spec.build_yaml()).await;
    }
    let notified = |rj: &reportjob::api::ReportJob| {
        rj.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Notified"))
    };
    let condition = |rj: &reportjob::api::ReportJob| {
        let status = rj.status.as_ref().unwrap();
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Notified")
            .unwrap();
        (c.status.clone(), c.reason.clone())
    };
    let done = env.wait_for(ns, "flaky", LONG, "notified", notified).await;
    assert_eq!(condition(&done), ("True".into(), "WebhookDelivered".into()));
    assert_eq!(
        flaky.lock().unwrap().len(),
        3,
        "two 500s, then the third attempt"
    );
    // Four attempts of 10 s each, with backoff, then the report is published anyway.
    let done = env.wait_for(ns, "silent", LONG, "notified", notified).await;
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    assert_eq!(condition(&done), ("False".into(), "WebhookTimeout".into()));
    assert_eq!(silent.lock().unwrap().len(), 4);
    assert_orders_report(&mut db, &env, ns, "silent.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_follows_the_real_controller() {
    let (mut db, table, env, ns) = one_controller("ctl_submit", "submit", 300).await;
    let submit = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .args([
                "submit",
                "--wait",
                "--timeout",
                "5m",
                "-n",
                ns,
                "--kubeconfig",
            ])
            .arg(&env.kubeconfig)
            .arg("-f")
            .arg(file)
            .output()
            .unwrap()
    };
    let good = env.dir.path().join("good.yaml");
    std::fs::write(&good, report("good", &table, "good.csv").build_yaml()).unwrap();
    let out = tokio::task::block_in_place(|| submit(&good));
    let said = |o: &std::process::Output| format!("{}{}", common::stdout(o), common::stderr(o));
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        common::stdout(&out).contains("pvc://reports/good.csv"),
        "{}",
        said(&out)
    );
    assert_orders_report(&mut db, &env, ns, "good.csv").await;
    let bad = env.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        report("bad", &table, "bad.csv")
            .key("no_such_key")
            .build_yaml(),
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| submit(&bad));
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("no_such_key"), "{}", said(&out));
}

/// A plan that fails under one snapshot (the default) fails with its own cause, and so does
/// its retry: the retry takes a new snapshot, so its plan pod never reads the failed run's
/// record (whose exporting session is gone) and reports the import error instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_plan_failure_shows_its_own_cause_again() {
    let (_db, table, env, ns) = one_controller("ctl_plan_retry", "planretry", 100).await;
    env.apply(
        ns,
        &report("orders", &table, "orders.csv")
            .key("nope")
            .build_yaml(),
    )
    .await;
    let cause = "column \"nope\"";
    let failed = env.wait_phase(ns, "orders", Phase::Failed, LONG).await;
    let message = failed.status.as_ref().and_then(|s| s.message.clone());
    assert!(
        message.as_deref().is_some_and(|m| m.contains(cause)),
        "{message:?}"
    );
    env.merge_patch(
        ns,
        "orders",
        serde_json::json!({"metadata": {"annotations": {"reporting.dev/retry": "1"}}}),
    )
    .await;
    let again = env
        .wait_for(ns, "orders", LONG, "Failed after the retry", |rj| {
            rj.status.as_ref().is_some_and(|s| {
                s.retry_token.as_deref() == Some("1") && s.phase == Some(Phase::Failed)
            })
        })
        .await;
    let status = again.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(message.contains(cause), "{message}");
    assert!(!message.contains("22023"), "{message}");
    assert_eq!(status.snapshot_generation, Some(1));
}
