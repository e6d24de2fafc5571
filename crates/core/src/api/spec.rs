//! The ReportJob spec: what to export, how to chunk it, where to write it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pod_settings::PodSettingsSpec;
use super::status::ReportJobStatus;

/// A ReportJob exports the rows of a Postgres table or query as one CSV, JSON Lines, Parquet
/// or Excel report, planned into key-range chunks that are exported in parallel by Jobs,
/// retried, and assembled into a single output on a PersistentVolumeClaim or in a bucket.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[allow(clippy::duplicated_attributes)] // several printcolumn(type_ = "string") entries
#[kube(
    group = "reporting.dev",
    version = "v1alpha1",
    kind = "ReportJob",
    namespaced,
    status = "ReportJobStatus",
    shortname = "rj",
    category = "reports",
    doc = "A ReportJob exports the rows of a Postgres table or query as one CSV, JSON Lines, Parquet or Excel report, in key-range chunks exported in parallel by Jobs and assembled on a PersistentVolumeClaim or in a bucket. spec.source, spec.chunking and spec.output are fixed once created; suspend, ttlSecondsAfterFinished and notify may change.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the ReportJob is in its lifecycle"
    ),
    printcolumn(
        name = "Chunks",
        type_ = "string",
        json_path = ".status.progress",
        description = "Chunks exported / chunks planned"
    ),
    printcolumn(
        name = "Rows",
        type_ = "integer",
        json_path = ".status.rows",
        description = "Rows exported so far"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Output",
        type_ = "string",
        json_path = ".status.output.location",
        priority = "1",
        description = "Where the assembled report is"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Complete\")].reason",
        priority = "1",
        description = "The reason of the Complete condition: the stage, or why it failed"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1",
        description = "The current state or the last error"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReportJobSpec {
    /// The Postgres rows to export: a table (optionally with columns and a filter) or a query.
    pub source: SourceSpec,
    /// How the key range is cut into chunks and how many chunks run at once.
    #[serde(default)]
    pub chunking: ChunkingSpec,
    /// The format of the report and where it is written.
    pub output: OutputSpec,
    /// The pods that run the plan, chunk and assemble stages.
    #[serde(default)]
    pub worker: WorkerSpec,
    /// Send a webhook when the report succeeds or fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// Pause the export: running chunk pods are stopped and no new ones start until this is
    /// cleared (`reportjob suspend` / `resume`). To end a run for good, `reportjob cancel`.
    #[serde(default)]
    pub suspend: bool,
    /// Delete the ReportJob this many seconds after it finished (succeeded, failed or
    /// cancelled). Unset keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// Where the rows come from. Exactly one of `table` and `query` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::source_rules)]
pub struct SourceSpec {
    /// The Secret key (in the ReportJob's namespace) holding a `postgres://` connection URL.
    /// `reportjob run` uses `--database-url` or `DATABASE_URL` instead.
    pub connection_secret_ref: SecretKeyRef,
    /// A table or view, as `table` or `schema.table` (SQL identifier syntax: unquoted names
    /// are folded to lower case, double-quoted names are taken as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub table: Option<String>,
    /// A SELECT query whose rows are exported. It is wrapped as a subquery, so the chunk
    /// range predicate on `keyColumn` is pushed down into it. At most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub query: Option<String>,
    /// Columns of `table` to export, in this order (identifier syntax). Default: all columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// A SQL boolean expression filtering the rows of `table` (only with `table`). At most
    /// 64 KiB.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub where_: Option<String>,
    /// The column whose value range is cut into chunks; rows are written in its order.
    /// Supported types: smallint, integer, bigint, numeric, date, timestamp, timestamptz,
    /// text, varchar and uuid. Rows where it is NULL are exported as a chunk of their own.
    #[schemars(length(min = 1))]
    pub key_column: String,
    /// Each read is cancelled by the server after this many seconds (at most one day).
    #[serde(default = "default_statement_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub statement_timeout_seconds: i64,
    /// Values bound to `$1`, `$2`... in `query` and `where`, in order. They are sent to the
    /// server as parameters, never written into the SQL text. `reportjob run --param` and
    /// `reportjob submit --param` replace the values (keeping each position's `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub parameters: Vec<ParameterSpec>,
    /// Which moment of the database the report shows. `Snapshot`: every chunk reads the one
    /// snapshot taken when the run starts, so the report is one consistent picture (the
    /// snapshot holds back vacuum's cleanup on that server while the run lasts). `PerChunk`:
    /// each chunk reads the data as it is when that chunk runs.
    #[serde(default)]
    pub consistency: Consistency,
    /// How long the run's snapshot may be held, in seconds (default 6 hours). A run that
    /// outlasts it loses its snapshot and is started again under a new one.
    #[serde(default = "default_snapshot_max_seconds")]
    #[schemars(range(min = 60, max = 604800))]
    pub snapshot_max_seconds: i64,
    /// The ReportDatabase whose budget this run shares with every ReportJob that names it
    /// (chunk pods exporting at once, snapshot sessions, fair between namespaces, paused
    /// while the database is busy). The platform team creates it; this namespace must be one
    /// it selects. Default: none (the run takes up to `parallelism` connections of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRef>,
}

/// A ReportDatabase, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRef {
    /// The ReportDatabase's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_statement_timeout() -> i64 {
    600
}

pub fn default_snapshot_max_seconds() -> i64 {
    6 * 3600
}

/// A value bound to one `$n` of `query` or `where`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSpec {
    /// The value, in the text form Postgres reads for its type (e.g. `2024-01-01`).
    pub value: String,
    /// Its type: text, varchar, smallint, integer, bigint, numeric, real, double precision,
    /// boolean, date, time, timestamp, timestamptz, interval, uuid or jsonb. Default: the
    /// type the server infers for `$n` from the SQL (which must be one of these).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// Which moment of the database the report shows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Consistency {
    /// One snapshot for the whole run: the report is one moment of the database.
    #[default]
    Snapshot,
    /// Each chunk reads its own snapshot (holds nothing back, but rows that change during
    /// the run may appear twice or not at all, and totals may match no moment).
    PerChunk,
}

/// A key of a Secret in the ReportJob's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".to_string()
}

/// A Secret in the ReportJob's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// How the key range is cut into chunks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::chunking_rules)]
pub struct ChunkingSpec {
    /// Target number of rows per chunk. The planner uses Postgres statistics or a sample,
    /// so chunks hold close to this many rows even when keys are sparse or clustered. When
    /// the count of chunks comes from statistics or a sample, it is rounded up to whole
    /// waves of `parallelism` chunks (within `maxChunks`), so that the last chunks end
    /// together.
    #[serde(default = "default_chunk_size")]
    #[schemars(range(min = 1))]
    pub chunk_size: i64,
    /// How many chunks are exported at the same time.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: i64,
    /// Upper bound on the number of chunks; chunks grow beyond `chunkSize` to stay under it.
    #[serde(default = "default_max_chunks")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_chunks: i64,
}

fn default_chunk_size() -> i64 {
    100_000
}
fn default_parallelism() -> i64 {
    4
}
fn default_max_chunks() -> i64 {
    10_000
}

impl Default for ChunkingSpec {
    fn default() -> Self {
        ChunkingSpec {
            chunk_size: default_chunk_size(),
            parallelism: default_parallelism(),
            max_chunks: default_max_chunks(),
        }
    }
}

/// The report's format and destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::output_rules)]
pub struct OutputSpec {
    /// File format of the report.
    #[serde(default)]
    pub format: OutputFormat,
    /// CSV options (only for format `csv`; left at their defaults otherwise).
    #[serde(default)]
    pub csv: CsvOptions,
    /// JSON Lines options (only for format `jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<JsonlOptions>,
    /// Parquet options (only for format `parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetOptions>,
    /// Excel workbook options (only for format `xlsx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlsx: Option<XlsxOptions>,
    /// Compression of the report. With `gzip` or `zstd` each chunk is compressed on its own
    /// (one gzip member or zstd frame per chunk) and the report is their concatenation, which
    /// every gzip or zstd reader reads as one stream.
    #[serde(default)]
    pub compression: Compression,
    /// Write the report as several files, `<name>-00001.<ext>`, `<name>-00002.<ext>`,
    /// ..., each complete on its own (a header, a valid Parquet file or workbook), cut at
    /// chunk boundaries; the manifest lists them all. Unset: one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSpec>,
    /// Where the report is written: exactly one of `pvc` and `bucket`.
    pub destination: DestinationSpec,
    /// Delete the report (and its manifest) when the ReportJob is deleted. By default the
    /// report outlives the ReportJob; staging data is always removed.
    #[serde(default)]
    pub delete_with_report_job: bool,
    /// The IANA time zone `timestamptz` values are written in (e.g. `Europe/Paris`); it
    /// must be in the server's `pg_timezone_names`. Dates and numbers are locale-independent.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// The largest value, in bytes, one cell of the report may take from the database (1 KiB
    /// to 1 GiB; 64 MiB by default). Text, varchar, bytea, json and xml values are measured
    /// exactly, other variable-width values (but numeric) by their stored size. A larger
    /// value fails its chunk with an error naming the column and the row's key before the
    /// server sends it: a worker holds one row at a time, so its memory limit must exceed a
    /// few times the widest row it exports.
    // Left out of the JSON at its default, so a spec that does not set it serializes (and
    // hashes, see the controller's `spec_hash`) as it did before the field existed.
    #[serde(
        default = "default_max_value_bytes",
        skip_serializing_if = "is_default_max_value_bytes"
    )]
    #[schemars(range(min = 1024, max = 1073741824))]
    pub max_value_bytes: i64,
}

pub fn default_time_zone() -> String {
    "UTC".to_string()
}

/// The default `output.maxValueBytes`: 64 MiB.
pub fn default_max_value_bytes() -> i64 {
    64 * 1024 * 1024
}

fn is_default_max_value_bytes(bytes: &i64) -> bool {
    *bytes == default_max_value_bytes()
}

/// How a report is split into files. A file is closed before the next chunk would take it
/// past a limit, so a file exceeds one only when a single chunk does: with `maxRows`,
/// chunks are planned at most nine tenths of it (`chunkSize` is lowered when larger), which
/// keeps them within it unless the keys are far more skewed than the planner saw. Set at
/// least one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::split_rules)]
pub struct SplitSpec {
    /// Most data rows in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<i64>,
    /// Most bytes in a file, counted as the chunks' exported bytes (for xlsx, their
    /// deflated sheet rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<i64>,
}

/// File format of the report.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// RFC 4180 CSV (`\n` line endings unless `csv.lineEnding: crlf`).
    #[default]
    Csv,
    /// JSON Lines: one JSON object per row, keys in column order.
    Jsonl,
    /// Apache Parquet: typed columns (see the type mapping in the reference); the report is
    /// one file whose row groups are the chunks' parts, copied without re-encoding. Pages
    /// are compressed by `parquet.compression` (`compression` stays `none`).
    Parquet,
    /// An Excel workbook (`.xlsx`): a bold header row, typed cells, sheets of at most
    /// 1,048,575 rows holding whole chunks. No compression (the workbook is a zip already);
    /// `timeZone` stays UTC.
    Xlsx,
}

/// Compression of the report.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain CSV.
    #[default]
    None,
    /// gzip (`.gz`), one member per chunk.
    Gzip,
    /// Zstandard (`.zst`), one frame per chunk.
    Zstd,
}

/// Line ending of CSV records.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    /// `\n`.
    #[default]
    Lf,
    /// `\r\n`, as RFC 4180 and Excel write it.
    Crlf,
}

/// JSON Lines options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonlOptions {
    /// Write `numeric` values as JSON numbers. By default they are strings, since many JSON
    /// readers parse numbers as doubles and would silently round them.
    #[serde(default)]
    pub numeric_as_number: bool,
}

/// Most rows in a Parquet row group by default.
pub const DEFAULT_ROW_GROUP_ROWS: i64 = 131_072;
/// Most rows in a Parquet row group that a spec may ask for.
pub const MAX_ROW_GROUP_ROWS: i64 = 16_777_216;

/// Parquet options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParquetOptions {
    /// Most rows in a row group (default 131072). A row group is also closed when its
    /// encoded size passes 128 MiB, and never spans two chunks: each chunk's rows end its
    /// last row group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16777216))]
    pub row_group_rows: Option<i64>,
    /// Compression of the column chunks' pages: `zstd` (default), `snappy` or `none`.
    #[serde(default)]
    pub compression: ParquetCompression,
}

/// Compression of Parquet pages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    /// Zstandard (level 1).
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// Uncompressed pages.
    None,
}

/// Excel workbook options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XlsxOptions {
    /// Name of the first sheet (later ones are `<name> (2)`, `<name> (3)`, ...): at most 31
    /// characters, none of `[ ] : * ? / \`, not starting or ending with `'`. By default the
    /// report's file name without its extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 31))]
    pub sheet_name: Option<String>,
    /// Cut text longer than Excel's 32,767-character cell limit to its first 32,767
    /// characters. By default such a value fails the report, naming the column and the
    /// row's key, and nothing is published.
    #[serde(default)]
    pub truncate_long_text: bool,
}

/// CSV options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsvOptions {
    /// Write a header line with the column names.
    #[serde(default = "default_true")]
    pub header: bool,
    /// The field delimiter: one ASCII character other than a quote, CR or LF.
    #[serde(default = "default_delimiter")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: String,
    /// How SQL NULL is written. The default, an empty unquoted field, keeps NULL apart from
    /// the empty string, which is written as `""`. A value equal to this string is quoted.
    #[serde(default)]
    pub null_string: String,
    /// Start the report with a UTF-8 byte order mark (once, before the header), so that
    /// Excel reads the file as UTF-8.
    #[serde(default)]
    pub bom: bool,
    /// Line ending of records: `lf` or `crlf` (Excel's). Line breaks inside quoted values
    /// are written as they are stored.
    #[serde(default)]
    pub line_ending: LineEnding,
    /// Guard against formula injection when the report is opened in a spreadsheet (OWASP's
    /// rule): a cell or header name that starts with `=`, `+`, `-`, `@`, a tab or a carriage
    /// return gets a single quote (`'`) in front, so that Excel, LibreOffice or Google Sheets
    /// show it as text rather than run it. This changes the bytes (a negative number `-5`
    /// becomes `'-5`); recommended for reports people open in spreadsheets. The NULL string
    /// may then not start with one of those characters.
    #[serde(default, skip_serializing_if = "is_false")]
    pub escape_formulas: bool,
}

fn default_true() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn default_delimiter() -> String {
    ",".to_string()
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: default_delimiter(),
            null_string: String::new(),
            bom: false,
            line_ending: LineEnding::Lf,
            escape_formulas: false,
        }
    }
}

/// Where the report is written: exactly one of `pvc` and `bucket`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::destination_rules)]
pub struct DestinationSpec {
    /// A file on a PersistentVolumeClaim in the ReportJob's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcDestination>,
    /// An object in an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketDestination>,
}

/// A file on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcDestination {
    /// Name of the PersistentVolumeClaim. Parallel chunk pods on several nodes need a
    /// ReadWriteMany volume; see `worker.sameNode` for ReadWriteOnce volumes.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path of the report inside the volume, relative, without `..`. Staging data goes
    /// to `<path>.parts/<run id>/` and the manifest to `<path>.manifest.json`.
    #[schemars(length(min = 1, max = 1024), transform = crate::api::schema::path_rules)]
    pub path: String,
}

/// An object in a bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketDestination {
    /// The object's URL, `s3://bucket/key`.
    #[schemars(length(min = 1, max = 2048), transform = crate::api::schema::bucket_url_rules)]
    pub url: String,
    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and optionally
    /// `AWS_SESSION_TOKEN`) keys, given to the stage pods as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Endpoint of an S3-compatible store (e.g. `http://minio.storage:9000`). Default: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Use path-style addressing (`endpoint/bucket/key`), as most S3-compatible stores need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Lifetime of the signed download link, in seconds (at most 7 days).
    #[serde(default = "default_url_expiry")]
    #[schemars(range(min = 1, max = 604800))]
    pub url_expiry_seconds: i64,
    /// Assemble the report from server-side copies of the parts (UploadPartCopy) when every
    /// part but the last is at least 5 MiB; otherwise, or when false, the parts' bytes are
    /// streamed through the assembler. Turn off for stores without UploadPartCopy.
    #[serde(default = "default_true")]
    pub server_side_copy: bool,
}

fn default_url_expiry() -> i64 {
    86_400
}

/// The pods that run the stages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image of the stage pods. Default: the controller's `--worker-image`; any
    /// other image must be on the controller's `--allowed-worker-images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Compute resources of each stage pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How many times a chunk is retried after a transient failure before the ReportJob fails.
    /// Permanent failures (bad SQL, missing column, permission denied) are never retried.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub retries_per_chunk: i64,
    /// Deadline for the chunk Job as a whole, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How long a stage may go without any pod running (pods that cannot be created, e.g.
    /// for a ResourceQuota, or cannot start, e.g. an image that cannot be pulled) before the
    /// ReportJob fails with `StartTimeout`, in seconds. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub start_timeout_seconds: Option<i64>,
    /// Service account of the stage pods (they need no API permissions and get no token).
    /// Only when the controller allows it (`--allow-service-account-override`); by default
    /// stage pods use the controller's `stagePods.serviceAccountName` or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Keep all chunk pods on one node, so a ReadWriteOnce volume can be shared by them.
    #[serde(default)]
    pub same_node: bool,
    /// How many times the export is started again under a new snapshot after the run's
    /// snapshot was lost (holder pod gone, database restarted, `snapshotMaxSeconds` passed)
    /// before the ReportJob fails with reason `SnapshotLost`.
    #[serde(default = "default_snapshot_restarts")]
    #[schemars(range(min = 0, max = 10))]
    pub snapshot_restarts: i64,
    /// Cluster settings of the stage pods (node selection, env, volumes...).
    #[serde(flatten)]
    pub pod: PodSettingsSpec,
}

fn default_retries() -> i64 {
    3
}

pub fn default_snapshot_restarts() -> i64 {
    2
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            image: None,
            resources: None,
            retries_per_chunk: default_retries(),
            active_deadline_seconds: None,
            start_timeout_seconds: None,
            service_account_name: None,
            same_node: false,
            snapshot_restarts: default_snapshot_restarts(),
            pod: PodSettingsSpec::default(),
        }
    }
}

/// A webhook sent when the report finishes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// The Secret key holding the webhook URL.
    pub webhook_secret_ref: SecretKeyRef,
    /// Body format: a CloudEvents-style JSON object, or a Slack-compatible `{"text": ...}`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Which outcomes are notified. (Not `on`: YAML 1.1 readers such as kubectl read that
    /// key as the boolean `true`.)
    #[serde(default)]
    pub when: NotifyWhen,
}

/// Body format of the webhook.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// CloudEvents-style JSON.
    #[default]
    Json,
    /// Slack-compatible `{"text": ...}`.
    Slack,
}

/// Which outcomes are notified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyWhen {
    /// Success and failure.
    #[default]
    Always,
    /// Only success.
    Success,
    /// Only failure.
    Failure,
}

impl NotifyWhen {
    /// Whether an outcome (success or failure) is notified.
    pub fn wants(self, succeeded: bool) -> bool {
        match self {
            NotifyWhen::Always => true,
            NotifyWhen::Success => succeeded,
            NotifyWhen::Failure => !succeeded,
        }
    }
}
