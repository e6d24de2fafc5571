//! The spec's two digests: the frozen fields' hash the controller records at planning, and
//! the run identity of a local run (the frozen fields but how the work is carried out).

use serde_json::{Value, json};

use crate::api::spec::{
    Consistency, LineEnding, ReportJobSpec, default_snapshot_max_seconds,
    default_snapshot_restarts, default_time_zone,
};

/// Fields added after the first release whose serialization does not leave them out at
/// their default, with that default: left out of the digests while they hold it, so the
/// digest of a spec that does not use them is what an older version computed (a run in
/// flight across an upgrade is not taken for an edited one, and a local run resumes).
/// Later fields serialized only when set (`skip_serializing_if`) need no entry.
pub(super) fn later_fields() -> [(&'static [&'static str], Value); 6] {
    [
        (&["source", "consistency"], json!(Consistency::default())),
        (
            &["source", "snapshotMaxSeconds"],
            json!(default_snapshot_max_seconds()),
        ),
        (&["output", "timeZone"], json!(default_time_zone())),
        (&["output", "csv", "bom"], json!(false)),
        (
            &["output", "csv", "lineEnding"],
            json!(LineEnding::default()),
        ),
        (
            &["worker", "snapshotRestarts"],
            json!(default_snapshot_restarts()),
        ),
    ]
}

/// Fields that only say how the work is carried out: part of the frozen spec, not of the
/// run identity (changing them neither starts a new local run nor needs other staged data).
const EXECUTION_FIELDS: &[&[&str]] = &[
    &["worker"],
    &["chunking", "parallelism"],
    &["source", "snapshotMaxSeconds"],
    &["source", "database"],
    &["output", "deleteWithReportJob"],
    &["output", "maxValueBytes"],
    &["output", "split"],
    &["output", "destination", "bucket", "credentialsSecretRef"],
    &["output", "destination", "bucket", "urlExpirySeconds"],
    &["output", "destination", "bucket", "serverSideCopy"],
];

/// The spec fields frozen once planning starts, as canonical JSON: everything but
/// `suspend`, `ttlSecondsAfterFinished` and `notify` (which may change at any time), with
/// [`later_fields`] at their defaults left out.
fn frozen(spec: &ReportJobSpec) -> Value {
    let mut frozen = json!({
        "source": spec.source,
        "chunking": spec.chunking,
        "output": spec.output,
        "worker": spec.worker,
    });
    for (path, default) in later_fields() {
        remove(&mut frozen, path, |value| *value == default);
    }
    frozen
}

/// Removes the field at `path` when `drop` says so.
fn remove(value: &mut Value, path: &[&str], drop: impl Fn(&Value) -> bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut map = value;
    for key in parents {
        match map.get_mut(*key) {
            Some(child) => map = child,
            None => return,
        }
    }
    if let Some(map) = map.as_object_mut()
        && map.get(*last).is_some_and(&drop)
    {
        map.remove(*last);
    }
}

/// The hash the controller records when planning starts (`status.plan.specHash`, the Jobs'
/// `reporting.dev/spec-hash` annotation) to notice and report a change to a frozen field
/// after it: 16 hex digits. It covers `worker` and `parallelism` too (unlike
/// [`RunIdentity`]): the run goes on exactly as planned, and a change to them is reported.
pub fn spec_hash(spec: &ReportJobSpec) -> String {
    hex::encode(&super::sha256_json(&frozen(spec))[..8])
}

/// The identity of a run: the digest of the frozen fields but [`EXECUTION_FIELDS`], that is
/// of what shapes its staging data and report (the source but `snapshotMaxSeconds`,
/// chunking but `parallelism`, the output's format, options and destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunIdentity([u8; 32]);

impl RunIdentity {
    /// The identity of `spec`'s run.
    pub fn of(spec: &ReportJobSpec) -> RunIdentity {
        let mut shaping = frozen(spec);
        for path in EXECUTION_FIELDS {
            remove(&mut shaping, path, |_| true);
        }
        RunIdentity(super::sha256_json(&shaping))
    }

    /// The run id of `reportjob run`, where no cluster gives the run a uid: 12 hex digits,
    /// so running the same spec again finds (and resumes) the same staging data.
    pub fn local_run_id(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// The run id of a ReportJob in a cluster: from its uid (`rj-` and the uid's first 12 hex
    /// digits), so that a ReportJob deleted and created again under the same name starts a
    /// new run instead of resuming the old one's staging data. `run` when it has no uid.
    pub fn cluster_run_id(uid: Option<&str>) -> String {
        let short: String = uid
            .unwrap_or_default()
            .chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect();
        if short.is_empty() {
            "run".to_string()
        } else {
            format!("rj-{short}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::load_str;
    use sha2::Digest;

    use crate::api::test_specs::MINIMAL as SPEC;

    fn identity(yaml: &str) -> RunIdentity {
        RunIdentity::of(&load_str(yaml, "t").unwrap().spec)
    }

    #[test]
    fn what_shapes_the_output_changes_it_and_nothing_else_does() {
        let base = identity(SPEC);
        let shaping = [
            ("table: public.orders", "table: public.orders2"),
            ("keyColumn: id", "keyColumn: id\n    where: id > 1"),
            ("keyColumn: id", "keyColumn: id\n    columns: [id]"),
            ("keyColumn: id", "keyColumn: id\n  chunking: {chunkSize: 5}"),
            ("keyColumn: id", "keyColumn: id\n  chunking: {maxChunks: 5}"),
            ("path: orders.csv", "path: orders2.csv"),
            ("claimName: reports", "claimName: other"),
            (
                "    destination:",
                "    compression: gzip\n    destination:",
            ),
            (
                "    destination:",
                "    csv: {delimiter: ';'}\n    destination:",
            ),
            (
                "    destination:",
                "    csv: {header: false}\n    destination:",
            ),
            (
                "    destination:",
                "    compression: zstd\n    destination:",
            ),
            ("    destination:", "    csv: {bom: true}\n    destination:"),
            (
                "    destination:",
                "    csv: {lineEnding: crlf}\n    destination:",
            ),
            ("    destination:", "    format: jsonl\n    destination:"),
        ];
        for (from, to) in shaping {
            assert_ne!(identity(&SPEC.replace(from, to)), base, "{to}");
        }
        let not_shaping = [
            (
                "    destination:",
                "    maxValueBytes: 4096\n    destination:",
            ),
            (
                "    destination:",
                "    split: {maxRows: 10}\n    destination:",
            ),
            (
                "keyColumn: id",
                "keyColumn: id\n  chunking: {parallelism: 9}",
            ),
            (
                "keyColumn: id",
                "keyColumn: id\n  worker: {retriesPerChunk: 9}",
            ),
            ("keyColumn: id", "keyColumn: id\n  suspend: true"),
            (
                "keyColumn: id",
                "keyColumn: id\n  ttlSecondsAfterFinished: 5",
            ),
            (
                "path: orders.csv}",
                "path: orders.csv}\n    deleteWithReportJob: true",
            ),
        ];
        for (from, to) in not_shaping {
            assert_eq!(identity(&SPEC.replace(from, to)), base, "{to}");
        }
        // Later fields at their defaults leave an existing spec's identity alone.
        let defaults = "    csv: {bom: false, lineEnding: lf}\n    destination:";
        assert_eq!(identity(&SPEC.replace("    destination:", defaults)), base);
        let jsonl = "    format: jsonl\n    jsonl: {numericAsNumber: true}\n    destination:";
        assert_ne!(
            identity(&SPEC.replace("    destination:", jsonl)),
            identity(&SPEC.replace("    destination:", "    format: jsonl\n    destination:"))
        );
    }

    #[test]
    fn cluster_run_ids_come_from_the_uid() {
        assert_eq!(
            RunIdentity::cluster_run_id(Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")),
            "rj-0a1b2c3d4e5f"
        );
        assert_eq!(RunIdentity::cluster_run_id(None), "run");
        assert_eq!(RunIdentity::cluster_run_id(Some("")), "run");
    }

    #[test]
    fn the_hash_of_a_spec_that_uses_no_new_field_ignores_their_defaults() {
        let rj = crate::api::load::load_str(crate::api::test_specs::MINIMAL, "t").unwrap();
        let mut explicit = rj.spec.clone();
        explicit.source.consistency = crate::api::Consistency::Snapshot;
        assert_eq!(spec_hash(&rj.spec), spec_hash(&explicit));
        // What a controller without these fields hashed: the spec's JSON without them.
        let mut old = serde_json::json!({
            "source": rj.spec.source,
            "chunking": rj.spec.chunking,
            "output": rj.spec.output,
            "worker": rj.spec.worker,
        });
        for (part, field) in [
            ("source", "consistency"),
            ("source", "snapshotMaxSeconds"),
            ("output", "timeZone"),
            ("worker", "snapshotRestarts"),
        ] {
            assert!(
                old[part].as_object_mut().unwrap().remove(field).is_some(),
                "{field}"
            );
        }
        for field in ["bom", "lineEnding"] {
            assert!(
                old["output"]["csv"]
                    .as_object_mut()
                    .unwrap()
                    .remove(field)
                    .is_some(),
                "{field}"
            );
        }
        // `output.jsonl` is absent unless set: not in the JSON at all.
        assert!(old["output"].get("jsonl").is_none());
        // No other field joined the JSON of a spec that does not use it: a new field must
        // be left out at its default (here or by its serialization), else every ReportJob
        // in flight across an upgrade would be taken for an edited one.
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        };
        let frozen = serde_json::json!({
            "source": keys(&old["source"]),
            "chunking": keys(&old["chunking"]),
            "output": keys(&old["output"]),
            "csv": keys(&old["output"]["csv"]),
            "worker": keys(&old["worker"]),
        });
        assert_eq!(
            frozen,
            serde_json::json!({
                "source": "connectionSecretRef,keyColumn,statementTimeoutSeconds,table",
                "chunking": "chunkSize,maxChunks,parallelism",
                "output": "compression,csv,deleteWithReportJob,destination,format",
                "csv": "delimiter,header,nullString",
                "worker": "retriesPerChunk,sameNode",
            }),
            "the fields of the first release, and no other"
        );
        let digest = sha2::Sha256::digest(old.to_string().as_bytes());
        assert_eq!(spec_hash(&rj.spec), hex::encode(&digest[..8]));
        // A value other than the default still counts.
        let mut per_chunk = rj.spec.clone();
        per_chunk.source.consistency = crate::api::Consistency::PerChunk;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&per_chunk));
        let mut bom = rj.spec.clone();
        bom.output.csv.bom = true;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&bom));
        let mut crlf = rj.spec.clone();
        crlf.output.csv.line_ending = crate::api::LineEnding::Crlf;
        assert_ne!(spec_hash(&rj.spec), spec_hash(&crlf));
    }

    #[test]
    fn the_local_run_id_of_a_spec_is_pinned() {
        // Local staging paths are named by it: a change here makes every interrupted local
        // run start again instead of resuming. Change it only on purpose, with a CHANGELOG
        // line.
        assert_eq!(identity(SPEC).local_run_id(), "7b9e47e80890");
        let defaults = "    format: csv\n    csv: {bom: false, lineEnding: lf}\n    destination:";
        assert_eq!(
            identity(&SPEC.replace("    destination:", defaults)).local_run_id(),
            "7b9e47e80890"
        );
    }
}
