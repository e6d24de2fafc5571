//! The validated spec: what every step after validation takes. Only
//! [`validate`](super::validate::validate) builds a [`ValidSpec`]; its fields are typed and
//! bounded (non-zero sizes, parsed names, a one-byte delimiter, one destination), so nothing
//! downstream checks, clamps or falls back again.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;

use super::pod_settings::PodSettings;
use super::spec::{Compression, Consistency, NotifySpec, ReportJobSpec};
use crate::ident::QualifiedName;
use crate::identity::RunIdentity;
pub use crate::sql::params::ParamType;
pub use crate::sql::{Filter, SelectQuery};

/// A ReportJob spec that passed validation, in typed form.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// The rows to export.
    pub source: ValidSource,
    /// How the key range is cut.
    pub chunking: Chunking,
    /// The report's format and destination.
    pub output: Output,
    /// The stage pods.
    pub worker: Worker,
    /// The webhook, when one is asked for.
    pub notify: Option<NotifySpec>,
    /// Whether the export is paused.
    pub suspend: bool,
    /// How long a finished ReportJob is kept.
    pub ttl_after_finished: Option<Duration>,
    /// The spec as written (private: only validation builds a `ValidSpec`).
    pub(super) written: ReportJobSpec,
}

impl ValidSpec {
    /// The spec as written, to pass on unchanged (to stage pods, to the notifier). Read the
    /// typed fields instead of its fields.
    pub fn written(&self) -> &ReportJobSpec {
        &self.written
    }

    /// The spec as written, as JSON: the record of what a run was planned with, and what
    /// stage pods are given.
    pub fn written_json(&self) -> String {
        // A ReportJobSpec is plain data with string keys: serializing it cannot fail.
        serde_json::to_string(&self.written).expect("a ReportJobSpec serializes to JSON")
    }

    /// What shapes this spec's run (see [`RunIdentity`]).
    pub fn identity(&self) -> RunIdentity {
        RunIdentity::of(&self.written)
    }
}

/// The validated `spec.source`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSource {
    /// The Secret key holding the connection URL.
    pub connection: SecretKey,
    /// A table or a query.
    pub rows: Source,
    /// The key column, parsed (unquoted parts folded to lower case).
    pub key_column: String,
    /// Each read is cancelled after this long.
    pub statement_timeout: StatementTimeout,
    /// Values bound to `$1..$n` of `query` or `where` (at most 100).
    pub parameters: Vec<Parameter>,
    /// One snapshot for the run, or one per chunk.
    pub consistency: Consistency,
    /// Longest a run's snapshot is held (one minute to seven days).
    pub snapshot_max: Duration,
    /// The ReportDatabase whose budget the run shares (a DNS subdomain name).
    pub database: Option<String>,
}

/// A value bound to one `$n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// The value as text (no NUL, at most 64 KiB).
    pub value: String,
    /// The declared type; `None` takes the type the server infers.
    pub declared: Option<ParamType>,
}

impl ValidSource {
    /// Every `$n` the source's SQL uses, sorted and distinct.
    pub fn param_numbers(&self) -> Vec<u32> {
        let refs: Vec<crate::sql::params::ParamRef> = match &self.rows {
            Source::Table { where_, .. } => where_
                .as_ref()
                .map(|f| f.params().to_vec())
                .unwrap_or_default(),
            Source::Query { sql } => sql.params().to_vec(),
        };
        crate::sql::params::numbers(&refs)
    }
}

/// An IANA time zone name: letters, digits, `/`, `_`, `+`, `-`, at most 64 bytes (the
/// server's `pg_timezone_names` decides whether it exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZone(pub(super) String);

impl TimeZone {
    /// Parses a name, saying what is wrong with it.
    pub fn parse(name: &str) -> Result<TimeZone, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'-'))
            && !name.starts_with(['/', '-', '+']);
        if ok {
            Ok(TimeZone(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not an IANA time zone name (such as UTC or Europe/Paris)"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Secret key, both parts non-empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key within it.
    pub key: String,
}

/// Where the rows come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A table or view.
    Table {
        /// Its parsed name.
        name: QualifiedName,
        /// The columns to export, parsed, non-empty and distinct; `None` is all of them.
        columns: Option<Vec<String>>,
        /// A row filter, parsed by Postgres's grammar and regenerated.
        where_: Option<Filter>,
    },
    /// A SELECT query.
    Query {
        /// The query, parsed by Postgres's grammar and regenerated.
        sql: SelectQuery,
    },
}

/// Longest `statementTimeoutSeconds`: one day.
pub const MAX_STATEMENT_TIMEOUT_SECONDS: u32 = 86_400;

/// A statement timeout between one second and [`MAX_STATEMENT_TIMEOUT_SECONDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementTimeout(pub(super) u32);

impl StatementTimeout {
    /// Whole seconds (1 to 86400).
    pub fn seconds(self) -> u32 {
        self.0
    }

    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

/// The validated `spec.chunking`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// Target rows per chunk.
    pub chunk_size: NonZeroU64,
    /// Chunks exported at once (at most 1000).
    pub parallelism: NonZeroU32,
    /// Most chunks in a plan (at most 100000).
    pub max_chunks: NonZeroU32,
}

/// The validated `spec.output`.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The file format and its options.
    pub encoding: Encoding,
    /// Compression of parts and report.
    pub compression: Compression,
    /// Where the report goes.
    pub destination: Destination,
    /// How the report is split into files; `None` writes one.
    pub split: Option<crate::split::SplitLimits>,
    /// Delete the report with the ReportJob.
    pub delete_with_report_job: bool,
    /// The time zone `timestamptz` values are written in.
    pub time_zone: TimeZone,
    /// The largest value one cell may take from the database, in bytes.
    pub max_value_bytes: u64,
}

/// The report's file format with its options: each format carries only its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 4180 CSV.
    Csv(CsvFormat),
    /// JSON Lines.
    Jsonl(JsonlFormat),
    /// Apache Parquet.
    Parquet(ParquetFormat),
    /// An Excel workbook.
    Xlsx(XlsxFormat),
}

/// Parquet encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParquetFormat {
    /// Most rows in a row group (1 to 16777216).
    pub row_group_rows: u64,
    /// Compression of pages.
    pub compression: super::spec::ParquetCompression,
}

/// Excel workbook encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlsxFormat {
    /// Name of the first sheet, checked against Excel's rules (see
    /// [`crate::api::sheet_name`]).
    pub sheet_name: String,
    /// Cut text over Excel's cell limit instead of failing.
    pub truncate_long_text: bool,
}

/// JSON Lines encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonlFormat {
    /// `numeric` values as JSON numbers rather than strings.
    pub numeric_as_number: bool,
}

/// CSV encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvFormat {
    /// Write a header line.
    pub header: bool,
    /// The field delimiter: one ASCII byte other than a quote, CR or LF.
    pub delimiter: u8,
    /// How NULL is written (no delimiter, quote, backslash, CR or LF in it).
    pub null_string: String,
    /// A UTF-8 byte order mark opens the report.
    pub bom: bool,
    /// Records end in `\r\n` rather than `\n`.
    pub crlf: bool,
    /// Cells and header names that a spreadsheet would read as a formula get a `'` first.
    pub escape_formulas: bool,
}

/// The first characters that make a spreadsheet read a cell as a formula (OWASP's list):
/// `=`, `+`, `-`, `@`, tab, carriage return.
pub const FORMULA_STARTS: [u8; 6] = [b'=', b'+', b'-', b'@', b'\t', b'\r'];

/// Where the report is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Destination {
    /// A file on a PersistentVolumeClaim (a local directory for `reportjob run`).
    Pvc {
        /// The claim's name (a DNS subdomain).
        claim: String,
        /// The report's path inside the volume.
        path: RelativePath,
    },
    /// An object in an S3-compatible bucket.
    Bucket(BucketTarget),
}

/// A bucket destination with its URL parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketTarget {
    /// The bucket's name.
    pub bucket: String,
    /// The object's key.
    pub key: RelativePath,
    /// The Secret holding the AWS credential keys.
    pub credentials_secret: Option<String>,
    /// An `http://` or `https://` endpoint of an S3-compatible store.
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: Option<String>,
    /// Path-style addressing; `None` lets the endpoint decide.
    pub path_style: Option<bool>,
    /// Lifetime of signed download links (one second to seven days).
    pub url_expiry: Duration,
    /// Assemble from server-side copies where possible.
    pub server_side_copy: bool,
}

impl BucketTarget {
    /// The URL as written: `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// A relative path of `/`-separated components, none empty, `.` or `..`, no NUL: it stays
/// inside the directory (or bucket) it is joined to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelativePath(String);

impl RelativePath {
    /// Parses `path`, saying what is wrong with it.
    pub fn parse(path: &str) -> Result<RelativePath, String> {
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
        if path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(format!(
                "{path:?} must not contain empty, `.` or `..` components"
            ));
        }
        Ok(RelativePath(path.to_string()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The validated `spec.worker`.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// Container image; `None` is the controller's default.
    pub image: Option<String>,
    /// Compute resources of each stage pod.
    pub resources: Option<ResourceRequirements>,
    /// Retries of a chunk after a transient failure (at most 100).
    pub retries_per_chunk: u32,
    /// Deadline of the chunk Job as a whole.
    pub active_deadline: Option<Duration>,
    /// How long a stage may go without a running pod (default 600 s, at most a day).
    pub start_timeout: Duration,
    /// Service account of the stage pods.
    pub service_account_name: Option<String>,
    /// Keep all chunk pods on one node.
    pub same_node: bool,
    /// Restarts of the export under a new snapshot after one is lost (at most 10).
    pub snapshot_restarts: u32,
    /// Cluster settings of the stage pods, checked.
    pub pod: PodSettings,
}
