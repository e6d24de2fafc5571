//! The API server: store, admission, patches, watches and the HTTP layer.

pub mod admission;
pub mod apply;
pub mod cel;
pub mod cells;
pub mod discovery;
pub mod error;
pub mod faults;
pub mod limitrange;
pub mod meta;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod protoenc;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod watch;
