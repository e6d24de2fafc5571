//! The one error type of validation: a field of the spec and what is wrong with it. Its own
//! file, so that the parts of the spec that validate themselves (pod settings) and the
//! validation that calls them both read it without importing each other.

use std::fmt;

use serde::Serialize;

/// A problem with one field of a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field, as a path like `spec.chunking.chunkSize`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error about `field`.
    pub fn new(field: &str, message: &str) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
