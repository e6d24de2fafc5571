//! Which plan belongs to which source: the digest of the fields of a spec's source that
//! decide which rows are exported, recorded in the plan and checked before it is reused.

use serde::Serialize;

use crate::api::valid::{Filter, Source, ValidSource};

/// Which fields of a spec's source shape the rows a plan selects, in their parsed form
/// (names folded as Postgres folds them, SQL as regenerated from its parse tree).
#[derive(Serialize)]
struct SourceFields<'a> {
    table: Option<String>,
    query: Option<&'a str>,
    columns: Option<&'a [String]>,
    #[serde(rename = "where")]
    where_: Option<&'a str>,
    key_column: &'a str,
    /// The bound values and declared types (left out when there are none, so the digest
    /// of a source without parameters is what it was before they existed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parameters: Vec<(&'a str, Option<&'static str>)>,
}

/// `sha256:<hex>` of the fields of `source` that decide which rows are exported.
pub fn source_digest(source: &ValidSource) -> String {
    let parameters: Vec<(&str, Option<&'static str>)> = source
        .parameters
        .iter()
        .map(|p| (p.value.as_str(), p.declared.map(|t| t.sql_name())))
        .collect();
    let mut identity = match &source.rows {
        Source::Table {
            name,
            columns,
            where_,
        } => SourceFields {
            table: Some(name.to_string()),
            query: None,
            columns: columns.as_deref(),
            where_: where_.as_ref().map(Filter::sql),
            key_column: &source.key_column,
            parameters: Vec::new(),
        },
        Source::Query { sql } => SourceFields {
            table: None,
            query: Some(sql.sql()),
            columns: None,
            where_: None,
            key_column: &source.key_column,
            parameters: Vec::new(),
        },
    };
    identity.parameters = parameters;
    format!("sha256:{}", hex::encode(super::sha256_json(&identity)))
}

#[cfg(test)]
mod tests {
    use super::source_digest;
    use crate::api::load::load_valid_str;

    fn source_of(lines: &str) -> crate::api::valid::ValidSource {
        let yaml = format!(
            "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata:\n  name: t\nspec:\n  source:\n    connectionSecretRef: {{name: db, key: url}}\n{lines}\n  output:\n    destination:\n      pvc: {{claimName: c, path: r.csv}}\n"
        );
        load_valid_str(&yaml, "t").expect("valid").spec.source
    }

    #[test]
    fn the_digest_is_over_what_postgres_reads_not_how_it_is_spelled() {
        let a = source_of("    table: Public.Orders\n    keyColumn: ID\n    where: 'amount>0'");
        let b =
            source_of("    table: public.orders\n    keyColumn: id\n    where: ' amount  >  0 '");
        assert_eq!(source_digest(&a), source_digest(&b));
        let c = source_of("    table: public.orders\n    keyColumn: id\n    where: 'amount>1'");
        assert_ne!(source_digest(&a), source_digest(&c));
        let d = source_of("    table: public.\"Orders\"\n    keyColumn: id\n    where: 'amount>0'");
        assert_ne!(source_digest(&a), source_digest(&d));
    }

    #[test]
    fn the_digest_of_a_source_is_pinned() {
        // Plans in staging record it, and a worker refuses a plan whose digest differs: a
        // change here fails every run in flight across an upgrade.
        let source = source_of("    table: public.orders\n    keyColumn: id");
        assert_eq!(
            source_digest(&source),
            "sha256:fb7707d566e4a00da2895f3278341d8c6a378277037c9452fb55f6e6e06343c4"
        );
    }
}
