//! Rules of a valid ReportJob spec that go beyond its schema; each error names its field.

use std::fmt;

use serde::Serialize;

use super::spec::ReportJobSpec;
use crate::ident::{check_balanced, parse_ident, parse_qualified};

/// A problem with one field of a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field, as a path like `spec.chunking.chunkSize`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error about `field`.
    pub fn new(field: &str, message: &str) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Largest signed-URL lifetime SigV4 allows: 7 days.
pub const MAX_URL_EXPIRY_SECONDS: i64 = 7 * 24 * 3600;

/// Checks a spec and returns every problem found (empty when valid).
pub fn validate(spec: &ReportJobSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, &message));

    let source = &spec.source;
    match (&source.table, &source.query) {
        (Some(_), Some(_)) => err(
            "spec.source.query",
            "set exactly one of table and query, not both".into(),
        ),
        (None, None) => err(
            "spec.source.table",
            "set exactly one of table and query".into(),
        ),
        (Some(table), None) => {
            if let Err(e) = parse_qualified(table) {
                err("spec.source.table", e.0);
            }
        }
        (None, Some(query)) => {
            if query.trim().trim_end_matches(';').trim().is_empty() {
                err("spec.source.query", "is empty".into());
            } else if query.contains('\0') {
                err("spec.source.query", "contains a NUL byte".into());
            } else if let Err(e) = check_balanced(query) {
                err("spec.source.query", e.0);
            }
            if source.columns.is_some() {
                err(
                    "spec.source.columns",
                    "only applies to table; select the columns in the query".into(),
                );
            }
            if source.where_.is_some() {
                err(
                    "spec.source.where",
                    "only applies to table; filter in the query".into(),
                );
            }
        }
    }
    if let Some(columns) = &source.columns {
        if columns.is_empty() {
            err(
                "spec.source.columns",
                "is empty; omit it to export all columns".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, column) in columns.iter().enumerate() {
            match parse_ident(column) {
                Ok(name) if !seen.insert(name.clone()) => err(
                    &format!("spec.source.columns[{i}]"),
                    format!("column {name:?} is listed twice"),
                ),
                Ok(_) => {}
                Err(e) => err(&format!("spec.source.columns[{i}]"), e.0),
            }
        }
    }
    if let Some(filter) = &source.where_ {
        if filter.trim().is_empty() {
            err(
                "spec.source.where",
                "is empty; omit it to export all rows".into(),
            );
        } else if filter.contains('\0') {
            err("spec.source.where", "contains a NUL byte".into());
        } else if let Err(e) = check_balanced(filter) {
            err("spec.source.where", e.0);
        }
    }
    if let Err(e) = parse_ident(&source.key_column) {
        err("spec.source.keyColumn", e.0);
    }
    if source.statement_timeout_seconds < 1 {
        err(
            "spec.source.statementTimeoutSeconds",
            format!(
                "must be at least 1, got {}",
                source.statement_timeout_seconds
            ),
        );
    }
    if source.connection_secret_ref.name.is_empty() {
        err("spec.source.connectionSecretRef.name", "is empty".into());
    }
    if source.connection_secret_ref.key.is_empty() {
        err("spec.source.connectionSecretRef.key", "is empty".into());
    }

    let chunking = &spec.chunking;
    if chunking.chunk_size < 1 {
        err(
            "spec.chunking.chunkSize",
            format!("must be at least 1, got {}", chunking.chunk_size),
        );
    }
    if !(1..=1000).contains(&chunking.parallelism) {
        err(
            "spec.chunking.parallelism",
            format!("must be between 1 and 1000, got {}", chunking.parallelism),
        );
    }
    if !(1..=100_000).contains(&chunking.max_chunks) {
        err(
            "spec.chunking.maxChunks",
            format!("must be between 1 and 100000, got {}", chunking.max_chunks),
        );
    }

    let csv = &spec.output.csv;
    let delimiter: Vec<char> = csv.delimiter.chars().collect();
    match delimiter.as_slice() {
        [c] if c.is_ascii() && !matches!(c, '"' | '\r' | '\n') => {
            if csv.null_string.contains(*c) {
                err(
                    "spec.output.csv.nullString",
                    "must not contain the delimiter".into(),
                );
            }
        }
        _ => err(
            "spec.output.csv.delimiter",
            format!(
                "must be one ASCII character other than a quote, CR or LF, got {:?}",
                csv.delimiter
            ),
        ),
    }
    if csv.null_string.contains(['"', '\r', '\n', '\\']) {
        err(
            "spec.output.csv.nullString",
            "must not contain a quote, a backslash, CR or LF".into(),
        );
    }

    let destination = &spec.output.destination;
    match (&destination.pvc, &destination.bucket) {
        (Some(_), Some(_)) => err(
            "spec.output.destination.bucket",
            "set exactly one of pvc and bucket, not both".into(),
        ),
        (None, None) => err(
            "spec.output.destination.pvc",
            "set exactly one of pvc and bucket".into(),
        ),
        (Some(pvc), None) => {
            if !is_dns_subdomain(&pvc.claim_name) {
                err(
                    "spec.output.destination.pvc.claimName",
                    format!(
                        "{:?} is not a valid claim name (lower-case DNS subdomain)",
                        pvc.claim_name
                    ),
                );
            }
            if let Err(message) = check_relative_path(&pvc.path) {
                err("spec.output.destination.pvc.path", message);
            }
        }
        (None, Some(bucket)) => {
            if let Err(message) = check_bucket_url(&bucket.url) {
                err("spec.output.destination.bucket.url", message);
            }
            if !(1..=MAX_URL_EXPIRY_SECONDS).contains(&bucket.url_expiry_seconds) {
                err(
                    "spec.output.destination.bucket.urlExpirySeconds",
                    format!(
                        "must be between 1 and {MAX_URL_EXPIRY_SECONDS} (7 days), got {}",
                        bucket.url_expiry_seconds
                    ),
                );
            }
        }
    }

    let worker = &spec.worker;
    if !(0..=100).contains(&worker.retries_per_chunk) {
        err(
            "spec.worker.retriesPerChunk",
            format!(
                "must be between 0 and 100, got {}",
                worker.retries_per_chunk
            ),
        );
    }
    if let Some(deadline) = worker.active_deadline_seconds
        && deadline < 1
    {
        err(
            "spec.worker.activeDeadlineSeconds",
            format!("must be at least 1, got {deadline}"),
        );
    }
    if let Some(ttl) = spec.ttl_seconds_after_finished
        && ttl < 0
    {
        err(
            "spec.ttlSecondsAfterFinished",
            format!("must not be negative, got {ttl}"),
        );
    }
    errors
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An output path must stay inside its volume or output directory.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} must be relative to the volume"));
    }
    if path.ends_with('/') {
        return Err(format!("{path:?} names a directory; give a file name"));
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "{path:?} must not contain empty, `.` or `..` components"
            ));
        }
    }
    Ok(())
}

/// A bucket URL is `s3://bucket/key` with a non-empty bucket and key.
pub fn check_bucket_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(format!("{url:?} must start with s3://"));
    };
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
            check_relative_path(key).map_err(|m| format!("object key {m}"))
        }
        _ => Err(format!("{url:?} must be s3://bucket/key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::load_str;

    const GOOD: &str = r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {name: t}
spec:
  source:
    connectionSecretRef: {name: db}
    table: public.orders
    keyColumn: id
  output:
    destination:
      pvc: {claimName: reports, path: orders.csv}
"#;

    fn errors_of(yaml: &str) -> Vec<String> {
        match load_str(yaml, "test.yaml") {
            Ok(_) => vec![],
            Err(crate::api::load::LoadError::Invalid { errors, .. }) => {
                errors.into_iter().map(|e| e.to_string()).collect()
            }
            Err(other) => vec![other.to_string()],
        }
    }

    fn with(extra: &str, from: &str) -> String {
        GOOD.replace(from, extra)
    }

    #[test]
    fn good_spec_is_valid_and_defaulted() {
        let rj = load_str(GOOD, "t").unwrap();
        assert_eq!(rj.spec.chunking.chunk_size, 100_000);
        assert_eq!(rj.spec.source.connection_secret_ref.key, "url");
        assert_eq!(rj.spec.worker.retries_per_chunk, 3);
        assert!(rj.spec.output.csv.header);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                with(
                    "table: public.orders\n    query: select 1",
                    "table: public.orders",
                ),
                "spec.source.query",
            ),
            (with("", "    table: public.orders\n"), "spec.source.table"),
            (
                with("table: 'orders; drop table x'", "table: public.orders"),
                "spec.source.table",
            ),
            (
                with("keyColumn: 'id\"'", "keyColumn: id"),
                "spec.source.keyColumn",
            ),
            (
                with(
                    "keyColumn: id\n  chunking: {chunkSize: -5}",
                    "keyColumn: id",
                ),
                "spec.chunking.chunkSize",
            ),
            (
                with(
                    "keyColumn: id\n  chunking: {parallelism: 0}",
                    "keyColumn: id",
                ),
                "spec.chunking.parallelism",
            ),
            (
                with("keyColumn: id\n    colums: [a]", "keyColumn: id"),
                "spec.source.colums",
            ),
            (
                with("keyColumn: id\n    columns: [a, 'b;c']", "keyColumn: id"),
                "spec.source.columns[1]",
            ),
            (
                with(
                    "pvc: {claimName: reports, path: ../etc/passwd}",
                    "pvc: {claimName: reports, path: orders.csv}",
                ),
                "spec.output.destination.pvc.path",
            ),
            (
                with(
                    "pvc: {claimName: Reports, path: a.csv}",
                    "pvc: {claimName: reports, path: orders.csv}",
                ),
                "spec.output.destination.pvc.claimName",
            ),
            (
                with(
                    "bucket: {url: 's3://b/k'}\n      pvc: {claimName: reports, path: orders.csv}",
                    "pvc: {claimName: reports, path: orders.csv}",
                ),
                "spec.output.destination.bucket",
            ),
            (
                with("", "    keyColumn: id\n"),
                "spec.source: missing field `keyColumn`",
            ),
            (
                with(
                    "keyColumn: id\n    statementTimeoutSeconds: 0",
                    "keyColumn: id",
                ),
                "spec.source.statementTimeoutSeconds",
            ),
            (
                with(
                    "keyColumn: id\n  chunking: {chunkSize: ten}",
                    "keyColumn: id",
                ),
                "spec.chunking.chunkSize",
            ),
        ];
        for (yaml, field) in cases {
            let errors = errors_of(&yaml);
            assert!(
                errors.iter().any(|e| e.starts_with(field)),
                "expected an error naming {field}, got {errors:?} for\n{yaml}"
            );
        }
    }

    #[test]
    fn wrong_kind_is_named() {
        let errors = errors_of(&GOOD.replace("kind: ReportJob", "kind: Report"));
        assert!(errors.iter().any(|e| e.starts_with("kind:")), "{errors:?}");
    }

    #[test]
    fn bucket_urls() {
        assert!(check_bucket_url("s3://bucket/a/b.csv").is_ok());
        assert!(check_bucket_url("s3://bucket/").is_err());
        assert!(check_bucket_url("s3:///key").is_err());
        assert!(check_bucket_url("gs://bucket/key").is_err());
    }
}
