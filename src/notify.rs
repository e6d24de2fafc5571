//! Completion notifications: the webhook body (CloudEvents-style JSON or a Slack text) and
//! its delivery with retries. They are sent from the stage pods (`reportjob notify`, or the
//! assemble command through [`notify_from_env`]), never from the controller; a failed
//! notification never fails the report.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::conditions::reason;
use crate::api::{NotifyFormat, NotifyOn, NotifySpec};
use crate::stage_protocol::NotifyReport;
use crate::stage_protocol::env::{
    NAME as ENV_NAME, NAMESPACE as ENV_NAMESPACE, WEBHOOK_URL as ENV_WEBHOOK_URL,
};

/// How a report ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The report was assembled.
    Succeeded,
    /// The report failed.
    Failed,
}

impl Outcome {
    /// `Succeeded` or `Failed`, as the ReportJob's phase says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "Succeeded",
            Outcome::Failed => "Failed",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Outcome::Succeeded => "dev.reporting.reportjob.succeeded",
            Outcome::Failed => "dev.reporting.reportjob.failed",
        }
    }
}

/// What a stage knows about the result; every field is optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    /// Data rows in the report.
    pub rows: Option<i64>,
    /// Bytes of the report.
    pub bytes: Option<i64>,
    /// Path on the volume or object URL of the report.
    pub location: Option<String>,
    /// A signed download link.
    pub url: Option<String>,
    /// What went wrong, or a note.
    pub message: Option<String>,
}

/// One notification about a finished ReportJob.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Name of the ReportJob.
    pub name: String,
    /// Namespace of the ReportJob.
    pub namespace: String,
    /// `Succeeded` or `Failed`.
    pub phase: Outcome,
    /// Data rows in the report.
    pub rows: Option<i64>,
    /// Bytes of the report.
    pub bytes: Option<i64>,
    /// Path on the volume or object URL of the report.
    pub location: Option<String>,
    /// A signed download link.
    pub url: Option<String>,
    /// What went wrong, or a note.
    pub message: Option<String>,
    /// When the ReportJob finished.
    pub time: jiff::Timestamp,
}

impl Notification {
    /// A notification from the ReportJob's identity, its outcome and what is known about it.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        phase: Outcome,
        details: Details,
        time: jiff::Timestamp,
    ) -> Notification {
        Notification {
            name: name.into(),
            namespace: namespace.into(),
            phase,
            rows: details.rows,
            bytes: details.bytes,
            location: details.location,
            url: details.url,
            message: details.message,
            time,
        }
    }

    /// A stable id: the same notification always gets the same id, so a receiver can drop
    /// the duplicates that retries may cause.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.namespace.as_str(),
            self.name.as_str(),
            self.phase.as_str(),
            &self.time.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// Whether an outcome is notified under `spec.notify.on`.
pub fn wants(on: NotifyOn, succeeded: bool) -> bool {
    match on {
        NotifyOn::Always => true,
        NotifyOn::Success => succeeded,
        NotifyOn::Failure => !succeeded,
    }
}

/// The webhook body: a CloudEvents-style object (`json`) or a Slack `{"text": ...}` (`slack`).
pub fn body(format: NotifyFormat, n: &Notification) -> Value {
    match format {
        NotifyFormat::Json => json!({
            "specversion": "1.0",
            "type": n.phase.event_type(),
            "source": format!(
                "/apis/{}/namespaces/{}/reportjobs/{}",
                crate::api::API_VERSION,
                n.namespace,
                n.name
            ),
            "id": n.id(),
            "time": n.time.to_string(),
            "datacontenttype": "application/json",
            "data": {
                "name": n.name,
                "namespace": n.namespace,
                "phase": n.phase.as_str(),
                "rows": n.rows,
                "bytes": n.bytes,
                "location": n.location,
                "url": n.url,
                "message": n.message,
            },
        }),
        NotifyFormat::Slack => json!({ "text": slack_text(n) }),
    }
}

fn slack_text(n: &Notification) -> String {
    let (icon, verb) = match n.phase {
        Outcome::Succeeded => ("✅", "succeeded"),
        Outcome::Failed => ("❌", "failed"),
    };
    let mut text = format!("{icon} ReportJob {}/{} {verb}", n.namespace, n.name);
    let mut facts = Vec::new();
    if let Some(rows) = n.rows {
        facts.push(format!("{} rows", group_digits(rows)));
    }
    if let Some(bytes) = n.bytes {
        facts.push(human_bytes(bytes));
    }
    if !facts.is_empty() {
        text.push_str(&format!(": {}", facts.join(", ")));
    }
    match (&n.location, &n.url) {
        (Some(location), Some(url)) => text.push_str(&format!(" in {location} (<{url}|download>)")),
        (Some(location), None) => text.push_str(&format!(" in {location}")),
        (None, Some(url)) => text.push_str(&format!(" (<{url}|download>)")),
        (None, None) => {}
    }
    if let Some(message) = n.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(" — {message}"));
    }
    text
}

/// `1234567` as `1,234,567`.
pub(crate) fn group_digits(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A byte count for people: `512 B`, `4.2 KiB`, `1.5 GiB`.
pub(crate) fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes.abs() < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// How a webhook is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Time allowed for one attempt: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// Pause after the first failed attempt; it doubles after each further one.
    pub base_delay: Duration,
    /// The longest pause between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts of at most 10 s each, pauses of 0.5 s doubling up to 5 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            timeout: Duration::from_secs(10),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A webhook that was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// HTTP status of the accepting answer (2xx).
    pub status: u16,
}

/// A webhook that was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message} (attempts: {attempts})")]
pub struct NotifyError {
    /// A CamelCase reason usable as a Kubernetes condition reason: `WebhookTimeout`,
    /// `WebhookUnreachable`, `WebhookServerError`, `WebhookThrottled`, `WebhookRejected`,
    /// `WebhookRequestFailed` or `WebhookInvalidUrl`.
    pub reason: &'static str,
    /// What happened on the last attempt. Never contains the webhook URL, which is a secret.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
}

/// The last attempt timed out.
pub const REASON_TIMEOUT: &str = reason::WEBHOOK_TIMEOUT;
/// The receiver could not be connected to.
pub const REASON_UNREACHABLE: &str = reason::WEBHOOK_UNREACHABLE;
/// The receiver answered 5xx.
pub const REASON_SERVER_ERROR: &str = reason::WEBHOOK_SERVER_ERROR;
/// The receiver answered 429.
pub const REASON_THROTTLED: &str = reason::WEBHOOK_THROTTLED;
/// The receiver answered 3xx or 4xx (other than 429): not retried.
pub const REASON_REJECTED: &str = reason::WEBHOOK_REJECTED;
/// The request failed after connecting (connection reset, bad answer).
pub const REASON_REQUEST_FAILED: &str = reason::WEBHOOK_REQUEST_FAILED;
/// The URL is not an http(s) URL.
pub const REASON_INVALID_URL: &str = reason::WEBHOOK_INVALID_URL;

/// What one attempt came to.
enum Attempt {
    Accepted(u16),
    Retry {
        reason: &'static str,
        message: String,
        status: Option<u16>,
        after: Option<Duration>,
    },
    Permanent {
        reason: &'static str,
        message: String,
        status: Option<u16>,
    },
}

/// POSTs `body` as JSON to `url`: each attempt has `policy.timeout`; timeouts, connection
/// errors, 5xx and 429 are retried with exponential backoff (429's `Retry-After` is honoured
/// up to 30 s); 3xx and other 4xx answers fail at once. Redirects are not followed.
pub async fn send(url: &str, body: &Value, policy: &RetryPolicy) -> Result<Delivery, NotifyError> {
    let invalid = |message: String| NotifyError {
        reason: REASON_INVALID_URL,
        message,
        attempts: 0,
        status: None,
    };
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| invalid(format!("the webhook URL is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the webhook URL must be http:// or https://, not {}://",
            parsed.scheme()
        )));
    }
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("reportjob/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NotifyError {
            reason: REASON_REQUEST_FAILED,
            message: format!("cannot build the HTTP client: {}", e.without_url()),
            attempts: 0,
            status: None,
        })?;
    // The backoff is backon's: `attempts - 1` retries, pauses of `base_delay` doubling up
    // to `max_delay`, without jitter (as [`RetryPolicy::delay`] says); only the failures
    // worth another attempt are retried, and a 429's `Retry-After` lengthens the pause.
    let retries = usize::try_from(policy.attempts.max(1) - 1).unwrap_or(usize::MAX);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.base_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(2.0)
        .with_max_times(retries);
    let made = AtomicU32::new(0);
    let attempt = || async {
        made.fetch_add(1, Ordering::Relaxed);
        let result = client.post(parsed.clone()).json(body).send().await;
        match classify(result).await {
            Attempt::Accepted(status) => Ok(status),
            Attempt::Retry {
                reason,
                message,
                status,
                after,
            } => Err(Failure {
                reason,
                message,
                status,
                after,
                retry: true,
            }),
            Attempt::Permanent {
                reason,
                message,
                status,
            } => Err(Failure {
                reason,
                message,
                status,
                after: None,
                retry: false,
            }),
        }
    };
    let outcome = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retry)
        .adjust(|f: &Failure, pause| {
            pause.map(|p| f.after.map_or(p, |a| a.min(Duration::from_secs(30)).max(p)))
        })
        .notify(|f: &Failure, pause| {
            let (reason, message) = (f.reason, &f.message);
            tracing::info!(reason, %message, ?pause, "webhook attempt failed, retrying");
        })
        .await;
    let attempts = made.load(Ordering::Relaxed);
    outcome
        .map(|status| Delivery { attempts, status })
        .map_err(|f| NotifyError {
            reason: f.reason,
            message: f.message,
            attempts,
            status: f.status,
        })
}

/// A failed attempt, as the retry loop sees it.
struct Failure {
    reason: &'static str,
    message: String,
    status: Option<u16>,
    after: Option<Duration>,
    retry: bool,
}

async fn classify(result: Result<reqwest::Response, reqwest::Error>) -> Attempt {
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            let e = e.without_url();
            let reason = if e.is_timeout() {
                REASON_TIMEOUT
            } else if e.is_connect() {
                REASON_UNREACHABLE
            } else {
                REASON_REQUEST_FAILED
            };
            return Attempt::Retry {
                reason,
                message: crate::error::error_chain(&e),
                status: None,
                after: None,
            };
        }
    };
    let status = response.status();
    let code = status.as_u16();
    if status.is_success() {
        return Attempt::Accepted(code);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The answer's text says why (Slack answers e.g. `invalid_payload`); a body that does
    // not arrive in time is left out rather than failing the attempt.
    let text = response.text().await.unwrap_or_default();
    let mut message = format!("the webhook answered {status}");
    let text = text.trim();
    if !text.is_empty() {
        let cut: String = text.chars().take(200).collect();
        message.push_str(&format!(": {}", cut.replace(['\n', '\r'], " ")));
    }
    if code == 429 {
        Attempt::Retry {
            reason: REASON_THROTTLED,
            message,
            status: Some(code),
            after: retry_after,
        }
    } else if status.is_server_error() {
        Attempt::Retry {
            reason: REASON_SERVER_ERROR,
            message,
            status: Some(code),
            after: None,
        }
    } else {
        if status.is_redirection() {
            message.push_str(" (redirects are not followed)");
        }
        Attempt::Permanent {
            reason: REASON_REJECTED,
            message,
            status: Some(code),
        }
    }
}

/// The stage result of a delivery (the pod writes it as `StageResult::Notified`).
pub fn report(result: &Result<Delivery, NotifyError>) -> NotifyReport {
    match result {
        Ok(d) => NotifyReport {
            delivered: true,
            reason: None,
            attempts: d.attempts,
            status: Some(d.status),
            message: None,
        },
        Err(e) => NotifyReport {
            status: e.status,
            ..skipped(e.reason, e.attempts, &e.message)
        },
    }
}

fn skipped(reason: &str, attempts: u32, message: &str) -> NotifyReport {
    NotifyReport {
        delivered: false,
        reason: Some(reason.to_string()),
        attempts,
        status: None,
        message: Some(message.replace(['\n', '\r'], " ")),
    }
}

/// Sends the notification `spec.notify` asks for, from a stage pod: the webhook URL comes from
/// `REPORTJOB_WEBHOOK_URL`, the name and namespace from `REPORTJOB_NAME`/`REPORTJOB_NAMESPACE`
/// (namespace `default` when unset), and the default [`RetryPolicy`] applies. Never fails:
/// returns what happened ([`report`]); when nothing is sent it is not delivered with reason
/// `NotConfigured` (no `spec.notify`), `NotRequested` (`spec.notify.on` excludes this
/// outcome) or `NotifyMisconfigured` (a variable is missing), with 0 attempts.
pub async fn notify_from_env(
    notify: Option<&NotifySpec>,
    phase: Outcome,
    details: Details,
) -> NotifyReport {
    notify_with(notify, phase, details, &RetryPolicy::default(), |name| {
        std::env::var(name).ok()
    })
    .await
}

/// [`notify_from_env`] with a retry policy of one's own and a lookup standing for the
/// environment (`lookup(env::WEBHOOK_URL)`...).
pub async fn notify_with(
    notify: Option<&NotifySpec>,
    phase: Outcome,
    details: Details,
    policy: &RetryPolicy,
    lookup: impl Fn(&str) -> Option<String>,
) -> NotifyReport {
    let Some(notify) = notify else {
        return skipped(reason::NOT_CONFIGURED, 0, "spec.notify is not set");
    };
    if !wants(notify.on, phase == Outcome::Succeeded) {
        return skipped(
            reason::NOT_REQUESTED,
            0,
            &format!(
                "spec.notify.on is {} and the report {}",
                on_name(notify.on),
                phase.as_str().to_lowercase()
            ),
        );
    }
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let Some(url) = var(ENV_WEBHOOK_URL) else {
        return skipped(
            reason::NOTIFY_MISCONFIGURED,
            0,
            &format!("{ENV_WEBHOOK_URL} is not set"),
        );
    };
    let Some(name) = var(ENV_NAME) else {
        return skipped(
            reason::NOTIFY_MISCONFIGURED,
            0,
            &format!("{ENV_NAME} is not set"),
        );
    };
    let namespace = var(ENV_NAMESPACE).unwrap_or_else(|| "default".to_string());
    let notification = Notification::new(name, namespace, phase, details, jiff::Timestamp::now());
    let result = send(&url, &body(notify.format, &notification), policy).await;
    report(&result)
}

/// `always`, `success` or `failure`, as written in the spec.
fn on_name(on: NotifyOn) -> &'static str {
    match on {
        NotifyOn::Always => "always",
        NotifyOn::Success => "success",
        NotifyOn::Failure => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(phase: Outcome) -> Notification {
        Notification::new(
            "orders-2024",
            "analytics",
            phase,
            Details {
                rows: Some(1_234_567),
                bytes: Some(5 * 1024 * 1024 + 512 * 1024),
                location: Some("s3://reports/orders/2024.csv".into()),
                url: Some("https://s3.example/reports/orders/2024.csv?X-Amz-Signature=abc".into()),
                message: None,
            },
            jiff::Timestamp::from_second(1_700_000_000).expect("valid time"),
        )
    }

    #[test]
    fn json_body_is_a_cloudevent() {
        let n = notification(Outcome::Succeeded);
        let b = body(NotifyFormat::Json, &n);
        assert_eq!(b["specversion"], "1.0");
        assert_eq!(b["type"], "dev.reporting.reportjob.succeeded");
        assert_eq!(
            b["source"],
            "/apis/reporting.dev/v1alpha1/namespaces/analytics/reportjobs/orders-2024"
        );
        assert_eq!(b["time"], "2023-11-14T22:13:20Z");
        assert_eq!(b["datacontenttype"], "application/json");
        assert_eq!(b["id"], n.id());
        assert_eq!(b["id"].as_str().map(str::len), Some(32));
        let d = &b["data"];
        assert_eq!(d["name"], "orders-2024");
        assert_eq!(d["namespace"], "analytics");
        assert_eq!(d["phase"], "Succeeded");
        assert_eq!(d["rows"], 1_234_567);
        assert_eq!(d["bytes"], 5 * 1024 * 1024 + 512 * 1024);
        assert_eq!(d["location"], "s3://reports/orders/2024.csv");
        assert!(d["url"].as_str().is_some_and(|u| u.starts_with("https://")));
        assert!(d["message"].is_null());
    }

    #[test]
    fn failed_json_body_has_the_failed_type_and_message() {
        let mut n = notification(Outcome::Failed);
        n.rows = None;
        n.message = Some("chunk 7 failed: permission denied".into());
        let b = body(NotifyFormat::Json, &n);
        assert_eq!(b["type"], "dev.reporting.reportjob.failed");
        assert_eq!(b["data"]["phase"], "Failed");
        assert_eq!(b["data"]["message"], "chunk 7 failed: permission denied");
        assert!(b["data"]["rows"].is_null());
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = notification(Outcome::Succeeded);
        assert_eq!(a.id(), notification(Outcome::Succeeded).id());
        assert_ne!(a.id(), notification(Outcome::Failed).id());
    }

    #[test]
    fn slack_body_is_one_readable_line() {
        let b = body(NotifyFormat::Slack, &notification(Outcome::Succeeded));
        let text = b["text"].as_str().expect("text");
        assert_eq!(b.as_object().map(|o| o.len()), Some(1));
        assert_eq!(
            text,
            "✅ ReportJob analytics/orders-2024 succeeded: 1,234,567 rows, 5.5 MiB in \
             s3://reports/orders/2024.csv (<https://s3.example/reports/orders/2024.csv?X-Amz-Signature=abc|download>)"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn slack_failure_shows_the_message() {
        let n = Notification::new(
            "orders",
            "default",
            Outcome::Failed,
            Details {
                message: Some("chunk 3 [100, 200): SQLSTATE 42501: permission denied".into()),
                ..Details::default()
            },
            jiff::Timestamp::UNIX_EPOCH,
        );
        let b = body(NotifyFormat::Slack, &n);
        assert_eq!(
            b["text"],
            "❌ ReportJob default/orders failed — chunk 3 [100, 200): SQLSTATE 42501: permission denied"
        );
    }

    #[test]
    fn wants_follows_notify_on() {
        assert!(wants(NotifyOn::Always, true));
        assert!(wants(NotifyOn::Always, false));
        assert!(wants(NotifyOn::Success, true));
        assert!(!wants(NotifyOn::Success, false));
        assert!(!wants(NotifyOn::Failure, true));
        assert!(wants(NotifyOn::Failure, false));
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(-1_234_567), "-1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 6,
            timeout: Duration::from_secs(1),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(1000),
        };
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(400));
        assert_eq!(p.delay(3), Duration::from_millis(800));
        assert_eq!(p.delay(4), Duration::from_millis(1000));
        assert_eq!(p.delay(100), Duration::from_millis(1000));
    }

    #[test]
    fn reports_of_deliveries() {
        let delivered = report(&Ok(Delivery {
            attempts: 3,
            status: 200,
        }));
        assert!(delivered.delivered);
        assert_eq!((delivered.attempts, delivered.status), (3, Some(200)));
        assert_eq!(delivered.condition_reason(), reason::WEBHOOK_DELIVERED);
        let failed = report(&Err(NotifyError {
            reason: REASON_TIMEOUT,
            message: "operation timed out\nagain".into(),
            attempts: 4,
            status: None,
        }));
        assert!(!failed.delivered);
        assert_eq!(failed.condition_reason(), "WebhookTimeout");
        assert_eq!(failed.attempts, 4);
        assert_eq!(failed.message.as_deref(), Some("operation timed out again"));
    }

    #[tokio::test]
    async fn invalid_urls_are_refused_without_an_attempt() {
        let e = send("ftp://example/x", &json!({}), &RetryPolicy::default())
            .await
            .expect_err("ftp is refused");
        assert_eq!(e.reason, REASON_INVALID_URL);
        assert_eq!(e.attempts, 0);
        let e = send("not a url", &json!({}), &RetryPolicy::default())
            .await
            .expect_err("garbage is refused");
        assert_eq!(e.reason, REASON_INVALID_URL);
    }
}
