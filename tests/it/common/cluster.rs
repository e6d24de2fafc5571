//! A kubesim cluster with the ReportJob CRD, the real `reportjob` binary as the worker
//! image, and the controller running as a separate process (so tests can kill it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use reportjob::api::{Phase, ReportJob};
use serde_json::json;

use super::spec::SpecBuilder;

/// The image stage pods run; kubesim maps it to the `reportjob` binary under test.
pub const WORKER_IMAGE: &str = "reportjob:dev";

/// A cluster, its kubeconfig and the controller processes started on it.
pub struct Env {
    pub cluster: kubesim::Cluster,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    controllers: Vec<(Child, PathBuf)>,
}

impl Env {
    /// Starts kubesim (running pods) and installs the CRD.
    pub async fn start() -> Env {
        let env = Env::bare().await;
        let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
        crds.create(&PostParams::default(), &ReportJob::crd())
            .await
            .unwrap();
        env
    }

    /// Starts kubesim (running pods) without the CRD. `KUBESIM_LOG=debug` shows what the
    /// cluster does on stderr.
    pub async fn bare() -> Env {
        if let Ok(filter) = std::env::var("KUBESIM_LOG") {
            let file = std::env::var("KUBESIM_LOG_FILE").unwrap_or_else(|_| "kubesim.log".into());
            let file = std::fs::File::create(file).unwrap();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
            data_dir: Some(dir.path().join("cluster")),
            run_pods: true,
            images: vec![(
                "reportjob".into(),
                PathBuf::from(env!("CARGO_BIN_EXE_reportjob")),
            )],
            // As the Dockerfile's `USER 65532:65532`.
            image_users: vec![("reportjob".into(), 65532)],
            ..Default::default()
        })
        .await
        .unwrap();
        let client = cluster.client().await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).unwrap();
        Env {
            cluster,
            client,
            dir,
            kubeconfig,
            controllers: Vec::new(),
        }
    }

    /// Runs kubectl against the cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl on PATH (scripts/test.sh installs it)")
    }

    /// Starts a controller process; its log goes to `<dir>/controller-<n>.log`.
    pub fn start_controller(&mut self, extra: &[&str]) {
        let log = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.controllers.len()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_reportjob"));
        command.args(["controller", "--worker-image", WORKER_IMAGE]);
        if !extra.contains(&"--kubeconfig") {
            command.arg("--kubeconfig").arg(&self.kubeconfig);
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "info,reportjob=debug,kube=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        self.controllers.push((child, log));
    }

    /// A controller without leader election, metrics on a free port.
    pub fn start_single_controller(&mut self) {
        let addr = format!("127.0.0.1:{}", free_port());
        self.start_controller(&["--leader-election=false", "--metrics-addr", &addr]);
    }

    /// How many controllers were started so far.
    pub fn controllers(&self) -> usize {
        self.controllers.len()
    }

    /// SIGKILLs the `n`-th controller.
    pub fn kill_controller(&mut self, n: usize) {
        let (child, _) = &mut self.controllers[n];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the `n`-th controller process is still running.
    pub fn controller_running(&mut self, n: usize) -> bool {
        matches!(self.controllers[n].0.try_wait(), Ok(None))
    }

    /// The `n`-th controller's log so far.
    pub fn controller_log(&self, n: usize) -> String {
        std::fs::read_to_string(&self.controllers[n].1).unwrap_or_default()
    }

    /// Creates a namespace with a database Secret (`db`, key `url`) and a PVC `reports`.
    pub async fn tenant(&self, ns: &str) {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
        self.secret(ns, "db", &[("url", &super::database_url())])
            .await;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = json!({"metadata": {"name": "reports"}, "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}});
        pvcs.create(
            &PostParams::default(),
            &serde_json::from_value(pvc).unwrap(),
        )
        .await
        .unwrap();
    }

    pub async fn secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let secret = json!({"metadata": {"name": name}, "stringData": data});
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Where kubesim keeps the PVC `reports` of `ns` on the host.
    pub fn pvc_dir(&self, ns: &str) -> PathBuf {
        self.cluster.data_dir().join("pvc").join(ns).join("reports")
    }

    pub fn rjs(&self, ns: &str) -> Api<ReportJob> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Applies a ReportJob given as YAML (server-side apply, as `kubectl apply --server-side`).
    pub async fn apply(&self, ns: &str, yaml: &str) -> ReportJob {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        self.rjs(ns)
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(value),
            )
            .await
            .unwrap()
    }

    /// Waits until the ReportJob satisfies `done`, or panics after `timeout` with its status
    /// and the controller's log.
    pub async fn wait_for(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ReportJob) -> bool,
    ) -> ReportJob {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            if let Ok(Some(rj)) = self.rjs(ns).get_opt(name).await {
                if done(&rj) {
                    return rj;
                }
                last = Some(rj);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let objects = self.kubectl(&["-n", ns, "get", "jobs,pods", "-o", "wide"]);
        eprintln!(
            "objects in {ns}:\n{}{}",
            String::from_utf8_lossy(&objects.stdout),
            String::from_utf8_lossy(&objects.stderr)
        );
        let logs: Vec<String> = (0..self.controllers.len())
            .map(|n| self.controller_log(n))
            .collect();
        panic!(
            "timed out waiting for {ns}/{name} to be {what}; last status: {}\ncontroller logs:\n{}\npod logs:\n{}",
            serde_json::to_string_pretty(&last.map(|r| r.status)).unwrap(),
            logs.join("\n---\n"),
            self.pod_logs(ns),
        );
    }

    /// Every pod log of `ns` kept by kubesim, each under its file name.
    pub fn pod_logs(&self, ns: &str) -> String {
        let dir = self.cluster.data_dir().join("logs").join(ns);
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push_str(&format!("== {}\n{tail}\n", file.display()));
        }
        out
    }

    /// Waits for a phase.
    pub async fn wait_phase(
        &self,
        ns: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> ReportJob {
        self.wait_for(ns, name, timeout, phase.as_str(), |rj| {
            rj.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (child, _) in &mut self.controllers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ReportJob `name` exporting `table` by `id` to the PVC `reports` at `path`, in chunks
/// of 500 rows, three at a time, with the connection Secret `db` (key `url`) that `tenant`
/// creates.
pub fn report(name: &str, table: &str, path: &str) -> SpecBuilder {
    SpecBuilder::table(table)
        .name(name)
        .secret_key("url")
        .key("id")
        .chunk_size(500)
        .parallelism(3)
        .pvc("reports", path)
        .retries(2)
}

/// The file a ReportJob wrote on its PVC.
pub fn output_file(env: &Env, ns: &str, path: &str) -> PathBuf {
    env.pvc_dir(ns).join(Path::new(path))
}
