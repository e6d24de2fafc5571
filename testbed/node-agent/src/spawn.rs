//! Process creation from one long-lived thread, and signals to process groups.
//!
//! A pod's process asks the kernel to kill it when its parent goes (`PR_SET_PDEATHSIG`, set by
//! `setpriv --pdeathsig KILL` as the last step before the exec), so pods cannot outlive the
//! agent. The kernel's "parent" there is the *thread* that forked: a process forked from one of
//! tokio's blocking threads would be killed whenever that idle thread retires. So every pod
//! process is forked by the one thread a [`Spawner`] owns, which lives as long as the agent;
//! each process's exit is awaited by a small thread of its own (waiting does not need the
//! forking thread).

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A started process: its pid (also its process group id), its piped output, its exit.
pub struct Spawned {
    pub pid: u32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub exit: oneshot::Receiver<io::Result<ExitStatus>>,
}

struct Request {
    cmd: Command,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

/// Forks processes from its own thread; dropping it ends the thread, and with it (through
/// `PR_SET_PDEATHSIG`) every pod process it forked that is still running.
pub struct Spawner {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Spawner {
    pub fn new() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("node-agent-spawner".into())
            .spawn(move || {
                while let Ok(Request { mut cmd, reply }) = rx.recv() {
                    let _ = reply.send(spawn_one(&mut cmd));
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Start `cmd` from the spawner's thread.
    pub async fn spawn(&self, cmd: Command) -> io::Result<Spawned> {
        let stopped = || io::Error::other("the node agent's spawner has stopped");
        let (reply, answer) = oneshot::channel();
        let tx = lock(&self.tx).clone().ok_or_else(stopped)?;
        tx.send(Request { cmd, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn spawn_one(cmd: &mut Command) -> io::Result<Spawned> {
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let (tx, exit) = oneshot::channel();
    let waiter = std::thread::Builder::new()
        .name(format!("node-agent-wait-{pid}"))
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    if let Err(e) = waiter {
        // Nobody could reap or report it: end it now.
        kill_group(pid, Sig::Kill);
        return Err(e);
    }
    Ok(Spawned {
        pid,
        stdout,
        stderr,
        exit,
    })
}

/// The signals the agent sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// Send `sig` to a whole process group (never to group 0, ours, or 1).
pub fn kill_group(pgid: u32, sig: Sig) {
    if pgid <= 1 {
        return;
    }
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let sig = match sig {
        Sig::Term => rustix::process::Signal::TERM,
        Sig::Kill => rustix::process::Signal::KILL,
    };
    let _ = rustix::process::kill_process_group(pid, sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;
    use std::time::Duration;

    #[tokio::test]
    async fn processes_are_forked_and_reaped_off_the_runtime() {
        let spawner = Spawner::new().expect("spawner");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exit 7"]);
        let s = spawner.spawn(cmd).await.expect("spawn");
        assert!(s.pid > 1);
        let status = tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .expect("exits")
            .expect("reported")
            .expect("waited");
        assert_eq!(status.code(), Some(7));
        assert_eq!(status.signal(), None);
    }
}
