//! reportjob's engine: reading the source database, encoding the formats, writing the
//! stores, and the three stages of a run. It knows nothing of Kubernetes: the operator
//! (`reportjob-operator`) schedules these stages in pods, `reportjob run` in one process.
//!
//! The pipeline has three stages, each usable alone or together ([`run_local`]):
//! [`pipeline::StageContext::plan_once`] cuts the key range into chunks,
//! [`pipeline::StageContext::export_chunk`] writes one chunk as a part in the spec's format,
//! and [`pipeline::StageContext::assemble`] joins the parts into the report. The data they
//! agree on (the spec, the plan, the staging layout, the stage protocol) is
//! `reportjob-core`'s.

pub mod csv_encode;
pub mod error;

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
