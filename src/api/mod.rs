//! The ReportJob custom resource: spec, status, conditions, loading and validation.

pub mod conditions;
pub mod load;
pub mod schema;
pub mod spec;
pub mod status;
pub mod validate;

pub use spec::*;
pub use status::*;

/// API group of the ReportJob resource.
pub const GROUP: &str = "reporting.dev";
/// API version of the ReportJob resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "reporting.dev/v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "ReportJob";
