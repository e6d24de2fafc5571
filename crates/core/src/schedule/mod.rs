//! Recurring reports: the ReportSchedule resource ([`spec`], [`crd`]), its cron schedule in a
//! time zone ([`cron`]), which time is due ([`missed`]), the per-run placeholders
//! ([`placeholders`]) and the ReportJob of a run ([`template`]). All pure; the
//! controller's loop over them is in the operator (`reportjob::controller::schedule`).

pub mod crd;
pub mod cron;
pub mod missed;
pub mod placeholders;
pub mod spec;
pub mod template;

pub use spec::{ConcurrencyPolicy, ReportSchedule, ReportScheduleSpec, ReportScheduleStatus};
