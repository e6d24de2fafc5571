//! Resolving a spec's source to SQL: look every name up in the catalog, quote it, and
//! check that the key column exists and has a supported type.

use sqlx::{AssertSqlSafe, Column, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use super::ReadSession;
use crate::api::valid::{Filter, SelectQuery, Source, ValidSource};
use crate::error::{Error, Result};
use crate::ident::{QualifiedName, Quoted};
use crate::plan::{KeyType, PlannedSource};

/// A table found in the catalog.
#[derive(Clone, Debug)]
pub struct TableRef {
    /// Its oid.
    pub oid: i64,
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// The collation of the key column, when it is not the database default.
    pub key_collation: Option<String>,
    /// Whether a `where` filter applies (then the table's histogram does not describe the rows).
    pub filtered: bool,
}

/// A source resolved against the catalog.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The SQL pieces the plan stores.
    pub source: PlannedSource,
    /// Whether the key may be NULL (a NULL chunk is planned when it may).
    pub key_nullable: bool,
    /// For table mode: the relation, whose size and statistics guide the planner.
    pub table: Option<TableRef>,
}

/// The key type of column `key` whose type Postgres names `type_name`.
fn key_type(key: &str, type_name: &str) -> Result<KeyType> {
    KeyType::from_pg_name(type_name).ok_or_else(|| {
        source_err(
            "spec.source.keyColumn",
            format!(
                "column {key:?} has type {type_name}, which cannot be a key; supported: {}",
                KeyType::SUPPORTED
            ),
        )
    })
}

fn source_err(field: &'static str, message: String) -> Error {
    Error::Source { field, message }
}

/// Resolves the validated `source` inside `session`.
pub async fn resolve(session: &mut ReadSession, source: &ValidSource) -> Result<Resolved> {
    let key = &source.key_column;
    match &source.rows {
        Source::Table {
            name,
            columns,
            where_,
        } => resolve_table(session, name, columns.as_deref(), where_.as_ref(), key).await,
        Source::Query { sql } => resolve_query(session, sql, key).await,
    }
}

async fn resolve_table(
    session: &mut ReadSession,
    name: &QualifiedName,
    wanted_columns: Option<&[String]>,
    filter: Option<&Filter>,
    key: &str,
) -> Result<Resolved> {
    let regclass_text = name.to_string();
    let row = sqlx::query(
        "SELECT c.oid::int8 AS oid, n.nspname::text AS nsp, c.relname::text AS rel
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = to_regclass($1)
            AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
    )
    .bind(&regclass_text)
    .fetch_optional(session.conn())
    .await
    .map_err(|e| Error::db("looking up the table", e))?;
    let Some(row) = row else {
        return Err(source_err(
            "spec.source.table",
            format!("table {regclass_text} does not exist (or is not visible to this user)"),
        ));
    };
    let oid: i64 = row.get("oid");
    let nsp: String = row.get("nsp");
    let rel: String = row.get("rel");
    let relation = format!("{}.{}", Quoted(&nsp), Quoted(&rel));
    let shown = format!("{nsp}.{rel}");

    let attrs = sqlx::query(
        "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type,
                a.attnotnull AS notnull,
                (SELECT c.collname::text FROM pg_collation c
                  WHERE c.oid = a.attcollation AND a.attcollation <> 100) AS collation
           FROM pg_attribute a
          WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(session.conn())
    .await
    .map_err(|e| Error::db("reading the table's columns", e))?;
    let all: Vec<(String, String, bool)> = attrs
        .iter()
        .map(|r| (r.get("name"), r.get("type"), r.get("notnull")))
        .collect();
    let collations: Vec<Option<String>> = attrs.iter().map(|r| r.get("collation")).collect();
    let listing = || {
        all.iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let columns: Vec<String> = match wanted_columns {
        None => all.iter().map(|(n, _, _)| n.clone()).collect(),
        Some(wanted) => {
            let mut out = Vec::new();
            for (i, name) in wanted.iter().enumerate() {
                if !all.iter().any(|(n, _, _)| n == name) {
                    return Err(source_err(
                        "spec.source.columns",
                        format!(
                            "column {name:?} (columns[{i}]) does not exist in {shown}; its columns are: {}",
                            listing()
                        ),
                    ));
                }
                out.push(name.clone());
            }
            out
        }
    };
    let key = key.to_string();
    let key_position = all.iter().position(|(n, _, _)| *n == key);
    let key_collation = key_position.and_then(|i| collations[i].clone());
    let Some((_, key_type_name, key_not_null)) = key_position.map(|i| &all[i]) else {
        return Err(source_err(
            "spec.source.keyColumn",
            format!(
                "column {key:?} does not exist in {shown}; its columns are: {}",
                listing()
            ),
        ));
    };
    let key_type = key_type(&key, key_type_name)?;
    let select_list = columns
        .iter()
        .map(|c| Quoted(c).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let filter_sql = match filter {
        Some(filter) => format!("\n{}\n", filter.as_str()),
        None => "true".to_string(),
    };
    let source = PlannedSource {
        description: shown,
        select_list,
        from_sql: relation,
        filter_sql,
        key_column: key.clone(),
        key_sql: Quoted(&key).to_string(),
        key_type,
        columns,
    };
    check_parses(session, &source, "spec.source.where").await?;
    Ok(Resolved {
        source,
        key_nullable: !key_not_null,
        table: Some(TableRef {
            oid,
            schema: nsp,
            name: rel,
            key_collation,
            filtered: filter.is_some(),
        }),
    })
}

async fn resolve_query(
    session: &mut ReadSession,
    query: &SelectQuery,
    key: &str,
) -> Result<Resolved> {
    let query = query.as_str();
    let key = key.to_string();
    let wrapped = format!("SELECT * FROM (\n{query}\n) AS rj_src");
    // Preparing (not running) the query checks it is one valid SELECT and gives its columns.
    let described = session
        .conn()
        .prepare(AssertSqlSafe(format!("{wrapped} WHERE false")).into_sql_str())
        .await
        .map_err(|e| {
            if e.as_database_error().is_some() {
                Error::Source {
                    field: "spec.source.query",
                    message: format!(
                        "the query is not valid: {}",
                        crate::error::describe_sqlx(&e)
                    ),
                }
            } else {
                Error::db("checking the query", e)
            }
        })?;
    let columns: Vec<(String, String)> = described
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
        .collect();
    let names = || {
        columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matches: Vec<&(String, String)> = columns.iter().filter(|(n, _)| *n == key).collect();
    let key_type_name = match matches.as_slice() {
        [(_, t)] => t.clone(),
        [] => {
            return Err(source_err(
                "spec.source.keyColumn",
                format!(
                    "column {key:?} is not in the query's output; its columns are: {}",
                    names()
                ),
            ));
        }
        _ => {
            return Err(source_err(
                "spec.source.keyColumn",
                format!("the query returns more than one column named {key:?}"),
            ));
        }
    };
    let key_type = key_type(&key, &key_type_name)?;
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &columns {
        if !seen.insert(name) {
            return Err(source_err(
                "spec.source.query",
                format!("the query returns more than one column named {name:?}; alias them apart"),
            ));
        }
    }
    Ok(Resolved {
        source: PlannedSource {
            description: "query".to_string(),
            select_list: "*".to_string(),
            from_sql: format!("(\n{query}\n) AS rj_src"),
            filter_sql: "true".to_string(),
            key_column: key.clone(),
            key_sql: format!("rj_src.{}", Quoted(&key)),
            key_type,
            columns: columns.into_iter().map(|(n, _)| n).collect(),
        },
        key_nullable: true,
        table: None,
    })
}

/// Prepares the source's SELECT with its filter, so a bad `where` fails now, naming the
/// field, and so nothing in it can turn one statement into several.
async fn check_parses(
    session: &mut ReadSession,
    source: &PlannedSource,
    field: &'static str,
) -> Result<()> {
    let sql = format!(
        "SELECT {}\nFROM {}\nWHERE ({})\n  AND false",
        source.select_list, source.from_sql, source.filter_sql
    );
    session
        .conn()
        .prepare(AssertSqlSafe(sql).into_sql_str())
        .await
        .map(|_| ())
        .map_err(|e| {
            if e.as_database_error().is_some() {
                Error::Source {
                    field,
                    message: format!("is not a valid filter: {}", crate::error::describe_sqlx(&e)),
                }
            } else {
                Error::db("checking the filter", e)
            }
        })
}
