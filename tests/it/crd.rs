//! The committed CRD matches the generator, and its schema is structural (what a real
//! API server accepts): every node typed, value validations free of types and defaults; its
//! CEL rules refuse bad ReportJobs at admission on the real API server of the test binary's
//! cluster (`common::testbed`).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use reportjob::cli::CrdKind;
use serde_json::Value;

#[test]
fn committed_crd_matches_the_generator() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/reportjob.yaml"))
            .unwrap();
    let generated = reportjob::api::schema::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/reportjob.yaml is stale: run `cargo run -- crd > crds/reportjob.yaml`"
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .arg("crd")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        generated,
        "`reportjob crd` prints the generator's output"
    );
}

#[test]
fn the_committed_reportdatabase_crd_matches_the_generator_and_the_chart_copy() {
    let root = env!("CARGO_MANIFEST_DIR");
    let committed = std::fs::read_to_string(format!("{root}/crds/reportdatabase.yaml")).unwrap();
    let generated = CrdKind::ReportDatabase.yaml().unwrap();
    assert!(
        committed == generated,
        "crds/reportdatabase.yaml is stale: run `cargo run -- crd --database > crds/reportdatabase.yaml`"
    );
    let chart = std::fs::read_to_string(format!(
        "{root}/charts/reportjob/files/reportdatabase-crd.yaml"
    ))
    .unwrap();
    assert!(
        chart == committed,
        "run `cp crds/reportdatabase.yaml charts/reportjob/files/reportdatabase-crd.yaml`"
    );
    let crd = reportjob::database::crd::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("reportdatabases.reporting.dev")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        [
            "In Use",
            "Limit",
            "Waiting",
            "Snapshots",
            "Throttled",
            "Age"
        ]
    );
}

#[test]
fn the_committed_field_references_match_the_crds() {
    for (kind, file, flag) in [
        (CrdKind::ReportJob, "reportjob.md", ""),
        (CrdKind::ReportSchedule, "reportschedule.md", " --schedule"),
        (CrdKind::ReportDatabase, "reportdatabase.md", " --database"),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/reference")
            .join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = reportjob::cli::reference_markdown(kind);
        assert!(
            committed == generated,
            "docs/reference/{file} is stale: run `cargo run -- crd --markdown{flag} > docs/reference/{file}`"
        );
        // Every field of the spec has a row.
        assert!(generated.contains("| `spec.") || generated.contains("## `spec"));
    }
    let reportjob = reportjob::cli::reference_markdown(CrdKind::ReportJob);
    for field in [
        "`keyColumn`",
        "`maxValueBytes`",
        "`chunkSize`",
        "`destination`",
    ] {
        assert!(reportjob.contains(field), "{field}");
    }
    assert!(
        reportjob.contains("| `chunkSize` | integer |  | `100000` |"),
        "{reportjob}"
    );
}

#[test]
fn crd_names_and_columns_follow_the_contract() {
    let crd = reportjob::api::schema::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("reportjobs.reporting.dev")
    );
    assert_eq!(crd.spec.group, "reporting.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["rj".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["reports".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, i32)> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase".into(), 0),
            ("Chunks".into(), 0),
            ("Rows".into(), 0),
            ("Age".into(), 0),
            ("Output".into(), 1),
            ("Reason".into(), 1),
            ("Message".into(), 1)
        ]
    );
    let root =
        serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref()).unwrap();
    let description = root["description"].as_str().unwrap();
    assert!(
        description.starts_with("A ReportJob exports the rows of a Postgres table or query"),
        "kubectl explain reportjob shows: {description}"
    );
}

fn schema() -> Value {
    let crd = reportjob::api::schema::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Collects structural-schema violations, following the apiextensions rules.
fn check_structural(node: &Value, path: &str, in_value_validation: bool, errors: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        errors.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in ["$ref", "definitions", "$schema", "$defs"] {
        if map.contains_key(forbidden) {
            errors.push(format!("{path}: {forbidden} is not allowed"));
        }
    }
    if in_value_validation {
        for forbidden in [
            "type",
            "nullable",
            "default",
            "description",
            "additionalProperties",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-int-or-string",
        ] {
            if map.contains_key(forbidden) {
                errors.push(format!("{path}: {forbidden} inside allOf/anyOf/oneOf/not"));
            }
        }
    } else {
        let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !int_or_string && !preserve && !map.get("type").is_some_and(|t| t.is_string()) {
            errors.push(format!("{path}: missing type"));
        }
        if map.contains_key("properties") && map.contains_key("additionalProperties") {
            errors.push(format!(
                "{path}: properties and additionalProperties together"
            ));
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            check_structural(
                child,
                &format!("{path}.{name}"),
                in_value_validation,
                errors,
            );
        }
    }
    if let Some(items) = map.get("items") {
        check_structural(items, &format!("{path}[]"), in_value_validation, errors);
    }
    if let Some(add) = map.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(add, &format!("{path}{{}}"), in_value_validation, errors);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = map.get(key).and_then(Value::as_array) {
            for (i, branch) in branches.iter().enumerate() {
                check_structural(branch, &format!("{path}.{key}[{i}]"), true, errors);
                // Fields a branch names must exist in the node itself.
                for field in branch
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let known = map
                        .get("properties")
                        .and_then(|p| p.get(field.as_str().unwrap_or("")))
                        .is_some();
                    if !known {
                        errors.push(format!("{path}.{key}[{i}]: requires unknown field {field}"));
                    }
                }
            }
        }
    }
    if let Some(not) = map.get("not") {
        check_structural(not, &format!("{path}.not"), true, errors);
    }
}

#[test]
fn schema_is_structural() {
    let schema = schema();
    let mut errors = Vec::new();
    check_structural(&schema, "", false, &mut errors);
    assert!(
        errors.is_empty(),
        "non-structural schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn structural_check_catches_violations() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {"a": {"description": "untyped"}, "b": {"type": "object", "oneOf": [{"type": "string"}]}}
    });
    let mut errors = Vec::new();
    check_structural(&bad, "", false, &mut errors);
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn schema_expresses_the_validation_rules() {
    let schema = schema();
    let spec = &schema["properties"]["spec"];
    let required = |node: &Value| -> Vec<String> {
        node["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(required(spec), ["output", "source"]);
    let source = &spec["properties"]["source"];
    assert_eq!(required(source), ["connectionSecretRef", "keyColumn"]);
    let rules = |node: &Value| -> Vec<String> {
        node["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        rules(source),
        [
            "has(self.table) != has(self.query)",
            "!has(self.columns) || has(self.table)",
            "!has(self.where) || has(self.table)",
            "self == oldSelf"
        ]
    );
    let destination = &spec["properties"]["output"]["properties"]["destination"];
    assert_eq!(rules(destination), ["has(self.pvc) != has(self.bucket)"]);
    assert_eq!(rules(&spec["properties"]["chunking"]), ["self == oldSelf"]);
    let output_rules = rules(&spec["properties"]["output"]);
    assert_eq!(output_rules.len(), 9, "{output_rules:?}");
    assert!(output_rules[0].starts_with("!has(self.format) || self.format == 'csv'"));
    assert_eq!(
        output_rules[1],
        "!has(self.jsonl) || (has(self.format) && self.format == 'jsonl')"
    );
    assert_eq!(
        output_rules[2],
        "!has(self.parquet) || (has(self.format) && self.format == 'parquet')"
    );
    assert!(
        output_rules[3].contains("self.format != 'parquet'")
            && output_rules[3].contains("self.compression == 'none'")
    );
    assert_eq!(
        output_rules[4],
        "!has(self.xlsx) || (has(self.format) && self.format == 'xlsx')"
    );
    assert!(output_rules[5].contains("self.xlsx.sheetName.matches("));
    assert!(
        output_rules[6].contains("self.format != 'xlsx'")
            && output_rules[6].contains("self.compression == 'none'")
    );
    assert!(
        output_rules[7].contains("self.format != 'xlsx'")
            && output_rules[7].contains("self.timeZone == 'UTC'")
    );
    assert_eq!(output_rules[8], "self == oldSelf");
    for mutable in ["suspend", "ttlSecondsAfterFinished", "notify", "worker"] {
        assert!(
            spec["properties"][mutable]
                .get("x-kubernetes-validations")
                .is_none(),
            "{mutable} stays mutable"
        );
    }
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let chunking = &spec["properties"]["chunking"]["properties"];
    assert_eq!(chunking["chunkSize"]["minimum"], 1.0);
    assert_eq!(chunking["parallelism"]["maximum"], 1000.0);
    assert_eq!(
        spec["properties"]["output"]["properties"]["compression"]["enum"],
        serde_json::json!(["none", "gzip", "zstd"])
    );
    assert_eq!(
        spec["properties"]["worker"]["default"]["retriesPerChunk"], 3,
        "defaults agree with serde"
    );
    // Every spec field is documented (kubectl explain shows it).
    fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                if child
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.push(p.clone());
                }
                undocumented(child, &p, out);
            }
        }
        if let Some(items) = node.get("items") {
            undocumented(items, path, out);
        }
    }
    let mut missing = Vec::new();
    undocumented(spec, "spec", &mut missing);
    assert!(missing.is_empty(), "fields without docs: {missing:?}");
}

/// The CEL rules of the CRD (the generator's, which is the committed file), enforced at
/// admission by the real API server of the test binary's cluster, in a namespace of the test's
/// own: kubectl refuses each bad ReportJob with the server's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_refuses_what_the_cel_rules_forbid() {
    let mut env = crate::common::testbed::Env::start().await;
    let ns = env.namespace("crd-cel").await;
    let kc = env.kubeconfig_in(ns);
    let dir = env.dir.path();
    let kubectl = |args: Vec<String>| {
        let kc = kc.clone();
        async move {
            let o = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(&args)
                .output()
                .await
                .expect("kubectl must be on PATH");
            let out = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            (o.status.success(), out)
        }
    };
    let apply = |name: &str, source: Value, destination: Value| {
        let rj = serde_json::json!({
            "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
            "metadata": {"name": name},
            "spec": {"source": source, "output": {"destination": destination}}
        });
        let f = dir.join(format!("{name}.json"));
        std::fs::write(&f, rj.to_string()).unwrap();
        kubectl(vec!["apply".into(), "-f".into(), f.display().to_string()])
    };
    let pvc = serde_json::json!({"pvc": {"claimName": "reports", "path": "o.csv"}});
    let secret = serde_json::json!({"name": "db"});
    let source = |extra: Value| {
        let mut s = serde_json::json!({"connectionSecretRef": secret, "keyColumn": "id"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    let refused = [
        (
            apply("both", source(serde_json::json!({"table": "t", "query": "select 1 as id"})), pvc.clone()).await,
            r#"The ReportJob "both" is invalid: spec.source: Invalid value: exactly one of table and query must be set"#,
        ),
        (
            apply("cols", source(serde_json::json!({"query": "select 1 as id", "columns": ["id"]})), pvc.clone()).await,
            r#"The ReportJob "cols" is invalid: spec.source.columns: Forbidden: columns only applies to table; select the columns in the query"#,
        ),
        (
            apply("filter", source(serde_json::json!({"query": "select 1 as id", "where": "id > 1"})), pvc.clone()).await,
            r#"The ReportJob "filter" is invalid: spec.source.where: Forbidden: where only applies to table; filter in the query"#,
        ),
        (
            apply("two-places", source(serde_json::json!({"table": "t"})),
                serde_json::json!({"pvc": {"claimName": "reports", "path": "o.csv"}, "bucket": {"url": "s3://b/k.csv"}})).await,
            r#"The ReportJob "two-places" is invalid: spec.output.destination: Invalid value: exactly one of pvc and bucket must be set"#,
        ),
    ];
    let bad_pvc = |path: &str| serde_json::json!({"pvc": {"claimName": "reports", "path": path}});
    let bad_bucket = |url: &str| serde_json::json!({"bucket": {"url": url}});
    let table = || source(serde_json::json!({"table": "t"}));
    let refused_paths = [
        (
            apply("dots", table(), bad_pvc("reports/../etc/passwd")).await,
            r#"The ReportJob "dots" is invalid: spec.output.destination.pvc.path: Invalid value: "reports/../etc/passwd": must not contain . or .. components"#.to_string(),
        ),
        (
            apply("absolute", table(), bad_pvc("/etc/passwd")).await,
            format!(r#"The ReportJob "absolute" is invalid: spec.output.destination.pvc.path: Invalid value: "/etc/passwd": {}"#, reportjob::api::schema::PATH_SHAPE),
        ),
        (
            apply("gcs", table(), bad_bucket("gs://b/k.csv")).await,
            format!(r#"The ReportJob "gcs" is invalid: spec.output.destination.bucket.url: Invalid value: "gs://b/k.csv": {}"#, reportjob::api::schema::BUCKET_URL_SHAPE),
        ),
        (
            apply("no-key", table(), bad_bucket("s3://bucket/")).await,
            format!(r#"The ReportJob "no-key" is invalid: spec.output.destination.bucket.url: Invalid value: "s3://bucket/": {}"#, reportjob::api::schema::BUCKET_URL_SHAPE),
        ),
        (
            apply("key-dots", table(), bad_bucket("s3://bucket/a/../k.csv")).await,
            r#"The ReportJob "key-dots" is invalid: spec.output.destination.bucket.url: Invalid value: "s3://bucket/a/../k.csv": its key must not contain . or .. components"#.to_string(),
        ),
    ];
    for ((ok, out), want) in refused_paths {
        assert!(!ok && out.contains(&want), "want {want:?}, got: {out}");
    }
    // What the rules accept: nested relative paths, dotted names, a bucket key with folders.
    for (name, destination) in [
        ("nested", bad_pvc("a/b.c/report..csv")),
        ("in-bucket", bad_bucket("s3://my.bucket/daily/2024/r.csv")),
    ] {
        let (ok, out) = apply(name, table(), destination).await;
        assert!(ok, "{name}: {out}");
    }
    for ((ok, out), want) in refused {
        assert!(!ok && out.contains(want), "want {want:?}, got: {out}");
    }
    // The source is fixed once created; the rest of the spec may change.
    let (ok, out) = apply(
        "orders",
        source(serde_json::json!({"table": "t"})),
        pvc.clone(),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = apply(
        "orders",
        source(serde_json::json!({"table": "u"})),
        pvc.clone(),
    )
    .await;
    assert!(
        !ok && out.contains(&format!(
            r#"The ReportJob "orders" is invalid: spec.source: Invalid value: {}"#,
            reportjob::api::schema::SOURCE_IMMUTABLE
        )),
        "{out}"
    );
    // The output and the chunking are fixed too.
    let moved = serde_json::json!({"pvc": {"claimName": "reports", "path": "elsewhere.csv"}});
    let (ok, out) = apply("orders", source(serde_json::json!({"table": "t"})), moved).await;
    assert!(
        !ok && out.contains(&format!(
            r#"The ReportJob "orders" is invalid: spec.output: Invalid value: {}"#,
            reportjob::api::schema::OUTPUT_IMMUTABLE
        )),
        "{out}"
    );
    let patch = |body: Value| {
        kubectl(vec![
            "patch".into(),
            "reportjob".into(),
            "orders".into(),
            "--type=merge".into(),
            "-p".into(),
            body.to_string(),
        ])
    };
    let (ok, out) = patch(serde_json::json!({"spec": {"chunking": {"chunkSize": 5}}})).await;
    assert!(
        !ok && out.contains(&format!(
            r#"The ReportJob "orders" is invalid: spec.chunking: Invalid value: {}"#,
            reportjob::api::schema::CHUNKING_IMMUTABLE
        )),
        "{out}"
    );
    // suspend, ttlSecondsAfterFinished and notify stay mutable.
    let (ok, out) = patch(serde_json::json!({"spec": {
        "suspend": true,
        "ttlSecondsAfterFinished": 60,
        "notify": {"webhookSecretRef": {"name": "hooks"}, "when": "failure"},
    }}))
    .await;
    assert!(
        ok && out.contains("reportjob.reporting.dev/orders patched"),
        "{out}"
    );
    let (ok, out) = patch(serde_json::json!({"spec": {"suspend": false, "notify": null}})).await;
    assert!(
        ok && out.contains("reportjob.reporting.dev/orders patched"),
        "{out}"
    );
}

#[test]
fn the_schedule_schema_is_structural() {
    let crd = reportjob::schedule::crd::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    check_structural(&schema, "", false, &mut errors);
    assert!(
        errors.is_empty(),
        "non-structural ReportSchedule schema:\n{}",
        errors.join("\n")
    );
}

/// `kubectl get rs` must keep meaning ReplicaSets: the short names of both CRDs are unique
/// among every resource the real API server serves (its built-in kinds and ours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_names_collide_with_nothing_the_api_server_serves() {
    let env = crate::common::testbed::Env::start().await;
    let out = env.kubectl(&["api-resources", "--no-headers", "-o", "wide"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut owners: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // NAME SHORTNAMES APIVERSION NAMESPACED KIND ...: SHORTNAMES is left out when empty,
        // so it is the second field only when the third is an API version.
        if fields.len() > 3 && fields[2].contains('/') || fields.get(2) == Some(&"v1") {
            for short in fields[1].split(',') {
                owners
                    .entry(short.to_string())
                    .or_default()
                    .push(fields[0].to_string());
            }
        }
    }
    for (short, name) in [("rj", "reportjobs"), ("rsched", "reportschedules")] {
        assert_eq!(
            owners.get(short).cloned().unwrap_or_default(),
            [name],
            "short name {short:?}"
        );
    }
    assert_eq!(
        owners["rs"],
        ["replicasets"],
        "the built-ins' short names are read"
    );
}
