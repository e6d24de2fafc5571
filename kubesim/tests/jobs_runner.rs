//! End-to-end tests of kubesim's Job controller and pod runner over real HTTP, with real processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "default";

/// The ceiling of every wait on a condition: generous, because a loaded machine (other test
/// binaries compiling beside this one) can slow a pod start by many seconds. Waits end as
/// soon as their condition holds, so a fast machine never waits this long.
const PATIENCE: Duration = Duration::from_secs(120);

struct Env {
    cluster: kubesim::Cluster,
    client: kube::Client,
    dir: tempfile::TempDir,
}

impl Env {
    fn pvc_dir(&self, claim: &str) -> PathBuf {
        self.dir.path().join("data/pvc").join(NS).join(claim)
    }
    /// A mount path inside the test's own directory, so no mountpoint is left on the host.
    fn mount(&self, name: &str) -> String {
        self.dir.path().join("mnt").join(name).display().to_string()
    }
    fn runner(&self) -> &kubesim::runner::RunnerHandle {
        self.cluster.runner().expect("runner")
    }
}

async fn start() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
        data_dir: Some(dir.path().join("data")),
        run_pods: true,
        images: vec![("busybox".into(), PathBuf::from("/bin/sh"))],
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    Env {
        cluster,
        client,
        dir,
    }
}

fn job(name: &str, spec: serde_json::Value, script: &str, mount: &str, claim: &str) -> Job {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", script],
                "env": [{"name": "DATA", "value": mount}],
                "volumeMounts": [{"name": "data", "mountPath": mount}]
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    });
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec
    }))
    .expect("job")
}

async fn create_pvc(client: &kube::Client, name: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("create pvc");
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

fn condition_types(job: &Job) -> Vec<String> {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.status == "True")
        .map(|c| c.type_.clone())
        .collect()
}

async fn wait_finished(client: &kube::Client, name: &str) -> Job {
    let api: Api<Job> = Api::namespaced(client.clone(), NS);
    wait_for(&format!("job {name} to finish"), PATIENCE, || async {
        let j = api.get(name).await.ok()?;
        (condition(&j, "Complete").is_some() || condition(&j, "Failed").is_some()).then_some(j)
    })
    .await
}

async fn job_pods(client: &kube::Client, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .expect("list pods")
        .items
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(p: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .clone()
}

fn index(p: &Pod) -> String {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/job-completion-index").cloned())
        .unwrap_or_default()
}

fn process_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn read_pids(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|s| s.trim().to_string())
        // A file created but not yet written holds no pid.
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test]
async fn indexed_job_completes_every_index_with_at_most_parallelism_pods_active() {
    let env = start().await;
    let mount = env.mount("indexed");
    create_pvc(&env.client, "indexed").await;
    let script = r#"echo "$JOB_COMPLETION_INDEX" > "$DATA/done-$JOB_COMPLETION_INDEX"; printf 'index %s done' "$JOB_COMPLETION_INDEX" > /dev/termination-log; sleep 0.3"#;
    let j = job(
        "indexed",
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        script,
        &mount,
        "indexed",
    );
    let api: Api<Job> = Api::namespaced(env.client.clone(), NS);
    api.create(&PostParams::default(), &j)
        .await
        .expect("create job");

    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let mut max_active = 0;
    let finished = loop {
        let pods = pods_api
            .list(&ListParams::default().labels("job-name=indexed"))
            .await
            .expect("pods");
        let active = pods
            .items
            .iter()
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
            .count();
        max_active = max_active.max(active);
        let j = api.get("indexed").await.expect("job");
        if condition(&j, "Complete").is_some() || condition(&j, "Failed").is_some() {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(
        condition(&finished, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    assert_eq!(
        condition_types(&finished),
        ["SuccessCriteriaMet", "Complete"]
    );
    let status = finished.status.clone().unwrap_or_default();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-3"));
    assert_eq!(status.succeeded, Some(4));
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert!(max_active <= 2, "{max_active} pods were active at once");
    assert!(max_active >= 1);

    // The PVC directory on the host holds what each pod wrote at its mountPath.
    for i in 0..4 {
        let written = std::fs::read_to_string(env.pvc_dir("indexed").join(format!("done-{i}")))
            .expect("file written through the PVC mount");
        assert_eq!(written.trim(), i.to_string());
    }
    // Termination messages are read back into the pod status; pods carry the index and owner.
    let pods = job_pods(&env.client, "indexed").await;
    assert_eq!(pods.len(), 4);
    for p in &pods {
        let t = terminated(p).expect("terminated state");
        assert_eq!(t.exit_code, 0);
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert_eq!(
            t.message.as_deref(),
            Some(format!("index {} done", index(p)).as_str())
        );
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert!(
            p.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with(&format!("indexed-{}-", index(p)))
        );
    }
}

#[tokio::test]
async fn failing_index_is_retried_per_backoff_limit_per_index_then_reported() {
    let env = start().await;
    let mount = env.mount("perindex");
    let script = r#"if [ "$JOB_COMPLETION_INDEX" = 1 ]; then echo boom; exit 3; fi"#;
    let j = job(
        "perindex",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 1}),
        script,
        &mount,
        "perindex",
    );
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let done = wait_finished(&env.client, "perindex").await;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(condition(&done, "Failed").as_deref(), Some("FailedIndexes"));
    assert_eq!(condition_types(&done), ["FailureTarget", "Failed"]);
    assert_eq!(status.failed_indexes.as_deref(), Some("1"));
    assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
    let pods = job_pods(&env.client, "perindex").await;
    let index1: Vec<&Pod> = pods.iter().filter(|p| index(p) == "1").collect();
    assert_eq!(index1.len(), 2, "one try plus backoffLimitPerIndex=1 retry");
    for p in index1 {
        assert_eq!(phase(p), "Failed");
        assert_eq!(terminated(p).map(|t| t.exit_code), Some(3));
    }
    assert_eq!(status.failed, Some(2));
}

#[tokio::test]
async fn fail_index_rule_stops_retries_of_that_index_at_once() {
    let env = start().await;
    let mount = env.mount("failindex");
    let script = r#"if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 42; fi"#;
    let j = job(
        "failindex",
        json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 3,
               "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}}),
        script,
        &mount,
        "failindex",
    );
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let done = wait_finished(&env.client, "failindex").await;
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref()),
        Some("0")
    );
    assert_eq!(condition(&done, "Failed").as_deref(), Some("FailedIndexes"));
    let pods = job_pods(&env.client, "failindex").await;
    assert_eq!(
        pods.iter().filter(|p| index(p) == "0").count(),
        1,
        "no retry after FailIndex"
    );
}

#[tokio::test]
async fn killed_pod_is_retried_and_reports_exit_code_137() {
    let env = start().await;
    let mount = env.mount("killed");
    // The first run waits to be killed; the retry finds the marker and succeeds.
    let script = r#"if [ -e "$DATA/started" ]; then exit 0; fi; touch "$DATA/started"; sleep 600"#;
    let j = job(
        "killed",
        json!({"backoffLimit": 2}),
        script,
        &mount,
        "killed",
    );
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let marker = env.pvc_dir("killed").join("started");
    let first = wait_for("first pod running", PATIENCE, || async {
        let pods = job_pods(&env.client, "killed").await;
        let p = pods.into_iter().find(|p| phase(p) == "Running")?;
        marker.exists().then_some(p)
    })
    .await;
    let name = first.metadata.name.clone().expect("name");
    env.runner().kill_pod(NS, &name).await.expect("kill");
    let done = wait_finished(&env.client, "killed").await;
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    let status = done.status.clone().unwrap_or_default();
    assert_eq!((status.failed, status.succeeded), (Some(1), Some(1)));
    let killed = Api::<Pod>::namespaced(env.client.clone(), NS)
        .get(&name)
        .await
        .expect("pod");
    assert_eq!(phase(&killed), "Failed");
    assert_eq!(terminated(&killed).map(|t| t.exit_code), Some(137));
}

#[tokio::test]
async fn fail_pod_reports_the_given_exit_code_to_the_pod_failure_policy() {
    let env = start().await;
    let mount = env.mount("failpod");
    let script = r#"touch "$DATA/started"; sleep 600"#;
    let j = job(
        "failpod",
        json!({"backoffLimit": 5,
               "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [7]}}]}}),
        script,
        &mount,
        "failpod",
    );
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let marker = env.pvc_dir("failpod").join("started");
    let pod = wait_for("pod running", PATIENCE, || async {
        let p = job_pods(&env.client, "failpod")
            .await
            .into_iter()
            .find(|p| phase(p) == "Running")?;
        marker.exists().then_some(p)
    })
    .await;
    env.runner()
        .fail_pod(NS, pod.metadata.name.as_deref().unwrap_or_default(), 7)
        .await
        .expect("fail");
    let done = wait_finished(&env.client, "failpod").await;
    assert_eq!(
        condition(&done, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    assert_eq!(
        job_pods(&env.client, "failpod").await.len(),
        1,
        "FailJob: no retry"
    );
}

#[tokio::test]
async fn suspend_kills_pods_resume_recreates_them_and_job_deletion_kills_processes() {
    let env = start().await;
    let mount = env.mount("suspend");
    let script = r#"echo $$ > "$DATA/pid-$HOSTNAME-$(date +%s%N)"; exec sleep 600"#;
    let j = job(
        "suspend",
        json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed"}),
        script,
        &mount,
        "suspend",
    );
    let api: Api<Job> = Api::namespaced(env.client.clone(), NS);
    api.create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let dir = env.pvc_dir("suspend");
    let first = wait_for("two processes", PATIENCE, || async {
        let pids = read_pids(&dir, "pid-");
        (pids.len() == 2).then_some(pids)
    })
    .await;
    assert!(first.iter().all(|p| process_alive(p)));

    api.patch(
        "suspend",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    wait_for("suspended processes gone", PATIENCE, || async {
        first.iter().all(|p| !process_alive(p)).then_some(())
    })
    .await;
    let suspended = wait_for("Suspended condition", PATIENCE, || async {
        let j = api.get("suspend").await.ok()?;
        condition(&j, "Suspended").map(|_| j)
    })
    .await;
    assert_eq!(
        condition(&suspended, "Suspended").as_deref(),
        Some("JobSuspended")
    );
    assert_eq!(
        suspended.status.as_ref().and_then(|s| s.failed),
        None,
        "suspension is no failure"
    );
    wait_for("pods deleted", PATIENCE, || async {
        job_pods(&env.client, "suspend")
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    api.patch(
        "suspend",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let second = wait_for("recreated processes", PATIENCE, || async {
        let pids: Vec<String> = read_pids(&dir, "pid-")
            .into_iter()
            .filter(|p| !first.contains(p))
            .collect();
        (pids.len() == 2).then_some(pids)
    })
    .await;
    assert!(second.iter().all(|p| process_alive(p)));

    api.delete("suspend", &DeleteParams::background())
        .await
        .expect("delete job");
    wait_for("processes of the deleted job gone", PATIENCE, || async {
        second.iter().all(|p| !process_alive(p)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_kills_its_pods() {
    let env = start().await;
    let mount = env.mount("deadline");
    let script = r#"echo $$ > "$DATA/pid"; exec sleep 600"#;
    let j = job("deadline", json!({}), script, &mount, "deadline");
    let api: Api<Job> = Api::namespaced(env.client.clone(), NS);
    api.create(&PostParams::default(), &j)
        .await
        .expect("create job");
    // The deadline is set once the pod runs (it is mutable, as upstream): a pod slow to
    // start on a loaded machine cannot miss it, and the Job's startTime is long past.
    let dir = env.pvc_dir("deadline");
    let pid = wait_for("the pod's process", PATIENCE, || async {
        let pid = std::fs::read_to_string(dir.join("pid")).ok()?;
        let pid = pid.trim().to_string();
        (!pid.is_empty()).then_some(pid)
    })
    .await;
    assert!(process_alive(&pid));
    api.patch(
        "deadline",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 1}})),
    )
    .await
    .expect("set the deadline");
    let done = wait_finished(&env.client, "deadline").await;
    assert_eq!(
        condition(&done, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    assert_eq!(condition_types(&done), ["FailureTarget", "Failed"]);
    wait_for("the pod's process killed", PATIENCE, || async {
        (!process_alive(&pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn secret_env_reaches_the_process_and_fallback_message_comes_from_logs() {
    let env = start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "data": {"password": "czNjcjN0IHZhbHVl"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let mount = env.mount("secret");
    let script = r#"printf '%s' "$PASSWORD" > /dev/termination-log"#;
    let mut j = job("secret", json!({}), script, &mount, "secret");
    let mut value = serde_json::to_value(&j).expect("json");
    value["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}));
    value["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")[0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    j = serde_json::from_value(value).expect("job");
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    wait_finished(&env.client, "secret").await;
    let pods = job_pods(&env.client, "secret").await;
    assert_eq!(
        terminated(&pods[0]).and_then(|t| t.message).as_deref(),
        Some("s3cr3t value")
    );

    // FallbackToLogsOnError: an empty message on failure is the log's tail.
    let script = r#"echo "first line"; echo "last words" >&2; exit 1"#;
    let mut value = serde_json::to_value(job(
        "fallback",
        json!({"backoffLimit": 0}),
        script,
        &mount,
        "secret",
    ))
    .expect("json");
    value["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] =
        json!("FallbackToLogsOnError");
    let j: Job = serde_json::from_value(value).expect("job");
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let done = wait_finished(&env.client, "fallback").await;
    assert_eq!(
        condition(&done, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let pods = job_pods(&env.client, "fallback").await;
    assert_eq!(
        terminated(&pods[0]).and_then(|t| t.message).as_deref(),
        Some("first line\nlast words")
    );
}

#[tokio::test]
async fn missing_secret_keeps_pod_pending_with_create_container_config_error() {
    let env = start().await;
    let mount = env.mount("nosecret");
    let mut value = serde_json::to_value(job("nosecret", json!({}), "exit 0", &mount, "nosecret"))
        .expect("json");
    value["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}));
    let j: Job = serde_json::from_value(value).expect("job");
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let pod = wait_for("config error", PATIENCE, || async {
        let p = job_pods(&env.client, "nosecret").await.into_iter().next()?;
        let reason = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .state
            .as_ref()?
            .waiting
            .as_ref()?
            .reason
            .clone()?;
        (reason == "CreateContainerConfigError").then_some(p)
    })
    .await;
    assert_eq!(phase(&pod), "Pending");
    // Creating the secret lets the pod start on the next retry, as upstream.
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "absent"}, "data": {"k": "dg=="}}))
            .expect("s");
    Api::<Secret>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let done = wait_finished(&env.client, "nosecret").await;
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
}

#[tokio::test]
async fn finished_job_is_deleted_after_ttl_seconds_after_finished() {
    let env = start().await;
    let mount = env.mount("ttl");
    let j = job(
        "ttl",
        json!({"ttlSecondsAfterFinished": 3600}),
        "exit 0",
        &mount,
        "ttl",
    );
    let api: Api<Job> = Api::namespaced(env.client.clone(), NS);
    api.create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let done = wait_finished(&env.client, "ttl").await;
    let pod_dirs = env.dir.path().join("data/pods").join(NS);
    let ttl_dirs = || {
        std::fs::read_dir(&pod_dirs)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ttl-"))
            .count()
    };
    assert_eq!(
        ttl_dirs(),
        1,
        "the pod's directory exists while the pod does"
    );
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    // The TTL drops to 1 s only now (it is mutable, as upstream): with 1 s from the start, a
    // loaded machine could collect the Job before the checks above.
    api.patch(
        "ttl",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ttlSecondsAfterFinished": 1}})),
    )
    .await
    .expect("lower the TTL");
    wait_for("job deleted by its TTL", PATIENCE, || async {
        matches!(api.get_opt("ttl").await, Ok(None)).then_some(())
    })
    .await;
    wait_for("its pods collected (Background)", PATIENCE, || async {
        job_pods(&env.client, "ttl").await.is_empty().then_some(())
    })
    .await;
    let pod_dirs = env.dir.path().join("data/pods").join(NS);
    wait_for("per-pod directories removed", PATIENCE, || async {
        let left = std::fs::read_dir(&pod_dirs)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ttl-"))
            .count();
        (left == 0).then_some(())
    })
    .await;
    // The PVC outlives its pods.
    assert!(env.pvc_dir("ttl").is_dir());
}

#[tokio::test]
async fn configmap_fieldref_and_volume_kinds_reach_the_process() {
    let env = start().await;
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"},
        "data": {"mode": "fast", "app.conf": "a=1\n"}
    }))
    .expect("cm");
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .expect("cm");
    let base = env.mount("volumes");
    let script = r#"set -e
out="$DATA/sub"
echo "$MODE $POD_NAME $POD_NS $IDX" > "$out/env"
cat "$CONF/app.conf" > "$out/conf"
echo scratch > "$SCRATCH/x"; cat "$SCRATCH/x" > "$out/scratch"
pwd > "$out/pwd""#;
    let value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "volumes", "namespace": NS},
        "spec": {"completions": 1, "completionMode": "Indexed", "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "busybox", "command": ["/bin/sh", "-c", script],
                "workingDir": format!("{base}/scratch"),
                "env": [
                    {"name": "DATA", "value": format!("{base}/data")},
                    {"name": "CONF", "value": format!("{base}/conf")},
                    {"name": "SCRATCH", "value": format!("{base}/scratch")},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "IDX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": format!("{base}/data/sub"), "subPath": "nested"},
                    {"name": "conf", "mountPath": format!("{base}/conf")},
                    {"name": "scratch", "mountPath": format!("{base}/scratch")}
                ]
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "vols"}},
                {"name": "conf", "configMap": {"name": "settings"}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }}}
    });
    let j: Job = serde_json::from_value(value).expect("job");
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let done = wait_finished(&env.client, "volumes").await;
    let pod = job_pods(&env.client, "volumes").await.remove(0);
    let log = std::fs::read_to_string(env.dir.path().join("data/logs").join(NS).join(format!(
        "{}.log",
        pod.metadata.name.clone().unwrap_or_default()
    )))
    .unwrap_or_default();
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached"),
        "log: {log}"
    );
    let nested = env.pvc_dir("vols").join("nested");
    let read = |f: &str| std::fs::read_to_string(nested.join(f)).expect(f);
    assert_eq!(
        read("env"),
        format!(
            "fast {} {NS} 0\n",
            pod.metadata.name.clone().unwrap_or_default()
        )
    );
    assert_eq!(read("conf"), "a=1\n");
    assert_eq!(read("scratch"), "scratch\n");
    assert_eq!(read("pwd").trim(), format!("{base}/scratch"));
}

#[tokio::test]
async fn job_completes_across_api_server_restart_and_dropped_watches_without_duplicates() {
    let env = start().await;
    let mount = env.mount("restart");
    let script = r#"echo run >> "$DATA/runs-$JOB_COMPLETION_INDEX"; sleep 0.5"#;
    let j = job(
        "restart",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        script,
        &mount,
        "restart",
    );
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let dir = env.pvc_dir("restart");
    wait_for("pods running", PATIENCE, || async {
        (0..3)
            .all(|i| dir.join(format!("runs-{i}")).exists())
            .then_some(())
    })
    .await;
    env.cluster.restart().await.expect("restart");
    env.cluster.faults().drop_watches();
    let done = wait_finished(&env.client, "restart").await;
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref()),
        Some("0-2")
    );
    assert_eq!(
        job_pods(&env.client, "restart").await.len(),
        3,
        "no duplicate pods"
    );
    for i in 0..3 {
        let runs = std::fs::read_to_string(dir.join(format!("runs-{i}"))).expect("runs");
        assert_eq!(runs.lines().count(), 1, "index {i} ran once");
    }
}

#[tokio::test]
async fn dropping_the_cluster_kills_every_pod_process() {
    let env = start().await;
    let mount = env.mount("drop");
    let script = r#"sleep 600 & echo $! > "$DATA/child"; echo $$ > "$DATA/pid"; wait"#;
    let j = job("drop", json!({}), script, &mount, "drop");
    Api::<Job>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &j)
        .await
        .expect("create job");
    let dir = env.pvc_dir("drop");
    let pids = wait_for("process started", PATIENCE, || async {
        let pid = std::fs::read_to_string(dir.join("pid")).ok()?;
        let child = std::fs::read_to_string(dir.join("child")).ok()?;
        let pids = [pid.trim().to_string(), child.trim().to_string()];
        // Files created but not yet written hold no pid.
        pids.iter().all(|p| !p.is_empty()).then_some(pids)
    })
    .await;
    assert!(pids.iter().all(|p| process_alive(p)));
    let Env {
        cluster,
        client,
        dir: tmp,
    } = env;
    drop(client);
    drop(cluster);
    wait_for("processes gone after drop", PATIENCE, || async {
        pids.iter().all(|p| !process_alive(p)).then_some(())
    })
    .await;
    drop(tmp);
}
