//! How the client commands show a ReportJob: its outcome, the one-object JSON of `--json`,
//! the output lines of a finished report, and aligned tables.

use kube::ResourceExt;
use serde_json::Value;

use crate::api::conditions::{COMPLETE, FAILED};
use crate::api::{ReportJob, ReportJobStatus};
use crate::notify::human_bytes;

/// `Some(true)` when the ReportJob is complete, `Some(false)` when it failed: by its
/// `Complete`/`Failed` conditions, or its phase when it has neither condition. A failure
/// whose retry was asked for (the retry annotation holds a token the controller has not
/// taken up yet) is not an outcome: the attempt asked for is still to come, so `reportjob
/// retry X && reportjob wait X` waits for it rather than ending on the failure before.
pub fn outcome(rj: &ReportJob) -> Option<bool> {
    let status = rj.status.as_ref()?;
    let outcome = outcome_of(status)?;
    let asked = rj
        .annotations()
        .get(crate::controller::names::RETRY_ANNOTATION);
    if !outcome && asked.is_some() && asked != status.retry_token.as_ref() {
        return None;
    }
    Some(outcome)
}

/// [`outcome`] of a status.
pub fn outcome_of(status: &ReportJobStatus) -> Option<bool> {
    if status.phase == Some(crate::api::Phase::Cancelled) {
        return Some(false);
    }
    let mut decided = false;
    for c in &status.conditions {
        if c.type_ == COMPLETE || c.type_ == FAILED {
            decided = true;
            if c.status == "True" {
                return Some(c.type_ == COMPLETE);
            }
        }
    }
    if decided {
        return None;
    }
    match status.phase? {
        crate::api::Phase::Succeeded => Some(true),
        crate::api::Phase::Failed => Some(false),
        _ => None,
    }
}

/// Why a ReportJob failed: its message, else its `Failed` condition.
pub fn failure_message(status: &ReportJobStatus) -> String {
    status
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == FAILED)
                .map(|c| format!("{}: {}", c.reason, c.message))
        })
        .unwrap_or_else(|| "no message".to_string())
}

/// The `location:`, `url:`, `rows:`, `bytes:`, `sha256:` lines of a finished report.
pub fn output_lines(status: &ReportJobStatus) -> String {
    let mut out = String::new();
    let rows = status.output.as_ref().map(|o| o.rows).or(status.rows);
    let bytes = status.output.as_ref().map(|o| o.bytes).or(status.bytes);
    if let Some(o) = &status.output {
        out.push_str(&format!("location: {}\n", o.location));
        if let Some(url) = &o.url {
            match &o.url_expires_at {
                Some(t) => out.push_str(&format!("url:      {url} (expires {})\n", t.0)),
                None => out.push_str(&format!("url:      {url}\n")),
            }
        }
    }
    if let Some(rows) = rows {
        out.push_str(&format!("rows:     {rows}\n"));
    }
    if let Some(bytes) = bytes {
        out.push_str(&format!("bytes:    {bytes} ({})\n", human_bytes(bytes)));
    }
    if let Some(o) = &status.output {
        out.push_str(&format!("sha256:   {}\n", o.sha256));
    }
    out
}

/// The final status of `submit --json`, `wait --json` and `status --json`: the one shape
/// of [`crate::cli::summary::Summary`].
pub fn status_json(rj: &ReportJob, result: &'static str) -> Value {
    serde_json::to_value(crate::cli::summary::Summary::of_reportjob(rj, result))
        .unwrap_or(Value::Null)
}

/// `succeeded`, `failed` or `running`: the `result` of `status --json`.
pub fn result_word(rj: &ReportJob) -> &'static str {
    match outcome(rj) {
        Some(true) => "succeeded",
        Some(false) => "failed",
        None => "running",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{API_VERSION, KIND};
    use serde_json::json;

    fn with_status(status: serde_json::Value) -> ReportJob {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"pvc": {"claimName": "c", "path": "r.csv"}}}
            },
            "status": status,
        }))
        .expect("a ReportJob")
    }

    fn cond(type_: &str, status: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "m",
               "lastTransitionTime": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn outcome_follows_conditions_then_phase() {
        assert_eq!(outcome(&with_status(json!({}))), None);
        assert_eq!(
            outcome(&with_status(
                json!({"conditions": [cond("Complete", "True")]})
            )),
            Some(true)
        );
        assert_eq!(
            outcome(&with_status(
                json!({"conditions": [cond("Failed", "True")]})
            )),
            Some(false)
        );
        // A Failed=False condition wins over a phase that says otherwise.
        assert_eq!(
            outcome(&with_status(
                json!({"phase": "Failed", "conditions": [cond("Failed", "False")]})
            )),
            None
        );
        assert_eq!(
            outcome(&with_status(json!({"phase": "Succeeded"}))),
            Some(true)
        );
        assert_eq!(outcome(&with_status(json!({"phase": "Running"}))), None);
    }

    #[test]
    fn status_json_names_the_output() {
        let rj = with_status(json!({
            "phase": "Succeeded",
            "output": {"location": "reports/r.csv", "rows": 10, "bytes": 99, "sha256": "ab"},
        }));
        let v = status_json(&rj, "succeeded");
        assert_eq!(v["name"], "r");
        assert_eq!(v["namespace"], "default");
        assert_eq!(v["phase"], "Succeeded");
        assert_eq!(v["location"], "reports/r.csv");
        assert_eq!(v["rows"], 10);
        assert_eq!(v["bytes"], 99);
        assert_eq!(v["sha256"], "ab");
        assert!(v["url"].is_null());
    }
}
