//! Readiness probes (`httpGet`), as the kubelet's prober (`pkg/kubelet/prober/prober.go`,
//! `pkg/probe/http/http.go`): a GET of `http://127.0.0.1:port/path` (pods are local processes)
//! with `User-Agent: kube-probe/1.37` succeeds on a status from 200 to 399;
//! `initialDelaySeconds` before the first probe, `successThreshold` consecutive successes make
//! the container ready, `failureThreshold` consecutive failures unready. The agent probes every
//! `min(periodSeconds, 1)` seconds (upstream: `periodSeconds`, default 10) so tests need not
//! wait out the period. HTTPS, `exec` and `tcpSocket` probes are not run: a container with one
//! is reported ready when it runs, as one without probes.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A readiness probe the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub port: u16,
    pub path: String,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

fn count(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|s| u32::try_from(s).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The container's `httpGet` readiness probe, its named port resolved against the container's
/// ports; `Err` names the field when the port cannot be resolved or is out of range.
pub fn http_probe(p: &Probe, c: &Container) -> Result<Option<HttpProbe>, String> {
    let Some(get) = &p.http_get else {
        return Ok(None);
    };
    if get.scheme.as_deref().is_some_and(|s| s != "HTTP") {
        return Ok(None);
    }
    let port = match &get.port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .map(|cp| cp.container_port)
            .ok_or_else(|| {
                format!("readinessProbe.httpGet.port: couldn't find port {name:?} in the container's ports")
            })?,
    };
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("readinessProbe.httpGet.port: {port} is not a valid port"))?;
    let path = match get.path.as_deref() {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".into(),
    };
    Ok(Some(HttpProbe {
        port,
        path,
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).min(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_millis(200)),
        success_threshold: count(p.success_threshold, 1),
        failure_threshold: count(p.failure_threshold, 3),
    }))
}

/// One probe: whether the GET answered 200..=399 within the timeout.
pub async fn check(p: &HttpProbe) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            p.path, p.port
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<_, std::io::Error>(status_code(&buf[..got]))
    };
    matches!(
        tokio::time::timeout(p.timeout, attempt).await,
        Ok(Ok(Some(200..=399)))
    )
}

/// The status code of an HTTP/1.x status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.get(..3)?.parse().ok()
}

/// Consecutive results turned into readiness, with the thresholds.
#[derive(Debug, Default)]
pub struct Readiness {
    successes: u32,
    failures: u32,
    pub ready: bool,
}

impl Readiness {
    /// Record one result; returns the new readiness when it changed.
    pub fn record(&mut self, ok: bool, p: &HttpProbe) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= p.success_threshold {
            true
        } else if self.failures >= p.failure_threshold {
            false
        } else {
            self.ready
        };
        (next != self.ready).then(|| {
            self.ready = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        serde_json::from_value(serde_json::json!({"name": "c",
            "ports": [{"name": "metrics", "containerPort": 8080}]}))
        .expect("container")
    }

    #[test]
    fn named_ports_resolve_and_thresholds_apply() {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"path": "readyz", "port": "metrics"}, "initialDelaySeconds": 2,
            "periodSeconds": 10, "failureThreshold": 2}))
        .expect("probe");
        let p = http_probe(&probe, &container()).expect("ok").expect("http");
        assert_eq!((p.port, p.path.as_str()), (8080, "/readyz"));
        assert_eq!(p.period, Duration::from_secs(1));
        let mut r = Readiness::default();
        assert_eq!(r.record(false, &p), None);
        assert_eq!(r.record(true, &p), Some(true));
        assert_eq!(r.record(false, &p), None);
        assert_eq!(r.record(false, &p), Some(false));
        let bad: Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": "web"}})).expect("probe");
        assert_eq!(
            http_probe(&bad, &container()),
            Err(
                "readinessProbe.httpGet.port: couldn't find port \"web\" in the container's ports"
                    .into()
            )
        );
        assert_eq!(status_code(b"HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"garbage"), None);
    }
}
