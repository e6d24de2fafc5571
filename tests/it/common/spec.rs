//! A typed builder for ReportJob manifests, so tests say which fields they set instead of
//! hand-writing YAML whose indentation matters. It builds the manifest as JSON and prints it
//! as YAML (the form users write); `set` and `unset` reach any field, also wrong ones, for
//! the tests of refused specs.

use serde_json::{Map, Value, json};

/// A ReportJob manifest under construction.
#[derive(Clone, Debug)]
pub struct SpecBuilder {
    doc: Value,
}

impl SpecBuilder {
    /// A ReportJob named `test` exporting `table` (the defaults of the CLI tests: the
    /// connection Secret `db`, default chunking, three retries per chunk).
    pub fn table(table: &str) -> SpecBuilder {
        SpecBuilder::new().set("spec.source.table", table)
    }

    /// Like `table`, exporting the rows of a query.
    pub fn query(sql: &str) -> SpecBuilder {
        SpecBuilder::new().set("spec.source.query", sql)
    }

    fn new() -> SpecBuilder {
        SpecBuilder {
            doc: json!({
                "apiVersion": "reporting.dev/v1alpha1",
                "kind": "ReportJob",
                "metadata": {"name": "test"},
                "spec": {
                    "source": {"connectionSecretRef": {"name": "db"}},
                    "chunking": {},
                    "output": {},
                    "worker": {"retriesPerChunk": 3},
                },
            }),
        }
    }

    /// `metadata.name`.
    pub fn name(self, name: &str) -> SpecBuilder {
        self.set("metadata.name", name)
    }

    /// The key of the connection Secret (`connectionSecretRef.key`).
    pub fn secret_key(self, key: &str) -> SpecBuilder {
        self.set("spec.source.connectionSecretRef.key", key)
    }

    /// `spec.source.keyColumn`.
    pub fn key(self, column: &str) -> SpecBuilder {
        self.set("spec.source.keyColumn", column)
    }

    /// `spec.source.columns`.
    pub fn columns(self, columns: &[&str]) -> SpecBuilder {
        self.set("spec.source.columns", json!(columns))
    }

    /// `spec.source.where`.
    pub fn filter(self, condition: &str) -> SpecBuilder {
        self.set("spec.source.where", condition)
    }

    /// `spec.source.database.name`: the ReportDatabase whose budget the run shares.
    pub fn database(self, name: &str) -> SpecBuilder {
        self.set("spec.source.database.name", name)
    }

    /// `spec.source.consistency`.
    pub fn consistency(self, consistency: &str) -> SpecBuilder {
        self.set("spec.source.consistency", consistency)
    }

    /// `spec.chunking.chunkSize`.
    pub fn chunk_size(self, rows: i64) -> SpecBuilder {
        self.set("spec.chunking.chunkSize", rows)
    }

    /// `spec.chunking.parallelism`.
    pub fn parallelism(self, pods: i64) -> SpecBuilder {
        self.set("spec.chunking.parallelism", pods)
    }

    /// `spec.worker.retriesPerChunk`.
    pub fn retries(self, retries: i64) -> SpecBuilder {
        self.set("spec.worker.retriesPerChunk", retries)
    }

    /// Writes to the PVC `claim` at `path`.
    pub fn pvc(self, claim: &str, path: &str) -> SpecBuilder {
        self.set(
            "spec.output.destination",
            json!({"pvc": {"claimName": claim, "path": path}}),
        )
    }

    /// Writes to the bucket object `url` (`s3://bucket/key`); add `bucket_field`s for the rest.
    pub fn bucket(self, url: &str) -> SpecBuilder {
        self.set("spec.output.destination", json!({"bucket": {"url": url}}))
    }

    /// A field of the bucket destination (`endpoint`, `region`, `urlExpirySeconds`...).
    pub fn bucket_field(self, field: &str, value: impl Into<Value>) -> SpecBuilder {
        self.set(&format!("spec.output.destination.bucket.{field}"), value)
    }

    /// `spec.output.compression`: `none` or `gzip`.
    pub fn compression(self, compression: &str) -> SpecBuilder {
        self.set("spec.output.compression", compression)
    }

    /// `spec.output.csv.nullString`.
    pub fn null_string(self, null: &str) -> SpecBuilder {
        self.set("spec.output.csv.nullString", null)
    }

    /// `spec.notify`: a webhook whose URL is in the Secret `secret` (key `url`), with an
    /// optional format (`json`, `slack`) and condition (`always`, `failure`...).
    pub fn notify(self, secret: &str, format: Option<&str>, when: Option<&str>) -> SpecBuilder {
        let mut notify = json!({"webhookSecretRef": {"name": secret, "key": "url"}});
        if let Some(format) = format {
            notify["format"] = json!(format);
        }
        if let Some(when) = when {
            notify["when"] = json!(when);
        }
        self.set("spec.notify", notify)
    }

    /// Sets the field at a dotted path (`spec.chunking.chunkSize`), creating objects on the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> SpecBuilder {
        let mut node = &mut self.doc;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let map = node.as_object_mut().expect("an object");
            if parts.peek().is_none() {
                map.insert(part.to_string(), value.into());
                break;
            }
            node = map.entry(part).or_insert_with(|| json!({}));
        }
        self
    }

    /// Removes the field at a dotted path.
    pub fn unset(mut self, path: &str) -> SpecBuilder {
        let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
        let mut node = &mut self.doc;
        for part in parent.split('.').filter(|p| !p.is_empty()) {
            node = &mut node[part];
        }
        if let Some(map) = node.as_object_mut() {
            map.remove(last);
        }
        self
    }

    /// The manifest as a JSON value.
    pub fn build(&self) -> Value {
        self.doc.clone()
    }

    /// The manifest as YAML.
    pub fn build_yaml(&self) -> String {
        serde_saphyr::to_string(&self.doc).expect("a JSON value prints as YAML")
    }
}

#[test]
fn built_yaml_reads_back_as_the_manifest_and_as_a_valid_spec() {
    let spec = SpecBuilder::table("public.orders")
        .key("id")
        .columns(&["id", "T", "\"v\""])
        .filter("note = 'a: b' OR x IS NULL")
        .chunk_size(1000)
        .parallelism(2)
        .pvc("reports", "x.csv")
        .notify("hook", Some("slack"), None);
    let yaml = spec.build_yaml();
    let back: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, spec.build(), "{yaml}");
    let _: reportjob::api::ReportJob = serde_saphyr::from_str(&yaml).unwrap();
    let unset = spec.unset("spec.source.keyColumn").build();
    assert!(unset["spec"]["source"].get("keyColumn").is_none());
    assert_eq!(unset["spec"]["source"]["table"], "public.orders");
}

/// A ReportJob `name` exporting `table` by `id` to the PVC `reports` at `path`, in chunks
/// of 500 rows, three at a time, with the connection Secret `db` (key `url`) that `tenant`
/// creates.
pub fn report(name: &str, table: &str, path: &str) -> SpecBuilder {
    SpecBuilder::table(table)
        .name(name)
        .secret_key("url")
        .key("id")
        .chunk_size(500)
        .parallelism(3)
        .pvc("reports", path)
        .retries(2)
}
