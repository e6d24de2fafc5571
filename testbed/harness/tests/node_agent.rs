//! The node agent (`testbed/node-agent`) against the real control plane (kube-apiserver,
//! kube-controller-manager and kube-scheduler started by `testbed::Testbed`): what reportjob
//! relies on when its stage pods run on the testbed, checked through the API server as the
//! product sees it. Jobs' pods and their termination messages, exit codes and reasons (with the
//! real Job controller's accounting of indexes, `backoffLimitPerIndex` and a FailIndex rule);
//! the environment (`$(VAR)` expansion, `fieldRef`, `secretKeyRef`, `configMapKeyRef`, a
//! missing Secret); volumes (provisioned PVCs, `subPath`, emptyDir, Secret and ConfigMap files,
//! the projected service-account token); identity (`runAsUser`, `runAsGroup`, `fsGroup` and its
//! change policy, the image's user, `runAsNonRoot`) and `readOnlyRootFilesystem`; image pull
//! errors and missing pull secrets; `activeDeadlineSeconds` of pods and Jobs; the deletion
//! handshake; restarts with back-off; readiness probes; logs through the API server; programs
//! under a pod's volumes; the Node and its Lease; `Agent::kill_pod` and `Agent::fail_pod`.
//!
//! One testbed serves the whole test binary; each test works in a namespace of its own. Pods
//! run `/bin/sh` through image rules; their mount paths live under the testbed's directory (the
//! agent creates missing mountpoints on the host filesystem).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStateTerminated, Namespace, Node, PersistentVolume, PersistentVolumeClaim,
    Pod, Secret, ServiceAccount,
};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use testbed::wait::{PATIENCE, eventually};

/// The image every pod here runs: `/bin/sh`, as root.
const SH: &str = "sh";
/// `/bin/sh` as the image's user 65532 (a distroless image's `USER nonroot`).
const NONROOT_SH: &str = "nonroot-sh";
/// `/bin/sh` copied under a directory of `/tmp` before the testbed starts: a pod with an
/// emptyDir at `/tmp` hides the original, and still runs (the agent runs its own copy).
const TMP_SH: &str = "tmp-sh";

struct Shared {
    testbed: testbed::Testbed,
    /// Where `TMP_SH`'s program was (on the host, under `/tmp`).
    tmp_program: PathBuf,
}

/// The test binary's cluster, started on first use; its processes die with the test process
/// (the harness starts them with a parent-death signal).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| {
        // Testbed::start blocks on its own runtime: not from inside a test's.
        std::thread::spawn(start)
            .join()
            .unwrap_or_else(|_| Err("starting the testbed panicked".into()))
    });
    match started {
        Ok(s) => s,
        Err(e) => panic!("the test cluster did not start: {e}"),
    }
}

fn testbed() -> &'static testbed::Testbed {
    &shared().testbed
}

fn start() -> Result<Shared, String> {
    let pid = std::process::id();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("node-agent-it-{pid}"));
    remove_stale(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let tmp_program = tmp_program().map_err(|e| format!("copying /bin/sh under /tmp: {e}"))?;
    let rules = [
        format!("{SH}=/bin/sh"),
        format!("{NONROOT_SH}=/bin/sh:65532"),
        format!("{TMP_SH}={}", tmp_program.display()),
    ];
    let images = rules
        .iter()
        .map(|r| testbed::ImageRule::parse(r).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let tb = testbed::Testbed::start(testbed::Config {
        dir,
        images,
        bin_dir: None,
    })
    .map_err(|e| format!("{e:#}"))?;
    eprintln!(
        "testbed: Kubernetes {} ready in {:.1} s at {}",
        tb.version(),
        tb.ready_in().as_secs_f64(),
        tb.dir().display()
    );
    Ok(Shared {
        testbed: tb,
        tmp_program,
    })
}

/// `/bin/sh` copied to `/tmp/node-agent-it-program/hidden-prog` (named like no image rule: a
/// `command[0]` is matched against the rules by its last path component too). Made once and
/// kept, so its path, size and time stay the same and the agent reuses its copy of it.
fn tmp_program() -> std::io::Result<PathBuf> {
    let dir = Path::new("/tmp/node-agent-it-program");
    let program = dir.join("hidden-prog");
    if std::fs::metadata(&program).is_ok_and(|m| m.is_file()) {
        return Ok(program);
    }
    std::fs::create_dir_all(dir)?;
    // Renamed into place: test processes starting together never see a partial copy.
    let partial = dir.join(format!(".hidden-prog.{}", std::process::id()));
    std::fs::copy("/bin/sh", &partial)?;
    std::fs::rename(&partial, &program)?;
    Ok(program)
}

/// Removes `node-agent-it-<pid>` directories under `parent` whose process is gone.
fn remove_stale(parent: &Path) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("node-agent-it-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A test's namespace and a client on the test's runtime.
struct Ns {
    client: Client,
    name: String,
}

impl Ns {
    /// A new namespace `<name>` with its `default` ServiceAccount made.
    async fn new(name: &str) -> Ns {
        let client = testbed().client().await.unwrap();
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        eventually(&format!("the default ServiceAccount of {name}"), || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten() }
        })
        .await;
        Ns {
            client,
            name: name.to_string(),
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// A mount path of this namespace's pods, under the testbed's directory (the agent creates
    /// missing mountpoints on the host).
    fn mnt(&self, name: &str) -> String {
        testbed()
            .dir()
            .join("mnt")
            .join(&self.name)
            .join(name)
            .display()
            .to_string()
    }

    async fn create_pod(&self, pod: Value) -> Pod {
        self.pods()
            .create(
                &PostParams::default(),
                &serde_json::from_value(pod).unwrap(),
            )
            .await
            .unwrap()
    }

    async fn create_job(&self, job: Value) -> Job {
        self.jobs()
            .create(
                &PostParams::default(),
                &serde_json::from_value(job).unwrap(),
            )
            .await
            .unwrap()
    }

    async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Api::<Secret>::namespaced(self.client.clone(), &self.name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                    .unwrap(),
            )
            .await
            .unwrap();
    }

    async fn config_map(&self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap(),
            )
            .await
            .unwrap();
    }

    /// A claim of the default class, waited on until Bound; returns its directory on the host.
    async fn pvc(&self, name: &str) -> PathBuf {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.name);
        let pvc = json!({"metadata": {"name": name}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        pvcs.create(
            &PostParams::default(),
            &serde_json::from_value(pvc).unwrap(),
        )
        .await
        .unwrap();
        let ns = &self.name;
        eventually(&format!("PVC {ns}/{name} to be bound"), || {
            let pvcs = pvcs.clone();
            async move {
                let pvc = pvcs.get(name).await.ok()?;
                (pvc.status?.phase.as_deref() == Some("Bound")).then_some(())
            }
        })
        .await;
        testbed().volume_dir(ns, name)
    }

    /// Waits until pod `name` satisfies `done`; on timeout panics with its status and log.
    async fn wait_pod(&self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let mut last = None;
        let found = testbed::wait::poll(PATIENCE, async || {
            let p = self.pods().get_opt(name).await.ok()??;
            if done(&p) {
                return Some(p);
            }
            last = Some(p);
            None
        })
        .await;
        if let Some(p) = found {
            return p;
        }
        panic!(
            "timed out after {PATIENCE:?} waiting for pod {}/{name} to be {what}; last status: {}\nlog:\n{}",
            self.name,
            serde_json::to_string_pretty(&last.map(|p| p.status)).unwrap(),
            self.log(name),
        );
    }

    /// Waits until pod `name` is Succeeded or Failed.
    async fn finished(&self, name: &str) -> Pod {
        self.wait_pod(name, "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await
    }

    /// Waits until pod `name` runs.
    async fn running(&self, name: &str) -> Pod {
        self.wait_pod(name, "Running", |p| phase(p) == "Running")
            .await
    }

    /// The log the agent keeps of the pod's container `main` (for failure messages).
    fn log(&self, pod: &str) -> String {
        let path = testbed().agent().log_path(&self.name, pod, "main");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits until Job `name` has a True Complete or Failed condition.
    async fn job_finished(&self, name: &str) -> Job {
        let mut last = None;
        let found = testbed::wait::poll(PATIENCE, async || {
            let j = self.jobs().get(name).await.ok()?;
            if condition(&j, "Complete").is_some() || condition(&j, "Failed").is_some() {
                return Some(j);
            }
            last = Some(j);
            None
        })
        .await;
        if let Some(j) = found {
            return j;
        }
        let pods: Vec<_> = self
            .job_pods(name)
            .await
            .into_iter()
            .map(|p| (p.metadata.name, p.status))
            .collect();
        panic!(
            "timed out after {PATIENCE:?} waiting for Job {}/{name} to finish; last status: {}\npods: {}",
            self.name,
            serde_json::to_string_pretty(&last.map(|j| j.status)).unwrap(),
            serde_json::to_string_pretty(&pods).unwrap(),
        );
    }

    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        let mut pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .unwrap()
            .items;
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        pods
    }

    /// kubectl (the control plane's own release) against the cluster, in this namespace.
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(kubectl_path())
            .arg("--kubeconfig")
            .arg(testbed().kubeconfig())
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap()
    }
}

/// kubectl of the control plane's release: `$REPORTJOB_TESTBED_BIN/kubectl`, else the one
/// `testbed/k8s/build.sh` built.
fn kubectl_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        testbed::control_plane_binaries()
            .expect("the control plane's binaries (testbed/k8s/build.sh)")
            .join("kubectl")
    })
    .clone()
}

/// A pod of one container `main` running `script` with `sh -c` (restartPolicy Never).
fn pod(name: &str, script: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": SH, "command": ["sh", "-c", script]}]}})
}

/// A Job whose pods run `script` (restartPolicy Never); `spec` adds to the Job's spec.
fn job(name: &str, mut spec: Value, script: &str) -> Value {
    spec["template"] = json!({"spec": {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": SH, "command": ["sh", "-c", script]}]}});
    json!({"metadata": {"name": name}, "spec": spec})
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(p: &Pod) -> ContainerStateTerminated {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| {
            panic!(
                "no terminated state: {}",
                serde_json::to_string_pretty(&p.status).unwrap()
            )
        })
}

/// (exit code, reason, message) of the first container.
fn ended(p: &Pod) -> (i32, String, Option<String>) {
    let t = terminated(p);
    (t.exit_code, t.reason.unwrap_or_default(), t.message)
}

/// The first container's waiting (reason, message).
fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

/// The reason of the Job's True condition `type_`.
fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

/// The types of the Job's True conditions, sorted.
fn condition_types(job: &Job) -> Vec<String> {
    let mut types: Vec<String> = job
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.status == "True")
        .map(|c| c.type_.clone())
        .collect();
    types.sort();
    types
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

/// A file's contents once it ends with a newline (written completely).
async fn written(path: &Path) -> String {
    eventually(&format!("{} to be written", path.display()), || async {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Termination messages, exit codes and reasons

/// A Job of one pod (backoffLimit 0) and how it must end.
struct Case {
    job: &'static str,
    script: &'static str,
    policy: Option<&'static str>,
    /// The Job's True condition and its reason.
    outcome: (&'static str, &'static str),
    /// The container's exit code, reason and termination message.
    ended: (i32, &'static str, Option<&'static str>),
}

#[tokio::test]
async fn job_pods_report_termination_message_exit_code_and_reason() {
    let ns = Ns::new("na-term").await;
    const DONE: (&str, &str) = ("Complete", "CompletionsReached");
    const FAILED: (&str, &str) = ("Failed", "BackoffLimitExceeded");
    const FALLBACK: Option<&str> = Some("FallbackToLogsOnError");
    let cases = [
        // Written to the termination-message file: reported as it is, on success...
        Case {
            job: "ok",
            script: "echo working; printf 'report ready' > /dev/termination-log",
            policy: None,
            outcome: DONE,
            ended: (0, "Completed", Some("report ready")),
        },
        // ... and on failure.
        Case {
            job: "bad",
            script: "printf 'bad input' > /dev/termination-log; exit 3",
            policy: None,
            outcome: FAILED,
            ended: (3, "Error", Some("bad input")),
        },
        // FallbackToLogsOnError: an empty message on failure is the log's tail...
        Case {
            job: "fallback",
            script: "echo first line; echo last words; exit 1",
            policy: FALLBACK,
            outcome: FAILED,
            ended: (1, "Error", Some("first line\nlast words")),
        },
        // ... standard error included (one stream: the order between two is not kept) ...
        Case {
            job: "fallback-stderr",
            script: "echo on stderr >&2; exit 1",
            policy: FALLBACK,
            outcome: FAILED,
            ended: (1, "Error", Some("on stderr")),
        },
        // ... only on failure ...
        Case {
            job: "fallback-ok",
            script: "echo chatter",
            policy: FALLBACK,
            outcome: DONE,
            ended: (0, "Completed", None),
        },
        // ... and a message written wins over the log.
        Case {
            job: "fallback-msg",
            script: "echo chatter; printf 'own words' > /dev/termination-log; exit 2",
            policy: FALLBACK,
            outcome: FAILED,
            ended: (2, "Error", Some("own words")),
        },
        // The default policy (File) never reads the log.
        Case {
            job: "file-policy",
            script: "echo chatter; exit 5",
            policy: None,
            outcome: FAILED,
            ended: (5, "Error", None),
        },
    ];
    for c in &cases {
        let mut j = job(c.job, json!({"backoffLimit": 0}), c.script);
        if let Some(policy) = c.policy {
            j["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] =
                json!(policy);
        }
        ns.create_job(j).await;
    }
    for c in &cases {
        let name = c.job;
        let done = ns.job_finished(name).await;
        let (cond, reason) = c.outcome;
        assert_eq!(
            condition(&done, cond).as_deref(),
            Some(reason),
            "Job {name}"
        );
        let pods = ns.job_pods(name).await;
        assert_eq!(pods.len(), 1, "Job {name}: backoffLimit 0, one pod");
        let p = &pods[0];
        let (code, container_reason, message) = c.ended;
        let want_phase = if code == 0 { "Succeeded" } else { "Failed" };
        assert_eq!(phase(p), want_phase, "Job {name}");
        assert_eq!(
            ended(p),
            (
                code,
                container_reason.to_string(),
                message.map(str::to_string)
            ),
            "Job {name}"
        );
        let t = terminated(p);
        assert!(
            t.started_at.is_some() && t.finished_at.is_some() && t.container_id.is_some(),
            "Job {name}: {t:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Indexed Jobs: backoffLimitPerIndex and a FailIndex rule

#[tokio::test]
async fn indexed_job_fails_an_index_at_once_on_fail_index_and_retries_others_per_index() {
    let ns = Ns::new("na-index").await;
    // Index 1 exits 42 (FailIndex: no retry), index 2 exits 3 (retried once, then failed), the
    // others succeed with a message naming their index.
    let script = r#"case "$JOB_COMPLETION_INDEX" in
1) exit 42;;
2) exit 3;;
esac
printf 'index %s done' "$JOB_COMPLETION_INDEX" > /dev/termination-log"#;
    ns.create_job(job(
        "idx",
        json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": [{"action": "FailIndex",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}}),
        script,
    ))
    .await;
    let done = ns.job_finished("idx").await;
    let status = done.status.clone().unwrap();
    assert_eq!(condition(&done, "Failed").as_deref(), Some("FailedIndexes"));
    assert_eq!(condition_types(&done), ["Failed", "FailureTarget"]);
    assert_eq!(status.failed_indexes.as_deref(), Some("1,2"));
    assert_eq!(status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!((status.succeeded, status.failed), (Some(2), Some(3)));

    let pods = ns.job_pods("idx").await;
    let of = |i: &str| -> Vec<&Pod> { pods.iter().filter(|p| index(p) == i).collect() };
    let one = of("1");
    assert_eq!(one.len(), 1, "FailIndex: index 1 is not retried");
    assert_eq!(phase(one[0]), "Failed");
    assert_eq!(ended(one[0]), (42, "Error".into(), None));
    let two = of("2");
    assert_eq!(
        two.len(),
        2,
        "index 2: one try and backoffLimitPerIndex=1 retry"
    );
    for p in two {
        assert_eq!(phase(p), "Failed");
        assert_eq!(ended(p), (3, "Error".into(), None));
    }
    for i in ["0", "3"] {
        let ok = of(i);
        assert_eq!(ok.len(), 1, "index {i}");
        assert_eq!(phase(ok[0]), "Succeeded");
        assert_eq!(
            ended(ok[0]),
            (0, "Completed".into(), Some(format!("index {i} done")))
        );
        let name = ok[0].metadata.name.clone().unwrap();
        assert!(name.starts_with(&format!("idx-{i}-")), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Environment

#[tokio::test]
async fn env_expands_references_and_resolves_field_secret_and_config_map_refs() {
    let ns = Ns::new("na-env").await;
    ns.secret("creds", &[("password", "s3cr3t value")]).await;
    ns.config_map("settings", &[("mode", "fast")]).await;
    // `$1` is the expanded argument; the script itself holds no `$(` for the agent to expand.
    let script = r#"printf '%s\n' "$A" "$B" "$C" "$D" "$1" "$POD_NAME" "$POD_NS" "$IDX" "$JOB_COMPLETION_INDEX" "$PASSWORD" "$MODE" "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" > /dev/termination-log"#;
    let mut j = job(
        "env",
        json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimit": 0}),
        script,
    );
    let c = &mut j["spec"]["template"]["spec"]["containers"][0];
    c["command"] = json!(["sh", "-c", script, "sh", "$(B)"]);
    c["env"] = json!([
        {"name": "A", "value": "alpha"},
        {"name": "B", "value": "$(A)-beta"},
        {"name": "C", "value": "$$(A)"},
        {"name": "D", "value": "$(UNDEFINED)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IDX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}
    ]);
    ns.create_job(j).await;
    let done = ns.job_finished("env").await;
    assert_eq!(
        condition(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    let pods = ns.job_pods("env").await;
    assert_eq!(pods.len(), 2);
    let port = testbed().api_port();
    for p in &pods {
        let name = p.metadata.name.clone().unwrap();
        let i = index(p);
        let want = format!(
            "alpha\nalpha-beta\n$(A)\n$(UNDEFINED)\nalpha-beta\n{name}\n{}\n{i}\n{i}\ns3cr3t value\nfast\n127.0.0.1\n{port}\n",
            ns.name
        );
        assert_eq!(ended(p), (0, "Completed".into(), Some(want)));
    }
}

#[tokio::test]
async fn missing_secret_keeps_the_pod_pending_with_create_container_config_error() {
    let ns = Ns::new("na-nosecret").await;
    let mut p = pod("nosecret", r#"printf '%s' "$X" > /dev/termination-log"#);
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]);
    ns.create_pod(p).await;
    let pending = ns
        .wait_pod("nosecret", "waiting on CreateContainerConfigError", |p| {
            waiting(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
    assert_eq!(phase(&pending), "Pending");
    assert_eq!(waiting(&pending).unwrap().1, r#"secret "absent" not found"#);
    // Once the Secret exists, the next retry starts the container, as upstream.
    ns.secret("absent", &[("k", "arrived")]).await;
    let done = ns.finished("nosecret").await;
    assert_eq!(phase(&done), "Succeeded");
    assert_eq!(
        ended(&done),
        (0, "Completed".into(), Some("arrived".into()))
    );
}

// ---------------------------------------------------------------------------------------------
// Volumes

#[tokio::test]
async fn pvc_empty_dir_secret_and_config_map_volumes_reach_the_process() {
    let ns = Ns::new("na-volumes").await;
    let host = ns.pvc("data").await;
    // The provisioned volume: the class's PersistentVolume bound to the claim, its hostPath the
    // directory the harness names.
    let pvc = Api::<PersistentVolumeClaim>::namespaced(ns.client.clone(), &ns.name)
        .get("data")
        .await
        .unwrap();
    let spec = pvc.spec.unwrap();
    assert_eq!(
        spec.storage_class_name.as_deref(),
        Some(testbed::STORAGE_CLASS)
    );
    let pv = Api::<PersistentVolume>::all(ns.client.clone())
        .get(spec.volume_name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        pv.spec.unwrap().host_path.map(|h| PathBuf::from(h.path)),
        Some(host.clone())
    );
    ns.secret("creds", &[("user", "reporter"), ("password", "pw")])
        .await;
    ns.config_map("settings", &[("app.conf", "a=1\n"), ("other", "x")])
        .await;
    let (data, scratch, creds, conf, nested) = (
        ns.mnt("data"),
        ns.mnt("scratch"),
        ns.mnt("creds"),
        ns.mnt("conf"),
        ns.mnt("nested"),
    );
    let script = r#"set -e
echo hello > "$DATA/out"
echo scratch > "$SCRATCH/x"
cat "$SCRATCH/x" > "$DATA/scratch"
ls "$CREDS" | sort > "$DATA/creds-files"
cat "$CREDS/user" "$CREDS/password" > "$DATA/creds"
ls "$CONF" > "$DATA/conf-files"
cat "$CONF/settings/app.conf" > "$DATA/conf"
if (echo x > "$CREDS/new") 2>/dev/null; then echo writable; else echo read-only; fi > "$DATA/creds-ro"
pwd > "$DATA/pwd"
echo nested > "$NESTED/n""#;
    let mut p = pod("vols", script);
    p["spec"]["volumes"] = json!([
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "conf", "configMap": {"name": "settings",
            "items": [{"key": "app.conf", "path": "settings/app.conf"}]}}
    ]);
    let c = &mut p["spec"]["containers"][0];
    c["workingDir"] = json!(scratch);
    c["env"] = json!([
        {"name": "DATA", "value": data}, {"name": "SCRATCH", "value": scratch},
        {"name": "CREDS", "value": creds}, {"name": "CONF", "value": conf},
        {"name": "NESTED", "value": nested}
    ]);
    c["volumeMounts"] = json!([
        {"name": "data", "mountPath": data}, {"name": "scratch", "mountPath": scratch},
        {"name": "creds", "mountPath": creds}, {"name": "conf", "mountPath": conf},
        {"name": "data", "mountPath": nested, "subPath": "sub/dir"}
    ]);
    let uid = ns.create_pod(p).await.metadata.uid.unwrap();
    let done = ns.finished("vols").await;
    assert_eq!(ended(&done).0, 0, "log: {}", ns.log("vols"));
    assert_eq!(phase(&done), "Succeeded");
    let read = |f: &str| std::fs::read_to_string(host.join(f)).unwrap();
    // The claim's files are on the host, at Testbed::volume_dir.
    assert_eq!(read("out"), "hello\n");
    assert_eq!(read("scratch"), "scratch\n");
    assert_eq!(read("creds-files"), "password\nuser\n");
    assert_eq!(read("creds"), "reporterpw");
    assert_eq!(read("conf-files"), "settings\n");
    assert_eq!(read("conf"), "a=1\n");
    assert_eq!(read("creds-ro"), "read-only\n");
    assert_eq!(read("pwd"), format!("{scratch}\n"));
    // subPath: a directory of the claim, made when missing.
    assert_eq!(read("sub/dir/n"), "nested\n");
    // The emptyDir was the pod's own: nothing of it reached the host's mountpoint, and the
    // pod's directory (emptyDirs, API-data volumes) goes once it has finished; the claim stays.
    assert!(!Path::new(&scratch).join("x").exists());
    let pod_dir = testbed()
        .dir()
        .join("pods")
        .join(&ns.name)
        .join(format!("vols-{uid}"));
    eventually("the pod's directory to be removed", || async {
        (!pod_dir.exists()).then_some(())
    })
    .await;
    assert!(host.join("out").exists());
}

#[tokio::test]
async fn projected_service_account_token_authenticates_as_the_pod() {
    let ns = Ns::new("na-token").await;
    let host = ns.pvc("data").await;
    let data = ns.mnt("data");
    // No curl in a pod's image: the pod copies what an in-cluster client reads, and the test
    // uses it against the API server.
    let script = r#"set -e
sa=/var/run/secrets/kubernetes.io/serviceaccount
for f in token ca.crt namespace; do test -s "$sa/$f"; done
cp "$sa/token" "$sa/ca.crt" "$sa/namespace" "$DATA/"
echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" > "$DATA/address"
sleep 3600"#;
    let mut p = pod("client", script);
    p["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    let c = &mut p["spec"]["containers"][0];
    c["env"] = json!([{"name": "DATA", "value": data}]);
    c["volumeMounts"] = json!([{"name": "data", "mountPath": data}]);
    let made = ns.create_pod(p).await;
    // The ServiceAccount admission added the projected volume.
    let spec = made.spec.as_ref().unwrap();
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .unwrap_or_else(|| panic!("no kube-api-access volume: {:?}", spec.volumes));
    assert!(vol.projected.is_some(), "{vol:?}");
    let uid = made.metadata.uid.clone().unwrap();

    let address = written(&host.join("address")).await;
    let tb = testbed();
    assert_eq!(address, format!("127.0.0.1:{}\n", tb.api_port()));
    let token = std::fs::read_to_string(host.join("token")).unwrap();
    let ca = std::fs::read_to_string(host.join("ca.crt")).unwrap();
    assert_eq!(ca, tb.ca_pem());
    assert_eq!(
        std::fs::read_to_string(host.join("namespace")).unwrap(),
        ns.name
    );

    // What the token authenticates as: the namespace's default ServiceAccount, bound to the pod.
    let as_pod = token_client(&token, &ca).await;
    let review = || async {
        Api::<SelfSubjectReview>::all(as_pod.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
                .unwrap(),
            )
            .await
    };
    let user = review().await.unwrap().status.unwrap().user_info.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:default", ns.name).as_str())
    );
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["client".to_string()])
    );
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-uid"),
        Some(&vec![uid])
    );
    // Bound to the pod: once the pod is gone, the token is refused.
    ns.pods()
        .delete("client", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the pod to be gone", || async {
        matches!(ns.pods().get_opt("client").await, Ok(None)).then_some(())
    })
    .await;
    eventually("the token to be refused", || async {
        match review().await {
            Err(kube::Error::Api(e)) if e.code == 401 => Some(()),
            _ => None,
        }
    })
    .await;
}

/// A client of the API server authenticating with a bearer token.
async fn token_client(token: &str, ca_pem: &str) -> Client {
    use base64::Engine as _;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        testbed().api_url(),
        base64::engine::general_purpose::STANDARD.encode(ca_pem),
        token.trim()
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Identity and readOnlyRootFilesystem

#[tokio::test]
async fn run_as_user_group_and_fs_group_set_the_process_identity_and_volume_group() {
    let ns = Ns::new("na-identity").await;
    let host = ns.pvc("data").await;
    let data = ns.mnt("data");
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let m = std::fs::metadata(&host).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (0, 0, 0o755),
        "a fresh volume is root-owned 0755"
    );
    let script = r#"id -u; id -g; id -G | tr ' ' '\n' | sort -n | tr '\n' ' '; echo
{ echo hi > "$DATA/f"; } 2>&1"#;
    // (One stream: the order of lines between standard output and error is not kept.)
    let make = |name: &str, sc: Value| {
        let mut p = pod(name, script);
        p["spec"]["securityContext"] = sc;
        p["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
        let c = &mut p["spec"]["containers"][0];
        c["env"] = json!([{"name": "DATA", "value": data}]);
        c["volumeMounts"] = json!([{"name": "data", "mountPath": data}]);
        p
    };
    // Without fsGroup, a non-root user cannot write the fresh (root-owned) volume.
    ns.create_pod(make("nofs", json!({"runAsUser": 65532})))
        .await;
    let p = ns.finished("nofs").await;
    assert_eq!(phase(&p), "Failed");
    assert_eq!(ended(&p).0, 2, "log: {}", ns.log("nofs"));
    let log = ns.log("nofs");
    assert!(log.starts_with("65532\n0\n0 \n"), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert!(!host.join("f").exists());

    // With fsGroup the volume is given to the group (setgid): the write succeeds and the file
    // belongs to the group.
    ns.create_pod(make(
        "withfs",
        json!({"runAsUser": 1001, "runAsGroup": 2002, "fsGroup": 3003, "supplementalGroups": [4004]}),
    ))
    .await;
    let p = ns.finished("withfs").await;
    assert_eq!(phase(&p), "Succeeded", "log: {}", ns.log("withfs"));
    assert_eq!(ns.log("withfs"), "1001\n2002\n2002 3003 4004 \n");
    let f = std::fs::metadata(host.join("f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (1001, 3003));
    let m = std::fs::metadata(&host).unwrap();
    assert_eq!((m.gid(), m.permissions().mode() & 0o7777), (3003, 0o2775));

    // The container's securityContext wins over the pod's.
    let mut p = make(
        "override",
        json!({"runAsUser": 1001, "runAsGroup": 2002, "fsGroup": 3003}),
    );
    p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1005, "runAsGroup": 2005});
    ns.create_pod(p).await;
    let p = ns.finished("override").await;
    assert_eq!(phase(&p), "Succeeded", "log: {}", ns.log("override"));
    assert_eq!(ns.log("override"), "1005\n2005\n2005 3003 \n");

    // The image's user applies when the pod names none (its group: 0, as a runtime's).
    let mut p = make("imageuser", json!({"fsGroup": 3003}));
    p["spec"]["containers"][0]["image"] = json!(NONROOT_SH);
    ns.create_pod(p).await;
    let p = ns.finished("imageuser").await;
    assert_eq!(phase(&p), "Succeeded", "log: {}", ns.log("imageuser"));
    assert_eq!(ns.log("imageuser"), "65532\n0\n0 3003 \n");

    // runAsNonRoot: refused at container start for an image running as root, as upstream's
    // kubelet does (the pod waits); an image whose user is not root passes.
    let made = ns
        .create_pod(make("rootimage", json!({"runAsNonRoot": true})))
        .await;
    let uid = made.metadata.uid.unwrap();
    let p = ns
        .wait_pod("rootimage", "refused by runAsNonRoot", |p| {
            waiting(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(
        waiting(&p).unwrap().1,
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"rootimage_{}({uid})\", container: main)",
            ns.name
        )
    );
    let mut p = make("nonroot", json!({"runAsNonRoot": true, "fsGroup": 3003}));
    p["spec"]["containers"][0]["image"] = json!(NONROOT_SH);
    ns.create_pod(p).await;
    let p = ns.finished("nonroot").await;
    assert_eq!(phase(&p), "Succeeded", "log: {}", ns.log("nonroot"));
    assert_eq!(ns.log("nonroot"), "65532\n0\n0 3003 \n");
}

#[tokio::test]
async fn fs_group_change_policy_on_root_mismatch_skips_a_volume_whose_root_matches() {
    let ns = Ns::new("na-fsgroup").await;
    let host = ns.pvc("data").await;
    let data = ns.mnt("data");
    let make = |name: &str, sc: Value, script: &str| {
        let mut p = pod(name, script);
        p["spec"]["securityContext"] = sc;
        p["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
        let c = &mut p["spec"]["containers"][0];
        c["env"] = json!([{"name": "DATA", "value": data}]);
        c["volumeMounts"] = json!([{"name": "data", "mountPath": data}]);
        p
    };
    // The stage pods' policy (crates/operator/src/controller/jobs.rs).
    let on_mismatch =
        json!({"runAsUser": 65532, "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"});
    ns.create_pod(make("first", on_mismatch.clone(), r#"mkdir "$DATA/d""#))
        .await;
    let p = ns.finished("first").await;
    assert_eq!(ended(&p).0, 0, "log: {}", ns.log("first"));
    // A file the group cannot write, left inside a volume whose root already matches.
    use std::os::unix::fs::PermissionsExt as _;
    let locked = host.join("d/locked");
    std::fs::write(&locked, b"x").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    let write = r#"echo y > "$DATA/d/locked""#;
    ns.create_pod(make("second", on_mismatch, write)).await;
    let p = ns.finished("second").await;
    assert_eq!(phase(&p), "Failed", "OnRootMismatch left the file alone");
    assert_eq!(ended(&p).0, 2, "log: {}", ns.log("second"));
    assert_eq!(std::fs::read_to_string(&locked).unwrap(), "x");
    // The default policy (Always) walks the volume.
    ns.create_pod(make(
        "third",
        json!({"runAsUser": 65532, "fsGroup": 2000}),
        write,
    ))
    .await;
    let p = ns.finished("third").await;
    assert_eq!(phase(&p), "Succeeded", "log: {}", ns.log("third"));
    assert_eq!(std::fs::read_to_string(&locked).unwrap(), "y\n");
}

#[tokio::test]
async fn read_only_root_filesystem_leaves_volumes_and_the_termination_log_writable() {
    let ns = Ns::new("na-readonly").await;
    let host = ns.pvc("output").await;
    let (output, scratch) = (ns.mnt("output"), ns.mnt("scratch"));
    // On the host's `/`, shared with other test processes: named by this process too.
    let probe = format!("/node-agent-ro-probe-{}-{}", std::process::id(), ns.name);
    // A stage pod's shape (crates/operator/src/controller/jobs.rs): the image's non-root user with fsGroup
    // OnRootMismatch, a read-only root, no privileges, the claim and a scratch emptyDir.
    let script = r#"id -u; id -g
if (echo x > "$PROBE") 2>/dev/null; then echo root-writable; else echo root-refused; fi
(echo x > "$PROBE") 2>&1 | grep -o 'Read-only file system' || true
echo kept > "$SCRATCH/f" && cat "$SCRATCH/f"
echo report > "$OUTPUT/report.csv" && echo output-written
if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then echo token; else echo no-token; fi
printf 'stage done' > /dev/termination-log"#;
    let make = |name: &str, read_only: bool| {
        let mut p = pod(name, script);
        p["spec"]["automountServiceAccountToken"] = json!(false);
        p["spec"]["securityContext"] = json!({"runAsUser": 65532, "runAsGroup": 65532,
            "fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"}});
        p["spec"]["volumes"] = json!([
            {"name": "output", "persistentVolumeClaim": {"claimName": "output"}},
            {"name": "scratch", "emptyDir": {}}
        ]);
        let c = &mut p["spec"]["containers"][0];
        c["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
        c["securityContext"] = json!({"allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": read_only, "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}});
        c["env"] = json!([{"name": "OUTPUT", "value": output},
            {"name": "SCRATCH", "value": scratch}, {"name": "PROBE", "value": probe}]);
        c["volumeMounts"] = json!([{"name": "output", "mountPath": output},
            {"name": "scratch", "mountPath": scratch}]);
        p
    };
    ns.create_pod(make("ro", true)).await;
    let p = ns.finished("ro").await;
    let leaked = Path::new(&probe).exists();
    let _ = std::fs::remove_file(&probe);
    assert_eq!(
        ended(&p),
        (0, "Completed".into(), Some("stage done".into())),
        "log: {}",
        ns.log("ro")
    );
    assert_eq!(
        ns.log("ro"),
        "65532\n65532\nroot-refused\nRead-only file system\nkept\noutput-written\nno-token\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("report.csv")).unwrap(),
        "report\n"
    );
    assert!(!leaked, "nothing reached the host's /");

    // Without the flag the root is writable (as root's: the probe runs as root here).
    let mut rw = make("rw", false);
    rw["spec"]["securityContext"] = json!({});
    rw["spec"]["containers"][0]["securityContext"] = json!({"readOnlyRootFilesystem": false});
    ns.create_pod(rw).await;
    let p = ns.finished("rw").await;
    let created = Path::new(&probe).exists();
    let _ = std::fs::remove_file(&probe);
    assert_eq!(ended(&p).0, 0, "log: {}", ns.log("rw"));
    assert_eq!(
        ns.log("rw"),
        "0\n0\nroot-writable\nkept\noutput-written\nno-token\n"
    );
    assert!(created);
}

// ---------------------------------------------------------------------------------------------
// Images

#[tokio::test]
async fn unmapped_image_is_err_image_pull_then_image_pull_back_off() {
    let ns = Ns::new("na-image").await;
    ns.create_pod(
        json!({"metadata": {"name": "noimage"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "registry.example/unknown"}]}}),
    )
    .await;
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "ErrImagePull then ImagePullBackOff then ErrImagePull: {seen:?}"
        );
        let p = ns.pods().get("noimage").await.unwrap();
        assert!(
            matches!(phase(&p), "" | "Pending"),
            "never leaves Pending: {:?}",
            p.status
        );
        // The kubelet may first report the container as ContainerCreating.
        if let Some(w) = waiting(&p)
            && seen.last() != Some(&w)
            && w.0 != "ContainerCreating"
        {
            seen.push(w);
        }
        tokio::time::sleep(testbed::wait::POLL_INTERVAL).await;
    }
    assert_eq!(seen[0].0, "ErrImagePull", "{seen:?}");
    assert!(
        seen[0]
            .1
            .contains(r#"failed to pull and unpack image "registry.example/unknown:latest""#),
        "{seen:?}"
    );
    assert_eq!(
        seen[1],
        (
            "ImagePullBackOff".to_string(),
            r#"Back-off pulling image "registry.example/unknown""#.to_string()
        )
    );
    assert_eq!(seen[2].0, "ErrImagePull", "pulled again after the back-off");
}

#[tokio::test]
async fn a_program_under_a_pods_empty_dir_still_runs_from_the_agents_copy() {
    let ns = Ns::new("na-hidden").await;
    let original = shared().tmp_program.clone();
    let script = format!(
        r#"echo hi > /tmp/f; ls -A /tmp; if [ -e {} ]; then echo visible; else echo hidden; fi"#,
        original.display()
    );
    let tmp_volume = |mut p: Value| {
        p["spec"]["volumes"] = json!([{"name": "tmp", "emptyDir": {}}]);
        p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "tmp", "mountPath": "/tmp"}]);
        p
    };
    // The image's program lives under /tmp on the host; the pod's /tmp is an emptyDir.
    ns.create_pod(tmp_volume(json!({"metadata": {"name": "copy"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": TMP_SH, "args": ["-c", script]}]}})))
        .await;
    let p = ns.finished("copy").await;
    assert_eq!(ended(&p).0, 0, "log: {}", ns.log("copy"));
    assert_eq!(ns.log("copy"), "f\nhidden\n");
    let image_id = p.status.unwrap().container_statuses.unwrap()[0]
        .image_id
        .clone();
    assert!(
        !image_id.contains(&original.display().to_string()),
        "runs a copy, not {}: {image_id}",
        original.display()
    );

    // A command given by a path the pod's volume hides cannot run: the pod fails at start and
    // says why.
    let mut p = pod("hidden", "true");
    p["spec"]["containers"][0]["command"] = json!([original, "-c", "true"]);
    ns.create_pod(tmp_volume(p)).await;
    let p = ns.finished("hidden").await;
    assert_eq!(phase(&p), "Failed");
    let (code, reason, message) = ended(&p);
    assert_eq!((code, reason.as_str()), (128, "StartError"));
    let message = message.unwrap_or_default();
    assert!(
        message.contains(&original.display().to_string()) && message.contains("/tmp"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_image_pull_secrets_are_a_warning_and_the_pull_goes_ahead() {
    let ns = Ns::new("na-pullsecret").await;
    ns.secret("present", &[("x", "y")]).await;
    let mut p = pod("missing", "true");
    p["spec"]["imagePullSecrets"] =
        json!([{"name": "regcred"}, {"name": "present"}, {"name": "other"}]);
    ns.create_pod(p).await;
    let p = ns.finished("missing").await;
    assert_eq!(phase(&p), "Succeeded");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(ns.client.clone(), &ns.name);
    let ev = eventually("the FailedToRetrieveImagePullSecret event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("missing")
            })
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.note.as_deref(),
        Some(
            "Unable to retrieve some image pull secrets (regcred, other); attempting to pull the image may not succeed."
        )
    );
}

#[tokio::test]
async fn restart_policy_always_restarts_a_failing_container_with_back_off() {
    let ns = Ns::new("na-crash").await;
    let mut p = pod("crash", "echo run; exit 3");
    p["spec"]["restartPolicy"] = json!("Always");
    ns.create_pod(p).await;
    let p = ns
        .wait_pod("crash", "restarted twice, backing off", |p| {
            let c = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first());
            c.is_some_and(|c| c.restart_count >= 2)
                && waiting(p).is_some_and(|(r, _)| r == "CrashLoopBackOff")
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let c = p.status.unwrap().container_statuses.unwrap().remove(0);
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    assert!(!c.ready);
    // The previous run's log, through the API server.
    let previous = LogParams {
        previous: true,
        ..LogParams::default()
    };
    assert_eq!(ns.pods().logs("crash", &previous).await.unwrap(), "run\n");
}

/// Whether the pod's Ready condition is True.
fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn readiness_follows_an_http_get_probe_on_a_named_port() {
    let ns = Ns::new("na-ready").await;
    let (up, down) = (testbed::free_port().unwrap(), testbed::free_port().unwrap());
    // As the chart's controller Deployment probes: httpGet on a named container port.
    let probed = |name: &str, command: Value, port: u16| {
        json!({"metadata": {"name": name}, "spec": {"containers": [{
            "name": "main", "image": SH, "command": command,
            "ports": [{"name": "metrics", "containerPort": port}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 1}}]}})
    };
    // python3 from the host's PATH (a command[0] no image rule names).
    ns.create_pod(probed(
        "serving",
        json!([
            "python3",
            "-m",
            "http.server",
            up.to_string(),
            "--bind",
            "127.0.0.1"
        ]),
        up,
    ))
    .await;
    let p = ns.wait_pod("serving", "Ready", ready).await;
    assert_eq!(phase(&p), "Running");
    assert!(p.status.unwrap().container_statuses.unwrap()[0].ready);
    // Probing a port nobody serves: Running, never Ready.
    ns.create_pod(probed("unserved", json!(["sleep", "3600"]), down))
        .await;
    let p = ns
        .wait_pod("unserved", "running for a few probe periods", |p| {
            let started = p.status.as_ref().and_then(|s| s.start_time.clone());
            phase(p) == "Running"
                && started.is_some_and(|t| {
                    k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second() >= 4
                })
        })
        .await;
    assert!(!ready(&p), "{:?}", p.status);
    assert!(!p.status.unwrap().container_statuses.unwrap()[0].ready);
    for name in ["serving", "unserved"] {
        ns.pods()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines, deletion, kills

#[tokio::test]
async fn pod_active_deadline_fails_the_pod_with_deadline_exceeded() {
    let ns = Ns::new("na-deadline").await;
    let mut p = pod("deadline", "exec sleep 600");
    p["spec"]["activeDeadlineSeconds"] = json!(3);
    p["spec"]["terminationGracePeriodSeconds"] = json!(5);
    ns.create_pod(p).await;
    let p = ns.finished("deadline").await;
    let status = p.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    // SIGTERM ended `sleep` (143) unless the deadline passed before it even started.
    let t = terminated(&p);
    assert!(
        t.exit_code == 143 || t.reason.as_deref() == Some("ContainerStatusUnknown"),
        "{t:?}"
    );
}

/// Upstream's kubelet reads `activeDeadlineSeconds` at every sync, so a deadline set or
/// shortened on a running pod (the API allows both) ends it; so does the node agent.
#[tokio::test]
async fn pod_active_deadline_shortened_while_running_ends_the_pod() {
    let ns = Ns::new("na-deadline-later").await;
    let mut p = pod("later", "exec sleep 600");
    p["spec"]["activeDeadlineSeconds"] = json!(3600);
    p["spec"]["terminationGracePeriodSeconds"] = json!(5);
    ns.create_pod(p).await;
    ns.running("later").await;
    ns.pods()
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 1}})),
        )
        .await
        .unwrap();
    let p = ns.finished("later").await;
    let status = p.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(ended(&p), (143, "Error".into(), None));
}

#[tokio::test]
async fn job_active_deadline_fails_the_job_and_its_pods_processes_end() {
    let ns = Ns::new("na-jobdeadline").await;
    let host = ns.pvc("data").await;
    let data = ns.mnt("data");
    let mut j = job(
        "deadline",
        json!({"backoffLimit": 0}),
        // `$$$$`: `$$` is the escape of `$` in Kubernetes' `$(VAR)` expansion.
        r#"echo $$$$ > "$DATA/pid"; exec sleep 600"#,
    );
    let spec = &mut j["spec"]["template"]["spec"];
    spec["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    spec["containers"][0]["env"] = json!([{"name": "DATA", "value": data}]);
    spec["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": data}]);
    ns.create_job(j).await;
    let pid = written(&host.join("pid")).await.trim().to_string();
    assert!(process_alive(&pid));
    // The deadline is set once the pod runs (it is mutable): a slow start cannot miss it.
    ns.jobs()
        .patch(
            "deadline",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 1}})),
        )
        .await
        .unwrap();
    let done = ns.job_finished("deadline").await;
    assert_eq!(
        condition(&done, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    eventually("the pod's process to end", || async {
        (!process_alive(&pid)).then_some(())
    })
    .await;
    eventually("the Job's pods to be gone", || async {
        ns.job_pods("deadline").await.is_empty().then_some(())
    })
    .await;
}

/// Deletes pod `name` and returns the object of its Deleted watch event (the last state the
/// API server held).
async fn delete_and_watch(ns: &Ns, name: &str) -> Pod {
    let api = ns.pods();
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api.clone(), cfg));
    // The watch is established (its initial list is done) before the delete.
    loop {
        let ev = tokio::time::timeout(PATIENCE, stream.try_next())
            .await
            .unwrap()
            .unwrap();
        if matches!(ev, Some(watcher::Event::InitDone)) {
            break;
        }
    }
    api.delete(name, &DeleteParams::default()).await.unwrap();
    loop {
        let ev = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("pod {name} was not removed: log {}", ns.log(name)));
        match ev {
            Some(Ok(watcher::Event::Delete(p))) => return p,
            Some(_) => {}
            None => panic!("the watch of {name} ended"),
        }
    }
}

#[tokio::test]
async fn deleting_a_running_pod_sends_term_then_removes_it() {
    let ns = Ns::new("na-delete").await;
    let host = ns.pvc("data").await;
    let data = ns.mnt("data");
    let with_data = |mut p: Value| {
        p["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
        let c = &mut p["spec"]["containers"][0];
        c["env"] = json!([{"name": "DATA", "value": data}]);
        c["volumeMounts"] = json!([{"name": "data", "mountPath": data}]);
        p
    };
    // A TERM handler that writes its marker and exits 0 within the grace period.
    let mut p = with_data(pod(
        "graceful",
        r#"trap 'echo terminated > "$DATA/marker"; exit 0' TERM
echo started > "$DATA/started"
while true; do sleep 1; done"#,
    ));
    p["spec"]["terminationGracePeriodSeconds"] = json!(30);
    ns.create_pod(p).await;
    written(&host.join("started")).await;
    ns.running("graceful").await;
    let last = delete_and_watch(&ns, "graceful").await;
    assert_eq!(
        std::fs::read_to_string(host.join("marker")).unwrap(),
        "terminated\n"
    );
    assert_eq!(phase(&last), "Succeeded");
    assert_eq!(ended(&last), (0, "Completed".into(), None));
    assert!(
        ns.pods().get_opt("graceful").await.unwrap().is_none(),
        "gone from the API"
    );

    // A process that ignores TERM is killed when the grace period ends.
    let mut p = with_data(pod(
        "stubborn",
        r#"trap '' TERM
echo started > "$DATA/stubborn"
while true; do sleep 1; done"#,
    ));
    p["spec"]["terminationGracePeriodSeconds"] = json!(2);
    ns.create_pod(p).await;
    written(&host.join("stubborn")).await;
    ns.running("stubborn").await;
    let last = delete_and_watch(&ns, "stubborn").await;
    assert_eq!(phase(&last), "Failed");
    assert_eq!(ended(&last), (137, "Error".into(), None));
    assert!(ns.pods().get_opt("stubborn").await.unwrap().is_none());
}

#[tokio::test]
async fn agent_kill_pod_and_fail_pod_end_the_process_with_their_exit_codes() {
    let ns = Ns::new("na-kill").await;
    let agent = testbed().agent();
    for name in ["killed", "failed"] {
        ns.create_pod(pod(name, "echo up; exec sleep 600")).await;
    }
    for name in ["killed", "failed"] {
        ns.running(name).await;
    }
    agent.kill_pod(&ns.name, "killed").unwrap();
    agent.fail_pod(&ns.name, "failed", 7).unwrap();
    let p = ns.finished("killed").await;
    assert_eq!(phase(&p), "Failed");
    assert_eq!(ended(&p), (137, "Error".into(), None));
    let p = ns.finished("failed").await;
    assert_eq!(phase(&p), "Failed");
    assert_eq!(ended(&p), (7, "Error".into(), None));
    // A pod with no running process cannot be killed.
    assert!(agent.kill_pod(&ns.name, "killed").is_err());
}

// ---------------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn logs_are_served_through_the_api_server() {
    let ns = Ns::new("na-logs").await;
    // Standard output only: the order of lines between two streams is not kept.
    ns.create_pod(pod("talker", "echo one; echo two; echo three"))
        .await;
    let p = ns.finished("talker").await;
    assert_eq!(phase(&p), "Succeeded");
    let out = ns.kubectl(&["logs", "talker"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    let out = ns.kubectl(&["logs", "--tail=1", "talker"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "three\n");
    // The kube client's reads, as `reportjob logs` makes them.
    let params = LogParams {
        tail_lines: Some(2),
        ..LogParams::default()
    };
    assert_eq!(
        ns.pods().logs("talker", &params).await.unwrap(),
        "two\nthree\n"
    );
}

#[tokio::test]
async fn followed_logs_stream_until_the_container_exits() {
    let ns = Ns::new("na-follow").await;
    let gate = testbed().dir().join(format!("gate-{}", ns.name));
    let script = format!(
        "echo one; while [ ! -e {} ]; do sleep 0.1; done; echo two; sleep 0.3; echo three",
        gate.display()
    );
    ns.create_pod(pod("talker", &script)).await;
    ns.running("talker").await;
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = ns
        .pods()
        .log_stream("talker", &params)
        .await
        .unwrap()
        .lines();
    let first = tokio::time::timeout(PATIENCE, lines.next())
        .await
        .expect("no first line")
        .unwrap()
        .unwrap();
    assert_eq!(first, "one");
    // Only now does the container go on: a stream that closed after "one" would miss the rest.
    std::fs::write(&gate, b"").unwrap();
    let mut rest = vec![];
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.next())
        .await
        .expect("the followed log did not end when the container exited")
    {
        rest.push(line.unwrap());
    }
    assert_eq!(rest, ["two", "three"]);
    let p = ns.finished("talker").await;
    assert_eq!(phase(&p), "Succeeded");
}

// ---------------------------------------------------------------------------------------------
// The node

#[tokio::test]
async fn the_node_is_ready_at_127_0_0_1_and_renews_its_lease() {
    let tb = testbed();
    let client = tb.client().await.unwrap();
    let node = Api::<Node>::all(client.clone())
        .get(testbed::NODE_NAME)
        .await
        .unwrap();
    let status = node.status.unwrap();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let addresses: Vec<(String, String)> = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert!(
        addresses.contains(&("InternalIP".into(), "127.0.0.1".into())),
        "{addresses:?}"
    );
    assert_eq!(
        status.node_info.map(|i| i.kubelet_version),
        Some(tb.version().to_string())
    );
    assert_eq!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port),
        Some(i32::from(tb.agent().kubelet_port()))
    );
    assert!(
        node.spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty(),
        "no taints"
    );

    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease = leases.get(testbed::NODE_NAME).await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(testbed::NODE_NAME));
    let first = spec.renew_time.unwrap();
    let renewed = eventually("the node's Lease to be renewed", || {
        let leases = leases.clone();
        let first = first.clone();
        async move {
            let t = leases
                .get(testbed::NODE_NAME)
                .await
                .ok()?
                .spec?
                .renew_time?;
            (t.0 > first.0).then_some(t)
        }
    })
    .await;
    assert!(renewed.0 > first.0);
}
