//! The generated CRD: schema rules the derive cannot express, and the YAML `reportjob crd` prints.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::json;

use super::ReportJob;

/// The message of the transition rule that keeps `spec.source` as created.
pub const SOURCE_IMMUTABLE: &str = "spec.source cannot change once created; create a new ReportJob";
/// The message of the transition rule that keeps `spec.chunking` as created.
pub const CHUNKING_IMMUTABLE: &str =
    "spec.chunking cannot change once created; create a new ReportJob";
/// The message of the transition rule that keeps `spec.output` as created.
pub const OUTPUT_IMMUTABLE: &str = "spec.output cannot change once created; create a new ReportJob";
/// The message of the rule on a relative path's shape (`pvc.path`).
pub const PATH_SHAPE: &str =
    "must be a relative path of non-empty components (no leading, trailing or double /)";
/// The message of the rule against `.` and `..` components.
pub const PATH_DOTS: &str = "must not contain . or .. components";
/// The message of the rule on the shape of `bucket.url`.
pub const BUCKET_URL_SHAPE: &str =
    "must be s3://bucket/key with a bucket name without spaces and a relative key";

/// Schema transform of `spec.source`: CEL rules a real API server enforces at admission
/// (`kubectl apply` refuses the object): exactly one of `table` and `query`; `columns` and
/// `where` only with `table`; the source never changes after creation (a transition rule; the
/// controller would otherwise go on with the planned spec and record `SpecChangeIgnored`).
/// `validate.rs` checks the same (and more) again: clusters without CEL, and `reportjob run`.
pub fn source_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([
            {"rule": "has(self.table) != has(self.query)",
             "message": "exactly one of table and query must be set"},
            {"rule": "!has(self.columns) || has(self.table)",
             "message": "columns only applies to table; select the columns in the query",
             "fieldPath": ".columns", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.where) || has(self.table)",
             "message": "where only applies to table; filter in the query",
             "fieldPath": ".where", "reason": "FieldValueForbidden"},
            {"rule": "self == oldSelf", "message": SOURCE_IMMUTABLE},
        ]),
    );
}

/// Schema transform of `spec.chunking`: fixed once created (the plan was cut with it).
pub fn chunking_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([{"rule": "self == oldSelf", "message": CHUNKING_IMMUTABLE}]),
    );
}

/// The message of the rule that keeps CSV options to format `csv`.
pub const CSV_ONLY: &str = "csv options are only for format csv";
/// The message of the rule that keeps `jsonl` options to format `jsonl`.
pub const JSONL_ONLY: &str = "jsonl options are only for format jsonl";
/// The message of the rule that keeps `parquet` options to format `parquet`.
pub const PARQUET_ONLY: &str = "parquet options are only for format parquet";
/// The message of the rule that keeps `compression` to the byte-stream formats.
pub const PARQUET_COMPRESSION: &str = "compression is only for formats csv and jsonl; parquet compresses its pages (parquet.compression)";

/// The message of the rule that keeps `xlsx` options to format `xlsx`.
pub const XLSX_ONLY: &str = "xlsx options are only for format xlsx";
/// The message of the rule on Excel's sheet-name characters.
pub const XLSX_SHEET_NAME: &str =
    "a sheet name holds none of [ ] : * ? / \\ and does not start or end with '";
/// The message of the rule that refuses compression for format `xlsx`.
pub const XLSX_COMPRESSION: &str =
    "format xlsx takes no compression (a workbook is a zip archive already)";
/// The message of the rule that keeps `timeZone` at UTC for format `xlsx`.
pub const XLSX_TIME_ZONE: &str =
    "format xlsx writes timestamptz values in UTC (Excel dates carry no zone)";

/// Schema transform of `spec.output`: each format's option block only with that format
/// (the CSV block, defaulted by the server, only at its defaults); fixed once created (the
/// run writes where and how it was planned to; a new destination is a new ReportJob).
pub fn output_rules(schema: &mut schemars::Schema) {
    let csv_at_defaults = "(!has(self.csv.header) || self.csv.header) \
        && (!has(self.csv.delimiter) || self.csv.delimiter == ',') \
        && (!has(self.csv.nullString) || self.csv.nullString == '') \
        && (!has(self.csv.bom) || !self.csv.bom) \
        && (!has(self.csv.lineEnding) || self.csv.lineEnding == 'lf')";
    rules(
        schema,
        json!([
            {"rule": format!("!has(self.format) || self.format == 'csv' || !has(self.csv) || ({csv_at_defaults})"),
             "message": CSV_ONLY, "fieldPath": ".csv", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.jsonl) || (has(self.format) && self.format == 'jsonl')",
             "message": JSONL_ONLY, "fieldPath": ".jsonl", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.parquet) || (has(self.format) && self.format == 'parquet')",
             "message": PARQUET_ONLY, "fieldPath": ".parquet", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.format) || self.format != 'parquet' || !has(self.compression) || self.compression == 'none'",
             "message": PARQUET_COMPRESSION, "fieldPath": ".compression", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.xlsx) || (has(self.format) && self.format == 'xlsx')",
             "message": XLSX_ONLY, "fieldPath": ".xlsx", "reason": "FieldValueForbidden"},
            {"rule": r#"!has(self.xlsx) || !has(self.xlsx.sheetName) || (!self.xlsx.sheetName.matches('[\\[\\]:*?/\\\\]') && !self.xlsx.sheetName.startsWith("'") && !self.xlsx.sheetName.endsWith("'"))"#,
             "message": XLSX_SHEET_NAME, "fieldPath": ".xlsx.sheetName", "reason": "FieldValueInvalid"},
            {"rule": "!has(self.format) || self.format != 'xlsx' || !has(self.compression) || self.compression == 'none'",
             "message": XLSX_COMPRESSION, "fieldPath": ".compression", "reason": "FieldValueForbidden"},
            {"rule": "!has(self.format) || self.format != 'xlsx' || !has(self.timeZone) || self.timeZone == 'UTC'",
             "message": XLSX_TIME_ZONE, "fieldPath": ".timeZone", "reason": "FieldValueForbidden"},
            {"rule": "self == oldSelf", "message": OUTPUT_IMMUTABLE},
        ]),
    );
}

/// What `spec.output.split` without a limit is told.
pub const SPLIT_LIMIT: &str = "set maxRows, maxBytes or both (or leave split out for one file)";

/// Schema transform of `spec.output.split`: at least one limit.
pub fn split_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([{"rule": "has(self.maxRows) || has(self.maxBytes)", "message": SPLIT_LIMIT}]),
    );
}

/// Schema transform of `pvc.path`: what [`RelativePath`](super::valid::RelativePath) accepts
/// (the NUL byte aside, which JSON strings of a manifest rarely carry and `validate.rs` refuses).
pub fn path_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([
            {"rule": "self.matches('^[^/]+(/[^/]+)*$')", "message": PATH_SHAPE},
            {"rule": "!self.matches('(^|/)[.][.]?(/|$)')", "message": PATH_DOTS},
        ]),
    );
}

/// Schema transform of `bucket.url`: `s3://bucket/key` as
/// [`parse_bucket_url`](super::validate::parse_bucket_url) accepts it.
pub fn bucket_url_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([
            {"rule": "self.matches('^s3://[^/[:space:][:cntrl:]]+/[^/]+(/[^/]+)*$')",
             "message": BUCKET_URL_SHAPE},
            {"rule": "!self.matches('^s3://[^/]*/(.*/)?[.][.]?(/.*)?$')",
             "message": format!("its key {PATH_DOTS}")},
        ]),
    );
}

/// Schema transform of `spec.output.destination`: exactly one of `pvc` and `bucket`.
pub fn destination_rules(schema: &mut schemars::Schema) {
    rules(
        schema,
        json!([{"rule": "has(self.pvc) != has(self.bucket)",
                "message": "exactly one of pvc and bucket must be set"}]),
    );
}

/// Sets the node's `x-kubernetes-validations` (CEL rules evaluated with `self` bound to it).
fn rules(schema: &mut schemars::Schema, rules: serde_json::Value) {
    schema.insert("x-kubernetes-validations".to_string(), rules);
}

/// The CustomResourceDefinition of ReportJob.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = ReportJob::crd();
    name_rule(&mut crd, crate::names::MAX_REPORTJOB_NAME, &NAME_TOO_LONG);
    super::reference::polished(crd)
}

/// The message of the rule on the length of a ReportJob's name.
pub static NAME_TOO_LONG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "metadata.name must be at most {} characters: the controller's Job and pod names add \
         13 (-chunks- and a chunk index) and Kubernetes allows 63",
        crate::names::MAX_REPORTJOB_NAME
    )
});

/// Adds a root rule to every version of `crd` (the root is the only place a rule may read
/// `metadata.name`): the name has at most `max` characters.
pub fn name_rule(crd: &mut CustomResourceDefinition, max: usize, message: &str) {
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let rule = serde_json::from_value(json!({
                "rule": format!("self.metadata.name.size() <= {max}"),
                "message": message,
            }));
            if let Ok(rule) = rule {
                root.x_kubernetes_validations
                    .get_or_insert_with(Vec::new)
                    .push(rule);
            }
        }
    }
}

/// The CRD as the YAML document committed in `crds/reportjob.yaml`.
pub fn crd_yaml() -> Result<String, String> {
    let body = serde_saphyr::to_string(&crd())
        .map_err(|e| format!("cannot write the CRD as YAML: {e}"))?;
    Ok(format!(
        "# Generated by `reportjob crd`; do not edit. A test checks it against the generator.\n---\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The words YAML 1.1 reads as booleans or null (kubectl and many YAML libraries still do).
    const YAML_11_WORDS: [&str; 10] = [
        "on", "off", "yes", "no", "y", "n", "true", "false", "null", "~",
    ];

    /// Every property name under `node`, as a dotted path.
    fn property_paths(node: &Value, path: &str, out: &mut Vec<(String, String)>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                out.push((name.clone(), p.clone()));
                property_paths(child, &p, out);
            }
        }
        if let Some(items) = node.get("items") {
            property_paths(items, &format!("{path}[]"), out);
        }
        if let Some(add) = node.get("additionalProperties").filter(|a| a.is_object()) {
            property_paths(add, &format!("{path}{{}}"), out);
        }
    }

    fn yaml_11_words(names: &[(String, String)]) -> Vec<String> {
        names
            .iter()
            .filter(|(name, _)| YAML_11_WORDS.iter().any(|w| name.eq_ignore_ascii_case(w)))
            .map(|(_, path)| path.clone())
            .collect()
    }

    #[test]
    fn no_property_name_is_a_yaml_11_boolean_or_null() {
        let crd = serde_json::to_value(crd()).unwrap_or_default();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut names = Vec::new();
        property_paths(schema, "", &mut names);
        assert!(names.len() > 100, "walked {} properties", names.len());
        assert!(names.iter().any(|(_, p)| p == ".spec.notify.when"));
        assert_eq!(yaml_11_words(&names), Vec::<String>::new());
    }

    #[test]
    fn the_yaml_word_check_catches_each_word_in_any_case() {
        let names: Vec<(String, String)> = ["On", "OFF", "yes", "N", "True", "null", "~", "when"]
            .iter()
            .map(|n| (n.to_string(), format!(".{n}")))
            .collect();
        assert_eq!(
            yaml_11_words(&names),
            [".On", ".OFF", ".yes", ".N", ".True", ".null", ".~"]
        );
    }
}
