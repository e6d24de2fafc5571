//! reportjob: plan, export and assemble large Postgres reports in chunks.
//!
//! Four crates (the compiler keeps the layers): `reportjob-core` (the resources, their
//! validation into a typed [`api::ValidSpec`], the plan, the staging layout and the stage
//! protocol: data and decisions, no I/O clients); on it, side by side, `reportjob-engine`
//! (the source database, the formats, the stores, the pipeline's three stages and the
//! completion webhooks, which pods send; no Kubernetes) and `reportjob-operator` (the
//! controllers; no database, store or HTTP client); and on all three this one, the
//! [`cli`] behind the `reportjob` binary, which runs as the controller and as every stage. Their modules are re-exported here under
//! their own names for the binary, the tests and the benchmarks.

pub use reportjob_core::{api, database, ident, names, plan, schedule, split, sql, stage_protocol};
pub use reportjob_engine::{
    cleanup_tasks, csv_encode, error, formats, install_crypto_provider, net_guard, notify,
    pipeline, run_local, snapshot, source, staging, storage,
};
pub use reportjob_operator::controller;

pub mod cli;
