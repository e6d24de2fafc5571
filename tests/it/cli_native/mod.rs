//! The kubectl-style client commands against the real Kubernetes control plane of the test
//! binary (`common::testbed`), each test in namespaces of its own and with no controller: the
//! test writes the ReportJobs' statuses itself. `list` (`-A`, `-l`, every `-o`, checked against
//! `kubectl get`), `status -o`, `wait` and its exit codes, `resume`, `logs -f` and `submit
//! --wait --log` following real pods the node agent runs (they print lines, and more lines when
//! the test hands them some through their volume, until told to end), `download` through a real
//! presigned link of a real S3 server, and the binary as the kubectl plugin `kubectl
//! reportjob`. This file holds the shared fixture (a namespace, a kubeconfig whose context is
//! that namespace, the command runner); one file per command family beside it.

mod download;
mod list;
mod logs;
mod plugin;
mod wait;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use reportjob::api::ReportJob;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::common::PATIENCE;
use crate::common::testbed;

/// The name kubectl runs the plugin by.
pub(crate) const PLUGIN_BIN: &str = reportjob::cli::PLUGIN_BINARY;

/// The label every ReportJob a test creates carries, its value the test's first namespace: on
/// the shared cluster, `-A` with `-l RUN_LABEL=<ns>` is the test's objects alone.
pub(crate) const RUN_LABEL: &str = "test-run";

/// A ReportJob manifest in `ns` with labels.
pub(crate) fn manifest(name: &str, ns: &str, team: &str) -> Value {
    json!({
        "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
        "spec": {
            "source": {"connectionSecretRef": {"name": "db"}, "table": "orders", "keyColumn": "id"},
            "output": {"destination": {"pvc": {"claimName": "reports", "path": format!("{name}.csv")}}},
        },
    })
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "",
           "lastTransitionTime": now()})
}

pub(crate) fn complete(output: Value) -> Value {
    json!({"phase": "Succeeded", "progress": "4/4", "rows": 4000, "message": "published",
           "output": output, "completionTime": now(),
           "conditions": [condition("Complete", "True", "ReportPublished")]})
}

pub(crate) fn failed() -> Value {
    json!({"phase": "Failed", "progress": "3/4", "rows": 3000, "message": "chunk 3 failed",
           "failedChunks": "3",
           "conditions": [condition("Complete", "False", "ChunksFailed"),
                          condition("Failed", "True", "ChunksFailed")]})
}

/// One test's namespace `ns` on the shared cluster (CRDs installed, no controller) and a
/// kubeconfig whose context's namespace is `ns`: the commands run without `-n` work there.
pub(crate) struct Cli {
    pub(crate) env: testbed::Env,
    pub(crate) ns: &'static str,
    pub(crate) kubeconfig: PathBuf,
}

impl Cli {
    /// A new namespace `<prefix>-<n>`.
    pub(crate) async fn start(prefix: &str) -> Cli {
        let mut env = testbed::Env::start().await;
        let ns = env.namespace(prefix).await;
        Cli::with(env, ns)
    }

    /// A new namespace `<prefix>-<n>` with a bound PVC `reports` (and a Secret `db`), whose
    /// directory the test reaches from the host ([`Cli::volume`]).
    pub(crate) async fn with_volume(prefix: &str) -> Cli {
        let mut env = testbed::Env::start().await;
        let ns = env.tenant(prefix).await;
        Cli::with(env, ns)
    }

    fn with(env: testbed::Env, ns: &'static str) -> Cli {
        let kubeconfig = env.kubeconfig_in(ns);
        Cli {
            env,
            ns,
            kubeconfig,
        }
    }

    /// Another namespace of this test, `<prefix>-<n>`.
    pub(crate) async fn namespace(&mut self, prefix: &str) -> &'static str {
        self.env.namespace(prefix).await
    }

    /// A directory of this test's own.
    pub(crate) fn dir(&self) -> &Path {
        self.env.dir.path()
    }

    /// The host directory of the PVC `reports` ([`Cli::with_volume`]).
    pub(crate) fn volume(&self) -> PathBuf {
        self.env.pvc_dir(self.ns)
    }

    /// kubectl against the cluster, in the test's namespace unless told otherwise.
    pub(crate) fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl on PATH")
    }

    pub(crate) fn client(&self) -> Client {
        self.env.client.clone()
    }

    /// Creates ReportJob `ns/name` labelled `team` and [`RUN_LABEL`].
    pub(crate) async fn create(&self, name: &str, ns: &str, team: &str) {
        let mut rj = manifest(name, ns, team);
        rj["metadata"]["labels"][RUN_LABEL] = json!(self.ns);
        let api: Api<ReportJob> = Api::namespaced(self.client(), ns);
        api.create(&PostParams::default(), &serde_json::from_value(rj).unwrap())
            .await
            .unwrap();
    }

    /// Writes the status subresource, as the controller would.
    pub(crate) async fn set_status(&self, name: &str, ns: &str, status: Value) {
        let api: Api<ReportJob> = Api::namespaced(self.client(), ns);
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    }

    pub(crate) fn command(&self, program: &Path, args: &[&str]) -> Command {
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

    /// `reportjob ARGS` (KUBECONFIG the test's namespace's): exit code, stdout, stderr.
    pub(crate) async fn run(&self, args: &[&str]) -> (i32, String, String) {
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

    pub(crate) fn spawn(&self, args: &[&str]) -> Running {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_reportjob"));
        Running::new(self.command(&bin, args).spawn().unwrap())
    }
}

/// A running command whose stdout and stderr are read as they come.
pub(crate) struct Running {
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
    pub(crate) async fn shows(&self, text: &str) {
        let shown = crate::common::poll(PATIENCE, async || {
            let out = self.out.lock().unwrap().clone();
            let err = self.err.lock().unwrap().clone();
            (out.contains(text) || err.contains(text)).then_some(())
        })
        .await;
        assert!(
            shown.is_some(),
            "{text:?} never shown; stdout:\n{}\nstderr:\n{}",
            self.out.lock().unwrap(),
            self.err.lock().unwrap()
        );
    }

    pub(crate) async fn finished(mut self) -> (i32, String, String) {
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
pub(crate) fn cells_without_age(table: &str) -> Vec<Vec<String>> {
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
