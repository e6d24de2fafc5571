//! reportjob's core: the ReportJob and ReportSchedule resources and their validation into a
//! typed [`api::ValidSpec`], a run's identity, the plan and its maths, the staging layout,
//! split limits and the stage protocol. It is data and decisions only: this crate's
//! manifest has no database, object store, HTTP or Kubernetes client to reach for, so the
//! engine and the operator build on it and it never on them.

pub mod api;
pub mod database;
pub mod error_text;
pub mod ident;
pub mod identity;
pub mod names;
pub mod plan;
pub mod retry;
pub mod schedule;
pub mod snapshot;
pub mod split;
pub mod sql;
pub mod stage_protocol;
pub mod staging;
#[cfg(test)]
mod test_alloc;

/// Unit tests count what a piece of work allocates ([`test_alloc`]).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
