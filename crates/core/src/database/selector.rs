//! Whether a label selector selects a set of labels, as the API server's `labels.Selector`
//! reads a `metav1.LabelSelector` (matchLabels and matchExpressions, ANDed; `{}` selects
//! everything).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`; an error names a requirement the API
/// server would refuse (an unknown operator, values where none belong or none where some
/// must be), and such a selector selects nothing.
pub fn selects(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(value) {
            return Ok(false);
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let values = req.values.as_deref().unwrap_or_default();
        let has = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} needs values",
                    req.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} takes no values",
                    req.operator
                ));
            }
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            other => {
                return Err(format!(
                    "matchExpressions[{i}]: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn an_empty_selector_selects_every_namespace() {
        assert_eq!(selects(&LabelSelector::default(), &labels(&[])), Ok(true));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "sales")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["gold", "silver"]),
                expr("frozen", "DoesNotExist", &[]),
            ]),
        };
        let ok = labels(&[("team", "sales"), ("tier", "gold")]);
        assert_eq!(selects(&selector, &ok), Ok(true));
        let other_team = labels(&[("team", "ops"), ("tier", "gold")]);
        assert_eq!(selects(&selector, &other_team), Ok(false));
        let bronze = labels(&[("team", "sales"), ("tier", "bronze")]);
        assert_eq!(selects(&selector, &bronze), Ok(false));
        let frozen = labels(&[("team", "sales"), ("tier", "gold"), ("frozen", "")]);
        assert_eq!(selects(&selector, &frozen), Ok(false));
        let not_in = LabelSelector {
            match_expressions: Some(vec![
                expr("team", "NotIn", &["ops"]),
                expr("team", "Exists", &[]),
            ]),
            ..Default::default()
        };
        assert_eq!(selects(&not_in, &labels(&[("team", "sales")])), Ok(true));
        assert_eq!(selects(&not_in, &labels(&[("team", "ops")])), Ok(false));
        assert_eq!(selects(&not_in, &labels(&[])), Ok(false));
    }

    #[test]
    fn a_malformed_requirement_is_an_error_not_a_match() {
        for bad in [
            expr("a", "In", &[]),
            expr("a", "Exists", &["x"]),
            expr("a", "Like", &["x"]),
        ] {
            let selector = LabelSelector {
                match_expressions: Some(vec![bad]),
                ..Default::default()
            };
            assert!(selects(&selector, &labels(&[("a", "x")])).is_err());
        }
    }
}
