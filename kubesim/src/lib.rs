//! kubesim: an in-process Kubernetes API server and Job runner for end-to-end tests.

pub mod api;
pub mod runner;
pub mod tls;

use anyhow::Context as _;
use api::faults::FaultRules;
use api::server::App;
use api::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Port on 127.0.0.1; a random free port when `None`.
    pub port: Option<u16>,
    /// Port of the TLS listener on 127.0.0.1 (what pods reach as the `kubernetes` Service);
    /// a random free port when `None`.
    pub secure_port: Option<u16>,
    /// Data directory (pod logs, PVCs); a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Container image -> local executable.
    pub images: Vec<(String, PathBuf)>,
    /// Container image -> the image's default user (UID); unlisted images run as root, like an
    /// image without `USER`.
    pub image_users: Vec<(String, u32)>,
    /// Start the Job controller and pod runner.
    pub run_pods: bool,
}

struct Serving {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A running kubesim cluster.
pub struct Cluster {
    addr: SocketAddr,
    secure_addr: SocketAddr,
    tls: Arc<tls::Tls>,
    store: Arc<Store>,
    faults: Arc<FaultRules>,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    serving: Mutex<Option<(Serving, Serving)>>,
    runner: Option<runner::RunnerHandle>,
    /// The cluster's own executor: the API server and the runner never share threads with
    /// the code under test, as a real cluster runs in other processes. (Sharing them let a
    /// task parked behind a busy test thread starve: pods then stayed Pending.)
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first (RunnerHandle's drop kills them), then the executor, without
        // blocking the caller's runtime.
        self.runner.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Fault injection handle.
#[derive(Clone)]
pub struct Faults {
    store: Arc<Store>,
    rules: Arc<FaultRules>,
}

impl Faults {
    /// Fail the next `n` requests of `verb` on `resource` (plural; `*` matches any) with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, n: u32, code: u16) {
        self.rules.fail_next(verb, resource, n, code);
    }
    /// Close every open watch stream.
    pub fn drop_watches(&self) {
        self.store.drop_watches();
    }
    /// Forget the event history: watches from older resourceVersions get an in-stream 410.
    pub fn compact(&self) {
        self.store.compact();
    }
}

/// Serve `app` on `listener`, over TLS when `tls` is given.
fn serve(
    rt: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    app: Arc<App>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Serving {
    let (stop, rx) = oneshot::channel::<()>();
    let router = axum::Router::new()
        .fallback(api::server::handle)
        .with_state(app);
    let task = rt.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let stopped = async move {
            let _ = rx.await;
        };
        let _ = match tls {
            Some(config) => {
                axum::serve(tls::TlsListener::new(listener, config), router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
    });
    Serving { stop, task }
}

/// Bind 127.0.0.1:`port` (0 for any), retrying a while when the port is still held.
async fn bind(port: u16) -> anyhow::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) if tries < 50 && port != 0 => {
                tries += 1;
                tracing::debug!("rebinding {port}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("binding 127.0.0.1:{port}")),
        }
    }
}

impl Cluster {
    /// Start the API server (and the runner when `run_pods`).
    pub async fn start(cfg: ClusterConfig) -> anyhow::Result<Cluster> {
        let (data_dir, tmp) = match cfg.data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let listener = bind(cfg.port.unwrap_or(0)).await?;
        let addr = listener.local_addr()?;
        let secure_listener = bind(cfg.secure_port.unwrap_or(0)).await?;
        let secure_addr = secure_listener.local_addr()?;
        let tls = Arc::new(tls::generate().context("making the cluster CA")?);
        std::fs::write(data_dir.join("ca.crt"), &tls.ca_pem).context("writing ca.crt")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubesim")
            .enable_all()
            .build()
            .context("starting the cluster's runtime")?;
        let store = Store::new(data_dir.clone());
        store.ensure_kubernetes_service(secure_addr.port());
        store.set_ca(&tls.ca_pem);
        let faults = Arc::new(FaultRules::default());
        let requests = Arc::new(api::requests::RequestCounts::default());
        let app = |secure: bool| {
            Arc::new(App {
                store: store.clone(),
                faults: faults.clone(),
                data_dir: data_dir.clone(),
                addr: addr.to_string(),
                secure,
                requests: requests.clone(),
            })
        };
        let serving = (
            serve(rt.handle(), listener, app(false), None),
            serve(
                rt.handle(),
                secure_listener,
                app(true),
                Some(tls.config.clone()),
            ),
        );
        let mut cluster = Cluster {
            addr,
            secure_addr,
            tls,
            store,
            faults,
            data_dir,
            _tmp: tmp,
            serving: Mutex::new(Some(serving)),
            runner: None,
            rt: None,
        };
        let handle = rt.handle().clone();
        cluster.rt = Some(rt);
        if cfg.run_pods {
            let config = runner::RunnerConfig {
                data_dir: cluster.data_dir.clone(),
                images: cfg.images.clone(),
                image_users: cfg.image_users.clone(),
                api_port: secure_addr.port(),
                ca_pem: cluster.tls.ca_pem.clone(),
            };
            let mut kube_config = kube::Config::new(cluster.url().parse()?);
            kube_config.default_namespace = "default".into();
            let _ = rustls::crypto::ring::default_provider().install_default();
            // The runner's client and tasks live on the cluster's runtime.
            let runner = handle
                .spawn(async move {
                    let client = kube::Client::try_from(kube_config)?;
                    runner::spawn(client, config).await
                })
                .await??;
            cluster.runner = Some(runner);
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT`: the TLS listener, where requests are authenticated by
    /// service-account bearer tokens (none: `system:anonymous`).
    pub fn secure_url(&self) -> String {
        format!("https://{}", self.secure_addr)
    }

    pub fn secure_port(&self) -> u16 {
        self.secure_addr.port()
    }

    /// The cluster CA (PEM) that signed the TLS listener's certificate; also at
    /// `<data-dir>/ca.crt` and in every pod's `ca.crt`.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// The cluster CA certificate, DER-encoded (for `kube::Config::root_cert`).
    pub fn ca_der(&self) -> &[u8] {
        &self.tls.ca_der
    }

    /// A kube client of the TLS listener that sends `token` as its bearer token (none:
    /// anonymous), trusting the cluster CA, as a pod's in-cluster client does.
    pub async fn client_with_token(&self, token: Option<&str>) -> anyhow::Result<kube::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = kube::Config::new(self.secure_url().parse()?);
        cfg.default_namespace = "default".into();
        cfg.root_cert = Some(vec![self.tls.ca_der.clone()]);
        cfg.auth_info.token = token.map(|t| t.to_string().into());
        Ok(kube::Client::try_from(cfg)?)
    }

    /// A kube client for this cluster (default namespace `default`).
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        // kube builds a TLS connector even for http:// URLs, and rustls panics when more
        // than one provider is compiled in and none is chosen; choosing one is idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = kube::Config::new(self.url().parse()?);
        cfg.default_namespace = "default".into();
        Ok(kube::Client::try_from(cfg)?)
    }

    /// A kube client that impersonates `user` (`Impersonate-User`), so its requests are authorized
    /// by RBAC against the stored Roles and bindings, e.g.
    /// `client_as("system:serviceaccount:reports:reportjob")`. A service-account user gets the
    /// groups `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.
    pub async fn client_as(&self, user: &str) -> anyhow::Result<kube::Client> {
        self.client_as_groups(user, &[]).await
    }

    /// Like [`Cluster::client_as`], also sending one `Impersonate-Group` per group. As upstream,
    /// given groups replace a service account's implicit ones (`system:authenticated` is still added).
    pub async fn client_as_groups(
        &self,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<kube::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = kube::Config::new(self.url().parse()?);
        cfg.default_namespace = "default".into();
        cfg.auth_info.impersonate = Some(user.to_string());
        if !groups.is_empty() {
            cfg.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        }
        Ok(kube::Client::try_from(cfg)?)
    }

    /// Write a kubeconfig for kubectl.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn faults(&self) -> Faults {
        Faults {
            store: self.store.clone(),
            rules: self.faults.clone(),
        }
    }

    /// The Job controller and pod runner, when started with `run_pods`.
    pub fn runner(&self) -> Option<&runner::RunnerHandle> {
        self.runner.as_ref()
    }

    /// Stop serving HTTP and HTTPS (the store is kept); open watches end.
    pub async fn stop_server(&self) {
        let s = self.serving.lock().ok().and_then(|mut g| g.take());
        if let Some((plain, secure)) = s {
            self.store.drop_watches();
            for s in [plain, secure] {
                let _ = s.stop.send(());
                let abort = s.task.abort_handle();
                let mut task = s.task;
                let mut stopped = false;
                // Graceful shutdown waits for requests in flight; a watch a client started
                // again while the server was stopping keeps its connection (and so the
                // server) alive, so watches are ended again until the server has stopped.
                for _ in 0..20 {
                    let tick = std::time::Duration::from_millis(250);
                    if tokio::time::timeout(tick, &mut task).await.is_ok() {
                        stopped = true;
                        break;
                    }
                    self.store.drop_watches();
                }
                if !stopped {
                    abort.abort();
                }
            }
        }
    }

    /// Serve again on the same ports with the same store.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        let listener = bind(self.addr.port()).await?;
        let secure_listener = bind(self.secure_addr.port()).await?;
        let app = |secure: bool| {
            Arc::new(App {
                store: self.store.clone(),
                faults: self.faults.clone(),
                data_dir: self.data_dir.clone(),
                addr: self.addr.to_string(),
                secure,
                requests: Default::default(),
            })
        };
        let Some(rt) = self.rt.as_ref() else {
            anyhow::bail!("the cluster is shut down");
        };
        let s = (
            serve(rt.handle(), listener, app(false), None),
            serve(
                rt.handle(),
                secure_listener,
                app(true),
                Some(self.tls.config.clone()),
            ),
        );
        if let Ok(mut g) = self.serving.lock() {
            *g = Some(s);
        }
        Ok(())
    }

    /// Stop and start the API server, keeping port and store.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop_server().await;
        self.start_server().await
    }

    /// Stop the runner and the server.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.runner.take() {
            r.shutdown().await;
        }
        self.stop_server().await;
    }
}
