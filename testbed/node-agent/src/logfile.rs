//! Container logs on disk: `<data_dir>/logs/<ns>/<pod>_<container>.log` holds what the process
//! wrote to stdout and stderr, as plain bytes (the previous run's as `.log.previous`). The agent
//! reads both pipes and appends each chunk as it arrives, and beside the log keeps an index
//! (`<data_dir>/log-index/<ns>/<pod>_<container>.log[.previous]`, one `END_OFFSET UNIX_NANOS
//! o|e` line per chunk) so the log endpoint can give lines their time and stream
//! (`timestamps`, `sinceSeconds`, `stream`). A registry tells the endpoint which logs are still
//! being written, and how far, for `follow`.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

/// Where a container's current log is kept.
pub fn log_path(data_dir: &Path, ns: &str, pod: &str, container: &str) -> PathBuf {
    data_dir
        .join("logs")
        .join(ns)
        .join(format!("{pod}_{container}.log"))
}

/// The log file and its index, current or previous run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub log: PathBuf,
    pub index: PathBuf,
}

pub fn files(data_dir: &Path, ns: &str, pod: &str, container: &str, previous: bool) -> Files {
    let suffix = if previous { ".log.previous" } else { ".log" };
    let name = format!("{pod}_{container}{suffix}");
    Files {
        log: data_dir.join("logs").join(ns).join(&name),
        index: data_dir.join("log-index").join(ns).join(&name),
    }
}

/// Which output a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How much of a live log is written, and whether its writer is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub len: u64,
    pub done: bool,
}

/// The logs being written now, by log path.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<PathBuf, watch::Receiver<Progress>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    pub fn get(&self, log: &Path) -> Option<watch::Receiver<Progress>> {
        lock(&self.live).get(log).cloned()
    }

    fn insert(&self, log: PathBuf, rx: watch::Receiver<Progress>) {
        lock(&self.live).insert(log, rx);
    }

    /// Forget a log whose writer is done (its pod finished).
    pub fn remove(&self, log: &Path) {
        lock(&self.live).remove(log);
    }
}

/// Appends a container run's output to its log and index.
pub struct Writer {
    log: std::fs::File,
    index: std::fs::File,
    len: u64,
    tx: watch::Sender<Progress>,
    pub path: PathBuf,
}

/// Start the log of a container run: the previous run's log becomes `.previous` (on a first
/// run a stale one from an earlier pod of the same name is removed), the new one starts empty.
pub fn start(
    registry: &Registry,
    data_dir: &Path,
    ns: &str,
    pod: &str,
    container: &str,
    first_run: bool,
) -> std::io::Result<Writer> {
    let cur = files(data_dir, ns, pod, container, false);
    let prev = files(data_dir, ns, pod, container, true);
    for p in [&cur.log, &cur.index] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    if first_run {
        let _ = std::fs::remove_file(&prev.log);
        let _ = std::fs::remove_file(&prev.index);
    } else {
        let _ = std::fs::rename(&cur.log, &prev.log);
        let _ = std::fs::rename(&cur.index, &prev.index);
    }
    let log = std::fs::File::create(&cur.log)?;
    let index = std::fs::File::create(&cur.index)?;
    let (tx, rx) = watch::channel(Progress::default());
    registry.insert(cur.log.clone(), rx);
    Ok(Writer {
        log,
        index,
        len: 0,
        tx,
        path: cur.log,
    })
}

impl Writer {
    pub fn append(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        self.log.write_all(bytes)?;
        self.len += bytes.len() as u64;
        let s = match stream {
            Stream::Stdout => 'o',
            Stream::Stderr => 'e',
        };
        writeln!(
            self.index,
            "{} {} {s}",
            self.len,
            Timestamp::now().as_nanosecond()
        )?;
        self.tx.send_replace(Progress {
            len: self.len,
            done: false,
        });
        Ok(())
    }

    fn finish(self) {
        self.tx.send_replace(Progress {
            len: self.len,
            done: true,
        });
    }
}

/// Copy a process's stdout and stderr into `writer` until both are closed, then mark the log
/// done. Output is drained even when the disk refuses it, so the process never blocks on a full
/// pipe.
pub async fn pump(stdout: Option<OwnedFd>, stderr: Option<OwnedFd>, mut writer: Writer) {
    let open = |fd: Option<OwnedFd>| {
        fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    };
    let (mut out, mut err) = (open(stdout), open(stderr));
    let mut b1 = vec![0u8; 16 * 1024];
    let mut b2 = vec![0u8; 16 * 1024];
    let mut failed = false;
    while out.is_some() || err.is_some() {
        let (stream, n) = tokio::select! {
            n = read(&mut out, &mut b1) => (Stream::Stdout, n),
            n = read(&mut err, &mut b2) => (Stream::Stderr, n),
        };
        let (pipe, buf) = match stream {
            Stream::Stdout => (&mut out, &b1),
            Stream::Stderr => (&mut err, &b2),
        };
        let Some(n) = n.filter(|n| *n > 0) else {
            *pipe = None;
            continue;
        };
        if let Err(e) = writer.append(stream, &buf[..n])
            && !failed
        {
            failed = true;
            tracing::warn!("node-agent: writing {}: {e}", writer.path.display());
        }
    }
    writer.finish();
}

/// One read from a pipe still open (`None` at its end or on an error); never ready for a
/// closed one.
async fn read(
    pipe: &mut Option<tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(p) => p.read(buf).await.ok(),
        None => std::future::pending().await,
    }
}

/// One index record: the log's length after a chunk, when it was written, from which stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub end: u64,
    pub nanos: i128,
    pub stream: Stream,
}

/// Parse index lines (a trailing partial line is left for later: returns the bytes consumed).
pub fn parse_index(text: &[u8], out: &mut Vec<Record>) -> usize {
    let mut used = 0;
    for line in text.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        used += line.len();
        let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        let mut parts = line.split(' ');
        let (Some(end), Some(nanos), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(end), Ok(nanos)) = (end.parse(), nanos.parse()) else {
            continue;
        };
        let stream = if s == "e" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        out.push(Record { end, nanos, stream });
    }
    used
}

/// The record covering the byte at `offset` (the first chunk ending after it).
pub fn record_at(records: &[Record], offset: u64) -> Option<&Record> {
    records.get(records.partition_point(|r| r.end <= offset))
}

/// The offset where the last `n` lines of a log of `len` bytes start (a final line without
/// newline counts as a line), reading backwards from the end in blocks.
pub fn tail_start(file: &mut std::fs::File, len: u64, n: u64) -> std::io::Result<u64> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    if n == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0u64;
    // A newline that ends the log closes the last line rather than starting another.
    let mut skip_last = true;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let size = (pos.min(buf.len() as u64)) as usize;
        pos -= size as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..size])?;
        for i in (0..size).rev() {
            if buf[i] != b'\n' {
                skip_last = false;
                continue;
            }
            if skip_last && pos + i as u64 + 1 == len {
                skip_last = false;
                continue;
            }
            newlines += 1;
            if newlines == n {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("log");
        let check = |content: &str, n: u64| {
            std::fs::write(&p, content).expect("write");
            let mut f = std::fs::File::open(&p).expect("open");
            let start = tail_start(&mut f, content.len() as u64, n).expect("tail");
            content[start as usize..].to_string()
        };
        assert_eq!(check("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(check("a\nb\nc", 2), "b\nc");
        assert_eq!(check("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(check("a\nb\nc\n", 0), "");
        assert_eq!(check("", 3), "");
        let long: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(check(&long, 2), "line 49998\nline 49999\n");
    }

    #[test]
    fn index_records_locate_chunks() {
        let mut records = Vec::new();
        let used = parse_index(b"3 100 o\n7 200 e\n9 30", &mut records);
        assert_eq!(used, 16);
        assert_eq!(records.len(), 2);
        assert_eq!(record_at(&records, 0).map(|r| r.nanos), Some(100));
        assert_eq!(
            record_at(&records, 3).map(|r| r.stream),
            Some(Stream::Stderr)
        );
        assert_eq!(record_at(&records, 7), None);
    }

    #[tokio::test]
    async fn runs_rotate_and_progress_is_published() {
        let d = tempfile::tempdir().expect("tmp");
        let reg = Registry::default();
        let mut w = start(&reg, d.path(), "ns", "p", "c", true).expect("start");
        w.append(Stream::Stdout, b"one\n").expect("append");
        let rx = reg.get(&log_path(d.path(), "ns", "p", "c")).expect("live");
        assert_eq!(
            *rx.borrow(),
            Progress {
                len: 4,
                done: false
            }
        );
        w.finish();
        assert!(rx.borrow().done);
        let w = start(&reg, d.path(), "ns", "p", "c", false).expect("restart");
        drop(w);
        let prev = files(d.path(), "ns", "p", "c", true);
        assert_eq!(
            std::fs::read_to_string(prev.log).expect("previous"),
            "one\n"
        );
        let mut records = Vec::new();
        parse_index(&std::fs::read(prev.index).expect("index"), &mut records);
        assert_eq!(records.len(), 1);
        assert_eq!(
            std::fs::read_to_string(log_path(d.path(), "ns", "p", "c")).expect("current"),
            ""
        );
    }
}
