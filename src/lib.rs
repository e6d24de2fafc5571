//! reportjob: plan, export and assemble large Postgres reports in chunks.
//!
//! The resources, their validation into a typed [`api::ValidSpec`], the plan, the staging
//! layout and the stage protocol are the `reportjob-core` crate, which has no I/O clients;
//! they are re-exported here under their own names. This crate does the reading and
//! writing: the source database ([`source`]), the stores ([`storage`]), the [`formats`],
//! the pipeline, the [`controller`] and the [`cli`]. The pipeline has three stages, each
//! usable alone (as the controller runs them in pods) or together ([`run_local`], behind
//! `reportjob run`): [`pipeline::StageContext::plan_once`] cuts the key range into chunks,
//! [`pipeline::StageContext::export_chunk`] writes one chunk as a part in the spec's
//! format, and [`pipeline::StageContext::assemble`] joins the parts into the report.

/// The core's modules, under the paths the engine, the operator and the tests use.
pub use reportjob_core::{api, ident, names, plan, schedule, split, sql, stage_protocol};

pub mod cli;
pub mod controller;
pub mod csv_encode;
pub mod error;
pub mod export;
pub mod formats;
pub mod net_guard;
pub mod notify;
pub mod pipeline;
pub mod run_local;
pub mod snapshot;
pub mod source;
pub mod staging;
pub mod storage;

/// Picks the TLS crypto provider for the whole process. Two are compiled in (the database
/// driver's and the object store client's), and rustls refuses to guess between them.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Cleanup that must finish before the process exits, such as aborting the multipart upload
/// of an export that was cancelled: `Drop` cannot await, so it hands the work to this tracker,
/// and the command line waits for it before exiting.
pub fn cleanup_tasks() -> &'static tokio_util::task::TaskTracker {
    static TRACKER: std::sync::LazyLock<tokio_util::task::TaskTracker> =
        std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);
    &TRACKER
}
