//! The run's database snapshot as data: its identifier (checked, since it is written into
//! `SET TRANSACTION SNAPSHOT`), the record the plan and the manifests keep, and what the
//! holder pod stages for a generation.

use serde::{Deserialize, Serialize};

/// A snapshot identifier as `pg_export_snapshot()` prints it: `0000000A-0000001B-1`
/// (Postgres 13 and later) or `0000000A-1` (earlier), upper-case hex and a decimal count.
/// Only such text is ever written into `SET TRANSACTION SNAPSHOT '...'`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    /// Parses an identifier read from the server or from staging (untrusted).
    pub fn parse(text: &str) -> std::result::Result<SnapshotId, String> {
        let parts: Vec<&str> = text.split('-').collect();
        let hex8 =
            |p: &str| p.len() == 8 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        let count = |p: &str| (1..=10).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        let ok = match parts.as_slice() {
            [a, b, n] => hex8(a) && hex8(b) && count(n),
            [a, n] => hex8(a) && count(n),
            _ => false,
        };
        if ok {
            Ok(SnapshotId(text.to_string()))
        } else {
            Err(format!(
                "{:?} is not a snapshot identifier (like 0000000A-0000001B-1)",
                text.chars().take(40).collect::<String>()
            ))
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The statement that imports this snapshot (the first of a transaction).
    pub fn import_statement(&self) -> String {
        // The identifier is only hex digits, digits and dashes (see `parse`).
        format!("SET TRANSACTION SNAPSHOT '{}'", self.0)
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        SnapshotId::parse(&text)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which snapshot a run reads, and when it was taken: recorded in the plan, in each part
/// manifest and in the report's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotRecord {
    /// The exported snapshot's identifier.
    pub id: SnapshotId,
    /// When it was taken (the server's clock, RFC 3339).
    pub taken_at: jiff::Timestamp,
}

/// Environment variable of the cluster's stage pods: the generation of the run's snapshot
/// (0, then one more per restart after a lost snapshot). Set, the plan, chunk and assemble
/// stages read the snapshot the `<name>-snapshot` pod staged for that generation.
pub const GENERATION_ENV: &str = "REPORTJOB_SNAPSHOT_GENERATION";

/// `snapshot.json` in the run's staging area: the snapshot the holder pod exported and
/// holds, and the generation it was taken for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedSnapshot {
    /// The restart it belongs to (0 for the first snapshot of a run).
    pub generation: u32,
    /// The snapshot.
    pub snapshot: SnapshotRecord,
}

#[cfg(test)]
mod tests {
    use super::SnapshotId;

    #[test]
    fn snapshot_ids_are_parsed_strictly() {
        for ok in [
            "00000003-0000001B-1",
            "0000000A-1",
            "00000003-00000002-4294967295",
        ] {
            assert_eq!(SnapshotId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "00000003-0000001b-1",
            "00000003-0000001B-",
            "00000003-0000001B-1'; DROP TABLE x; --",
            "0000003-0000001B-1",
            "00000003-0000001B-1-1",
        ] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SnapshotId::parse("0000000A-1").unwrap().import_statement(),
            "SET TRANSACTION SNAPSHOT '0000000A-1'"
        );
    }
}
