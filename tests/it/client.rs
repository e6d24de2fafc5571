//! The client commands (`submit`, `status`, `retry`, `cancel`, `logs`) against the real
//! Kubernetes control plane of the test binary (`common::testbed`), each test in namespaces of
//! its own and with no controller: the test writes the ReportJob's status itself (playing the
//! controller) and `submit --wait` follows it to its exit code, also through the test's fault
//! proxy while watches are ended, expired with 410 Gone, connections dropped and every request
//! reset (the API server away for a while, or for good); `status` shows the progress, output,
//! conditions and Events the test recorded; `retry` and `cancel` annotate, suspend and delete;
//! `logs` prints the logs of real pods the node agent ran, read through the API server, under
//! one header per pod by stage and chunk. `completion` and the hidden pod-only commands need
//! no cluster.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use reportjob::api::ReportJob;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::spec::SpecBuilder;
use crate::common::testbed::{self, Fault, WORKER_IMAGE};
use crate::common::{PATIENCE, eventually};

/// The ReportJob the client tests submit: `orders`, labelled `team: analytics`.
fn orders_spec() -> SpecBuilder {
    SpecBuilder::table("demo.orders")
        .name("orders")
        .set("metadata.labels", json!({"team": "analytics"}))
        .set(
            "spec.source.connectionSecretRef",
            json!({"name": "reporting-db", "key": "url"}),
        )
        .key("id")
        .chunk_size(1000)
        .parallelism(2)
        .pvc("reports", "demo/orders.csv")
        .unset("spec.worker")
}

/// One test's namespace on the shared cluster, a kubeconfig whose context is that namespace
/// (so the commands take it from there, as they would from a user's), and the manifest of
/// [`orders_spec`].
struct Env {
    cluster: testbed::Env,
    ns: &'static str,
    kubeconfig: PathBuf,
    spec: PathBuf,
}

impl Env {
    /// A new namespace `<prefix>-<n>` of the shared cluster (CRDs installed); no controller.
    async fn start(prefix: &str) -> Env {
        let mut cluster = testbed::Env::start().await;
        let ns = cluster.namespace(prefix).await;
        let kubeconfig = cluster.kubeconfig_in(ns);
        let spec = write(
            cluster.dir.path(),
            "report.yaml",
            &orders_spec().build_yaml(),
        );
        Env {
            cluster,
            ns,
            kubeconfig,
            spec,
        }
    }

    fn dir(&self) -> &Path {
        self.cluster.dir.path()
    }

    fn api(&self) -> Api<ReportJob> {
        self.cluster.rjs(self.ns)
    }

    /// A kubeconfig through this test's fault proxy (started on first use), its context's
    /// namespace the test's: the commands run with it meet the faults the test sets.
    fn proxy_kubeconfig(&mut self) -> PathBuf {
        self.cluster.proxy();
        let proxied = self.dir().join("proxy-kubeconfig");
        let text = std::fs::read_to_string(&proxied).unwrap();
        assert!(text.contains("namespace: default"), "{text}");
        let path = self.dir().join(format!("proxy-kubeconfig-{}", self.ns));
        std::fs::write(
            &path,
            text.replace("namespace: default", &format!("namespace: {}", self.ns)),
        )
        .unwrap();
        path
    }

    fn proxy(&mut self) -> &faultproxy::FaultProxy {
        self.cluster.proxy()
    }

    /// How many requests of `verb` on ReportJobs the proxy has seen.
    fn proxied(&mut self, verb: &str) -> u64 {
        let key = (verb.to_string(), "reportjobs".to_string());
        self.proxy().requests().get(&key).copied().unwrap_or(0)
    }

    /// Waits until the proxy has seen more than `than` watches of ReportJobs start.
    async fn watches_beyond(&mut self, than: u64) {
        let proxy = self.proxy();
        eventually(
            &format!("more than {than} watches through the proxy"),
            || {
                let key = ("watch".to_string(), "reportjobs".to_string());
                let seen = proxy.requests().get(&key).copied().unwrap_or(0);
                async move { (seen > than).then_some(()) }
            },
        )
        .await;
    }

    /// `reportjob ARGS --kubeconfig <the test's namespace's>`.
    fn command(&self, args: &[&str]) -> Command {
        command_with(&self.kubeconfig, args)
    }

    fn spawn(&self, args: &[&str]) -> Waiting {
        Waiting::new(self.command(args).spawn().unwrap())
    }

    /// [`Env::spawn`] through the fault proxy.
    fn spawn_through_proxy(&mut self, args: &[&str]) -> Waiting {
        let kubeconfig = self.proxy_kubeconfig();
        Waiting::new(command_with(&kubeconfig, args).spawn().unwrap())
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(PATIENCE, self.command(args).output())
            .await
            .expect("the command ends")
            .unwrap()
    }

    /// Waits until the ReportJob exists.
    async fn created(&self, name: &str) -> ReportJob {
        eventually(&format!("ReportJob {name} to be created"), || async {
            self.api().get_opt(name).await.unwrap()
        })
        .await
    }

    /// Writes the status subresource, as the controller would.
    async fn set_status(&self, name: &str, status: Value) {
        self.api()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }
}

/// `reportjob ARGS --kubeconfig KUBECONFIG`, its output piped.
fn command_with(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reportjob"));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": now(), "observedGeneration": 1})
}

fn running(succeeded: i64, rows: i64) -> Value {
    json!({
        "phase": "Running",
        "startTime": now(),
        "chunks": {"total": 4, "succeeded": succeeded, "failed": 0, "active": 2},
        "progress": format!("{succeeded}/4"),
        "rows": rows,
        "conditions": [condition("Planned", "True", "Planned", "4 chunks")],
    })
}

fn complete(url: Option<&str>) -> Value {
    let mut output = json!({"location": "demo/orders.csv", "rows": 4000, "bytes": 123456,
                            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"});
    if let Some(url) = url {
        output["url"] = json!(url);
        output["urlExpiresAt"] = json!("2030-01-01T00:00:00Z");
    }
    json!({
        "phase": "Succeeded",
        "chunks": {"total": 4, "succeeded": 4, "failed": 0, "active": 0},
        "progress": "4/4",
        "rows": 4000,
        "bytes": 123456,
        "completionTime": now(),
        "output": output,
        "conditions": [
            condition("Planned", "True", "Planned", "4 chunks"),
            condition("Complete", "True", "Assembled", "the report is complete"),
        ],
    })
}

/// A running `submit --wait` whose stderr is read as it comes.
struct Waiting {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// The task reading stderr; it ends when the command closes stderr.
    reader: tokio::task::JoinHandle<()>,
}

impl Waiting {
    fn new(mut child: Child) -> Waiting {
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Waiting {
            child,
            stderr,
            reader,
        }
    }

    /// Waits until stderr shows `text` (the command has seen that status).
    async fn shows(&self, text: &str) {
        let shown = crate::common::poll(PATIENCE, async || {
            self.stderr.lock().unwrap().contains(text).then_some(())
        })
        .await;
        assert!(
            shown.is_some(),
            "{text:?} never shown; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    /// Exit code, stdout and stderr once the command ends.
    async fn finished(self) -> (i32, String, String) {
        let out = tokio::time::timeout(PATIENCE, self.child.wait_with_output())
            .await
            .expect("submit --wait ends")
            .unwrap();
        // Every line of stderr read, not a guess at how long that takes.
        tokio::time::timeout(PATIENCE, self.reader)
            .await
            .expect("stderr closes")
            .unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            stderr,
        )
    }
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_exits_0_when_complete_and_prints_the_output() {
    let env = Env::start("submit-ok").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn(&["submit", "-f", &spec, "--wait", "--timeout", "10m"]);
    let rj = env.created("orders").await;
    assert_eq!(rj.labels()["team"], "analytics");
    assert_eq!(rj.spec.chunking.chunk_size, 1000);
    // Why the run waits reaches the person waiting as soon as the status says it.
    env.set_status(
        "orders",
        json!({"phase": "Planning", "startTime": now(),
               "message": "the plan pod cannot start: secret \"db\" not found"}),
    )
    .await;
    child
        .shows("the plan pod cannot start: secret \"db\" not found")
        .await;
    env.set_status("orders", running(1, 1000)).await;
    child.shows("Running: 1/4 chunks, 1,000 rows").await;
    env.set_status("orders", running(3, 3000)).await;
    child.shows("Running: 3/4 chunks, 3,000 rows").await;
    env.set_status("orders", complete(None)).await;
    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stdout.lines().next(),
        Some("orders"),
        "the name first: {stdout}"
    );
    assert!(
        stdout.contains(&format!("ReportJob {}/orders succeeded", env.ns)),
        "{stdout}"
    );
    assert!(stdout.contains("location: demo/orders.csv"), "{stdout}");
    assert!(stdout.contains("rows:     4000"), "{stdout}");
    assert!(stdout.contains("bytes:    123456 (120.6 KiB)"), "{stdout}");
    assert!(stdout.contains("sha256:   9f86d081"), "{stdout}");
    assert!(
        stderr.contains(&format!("created in namespace {}", env.ns)),
        "{stderr}"
    );
    assert!(
        stderr.contains("Running: 1/4 chunks, 1,000 rows"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Running: 3/4 chunks, 3,000 rows"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_failure_is_told_to_make_a_new_reportjob_not_to_retry_the_chunks() {
    let env = Env::start("submit-planfail").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn(&["submit", "-f", &spec, "--name", "badkey", "--wait"]);
    env.created("badkey").await;
    let cause = "planning failed: spec.source.keyColumn: column \"nope\" does not exist";
    env.set_status(
        "badkey",
        json!({
            "phase": "Failed",
            "message": cause,
            "conditions": [condition("Failed", "True", "PlanFailed", cause)],
        }),
    )
    .await;
    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(cause), "{stderr}");
    assert!(
        stderr
            .contains("a ReportJob's source cannot change once planning started: create a new one"),
        "{stderr}"
    );
    assert!(!stderr.contains("re-runs the failed chunks"), "{stderr}");
}

/// `retry --wait`, and `retry` then `wait`, wait for the attempt the retry asked for: each
/// can exit 0 only after the new attempt's status arrives (the failure before it is still
/// the status when they start), which the controller would write here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_then_wait_waits_for_the_new_attempt_not_the_failure_before_it() {
    let env = Env::start("retry-wait").await;
    let spec = env.spec.to_str().unwrap().to_string();
    for (name, together) in [("r1", true), ("r2", false)] {
        let created = env.run(&["submit", "-f", &spec, "--name", name]).await;
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let failed = json!({
            "phase": "Failed",
            "message": "chunks 2 failed: SQLSTATE 57014: canceling statement due to statement timeout",
            "failedChunks": "2",
            "conditions": [condition("Failed", "True", "ChunksFailed", "chunks 2 failed")],
        });
        env.set_status(name, failed).await;
        let waiting = if together {
            env.spawn(&["retry", name, "--wait"])
        } else {
            let retried = env.run(&["retry", name]).await;
            assert!(
                retried.status.success(),
                "{}",
                String::from_utf8_lossy(&retried.stderr)
            );
            env.spawn(&["wait", name])
        };
        // The command has read the failure before the retry (its progress shows it) and
        // goes on waiting: an old failure ending the wait would exit 1 from here.
        waiting.shows("Failed").await;
        // The token the retry wrote; the controller takes it up, then the attempt succeeds.
        let token = eventually("the retry annotation", || async {
            let rj = env.api().get(name).await.ok()?;
            rj.metadata.annotations?.get("reporting.dev/retry").cloned()
        })
        .await;
        let mut attempt = complete(None);
        attempt["retryToken"] = json!(token);
        attempt["conditions"]
            .as_array_mut()
            .unwrap()
            .push(condition(
                "Failed",
                "False",
                "Retrying",
                "retrying the chunks",
            ));
        env.set_status(name, attempt).await;
        let (code, stdout, stderr) = waiting.finished().await;
        assert_eq!(code, 0, "{name}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            stdout.contains(&format!("ReportJob {}/{name} succeeded", env.ns)),
            "{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_exits_1_when_failed_with_the_message() {
    let env = Env::start("submit-failed").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn(&["submit", "-f", &spec, "--name", "broken", "--wait"]);
    env.created("broken").await;
    env.set_status("broken", running(1, 10)).await;
    env.set_status(
        "broken",
        json!({
            "phase": "Failed",
            "chunks": {"total": 4, "succeeded": 3, "failed": 1, "active": 0},
            "failedChunks": "2",
            "message": "chunk 2 [100, 200): SQLSTATE 42501: permission denied for table orders",
            "conditions": [condition("Failed", "True", "ChunksFailed", "chunk 2 failed")],
        }),
    )
    .await;
    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "ReportJob {}/broken failed: chunk 2 [100, 200): SQLSTATE 42501: permission denied",
            env.ns
        )),
        "{stderr}"
    );
    assert!(stderr.contains("failed chunks: 2"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`reportjob retry broken -n {}` re-runs the failed chunks once the cause is fixed",
            env.ns
        )),
        "{stderr}"
    );
    assert!(
        env.api().get_opt("orders").await.unwrap().is_none(),
        "--name wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_times_out_with_exit_2() {
    let env = Env::start("submit-timeout").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let out = env
        .run(&["submit", "-f", &spec, "--wait", "--timeout", "1s", "--json"])
        .await;
    let (code, stdout, stderr) = text(&out);
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "timed out after 1s waiting for ReportJob {}/orders",
            env.ns
        )),
        "{stderr}"
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["result"], "timeout");
    assert_eq!(v["name"], "orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_survives_ended_and_expired_watches_and_dropped_connections() {
    let mut env = Env::start("submit-watch").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn_through_proxy(&["submit", "-f", &spec, "--wait", "--timeout", "10m"]);
    env.created("orders").await;
    // Listed and watching: what follows reaches it through the watch.
    env.watches_beyond(0).await;
    env.set_status("orders", running(1, 100)).await;
    child.shows("Running: 1/4 chunks").await;

    // The watch ends cleanly (as the API server ends watches at their timeout): it watches
    // again from where it was.
    let watches = env.proxied("watch");
    env.proxy().end_watches();
    env.set_status("orders", running(2, 200)).await;
    child.shows("Running: 2/4 chunks").await;
    assert!(env.proxied("watch") > watches, "watched again");

    // History forgotten (the watch gets 410 Expired, as after a compaction): it lists again.
    let lists = env.proxied("list");
    env.proxy().expire_watches();
    env.set_status("orders", running(3, 300)).await;
    child.shows("Running: 3/4 chunks").await;
    assert!(env.proxied("list") > lists, "listed again after the 410");

    // The API server restarts: every connection closed, and the next requests refused.
    env.proxy().fail_next("*", "*", 3, Fault::Reset);
    env.proxy().drop_connections();
    env.set_status("orders", complete(None)).await;

    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("location: demo/orders.csv"), "{stdout}");
    assert_eq!(env.proxy().pending_faults(), 0, "every reset was met");
    // Back after the 410 and after the restart.
    assert!(
        stderr
            .matches("connection to the API server restored")
            .count()
            >= 2,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_completes_when_the_api_server_is_down_for_a_while() {
    let mut env = Env::start("submit-down").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn_through_proxy(&["submit", "-f", &spec, "--wait", "--timeout", "10m"]);
    env.created("orders").await;
    env.watches_beyond(0).await;
    // The API server goes away: every connection closed, every new one reset.
    env.proxy().fail_next("*", "*", u32::MAX, Fault::Reset);
    env.proxy().drop_connections();
    // Down until the command has noticed and tried again a few times, however long that
    // takes on a loaded machine; the ReportJob completes meanwhile.
    child.shows("reconnecting").await;
    let proxy = env.proxy();
    eventually("three refused attempts to reconnect", || async {
        (u64::from(u32::MAX) - proxy.pending_faults() >= 3).then_some(())
    })
    .await;
    env.set_status("orders", complete(None)).await;
    env.proxy().clear_faults();
    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("location: demo/orders.csv"), "{stdout}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(
        stderr.contains("connection to the API server restored"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_gives_up_with_exit_2_when_the_api_server_stays_away() {
    let mut env = Env::start("submit-gone").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child =
        env.spawn_through_proxy(&["submit", "-f", &spec, "--wait", "--reconnect-timeout", "2s"]);
    env.created("orders").await;
    env.watches_beyond(0).await;
    // Gone for good: every connection closed, every new one reset.
    env.proxy().fail_next("*", "*", u32::MAX, Fault::Reset);
    env.proxy().drop_connections();
    let (code, _, stderr) = child.finished().await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("lost the connection to the API server"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_generate_name_json_prints_one_object() {
    let env = Env::start("submit-generate").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let child = env.spawn(&[
        "submit",
        "-f",
        &spec,
        "--generate-name",
        "nightly-",
        "--wait",
        "--timeout",
        "10m",
        "--json",
    ]);
    let name = eventually("a ReportJob to be created", || async {
        let list = env.api().list(&ListParams::default()).await.unwrap();
        list.items.iter().map(|r| r.name_any()).next()
    })
    .await;
    assert!(
        name.starts_with("nightly-") && name.len() > "nightly-".len(),
        "{name}"
    );
    env.set_status(
        &name,
        complete(Some(
            "https://s3.example/reports/orders.csv?X-Amz-Signature=1",
        )),
    )
    .await;
    let (code, stdout, stderr) = child.finished().await;
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["namespace"], env.ns);
    assert_eq!(v["result"], "succeeded");
    assert_eq!(v["phase"], "Succeeded");
    assert_eq!(v["location"], "demo/orders.csv");
    assert_eq!(
        v["url"],
        "https://s3.example/reports/orders.csv?X-Amz-Signature=1"
    );
    assert_eq!(v["rows"], 4000);
    assert_eq!(v["bytes"], 123456);
    assert!(v["sha256"].as_str().unwrap().starts_with("9f86d081"));
    assert!(
        stderr.contains(&format!("reportjob.reporting.dev/{name} created")),
        "{stderr}"
    );

    // A second submit makes another ReportJob.
    let out = env
        .run(&["submit", "-f", &spec, "--generate-name", "nightly-"])
        .await;
    let (code, stdout, _) = text(&out);
    assert_eq!(code, 0);
    assert_ne!(stdout.trim(), name);
    assert_eq!(
        env.api()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_applies_again_and_refuses_bad_input() {
    let mut env = Env::start("submit-apply").await;
    let spec = env.spec.to_str().unwrap().to_string();
    // A dry run is admitted by the API server but stores nothing.
    let (code, stdout, stderr) = text(
        &env.run(&["submit", "-f", &spec, "--dry-run", "--json"])
            .await,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("server dry run: nothing was created"),
        "{stderr}"
    );
    let dry: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(dry["result"], "dry_run");
    assert_eq!(dry["name"], "orders");
    assert!(env.api().get_opt("orders").await.unwrap().is_none());
    let out = env.run(&["submit", "-f", &spec]).await;
    let (code, stdout, stderr) = text(&out);
    assert_eq!((code, stdout.as_str()), (0, "orders\n"), "{stderr}");
    assert!(stderr.contains("created"), "{stderr}");
    let out = env.run(&["submit", "-f", &spec]).await;
    let (code, _, stderr) = text(&out);
    assert_eq!(code, 0);
    assert!(stderr.contains("orders unchanged"), "{stderr}");
    let changed = write(
        env.dir(),
        "changed.yaml",
        &orders_spec().set("spec.suspend", true).build_yaml(),
    );
    let out = env.run(&["submit", "-f", changed.to_str().unwrap()]).await;
    assert!(
        text(&out).2.contains("orders configured"),
        "{:?}",
        text(&out)
    );
    assert!(env.api().get("orders").await.unwrap().spec.suspend);
    // The chunking is fixed once created: the API server refuses the change (CEL).
    let rechunked = write(
        env.dir(),
        "rechunked.yaml",
        &orders_spec().chunk_size(5000).build_yaml(),
    );
    let (code, _, stderr) = text(
        &env.run(&["submit", "-f", rechunked.to_str().unwrap()])
            .await,
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(reportjob::api::schema::CHUNKING_IMMUTABLE),
        "{stderr}"
    );

    // Invalid spec: refused before reaching the cluster, naming the field.
    let bad = write(
        env.dir(),
        "bad.yaml",
        &orders_spec().chunk_size(-5).build_yaml(),
    );
    let (code, _, stderr) = text(&env.run(&["submit", "-f", bad.to_str().unwrap()]).await);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("spec.chunking.chunkSize"), "{stderr}");

    // No name anywhere.
    let nameless = write(
        env.dir(),
        "nameless.yaml",
        &orders_spec().unset("metadata.name").build_yaml(),
    );
    let (code, _, stderr) = text(&env.run(&["submit", "-f", nameless.to_str().unwrap()]).await);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--generate-name"), "{stderr}");

    // Missing file, and --timeout without --wait.
    let (code, _, _) = text(&env.run(&["submit", "-f", "/nonexistent.yaml"]).await);
    assert_eq!(code, 2);
    let (code, _, _) = text(&env.run(&["submit", "-f", &spec, "--timeout", "5m"]).await);
    assert_eq!(code, 2);
    let (code, _, stderr) = text(
        &env.run(&["submit", "-f", &spec, "--wait", "--timeout", "5x"])
            .await,
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid duration"), "{stderr}");

    // A namespace that does not exist (a name no test creates).
    let nowhere = env.cluster.reserve("nowhere");
    let (code, _, stderr) = text(&env.run(&["submit", "-f", &spec, "-n", nowhere]).await);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("namespaces \"{nowhere}\" not found")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_without_a_cluster_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    );
    let spec = write(dir.path(), "report.yaml", &orders_spec().build_yaml());
    let out = Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args(["submit", "-f"])
        .arg(&spec)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .await
        .unwrap();
    let (code, _, stderr) = text(&out);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot submit ReportJob default/orders"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args(["status", "orders", "--kubeconfig"])
        .arg(dir.path().join("missing"))
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out).0, 2, "{:?}", text(&out));
}

async fn create_reportjob(env: &Env, name: &str) -> ReportJob {
    let mut rj = reportjob::api::load::load_str(&orders_spec().build_yaml(), "test").unwrap();
    rj.metadata.name = Some(name.to_string());
    env.api().create(&PostParams::default(), &rj).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_progress_output_conditions_and_events() {
    let env = Env::start("status").await;
    let rj = create_reportjob(&env, "orders").await;
    let mut status = running(1, 1234);
    status["chunks"]["failed"] = json!(1);
    status["failedChunks"] = json!("2");
    status["bytes"] = json!(4096);
    status["message"] = json!("exporting");
    env.set_status("orders", status).await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.cluster.client.clone(), env.ns);
    let event = |name: &str, regarding: Value, reason: &str, note: &str| {
        serde_json::from_value::<k8s_openapi::api::events::v1::Event>(json!({
            "metadata": {"name": name},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "reporting.dev/reportjob-controller",
            "reportingInstance": "test",
            "action": "Reconcile",
            "type": "Normal",
            "reason": reason,
            "note": note,
            "regarding": regarding,
        }))
        .unwrap()
    };
    events
        .create(
            &PostParams::default(),
            &event(
                "orders.1",
                json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
                       "name": "orders", "namespace": env.ns, "uid": rj.uid()}),
                "Planned",
                "planned 4 chunks",
            ),
        )
        .await
        .unwrap();
    events
        .create(
            &PostParams::default(),
            &event(
                "other.1",
                json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
                       "name": "other", "namespace": env.ns}),
                "Planned",
                "not about orders",
            ),
        )
        .await
        .unwrap();

    let (code, stdout, stderr) = text(&env.run(&["status", "orders"]).await);
    assert_eq!(code, 0, "{stderr}");
    let namespace = format!("Namespace:   {}", env.ns);
    for expected in [
        "Name:        orders",
        &namespace,
        "Phase:       Running",
        "Progress:    1/4 chunks (2 active, 1 failed)",
        "Failed:      chunks 2",
        "Rows:        1,234",
        "Bytes:       4.0 KiB (4096)",
        "Started:",
        "Elapsed:",
        "Message:     exporting",
        "Conditions:",
        "TYPE     STATUS  REASON   AGE",
        "Planned  True    Planned",
        "Events:",
        "planned 4 chunks",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("not about orders"), "{stdout}");

    env.set_status("orders", complete(Some("https://dl.example/x")))
        .await;
    let (code, stdout, _) = text(&env.run(&["status", "orders", "-n", env.ns]).await);
    assert_eq!(code, 0);
    for expected in [
        "Phase:       Succeeded",
        "Output:",
        "  Location:  demo/orders.csv",
        "  URL:       https://dl.example/x",
        "  Expires:   2030-01-01T00:00:00Z (in ",
        "  SHA256:    9f86d081",
        "Complete  True    Assembled",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let (code, stdout, _) = text(&env.run(&["status", "orders", "--json"]).await);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["result"], "succeeded");
    assert_eq!(v["url"], "https://dl.example/x");

    let (code, _, stderr) = text(&env.run(&["status", "nope"]).await);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("ReportJob {}/nope not found", env.ns)),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_annotates_suspend_pauses_cancel_ends_and_delete_deletes() {
    let env = Env::start("retry-cancel").await;
    create_reportjob(&env, "orders").await;
    env.set_status(
        "orders",
        json!({"phase": "Failed", "failedChunks": "2,5-6",
               "conditions": [condition("Failed", "True", "ChunkFailed", "3 chunks failed")]}),
    )
    .await;

    let (code, stdout, stderr) = text(&env.run(&["retry", "orders"]).await);
    assert_eq!(code, 0, "{stderr}");
    let token = env.api().get("orders").await.unwrap().annotations()["reporting.dev/retry"].clone();
    assert!(!token.is_empty());
    assert!(
        stdout.contains(&format!("retry requested (reporting.dev/retry={token})")),
        "{stdout}"
    );
    assert!(stdout.contains("2,5-6"), "{stdout}");
    let (code, _, _) = text(&env.run(&["retry", "orders"]).await);
    assert_eq!(code, 0);
    let again = env.api().get("orders").await.unwrap().annotations()["reporting.dev/retry"].clone();
    assert_ne!(again, token, "every retry is a fresh token");

    // Nothing to retry while it runs.
    create_reportjob(&env, "busy").await;
    env.set_status("busy", running(1, 10)).await;
    let (code, _, stderr) = text(&env.run(&["retry", "busy"]).await);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("ReportJob {}/busy is Running, not failed", env.ns)),
        "{stderr}"
    );
    assert!(
        !env.api()
            .get("busy")
            .await
            .unwrap()
            .annotations()
            .contains_key("reporting.dev/retry")
    );

    let (code, stdout, stderr) = text(&env.run(&["suspend", "orders"]).await);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("ReportJob {}/orders suspended", env.ns)),
        "{stdout}"
    );
    assert!(env.api().get("orders").await.unwrap().spec.suspend);

    // Cancel ends a run in flight; a finished one has none.
    let (code, stdout, stderr) = text(&env.run(&["cancel", "busy"]).await);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("ReportJob {}/busy cancelled", env.ns)),
        "{stdout}"
    );
    assert!(
        env.api()
            .get("busy")
            .await
            .unwrap()
            .annotations()
            .contains_key("reporting.dev/cancel")
    );
    let (code, _, stderr) = text(&env.run(&["cancel", "orders"]).await);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is Failed: there is no run to cancel"),
        "{stderr}"
    );

    let (code, stdout, _) = text(&env.run(&["cancel", "orders", "--delete"]).await);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("ReportJob {}/orders deleted", env.ns)),
        "{stdout}"
    );
    assert!(env.api().get_opt("orders").await.unwrap().is_none());

    for args in [
        &["retry", "orders"][..],
        &["cancel", "orders"],
        &["suspend", "orders"],
        &["cancel", "orders", "--delete"],
    ] {
        let (code, _, stderr) = text(&env.run(args).await);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
    }
}

/// A pod of ReportJob `orders` in stage `stage` (a chunk pod with its completion index and,
/// for a retry Job, the chunks it exports) that prints `lines` and exits: the node agent runs
/// `/bin/sh` for it.
fn pod(name: &str, stage: &str, index: Option<&str>, chunks: Option<&str>, lines: &[&str]) -> Pod {
    let script: Vec<String> = lines.iter().map(|l| format!("echo '{l}'")).collect();
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "reporting.dev/reportjob": "orders", "reporting.dev/stage": stage}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "reportjob", "image": WORKER_IMAGE,
                            "command": ["/bin/sh", "-c", script.join("; ")]}],
        },
    });
    if let Some(i) = index {
        p["metadata"]["annotations"] = json!({"batch.kubernetes.io/job-completion-index": i});
    }
    if let Some(c) = chunks {
        p["spec"]["containers"][0]["env"] = json!([{"name": "REPORTJOB_CHUNKS", "value": c}]);
    }
    serde_json::from_value(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_prints_each_pod_with_a_header() {
    let env = Env::start("logs").await;
    // The ReportJob (no controller runs here: its pods are made by hand below).
    let spec = env.spec.to_str().unwrap().to_string();
    let created = env.run(&["submit", "-f", &spec, "--name", "orders"]).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let pods: Api<Pod> = Api::namespaced(env.cluster.client.clone(), env.ns);
    let mut other = pod("unrelated", "plan", None, None, &["not about orders"]);
    other
        .labels_mut()
        .insert("reporting.dev/reportjob".into(), "other".into());
    for p in [
        pod("orders-assemble-x1", "assemble", None, None, &["assembled"]),
        pod(
            "orders-chunks-1-aa",
            "chunks",
            Some("1"),
            None,
            &["chunk one", "line two"],
        ),
        pod(
            "orders-chunks-0-bb",
            "chunks",
            Some("0"),
            None,
            &["chunk zero"],
        ),
        pod("orders-plan-x2", "plan", None, None, &["planned 2 chunks"]),
        // A retry Job over chunks 7 and 9: completion index 1 is chunk 9.
        pod(
            "orders-chunks-1-cc",
            "chunks",
            Some("1"),
            Some("7,9"),
            &["chunk nine"],
        ),
        other,
    ] {
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    // Every pod has run and exited: its log is whole.
    eventually("the six pods to have succeeded", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let phases: Vec<Option<String>> = list
            .items
            .iter()
            .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
            .collect();
        (phases.len() == 6 && phases.iter().all(|p| p.as_deref() == Some("Succeeded")))
            .then_some(())
    })
    .await;

    let (code, stdout, stderr) = text(&env.run(&["logs", "orders"]).await);
    assert_eq!(code, 0, "{stderr}");
    let headers: Vec<&str> = stdout.lines().filter(|l| l.starts_with("==> ")).collect();
    assert_eq!(
        headers,
        [
            "==> pod/orders-plan-x2 (stage plan, Succeeded) <==",
            "==> pod/orders-chunks-0-bb (stage chunks, chunk 0, Succeeded) <==",
            "==> pod/orders-chunks-1-aa (stage chunks, chunk 1, Succeeded) <==",
            "==> pod/orders-chunks-1-cc (stage chunks, chunk 9, Succeeded) <==",
            "==> pod/orders-assemble-x1 (stage assemble, Succeeded) <==",
        ],
        "{stdout}"
    );
    assert_eq!(
        stdout,
        "==> pod/orders-plan-x2 (stage plan, Succeeded) <==\nplanned 2 chunks\n\
         ==> pod/orders-chunks-0-bb (stage chunks, chunk 0, Succeeded) <==\nchunk zero\n\
         ==> pod/orders-chunks-1-aa (stage chunks, chunk 1, Succeeded) <==\nchunk one\nline two\n\
         ==> pod/orders-chunks-1-cc (stage chunks, chunk 9, Succeeded) <==\nchunk nine\n\
         ==> pod/orders-assemble-x1 (stage assemble, Succeeded) <==\nassembled\n"
    );
    assert!(!stdout.contains("unrelated"), "{stdout}");

    let (code, stdout, _) = text(&env.run(&["logs", "orders", "--chunk", "9"]).await);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "==> pod/orders-chunks-1-cc (stage chunks, chunk 9, Succeeded) <==\nchunk nine\n"
    );
    let (code, stdout, _) = text(&env.run(&["logs", "orders", "--stage", "plan"]).await);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "==> pod/orders-plan-x2 (stage plan, Succeeded) <==\nplanned 2 chunks\n"
    );
    let (code, stdout, _) = text(
        &env.run(&[
            "logs", "orders", "--stage", "chunks", "--chunk", "1", "--tail", "1",
        ])
        .await,
    );
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "==> pod/orders-chunks-1-aa (stage chunks, chunk 1, Succeeded) <==\nline two\n"
    );
    let (code, _, stderr) = text(&env.run(&["logs", "orders", "--chunk", "5"]).await);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "no pods of ReportJob {}/orders for chunk 5",
            env.ns
        )),
        "{stderr}"
    );
}

/// `reportjob ARGS` without a cluster.
async fn run_bare(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the command ends")
    .unwrap();
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_prints_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _reportjob"),
        ("zsh", "#compdef reportjob"),
        ("fish", "complete -c reportjob"),
    ] {
        let (code, stdout, stderr) = run_bare(&["completion", shell]).await;
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {stdout}");
        for command in ["submit", "status", "retry", "cancel", "logs", "kubeconfig"] {
            assert!(stdout.contains(command), "{shell} completes {command}");
        }
    }
    let (code, _, stderr) = run_bare(&["completion", "tcsh"]).await;
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");
    assert!(stderr.contains("bash"), "the shells are listed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_only_commands_are_hidden_from_the_help_but_still_run() {
    let (code, help, _) = run_bare(&["--help"]).await;
    assert_eq!(code, 0);
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for shown in [
        "run",
        "plan",
        "submit",
        "status",
        "retry",
        "cancel",
        "logs",
        "completion",
    ] {
        assert!(listed.contains(&shown), "{shown} is listed: {listed:?}");
    }
    for hidden in ["worker", "assemble", "notify", "cleanup"] {
        assert!(!listed.contains(&hidden), "{hidden} is hidden: {listed:?}");
        // The controller's Jobs call them by name: they still parse and run.
        let (code, usage, stderr) = run_bare(&[hidden, "--help"]).await;
        assert_eq!(code, 0, "{hidden} --help: {stderr}");
        assert!(usage.contains(&format!("reportjob {hidden}")), "{usage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_reads_the_manifest_from_stdin() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start("submit-stdin").await;
    let submit_stdin = |manifest: String| {
        let mut cmd = env.command(&["submit", "-f", "-"]);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        async move {
            stdin.write_all(manifest.as_bytes()).await.unwrap();
            drop(stdin);
            let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("the command ends")
                .unwrap();
            text(&out)
        }
    };
    let (code, stdout, stderr) = submit_stdin(orders_spec().build_yaml()).await;
    assert_eq!((code, stdout.as_str()), (0, "orders\n"), "{stderr}");
    assert!(stderr.contains("orders created"), "{stderr}");
    let rj = env.api().get("orders").await.unwrap();
    assert_eq!(rj.labels()["team"], "analytics");
    assert_eq!(rj.spec.chunking.chunk_size, 1000);

    // An invalid spec on stdin is refused the same way, naming stdin and the field.
    let (code, _, stderr) = submit_stdin(orders_spec().chunk_size(-5).build_yaml()).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("<stdin>"), "{stderr}");
    assert!(stderr.contains("spec.chunking.chunkSize"), "{stderr}");
}

/// Usage mistakes are named as what they are: a ReportJob that does not exist (not "no
/// pods"), a context the kubeconfig does not have (not a fault of the file); every stage's
/// pods can be asked for by `logs --stage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_contexts_name_the_mistake() {
    let env = Env::start("usage-names").await;
    let out = env.run(&["logs", "nosuch"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("nosuch") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("no pods"), "{stderr}");

    let spec = env.spec.to_str().unwrap().to_string();
    let created = env.run(&["submit", "-f", &spec, "--name", "quiet"]).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for stage in ["snapshot", "notify", "cleanup", "plan"] {
        let out = env.run(&["logs", "quiet", "--stage", stage]).await;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            stderr.contains(&format!(
                "no pods of ReportJob {}/quiet in stage {stage}",
                env.ns
            )),
            "{stage}: {stderr}"
        );
    }

    let out = env.run(&["status", "quiet", "--context", "nosuch"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--context nosuch: the kubeconfig has no context of that name"),
        "{stderr}"
    );
}

/// With no controller taking a ReportJob up (none runs in these tests), `submit --wait`
/// says so once it has waited `UNCLAIMED_AFTER`, instead of showing Pending until its
/// timeout; `status` says the same of a ReportJob that old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reportjob_no_controller_takes_up_is_named_as_such() {
    let env = Env::start("unclaimed").await;
    let spec = env.spec.to_str().unwrap().to_string();
    let waiting = env.spawn(&["submit", "-f", &spec, "--name", "alone", "--wait"]);
    env.created("alone").await;
    waiting
        .shows(&format!(
            "no controller has taken up ReportJob {}/alone yet: is the reportjob controller running",
            env.ns
        ))
        .await;
    let out = env.run(&["status", "alone"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("Note:") && stdout.contains("no controller has taken up"),
        "{stdout}"
    );
    // A controller's status ends the wait as usual.
    env.set_status("alone", complete(None)).await;
    let (code, stdout, stderr) = waiting.finished().await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}
