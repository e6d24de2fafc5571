//! reportjob: plan, export and assemble large Postgres reports in chunks.
//!
//! A spec is validated once into a typed [`api::ValidSpec`] that every later step takes.
//! The pipeline has three stages, each usable alone (as the controller runs them in pods)
//! or together ([`run_local`], behind `reportjob run`): [`pipeline::StageContext::plan_once`]
//! cuts the key range into chunks, [`pipeline::StageContext::export_chunk`] writes one chunk
//! as a CSV part, and [`pipeline::StageContext::assemble`] joins the parts into the report.
//! Decisions are pure ([`plan`], [`api::validate`]); I/O lives in [`source`], [`storage`]
//! and the stage functions.

pub mod api;
pub mod cli;
pub mod controller;
pub mod csv_encode;
pub mod error;
pub mod export;
pub mod formats;
pub mod ident;
pub mod names;
pub mod net_guard;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod run_local;
pub mod schedule;
pub mod snapshot;
pub mod source;
pub mod split;
pub mod sql;
pub mod stage_protocol;
pub mod staging;
pub mod storage;
#[cfg(test)]
pub(crate) mod test_alloc;

/// Unit tests count what a piece of work allocates ([`test_alloc`]).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: test_alloc::Counting = test_alloc::Counting;

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
