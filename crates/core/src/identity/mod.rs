//! What identifies a spec, in one place and by one technique: the SHA-256 of canonical JSON
//! (keys sorted, as `serde_json` writes its maps). Three questions are asked of it, each over
//! its own part of the spec:
//!
//! - [`spec_hash`]: which fields are frozen once planning starts (the controller reports a
//!   later change to them as ignored);
//! - [`RunIdentity`]: which staged data a local run may resume (the frozen fields but those
//!   that only say how the work is carried out);
//! - [`source_digest`]: which plan belongs to which source, over the parsed source (names
//!   folded as Postgres folds them, SQL as regenerated from its parse tree), so that two
//!   spellings of one query share a plan.
//!
//! The values are persisted (in ReportJob status, Job annotations, `plan.json` and local
//! staging paths), so a field added to the spec after the first release is left out while it
//! holds its default: one list, [`spec::later_fields`], for the spec's digests, and serde's
//! `skip_serializing_if` for the source digest's one later field.

mod source;
mod spec;

pub use source::source_digest;
pub use spec::{RunIdentity, spec_hash};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The SHA-256 of `value` written as JSON.
fn sha256_json(value: &impl Serialize) -> [u8; 32] {
    // Strings, numbers, options, maps and sequences always serialize.
    let bytes = serde_json::to_vec(value).expect("an identity's JSON serializes");
    Sha256::digest(&bytes).into()
}
