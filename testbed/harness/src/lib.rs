//! The test cluster: the real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager with every controller, kube-scheduler), built from the Go module
//! in `testbed/k8s` and started as local processes with controller-runtime envtest's flags,
//! plus our node agent (`testbed/node-agent`) running pods as local processes. Tests start
//! one per test binary and a namespace per test; `scripts/testbed.sh` starts one for people.

mod certs;
mod processes;
pub mod wait;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use kube::api::Api;

pub use certs::ClusterCerts;
pub use node_agent::ImageRule;
use processes::Process;
pub use processes::free_port;

/// The node the agent registers.
pub const NODE_NAME: &str = "testbed-node";
/// The StorageClass the agent provisions host-path volumes for (the default class).
pub const STORAGE_CLASS: &str = "standard";
/// How long start-up may take before it is reported as failed (a cold machine under load).
const READY_CEILING: Duration = Duration::from_secs(180);

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Where the cluster keeps everything: certificates, etcd's data, logs, the kubeconfig,
    /// pod directories and PersistentVolume data (`pv/<namespace>/<claim>`).
    pub dir: PathBuf,
    /// Container images the node can run: reference to local executable (and user).
    pub images: Vec<ImageRule>,
    /// The control plane's binaries; by default `testbed/k8s/build.sh` builds them (once per
    /// machine) and says where they are. `REPORTJOB_TESTBED_BIN` overrides both.
    pub bin_dir: Option<PathBuf>,
}

/// A running cluster. Dropping it stops the node agent's pods and every process.
pub struct Testbed {
    dir: PathBuf,
    api_port: u16,
    certs: ClusterCerts,
    processes: Vec<Process>,
    agent: Option<node_agent::Agent>,
    /// The node agent's own executor: pods are run and reported on threads the code under
    /// test never blocks, as a real node is another machine.
    runtime: Option<tokio::runtime::Runtime>,
    ready_in: Duration,
    version: String,
}

/// The directory holding the control plane's binaries, built when missing.
pub fn control_plane_binaries() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("REPORTJOB_TESTBED_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed ({}): the control plane could not be built",
        script.display(),
        out.status
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Where the node agent keeps copies of the images' programs: a path no pod volume covers
/// (a binary under `/tmp` would be hidden by a pod's `/tmp` emptyDir).
fn image_dir() -> PathBuf {
    let system = PathBuf::from("/var/lib/reportjob-testbed/images");
    if std::fs::create_dir_all(&system).is_ok() {
        return system;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".cache/reportjob-testbed/images")
}

impl Testbed {
    /// Starts the control plane and the node agent, and returns once the API server is
    /// ready, the node is Ready and the controllers that every namespace needs (service
    /// accounts, the root CA ConfigMap) have run. Blocking; call it outside an async context
    /// or from `spawn_blocking`.
    pub fn start(config: Config) -> anyhow::Result<Testbed> {
        let started = Instant::now();
        let bin = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => control_plane_binaries()?,
        };
        let dir = std::path::absolute(&config.dir)?;
        for sub in ["logs", "etcd", "pv"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let certs = ClusterCerts::generate(&dir.join("pki"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testbed")
            .enable_all()
            .build()
            .context("starting the testbed's runtime")?;
        let mut testbed = Testbed {
            api_port: 0,
            dir,
            certs,
            processes: Vec::new(),
            agent: None,
            runtime: None,
            ready_in: Duration::ZERO,
            version: String::new(),
        };
        let etcd_port = free_port()?;
        testbed.launch(
            "etcd",
            &bin,
            etcd_args(&testbed.dir.join("etcd"), etcd_port, free_port()?),
        )?;
        testbed.api_port = free_port()?;
        let apiserver = apiserver_args(&testbed.certs, testbed.api_port, etcd_port);
        testbed.launch("kube-apiserver", &bin, apiserver)?;
        std::fs::write(
            testbed.kubeconfig(),
            kubeconfig(&testbed.certs, testbed.api_port),
        )
        .context("writing the kubeconfig")?;
        let kubeconfig = testbed.kubeconfig();
        let kubeconfig = kubeconfig.display().to_string();
        testbed.launch(
            "kube-controller-manager",
            &bin,
            controller_manager_args(&testbed.certs, &kubeconfig),
        )?;
        testbed.launch("kube-scheduler", &bin, scheduler_args(&kubeconfig))?;
        let images = config.images.clone();
        let version = runtime.block_on(testbed.wait_until_serving())?;
        let agent_config = node_agent::AgentConfig {
            node_name: NODE_NAME.into(),
            data_dir: testbed.dir.clone(),
            images,
            image_dir: image_dir(),
            api_host: "127.0.0.1".into(),
            api_port: testbed.api_port,
            kubelet_cert_pem: testbed.certs.kubelet_serving.cert.clone(),
            kubelet_key_pem: testbed.certs.kubelet_serving.key.clone(),
            client_ca_pem: Some(testbed.certs.ca.cert.clone()),
            storage_class: STORAGE_CLASS.into(),
        };
        let client = runtime.block_on(testbed.client())?;
        let agent = runtime
            .block_on(async { node_agent::start(client, agent_config).await })
            .context("starting the node agent")?;
        testbed.agent = Some(agent);
        testbed.runtime = Some(runtime);
        testbed.block_on(testbed.wait_until_usable())??;
        testbed.version = version;
        testbed.ready_in = started.elapsed();
        Ok(testbed)
    }

    fn launch(&mut self, name: &'static str, bin: &Path, args: Vec<String>) -> anyhow::Result<()> {
        let program = bin.join(name);
        anyhow::ensure!(
            program.is_file(),
            "{} is missing: build the control plane with testbed/k8s/build.sh",
            program.display()
        );
        let log = self.dir.join("logs").join(format!("{name}.log"));
        self.processes
            .push(Process::start(name, &program, &args, &log)?);
        Ok(())
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> anyhow::Result<F::Output> {
        let runtime = self
            .runtime
            .as_ref()
            .context("the testbed's runtime is gone")?;
        Ok(runtime.block_on(f))
    }

    /// Fails with the process's log when a control-plane process has ended.
    fn check_processes(&mut self) -> anyhow::Result<()> {
        for p in &mut self.processes {
            p.check()?;
        }
        Ok(())
    }

    /// Waits for `/readyz`; returns the server's version.
    async fn wait_until_serving(&mut self) -> anyhow::Result<String> {
        let deadline = Instant::now() + READY_CEILING;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.check_processes()?;
            match self.readyz().await {
                Ok(version) => return Ok(version),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!(
            "kube-apiserver was not ready within {READY_CEILING:?} ({last}); its log's end:\n{}",
            processes::tail(&self.dir.join("logs/kube-apiserver.log"), 30)
        )
    }

    async fn readyz(&self) -> anyhow::Result<String> {
        let client = self.client().await?;
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let text = client.request_text(req).await?;
        anyhow::ensure!(text.trim() == "ok", "readyz: {text}");
        Ok(client.apiserver_version().await?.git_version)
    }

    /// Waits until the node is Ready and a namespace gets what pods need from the
    /// controllers (its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap).
    async fn wait_until_usable(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let deadline = Instant::now() + READY_CEILING;
        let mut waiting_for = "the node to be Ready";
        while Instant::now() < deadline {
            let node_ready = nodes
                .get_opt(NODE_NAME)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            if !node_ready {
                waiting_for = "the node to be Ready";
            } else if sas.get_opt("default").await.ok().flatten().is_none() {
                waiting_for = "the service-account controller (ServiceAccount default/default)";
            } else if cms
                .get_opt("kube-root-ca.crt")
                .await
                .ok()
                .flatten()
                .is_none()
            {
                waiting_for = "the root-CA publisher (ConfigMap default/kube-root-ca.crt)";
            } else {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("timed out after {READY_CEILING:?} waiting for {waiting_for}")
    }

    /// A client of the API server as the cluster admin (`system:masters`), built from the
    /// kubeconfig. Create one per runtime: a client's connections live on the runtime that
    /// made it.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin kubeconfig (for kubectl, helm and the controller).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The cluster CA (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.certs.ca.cert
    }

    pub fn certs(&self) -> &ClusterCerts {
        &self.certs
    }

    /// Where the PersistentVolumeClaim `claim` of `namespace` keeps its files on the host.
    pub fn volume_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.dir.join("pv").join(namespace).join(claim)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node agent (to kill or fail a pod's process).
    pub fn agent(&self) -> &node_agent::Agent {
        self.agent
            .as_ref()
            .expect("the agent runs until the testbed stops")
    }

    /// The API server's version (`v1.37.2`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How long start-up took.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// A control-plane process's log so far (`kube-apiserver`, `kube-controller-manager`, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Stops the node agent (killing every pod process), then the control plane in reverse
    /// order of start.
    pub fn stop(&mut self) {
        if let (Some(agent), Some(runtime)) = (self.agent.take(), self.runtime.as_ref()) {
            runtime.block_on(agent.shutdown());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn etcd_args(data: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--name=default".into(),
        // A test cluster's store does not need to survive a power cut (envtest does the same).
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(certs: &ClusterCerts, port: u16, etcd_port: u16) -> Vec<String> {
    let f = |name: &str| certs.file(name).display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", f("apiserver.crt")),
        format!("--tls-private-key-file={}", f("apiserver.key")),
        format!("--client-ca-file={}", f("ca.crt")),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-issuer=https://127.0.0.1:{port}"),
        format!("--service-account-key-file={}", f("sa.pub")),
        format!("--service-account-signing-key-file={}", f("sa.key")),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No Service IP is routable here: the `kubernetes` Endpoints are not maintained, and
        // pods reach the API server at its real address (the agent's in-cluster env).
        "--endpoint-reconciler-type=none".into(),
        // `kubectl logs` is proxied to the node agent at its InternalIP, presenting this
        // client certificate (the agent requires one signed by the cluster CA).
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!("--kubelet-client-certificate={}", f("kubelet-client.crt")),
        format!("--kubelet-client-key={}", f("kubelet-client.key")),
        "--profiling=false".into(),
    ]
}

fn controller_manager_args(certs: &ClusterCerts, kubeconfig: &str) -> Vec<String> {
    let f = |name: &str| certs.file(name).display().to_string();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        "--controllers=*".into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        format!("--service-account-private-key-file={}", f("sa.key")),
        format!("--root-ca-file={}", f("ca.crt")),
        format!("--cluster-signing-cert-file={}", f("ca.crt")),
        format!("--cluster-signing-key-file={}", f("ca.key")),
        "--profiling=false".into(),
    ]
}

fn scheduler_args(kubeconfig: &str) -> Vec<String> {
    vec![
        format!("--kubeconfig={kubeconfig}"),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--profiling=false".into(),
    ]
}

/// An admin kubeconfig with the certificates inline, so it can be copied anywhere.
fn kubeconfig(certs: &ClusterCerts, port: u16) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: testbed-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed-admin\n    namespace: default\ncurrent-context: testbed\n",
        b64(&certs.ca.cert),
        b64(&certs.admin.cert),
        b64(&certs.admin.key),
    )
}
