//! The kubelet's log endpoint, so `kubectl logs` (and `-f`) work through the API server, which
//! proxies `pods/log` to `https://<InternalIP>:<daemonEndpoints port>/containerLogs/...`:
//! `GET /containerLogs/{ns}/{pod}/{container}` with `follow`, `previous`, `timestamps`,
//! `tailLines`, `limitBytes`, `sinceSeconds`, `sinceTime` and `stream` as the kubelet takes them
//! (`tailLines` first, then the time and stream filters, then `limitBytes`); with `follow`, bytes
//! are streamed as the container writes them until it terminates. Also `GET /healthz`.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::logfile::{self, Progress, Record, Registry, Stream};
use crate::tls::{self, TlsListener};

/// Which output's lines to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamFilter {
    #[default]
    All,
    Stdout,
    Stderr,
}

/// The query of a log request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<Timestamp>,
    pub stream: StreamFilter,
}

/// `%XX` and `+` decoding of one query component.
fn decode(s: &str) -> String {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parse a log request's query; `Err` is the message of a 400 answer.
pub fn parse_options(query: Option<&str>) -> Result<LogOptions, String> {
    let mut o = LogOptions::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        let bad = || format!("invalid value {v:?} for {k}");
        let int = |min: i64| v.parse::<i64>().ok().filter(|n| *n >= min).ok_or_else(bad);
        match k.as_str() {
            "follow" => o.follow = parse_bool(&v).ok_or_else(bad)?,
            "previous" => o.previous = parse_bool(&v).ok_or_else(bad)?,
            "timestamps" => o.timestamps = parse_bool(&v).ok_or_else(bad)?,
            "tailLines" => o.tail_lines = Some(int(0)?.unsigned_abs()),
            "limitBytes" => o.limit_bytes = Some(int(1)?.unsigned_abs()),
            "sinceSeconds" => o.since_seconds = Some(int(1)?),
            "sinceTime" => o.since_time = Some(v.parse().map_err(|_| bad())?),
            "stream" => {
                o.stream = match v.as_str() {
                    "" | "All" => StreamFilter::All,
                    "Stdout" => StreamFilter::Stdout,
                    "Stderr" => StreamFilter::Stderr,
                    _ => return Err(bad()),
                }
            }
            _ => {}
        }
    }
    if o.since_seconds.is_some() && o.since_time.is_some() {
        return Err("at most one of sinceTime or sinceSeconds may be specified".into());
    }
    Ok(o)
}

/// Turns log lines into the answer's bytes: filters by time and stream, prefixes timestamps,
/// stops at the byte limit.
pub struct Render {
    opts: LogOptions,
    since: Option<i128>,
    left: Option<u64>,
    records: Vec<Record>,
    index: Option<std::fs::File>,
    index_buf: Vec<u8>,
    /// The time of lines the index does not cover (a log written by someone else).
    fallback: i128,
}

impl Render {
    pub fn new(opts: LogOptions, index: Option<std::fs::File>, fallback: i128) -> Self {
        let now = Timestamp::now().as_nanosecond();
        let since = match (opts.since_seconds, opts.since_time) {
            (Some(s), _) => Some(now - i128::from(s) * 1_000_000_000),
            (_, Some(t)) => Some(t.as_nanosecond()),
            _ => None,
        };
        Self {
            left: opts.limit_bytes,
            opts,
            since,
            records: Vec::new(),
            index,
            index_buf: Vec::new(),
            fallback,
        }
    }

    fn refresh_index(&mut self) {
        let Some(f) = self.index.as_mut() else {
            return;
        };
        let mut more = Vec::new();
        if f.read_to_end(&mut more).is_err() || more.is_empty() {
            return;
        }
        self.index_buf.extend_from_slice(&more);
        let used = logfile::parse_index(&self.index_buf, &mut self.records);
        self.index_buf.drain(..used);
    }

    /// Render the line starting at `offset` (with its newline, if it has one); false once the
    /// byte limit is reached.
    pub fn line(&mut self, offset: u64, line: &[u8], out: &mut Vec<u8>) -> bool {
        if self.left == Some(0) {
            return false;
        }
        if self.index.is_some() && logfile::record_at(&self.records, offset).is_none() {
            self.refresh_index();
        }
        let (nanos, stream) = match logfile::record_at(&self.records, offset) {
            Some(r) => (r.nanos, r.stream),
            None if self.index.is_some() => (Timestamp::now().as_nanosecond(), Stream::Stdout),
            None => (self.fallback, Stream::Stdout),
        };
        let wanted = match self.opts.stream {
            StreamFilter::All => true,
            StreamFilter::Stdout => stream == Stream::Stdout,
            StreamFilter::Stderr => stream == Stream::Stderr,
        };
        if !wanted || self.since.is_some_and(|s| nanos < s) {
            return true;
        }
        let mut piece = Vec::with_capacity(line.len() + 40);
        if self.opts.timestamps {
            let ts = Timestamp::from_nanosecond(nanos).unwrap_or_else(|_| Timestamp::now());
            piece.extend_from_slice(ts.to_string().as_bytes());
            piece.push(b' ');
        }
        piece.extend_from_slice(line);
        if let Some(left) = self.left.as_mut() {
            let take = (*left).min(piece.len() as u64) as usize;
            out.extend_from_slice(&piece[..take]);
            *left -= take as u64;
            return *left > 0;
        }
        out.extend_from_slice(&piece);
        true
    }
}

/// The listener (bound, not yet serving) and its port.
pub async fn bind(cfg: &crate::AgentConfig) -> anyhow::Result<(TlsListener, u16)> {
    let config = tls::server_config(
        &cfg.kubelet_cert_pem,
        &cfg.kubelet_key_pem,
        cfg.client_ca_pem.as_deref(),
    )?;
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = tcp.local_addr()?.port();
    Ok((TlsListener::new(tcp, config), port))
}

#[derive(Clone)]
struct LogState {
    registry: Arc<Registry>,
    data_dir: PathBuf,
}

/// Serve the endpoint until the task is aborted.
pub async fn serve(listener: TlsListener, registry: Arc<Registry>, data_dir: PathBuf) {
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .with_state(LogState { registry, data_dir });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("node-agent: the log endpoint stopped: {e}");
    }
}

async fn container_logs(
    State(st): State<LogState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    let opts = match parse_options(uri.query()) {
        Ok(o) => o,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    if [&ns, &pod, &container]
        .iter()
        .any(|s| s.is_empty() || s.contains('/') || s.starts_with('.'))
    {
        return (StatusCode::BAD_REQUEST, "invalid name").into_response();
    }
    let files = logfile::files(&st.data_dir, &ns, &pod, &container, opts.previous);
    let Ok(file) = std::fs::File::open(&files.log) else {
        let msg = if opts.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return (StatusCode::BAD_REQUEST, msg).into_response();
    };
    let live = if opts.previous {
        None
    } else {
        st.registry.get(&files.log)
    };
    let index = std::fs::File::open(&files.index).ok();
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    tokio::spawn(async move {
        if let Err(e) = stream_log(file, index, live, opts, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Send the log's lines (from the tail's start), and with `follow` the lines written later,
/// until the writer is done (or nobody listens any more).
pub async fn stream_log(
    mut file: std::fs::File,
    index: Option<std::fs::File>,
    mut live: Option<watch::Receiver<Progress>>,
    opts: LogOptions,
    tx: &mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> std::io::Result<()> {
    let meta = file.metadata()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or_else(Timestamp::now)
        .as_nanosecond();
    let progress = |live: &Option<watch::Receiver<Progress>>, file: &std::fs::File| match live {
        Some(rx) => *rx.borrow(),
        None => Progress {
            len: file.metadata().map(|m| m.len()).unwrap_or(0),
            done: true,
        },
    };
    let first = progress(&live, &file);
    let mut pos = match opts.tail_lines {
        Some(n) => logfile::tail_start(&mut file, first.len, n)?,
        None => 0,
    };
    let follow = opts.follow;
    let mut render = Render::new(opts, index, mtime);
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_start = pos;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = progress(&live, &file);
        let mut out = Vec::new();
        let mut more = true;
        while pos < now.len && more {
            let want = (now.len - pos).min(buf.len() as u64) as usize;
            file.seek(SeekFrom::Start(pos))?;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            carry.extend_from_slice(&buf[..n]);
            let mut used = 0;
            while let Some(nl) = carry[used..].iter().position(|b| *b == b'\n') {
                let line = &carry[used..used + nl + 1];
                more = render.line(carry_start + used as u64, line, &mut out);
                used += nl + 1;
                if !more {
                    break;
                }
            }
            carry.drain(..used);
            carry_start += used as u64;
            if out.len() >= 64 * 1024 && tx.send(Ok(std::mem::take(&mut out))).await.is_err() {
                return Ok(());
            }
        }
        let finished = !more || now.done || !follow;
        if finished && more && !carry.is_empty() {
            render.line(carry_start, &carry, &mut out);
        }
        if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
            return Ok(());
        }
        if finished {
            return Ok(());
        }
        let Some(rx) = live.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The writer is gone without saying it was done: take what is there.
                    live = None;
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn options_parse_as_the_kubelet_takes_them() {
        let o = parse_options(Some(
            "follow=true&tailLines=10&limitBytes=100&timestamps=1&stream=Stderr&sinceTime=2024-01-02T03%3A04%3A05Z",
        ))
        .expect("options");
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(100)));
        assert_eq!(o.stream, StreamFilter::Stderr);
        assert_eq!(
            o.since_time,
            Some("2024-01-02T03:04:05Z".parse().expect("ts"))
        );
        assert_eq!(parse_options(None), Ok(LogOptions::default()));
        assert!(parse_options(Some("tailLines=-1")).is_err());
        assert!(parse_options(Some("limitBytes=0")).is_err());
        assert!(parse_options(Some("follow=yes")).is_err());
        assert!(parse_options(Some("sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z")).is_err());
        assert_eq!(decode("a%2Fb+c%zz"), "a/b c%zz");
    }

    fn opts(q: &str) -> LogOptions {
        parse_options(Some(q)).expect("options")
    }

    /// A log and its index written as the agent writes them: (stream, chunk, unix seconds).
    fn write_log(dir: &std::path::Path, chunks: &[(Stream, &str, i64)]) -> (PathBuf, PathBuf) {
        let (log, index) = (dir.join("log"), dir.join("index"));
        let mut text = String::new();
        let mut idx = String::new();
        for (s, c, t) in chunks {
            text.push_str(c);
            let s = if *s == Stream::Stderr { 'e' } else { 'o' };
            idx.push_str(&format!(
                "{} {} {s}\n",
                text.len(),
                i128::from(*t) * 1_000_000_000
            ));
        }
        std::fs::write(&log, text).expect("log");
        std::fs::write(&index, idx).expect("index");
        (log, index)
    }

    async fn fetch(log: &std::path::Path, index: &std::path::Path, o: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(8);
        let file = std::fs::File::open(log).expect("open");
        let index = std::fs::File::open(index).ok();
        stream_log(file, index, None, o, &tx).await.expect("stream");
        drop(tx);
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend(chunk.expect("chunk"));
        }
        String::from_utf8(out).expect("utf8")
    }

    #[tokio::test]
    async fn tail_filters_timestamps_and_limits() {
        let d = tempfile::tempdir().expect("tmp");
        let (log, index) = write_log(
            d.path(),
            &[
                (Stream::Stdout, "one\ntwo\n", 1_700_000_000),
                (Stream::Stderr, "oops\n", 1_700_000_001),
                (Stream::Stdout, "three\nfour", 1_700_000_002),
            ],
        );
        assert_eq!(
            fetch(&log, &index, opts("")).await,
            "one\ntwo\noops\nthree\nfour"
        );
        assert_eq!(
            fetch(&log, &index, opts("tailLines=2")).await,
            "three\nfour"
        );
        assert_eq!(fetch(&log, &index, opts("stream=Stderr")).await, "oops\n");
        assert_eq!(
            fetch(&log, &index, opts("tailLines=3&stream=Stdout")).await,
            "three\nfour"
        );
        assert_eq!(fetch(&log, &index, opts("limitBytes=6")).await, "one\ntw");
        assert_eq!(
            fetch(&log, &index, opts("sinceTime=2023-11-14T22:13:21Z")).await,
            "oops\nthree\nfour"
        );
        assert_eq!(
            fetch(&log, &index, opts("timestamps=true&tailLines=1")).await,
            "2023-11-14T22:13:22Z four"
        );
        // Recent lines only: all of these are old.
        assert_eq!(fetch(&log, &index, opts("sinceSeconds=60")).await, "");
    }

    async fn next(rx: &mut mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Option<String> {
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a chunk in time");
        chunk.map(|c| String::from_utf8(c.expect("chunk")).expect("utf8"))
    }

    #[tokio::test]
    async fn follow_streams_until_the_container_ends() {
        let d = tempfile::tempdir().expect("tmp");
        let reg = Registry::default();
        let mut w = logfile::start(&reg, d.path(), "ns", "p", "c", true).expect("start");
        w.append(Stream::Stdout, b"first\n").expect("append");
        let files = logfile::files(d.path(), "ns", "p", "c", false);
        let live = reg.get(&files.log);
        let (tx, mut rx) = mpsc::channel(8);
        let file = std::fs::File::open(&files.log).expect("open");
        let index = std::fs::File::open(&files.index).ok();
        let task =
            tokio::spawn(
                async move { stream_log(file, index, live, opts("follow=true"), &tx).await },
            );
        assert_eq!(next(&mut rx).await.as_deref(), Some("first\n"));
        w.append(Stream::Stderr, b"second\npart").expect("append");
        assert_eq!(next(&mut rx).await.as_deref(), Some("second\n"));
        w.append(Stream::Stdout, b"ial\n").expect("append");
        assert_eq!(next(&mut rx).await.as_deref(), Some("partial\n"));
        drop(w);
        // The writer went away (done or not): the stream ends.
        assert_eq!(next(&mut rx).await, None);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends")
            .expect("joined")
            .expect("ok");
    }

    /// A CA, a serving certificate for 127.0.0.1 and a client certificate, all PEM.
    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let leaf = |names: Vec<String>, eku| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(names).expect("params");
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            server: leaf(
                vec!["127.0.0.1".into()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth),
            ca: ca_cert.pem(),
        }
    }

    /// One HTTP/1.1 GET over TLS; the whole answer.
    async fn get(port: u16, pki: &Pki, with_cert: bool, path: &str) -> std::io::Result<String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("ca"))
            .expect("root");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain =
                vec![CertificateDer::from_pem_slice(pki.client.0.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::from_pem_slice(pki.client.1.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn the_endpoint_requires_a_client_certificate_and_serves_logs() {
        let pki = pki();
        let d = tempfile::tempdir().expect("tmp");
        let log = logfile::log_path(d.path(), "ns", "p", "c");
        std::fs::create_dir_all(log.parent().expect("dir")).expect("mkdir");
        std::fs::write(&log, "one\ntwo\n").expect("log");
        let cfg = crate::AgentConfig {
            kubelet_cert_pem: pki.server.0.clone(),
            kubelet_key_pem: pki.server.1.clone(),
            client_ca_pem: Some(pki.ca.clone()),
            ..Default::default()
        };
        let (listener, port) = bind(&cfg).await.expect("bind");
        let server = tokio::spawn(serve(listener, Arc::default(), d.path().to_path_buf()));
        let ok = get(port, &pki, true, "/healthz").await.expect("healthz");
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
        let logs = get(port, &pki, true, "/containerLogs/ns/p/c?tailLines=1")
            .await
            .expect("logs");
        assert!(
            logs.starts_with("HTTP/1.1 200") && logs.contains("\r\n\r\n"),
            "{logs}"
        );
        assert!(logs.contains("two\n") && !logs.contains("one"), "{logs}");
        let missing = get(port, &pki, true, "/containerLogs/ns/p/other")
            .await
            .expect("answer");
        assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
        assert!(missing.contains("is waiting to start"), "{missing}");
        // Without a client certificate the handshake (or the first read) fails.
        let refused = get(port, &pki, false, "/healthz").await;
        assert!(
            refused.as_ref().map_or(true, |a| !a.contains("200 OK")),
            "{refused:?}"
        );
        server.abort();
    }
}
