//! reportjob: plan, export and assemble large Postgres reports in chunks.
//!
//! Four crates, each depending only on those before it (the compiler keeps the layers):
//! `reportjob-core` (the resources, their validation into a typed [`api::ValidSpec`], the
//! plan, the staging layout and the stage protocol: data and decisions, no I/O clients),
//! `reportjob-engine` (the source database, the formats, the stores and the pipeline's
//! three stages), `reportjob-operator` (the controllers and notifications), and this one:
//! the [`cli`] behind the `reportjob` binary. Their modules are re-exported here under
//! their own names for the binary, the tests and the benchmarks.

pub use reportjob_core::{api, ident, names, plan, schedule, split, sql, stage_protocol};
pub use reportjob_engine::{
    cleanup_tasks, csv_encode, error, export, formats, install_crypto_provider, net_guard,
    pipeline, run_local, snapshot, source, staging, storage,
};
pub use reportjob_operator::{controller, notify};

pub mod cli;
