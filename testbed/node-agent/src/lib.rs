//! node-agent: the kubelet's part of a Kubernetes node for a real control plane (kube-apiserver,
//! kube-controller-manager, kube-scheduler) on this machine, running each pod as a local process.
//!
//! [`start`] registers the Node, keeps its Lease and status fresh, provisions host-path
//! PersistentVolumes for the default StorageClass, serves the kubelet's log endpoint (so
//! `kubectl logs` works through the API server) and runs the pods the scheduler binds to the
//! node. It does nothing the controllers or the scheduler do: no Job logic, no binding.

mod env;
mod events;
mod identity;
mod images;
mod incluster;
mod launch;
mod logfile;
mod logs;
mod node;
mod pods;
mod probe;
mod provisioner;
mod spawn;
mod status;
mod tls;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;

pub use images::ImageRule;
pub use provisioner::{PROVISIONER, volume_dir};

/// What the agent needs to know about its node and the cluster.
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    /// The Node object's name (and the pods' `spec.nodeName` the agent watches).
    pub node_name: String,
    /// Where pods' logs (`logs/<ns>/<pod>_<container>.log`), per-pod directories (`pods/`) and
    /// provisioned volumes (`pv/<ns>/<claim>`) live.
    pub data_dir: PathBuf,
    /// Container images the node can run, each a local executable.
    pub images: Vec<ImageRule>,
    /// Where the images' programs are copied at start: a directory no pod volume covers.
    pub image_dir: PathBuf,
    /// The API server's address as pods reach it (`KUBERNETES_SERVICE_HOST`).
    pub api_host: String,
    /// The API server's port as pods reach it (`KUBERNETES_SERVICE_PORT`).
    pub api_port: u16,
    /// The log endpoint's serving certificate (PEM, leaf first).
    pub kubelet_cert_pem: String,
    /// Its private key (PEM).
    pub kubelet_key_pem: String,
    /// When set, the log endpoint requires client certificates signed by this CA (PEM).
    pub client_ca_pem: Option<String>,
    /// The StorageClass the agent creates (as the default class) and provisions volumes for.
    pub storage_class: String,
}

/// A running node agent. Dropping it kills every pod process it started.
pub struct Agent {
    kubelet: Arc<pods::Kubelet>,
    tasks: Vec<JoinHandle<()>>,
    kubelet_port: u16,
}

/// Registers the node and starts running the pods bound to it, on the caller's tokio runtime.
/// Returns once the node is registered, the log endpoint listens and the first list of the
/// node's pods has been taken.
pub async fn start(client: kube::Client, cfg: AgentConfig) -> anyhow::Result<Agent> {
    anyhow::ensure!(!cfg.node_name.is_empty(), "node_name is empty");
    for dir in [&cfg.data_dir, &cfg.image_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let installed = images::install(&cfg.images, &cfg.image_dir)?;
    let (listener, kubelet_port) = logs::bind(&cfg)
        .await
        .context("starting the log endpoint")?;
    let kubelet = Arc::new(pods::Kubelet::new(client.clone(), &cfg, installed)?);
    // From here on, a failed start drops the agent, which stops what was started.
    let mut agent = Agent {
        kubelet: Arc::clone(&kubelet),
        tasks: Vec::new(),
        kubelet_port,
    };
    agent.tasks.push(tokio::spawn(logs::serve(
        listener,
        Arc::clone(&kubelet.logs),
        cfg.data_dir.clone(),
    )));
    let registered = node::register(&client, &cfg, kubelet_port)
        .await
        .context("registering the node")?;
    agent.tasks.push(tokio::spawn(node::keep_alive(
        client.clone(),
        cfg.clone(),
        kubelet_port,
        registered,
    )));
    provisioner::ensure_class(&client, &cfg.storage_class)
        .await
        .context("creating the StorageClass")?;
    agent.tasks.push(tokio::spawn(provisioner::run(
        client.clone(),
        cfg.storage_class.clone(),
        cfg.data_dir.clone(),
    )));
    let (listed, pod_task) = pods::watch(kubelet);
    agent.tasks.push(pod_task);
    if listed.await.is_err() {
        anyhow::bail!("the pod watch ended before its first list");
    }
    Ok(agent)
}

impl Agent {
    /// SIGKILLs the pod's running process group; the container is reported with exit code 137
    /// and the pod's restart policy applies.
    pub fn kill_pod(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        self.kubelet.kill(ns, name, 137)
    }

    /// Ends the pod's running process group now and reports exit code `code` for it.
    pub fn fail_pod(&self, ns: &str, name: &str, code: i32) -> anyhow::Result<()> {
        self.kubelet.kill(ns, name, code)
    }

    /// The port of the kubelet endpoint (`status.daemonEndpoints.kubeletEndpoint.Port`).
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet_port
    }

    /// Where the PersistentVolumeClaim `claim` of `namespace` keeps its files on the host.
    pub fn volume_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        volume_dir(&self.kubelet.data_dir, namespace, claim)
    }

    /// Where the current log of a pod's container is kept.
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        logfile::log_path(&self.kubelet.data_dir, namespace, pod, container)
    }

    /// The agent's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.kubelet.data_dir
    }

    /// Stops every task, kills every pod process group and waits (a few seconds at most) until
    /// the processes are gone. The Node object stays.
    pub async fn shutdown(mut self) {
        self.stop();
        self.kubelet
            .wait_for_processes(std::time::Duration::from_secs(5))
            .await;
    }

    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.kubelet.abort_workers();
        self.kubelet.kill_all();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
