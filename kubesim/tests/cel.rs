//! CEL `x-kubernetes-validations` over HTTP with real kubectl: each behaviour (plain rules,
//! `messageExpression`, `reason`/`fieldPath`, transition rules, `optionalOldSelf`, ratcheting, rule
//! compilation on CRD create) with a rule that rejects, and the message kubectl prints for it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use kubesim::{Cluster, ClusterConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

async fn kubectl(kc: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .output()
        .await
        .expect("kubectl must be on PATH; these tests do not skip without it")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Env {
    cluster: Cluster,
    kc: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    /// `kubectl apply -f` of `obj` (JSON is YAML); the whole output and whether it succeeded.
    async fn apply(&self, obj: &Value) -> (bool, String) {
        let f = self.dir.path().join("obj.json");
        std::fs::write(&f, obj.to_string()).unwrap();
        let o = kubectl(&self.kc, &["apply", "-f", f.to_str().unwrap()]).await;
        (o.status.success(), text(&o))
    }

    async fn apply_ok(&self, obj: &Value) -> String {
        let (ok, out) = self.apply(obj).await;
        assert!(ok, "apply of {obj} failed: {out}");
        out
    }

    async fn apply_err(&self, obj: &Value) -> String {
        let (ok, out) = self.apply(obj).await;
        assert!(!ok, "apply of {obj} succeeded: {out}");
        out
    }
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterConfig {
        data_dir: Some(dir.path().join("data")),
        run_pods: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();
    Env { cluster, kc, dir }
}

/// A CRD `Widget` (group `cel.example.com`) whose `spec.source` carries `rules`.
fn crd(rules: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.cel.example.com"},
        "spec": {
            "group": "cel.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "source": {
                            "type": "object",
                            "x-kubernetes-validations": rules,
                            "properties": {
                                "table": {"type": "string"},
                                "query": {"type": "string"},
                                "columns": {"type": "array", "items": {"type": "string"}}
                            }
                        }
                    }}
                }}}
            }]
        }
    })
}

fn widget(name: &str, source: Value) -> Value {
    json!({"apiVersion": "cel.example.com/v1", "kind": "Widget", "metadata": {"name": name},
           "spec": {"size": 1, "source": source}})
}

async fn with_rules(rules: Value) -> Env {
    let env = start().await;
    env.apply_ok(&crd(rules)).await;
    env
}

#[tokio::test]
async fn a_false_rule_rejects_create_with_upstreams_message() {
    let env = with_rules(json!([
        {"rule": "has(self.table) != has(self.query)", "message": "exactly one of table and query must be set"}
    ]))
    .await;
    let out = env
        .apply_err(&widget("both", json!({"table": "t", "query": "select 1"})))
        .await;
    assert!(
        out.contains(r#"The Widget "both" is invalid: spec.source: Invalid value: "object": exactly one of table and query must be set"#),
        "{out}"
    );
    env.apply_err(&widget("neither", json!({}))).await;
    env.apply_ok(&widget("one", json!({"table": "t"}))).await;
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn invalid_status_carries_details_causes() {
    let env = with_rules(json!([
        {"rule": "has(self.table) != has(self.query)", "message": "exactly one of table and query must be set"}
    ]))
    .await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/apis/cel.example.com/v1/namespaces/default/widgets",
            env.cluster.url()
        ))
        .json(&widget("both", json!({"table": "t", "query": "q"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        r#"Widget.cel.example.com "both" is invalid: spec.source: Invalid value: "object": exactly one of table and query must be set"#
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec.source",
                "message": "Invalid value: \"object\": exactly one of table and query must be set"}])
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn reason_and_field_path_shape_the_cause() {
    let env = with_rules(json!([
        {"rule": "!has(self.columns) || has(self.table)", "message": "columns need a table",
         "reason": "FieldValueForbidden", "fieldPath": ".columns"},
        {"rule": "!has(self.query) || self.query.lowerAscii().startsWith('select')",
         "reason": "FieldValueRequired", "fieldPath": ".query", "message": "a SELECT"}
    ]))
    .await;
    let out = env
        .apply_err(&widget("w", json!({"query": "SELECT 1", "columns": ["a"]})))
        .await;
    assert!(
        out.contains(
            r#"The Widget "w" is invalid: spec.source.columns: Forbidden: columns need a table"#
        ),
        "{out}"
    );
    let out = env
        .apply_err(&widget("w", json!({"query": "delete from t"})))
        .await;
    assert!(
        out.contains(r#"The Widget "w" is invalid: spec.source.query: Required value: a SELECT"#),
        "{out}"
    );
    env.apply_ok(&widget("w", json!({"query": "Select 1"})))
        .await;
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn message_expression_and_the_default_message() {
    let env = with_rules(json!([
        {"rule": "!has(self.columns) || self.columns.size() <= 2",
         "messageExpression": "'at most 2 columns, got ' + string(self.columns.size())"},
        {"rule": "!has(self.table) || self.table.matches('^[a-z_]+$')"}
    ]))
    .await;
    let out = env
        .apply_err(&widget(
            "w",
            json!({"table": "t", "columns": ["a", "b", "c"]}),
        ))
        .await;
    assert!(
        out.contains(r#"spec.source: Invalid value: "object": at most 2 columns, got 3"#),
        "{out}"
    );
    let out = env.apply_err(&widget("w", json!({"table": "T-1"}))).await;
    assert!(
        out.contains(r#"The Widget "w" is invalid: spec.source: Invalid value: "object": failed rule: !has(self.table) || self.table.matches('^[a-z_]+$')"#),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn transition_rule_rejects_a_change_but_not_the_create() {
    let env = with_rules(json!([
        {"rule": "self == oldSelf", "message": "spec.source cannot change once created; create a new Widget"}
    ]))
    .await;
    env.apply_ok(&widget("w", json!({"table": "a"}))).await;
    let out = env.apply_err(&widget("w", json!({"table": "b"}))).await;
    assert!(
        out.contains(r#"The Widget "w" is invalid: spec.source: Invalid value: "object": spec.source cannot change once created; create a new Widget"#),
        "{out}"
    );
    // Other fields still change; the source is the same.
    let mut w = widget("w", json!({"table": "a"}));
    w["spec"]["size"] = json!(5);
    env.apply_ok(&w).await;
    let o = kubectl(
        &env.kc,
        &[
            "get",
            "widget",
            "w",
            "-o",
            "jsonpath={.spec.size}/{.spec.source.table}",
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "5/a");
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn optional_old_self_runs_on_create_too() {
    // With optionalOldSelf the rule runs on create with oldSelf = optional.none().
    let env = with_rules(json!([
        {"rule": "oldSelf.hasValue() || !has(self.query)", "optionalOldSelf": true,
         "message": "a new Widget starts from a table"},
        {"rule": "!oldSelf.hasValue() || !has(oldSelf.value().table) || has(self.table)", "optionalOldSelf": true,
         "message": "a table source stays a table source"}
    ]))
    .await;
    let out = env.apply_err(&widget("w", json!({"query": "q"}))).await;
    assert!(
        out.contains(r#"spec.source: Invalid value: "object": a new Widget starts from a table"#),
        "{out}"
    );
    env.apply_ok(&widget("w", json!({"table": "t"}))).await;
    let out = env.apply_err(&widget("w", json!({"query": "q"}))).await;
    assert!(
        out.contains(
            r#"spec.source: Invalid value: "object": a table source stays a table source"#
        ),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn unchanged_invalid_values_ratchet_to_a_warning() {
    let env = with_rules(json!([])).await;
    env.apply_ok(&widget("w", json!({"table": "T-1"}))).await;
    // The rule arrives after the object: an update that leaves spec.source alone is allowed with
    // a warning, one that touches it is held to the rule.
    env.apply_ok(&crd(json!([
        {"rule": "self.table.matches('^[a-z_]+$')", "message": "lower-case table names"}
    ])))
    .await;
    let mut w = widget("w", json!({"table": "T-1"}));
    w["spec"]["size"] = json!(2);
    let out = env.apply_ok(&w).await;
    assert!(
        out.contains(r#"Warning: spec.source: Invalid value: "object": lower-case table names"#),
        "{out}"
    );
    let out = env.apply_err(&widget("w", json!({"table": "T-2"}))).await;
    assert!(
        out.contains(r#"The Widget "w" is invalid: spec.source: Invalid value: "object": lower-case table names"#),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn a_crd_whose_rule_does_not_compile_is_rejected() {
    let env = start().await;
    let (ok, out) = env.apply(&crd(json!([{"rule": "self.table =="}]))).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[source].x-kubernetes-validations[0].rule: Invalid value: \"self.table ==\": compilation failed"),
        "{out}"
    );
    env.cluster.shutdown().await;
}
