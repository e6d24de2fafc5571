//! Images on the node: each image reference maps to a local executable (and the image's default
//! user), matched as a runtime would find a pulled image; the executables are copied at start
//! into a directory of the agent's that no pod volume covers (a program under `/tmp` would be
//! hidden by a pod's `/tmp` emptyDir); and the pull secrets the kubelet looks up before a pull
//! (`getPullSecretsForPod`).

use std::hash::Hasher as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;

use crate::events::{Recorder, Regarding};

/// One image the node can run: `reference` (a REF without a tag matches every tag of that
/// repository) runs `program`, as user `uid` (the image's `USER`; root when unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRule {
    pub reference: String,
    pub program: PathBuf,
    pub uid: Option<u32>,
}

impl ImageRule {
    /// Parse `REF=PATH[:UID]`, e.g. `reportjob=/build/reportjob:65532`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let (reference, rest) = s
            .split_once('=')
            .with_context(|| format!("image rule {s:?}: expected REF=PATH[:UID]"))?;
        let reference = reference.trim();
        anyhow::ensure!(
            !reference.is_empty(),
            "image rule {s:?}: empty image reference"
        );
        let (program, uid) = match rest.rsplit_once(':') {
            Some((p, u)) if !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()) => {
                let uid = u
                    .parse()
                    .with_context(|| format!("image rule {s:?}: user {u} is not a UID"))?;
                (p, Some(uid))
            }
            _ => (rest, None),
        };
        anyhow::ensure!(!program.is_empty(), "image rule {s:?}: empty program path");
        Ok(Self {
            reference: reference.to_string(),
            program: PathBuf::from(program),
            uid,
        })
    }
}

impl std::str::FromStr for ImageRule {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::parse(s)
    }
}

/// The rules with their programs copied into the image directory, as the kubelet matches them.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    /// Reference to the copy of its program.
    pub programs: Vec<(String, PathBuf)>,
    /// Reference to the image's default user, for the rules that name one.
    pub users: Vec<(String, u32)>,
}

/// Copy every rule's program into `image_dir` (see [`install_program`]).
pub fn install(rules: &[ImageRule], image_dir: &Path) -> anyhow::Result<Installed> {
    let mut out = Installed::default();
    for r in rules {
        let copy = install_program(&r.program, image_dir).with_context(|| {
            format!(
                "image {}: installing {} into {}",
                r.reference,
                r.program.display(),
                image_dir.display()
            )
        })?;
        out.programs.push((r.reference.clone(), copy));
        if let Some(uid) = r.uid {
            out.users.push((r.reference.clone(), uid));
        }
    }
    Ok(out)
}

/// Put `src` into `image_dir` under a name keyed by its path, size and modification time, and
/// return the copy's path: a hard link when both are on one filesystem, else a copy (either
/// keeps the mode bits). A copy made before for the same key is reused. A hard link shares the
/// inode, so a program rewritten in place (rather than replaced, as cargo and most installers
/// do) would change under the copy too.
pub fn install_program(src: &Path, image_dir: &Path) -> std::io::Result<PathBuf> {
    let meta = std::fs::metadata(src)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            src.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::other(format!(
            "{} is not executable",
            src.display()
        )));
    }
    let canon = std::fs::canonicalize(src)?;
    let mut h = Fnv64::default();
    h.write(canon.as_os_str().as_encoded_bytes());
    h.write_u64(meta.len());
    h.write_i64(meta.mtime());
    h.write_i64(meta.mtime_nsec());
    let base = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "program".into());
    let name = format!("{base}-{:016x}", h.finish());
    let dst = image_dir.join(&name);
    if std::fs::metadata(&dst).is_ok_and(|m| m.is_file() && m.len() == meta.len()) {
        return Ok(dst);
    }
    if !image_dir.exists() {
        std::fs::create_dir_all(image_dir)?;
        std::fs::set_permissions(image_dir, std::fs::Permissions::from_mode(0o755))?;
    }
    // Made under a private name and renamed into place, so concurrent agents never see a
    // half-written copy.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = image_dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::hard_link(&canon, &tmp).is_err() {
        std::fs::copy(&canon, &tmp)?;
    }
    std::fs::rename(&tmp, &dst).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    prune_stale(image_dir, &base, &dst);
    Ok(dst)
}

/// How long a copy no build links to any more is kept: longer than any agent that may still
/// start pods from it (another test run beside this one) lives.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the earlier copies of the program named `base` that only this directory still
/// holds (one link: the build that made them replaced its file, as cargo does on every
/// rebuild, so each kept copy would hold a whole old binary) and that were installed over a
/// day ago. Copies whose source still exists share its inode and cost nothing.
fn prune_stale(image_dir: &Path, base: &str, keep: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(image_dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .is_some_and(|rest| rest.starts_with('-'));
        if !ours || path == keep {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let installed = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0));
        let old = now
            .duration_since(installed)
            .is_ok_and(|age| age > STALE_AFTER);
        if meta.is_file() && meta.nlink() == 1 && old {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// FNV-1a: a stable hash (the same name for the same program in every run and build).
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Resolve an image reference: exact, without tag/digest on either side, or (when just one rule
/// matches) by the repository's last path component.
pub fn resolve<T: Clone>(images: &[(String, T)], image: &str) -> Option<T> {
    fn strip(r: &str) -> &str {
        let r = r.split('@').next().unwrap_or(r);
        match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => &r[..i],
            _ => r,
        }
    }
    fn last(r: &str) -> &str {
        strip(r).rsplit('/').next().unwrap_or(r)
    }
    if let Some((_, p)) = images.iter().find(|(k, _)| k == image) {
        return Some(p.clone());
    }
    if let Some((_, p)) = images.iter().find(|(k, _)| strip(k) == strip(image)) {
        return Some(p.clone());
    }
    let by_last: Vec<_> = images
        .iter()
        .filter(|(k, _)| last(k) == last(image))
        .collect();
    match by_last.as_slice() {
        [(_, p)] => Some(p.clone()),
        _ => None,
    }
}

/// The reference as a runtime pulls it (`applyDefaultImageTag`): `:latest` when it names
/// neither tag nor digest.
pub fn with_default_tag(image: &str) -> String {
    if image.contains('@') || image.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `getPullSecretsForPod`: a missing pull secret is a Warning event on the pod, and the pull
/// goes ahead without it.
pub async fn warn_missing_pull_secrets(
    client: &kube::Client,
    recorder: &std::sync::Arc<Recorder>,
    pod: &Pod,
) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut failed = vec![];
    for r in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
    {
        // Entries with empty names pass validation and are ignored.
        if r.name.is_empty() {
            continue;
        }
        if !matches!(api.get_opt(&r.name).await, Ok(Some(_))) {
            failed.push(r.name);
        }
    }
    if failed.is_empty() {
        return;
    }
    recorder.post(
        &Regarding::pod(pod, None),
        "Warning",
        "FailedToRetrieveImagePullSecret",
        "Pulling",
        &format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            failed.join(", ")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_with_or_without_tag_and_by_last_component() {
        let images = vec![
            ("ghcr.io/x/reportjob".to_string(), PathBuf::from("/bin/a")),
            ("busybox:1.36".to_string(), PathBuf::from("/bin/b")),
        ];
        assert_eq!(
            resolve(&images, "ghcr.io/x/reportjob:0.1.0"),
            Some("/bin/a".into())
        );
        assert_eq!(
            resolve(&images, "ghcr.io/x/reportjob@sha256:abcd"),
            Some("/bin/a".into())
        );
        assert_eq!(resolve(&images, "reportjob"), Some("/bin/a".into()));
        assert_eq!(resolve(&images, "busybox"), Some("/bin/b".into()));
        assert_eq!(
            resolve(&images, "docker.io/library/busybox:latest"),
            Some("/bin/b".into())
        );
        assert_eq!(resolve(&images, "nginx"), None);
        // Two rules with the same last component: only exact or repository matches count.
        let ambiguous = vec![
            ("a.io/x/tool".to_string(), 1),
            ("b.io/y/tool".to_string(), 2),
        ];
        assert_eq!(resolve(&ambiguous, "c.io/z/tool:1"), None);
        assert_eq!(resolve(&ambiguous, "b.io/y/tool:1"), Some(2));
    }

    #[test]
    fn rules_parse_ref_path_and_optional_uid() {
        assert_eq!(
            ImageRule::parse("reportjob=/build/reportjob:65532").expect("rule"),
            ImageRule {
                reference: "reportjob".into(),
                program: "/build/reportjob".into(),
                uid: Some(65532)
            }
        );
        assert_eq!(
            ImageRule::parse("ghcr.io/x/reportjob:0.1.0=/bin/rj").expect("rule"),
            ImageRule {
                reference: "ghcr.io/x/reportjob:0.1.0".into(),
                program: "/bin/rj".into(),
                uid: None
            }
        );
        // A colon in the path that is not followed by a UID belongs to the path.
        assert_eq!(
            ImageRule::parse("busybox=/opt/a:b/sh")
                .expect("rule")
                .program,
            PathBuf::from("/opt/a:b/sh")
        );
        assert_eq!(
            "x=/bin/sh:0".parse::<ImageRule>().expect("rule").uid,
            Some(0)
        );
        for bad in [
            "",
            "reportjob",
            "=/bin/sh",
            "x=",
            "x=:5",
            "x=/bin/sh:99999999999",
        ] {
            assert!(ImageRule::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn programs_are_installed_once_per_version_keeping_their_mode() {
        let d = tempfile::tempdir().expect("tmp");
        let src = d.path().join("build/prog");
        std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
        std::fs::write(&src, "#!/bin/sh\necho one\n").expect("write");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let images = d.path().join("images");
        let a = install_program(&src, &images).expect("install");
        assert!(a.starts_with(&images));
        assert_eq!(
            std::fs::metadata(&a).expect("copy").permissions().mode() & 0o777,
            0o750
        );
        assert_eq!(install_program(&src, &images).expect("again"), a);
        // A rebuilt program (a new file in its place) gets a copy of its own; the old stays.
        std::fs::remove_file(&src).expect("rm");
        std::fs::write(&src, "#!/bin/sh\necho two, longer\n").expect("write");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let b = install_program(&src, &images).expect("install");
        assert_ne!(a, b);
        assert_eq!(
            std::fs::read_to_string(&a).expect("old"),
            "#!/bin/sh\necho one\n"
        );
        assert_eq!(
            std::fs::read_to_string(&b).expect("new"),
            "#!/bin/sh\necho two, longer\n"
        );
        let not_exec = d.path().join("data");
        std::fs::write(&not_exec, "x").expect("write");
        assert!(install_program(&not_exec, &images).is_err());
    }
}
