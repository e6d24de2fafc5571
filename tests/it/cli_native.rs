//! The kubectl-style client commands against kubesim: `list` (`-A`, `-l`, every `-o`, checked
//! against `kubectl get`), `status -o`, `wait` and its exit codes, `resume`, `logs -f` and
//! `submit --wait --log` following pods the test creates, `download` through a real presigned
//! link of a real S3 server, and the binary as the kubectl plugin `kubectl reportjob`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use reportjob::api::ReportJob;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::common::PATIENCE;
use crate::common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// A ReportJob manifest in `ns` with labels.
fn manifest(name: &str, ns: &str, team: &str) -> Value {
    json!({
        "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
        "spec": {
            "source": {"connectionSecretRef": {"name": "db"}, "table": "orders", "keyColumn": "id"},
            "output": {"destination": {"pvc": {"claimName": "reports", "path": format!("{name}.csv")}}},
        },
    })
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "",
           "lastTransitionTime": now()})
}

fn complete(output: Value) -> Value {
    json!({"phase": "Succeeded", "progress": "4/4", "rows": 4000, "message": "published",
           "output": output, "completionTime": now(),
           "conditions": [condition("Complete", "True", "ReportPublished")]})
}

fn failed() -> Value {
    json!({"phase": "Failed", "progress": "3/4", "rows": 3000, "message": "chunk 3 failed",
           "failedChunks": "3",
           "conditions": [condition("Complete", "False", "ChunksFailed"),
                          condition("Failed", "True", "ChunksFailed")]})
}

struct Cli {
    cluster: kubesim::Cluster,
    client: Client,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cli {
    /// kubesim (running no pods: the test plays the kubelet) with the CRD and the namespace
    /// `team-b`.
    async fn start() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
            data_dir: Some(dir.path().join("cluster")),
            ..Default::default()
        })
        .await
        .unwrap();
        let client = cluster.client().await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &reportjob::api::schema::crd())
            .await
            .unwrap();
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-b"}})).unwrap(),
        )
        .await
        .unwrap();
        Cli {
            cluster,
            client,
            dir,
            kubeconfig,
        }
    }

    /// kubectl against the cluster.
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl on PATH")
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    async fn create(&self, name: &str, ns: &str, team: &str) {
        let api: Api<ReportJob> = Api::namespaced(self.client(), ns);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(manifest(name, ns, team)).unwrap(),
        )
        .await
        .unwrap();
    }

    async fn set_status(&self, name: &str, ns: &str, status: Value) {
        let api: Api<ReportJob> = Api::namespaced(self.client(), ns);
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `reportjob ARGS` (KUBECONFIG points at kubesim): exit code, stdout, stderr.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_reportjob"));
        let out = tokio::time::timeout(PATIENCE, self.command(&bin, args).output())
            .await
            .expect("the command ends")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn spawn(&self, args: &[&str]) -> Running {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_reportjob"));
        Running::new(self.command(&bin, args).spawn().unwrap())
    }
}

/// A running command whose stdout and stderr are read as they come.
struct Running {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn collect(
    pipe: impl AsyncRead + Unpin + Send + 'static,
) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    (text, reader)
}

impl Running {
    fn new(mut child: Child) -> Running {
        let (out, r1) = collect(child.stdout.take().unwrap());
        let (err, r2) = collect(child.stderr.take().unwrap());
        Running {
            child,
            out,
            err,
            readers: vec![r1, r2],
        }
    }

    /// Waits until stdout or stderr shows `text`.
    async fn shows(&self, text: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let (out, err) = (
                self.out.lock().unwrap().clone(),
                self.err.lock().unwrap().clone(),
            );
            if out.contains(text) || err.contains(text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} never shown; stdout:\n{out}\nstderr:\n{err}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finished(mut self) -> (i32, String, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the command ends")
            .unwrap();
        for reader in self.readers {
            tokio::time::timeout(PATIENCE, reader)
                .await
                .expect("pipes close")
                .unwrap();
        }
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err)
    }
}

/// Table rows as cells, the AGE column (whose value moves with the clock) dropped.
fn cells_without_age(table: &str) -> Vec<Vec<String>> {
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let age = header.iter().position(|h| *h == "AGE");
    table
        .lines()
        .map(|l| {
            l.split_whitespace()
                .enumerate()
                .filter(|(i, _)| Some(*i) != age)
                .map(|(_, c)| c.to_string())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_print_as_kubectl_does_in_every_format() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "analytics").await;
    cli.create("refunds", "default", "billing").await;
    cli.create("invoices", "team-b", "billing").await;
    cli.set_status(
        "orders",
        "default",
        complete(json!({"location": "orders.csv", "rows": 4000, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    cli.set_status("refunds", "default", failed()).await;
    cli.set_status(
        "invoices",
        "team-b",
        complete(json!({"location": "invoices.csv", "rows": 4000, "bytes": 9, "sha256": "ab"})),
    )
    .await;

    let (code, table, stderr) = cli.run(&["list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        cells_without_age(&table),
        [
            vec!["NAME", "PHASE", "CHUNKS", "ROWS"],
            vec!["orders", "Succeeded", "4/4", "4000"],
            vec!["refunds", "Failed", "3/4", "3000"],
        ],
        "{table}"
    );
    // The same cells as kubectl's table from the CRD's printer columns.
    let kubectl = cli.kubectl(&["get", "rj"]);
    assert_eq!(
        cells_without_age(&String::from_utf8_lossy(&kubectl.stdout)),
        cells_without_age(&table)
    );
    let ages: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert!(
        ages.iter()
            .all(|a| a.ends_with('s') && a[..a.len() - 1].parse::<u32>().is_ok()),
        "{table}"
    );

    let (code, wide, _) = cli.run(&["list", "-A", "-o", "wide"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        cells_without_age(&wide),
        [
            vec![
                "NAMESPACE",
                "NAME",
                "PHASE",
                "CHUNKS",
                "ROWS",
                "OUTPUT",
                "REASON",
                "MESSAGE"
            ],
            vec![
                "default",
                "orders",
                "Succeeded",
                "4/4",
                "4000",
                "orders.csv",
                "ReportPublished",
                "published"
            ],
            vec![
                "default",
                "refunds",
                "Failed",
                "3/4",
                "3000",
                "ChunksFailed",
                "chunk",
                "3",
                "failed"
            ],
            vec![
                "team-b",
                "invoices",
                "Succeeded",
                "4/4",
                "4000",
                "invoices.csv",
                "ReportPublished",
                "published"
            ],
        ],
        "{wide}"
    );
    let kubectl = cli.kubectl(&["get", "rj", "-A", "-o", "wide"]);
    assert_eq!(
        cells_without_age(&String::from_utf8_lossy(&kubectl.stdout)),
        cells_without_age(&wide)
    );

    let (code, names, _) = cli
        .run(&["list", "-A", "-l", "team=billing", "-o", "name"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(
        names,
        "reportjob.reporting.dev/refunds\nreportjob.reporting.dev/invoices\n"
    );
    let kubectl = cli.kubectl(&["get", "rj", "-A", "-l", "team=billing", "-o", "name"]);
    let mut theirs: Vec<String> = String::from_utf8_lossy(&kubectl.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut ours: Vec<String> = names.lines().map(str::to_string).collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);

    let (code, json_text, _) = cli.run(&["list", "-n", "team-b", "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "invoices");
    assert_eq!(list["items"][0]["status"]["phase"], "Succeeded");
    let (code, yaml_text, _) = cli.run(&["status", "refunds", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    let one: Value = serde_saphyr::from_str(&yaml_text).unwrap();
    assert_eq!(
        (one["kind"].as_str(), one["status"]["failedChunks"].as_str()),
        (Some("ReportJob"), Some("3"))
    );
    let (code, name, _) = cli.run(&["status", "refunds", "-o", "name"]).await;
    assert_eq!(
        (code, name.as_str()),
        (0, "reportjob.reporting.dev/refunds\n")
    );

    let (code, out, stderr) = cli.run(&["list", "-l", "team=nobody"]).await;
    assert_eq!(
        (code, out.as_str(), stderr.as_str()),
        (0, "", "No resources found in namespace default.\n")
    );
    let (code, out, _) = cli.run(&["list", "-l", "team=nobody", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["items"],
        json!([])
    );
    let (code, _, stderr) = cli.run(&["list", "-o", "toml"]).await;
    assert_eq!(code, 2, "{stderr}");

    // `submit -o name` prints what it created.
    let file = cli.dir.path().join("rj.json");
    std::fs::write(
        &file,
        manifest("payments", "default", "billing").to_string(),
    )
    .unwrap();
    let (code, out, stderr) = cli
        .run(&["submit", "-f", file.to_str().unwrap(), "-o", "name"])
        .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/payments\n"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_as_submit_wait_does_and_resume_pairs_with_cancel() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "a").await;
    cli.create("refunds", "default", "a").await;

    let waiting = cli.spawn(&["wait", "orders", "--timeout", "10m"]);
    cli.set_status(
        "orders",
        "default",
        json!({"phase": "Running", "progress": "1/4"}),
    )
    .await;
    waiting.shows("Running").await;
    let output = json!({"location": "orders.csv", "rows": 4000, "bytes": 123456,
                        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"});
    cli.set_status("orders", "default", complete(output)).await;
    let (code, out, err) = waiting.finished().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ReportJob default/orders succeeded in "),
        "{out}"
    );
    assert!(
        out.contains("location: orders.csv\n") && out.contains("rows:     4000\n"),
        "{out}"
    );

    // Already finished: at once, and -o prints the final object.
    let (code, out, _) = cli.run(&["wait", "orders", "-o", "name"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/orders\n")
    );

    let waiting = cli.spawn(&["wait", "refunds", "--json"]);
    cli.set_status("refunds", "default", failed()).await;
    let (code, out, err) = waiting.finished().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: ReportJob default/refunds failed: chunk 3 failed"),
        "{err}"
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            summary["result"].as_str(),
            summary["failed_chunks"].as_str()
        ),
        (Some("failed"), Some("3"))
    );

    cli.create("slow", "default", "a").await;
    let (code, _, err) = cli.run(&["wait", "slow", "--timeout", "1s"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: timed out after 1s waiting for ReportJob default/slow (Pending)"),
        "{err}"
    );
    let (code, _, err) = cli.run(&["wait", "nothing"]).await;
    assert_eq!(code, 1);
    assert_eq!(err, "error: ReportJob default/nothing not found\n");

    // A deleted ReportJob ends the wait with 1.
    let waiting = cli.spawn(&["wait", "slow"]);
    waiting.shows("Pending").await;
    let api: Api<ReportJob> = Api::default_namespaced(cli.client());
    api.delete("slow", &Default::default()).await.unwrap();
    let (code, _, err) = waiting.finished().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: ReportJob default/slow was deleted before it finished"),
        "{err}"
    );

    let (code, out, _) = cli.run(&["cancel", "orders"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("resume: reportjob resume orders -n default"),
        "{out}"
    );
    assert!(api.get("orders").await.unwrap().spec.suspend);
    let (code, out, err) = cli.run(&["resume", "orders"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ReportJob default/orders resumed (spec.suspend=false)"),
        "{out}"
    );
    assert!(!api.get("orders").await.unwrap().spec.suspend);
    let (code, _, err) = cli.run(&["resume", "nothing"]).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "error: ReportJob default/nothing not found\n")
    );
}

/// A stage pod of ReportJob `orders` (as the controller's Jobs label them), Running, with a
/// log file kubesim serves.
async fn stage_pod(cli: &Cli, name: &str, stage: &str, index: Option<&str>, log: &str) {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "reporting.dev/reportjob": "orders", "reporting.dev/stage": stage}},
        "spec": {"containers": [{"name": "reportjob", "image": "reportjob"}]},
    });
    if let Some(i) = index {
        pod["metadata"]["annotations"] = json!({"batch.kubernetes.io/job-completion-index": i});
    }
    let logs = cli.cluster.data_dir().join("logs").join("default");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join(format!("{name}.log")), log).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(cli.client());
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    set_pod_phase(cli, name, "Running").await;
}

async fn set_pod_phase(cli: &Cli, name: &str, phase: &str) {
    let pods: Api<Pod> = Api::default_namespaced(cli.client());
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

fn append(cli: &Cli, pod: &str, text: &str) {
    use std::io::Write;
    let path = cli
        .cluster
        .data_dir()
        .join("logs/default")
        .join(format!("{pod}.log"));
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The lines of one prefix, in order.
fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix).map(|r| r.trim_start().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_every_stage_pod_until_the_reportjob_ends() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "a").await;
    stage_pod(
        &cli,
        "orders-plan-a",
        "plan",
        None,
        "planning\nplanned 2 chunks\n",
    )
    .await;
    let following = cli.spawn(&["logs", "orders", "-f"]);
    following.shows("[plan] planned 2 chunks").await;
    set_pod_phase(&cli, "orders-plan-a", "Succeeded").await;
    stage_pod(
        &cli,
        "orders-chunks-0-x",
        "chunks",
        Some("0"),
        "chunk 0 start\n",
    )
    .await;
    stage_pod(
        &cli,
        "orders-chunks-1-y",
        "chunks",
        Some("1"),
        "chunk 1 start\n",
    )
    .await;
    following.shows("[chunks/1] chunk 1 start").await;
    following.shows("[chunks/0] chunk 0 start").await;
    append(&cli, "orders-chunks-0-x", "chunk 0 rows 500\n");
    following.shows("[chunks/0] chunk 0 rows 500").await;
    append(&cli, "orders-chunks-1-y", "chunk 1 done\n");
    set_pod_phase(&cli, "orders-chunks-0-x", "Succeeded").await;
    set_pod_phase(&cli, "orders-chunks-1-y", "Succeeded").await;
    // The assemble pod runs and ends between two looks: its log is read at the end too.
    stage_pod(
        &cli,
        "orders-assemble-z",
        "assemble",
        None,
        "assembled 1000 rows\n",
    )
    .await;
    set_pod_phase(&cli, "orders-assemble-z", "Succeeded").await;
    cli.set_status(
        "orders",
        "default",
        complete(json!({"location": "orders.csv", "rows": 1000, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    let (code, out, err) = following.finished().await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines_of(&out, "[plan]"),
        ["planning", "planned 2 chunks"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[chunks/0]"),
        ["chunk 0 start", "chunk 0 rows 500"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[chunks/1]"),
        ["chunk 1 start", "chunk 1 done"],
        "{out}"
    );
    assert_eq!(
        lines_of(&out, "[assemble]"),
        ["assembled 1000 rows"],
        "{out}"
    );
    assert_eq!(out.lines().count(), 7, "{out}");

    // Only one chunk, of a finished ReportJob: its whole log, then the end.
    let (code, out, _) = cli.run(&["logs", "orders", "-f", "--chunk", "1"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "[chunks/1] chunk 1 start\n[chunks/1] chunk 1 done\n")
    );
    let (code, _, err) = cli.run(&["logs", "nothing", "-f"]).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "error: ReportJob default/nothing not found\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_log_prints_the_pods_lines_beside_the_progress() {
    let cli = Cli::start().await;
    let file = cli.dir.path().join("rj.json");
    std::fs::write(&file, manifest("orders", "default", "a").to_string()).unwrap();
    let submitting = cli.spawn(&["submit", "-f", file.to_str().unwrap(), "--wait", "--log"]);
    submitting.shows("orders created").await;
    stage_pod(&cli, "orders-plan-a", "plan", None, "planned 1 chunk\n").await;
    submitting.shows("[plan] planned 1 chunk").await;
    set_pod_phase(&cli, "orders-plan-a", "Succeeded").await;
    cli.set_status(
        "orders",
        "default",
        complete(json!({"location": "orders.csv", "rows": 1, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    let (code, out, err) = submitting.finished().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("orders\nReportJob default/orders succeeded in "),
        "{out}"
    );
    assert_eq!(lines_of(&err, "[plan]"), ["planned 1 chunk"], "{err}");
    let (code, _, err) = cli
        .run(&["submit", "-f", file.to_str().unwrap(), "--log"])
        .await;
    assert_eq!(code, 2, "--log needs --wait: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_fetches_the_presigned_link_and_checks_the_sha256() {
    use object_store::ObjectStoreExt;
    use object_store::signer::Signer;
    use sha2::Digest;
    let cli = Cli::start().await;
    let s3 = S3Server::start("reports");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_bucket_name("reports")
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    let body: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i},row {i}\n").into_bytes())
        .collect();
    let key = object_store::path::Path::from("daily/orders.csv");
    store.put(&key, body.clone().into()).await.unwrap();
    let url = store
        .signed_url(reqwest::Method::GET, &key, Duration::from_secs(600))
        .await
        .unwrap()
        .to_string();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let output = |url: &str, sha: &str| {
        json!({"location": "s3://reports/daily/orders.csv", "rows": 200000, "bytes": body.len(),
               "sha256": sha, "url": url, "urlExpiresAt": "2099-01-01T00:00:00Z"})
    };
    cli.create("orders", "default", "a").await;
    cli.set_status("orders", "default", complete(output(&url, &sha)))
        .await;

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let (code, out, err) = cli
        .run(&["download", "orders", "-o", target.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}: {} bytes, sha256 {sha} (verified)\n",
            target.display(),
            body.len()
        )
    );
    assert!(
        std::fs::read(&target).unwrap() == body,
        "the downloaded bytes are the object's"
    );

    // A digest that is not the manifest's: nothing kept, exit 1.
    let other = dir.path().join("other.csv");
    cli.set_status("orders", "default", complete(output(&url, &"0".repeat(64))))
        .await;
    let (code, _, err) = cli
        .run(&["download", "orders", "-o", other.to_str().unwrap()])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{} bytes with sha256 {sha}, expected {} bytes with sha256 {}; nothing was kept",
            body.len(),
            body.len(),
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(!other.exists() && !dir.path().join("other.csv.part").exists());

    // A link whose signature is not the store's is refused by the store; the signature is
    // never printed.
    let last = url.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    cli.set_status("orders", "default", complete(output(&tampered, &sha)))
        .await;
    let (code, _, err) = cli
        .run(&["download", "orders", "-o", other.to_str().unwrap()])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("HTTP 403 Forbidden") && !err.contains("Signature"),
        "{err}"
    );

    // A PVC report has no link.
    cli.create("local", "default", "a").await;
    cli.set_status(
        "local",
        "default",
        complete(json!({"location": "local.csv", "rows": 1, "bytes": 1, "sha256": sha})),
    )
    .await;
    let (code, _, err) = cli.run(&["download", "local"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("ReportJob default/local wrote its report to local.csv on a volume: there is no download link"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_it_as_the_reportjob_plugin() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "a").await;
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_reportjob"),
        bin_dir.path().join("kubectl-reportjob"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        let mut cmd = cli.command(Path::new("kubectl"), args);
        cmd.env("PATH", &path);
        async move {
            let out = tokio::time::timeout(PATIENCE, cmd.output())
                .await
                .expect("kubectl ends")
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = kubectl(&["plugin", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            &bin_dir
                .path()
                .join("kubectl-reportjob")
                .display()
                .to_string()
        ),
        "{out}"
    );
    let (code, out, err) = kubectl(&["reportjob", "list", "-o", "name"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/orders\n"),
        "{err}"
    );
    let (code, out, _) = kubectl(&["reportjob", "--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: kubectl reportjob [OPTIONS] <COMMAND>"),
        "{out}"
    );
    let (code, _, err) = kubectl(&["reportjob", "wait"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("Usage: kubectl reportjob wait"), "{err}");
    // Called by its own name it is `reportjob`.
    let (_, out, _) = cli.run(&["--help"]).await;
    assert!(
        out.contains("Usage: reportjob [OPTIONS] <COMMAND>"),
        "{out}"
    );
}
