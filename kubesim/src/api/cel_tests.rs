//! Unit tests of CEL rule evaluation (kubesim/src/api/cel.rs).

use super::*;
use serde_json::json;

fn spec_schema(rules: Value) -> Value {
    json!({"type":"object","properties":{"spec":{"type":"object","properties":{
        "source":{"type":"object","x-kubernetes-validations": rules,
            "properties":{"table":{"type":"string"},"query":{"type":"string"},
                          "columns":{"type":"array","items":{"type":"string"}}}},
        "n":{"type":"integer"}}}}})
}

#[test]
fn exactly_one_of_rejects_both_and_neither() {
    let s = spec_schema(
        json!([{"rule":"has(self.table) != has(self.query)","message":"exactly one of table and query"}]),
    );
    let ok = json!({"spec":{"source":{"table":"t"}}});
    assert!(validate(&s, &ok, None).causes.is_empty());
    let both = json!({"spec":{"source":{"table":"t","query":"select 1"}}});
    let out = validate(&s, &both, None);
    assert_eq!(
        out.causes,
        vec![(
            "FieldValueInvalid".to_string(),
            "spec.source".to_string(),
            "Invalid value: \"object\": exactly one of table and query".to_string()
        )]
    );
    let neither = json!({"spec":{"source":{}}});
    assert_eq!(validate(&s, &neither, None).causes.len(), 1);
}

#[test]
fn default_message_names_the_rule_and_reason_sets_the_type() {
    let s = spec_schema(
        json!([{"rule":"!has(self.columns) || has(self.table)","reason":"FieldValueForbidden","fieldPath":".columns"}]),
    );
    let bad = json!({"spec":{"source":{"query":"q","columns":["a"]}}});
    let out = validate(&s, &bad, None);
    assert_eq!(
        out.causes,
        vec![(
            "FieldValueForbidden".to_string(),
            "spec.source.columns".to_string(),
            "Forbidden: failed rule: !has(self.columns) || has(self.table)".to_string()
        )]
    );
}

#[test]
fn transition_rules_run_only_with_an_old_value() {
    let s = spec_schema(json!([{"rule":"self == oldSelf","message":"immutable"}]));
    let a = json!({"spec":{"source":{"table":"a"}}});
    let b = json!({"spec":{"source":{"table":"b"}}});
    assert!(
        validate(&s, &b, None).causes.is_empty(),
        "create skips transition rules"
    );
    assert!(validate(&s, &a, Some(&a)).causes.is_empty());
    let out = validate(&s, &b, Some(&a));
    assert_eq!(out.causes[0].1, "spec.source");
    assert_eq!(out.causes[0].2, "Invalid value: \"object\": immutable");
    // No old value at that node (the old object lacked spec.source): skipped.
    assert!(
        validate(&s, &b, Some(&json!({"spec":{}})))
            .causes
            .is_empty()
    );
}

#[test]
fn optional_old_self_runs_on_create_with_an_optional() {
    let s = spec_schema(
        json!([{"rule":"!oldSelf.hasValue() || oldSelf.value().table == self.table","optionalOldSelf":true,"message":"table is fixed"}]),
    );
    let a = json!({"spec":{"source":{"table":"a"}}});
    let b = json!({"spec":{"source":{"table":"b"}}});
    assert!(validate(&s, &b, None).causes.is_empty());
    let out = validate(&s, &b, Some(&a));
    assert_eq!(out.causes.len(), 1, "{out:?}");
    // A rule that fails only when oldSelf is absent proves it ran on create.
    let s2 = spec_schema(json!([{"rule":"oldSelf.hasValue()","optionalOldSelf":true}]));
    assert_eq!(
        validate(&s2, &b, None).causes[0].2,
        "Invalid value: \"object\": failed rule: oldSelf.hasValue()"
    );
}

#[test]
fn message_expression_wins_and_falls_back_to_message() {
    let s = spec_schema(
        json!([{"rule":"self.table.size() <= 3","message":"short","messageExpression":"'table ' + self.table + ' is longer than 3'"}]),
    );
    let out = validate(&s, &json!({"spec":{"source":{"table":"abcd"}}}), None);
    assert_eq!(
        out.causes[0].2,
        "Invalid value: \"object\": table abcd is longer than 3"
    );
    let s = spec_schema(
        json!([{"rule":"self.table.size() <= 3","message":"short","messageExpression":"self.nope"}]),
    );
    let out = validate(&s, &json!({"spec":{"source":{"table":"abcd"}}}), None);
    assert_eq!(out.causes[0].2, "Invalid value: \"object\": short");
}

#[test]
fn kubernetes_string_and_list_functions() {
    for (rule, ok) in [
        ("self.table.lowerAscii() == 'orders'", true),
        ("self.table.split('_').size() == 1", true),
        ("self.table.indexOf('d') == 2", true),
        ("self.columns.isSorted()", true),
        ("[3, 1].isSorted()", false),
        ("[1, 2, 3].sum() == 6", true),
        ("self.columns.all(c, c.matches('^[a-z]+$'))", true),
        ("self.columns.exists(c, c == 'z')", false),
        ("'abc123'.find('[0-9]+') == '123'", true),
        ("self.columns.join(',') == 'a,b'", true),
        ("self.table.trim().upperAscii() == 'ORDERS'", true),
    ] {
        let s = spec_schema(json!([{ "rule": rule }]));
        let v = json!({"spec":{"source":{"table":"Orders","columns":["a","b"]}}});
        let out = validate(&s, &v, None);
        assert_eq!(out.causes.is_empty(), ok, "{rule}: {:?}", out.causes);
    }
}

#[test]
fn evaluation_errors_are_reported_at_the_node() {
    let s = spec_schema(json!([{"rule":"self.query.size() > 0"}]));
    let out = validate(&s, &json!({"spec":{"source":{"table":"t"}}}), None);
    assert_eq!(out.causes.len(), 1);
    assert!(
        out.causes[0].2.contains("no such key")
            && out.causes[0]
                .2
                .ends_with("evaluating rule: self.query.size() > 0"),
        "{:?}",
        out.causes
    );
}

#[test]
fn unchanged_values_ratchet_to_warnings() {
    let s = spec_schema(json!([{"rule":"has(self.table)","message":"needs table"}]));
    let old = json!({"spec":{"source":{"query":"q"},"n":1}});
    let new = json!({"spec":{"source":{"query":"q"},"n":2}});
    let out = validate(&s, &new, Some(&old));
    assert!(out.causes.is_empty());
    assert_eq!(
        out.warnings,
        vec!["spec.source: Invalid value: \"object\": needs table".to_string()]
    );
    let changed = json!({"spec":{"source":{"query":"r"}}});
    assert_eq!(validate(&s, &changed, Some(&old)).causes.len(), 1);
}

#[test]
fn list_map_items_correlate_by_key_and_root_rules_see_metadata() {
    let s = json!({"type":"object","x-kubernetes-validations":[{"rule":"self.metadata.name.startsWith('r')"}],
        "properties":{"items":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["k"],
        "items":{"type":"object","properties":{"k":{"type":"string"},"v":{"type":"integer"}},
            "x-kubernetes-validations":[{"rule":"self.v >= oldSelf.v","message":"v may not decrease"}]}}}});
    let old = json!({"metadata":{"name":"r1"},"items":[{"k":"a","v":2},{"k":"b","v":5}]});
    let new =
        json!({"metadata":{"name":"r1"},"items":[{"k":"b","v":4},{"k":"a","v":3},{"k":"c","v":0}]});
    let out = validate(&s, &new, Some(&old));
    assert_eq!(out.causes.len(), 1, "{out:?}");
    assert_eq!(out.causes[0].1, "items[0]");
    let bad = json!({"metadata":{"name":"x"}});
    assert_eq!(validate(&s, &bad, None).causes[0].1, "<root>");
}

#[test]
fn crd_rules_must_compile() {
    let s = spec_schema(
        json!([{"rule":"self.table ==","message":"m"},{"rule":"has(self.table)","optionalOldSelf":true}]),
    );
    let errs = crd_rule_errors(&s, "spec.versions[0].schema.openAPIV3Schema");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(
        errs[0].1,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[source].x-kubernetes-validations[0].rule"
    );
    assert_eq!(
        errs[1].1,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[source].x-kubernetes-validations[1].optionalOldSelf"
    );
}

#[test]
fn schema_type_errors_block_the_rules_as_upstream() {
    let s = spec_schema(json!([{"rule":"has(self.table)"}]));
    let v = json!({"spec":{"source":{"query":"q"}}});
    let mut causes = vec![(
        "FieldValueInvalid".to_string(),
        "spec.n".to_string(),
        "Invalid value: \"string\": spec.n in body must be of type integer: \"string\"".to_string(),
    )];
    admit(&s, &v, None, false, &mut causes);
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[1].1, "<nil>");
    assert!(
        causes[1]
            .2
            .contains("some validation rules were not checked")
    );
    let mut causes = vec![];
    admit(&s, &v, None, false, &mut causes);
    assert_eq!(causes[0].1, "spec.source");
}

#[test]
fn a_status_write_is_checked_as_the_old_object_with_the_new_status() {
    let s = spec_schema(json!([{"rule":"self == oldSelf","message":"immutable"}]));
    let old = json!({"spec":{"source":{"table":"a"}}});
    // The body of a /status write may carry a stale spec; the status strategy ignores it.
    let body = json!({"spec":{"source":{"table":"b"}},"status":{"x":1}});
    let mut causes = vec![];
    admit(&s, &body, Some(&old), true, &mut causes);
    assert!(causes.is_empty(), "{causes:?}");
    admit(&s, &body, Some(&old), false, &mut causes);
    assert_eq!(causes.len(), 1);
}
