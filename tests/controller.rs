//! The controller end to end on kubesim: real HTTP, the real `reportjob` binary as stage
//! pods, the real Postgres; every report is loaded back and compared with its source.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

mod common;

use std::time::Duration;

use common::TestDb;
use common::cluster::{Env, output_file, report_yaml};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use reportjob::api::Phase;

const LONG: Duration = Duration::from_secs(120);

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
    let env = Env::bare().await;
    let mut env = env;
    let ns = "analytics";
    // As a user would: CRD, namespace, Secret, then the ReportJob, all with kubectl.
    ok(&env.kubectl(&[
        "apply",
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/crds/reportjob.yaml"),
    ]));
    // (`kubectl create ...` sends protobuf, which kubesim does not decode; manifests are JSON.)
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
        report_yaml("orders", &table, "id", "exports/orders.csv", ""),
    )
    .unwrap();
    ok(&env.kubectl(&["-n", ns, "apply", "-f", rj.to_str().unwrap()]));

    let waited = env.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Complete",
        "rj/orders",
        "--timeout=120s",
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
    let reasons = event_reasons(&env, ns, "orders").await;
    for reason in [
        "Planning",
        "PlanStaged",
        "Exporting",
        "Assembling",
        "Completed",
    ] {
        assert!(reasons.contains(&reason.to_string()), "{reasons:?}");
    }
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    assert!(
        conditions.contains(&("Planned".into(), "True".into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("Failed".into(), "False".into())),
        "{conditions:?}"
    );
    assert_eq!(status.observed_generation, done.metadata.generation);
    db.drop_schema().await;
}

/// A ReportJob whose chunks take about a second each (every row sleeps 4 ms), so that
/// tests can act while they run.
fn slow_report(name: &str, table: &str, path: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: {name}}}
spec:
  source:
    connectionSecretRef: {{name: db, key: url}}
    table: {table}
    where: "pg_sleep(0.004) IS NOT NULL"
    keyColumn: id
  chunking: {{chunkSize: 250, parallelism: 2}}
  output:
    destination:
      pvc: {{claimName: reports, path: {path}}}
  worker: {{retriesPerChunk: 2}}
{extra}"#
    )
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
    let mut db = TestDb::new("ctl_kill").await;
    let table = orders(&mut db, 1_000).await;
    let mut env = Env::start().await;
    let ns = "kill";
    env.tenant(ns).await;
    env.start_single_controller();
    env.apply(ns, &slow_report("orders", &table, "orders.csv", ""))
        .await;
    env.wait_phase(ns, "orders", Phase::Running, LONG).await;
    // Kill the first chunk pod seen running.
    let victim = loop {
        let running = pods_of(&env, ns, "reporting.dev/stage=chunks").await;
        if let Some(pod) = running
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            break pod;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    use kube::ResourceExt;
    env.cluster
        .runner()
        .unwrap()
        .kill_pod(ns, &victim.name_any())
        .await
        .unwrap();
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
    db.assert_report_matches(
        &env.pvc_dir(ns).join("orders.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_chunk_error_fails_at_once_and_retry_reruns_only_unfinished_chunks() {
    let mut db = TestDb::new("ctl_perm").await;
    let table = orders(&mut db, 1_000).await;
    let mut env = Env::start().await;
    let ns = "perm";
    env.tenant(ns).await;
    env.start_single_controller();
    let spec = slow_report("orders", &table, "orders.csv", "")
        .replace("table: ", "columns: [id, customer, amount]\n    table: ");
    env.apply(ns, &spec).await;
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
    env.rjs(ns)
        .patch(
            "orders",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"reporting.dev/retry": "1"}}}),
            ),
        )
        .await
        .unwrap();
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let rerun = jobs.get("orders-chunks").await.unwrap();
    use kube::ResourceExt;
    let total = done.status.as_ref().unwrap().chunks.as_ref().unwrap().total;
    let done_before = reportjob::staging::parse_ranges(&completed_before).unwrap();
    let expected: Vec<usize> = (0..usize::try_from(total).unwrap())
        .filter(|i| !done_before.contains(i))
        .collect();
    assert_eq!(
        rerun.annotations()["reporting.dev/chunks"],
        reportjob::staging::compact_ranges(&expected),
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
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_at_each_stage_resumes_without_duplicates_through_api_faults() {
    let mut db = TestDb::new("ctl_restart").await;
    let table = orders(&mut db, 1_000).await;
    let mut env = Env::start().await;
    let ns = "restart";
    env.tenant(ns).await;
    env.start_single_controller();
    env.apply(ns, &slow_report("orders", &table, "orders.csv", ""))
        .await;

    // Planning: kill the controller as soon as the plan Job exists.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    env.wait_phase(ns, "orders", Phase::Planning, LONG).await;
    env.kill_controller(0);
    env.start_single_controller();
    // Chunks running: kill it again, and break the API around the new one.
    env.wait_for(ns, "orders", LONG, "a chunk done", |rj| {
        succeeded_chunks(rj) >= 1
    })
    .await;
    env.kill_controller(1);
    env.cluster
        .faults()
        .fail_next("patch", "reportjobs", 3, 500);
    env.cluster.faults().compact();
    env.cluster.faults().drop_watches();
    env.start_single_controller();
    // Assembling: kill it the moment it is seen.
    let seen = env
        .wait_for(ns, "orders", LONG, "assembling or done", |rj| {
            matches!(phase(rj), Some(Phase::Assembling | Phase::Succeeded))
        })
        .await;
    env.kill_controller(2);
    env.cluster.faults().drop_watches();
    env.cluster.restart().await.unwrap();
    env.start_single_controller();
    let done = env.wait_phase(ns, "orders", Phase::Succeeded, LONG).await;
    println!("killed while {:?}", phase(&seen));

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
    db.assert_report_matches(
        &env.pvc_dir(ns).join("orders.csv"),
        &db.all("orders"),
        "",
        false,
    )
    .await;
    db.drop_schema().await;
}
