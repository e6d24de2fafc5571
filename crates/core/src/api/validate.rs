//! Rules of a valid ReportJob spec that go beyond its schema; each error names its field.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

pub use super::field_error::FieldError;
use super::pod_settings::{Author, validate_pod_settings};
use super::spec::{
    BucketDestination, ChunkingSpec, DestinationSpec, ParameterSpec, ReportJobSpec, SourceSpec,
    WorkerSpec,
};
use super::valid::{
    BucketTarget, Chunking, Destination, Filter, MAX_STATEMENT_TIMEOUT_SECONDS, Output, ParamType,
    Parameter, RelativePath, SecretKey, SelectQuery, Source, StatementTimeout, TimeZone,
    ValidSource, ValidSpec, Worker,
};
use crate::ident::{parse_ident, parse_qualified};
use crate::sql::params::MAX_PARAMS;

/// Largest signed-URL lifetime SigV4 allows: 7 days.
pub const MAX_URL_EXPIRY_SECONDS: i64 = 7 * 24 * 3600;

/// Checks a spec and returns it in typed form, or every problem found, each naming its field.
pub fn validate(spec: &ReportJobSpec) -> Result<ValidSpec, Vec<FieldError>> {
    let mut errors = Errors(Vec::new());
    let source = source(&spec.source, &mut errors);
    let chunking = chunking(&spec.chunking, &mut errors);
    let encoding = format::encoding(&spec.output, &mut errors);
    let destination = destination(&spec.output.destination, &mut errors);
    let worker = worker(&spec.worker, &mut errors);
    let time_zone = TimeZone::parse(&spec.output.time_zone)
        .map_err(|m| errors.push::<()>("spec.output.timeZone", m))
        .ok();
    if let Some(source) = &source {
        parameter_count(source, &mut errors);
    }
    let ttl_after_finished = match spec.ttl_seconds_after_finished {
        None => Some(None),
        Some(ttl) => match u64::try_from(ttl) {
            Ok(seconds) => Some(Some(Duration::from_secs(seconds))),
            Err(_) => errors.push(
                "spec.ttlSecondsAfterFinished",
                format!("must not be negative, got {ttl}"),
            ),
        },
    };
    let split = split(spec.output.split.as_ref(), &mut errors);
    let max_value_bytes = max_value_bytes(spec.output.max_value_bytes, &mut errors);
    printable(spec, &mut errors);
    let (
        Some(source),
        Some(chunking),
        Some(encoding),
        Some(destination),
        Some(worker),
        Some(ttl_after_finished),
        Some(time_zone),
        Some(split),
        Some(max_value_bytes),
    ) = (
        source,
        chunking,
        encoding,
        destination,
        worker,
        ttl_after_finished,
        time_zone,
        split,
        max_value_bytes,
    )
    else {
        if errors.0.is_empty() {
            errors.push::<()>("spec", "is invalid");
        }
        return Err(errors.0);
    };
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(ValidSpec {
        source,
        chunking,
        output: Output {
            encoding,
            compression: spec.output.compression,
            destination,
            split,
            delete_with_report_job: spec.output.delete_with_report_job,
            time_zone,
            max_value_bytes,
        },
        worker,
        notify: spec.notify.clone(),
        suspend: spec.suspend,
        ttl_after_finished,
        written: spec.clone(),
    })
}

mod format;

/// Fields that may hold line breaks and tabs (SQL and values); every other string of a spec
/// may hold no control character at all.
const MULTI_LINE: &[&str] = &[
    "spec.source.query",
    "spec.source.where",
    "spec.source.parameters[].value",
    "spec.worker.env[].value",
    "spec.worker.podAnnotations.*",
    "spec.output.csv.delimiter",
    "spec.output.csv.nullString",
];

/// Refuses control characters (C0, DEL, C1, ESC among them) and bidirectional overrides in
/// the spec's strings: names, paths, URLs and sheet names are printed by `reportjob`, by
/// kubectl and in logs, where a newline forges a line and an ESC sequence colours or moves
/// the cursor. SQL and values may hold tabs and line breaks, nothing else.
fn printable(spec: &ReportJobSpec, errors: &mut Errors) {
    fn bad(c: char, multi_line: bool) -> bool {
        let control = c.is_control() && !(multi_line && matches!(c, '\t' | '\n' | '\r'));
        control || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    fn walk(v: &serde_json::Value, path: &str, pattern: &str, errors: &mut Errors) {
        match v {
            serde_json::Value::String(text) => {
                let multi_line = MULTI_LINE.contains(&pattern);
                if let Some(c) = text.chars().find(|&c| bad(c, multi_line)) {
                    errors.push::<()>(
                        path,
                        format!(
                            "contains the control character U+{:04X}; control characters are \
                             refused{} (printed, they would act on the terminal)",
                            c as u32,
                            if multi_line {
                                " except tab and line breaks"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(
                        item,
                        &format!("{path}[{i}]"),
                        &format!("{pattern}[]"),
                        errors,
                    );
                }
            }
            serde_json::Value::Object(map) => {
                let is_map = pattern.ends_with("Annotations")
                    || pattern.ends_with("Labels")
                    || pattern.ends_with("nodeSelector");
                for (key, child) in map {
                    if let Some(c) = key.chars().find(|&c| bad(c, false)) {
                        errors.push::<()>(
                            &format!("{path}[{key:?}]"),
                            format!("the key contains the control character U+{:04X}", c as u32),
                        );
                        continue;
                    }
                    let (child_path, child_pattern) = if is_map {
                        (format!("{path}[{key:?}]"), format!("{pattern}.*"))
                    } else {
                        (format!("{path}.{key}"), format!("{pattern}.{key}"))
                    };
                    walk(child, &child_path, &child_pattern, errors);
                }
            }
            _ => {}
        }
    }
    if let Ok(value) = serde_json::to_value(spec) {
        walk(&value, "spec", "spec", errors);
    }
}

/// `spec.output.split`: `None` for one file, else limits of at least 1, at least one set.
fn split(
    split: Option<&crate::api::spec::SplitSpec>,
    errors: &mut Errors,
) -> Option<Option<crate::split::SplitLimits>> {
    let Some(split) = split else {
        return Some(None);
    };
    let limit = |value: Option<i64>, field: &str, errors: &mut Errors| match value {
        None => Some(None),
        Some(v) => match u64::try_from(v).ok().and_then(std::num::NonZeroU64::new) {
            Some(v) => Some(Some(v)),
            None => errors.push(field, format!("must be at least 1, got {v}")),
        },
    };
    let max_rows = limit(split.max_rows, "spec.output.split.maxRows", errors);
    let max_bytes = limit(split.max_bytes, "spec.output.split.maxBytes", errors);
    let (max_rows, max_bytes) = (max_rows?, max_bytes?);
    if max_rows.is_none() && max_bytes.is_none() {
        return errors.push("spec.output.split", crate::api::schema::SPLIT_LIMIT);
    }
    Some(Some(crate::split::SplitLimits {
        max_rows,
        max_bytes,
    }))
}

/// The problems found so far.
struct Errors(Vec<FieldError>);

impl Errors {
    /// Records a problem with `field`; returns `None` so a parser can end with it.
    fn push<T>(&mut self, field: &str, message: impl Into<String>) -> Option<T> {
        self.0.push(FieldError::new(field, &message.into()));
        None
    }
}

fn source(source: &SourceSpec, errors: &mut Errors) -> Option<ValidSource> {
    let rows = match (&source.table, &source.query) {
        (Some(_), Some(_)) => errors.push(
            "spec.source.query",
            "set exactly one of table and query, not both",
        ),
        (None, None) => errors.push("spec.source.table", "set exactly one of table and query"),
        (Some(table), None) => table_source(table, source, errors),
        (None, Some(query)) => {
            if source.columns.is_some() {
                errors.push::<()>(
                    "spec.source.columns",
                    "only applies to table; select the columns in the query",
                );
            }
            if source.where_.is_some() {
                errors.push::<()>(
                    "spec.source.where",
                    "only applies to table; filter in the query",
                );
            }
            select_query(query, errors).map(|sql| Source::Query { sql })
        }
    };
    let key_column = parse_ident(&source.key_column)
        .map_err(|e| errors.push::<()>("spec.source.keyColumn", e.0))
        .ok();
    let statement_timeout = statement_timeout(source.statement_timeout_seconds, errors);
    let parameters = parameters(&source.parameters, errors);
    let snapshot_max = match u64::try_from(source.snapshot_max_seconds) {
        Ok(s) if (60..=MAX_SNAPSHOT_SECONDS).contains(&s) => Some(Duration::from_secs(s)),
        _ => errors.push(
            "spec.source.snapshotMaxSeconds",
            format!(
                "must be between 60 and {MAX_SNAPSHOT_SECONDS} (seven days), got {}",
                source.snapshot_max_seconds
            ),
        ),
    };
    let name = non_empty(
        &source.connection_secret_ref.name,
        "spec.source.connectionSecretRef.name",
        errors,
    );
    let key = non_empty(
        &source.connection_secret_ref.key,
        "spec.source.connectionSecretRef.key",
        errors,
    );
    let database = match &source.database {
        None => Some(None),
        Some(db) if is_dns_subdomain(&db.name) => Some(Some(db.name.clone())),
        Some(_) => errors.push(
            "spec.source.database.name",
            "must be a ReportDatabase name: lower-case letters, digits, '-' and '.', at most 253 characters",
        ),
    };
    Some(ValidSource {
        connection: SecretKey {
            name: name?,
            key: key?,
        },
        rows: rows?,
        key_column: key_column?,
        statement_timeout: statement_timeout?,
        parameters: parameters?,
        consistency: source.consistency,
        snapshot_max: snapshot_max?,
        database: database?,
    })
}

/// Longest `snapshotMaxSeconds`: seven days.
pub const MAX_SNAPSHOT_SECONDS: u64 = 7 * 24 * 3600;

/// Longest parameter value: 64 KiB.
const MAX_PARAM_BYTES: usize = 64 * 1024;

fn parameters(params: &[ParameterSpec], errors: &mut Errors) -> Option<Vec<Parameter>> {
    if params.len() > MAX_PARAMS {
        return errors.push(
            "spec.source.parameters",
            format!("has {} values; at most {MAX_PARAMS}", params.len()),
        );
    }
    let mut out = Vec::with_capacity(params.len());
    let mut ok = true;
    for (i, p) in params.iter().enumerate() {
        let field = format!("spec.source.parameters[{i}]");
        if p.value.contains('\0') {
            ok = false;
            errors.push::<()>(
                &format!("{field}.value"),
                format!("(${}) contains a NUL byte", i + 1),
            );
        } else if p.value.len() > MAX_PARAM_BYTES {
            ok = false;
            errors.push::<()>(
                &format!("{field}.value"),
                format!("(${}) is longer than {MAX_PARAM_BYTES} bytes", i + 1),
            );
        }
        let declared = match &p.type_ {
            None => None,
            Some(name) => match ParamType::parse(name) {
                Some(t) => Some(t),
                None => {
                    ok = false;
                    errors.push::<()>(
                        &format!("{field}.type"),
                        format!(
                            "(${}) {name:?} is not a supported parameter type; supported: {}",
                            i + 1,
                            ParamType::SUPPORTED
                        ),
                    );
                    None
                }
            },
        };
        out.push(Parameter {
            value: p.value.clone(),
            declared,
        });
    }
    ok.then_some(out)
}

/// Every `$n` the SQL uses has a value and every value is used: `$1..$n` without gaps.
fn parameter_count(source: &ValidSource, errors: &mut Errors) {
    let used = source.param_numbers();
    let given = source.parameters.len();
    let field = match source.rows {
        Source::Table { .. } => "where",
        Source::Query { .. } => "query",
    };
    if let Some(n) = used.iter().find(|&&n| n as usize > given) {
        errors.push::<()>(
            "spec.source.parameters",
            format!("the {field} uses ${n} but {given} values are given"),
        );
        return;
    }
    if let Some(i) = (1..=given as u32).find(|n| !used.contains(n)) {
        errors.push::<()>(
            &format!("spec.source.parameters[{}]", i - 1),
            format!("${i} is not used by the {field}"),
        );
    }
}

fn non_empty(value: &str, field: &str, errors: &mut Errors) -> Option<String> {
    if value.is_empty() {
        errors.push(field, "is empty")
    } else {
        Some(value.to_string())
    }
}

fn table_source(table: &str, source: &SourceSpec, errors: &mut Errors) -> Option<Source> {
    let name = parse_qualified(table)
        .map_err(|e| errors.push::<()>("spec.source.table", e.0))
        .ok();
    let columns = match &source.columns {
        None => Some(None),
        Some(columns) => column_list(columns, errors).map(Some),
    };
    let where_ = match &source.where_ {
        None => Some(None),
        Some(filter) => where_filter(filter, errors).map(Some),
    };
    Some(Source::Table {
        name: name?,
        columns: columns?,
        where_: where_?,
    })
}

fn column_list(columns: &[String], errors: &mut Errors) -> Option<Vec<String>> {
    if columns.is_empty() {
        return errors.push(
            "spec.source.columns",
            "is empty; omit it to export all columns",
        );
    }
    let mut parsed = Vec::with_capacity(columns.len());
    let mut ok = true;
    for (i, column) in columns.iter().enumerate() {
        let field = format!("spec.source.columns[{i}]");
        match parse_ident(column) {
            Ok(name) if parsed.contains(&name) => {
                ok = false;
                errors.push::<()>(&field, format!("column {name:?} is listed twice"));
            }
            Ok(name) => parsed.push(name),
            Err(e) => {
                ok = false;
                errors.push::<()>(&field, e.0);
            }
        }
    }
    ok.then_some(parsed)
}

fn where_filter(filter: &str, errors: &mut Errors) -> Option<Filter> {
    let field = "spec.source.where";
    let filter = filter.trim();
    if filter.is_empty() {
        errors.push(field, "is empty; omit it to export all rows")
    } else if filter.contains('\0') {
        errors.push(field, "contains a NUL byte")
    } else {
        Filter::parse(filter)
            .map_err(|e| errors.push::<()>(field, e.0))
            .ok()
    }
}

fn select_query(query: &str, errors: &mut Errors) -> Option<SelectQuery> {
    let field = "spec.source.query";
    let query = query.trim().trim_end_matches(';').trim_end();
    if query.trim_end_matches(';').trim().is_empty() {
        errors.push(field, "is empty")
    } else if query.contains('\0') {
        errors.push(field, "contains a NUL byte")
    } else {
        SelectQuery::parse(query)
            .map_err(|e| errors.push::<()>(field, e.0))
            .ok()
    }
}

fn statement_timeout(seconds: i64, errors: &mut Errors) -> Option<StatementTimeout> {
    match u32::try_from(seconds) {
        Ok(s) if (1..=MAX_STATEMENT_TIMEOUT_SECONDS).contains(&s) => Some(StatementTimeout(s)),
        _ => errors.push(
            "spec.source.statementTimeoutSeconds",
            format!(
                "must be between 1 and {MAX_STATEMENT_TIMEOUT_SECONDS} (one day), got {seconds}"
            ),
        ),
    }
}

/// `value` within `1..=max`, converted by `convert`; any failure names `field`.
fn bounded<T>(
    value: i64,
    max: i64,
    field: &str,
    errors: &mut Errors,
    convert: impl Fn(u64) -> Option<T>,
) -> Option<T> {
    let converted = u64::try_from(value)
        .ok()
        .filter(|_| (1..=max).contains(&value))
        .and_then(convert);
    match converted {
        Some(n) => Some(n),
        None if max == i64::MAX => errors.push(field, format!("must be at least 1, got {value}")),
        None => errors.push(field, format!("must be between 1 and {max}, got {value}")),
    }
}

fn non_zero_u32(n: u64) -> Option<NonZeroU32> {
    u32::try_from(n).ok().and_then(NonZeroU32::new)
}

/// Bounds of `output.maxValueBytes`: 1 KiB to 1 GiB (the most a Postgres value can hold).
pub const MAX_VALUE_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024 * 1024;

fn max_value_bytes(bytes: i64, errors: &mut Errors) -> Option<u64> {
    match u64::try_from(bytes) {
        Ok(b) if MAX_VALUE_BYTES_RANGE.contains(&b) => Some(b),
        _ => errors.push(
            "spec.output.maxValueBytes",
            format!(
                "must be between {} (1 KiB) and {} (1 GiB), got {bytes}",
                MAX_VALUE_BYTES_RANGE.start(),
                MAX_VALUE_BYTES_RANGE.end()
            ),
        ),
    }
}

fn chunking(chunking: &ChunkingSpec, errors: &mut Errors) -> Option<Chunking> {
    let chunk_size = bounded(
        chunking.chunk_size,
        i64::MAX,
        "spec.chunking.chunkSize",
        errors,
        NonZeroU64::new,
    );
    let parallelism = bounded(
        chunking.parallelism,
        1000,
        "spec.chunking.parallelism",
        errors,
        non_zero_u32,
    );
    let max_chunks = bounded(
        chunking.max_chunks,
        100_000,
        "spec.chunking.maxChunks",
        errors,
        non_zero_u32,
    );
    Some(Chunking {
        chunk_size: chunk_size?,
        parallelism: parallelism?,
        max_chunks: max_chunks?,
    })
}

fn destination(destination: &DestinationSpec, errors: &mut Errors) -> Option<Destination> {
    match (&destination.pvc, &destination.bucket) {
        (Some(_), Some(_)) => errors.push(
            "spec.output.destination.bucket",
            "set exactly one of pvc and bucket, not both",
        ),
        (None, None) => errors.push(
            "spec.output.destination.pvc",
            "set exactly one of pvc and bucket",
        ),
        (Some(pvc), None) => {
            let claim = if is_dns_subdomain(&pvc.claim_name) {
                Some(pvc.claim_name.clone())
            } else {
                errors.push(
                    "spec.output.destination.pvc.claimName",
                    format!(
                        "{:?} is not a valid claim name (lower-case DNS subdomain)",
                        pvc.claim_name
                    ),
                )
            };
            let path = RelativePath::parse(&pvc.path)
                .map_err(|m| errors.push::<()>("spec.output.destination.pvc.path", m))
                .ok();
            Some(Destination::Pvc {
                claim: claim?,
                path: path?,
            })
        }
        (None, Some(bucket)) => bucket_target(bucket, errors).map(Destination::Bucket),
    }
}

fn bucket_target(bucket: &BucketDestination, errors: &mut Errors) -> Option<BucketTarget> {
    let url = parse_bucket_url(&bucket.url)
        .map_err(|m| errors.push::<()>("spec.output.destination.bucket.url", m))
        .ok();
    let endpoint = match &bucket.endpoint {
        None => Some(None),
        Some(endpoint) => match url::Url::parse(endpoint) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                Some(Some(endpoint.clone()))
            }
            _ => errors.push(
                "spec.output.destination.bucket.endpoint",
                format!("{endpoint:?} must be an http:// or https:// URL"),
            ),
        },
    };
    let url_expiry = match u64::try_from(bucket.url_expiry_seconds) {
        Ok(s) if (1..=MAX_URL_EXPIRY_SECONDS).contains(&bucket.url_expiry_seconds) => {
            Some(Duration::from_secs(s))
        }
        _ => errors.push(
            "spec.output.destination.bucket.urlExpirySeconds",
            format!(
                "must be between 1 and {MAX_URL_EXPIRY_SECONDS} (7 days), got {}",
                bucket.url_expiry_seconds
            ),
        ),
    };
    let (bucket_name, key) = url?;
    Some(BucketTarget {
        bucket: bucket_name,
        key,
        credentials_secret: bucket
            .credentials_secret_ref
            .as_ref()
            .map(|s| s.name.clone()),
        endpoint: endpoint?,
        region: bucket.region.clone(),
        path_style: bucket.path_style,
        url_expiry: url_expiry?,
        server_side_copy: bucket.server_side_copy,
    })
}

/// `spec.worker.startTimeoutSeconds` when unset: ten minutes, long enough for a slow image
/// pull or a node scale-up, short enough that a stuck run is not left waiting for a day.
pub const DEFAULT_START_TIMEOUT_SECONDS: i64 = 600;

fn worker(worker: &WorkerSpec, errors: &mut Errors) -> Option<Worker> {
    let retries_per_chunk = match u32::try_from(worker.retries_per_chunk) {
        Ok(n) if n <= 100 => Some(n),
        _ => errors.push(
            "spec.worker.retriesPerChunk",
            format!(
                "must be between 0 and 100, got {}",
                worker.retries_per_chunk
            ),
        ),
    };
    let snapshot_restarts = match u32::try_from(worker.snapshot_restarts) {
        Ok(n) if n <= 10 => Some(n),
        _ => errors.push(
            "spec.worker.snapshotRestarts",
            format!("must be between 0 and 10, got {}", worker.snapshot_restarts),
        ),
    };
    let active_deadline = match worker.active_deadline_seconds {
        None => Some(None),
        Some(deadline) => bounded(
            deadline,
            i64::MAX,
            "spec.worker.activeDeadlineSeconds",
            errors,
            |s| Some(Some(Duration::from_secs(s))),
        ),
    };
    let start_timeout = bounded(
        worker
            .start_timeout_seconds
            .unwrap_or(DEFAULT_START_TIMEOUT_SECONDS),
        86_400,
        "spec.worker.startTimeoutSeconds",
        errors,
        |s| Some(Duration::from_secs(s)),
    );
    let pod = validate_pod_settings(&worker.pod, "spec.worker", Author::Spec)
        .map_err(|e| errors.0.extend(e))
        .ok();
    Some(Worker {
        pod: pod?,
        image: worker.image.clone(),
        resources: worker.resources.clone(),
        retries_per_chunk: retries_per_chunk?,
        active_deadline: active_deadline?,
        start_timeout: start_timeout?,
        service_account_name: worker.service_account_name.clone(),
        same_node: worker.same_node,
        snapshot_restarts: snapshot_restarts?,
    })
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

/// A bucket URL `s3://bucket/key` with a non-empty bucket (no whitespace or control
/// characters) and a relative key: the bucket and the key.
pub fn parse_bucket_url(url: &str) -> Result<(String, RelativePath), String> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(format!("{url:?} must start with s3://"));
    };
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
            if bucket.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{url:?} has an invalid bucket name"));
            }
            let key = RelativePath::parse(key).map_err(|m| format!("object key {m}"))?;
            Ok((bucket.to_string(), key))
        }
        _ => Err(format!("{url:?} must be s3://bucket/key")),
    }
}

#[cfg(test)]
mod tests;
