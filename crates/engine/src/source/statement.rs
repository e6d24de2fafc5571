//! The statements a run sends, rebuilt from the validated spec each time they are needed:
//! identifiers parsed and quoted, `query` and `where` parsed with Postgres's grammar and
//! regenerated ([`reportjob_core::sql`]). A plan carries only names, types and key ranges.

use crate::error::Error;
use reportjob_core::api::valid::{Source, ValidSource};
use reportjob_core::ident::Quoted;
use reportjob_core::identity::source_digest;
use reportjob_core::plan::{ChunkRange, KeyType, PlannedSource};

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

impl SourceSql {
    /// Builds the SQL of `planned` from the validated `source` (its names already parsed,
    /// its `query` and `where` already regenerated from their parse trees). Fails when the
    /// plan does not belong to this source.
    pub fn build(source: &ValidSource, planned: &PlannedSource) -> Result<SourceSql, Error> {
        if planned.spec_digest != source_digest(source) {
            return Err(Error::PlanMismatch(format!(
                "the plan was made for another spec (spec digest {}, this spec {}); plan again",
                planned.spec_digest,
                source_digest(source)
            )));
        }
        let types = &planned.parameters;
        if types.len() != source.parameters.len() {
            return Err(Error::PlanMismatch(format!(
                "the plan has {} parameter types, the spec {} parameters",
                types.len(),
                source.parameters.len()
            )));
        }
        for (i, (p, t)) in source.parameters.iter().zip(types).enumerate() {
            if p.declared.is_some_and(|d| d != *t) {
                return Err(Error::PlanMismatch(format!(
                    "the plan types ${} as {t}, the spec declares it {}",
                    i + 1,
                    p.declared.map_or("", |d| d.sql_name())
                )));
            }
        }
        let bound = |r: Result<String, reportjob_core::sql::SqlError>| {
            r.map_err(|e| Error::Encoding(format!("cannot bind the parameters: {e}")))
        };
        let key = &source.key_column;
        if *key != planned.key_column {
            return Err(Error::PlanMismatch(format!(
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
                    return Err(Error::PlanMismatch(format!(
                        "the plan's table {:?} is not the spec's {name}",
                        planned.table
                    )));
                }
                let columns = columns.as_ref().unwrap_or(&planned.columns);
                if *columns != planned.columns || columns.is_empty() {
                    return Err(Error::PlanMismatch(
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

    /// Guards every variable-width column against values over `limit` bytes
    /// (`output.maxValueBytes`, see [`super::value_limit`]). A query whose result names a
    /// column twice cannot name its columns apart and is left unguarded (`false`).
    pub fn limit_values(&mut self, limit: u64, planned: &PlannedSource) -> bool {
        let columns = &planned.columns;
        let unique = columns
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == columns.len();
        if !unique {
            return false;
        }
        let in_query = self.select_list == "*";
        let value = |c: &str| {
            if in_query {
                format!("rj_src.{}", Quoted(c))
            } else {
                Quoted(c).to_string()
            }
        };
        // A table's column types are `format_type`'s; a query's are the driver's.
        let names = match planned.table {
            Some(_) => super::value_limit::TypeNames::Catalog,
            None => super::value_limit::TypeNames::Driver,
        };
        if let Some(list) = super::value_limit::guarded_select_list(
            columns,
            &planned.column_types,
            names,
            value,
            &self.key_sql,
            limit,
        ) {
            self.select_list = list;
        }
        true
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
