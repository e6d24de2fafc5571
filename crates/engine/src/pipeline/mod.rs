//! The three stages every runner schedules, one file each: [`plan`] cuts the key range
//! into chunks and stages the plan; [`export`] streams one chunk into a part and its
//! manifest; [`assemble`] joins the parts into the report (concatenated, or copied into
//! a Parquet file or workbook by the format's assembler in `formats/`), and [`publish`] writes its manifest and hands out
//! a download link. The local runner (`run_local`) calls them in one process; in a cluster
//! each runs in its own pod. A chunk goes: `reportjob run` -> `run_local` ->
//! `pipeline/export.rs` -> `source/` (the session and the statement) -> `formats/` (the
//! bytes) -> `storage/` (the part file).

mod assemble;
mod export;
mod plan;
mod publish;

pub use assemble::Assembly;
pub use export::copy_statement;

use std::sync::Arc;

use bytes::Bytes;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::snapshot::SnapshotRecord;
use crate::source::{Database, SessionSetup};
use crate::staging::Layout;
use crate::storage::Storage;
use reportjob_core::api::Compression;
use reportjob_core::api::valid::{Encoding, ValidSpec};
use reportjob_core::plan::{PartFormat, PartKind};

/// A signed download link to the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadLink {
    /// The URL.
    pub url: String,
    /// When it stops working.
    pub expires_at: jiff::Timestamp,
}

/// Version of the plan document.
pub const PLAN_VERSION: u32 = 1;

/// Everything a stage needs: the validated spec, the database, the storage and the run's
/// layout.
#[derive(Clone)]
pub struct StageContext {
    /// The validated ReportJob spec.
    pub spec: ValidSpec,
    /// The database (a pool of read-only sessions).
    pub db: Database,
    /// Where staging data and the report go.
    pub storage: Arc<dyn Storage>,
    /// Keys of this run.
    pub layout: Layout,
    /// Fired to stop the run's exports cleanly (see [`StageContext::export_chunk`]).
    pub cancel: CancellationToken,
    /// The run's snapshot, which every session imports (`consistency: Snapshot`); `None`
    /// reads each session's own.
    pub snapshot: Option<SnapshotRecord>,
}

/// The part format a spec asks for.
pub fn part_format(spec: &ValidSpec) -> PartFormat {
    let compression = spec.output.compression;
    let mut format = PartFormat {
        header: false,
        gzip: compression == Compression::Gzip,
        zstd: compression == Compression::Zstd,
        ..PartFormat::plain_csv()
    };
    match &spec.output.encoding {
        Encoding::Csv(csv) => {
            format.delimiter = char::from(csv.delimiter);
            format.null_string = csv.null_string.clone();
            format.header = csv.header;
            format.bom = csv.bom;
            format.crlf = csv.crlf;
            format.escape_formulas = csv.escape_formulas;
        }
        Encoding::Jsonl(jsonl) => {
            format.kind = PartKind::Jsonl {
                numeric_as_number: jsonl.numeric_as_number,
            };
        }
        Encoding::Parquet(parquet) => {
            // Parquet compresses its pages itself (validation keeps `compression: none`).
            format.gzip = false;
            format.zstd = false;
            format.kind = PartKind::Parquet {
                row_group_rows: parquet.row_group_rows,
                compression: parquet.compression,
            };
        }
        Encoding::Xlsx(xlsx) => {
            format.kind = PartKind::Xlsx {
                truncate_long_text: xlsx.truncate_long_text,
            }
        }
    }
    format
}

/// `value` as pretty JSON, or an error naming `what` (never an empty document).
fn to_json(value: &impl serde::Serialize, what: &str) -> Result<Bytes> {
    serde_json::to_vec_pretty(value)
        .map(Bytes::from)
        .map_err(|e| Error::Encoding(format!("cannot serialize the {what}: {e}")))
}

impl StageContext {
    /// How this run's sessions are set up: the spec's timeout, time zone and parameter
    /// values, and the run's snapshot. `planning` also checks the time zone and reads an
    /// import failure as "this connection cannot share snapshots".
    pub fn session_setup(&self, planning: bool) -> SessionSetup {
        let source = &self.spec.source;
        SessionSetup {
            statement_timeout_seconds: i64::from(source.statement_timeout.seconds()),
            time_zone: self.spec.output.time_zone.as_str().to_string(),
            parameters: source.parameters.iter().map(|p| p.value.clone()).collect(),
            snapshot: self.snapshot.as_ref().map(|s| s.id.clone()),
            planning,
        }
    }
}
