//! The webhook body of a notification: a CloudEvents-style JSON object or a Slack text.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Details, Outcome};
use reportjob_core::api::NotifyFormat;

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

/// The webhook body: a CloudEvents-style object (`json`) or a Slack `{"text": ...}` (`slack`).
pub fn body(format: NotifyFormat, n: &Notification) -> Value {
    match format {
        NotifyFormat::Json => json!({
            "specversion": "1.0",
            "type": n.phase.event_type(),
            "source": format!(
                "/apis/{}/namespaces/{}/reportjobs/{}",
                reportjob_core::api::API_VERSION,
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
pub fn group_digits(n: i64) -> String {
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
pub fn human_bytes(bytes: i64) -> String {
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
    fn numbers_for_people() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(-1_234_567), "-1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
