//! Completion notifications: the webhook body (CloudEvents-style JSON or a Slack text) and
//! its delivery with retries. They are sent from the stage pods (`reportjob notify`, or the
//! assemble command through [`notify_from_env`]), never from the controller; a failed
//! notification never fails the report.
//!
//! [`body`] renders the webhook body; [`deliver`] sends it with retries; this module decides
//! whether and what to send.

mod body;
mod deliver;

pub use body::{Notification, body};
pub use body::{group_digits, human_bytes};
pub use deliver::{
    Delivery, NotifyError, REASON_INVALID_URL, REASON_REJECTED, REASON_REQUEST_FAILED,
    REASON_SERVER_ERROR, REASON_THROTTLED, REASON_TIMEOUT, REASON_UNREACHABLE, RetryPolicy, report,
    send,
};

use reportjob_core::api::conditions::reason;
use reportjob_core::api::{NotifySpec, NotifyWhen};
use reportjob_core::stage_protocol::NotifyReport;
use reportjob_core::stage_protocol::env::{
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
/// `NotConfigured` (no `spec.notify`), `NotRequested` (`spec.notify.when` excludes this
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
    if !notify.when.wants(phase == Outcome::Succeeded) {
        return skipped(
            reason::NOT_REQUESTED,
            0,
            &format!(
                "spec.notify.when is {} and the report {}",
                when_name(notify.when),
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
fn when_name(when: NotifyWhen) -> &'static str {
    match when {
        NotifyWhen::Always => "always",
        NotifyWhen::Success => "success",
        NotifyWhen::Failure => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_follows_notify_when() {
        assert!(NotifyWhen::Always.wants(true));
        assert!(NotifyWhen::Always.wants(false));
        assert!(NotifyWhen::Success.wants(true));
        assert!(!NotifyWhen::Success.wants(false));
        assert!(!NotifyWhen::Failure.wants(true));
        assert!(NotifyWhen::Failure.wants(false));
    }
}
