//! Completion webhooks against a local HTTP receiver on loopback: one request per delivery
//! with the right body, retries on 5xx/429/timeouts/refused connections, none on 4xx, and
//! the `reportjob notify` command's termination-log line and exit codes.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reportjob::api::{NotifyFormat, NotifyWhen, ReportJobSpec};
use reportjob::notify::{self, Details, Notification, Outcome, RetryPolicy};
use reportjob::stage_protocol::StageResult;

use crate::common::spec::SpecBuilder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// Answer with this status.
    Status(u16),
    /// Read the request, never answer.
    Silent,
    /// Answer with this status and a body that looks like cloud credentials (what a
    /// metadata service would answer): 4 KiB of it, or an endless stream.
    Credentials(u16),
    Endless(u16),
}

/// A request as received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP/1.1 receiver: request `i` gets `script[i]` (the last entry once the script is
/// used up); every response closes its connection.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook/T000/B000/secret",
            listener.local_addr().unwrap()
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok((conn, _)) = listener.accept().await {
                let reply = script[n.min(script.len() - 1)];
                n += 1;
                tokio::spawn(serve(conn, reply, log.clone()));
            }
        });
        Receiver { url, received }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests, once `n` have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        crate::common::eventually(&format!("{n} requests"), async || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
        .await
    }
}

async fn serve(mut conn: TcpStream, reply: Reply, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    });
    match reply {
        Reply::Status(code) => {
            let body = if code < 300 { "ok" } else { "no_service" };
            let response = format!(
                "HTTP/1.1 {code} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
        Reply::Credentials(code) => {
            let body = br#"{"AccessKeyId":"ASIASECRETSECRET","SecretAccessKey":"wJalrXUtnFEMI"}"#;
            let head = format!(
                "HTTP/1.1 {code} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body).await;
            let _ = conn.shutdown().await;
        }
        Reply::Endless(code) => {
            let head = format!(
                "HTTP/1.1 {code} Whatever\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let secret = br#"{"AccessKeyId":"ASIASECRETSECRET","SecretAccessKey":"wJalrXUtnFEMI"}"#;
            let block: Vec<u8> = secret.iter().copied().cycle().take(64 * 1024).collect();
            // Until the client hangs up: it must stop reading long before 1 TB.
            while conn.write_all(&block).await.is_ok() {}
        }
    }
}

/// Short delays; an attempt timeout long enough that a receiver which does answer is never
/// timed out on a loaded machine.
fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        timeout: Duration::from_secs(2),
        backoff: reportjob_core::retry::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ),
    }
}

fn notification() -> Notification {
    Notification::new(
        "orders-2024",
        "analytics",
        Outcome::Succeeded,
        Details {
            rows: Some(1500),
            bytes: Some(2048),
            location: Some("s3://reports/orders.csv".into()),
            url: None,
            message: None,
        },
        jiff::Timestamp::from_second(1_700_000_000).unwrap(),
    )
}

#[tokio::test]
async fn json_notification_is_one_post_with_the_cloudevent() {
    let r = Receiver::start(vec![Reply::Status(200)]).await;
    let body = notify::body(NotifyFormat::Json, &notification());
    let delivery = notify::send(&r.url, &body, &fast(4)).await.unwrap();
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.status, 200);
    let got = r.requests();
    assert_eq!(got.len(), 1, "exactly one request");
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook/T000/B000/secret");
    assert_eq!(req.headers["content-type"], "application/json");
    let sent = req.json();
    assert_eq!(sent, body);
    assert_eq!(sent["specversion"], "1.0");
    assert_eq!(sent["type"], "dev.reporting.reportjob.succeeded");
    assert_eq!(
        sent["source"],
        "/apis/reporting.dev/v1alpha1/namespaces/analytics/reportjobs/orders-2024"
    );
    assert_eq!(sent["data"]["rows"], 1500);
    assert_eq!(sent["data"]["location"], "s3://reports/orders.csv");
}

#[tokio::test]
async fn slack_notification_is_one_post_with_a_text() {
    let r = Receiver::start(vec![Reply::Status(200)]).await;
    let body = notify::body(NotifyFormat::Slack, &notification());
    notify::send(&r.url, &body, &fast(4)).await.unwrap();
    let got = r.requests();
    assert_eq!(got.len(), 1);
    let sent = got[0].json();
    assert_eq!(sent.as_object().unwrap().len(), 1, "only text: {sent}");
    let text = sent["text"].as_str().unwrap();
    assert!(
        text.starts_with("✅ ReportJob analytics/orders-2024 succeeded"),
        "{text}"
    );
    assert!(text.contains("1,500 rows"), "{text}");
    assert!(text.contains("s3://reports/orders.csv"), "{text}");
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted() {
    let r = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::Status(200),
    ])
    .await;
    let body = json!({"text": "hi"});
    let delivery = notify::send(&r.url, &body, &fast(4)).await.unwrap();
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.status, 200);
    let got = r.requests();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|g| g.json() == body),
        "the same body every time"
    );
}

#[tokio::test]
async fn throttling_is_retried() {
    let r = Receiver::start(vec![Reply::Status(429), Reply::Status(204)]).await;
    let delivery = notify::send(&r.url, &json!({}), &fast(4)).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.status, 204);
    assert_eq!(r.requests().len(), 2);
}

#[tokio::test]
async fn persistent_server_errors_fail_after_the_attempts() {
    let r = Receiver::start(vec![Reply::Status(502)]).await;
    let e = notify::send(&r.url, &json!({}), &fast(3))
        .await
        .unwrap_err();
    assert_eq!(e.reason, notify::REASON_SERVER_ERROR);
    assert_eq!(e.attempts, 3);
    assert_eq!(e.status, Some(502));
    assert!(e.message.contains("502"), "{}", e.message);
    assert_eq!(r.requests().len(), 3);
}

#[tokio::test]
async fn a_silent_receiver_times_out_after_the_attempts() {
    let r = Receiver::start(vec![Reply::Silent]).await;
    let started = std::time::Instant::now();
    let e = notify::send(&r.url, &json!({}), &fast(3))
        .await
        .unwrap_err();
    assert_eq!(e.reason, "WebhookTimeout");
    assert_eq!(e.attempts, 3);
    assert_eq!(e.status, None);
    assert!(
        !e.message.contains(&r.url) && !e.message.contains("secret"),
        "the webhook URL is a secret: {}",
        e.message
    );
    assert!(started.elapsed() >= Duration::from_secs(3 * 2));
    // WebhookTimeout (not a closed connection after the receiver's 30 s silence) shows each
    // attempt gave up at its own timeout; no upper bound on the clock, which load can stretch.
    assert_eq!(r.wait_for(3).await.len(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let r = Receiver::start(vec![Reply::Status(400), Reply::Status(200)]).await;
    let e = notify::send(&r.url, &json!({}), &fast(4))
        .await
        .unwrap_err();
    assert_eq!(e.reason, "WebhookRejected");
    assert_eq!(e.attempts, 1);
    assert_eq!(e.status, Some(400));
    // The status, never the receiver's body.
    assert_eq!(e.message, "the webhook answered 400 Bad Request");
    // `send` returns only after its last attempt was answered, and the receiver records a
    // request before it answers: a retry would be here already.
    assert_eq!(r.requests().len(), 1, "no retry");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = notify::send(
        &format!("http://127.0.0.1:{port}/hook"),
        &json!({}),
        &fast(2),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason, "WebhookUnreachable");
    assert_eq!(e.attempts, 2);
    assert!(!e.message.contains(&port.to_string()), "{}", e.message);
}

/// `orders` in `analytics`, as the notify stage pod reads it.
fn spec() -> SpecBuilder {
    SpecBuilder::table("public.orders")
        .name("orders")
        .set("metadata.namespace", "analytics")
        .key("id")
        .pvc("reports", "orders.csv")
        .unset("spec.chunking")
        .unset("spec.worker")
}

fn typed(yaml: &str) -> ReportJobSpec {
    reportjob::api::load::load_str(yaml, "test").unwrap().spec
}

#[tokio::test]
async fn notify_with_reads_the_environment_and_follows_notify_when() {
    let r = Receiver::start(vec![Reply::Status(200)]).await;
    let s = typed(
        &spec()
            .notify("hook", Some("json"), Some("failure"))
            .build_yaml(),
    );
    assert_eq!(s.notify.as_ref().unwrap().when, NotifyWhen::Failure);
    let url = r.url.clone();
    let env = move |k: &str| match k {
        "REPORTJOB_WEBHOOK_URL" => Some(url.clone()),
        "REPORTJOB_NAME" => Some("orders".to_string()),
        "REPORTJOB_NAMESPACE" => Some("analytics".to_string()),
        _ => None,
    };
    let skipped = notify::notify_with(
        s.notify.as_ref(),
        Outcome::Succeeded,
        Details::default(),
        &fast(2),
        env.clone(),
    )
    .await;
    assert!(!skipped.delivered, "{skipped:?}");
    assert_eq!(
        skipped.reason.as_deref(),
        Some("NotRequested"),
        "{skipped:?}"
    );
    assert_eq!(skipped.attempts, 0);
    let details = Details {
        message: Some("chunk 3 failed".into()),
        ..Details::default()
    };
    let report =
        notify::notify_with(s.notify.as_ref(), Outcome::Failed, details, &fast(2), env).await;
    assert!(report.delivered, "{report:?}");
    assert_eq!((report.attempts, report.status), (1, Some(200)));
    let got = r.requests();
    assert_eq!(got.len(), 1);
    let sent = got[0].json();
    assert_eq!(sent["type"], "dev.reporting.reportjob.failed");
    assert_eq!(sent["data"]["name"], "orders");
    assert_eq!(sent["data"]["namespace"], "analytics");
    assert_eq!(sent["data"]["message"], "chunk 3 failed");

    let missing = notify::notify_with(
        s.notify.as_ref(),
        Outcome::Failed,
        Details::default(),
        &fast(2),
        |_| None,
    )
    .await;
    assert!(!missing.delivered);
    assert_eq!(
        missing.reason.as_deref(),
        Some("NotifyMisconfigured"),
        "{missing:?}"
    );
    assert_eq!(missing.attempts, 0);
    let unset = notify::notify_with(
        typed(&spec().build_yaml()).notify.as_ref(),
        Outcome::Failed,
        Details::default(),
        &fast(2),
        |_| None,
    )
    .await;
    assert!(!unset.delivered);
    assert_eq!(unset.reason.as_deref(), Some("NotConfigured"), "{unset:?}");
}

/// Runs `reportjob notify` with the spec in REPORTJOB_SPEC; returns (exit code, stdout,
/// stderr, termination log).
async fn run_notify(
    spec_yaml: &str,
    url: Option<&str>,
    args: &[&str],
) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_reportjob"));
    cmd.arg("notify")
        .args(args)
        .arg("--termination-log")
        .arg(&log)
        .env("REPORTJOB_SPEC", spec_yaml)
        .env("REPORTJOB_NAME", "orders-7")
        .env("REPORTJOB_NAMESPACE", "analytics")
        .env_remove("REPORTJOB_WEBHOOK_URL");
    if let Some(url) = url {
        cmd.env("REPORTJOB_WEBHOOK_URL", url);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[tokio::test]
async fn notify_command_sends_and_records_the_result() {
    let r = Receiver::start(vec![Reply::Status(200)]).await;
    let yaml = spec().notify("hook", Some("slack"), None).build_yaml();
    let (code, stdout, stderr, log) = run_notify(
        &yaml,
        Some(&r.url),
        &[
            "--outcome",
            "succeeded",
            "--rows",
            "42",
            "--bytes",
            "1000",
            "--location",
            "reports/orders.csv",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    // The termination log holds the stage result (one JSON line); stdout says it for people.
    let result = StageResult::parse(&log).expect("a stage result");
    let StageResult::Notified(report) = &result else {
        panic!("{log}");
    };
    assert!(report.delivered);
    assert_eq!((report.attempts, report.status), (1, Some(200)));
    assert_eq!(stdout.trim(), "notified=true attempts=1 status=200");
    let got = r.requests();
    assert_eq!(got.len(), 1);
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("✅ ReportJob analytics/orders-7 succeeded: 42 rows"),
        "{text}"
    );
    assert!(text.contains("reports/orders.csv"), "{text}");
}

#[tokio::test]
async fn notify_command_exits_0_when_the_webhook_fails() {
    let r = Receiver::start(vec![Reply::Silent]).await;
    let yaml = spec().notify("hook", None, None).build_yaml();
    let (code, _, stderr, log) = run_notify(
        &yaml,
        Some(&r.url),
        &[
            "--outcome",
            "failed",
            "--message",
            "chunk 3 failed",
            "--attempts",
            "2",
            "--attempt-timeout",
            "2s",
            "--backoff",
            "10ms",
        ],
    )
    .await;
    assert_eq!(
        code, 0,
        "a failed notification never fails the report: {stderr}"
    );
    let notified = |log: &str| match StageResult::parse(log) {
        Ok(StageResult::Notified(report)) => report,
        other => panic!("{log}: {other:?}"),
    };
    let report = notified(&log);
    assert!(!report.delivered, "{log}");
    assert_eq!(report.reason.as_deref(), Some("WebhookTimeout"), "{log}");
    assert_eq!(report.attempts, 2, "{log}");
    assert!(report.message.is_some(), "{log}");
    assert!(!log.contains("secret"), "no URL in the log: {log}");
    assert_eq!(r.wait_for(2).await.len(), 2);

    let rejecting = Receiver::start(vec![Reply::Status(404)]).await;
    let (code, _, _, log) = run_notify(&yaml, Some(&rejecting.url), &["--outcome", "failed"]).await;
    assert_eq!(code, 0);
    let report = notified(&log);
    assert_eq!(report.reason.as_deref(), Some("WebhookRejected"), "{log}");
    assert_eq!((report.attempts, report.status), (1, Some(404)), "{log}");
    assert!(report.message.is_some(), "{log}");
}

#[tokio::test]
async fn notify_command_usage_errors_exit_2() {
    let yaml = spec().notify("hook", None, None).build_yaml();
    let (code, _, stderr, log) = run_notify(&yaml, None, &["--outcome", "succeeded"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("REPORTJOB_WEBHOOK_URL"), "{stderr}");
    assert!(log.contains("REPORTJOB_WEBHOOK_URL"), "{log}");

    let (code, _, stderr, _) =
        run_notify(&yaml, Some("http://127.0.0.1:9/"), &["--outcome", "maybe"]).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn a_receivers_answer_is_never_shown_nor_read_whole() {
    for reply in [Reply::Credentials(403), Reply::Endless(403)] {
        let r = Receiver::start(vec![reply]).await;
        let e = notify::send(&r.url, &json!({}), &fast(4))
            .await
            .unwrap_err();
        assert_eq!(e.reason, "WebhookRejected");
        assert_eq!(e.status, Some(403));
        assert_eq!(e.message, "the webhook answered 403 Forbidden");
        let report = notify::report(&Err(e));
        let line = reportjob::stage_protocol::StageResult::Notified(report).to_line();
        assert!(!line.contains("AccessKeyId"), "{line}");
        assert!(!line.contains("SECRET"), "{line}");
    }
}

#[tokio::test]
async fn a_webhook_at_a_metadata_address_is_refused_before_any_attempt() {
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/",
    ] {
        let e = notify::send(url, &json!({}), &fast(4)).await.unwrap_err();
        assert_eq!(e.reason, "WebhookInvalidUrl", "{url}: {e:?}");
        assert_eq!(e.attempts, 0, "{url}");
        assert!(e.message.contains("link-local address"), "{}", e.message);
    }
}
