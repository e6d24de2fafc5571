//! The statements a run sends, rebuilt from the validated spec each time they are needed:
//! identifiers parsed and quoted, `query` and `where` parsed with Postgres's grammar and
//! regenerated ([`crate::sql`]). A plan carries only names, types and key ranges.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ident::{Quoted, parse_ident, parse_qualified};
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

/// Which fields of a spec's source shape the rows a plan selects.
#[derive(Serialize)]
struct SpecIdentity<'a> {
    table: Option<&'a str>,
    query: Option<&'a str>,
    columns: Option<&'a [String]>,
    #[serde(rename = "where")]
    where_: Option<&'a str>,
    key_column: &'a str,
}

/// `sha256:<hex>` of the fields of `source` that decide which rows are exported.
pub fn spec_digest(source: &crate::api::SourceSpec) -> String {
    let identity = SpecIdentity {
        table: source.table.as_deref(),
        query: source.query.as_deref(),
        columns: source.columns.as_deref(),
        where_: source.where_.as_deref(),
        key_column: &source.key_column,
    };
    let bytes = serde_json::to_vec(&identity).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

impl SourceSql {
    /// Rebuilds the SQL of `planned` from `spec`: identifiers are parsed and quoted,
    /// `query` and `where` are parsed with Postgres's grammar and regenerated. Fails when
    /// the plan does not belong to this spec.
    pub fn build(
        spec: &crate::api::SourceSpec,
        planned: &PlannedSource,
    ) -> Result<SourceSql, crate::error::Error> {
        use crate::error::Error;
        let err = |field: &'static str, message: String| Error::Source { field, message };
        if planned.spec_digest != spec_digest(spec) {
            return Err(Error::Staging(format!(
                "the plan was made for another spec (spec digest {}, this spec {}); plan again",
                planned.spec_digest,
                spec_digest(spec)
            )));
        }
        let key = parse_ident(&spec.key_column).map_err(|e| err("spec.source.keyColumn", e.0))?;
        if key != planned.key_column {
            return Err(Error::Staging(format!(
                "the plan's key column {:?} is not the spec's {key:?}",
                planned.key_column
            )));
        }
        match (&spec.table, &spec.query) {
            (Some(table), None) => {
                let name = parse_qualified(table).map_err(|e| err("spec.source.table", e.0))?;
                let same_table = planned.table.as_ref().is_some_and(|t| {
                    t.name == name.name && name.schema.as_ref().is_none_or(|s| *s == t.schema)
                });
                if !same_table {
                    return Err(Error::Staging(format!(
                        "the plan's table {:?} is not the spec's {table:?}",
                        planned.table
                    )));
                }
                let columns: Vec<String> = match &spec.columns {
                    Some(wanted) => wanted
                        .iter()
                        .map(|c| parse_ident(c).map_err(|e| err("spec.source.columns", e.0)))
                        .collect::<Result<_, _>>()?,
                    None => planned.columns.clone(),
                };
                if columns != planned.columns || columns.is_empty() {
                    return Err(Error::Staging(
                        "the plan's columns are not the spec's".to_string(),
                    ));
                }
                let filter_sql = match &spec.where_ {
                    Some(text) => crate::sql::Filter::parse(text)
                        .map_err(|e| err("spec.source.where", e.0))?
                        .sql()
                        .to_string(),
                    None => "true".to_string(),
                };
                Ok(SourceSql {
                    select_list: columns
                        .iter()
                        .map(|c| Quoted(c).to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    from_sql: name.to_string(),
                    filter_sql,
                    key_sql: Quoted(&key).to_string(),
                    key_type: planned.key_type,
                })
            }
            (None, Some(query)) => {
                let query = crate::sql::SelectQuery::parse(query)
                    .map_err(|e| err("spec.source.query", e.0))?;
                Ok(SourceSql {
                    select_list: "*".to_string(),
                    from_sql: format!("(\n{}\n) AS rj_src", query.sql()),
                    filter_sql: "true".to_string(),
                    key_sql: format!("rj_src.{}", Quoted(&key)),
                    key_type: planned.key_type,
                })
            }
            _ => Err(Error::InvalidSpec(
                "spec.source: set exactly one of table and query".into(),
            )),
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
