//! Shared database budgets: the ReportDatabase resource ([`spec`], [`crd`]) a platform team
//! creates for a database many teams export from, and which namespaces it selects
//! ([`selector`]), and the throttle its chunk workers check ([`throttle`]). All pure; the controller admits chunks and snapshot runs against it
//! (`reportjob_operator::controller::database`).

pub mod crd;
pub mod selector;
pub mod spec;
pub mod throttle;

pub use spec::{
    NamespaceUsage, ReportDatabase, ReportDatabaseSpec, ReportDatabaseStatus, ThrottleSpec,
};
