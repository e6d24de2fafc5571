//! The statements a run sends, rebuilt from the validated spec each time they are needed:
//! identifiers parsed and quoted, `query` and `where` parsed with Postgres's grammar and
//! regenerated ([`crate::sql`]). A plan carries only names, types and key ranges.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::valid::{Filter, Source, ValidSource};
use crate::error::Error;
use crate::ident::Quoted;
use crate::plan::{ChunkRange, KeyType, PlannedSource};

/// The SQL pieces of a source, rebuilt from the validated spec (and the plan's names)
/// each time a statement is needed; never stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSql {
    /// The SELECT list: quoted columns (table mode) or `*` (query mode).
    pub select_list: String,
    /// The FROM item: a quoted relation (table mode) or `(<regenerated query>) AS rj_src`.
    pub from_sql: String,
    /// The regenerated `where` expression, or `true`.
    pub filter_sql: String,
    /// The key column as an SQL expression over the FROM clause.
    pub key_sql: String,
    /// The key column's type.
    pub key_type: KeyType,
}

/// Which fields of a spec's source shape the rows a plan selects, in their parsed form
/// (names folded as Postgres folds them, SQL as regenerated from its parse tree).
#[derive(Serialize)]
struct SpecIdentity<'a> {
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
pub fn spec_digest(source: &ValidSource) -> String {
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
        } => SpecIdentity {
            table: Some(name.to_string()),
            query: None,
            columns: columns.as_deref(),
            where_: where_.as_ref().map(Filter::sql),
            key_column: &source.key_column,
            parameters: Vec::new(),
        },
        Source::Query { sql } => SpecIdentity {
            table: None,
            query: Some(sql.sql()),
            columns: None,
            where_: None,
            key_column: &source.key_column,
            parameters: Vec::new(),
        },
    };
    identity.parameters = parameters;
    // Strings, options and slices of strings always serialize.
    let bytes = serde_json::to_vec(&identity).expect("a SpecIdentity serializes");
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

impl SourceSql {
    /// Builds the SQL of `planned` from the validated `source` (its names already parsed,
    /// its `query` and `where` already regenerated from their parse trees). Fails when the
    /// plan does not belong to this source.
    pub fn build(source: &ValidSource, planned: &PlannedSource) -> Result<SourceSql, Error> {
        if planned.spec_digest != spec_digest(source) {
            return Err(Error::Staging(format!(
                "the plan was made for another spec (spec digest {}, this spec {}); plan again",
                planned.spec_digest,
                spec_digest(source)
            )));
        }
        let types = &planned.parameters;
        if types.len() != source.parameters.len() {
            return Err(Error::Staging(format!(
                "the plan has {} parameter types, the spec {} parameters",
                types.len(),
                source.parameters.len()
            )));
        }
        for (i, (p, t)) in source.parameters.iter().zip(types).enumerate() {
            if p.declared.is_some_and(|d| d != *t) {
                return Err(Error::Staging(format!(
                    "the plan types ${} as {t}, the spec declares it {}",
                    i + 1,
                    p.declared.map_or("", |d| d.sql_name())
                )));
            }
        }
        let bound = |r: Result<String, crate::sql::SqlError>| {
            r.map_err(|e| Error::Staging(format!("cannot bind the parameters: {e}")))
        };
        let key = &source.key_column;
        if *key != planned.key_column {
            return Err(Error::Staging(format!(
                "the plan's key column {:?} is not the spec's {key:?}",
                planned.key_column
            )));
        }
        match &source.rows {
            Source::Table {
                name,
                columns,
                where_,
            } => {
                let same_table = planned.table.as_ref().is_some_and(|t| {
                    t.name == name.name && name.schema.as_ref().is_none_or(|s| *s == t.schema)
                });
                if !same_table {
                    return Err(Error::Staging(format!(
                        "the plan's table {:?} is not the spec's {name}",
                        planned.table
                    )));
                }
                let columns = columns.as_ref().unwrap_or(&planned.columns);
                if *columns != planned.columns || columns.is_empty() {
                    return Err(Error::Staging(
                        "the plan's columns are not the spec's".to_string(),
                    ));
                }
                Ok(SourceSql {
                    select_list: columns
                        .iter()
                        .map(|c| Quoted(c).to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    from_sql: name.to_string(),
                    filter_sql: match where_ {
                        Some(f) => bound(f.bound_sql(types))?,
                        None => "true".to_string(),
                    },
                    key_sql: Quoted(key).to_string(),
                    key_type: planned.key_type,
                })
            }
            Source::Query { sql } => Ok(SourceSql {
                select_list: "*".to_string(),
                from_sql: format!("(\n{}\n) AS rj_src", bound(sql.bound_sql(types))?),
                filter_sql: "true".to_string(),
                key_sql: format!("rj_src.{}", Quoted(key)),
                key_type: planned.key_type,
            }),
        }
    }

    /// The SELECT that reads the chunk's rows in key order.
    pub fn chunk_query(&self, chunk: &ChunkRange) -> String {
        let order = if chunk.nulls {
            String::new()
        } else {
            format!(" ORDER BY {}", self.key_sql)
        };
        format!(
            "SELECT {}\nFROM {}\nWHERE ({})\n  AND {}{order}",
            self.select_list,
            self.from_sql,
            self.filter_sql,
            chunk.predicate(&self.key_sql, self.key_type)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::spec_digest;
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
        assert_eq!(spec_digest(&a), spec_digest(&b));
        let c = source_of("    table: public.orders\n    keyColumn: id\n    where: 'amount>1'");
        assert_ne!(spec_digest(&a), spec_digest(&c));
        let d = source_of("    table: public.\"Orders\"\n    keyColumn: id\n    where: 'amount>0'");
        assert_ne!(spec_digest(&a), spec_digest(&d));
    }
}
