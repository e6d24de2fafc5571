//! What shapes a run: one digest over the spec fields that decide which rows a run exports,
//! how they are encoded and where they go. The local run id and the controller's spec hash
//! are both renderings of it.

use sha2::{Digest, Sha256};

use super::spec::{
    Compression, Consistency, LineEnding, OutputFormat, ParquetCompression, ReportJobSpec,
};

/// The identity of a run: a SHA-256 over the fields that shape its staging data and report
/// (`source` but `snapshotMaxSeconds`, `output.timeZone`, `chunking.chunkSize`, `chunking.maxChunks`, `output.format`, `output.csv`,
/// `output.compression` and `output.destination`'s claim, path, URL, endpoint, region and
/// addressing style).
///
/// Fields that only say how the work is carried out (`parallelism`, `worker`, bucket
/// credentials, link lifetime, server-side copy, `deleteWithReportJob`, `notify`,
/// `suspend`, `ttlSecondsAfterFinished`) are left out: changing them neither starts a new
/// local run (a re-run resumes) nor counts as a spec change in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunIdentity([u8; 32]);

impl RunIdentity {
    /// The identity of `spec`'s run. Each field is written with its name and length, so no
    /// two different specs write the same bytes.
    pub fn of(spec: &ReportJobSpec) -> RunIdentity {
        let mut c = Canonical(Sha256::new());
        let source = &spec.source;
        c.text(
            "source.connectionSecretRef.name",
            &source.connection_secret_ref.name,
        );
        c.text(
            "source.connectionSecretRef.key",
            &source.connection_secret_ref.key,
        );
        c.opt("source.table", source.table.as_deref());
        c.opt("source.query", source.query.as_deref());
        match &source.columns {
            Some(columns) => {
                c.number("source.columns", columns.len() as u64);
                for column in columns {
                    c.text("source.columns[]", column);
                }
            }
            None => c.absent("source.columns"),
        }
        c.opt("source.where", source.where_.as_deref());
        c.text("source.keyColumn", &source.key_column);
        c.signed(
            "source.statementTimeoutSeconds",
            source.statement_timeout_seconds,
        );
        // Written only when they differ from their defaults, so that the identity of a spec
        // that does not use them stays what it was before they existed.
        if !source.parameters.is_empty() {
            c.number("source.parameters", source.parameters.len() as u64);
            for p in &source.parameters {
                c.text("source.parameters[].value", &p.value);
                c.opt("source.parameters[].type", p.type_.as_deref());
            }
        }
        if source.consistency == Consistency::PerChunk {
            c.text("source.consistency", "PerChunk");
        }
        if spec.output.time_zone != "UTC" {
            c.text("output.timeZone", &spec.output.time_zone);
        }
        c.signed("chunking.chunkSize", spec.chunking.chunk_size);
        c.signed("chunking.maxChunks", spec.chunking.max_chunks);
        let output = &spec.output;
        c.text(
            "output.format",
            match output.format {
                OutputFormat::Csv => "csv",
                OutputFormat::Jsonl => "jsonl",
                OutputFormat::Parquet => "parquet",
                OutputFormat::Xlsx => "xlsx",
            },
        );
        c.flag("output.csv.header", output.csv.header);
        c.text("output.csv.delimiter", &output.csv.delimiter);
        c.text("output.csv.nullString", &output.csv.null_string);
        // Later fields, again only when they differ from their defaults.
        if output.csv.bom {
            c.flag("output.csv.bom", true);
        }
        if output.csv.line_ending == LineEnding::Crlf {
            c.text("output.csv.lineEnding", "crlf");
        }
        if output.csv.escape_formulas {
            c.flag("output.csv.escapeFormulas", true);
        }
        if let Some(jsonl) = &output.jsonl {
            c.flag("output.jsonl.numericAsNumber", jsonl.numeric_as_number);
        }
        if let Some(parquet) = &output.parquet {
            if let Some(rows) = parquet.row_group_rows {
                c.signed("output.parquet.rowGroupRows", rows);
            }
            c.text(
                "output.parquet.compression",
                match parquet.compression {
                    ParquetCompression::Zstd => "zstd",
                    ParquetCompression::Snappy => "snappy",
                    ParquetCompression::None => "none",
                },
            );
        }
        if let Some(xlsx) = &output.xlsx {
            c.opt("output.xlsx.sheetName", xlsx.sheet_name.as_deref());
            c.flag("output.xlsx.truncateLongText", xlsx.truncate_long_text);
        }
        c.text(
            "output.compression",
            match output.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            },
        );
        let destination = &output.destination;
        match &destination.pvc {
            Some(pvc) => {
                c.text("output.destination.pvc.claimName", &pvc.claim_name);
                c.text("output.destination.pvc.path", &pvc.path);
            }
            None => c.absent("output.destination.pvc"),
        }
        match &destination.bucket {
            Some(bucket) => {
                c.text("output.destination.bucket.url", &bucket.url);
                c.opt(
                    "output.destination.bucket.endpoint",
                    bucket.endpoint.as_deref(),
                );
                c.opt("output.destination.bucket.region", bucket.region.as_deref());
                match bucket.path_style {
                    Some(path_style) => c.flag("output.destination.bucket.pathStyle", path_style),
                    None => c.absent("output.destination.bucket.pathStyle"),
                }
            }
            None => c.absent("output.destination.bucket"),
        }
        RunIdentity(c.0.finalize().into())
    }

    /// The run id of `reportjob run`, where no cluster gives the run a uid: 12 hex digits,
    /// so running the same spec again finds (and resumes) the same staging data.
    pub fn local_run_id(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// The hash the controller records when planning starts (`status.plan.specHash`, the
    /// Jobs' `reporting.dev/spec-hash` annotation) to notice a spec changed after it: 16 hex
    /// digits.
    pub fn spec_hash(&self) -> String {
        hex::encode(&self.0[..8])
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

/// A hasher fed `name`, a tag and a length-prefixed value per field.
struct Canonical(Sha256);

impl Canonical {
    fn put(&mut self, name: &str, tag: u8, value: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update([tag]);
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
    }

    fn text(&mut self, name: &str, value: &str) {
        self.put(name, b's', value.as_bytes());
    }

    fn opt(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => self.text(name, value),
            None => self.absent(name),
        }
    }

    fn absent(&mut self, name: &str) {
        self.put(name, b'-', &[]);
    }

    fn number(&mut self, name: &str, value: u64) {
        self.put(name, b'n', &value.to_le_bytes());
    }

    fn signed(&mut self, name: &str, value: i64) {
        self.put(name, b'i', &value.to_le_bytes());
    }

    fn flag(&mut self, name: &str, value: bool) {
        self.put(name, b'b', &[u8::from(value)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::load_str;

    use crate::api::test_specs::MINIMAL as SPEC;

    fn identity(yaml: &str) -> RunIdentity {
        RunIdentity::of(&load_str(yaml, "t").unwrap().spec)
    }

    #[test]
    fn renderings_have_the_documented_shapes() {
        let id = identity(SPEC);
        assert_eq!(id.local_run_id().len(), 12);
        assert_eq!(id.spec_hash().len(), 16);
        assert!(id.spec_hash().starts_with(&id.local_run_id()));
        assert!(id.spec_hash().chars().all(|c| c.is_ascii_hexdigit()));
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
        // This round's fields at their defaults leave an existing spec's identity alone.
        let defaults = "    csv: {bom: false, lineEnding: lf}\n    destination:";
        assert_eq!(identity(&SPEC.replace("    destination:", defaults)), base);
        let jsonl = "    format: jsonl\n    jsonl: {numericAsNumber: true}\n    destination:";
        assert_ne!(
            identity(&SPEC.replace("    destination:", jsonl)),
            identity(&SPEC.replace("    destination:", "    format: jsonl\n    destination:"))
        );
    }

    #[test]
    fn the_identity_of_a_spec_that_uses_no_new_field_is_what_it_was() {
        // The digest of the minimal spec as the identity was computed before the later
        // output fields (format options, time zone, consistency) existed (recomputed outside Rust from the field list of that
        // version): a local run started then resumes its staging data after the upgrade.
        assert_eq!(identity(SPEC).spec_hash(), "2c41bfea86ac0506");
        let defaults = "    format: csv\n    csv: {bom: false, lineEnding: lf}\n    destination:";
        assert_eq!(
            identity(&SPEC.replace("    destination:", defaults)).spec_hash(),
            "2c41bfea86ac0506"
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
}
