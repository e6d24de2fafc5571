//! The real control plane for cluster tests: one testbed (kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler and our node agent) per test binary, started on
//! first use, with the ReportJob CRDs installed once; each test gets namespaces of its own
//! (unique names) and controllers that watch only those, so tests run side by side.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use reportjob::api::{Phase, ReportJob};
use serde_json::json;

use super::eventually;
pub use super::spec::report;
pub use faultproxy::Fault;

/// The image stage pods run; the node agent maps it (every tag) to the binary under test,
/// running as the Dockerfile's `USER 65532`.
pub const WORKER_IMAGE: &str = "reportjob:dev";

/// The test binary's cluster, started on first use and stopped when the process ends (its
/// processes die with it: the harness starts them with a parent-death signal).
pub fn testbed() -> &'static testbed::Testbed {
    static TESTBED: OnceLock<Result<testbed::Testbed, String>> = OnceLock::new();
    let started = TESTBED.get_or_init(|| {
        // Testbed::start blocks on its own runtime: not from inside the test's.
        std::thread::spawn(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("testbed-{}", std::process::id()));
            remove_stale_testbeds(&dir);
            let image = format!("reportjob={}:65532", env!("CARGO_BIN_EXE_reportjob"));
            let config = testbed::Config {
                dir,
                images: vec![testbed::ImageRule::parse(&image).map_err(|e| e.to_string())?],
                bin_dir: None,
            };
            let tb = testbed::Testbed::start(config).map_err(|e| format!("{e:#}"))?;
            eprintln!(
                "testbed: Kubernetes {} ready in {:.1} s at {}",
                tb.version(),
                tb.ready_in().as_secs_f64(),
                tb.dir().display()
            );
            Ok(tb)
        })
        .join()
        .unwrap_or_else(|_| Err("starting the testbed panicked".into()))
    });
    match started {
        Ok(tb) => tb,
        Err(e) => panic!("the test cluster did not start: {e}"),
    }
}

/// Removes the directories of earlier runs' clusters whose process is gone.
fn remove_stale_testbeds(mine: &Path) {
    let Some(parent) = mine.parent() else { return };
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("testbed-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Installs the CRDs (once per test binary) and waits until they are served.
async fn install_crds(client: &Client) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            for crd in [
                reportjob::api::schema::crd(),
                reportjob::schedule::crd::crd(),
                reportjob::database::crd::crd(),
            ] {
                let name = crd.metadata.name.clone().unwrap();
                crds.patch(
                    &name,
                    &PatchParams::apply("reportjob-tests").force(),
                    &Patch::Apply(&crd),
                )
                .await
                .unwrap();
                eventually(&format!("CRD {name} to be established"), || {
                    let crds = crds.clone();
                    let name = name.clone();
                    async move {
                        let crd = crds.get(&name).await.ok()?;
                        crd.status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                            .then_some(())
                    }
                })
                .await;
            }
        })
        .await;
}

/// Held by a test while it changes cluster-scoped objects that other tests also touch (the
/// chart's ClusterRoles and bindings, CRDs installed from a chart): one such test at a time.
pub async fn cluster_scoped_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Unique namespace names within the test binary: `<prefix>-<n>`. Leaked, one string per
/// namespace a test makes, so tests keep passing `ns: &str` around as they did with fixed
/// names.
fn unique(prefix: &str) -> &'static str {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    Box::leak(name.into_boxed_str())
}

/// One test's view of the shared cluster: a client on the test's runtime, its namespaces,
/// the controllers it started (killed on drop) and a directory for their logs.
pub struct Env {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    namespaces: Vec<String>,
    controllers: Vec<(Child, PathBuf)>,
    proxy: Option<faultproxy::FaultProxy>,
}

impl Env {
    /// The shared cluster with the CRDs installed.
    pub async fn start() -> Env {
        let env = Env::bare().await;
        install_crds(&env.client).await;
        env
    }

    /// The shared cluster as it is (the CRDs may or may not be installed).
    pub async fn bare() -> Env {
        let tb = testbed();
        let client = tb.client().await.unwrap();
        Env {
            client,
            kubeconfig: tb.kubeconfig(),
            dir: tempfile::tempdir().unwrap(),
            namespaces: Vec::new(),
            controllers: Vec::new(),
            proxy: None,
        }
    }

    pub fn testbed(&self) -> &'static testbed::Testbed {
        testbed()
    }

    /// Runs kubectl (the control plane's own release) against the cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl on PATH (scripts/test.sh puts the testbed's there)")
    }

    /// A unique namespace name for a namespace the test creates itself (with kubectl, as a
    /// user would); controllers this test starts watch it.
    pub fn reserve(&mut self, prefix: &str) -> &'static str {
        let ns = unique(prefix);
        self.namespaces.push(ns.to_string());
        ns
    }

    /// A new namespace named `<prefix>-<n>`, with its `default` ServiceAccount made (pods
    /// are refused until the controller manager has made it). Returns its name.
    pub async fn namespace(&mut self, prefix: &str) -> &'static str {
        let ns = unique(prefix);
        let nss: Api<Namespace> = Api::all(self.client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        eventually(&format!("the default ServiceAccount of {ns}"), || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten().map(|_| ()) }
        })
        .await;
        self.namespaces.push(ns.to_string());
        ns
    }

    /// A new namespace (see [`Env::namespace`]) with a database Secret (`db`, key `url`) and
    /// a bound PVC `reports`. Returns its name.
    pub async fn tenant(&mut self, prefix: &str) -> &'static str {
        let ns = self.namespace(prefix).await;
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
        eventually(&format!("PVC {ns}/reports to be bound"), || {
            let pvcs = pvcs.clone();
            async move {
                let pvc = pvcs.get("reports").await.ok()?;
                (pvc.status?.phase.as_deref() == Some("Bound")).then_some(())
            }
        })
        .await;
        ns
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

    /// A copy of the admin kubeconfig whose context's namespace is `ns`, for commands that
    /// take their namespace from the kubeconfig (the client commands without `-n`).
    pub fn kubeconfig_in(&self, ns: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{ns}"));
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        std::fs::write(
            &path,
            text.replace("namespace: default", &format!("namespace: {ns}")),
        )
        .unwrap();
        path
    }

    /// Where the PVC `reports` of `ns` keeps its files on the host.
    pub fn pvc_dir(&self, ns: &str) -> PathBuf {
        testbed().volume_dir(ns, "reports")
    }

    pub fn rjs(&self, ns: &str) -> Api<ReportJob> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Merge-patches ReportJob `ns/name` with `patch` (a retry annotation, `spec.suspend`,
    /// a TTL), as `kubectl patch --type merge` would.
    pub async fn merge_patch(&self, ns: &str, name: &str, patch: serde_json::Value) {
        self.rjs(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// Starts a controller process watching this test's namespaces (all of them when
    /// `extra` names `--namespaces` itself); its log goes to `<dir>/controller-<n>.log`.
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
        if !extra.contains(&"--namespaces") {
            assert!(
                !self.namespaces.is_empty(),
                "create the test's namespaces before its controller (it watches only them)"
            );
            command.arg("--namespaces").arg(self.namespaces.join(","));
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

    /// This test's fault proxy in front of the API server (started on first use): faults
    /// set on it reach only the controllers started through it.
    pub fn proxy(&mut self) -> &faultproxy::FaultProxy {
        self.proxy.get_or_insert_with(|| {
            let tb = testbed();
            let certs = tb.certs();
            let proxy = faultproxy::FaultProxy::start(faultproxy::Upstream {
                url: tb.api_url(),
                ca_pem: certs.ca.cert.clone(),
                client_cert_pem: certs.admin.cert.clone(),
                client_key_pem: certs.admin.key.clone(),
            })
            .unwrap();
            proxy
                .write_kubeconfig(&self.dir.path().join("proxy-kubeconfig"))
                .unwrap();
            proxy
        })
    }

    /// A controller like [`Env::start_single_controller`] that reaches the API server
    /// through this test's fault proxy.
    pub fn start_controller_through_proxy(&mut self) {
        self.proxy();
        let kubeconfig = self.dir.path().join("proxy-kubeconfig");
        let kubeconfig = kubeconfig.to_str().unwrap().to_string();
        let addr = format!("127.0.0.1:{}", free_port());
        self.start_controller(&[
            "--leader-election=false",
            "--metrics-addr",
            &addr,
            "--kubeconfig",
            &kubeconfig,
        ]);
    }

    /// A controller without leader election, metrics on a free port.
    pub fn start_single_controller(&mut self) {
        let addr = format!("127.0.0.1:{}", free_port());
        self.start_controller(&["--leader-election=false", "--metrics-addr", &addr]);
    }

    /// SIGKILLs the `n`-th controller.
    pub fn kill_controller(&mut self, n: usize) {
        let (child, _) = &mut self.controllers[n];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The `n`-th controller's log so far.
    pub fn controller_log(&self, n: usize) -> String {
        std::fs::read_to_string(&self.controllers[n].1).unwrap_or_default()
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

    /// Waits until the ReportJob satisfies `done`; panics after `timeout` with its status,
    /// the namespace's Jobs and pods, the controllers' logs and the pods' logs.
    pub async fn wait_for(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ReportJob) -> bool,
    ) -> ReportJob {
        let mut last = None;
        let found = super::poll(timeout, async || {
            let rj = self.rjs(ns).get_opt(name).await.ok()??;
            if done(&rj) {
                return Some(rj);
            }
            last = Some(rj);
            None
        })
        .await;
        if let Some(rj) = found {
            return rj;
        }
        let objects = self.kubectl(&["-n", ns, "get", "jobs,pods", "-o", "wide"]);
        let logs: Vec<String> = (0..self.controllers.len())
            .map(|n| self.controller_log(n))
            .collect();
        panic!(
            "timed out waiting for {ns}/{name} to be {what}; last status: {}\nobjects:\n{}{}\ncontroller logs:\n{}\npod logs:\n{}",
            serde_json::to_string_pretty(&last.map(|r| r.status)).unwrap(),
            String::from_utf8_lossy(&objects.stdout),
            String::from_utf8_lossy(&objects.stderr),
            logs.join("\n---\n"),
            self.pod_logs(ns),
        );
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

    /// The end of every container log of `ns` the node agent kept, each under its name.
    pub fn pod_logs(&self, ns: &str) -> String {
        let dir = testbed().dir().join("logs").join(ns);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let start = text.len().saturating_sub(2000);
            let start = (start..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            out.push_str(&format!("== {}\n{}\n", file.display(), &text[start..]));
        }
        out
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

use super::free_port;

/// The file a ReportJob wrote on its PVC `reports`.
pub fn output_file(env: &Env, ns: &str, path: &str) -> PathBuf {
    env.pvc_dir(ns).join(Path::new(path))
}
