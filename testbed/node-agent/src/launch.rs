//! Starting one container process: a shell script run in a private mount namespace
//! (`unshare --mount --propagation private`) binds each volume at its mount path, makes the root
//! read-only for `readOnlyRootFilesystem`, changes directory and execs the program through
//! `setpriv`, which sets the user, group and supplementary groups and then, last, the
//! parent-death signal (credential changes clear it, so it must come after them).
//!
//! Volume sources are first bound into a private staging tmpfs (`/run/node-agent-stage`, or
//! another path no mount covers), so a mount over the data dir's parent (an emptyDir at `/tmp`)
//! hides no later source. Mountpoints that do not exist yet (and the staging directory) are
//! created, empty, on the host filesystem before binding: the one trace left outside the data
//! dir. Without mount namespaces (checked once), the same script creates symlinks at the mount
//! paths instead, which keeps reads and writes at the same paths.
//!
//! The program itself must not sit under a mount path, or the pod's own volume would hide it;
//! [`hidden_by`] finds that case before the launch.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::identity::Identity;
use crate::spawn::{Spawned, Spawner};

/// Shell script run as `sh -c SCRIPT sh PROG ARGS...`: binds (or links) each volume, changes
/// directory, execs. All paths arrive as environment variables, never interpolated into it.
const LAUNCH_SCRIPT: &str = r#"set -e
if [ "$NODE_AGENT_MODE" = bind ] && [ "${NODE_AGENT_NMOUNTS:-0}" -gt 0 ]; then
  # Every source is first bound into a private staging tmpfs, so a mount that covers the data
  # directory (an emptyDir at /tmp while the data dir is under /tmp) cannot hide later sources.
  mkdir -p "$NODE_AGENT_STAGE"
  mount -t tmpfs node-agent-stage "$NODE_AGENT_STAGE"
  i=0
  while [ "$i" -lt "$NODE_AGENT_NMOUNTS" ]; do
    eval "src=\${NODE_AGENT_MSRC_$i}"
    if [ -d "$src" ]; then mkdir "$NODE_AGENT_STAGE/$i"; else : > "$NODE_AGENT_STAGE/$i"; fi
    mount --bind "$src" "$NODE_AGENT_STAGE/$i"
    eval "NODE_AGENT_MSRC_$i=\$NODE_AGENT_STAGE/$i"
    i=$((i+1))
  done
fi
i=0
while [ "$i" -lt "${NODE_AGENT_NMOUNTS:-0}" ]; do
  eval "src=\${NODE_AGENT_MSRC_$i}; dst=\${NODE_AGENT_MDST_$i}; ro=\${NODE_AGENT_MRO_$i}"
  if [ "$NODE_AGENT_MODE" = bind ]; then
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; fi
    mount --bind "$src" "$dst"
    if [ "$ro" = 1 ]; then mount -o remount,bind,ro "$dst"; fi
  else
    mkdir -p "$(dirname "$dst")"
    if [ -d "$dst" ] && [ ! -L "$dst" ] && [ -d "$src" ]; then rmdir "$dst" 2>/dev/null || true; fi
    ln -sfn "$src" "$dst"
  fi
  unset "NODE_AGENT_MSRC_$i" "NODE_AGENT_MDST_$i" "NODE_AGENT_MRO_$i"
  i=$((i+1))
done
if [ "$NODE_AGENT_MODE" = bind ] && [ "${NODE_AGENT_NMOUNTS:-0}" -gt 0 ]; then
  umount -R -l "$NODE_AGENT_STAGE"
fi
if [ -n "$NODE_AGENT_WORKDIR" ]; then mkdir -p "$NODE_AGENT_WORKDIR"; fi
if [ -n "$NODE_AGENT_RO_ROOT" ]; then
  # readOnlyRootFilesystem: every mount of this namespace but the writable volumes (and the
  # kernel's /proc, /sys, /dev) becomes read-only; remount,bind changes only this namespace's
  # mount, never the host's.
  for mp in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u); do
    mp=$(printf '%b' "$mp")
    case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
    if printf '%s\n' "$NODE_AGENT_RW" | grep -qxF -- "$mp"; then continue; fi
    if ! mount -o remount,bind,ro "$mp" 2>/dev/null && [ "$mp" = / ]; then
      echo "node-agent: cannot make the root filesystem read-only" >&2; exit 126
    fi
  done
fi
if [ -n "$NODE_AGENT_WORKDIR" ]; then cd "$NODE_AGENT_WORKDIR"; fi
uid=$NODE_AGENT_UID gid=$NODE_AGENT_GID groups=$NODE_AGENT_GROUPS
unset NODE_AGENT_NMOUNTS NODE_AGENT_STAGE NODE_AGENT_WORKDIR NODE_AGENT_MODE NODE_AGENT_UID NODE_AGENT_GID NODE_AGENT_GROUPS NODE_AGENT_RO_ROOT NODE_AGENT_RW
if [ -n "$groups" ]; then
  exec setpriv --reuid="$uid" --regid="$gid" --groups="$groups" --pdeathsig KILL -- "$@"
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --pdeathsig KILL -- "$@"
"#;

/// One volume as the container sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The host directory (or file).
    pub source: PathBuf,
    /// The path the process sees it at.
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one container process.
pub struct Launch {
    /// The executable standing for the entrypoint (or `command[0]`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The container's environment (the process gets nothing else but PATH, HOME, HOSTNAME).
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Working directory as seen by the process.
    pub working_dir: Option<String>,
    pub hostname: String,
    /// Bind mounts in a private mount namespace (true) or symlinks (fallback).
    pub mount_ns: bool,
    /// The UID, GID and supplementary groups the process runs with.
    pub identity: Identity,
    /// `readOnlyRootFilesystem`: all but the writable mounts read-only (needs `mount_ns`).
    pub read_only_root: bool,
}

/// Whether `unshare --mount` with bind mounts works here (checked once at start).
pub fn mount_ns_available() -> bool {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("d=$(mktemp -d) && mount --bind \"$d\" \"$d\" && umount \"$d\" && rmdir \"$d\"")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A path with `.` and `..` resolved lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The mount target that would hide `program` from the process, if any: the program sits
/// under (or at) one of the container's mount paths, as given or after resolving symlinks.
pub fn hidden_by<'a>(program: &Path, mounts: &'a [Mount]) -> Option<&'a Path> {
    let given = normalize(program);
    let real = std::fs::canonicalize(program).ok();
    mounts.iter().map(|m| m.target.as_path()).find(|t| {
        let t = normalize(t);
        given.starts_with(&t) || real.as_ref().is_some_and(|r| r.starts_with(&t))
    })
}

/// The command that starts `l`: its own process group, output piped, nothing inherited.
pub fn command(l: &Launch) -> Command {
    let mut cmd = if l.mount_ns {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--"]);
        cmd.args(["/bin/sh", "-c", LAUNCH_SCRIPT, "sh"]);
        cmd
    } else {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", LAUNCH_SCRIPT, "sh"]);
        cmd
    };
    cmd.arg(&l.program).args(&l.args);
    cmd.env_clear();
    cmd.env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    // Runtimes take HOME from the image's /etc/passwd; a numeric user without an entry gets "/".
    cmd.env("HOME", if l.identity.uid == 0 { "/root" } else { "/" });
    cmd.env("NODE_AGENT_UID", l.identity.uid.to_string());
    cmd.env("NODE_AGENT_GID", l.identity.gid.to_string());
    let groups: Vec<String> = l.identity.groups.iter().map(u32::to_string).collect();
    cmd.env("NODE_AGENT_GROUPS", groups.join(","));
    cmd.env("HOSTNAME", &l.hostname);
    cmd.env("NODE_AGENT_MODE", if l.mount_ns { "bind" } else { "link" });
    cmd.env("NODE_AGENT_NMOUNTS", l.mounts.len().to_string());
    cmd.env("NODE_AGENT_STAGE", stage_dir(&l.mounts));
    for (i, m) in l.mounts.iter().enumerate() {
        cmd.env(format!("NODE_AGENT_MSRC_{i}"), &m.source);
        cmd.env(format!("NODE_AGENT_MDST_{i}"), &m.target);
        cmd.env(
            format!("NODE_AGENT_MRO_{i}"),
            if m.read_only { "1" } else { "0" },
        );
    }
    cmd.env(
        "NODE_AGENT_WORKDIR",
        l.working_dir.clone().unwrap_or_default(),
    );
    if l.read_only_root {
        cmd.env("NODE_AGENT_RO_ROOT", "1");
        let rw: Vec<String> = l
            .mounts
            .iter()
            .filter(|m| !m.read_only)
            .map(|m| normalize(&m.target).display().to_string())
            .collect();
        cmd.env("NODE_AGENT_RW", rw.join("\n"));
    }
    for (k, v) in &l.env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// Start a container process (from the spawner's thread); its pid is its process group id.
pub async fn launch(spawner: &Spawner, l: &Launch) -> std::io::Result<Spawned> {
    spawner.spawn(command(l)).await
}

/// Where the launch script stages mount sources: the first of a few host paths that no mount
/// destination covers (a destination equal to or above it would hide the staged sources).
fn stage_dir(mounts: &[Mount]) -> String {
    const CANDIDATES: [&str; 4] = [
        "/run/node-agent-stage",
        "/var/tmp/node-agent-stage",
        "/mnt/node-agent-stage",
        "/opt/node-agent-stage",
    ];
    CANDIDATES
        .iter()
        .find(|c| !mounts.iter().any(|m| Path::new(c).starts_with(&m.target)))
        .unwrap_or(&CANDIDATES[0])
        .to_string()
}

/// The exit code Kubernetes reports: the process's, or 128 + signal when killed.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::{Sig, kill_group};
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt as _;

    fn root() -> Identity {
        Identity {
            uid: 0,
            gid: 0,
            groups: vec![],
        }
    }

    fn mount(source: PathBuf, target: PathBuf) -> Mount {
        Mount {
            source,
            target,
            read_only: false,
        }
    }

    /// Run to the end; (exit code, stdout and stderr together).
    async fn run(spawner: &Spawner, l: &Launch) -> (i32, String) {
        let s = launch(spawner, l).await.expect("launch");
        let mut text = String::new();
        for fd in [s.stdout, s.stderr].into_iter().flatten() {
            let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).expect("pipe");
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut buf))
                .await
                .expect("output ends")
                .expect("read");
            text.push_str(&String::from_utf8_lossy(&buf));
        }
        let status = tokio::time::timeout(Duration::from_secs(20), s.exit)
            .await
            .expect("exits")
            .expect("reported")
            .expect("waited");
        (exit_code(status), text)
    }

    /// Whether a process is gone (a zombie counts: it runs no more).
    fn gone(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    }

    async fn wait_for_file(path: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::fs::read_to_string(path)
                && s.ends_with('\n')
            {
                return s.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{} never written",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spec(dir: &Path, script: &str, mount_ns: bool) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello $(not expanded) 'q' \"dq\"".into())],
            mounts: vec![
                mount(dir.join("pvc"), dir.join("seen/data")),
                mount(dir.join("term"), dir.join("seen/dev/termination-log")),
            ],
            working_dir: Some(dir.join("seen/data").display().to_string()),
            hostname: "job-0".into(),
            mount_ns,
            identity: root(),
            read_only_root: false,
        }
    }

    async fn run_and_check(mount_ns: bool) {
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pvc")).expect("pvc");
        std::fs::write(dir.path().join("term"), b"").expect("term");
        let script = r#"echo "$GREETING" > out; echo "bye" > "$(dirname "$PWD")/dev/termination-log"; env | grep -c NODE_AGENT_ >&2; exit 3"#;
        let (code, log) = run(&spawner, &spec(dir.path(), script, mount_ns)).await;
        assert_eq!(code, 3, "log: {log}");
        assert_eq!(
            log.trim(),
            "0",
            "no NODE_AGENT_ variables reach the process"
        );
        let out =
            std::fs::read_to_string(dir.path().join("pvc/out")).expect("written through the mount");
        assert_eq!(out, "hello $(not expanded) 'q' \"dq\"\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("term")).expect("term"),
            "bye\n"
        );
        if mount_ns {
            assert!(
                std::fs::read_dir(dir.path().join("seen/data"))
                    .expect("mountpoint")
                    .next()
                    .is_none(),
                "the bind mount is invisible outside the pod's mount namespace"
            );
        }
    }

    #[tokio::test]
    async fn process_sees_volumes_at_mount_paths_in_private_namespace() {
        if mount_ns_available() {
            run_and_check(true).await;
        }
    }

    #[tokio::test]
    async fn symlink_fallback_keeps_paths_working() {
        run_and_check(false).await;
    }

    #[tokio::test]
    async fn read_only_mounts_and_root() {
        if !mount_ns_available() {
            return;
        }
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["ro", "rw"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let seen = dir.path().join("seen");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                r#"touch "$0/ro/x" 2>/dev/null && echo ro-writable; touch "$0/rw/x" && echo rw-ok; touch /var/tmp/node-agent-ro-root-probe 2>/dev/null && echo root-writable; true"#.into(),
                seen.display().to_string(),
            ],
            env: vec![],
            mounts: vec![
                Mount {
                    source: dir.path().join("ro"),
                    target: seen.join("ro"),
                    read_only: true,
                },
                mount(dir.path().join("rw"), seen.join("rw")),
            ],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: true,
            identity: root(),
            read_only_root: true,
        };
        let (code, log) = run(&spawner, &l).await;
        assert_eq!((code, log.trim()), (0, "rw-ok"));
        assert!(dir.path().join("rw/x").exists());
        assert!(!dir.path().join("ro/x").exists());
    }

    #[tokio::test]
    async fn a_mount_over_the_data_dirs_parent_hides_no_later_source() {
        if !mount_ns_available() {
            return;
        }
        // The data dir is under /tmp, and the pod mounts an emptyDir at /tmp first (as the
        // chart's controller pod does): the later volume must still be its own directory.
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(dir.path().starts_with("/tmp"), "{}", dir.path().display());
        std::fs::create_dir_all(dir.path().join("empty")).expect("empty");
        std::fs::create_dir_all(dir.path().join("pvc")).expect("pvc");
        let seen = dir.path().join("seen");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo hi > \"$0/out\"".into(),
                seen.display().to_string(),
            ],
            env: vec![],
            mounts: vec![
                mount(dir.path().join("empty"), PathBuf::from("/tmp")),
                mount(dir.path().join("pvc"), seen.clone()),
            ],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: true,
            identity: root(),
            read_only_root: false,
        };
        let (code, log) = run(&spawner, &l).await;
        assert_eq!(code, 0, "log: {log}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pvc/out")).expect("written through the mount"),
            "hi\n"
        );
    }

    #[tokio::test]
    async fn a_program_copied_into_the_image_dir_runs_under_a_mount_over_its_source() {
        if !mount_ns_available() {
            return;
        }
        // The program was built under a directory the pod mounts an emptyDir over (as a
        // binary under /tmp and a pod's /tmp emptyDir): run from there it is hidden, its copy
        // in the image directory is not.
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        let build = dir.path().join("build");
        std::fs::create_dir_all(&build).expect("build");
        let src = build.join("prog");
        std::fs::write(&src, "#!/bin/sh\necho ran > \"$1\"\n").expect("prog");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let copy =
            crate::images::install_program(&src, &dir.path().join("images")).expect("install");
        std::fs::create_dir_all(dir.path().join("empty")).expect("empty");
        std::fs::create_dir_all(dir.path().join("out")).expect("out");
        let mounts = vec![
            mount(dir.path().join("empty"), build.clone()),
            mount(dir.path().join("out"), dir.path().join("seen")),
        ];
        let result = dir.path().join("seen/result").display().to_string();
        assert_eq!(hidden_by(&src, &mounts), Some(build.as_path()));
        assert_eq!(hidden_by(&copy, &mounts), None);
        let mut l = Launch {
            program: src.clone(),
            args: vec![result],
            env: vec![],
            mounts,
            working_dir: None,
            hostname: "h".into(),
            mount_ns: true,
            identity: root(),
            read_only_root: false,
        };
        let (code, log) = run(&spawner, &l).await;
        assert_ne!(code, 0, "the hidden original cannot run");
        assert!(log.contains("No such file"), "log: {log}");
        l.program = copy;
        let (code, log) = run(&spawner, &l).await;
        assert_eq!(code, 0, "log: {log}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/result")).expect("result"),
            "ran\n"
        );
    }

    #[tokio::test]
    async fn killing_the_group_takes_background_children_too() {
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "sleep 30 & echo $! > \"$0\"; wait".into(),
                dir.path().join("bg").display().to_string(),
            ],
            env: vec![],
            mounts: vec![],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: false,
            identity: root(),
            read_only_root: false,
        };
        let s = launch(&spawner, &l).await.expect("launch");
        let bg = wait_for_file(&dir.path().join("bg")).await;
        kill_group(s.pid, Sig::Kill);
        let status = tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .expect("exits")
            .expect("reported")
            .expect("wait");
        assert_eq!(exit_code(status), 137);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(&bg) {
            assert!(Instant::now() < deadline, "background child {bg} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A non-root identity when the tests run as root (so `setpriv` really changes
    /// credentials, which clears a parent-death signal set before it).
    fn nobody() -> Identity {
        if rustix::process::getuid().is_root() {
            Identity {
                uid: 65534,
                gid: 65534,
                groups: vec![],
            }
        } else {
            Identity {
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
                groups: vec![],
            }
        }
    }

    #[tokio::test]
    async fn the_pod_process_dies_with_the_thread_that_forked_it() {
        let spawner = Spawner::new().expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let pidfile = dir.path().join("pid");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo $$ > \"$0\"; exec sleep 60".into(),
                pidfile.display().to_string(),
            ],
            env: vec![],
            mounts: vec![],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: mount_ns_available(),
            identity: nobody(),
            read_only_root: false,
        };
        let s = launch(&spawner, &l).await.expect("launch");
        let pid = wait_for_file(&pidfile).await;
        assert_eq!(
            pid,
            s.pid.to_string(),
            "the pod's process is the one forked"
        );
        // The spawner's thread ends: the kernel sends the pod's process SIGKILL.
        drop(spawner);
        let status = tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .expect("the process died with its parent thread")
            .expect("reported")
            .expect("wait");
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    /// Runs only as the helper of the test below (which starts this test binary as a stand-in
    /// for the agent's process); on its own it does nothing.
    #[tokio::test]
    async fn pdeathsig_helper_agent_process() {
        let Ok(pidfile) = std::env::var("NODE_AGENT_PDEATHSIG_PIDFILE") else {
            return;
        };
        let spawner = Spawner::new().expect("spawner");
        let l = Launch {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo $$ > \"$0\"; exec sleep 60".into(),
                pidfile,
            ],
            env: vec![],
            mounts: vec![],
            working_dir: None,
            hostname: "h".into(),
            mount_ns: mount_ns_available(),
            identity: nobody(),
            read_only_root: false,
        };
        let _s = launch(&spawner, &l).await.expect("launch");
        // Live until killed.
        tokio::time::sleep(Duration::from_secs(120)).await;
    }

    #[tokio::test]
    async fn killing_the_agents_process_kills_its_pods() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let pidfile = dir.path().join("pid");
        let mut agent = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "launch::tests::pdeathsig_helper_agent_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NODE_AGENT_PDEATHSIG_PIDFILE", &pidfile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("helper");
        let pod = wait_for_file(&pidfile).await;
        assert!(!gone(&pod), "the pod's process runs");
        agent.kill().expect("SIGKILL the stand-in agent");
        let _ = agent.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(&pod) {
            assert!(
                Instant::now() < deadline,
                "pod process {pod} outlived the agent's process"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn hidden_programs_are_found_lexically() {
        let mounts = vec![mount("/x".into(), "/tmp/".into())];
        assert_eq!(
            hidden_by(Path::new("/tmp/a/../b/prog"), &mounts),
            Some(Path::new("/tmp/"))
        );
        assert_eq!(hidden_by(Path::new("/tmpfoo/prog"), &mounts), None);
        assert_eq!(
            stage_dir(&[mount("/x".into(), "/run".into())]),
            "/var/tmp/node-agent-stage"
        );
    }
}
