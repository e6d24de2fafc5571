//! A pod's volumes as host directories, and a container's mounts of them.
//!
//! PersistentVolumeClaims resolve through the bound PersistentVolume to its `hostPath` (or
//! `local`) directory; a claim not bound yet keeps the container from starting until it is.
//! emptyDir, secret, configMap, projected (bound service-account token, `kube-root-ca.crt`,
//! downward API) and downwardAPI volumes are directories under the pod's own directory, written
//! before each container start; the API-data volumes are mounted read-only, as the kubelet
//! mounts them. `fsGroup` ownership is applied to claims, emptyDirs and the API-data volumes (a
//! claim's directory is treated as a fresh disk-backed volume would be).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;

use crate::env::{self, NodeView};
use crate::identity::{self, FsGroup};
use crate::incluster;
use crate::launch::Mount;
use crate::pods::StartError;

/// What volume setup needs besides the pod.
pub struct VolumeContext<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    /// The pod's own directory (`<data_dir>/pods/<ns>/<name>-<uid>`).
    pub pod_dir: &'a Path,
    pub fs_group: Option<FsGroup>,
    pub node: &'a NodeView<'a>,
}

/// A file of an API-data volume.
struct File {
    path: String,
    data: Vec<u8>,
    mode: Option<i32>,
}

fn io(e: std::io::Error) -> StartError {
    StartError::Other(e.to_string())
}

/// Set up every volume of the pod and return container `c`'s mounts of them. `env` is the
/// container's environment, for `subPathExpr`.
pub async fn mounts(
    cx: &VolumeContext<'_>,
    c: &Container,
    env: &[(String, String)],
) -> Result<Vec<Mount>, StartError> {
    let mut dirs: HashMap<String, (PathBuf, bool)> = HashMap::new();
    for v in cx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (dir, read_only, owned) = prepare(cx, v).await?;
        if let Some(fs) = cx.fs_group.filter(|_| owned) {
            identity::set_volume_ownership(&dir, fs, read_only).map_err(io)?;
        }
        dirs.insert(v.name.clone(), (dir, read_only));
    }
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some((dir, read_only)) = dirs.get(&m.name) else {
            return Err(StartError::Config(format!(
                "volume {:?} is not among the pod's volumes",
                m.name
            )));
        };
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, Some(e)) if !e.is_empty() => Some(env::expand(e, env)),
            _ => None,
        };
        let source = match sub {
            Some(sub) => {
                if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                    return Err(StartError::Config(format!(
                        "subPath {sub:?} must be a relative path within the volume"
                    )));
                }
                let p = dir.join(&sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(io)?;
                }
                p
            }
            None => dir.clone(),
        };
        out.push(Mount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: *read_only || m.read_only == Some(true),
        });
    }
    Ok(out)
}

/// The host directory of one volume, whether it is read-only, and whether fsGroup applies.
async fn prepare(cx: &VolumeContext<'_>, v: &Volume) -> Result<(PathBuf, bool, bool), StartError> {
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let own_dir = cx.pod_dir.join("volumes").join(&v.name);
    let api_data = |files: Vec<File>, default_mode: Option<i32>| {
        write_files(&own_dir, files, default_mode)?;
        Ok::<_, StartError>((own_dir.clone(), true, true))
    };
    if let Some(pvc) = &v.persistent_volume_claim {
        let dir = claim_dir(cx.client, ns, &pvc.claim_name).await?;
        return Ok((dir, pvc.read_only == Some(true), true));
    }
    if v.ephemeral.is_some() {
        let pod_name = cx.pod.metadata.name.as_deref().unwrap_or_default();
        let dir = claim_dir(cx.client, ns, &format!("{pod_name}-{}", v.name)).await?;
        return Ok((dir, false, true));
    }
    if let Some(h) = &v.host_path {
        return Ok((host_path(&h.path, h.type_.as_deref())?, false, false));
    }
    if v.empty_dir.is_some() {
        // World-writable as the kubelet makes emptyDir (empty_dir.go: setupDir, 0777).
        if !own_dir.exists() {
            std::fs::create_dir_all(&own_dir).map_err(io)?;
            std::fs::set_permissions(&own_dir, std::fs::Permissions::from_mode(0o777))
                .map_err(io)?;
        }
        return Ok((own_dir, false, true));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = secret_files(cx.client, ns, &name, s.items.as_deref(), s.optional).await?;
        return api_data(files, s.default_mode);
    }
    if let Some(cm) = &v.config_map {
        let files =
            configmap_files(cx.client, ns, &cm.name, cm.items.as_deref(), cm.optional).await?;
        return api_data(files, cm.default_mode);
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(cx, d.items.as_deref().unwrap_or_default())?;
        return api_data(files, d.default_mode);
    }
    if let Some(p) = &v.projected {
        let mut files = Vec::new();
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = incluster::service_account_token(
                    cx.client,
                    cx.pod,
                    t.audience.as_deref(),
                    t.expiration_seconds,
                )
                .await?;
                files.push(File {
                    path: t.path.clone(),
                    data: token.into_bytes(),
                    mode: None,
                });
            }
            if let Some(cm) = &src.config_map {
                files.extend(
                    configmap_files(cx.client, ns, &cm.name, cm.items.as_deref(), cm.optional)
                        .await?,
                );
            }
            if let Some(s) = &src.secret {
                files.extend(
                    secret_files(cx.client, ns, &s.name, s.items.as_deref(), s.optional).await?,
                );
            }
            if let Some(d) = &src.downward_api {
                files.extend(downward_files(cx, d.items.as_deref().unwrap_or_default())?);
            }
        }
        return api_data(files, p.default_mode);
    }
    Err(StartError::Config(format!(
        "volume {:?}: its type is not supported by node-agent",
        v.name
    )))
}

/// The host directory of a bound claim: its PersistentVolume's `hostPath` (or `local`) path.
async fn claim_dir(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, StartError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let found = claims
        .get_opt(claim)
        .await
        .map_err(|e| StartError::Config(format!("persistentvolumeclaim \"{claim}\": {e}")))?
        .ok_or_else(|| {
            StartError::Config(format!("persistentvolumeclaim \"{claim}\" not found"))
        })?;
    let bound = found.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = found
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty() && bound)
        .ok_or_else(|| {
            StartError::Config(format!(
                "persistentvolumeclaim \"{claim}\" is not bound to a volume yet"
            ))
        })?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&volume)
        .await
        .map_err(|e| StartError::Config(format!("persistentvolume \"{volume}\": {e}")))?
        .ok_or_else(|| StartError::Config(format!("persistentvolume \"{volume}\" not found")))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        return host_path(&h.path, h.type_.as_deref());
    }
    if let Some(l) = spec.local {
        return host_path(&l.path, Some("Directory"));
    }
    Err(StartError::Config(format!(
        "persistentvolume \"{volume}\" is neither hostPath nor local: node-agent cannot mount it"
    )))
}

/// A `hostPath` source, checked (and created for the `...OrCreate` types) as the kubelet does.
fn host_path(path: &str, type_: Option<&str>) -> Result<PathBuf, StartError> {
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let fail = |what: &str| {
        Err(StartError::Config(format!(
            "hostPath type check failed: {path} is not a {what}"
        )))
    };
    match type_.unwrap_or_default() {
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(&p).map_err(io)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&p, b"").map_err(io)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        "Directory" | "DirectoryOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
            return fail("directory");
        }
        "File" | "FileOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
            return fail("file");
        }
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return fail(type_.unwrap_or_default());
        }
        _ => {}
    }
    Ok(p)
}

fn pick(items: Option<&[KeyToPath]>, keys: Vec<String>) -> Vec<(String, String, Option<i32>)> {
    match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone(), i.mode))
            .collect(),
        None => keys.into_iter().map(|k| (k.clone(), k, None)).collect(),
    }
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<File>, StartError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| StartError::Config(format!("secret \"{name}\": {e}")))?;
    let Some(s) = found else {
        if optional == Some(true) {
            return Ok(vec![]);
        }
        return Err(StartError::Config(format!("secret \"{name}\" not found")));
    };
    let keys = s.data.iter().flat_map(|d| d.keys().cloned()).collect();
    let mut out = Vec::new();
    for (key, path, mode) in pick(items, keys) {
        match env::secret_value(&s, &key) {
            Some(data) => out.push(File { path, data, mode }),
            None if optional == Some(true) => {}
            None => {
                return Err(StartError::Config(format!(
                    "couldn't find key {key} in Secret {ns}/{name}"
                )));
            }
        }
    }
    Ok(out)
}

async fn configmap_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<File>, StartError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| StartError::Config(format!("configmap \"{name}\": {e}")))?;
    let Some(m) = found else {
        if optional == Some(true) {
            return Ok(vec![]);
        }
        return Err(StartError::Config(format!(
            "configmap \"{name}\" not found"
        )));
    };
    let keys = m
        .data
        .iter()
        .flat_map(|d| d.keys().cloned())
        .chain(m.binary_data.iter().flat_map(|d| d.keys().cloned()))
        .collect();
    let mut out = Vec::new();
    for (key, path, mode) in pick(items, keys) {
        match env::configmap_value(&m, &key) {
            Some(data) => out.push(File { path, data, mode }),
            None if optional == Some(true) => {}
            None => {
                return Err(StartError::Config(format!(
                    "configmap references non-existent config key: {key}"
                )));
            }
        }
    }
    Ok(out)
}

fn downward_files(
    cx: &VolumeContext<'_>,
    items: &[DownwardAPIVolumeFile],
) -> Result<Vec<File>, StartError> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field_ref(cx.pod, &f.field_path, cx.node.node_name)
        } else if let Some(r) = &item.resource_field_ref {
            let containers = cx.pod.spec.iter().flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            });
            let mut containers = containers;
            let c = containers
                .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                .ok_or_else(|| {
                    StartError::Config(format!(
                        "downwardAPI {}: no container {:?}",
                        item.path, r.container_name
                    ))
                })?;
            env::resource_field_ref(c, &r.resource, r.divisor.as_ref(), cx.node)
        } else {
            None
        };
        if let Some(v) = value {
            out.push(File {
                path: item.path.clone(),
                data: v.into_bytes(),
                mode: item.mode,
            });
        }
    }
    Ok(out)
}

/// Write an API-data volume afresh: `dir` holds exactly `files`, each with its mode or
/// `default_mode` (0644); the directory is 0755.
fn write_files(dir: &Path, files: Vec<File>, default_mode: Option<i32>) -> Result<(), StartError> {
    let mode = |m: Option<i32>| {
        u32::try_from(m.or(default_mode).unwrap_or(0o644)).unwrap_or(0o644) & 0o777
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    for f in files {
        // Item paths are relative and may not climb out (`validateLocalDescendingPath`).
        if f.path.is_empty() || f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(StartError::Config(format!(
                "invalid volume file path {:?}",
                f.path
            )));
        }
        let file = dir.join(&f.path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&file, &f.data).map_err(io)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode(f.mode)))
            .map_err(io)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_data_volumes_are_rewritten_with_their_modes() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = d.path().join("v");
        let f = |path: &str, mode| File {
            path: path.into(),
            data: path.as_bytes().to_vec(),
            mode,
        };
        write_files(
            &dir,
            vec![f("a", None), f("sub/b", Some(0o600))],
            Some(0o640),
        )
        .expect("write");
        let mode = |p: &str| {
            std::fs::metadata(dir.join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("a"), mode("sub/b")), (0o640, 0o600));
        write_files(&dir, vec![f("c", None)], None).expect("rewrite");
        assert!(!dir.join("a").exists(), "stale keys go");
        assert_eq!(mode("c"), 0o644);
        assert!(write_files(&dir, vec![f("../x", None)], None).is_err());
    }

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().expect("tmp");
        let made = d.path().join("made/here");
        let p = made.display().to_string();
        assert_eq!(
            host_path(&p, Some("DirectoryOrCreate")).expect("created"),
            made
        );
        assert!(made.is_dir());
        assert!(host_path(&p, Some("File")).is_err());
        let missing = d.path().join("nope").display().to_string();
        assert!(host_path(&missing, Some("Directory")).is_err());
        assert!(host_path(&missing, None).is_ok(), "no type, no check");
    }
}
