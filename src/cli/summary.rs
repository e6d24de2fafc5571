//! The one JSON object every `--json` outcome prints: `reportjob run`, and `submit`, `wait`,
//! `status` in a cluster. Every key is always there (null where it does not apply), in
//! snake_case, so a pipeline reads one shape whichever command ran and however it ended.
//! docs/cli.md lists the fields.

use serde::Serialize;

use crate::api::ReportJob;

/// The outcome of a run as one JSON object.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct Summary {
    /// `succeeded`, `failed`, `cancelled`, `refused` (the spec or the request was refused
    /// before anything ran), `deleted`, `timeout`, `lost` (no API server), `submitted`
    /// (without `--wait`), `running` (`status`) or `dry_run` (`--dry-run`: checked, nothing
    /// created or exported).
    pub result: &'static str,
    /// The ReportJob and its namespace (null for `reportjob run`).
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The ReportJob's phase (null for `reportjob run`).
    pub phase: Option<String>,
    /// Where the report is, its signed link and when that expires (RFC 3339).
    pub location: Option<String>,
    pub url: Option<String>,
    pub url_expires_at: Option<String>,
    /// Rows, bytes and sha256 of the report.
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    /// The files of a split report.
    pub files: Option<Vec<File>>,
    /// Chunk counts.
    pub chunks: Option<Chunks>,
    /// The chunks that failed, as compact ranges (`2,5-6`).
    pub failed_chunks: Option<String>,
    /// The run's id, its plan's digest, where its manifest is, the snapshot it read.
    pub run_id: Option<String>,
    pub plan_digest: Option<String>,
    pub manifest: Option<String>,
    pub snapshot: Option<Snapshot>,
    /// Parts a bucket copied server-side.
    pub server_side_copies: Option<u64>,
    /// Wall time of `reportjob run`.
    pub elapsed_seconds: Option<f64>,
    /// What went wrong, for people; with the SQLSTATE and whether retrying can help.
    pub message: Option<String>,
    pub sqlstate: Option<String>,
    pub permanent: Option<bool>,
}

/// Chunk counts: in the plan, done, failed, running, and resumed from an earlier run.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct Chunks {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub active: i64,
    pub resumed: i64,
}

/// One file of a split report, with the keys the report's manifest gives it.
#[derive(Serialize, Debug, PartialEq)]
pub struct File {
    pub location: String,
    pub rows: i64,
    pub bytes: i64,
    pub sha256: String,
    /// The chunks whose rows it holds (`4-7`; not in a ReportJob's status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<String>,
}

impl File {
    /// A file as the report's manifest lists it.
    pub fn of(f: &crate::split::OutputFile) -> File {
        File {
            location: f.location.clone(),
            rows: i64::try_from(f.rows).unwrap_or(i64::MAX),
            bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
            sha256: f.sha256.clone(),
            chunks: Some(f.chunks.clone()),
            url: f.url.clone(),
            url_expires_at: f.url_expires_at.clone(),
        }
    }
}

/// The database snapshot the report shows.
#[derive(Serialize, Debug, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub taken_at: String,
}

impl Summary {
    /// The summary as one JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!("{{\"result\":\"{}\"}}", self.result))
    }

    /// A refusal before anything ran: `message` says why.
    pub fn refused(message: &str) -> Summary {
        Summary {
            result: "refused",
            message: Some(message.to_string()),
            permanent: Some(true),
            ..Summary::default()
        }
    }

    /// What a ReportJob's status says, with `result`.
    pub fn of_reportjob(rj: &ReportJob, result: &'static str) -> Summary {
        use kube::ResourceExt;
        let status = rj.status.clone().unwrap_or_default();
        let output = status.output.as_ref();
        Summary {
            result,
            name: Some(rj.name_any()),
            namespace: rj.namespace(),
            phase: status.phase.map(|p| p.as_str().to_string()),
            location: output.map(|o| o.location.clone()),
            url: output.and_then(|o| o.url.clone()),
            url_expires_at: output
                .and_then(|o| o.url_expires_at.as_ref())
                .map(|t| t.0.to_string()),
            rows: output.map(|o| o.rows).or(status.rows),
            bytes: output.map(|o| o.bytes).or(status.bytes),
            sha256: output.map(|o| o.sha256.clone()).filter(|s| !s.is_empty()),
            files: output.filter(|o| !o.files.is_empty()).map(|o| {
                o.files
                    .iter()
                    .map(|f| File {
                        location: f.location.clone(),
                        rows: f.rows,
                        bytes: f.bytes,
                        sha256: f.sha256.clone(),
                        chunks: None,
                        url: None,
                        url_expires_at: None,
                    })
                    .collect()
            }),
            chunks: status.chunks.as_ref().map(|c| Chunks {
                total: c.total,
                succeeded: c.succeeded,
                failed: c.failed,
                active: c.active,
                resumed: 0,
            }),
            failed_chunks: status.failed_chunks.clone().filter(|f| !f.is_empty()),
            run_id: status.plan.as_ref().map(|p| p.run_id.clone()),
            plan_digest: status.plan.as_ref().map(|p| p.digest.clone()),
            snapshot: output.and_then(|o| o.snapshot.as_ref()).map(|s| Snapshot {
                id: s.id.clone(),
                taken_at: s.taken_at.0.to_string(),
            }),
            message: status.message.clone(),
            ..Summary::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_there_whatever_the_outcome() {
        let refused: serde_json::Value =
            serde_json::from_str(&Summary::refused("spec.source.table: required").to_line())
                .unwrap();
        let full = serde_json::to_value(Summary {
            result: "succeeded",
            chunks: Some(Chunks::default()),
            snapshot: Some(Snapshot {
                id: "x".into(),
                taken_at: "t".into(),
            }),
            ..Summary::default()
        })
        .unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&refused), keys(&full));
        assert_eq!(refused["result"], "refused");
        assert_eq!(refused["message"], "spec.source.table: required");
        assert!(
            keys(&full)
                .iter()
                .all(|k| !k.chars().any(|c| c.is_ascii_uppercase()))
        );
        assert_eq!(
            full["snapshot"],
            serde_json::json!({"id": "x", "taken_at": "t"})
        );
    }
}
