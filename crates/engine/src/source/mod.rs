//! The Postgres source: read-only sessions, resolving a spec to SQL, and key statistics.

pub mod load;
pub mod resolve;
pub mod session;
pub mod slots;
pub mod statement;
pub mod stats;
pub mod value_limit;

pub use resolve::{Resolved, resolve};
pub use session::{Database, ReadSession, SessionSetup};
