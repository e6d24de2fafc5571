//! Setup shared by kubesim's kubectl-driven test files: a cluster in a temporary directory
//! with a kubeconfig for kubectl, and the text of a command's output.
#![allow(dead_code)] // each test binary uses its own part of this module
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use kubesim::{Cluster, ClusterConfig};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Output;

/// A running cluster, a client acting as cluster-admin, and the test's directory (which
/// holds the kubeconfig, the data dir and any mount points).
pub struct Env {
    pub cluster: Cluster,
    pub client: kube::Client,
    pub kc: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A mount path inside the test's directory (traversable by any UID, see [`start`]).
    pub fn mount(&self, name: &str) -> String {
        self.dir.path().join("mnt").join(name).display().to_string()
    }
}

/// Starts a cluster whose images are `images` (ref, path), run as `image_users` (ref, UID).
pub async fn start(run_pods: bool, images: &[(&str, &str)], image_users: &[(&str, u32)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    // Pods running as non-root must be able to reach their mount points below this directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(ClusterConfig {
        data_dir: Some(dir.path().join("data")),
        run_pods,
        images: images
            .iter()
            .map(|(r, p)| (r.to_string(), PathBuf::from(p)))
            .collect(),
        image_users: image_users
            .iter()
            .map(|(r, u)| (r.to_string(), *u))
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();
    let client = cluster.client().await.unwrap();
    Env {
        cluster,
        client,
        kc,
        dir,
    }
}

/// A command's stdout and stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The longest any one wait may take (a loaded machine starts processes slowly).
pub const CEILING: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs kubectl against the cluster with `stdin`.
pub async fn kubectl(kc: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl must be on PATH; these tests do not skip without it");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(CEILING, child.wait_with_output())
        .await
        .expect("kubectl did not finish")
        .unwrap()
}

/// kubectl's stdout, asserting it succeeded.
pub async fn kubectl_ok(kc: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let o = kubectl(kc, args, stdin).await;
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` until it yields a value, failing after [`CEILING`].
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + CEILING;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// One plain-HTTP request as cluster-admin; status and JSON body.
pub async fn call(
    env: &Env,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new().request(
        method.parse().unwrap(),
        format!("{}{path}", env.cluster.url()),
    );
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(serde_json::Value::Null))
}
