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
