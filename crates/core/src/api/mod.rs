//! The ReportJob custom resource: spec, status, conditions, loading, validation into a
//! typed [`ValidSpec`].

pub mod conditions;
mod field_error;
pub mod load;
pub mod next_step;
pub mod pod_settings;
pub mod reference;
pub mod schema;
pub mod sheet_name;
pub mod spec;
pub(crate) mod status;
#[cfg(any(test, feature = "test-specs"))]
pub mod test_specs;
pub mod valid;
pub mod validate;

pub use spec::*;
pub use status::*;
pub use valid::ValidSpec;

/// API group of the ReportJob resource.
pub const GROUP: &str = "reporting.dev";
/// API version of the ReportJob resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "reporting.dev/v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "ReportJob";
