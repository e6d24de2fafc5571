//! Delivery of a webhook: one POST per attempt, retried with backoff on what may pass
//! (timeouts, connection errors, 5xx, 429), and each outcome named by a condition reason.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable;
use reportjob_core::retry::Backoff;
use serde_json::Value;

use super::skipped;
use reportjob_core::api::conditions::reason;
use reportjob_core::stage_protocol::NotifyReport;

/// How a webhook is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Time allowed for one attempt: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// The pauses between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// 4 attempts of at most 10 s each, pauses of 0.5 s doubling up to 5 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            timeout: Duration::from_secs(10),
            backoff: reportjob_core::retry::WEBHOOK,
        }
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
    if let Some(host) = parsed.host_str() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        crate::net_guard::check_host(host, port, "the webhook URL's host")
            .await
            .map_err(invalid)?;
    }
    crate::install_crypto_provider();
    // No proxy from the environment (HTTP_PROXY and the like): the webhook URL is a secret,
    // and where it goes is the spec's URL, nothing else.
    let client = crate::net_guard::client_builder()
        .map_err(invalid)?
        .no_proxy()
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
    // `attempts - 1` retries with the policy's backoff (on backon, without jitter); only the
    // failures worth another attempt are retried, and a 429's `Retry-After` lengthens the
    // pause.
    let retries = usize::try_from(policy.attempts.max(1) - 1).unwrap_or(usize::MAX);
    let backoff = policy.backoff.retries(retries);
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

/// Most bytes of a webhook's answer that are read (and then dropped).
pub const MAX_BODY_READ: usize = 4096;

/// Reads at most [`MAX_BODY_READ`] bytes of an answer's body and drops them; a huge or
/// endless body costs no memory.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read < MAX_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
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
    // The answer's body is the receiver's, not ours: it is drained up to MAX_BODY_READ (so
    // the connection can be reused) and never shown, since a webhook URL pointed at an
    // internal service would otherwise copy that service's answer into the status.
    drain(response).await;
    let mut message = format!("the webhook answered {status}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
