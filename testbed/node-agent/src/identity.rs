//! Pod identity and volume ownership as the kubelet applies them: the effective UID/GID and
//! supplementary groups a container process runs with, the `runAsNonRoot` check at container start,
//! and `fsGroup` ownership of volumes (honoring `fsGroupChangePolicy`).
//!
//! As upstream's `pkg/securitycontext/util.go` (`DetermineEffectiveSecurityContext`:
//! container-level `runAsUser`/`runAsGroup`/`runAsNonRoot` override the pod's), `pkg/kubelet/kuberuntime/
//! security_context_others.go` (`verifyRunAsNonRoot` and its messages), `kuberuntime_container_linux.go`
//! / `security_context.go` (supplementary groups: `fsGroup` then `supplementalGroups`), and
//! `pkg/volume/volume_linux.go` (`SetVolumeOwnership`: chown to the fsGroup, `rw-rw----` added to files,
//! plus setgid and `--x--x---` to directories; `OnRootMismatch` skips the walk when the root already has
//! the group, those bits and setgid).

use k8s_openapi::api::core::v1::{Container, Pod};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// The identity a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (fsGroup first, then supplementalGroups), without duplicates.
    pub groups: Vec<u32>,
}

/// Pod-level `fsGroup` and its change policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`; `Always` (the default) otherwise.
    pub on_root_mismatch: bool,
}

/// `format.Pod(pod)`: `name_namespace(uid)`.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The effective identity of container `c` of `pod`, `image_uid` being the image's default user.
/// `Err` carries the kubelet's message for a container it refuses to start
/// (waiting reason `CreateContainerConfigError`).
pub fn effective(pod: &Pod, c: &Container, image_uid: u32) -> Result<Identity, String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group));
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root {
        match run_as_user {
            Some(0) => {
                return Err(format!(
                    "container's runAsUser breaks non-root policy (pod: \"{}\", container: {})",
                    format_pod(pod),
                    c.name
                ));
            }
            Some(_) => {}
            None if image_uid == 0 => {
                return Err(format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{}\", container: {})",
                    format_pod(pod),
                    c.name
                ));
            }
            None => {}
        }
    }
    let id = |v: i64| u32::try_from(v).map_err(|_| format!("invalid user or group id {v}"));
    let uid = match run_as_user {
        Some(u) => id(u)?,
        None => image_uid,
    };
    // A numeric user without an /etc/passwd entry in the image gets group 0, as the runtimes do.
    let gid = match run_as_group {
        Some(g) => id(g)?,
        None => 0,
    };
    let mut groups = Vec::new();
    if let Some(fs) = psc.and_then(|s| s.fs_group) {
        groups.push(id(fs)?);
    }
    for g in psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
    {
        let g = id(g)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Identity { uid, gid, groups })
}

/// The pod's `fsGroup`, if any.
pub fn fs_group(pod: &Pod) -> Result<Option<FsGroup>, String> {
    let Some(sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return Ok(None);
    };
    let Some(g) = sc.fs_group else {
        return Ok(None);
    };
    Ok(Some(FsGroup {
        gid: u32::try_from(g).map_err(|_| format!("invalid fsGroup {g}"))?,
        on_root_mismatch: sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch"),
    }))
}

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Whether `OnRootMismatch` must still walk the volume (`requiresPermissionChange`).
fn requires_change(root: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(m) = std::fs::metadata(root) else {
        return true;
    };
    if m.gid() != gid || !m.is_dir() {
        return true;
    }
    let want = (if read_only { RO_MASK } else { RW_MASK }) | EXEC_MASK;
    let perm = m.permissions().mode();
    perm & want != want || perm & SETGID == 0
}

/// `SetVolumeOwnership`: give the volume at `root` to the fsGroup.
pub fn set_volume_ownership(root: &Path, fs: FsGroup, read_only: bool) -> std::io::Result<()> {
    if fs.on_root_mismatch && !requires_change(root, fs.gid, read_only) {
        return Ok(());
    }
    walk(root, &mut |p, m| {
        std::os::unix::fs::lchown(p, None, Some(fs.gid))?;
        if m.file_type().is_symlink() {
            return Ok(());
        }
        let mut mask = if read_only { RO_MASK } else { RW_MASK };
        if m.is_dir() {
            mask |= SETGID | EXEC_MASK;
        }
        let mode = m.permissions().mode() & 0o7777;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | mask))
    })
}

fn walk(
    p: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(p)?;
    f(p, &m)?;
    if m.is_dir() {
        for e in std::fs::read_dir(p)? {
            walk(&e?.path(), f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "n", "uid": "u1"},
            "spec": v}),
        )
        .expect("pod")
    }

    fn first(p: &Pod) -> Container {
        p.spec.as_ref().expect("spec").containers[0].clone()
    }

    #[test]
    fn container_level_overrides_pod_level_and_groups_follow_fs_group() {
        let p = pod(
            json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 2000,
            "fsGroup": 3000, "supplementalGroups": [4000, 3000]},
            "containers": [{"name": "c", "securityContext": {"runAsUser": 1001}}]}),
        );
        assert_eq!(
            effective(&p, &first(&p), 0),
            Ok(Identity {
                uid: 1001,
                gid: 2000,
                groups: vec![3000, 4000]
            })
        );
        let p = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(
            effective(&p, &first(&p), 65532),
            Ok(Identity {
                uid: 65532,
                gid: 0,
                groups: vec![]
            })
        );
    }

    #[test]
    fn run_as_non_root_refusals_carry_the_kubelet_messages() {
        let p =
            pod(json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}));
        assert_eq!(
            effective(&p, &first(&p), 0),
            Err("container has runAsNonRoot and image will run as root (pod: \"p_n(u1)\", container: c)".into())
        );
        assert!(effective(&p, &first(&p), 65532).is_ok());
        let p = pod(json!({"containers": [{"name": "c",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 0}}]}));
        assert_eq!(
            effective(&p, &first(&p), 65532),
            Err(
                "container's runAsUser breaks non-root policy (pod: \"p_n(u1)\", container: c)"
                    .into()
            )
        );
        // the container may lift the pod's requirement
        let p = pod(json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "securityContext": {"runAsNonRoot": false}}]}));
        assert!(effective(&p, &first(&p), 0).is_ok());
    }

    #[test]
    fn ownership_walk_and_on_root_mismatch() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(root.join("sub/f"), b"x").expect("write");
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let fs = FsGroup {
            gid: 4242,
            on_root_mismatch: false,
        };
        set_volume_ownership(&root, fs, false).expect("ownership");
        let m = std::fs::metadata(&root).expect("meta");
        assert_eq!((m.gid(), m.permissions().mode() & 0o7777), (4242, 0o2775));
        let f = std::fs::metadata(root.join("sub/f")).expect("meta");
        assert_eq!((f.gid(), f.permissions().mode() & 0o7777), (4242, 0o664));
        // OnRootMismatch leaves the tree alone once the root matches
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let lazy = FsGroup {
            gid: 4242,
            on_root_mismatch: true,
        };
        set_volume_ownership(&root, lazy, false).expect("ownership");
        let f = std::fs::metadata(root.join("sub/f")).expect("meta");
        assert_eq!(f.permissions().mode() & 0o777, 0o600);
        set_volume_ownership(&root, fs, false).expect("ownership");
        let f = std::fs::metadata(root.join("sub/f")).expect("meta");
        assert_eq!(f.permissions().mode() & 0o777, 0o660);
    }
}
