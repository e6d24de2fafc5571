//! Resolving a spec's source to SQL: look every name up in the catalog, quote it, and
//! check that the key column exists and has a supported type.

use sqlx::postgres::{PgTypeInfo, types::Oid};
use sqlx::{AssertSqlSafe, Column, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use super::ReadSession;
use super::statement::SourceSql;
use crate::error::{Error, Result};
use reportjob_core::api::valid::{ParamType, SelectQuery, Source, ValidSource};
use reportjob_core::ident::QualifiedName;
use reportjob_core::identity::source_digest;
use reportjob_core::plan::{KeyType, PlannedSource, TableName};

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
    /// What the plan stores (names and types, no SQL).
    pub source: PlannedSource,
    /// The SQL pieces, rebuilt from the spec as export will rebuild them.
    pub sql: SourceSql,
    /// Privileges beyond reading that the role holds (see [`privilege_warnings`]).
    pub warnings: Vec<String>,
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

/// Resolves `spec` inside `session`.
pub async fn resolve(session: &mut ReadSession, spec: &ValidSource) -> Result<Resolved> {
    match &spec.rows {
        Source::Table {
            name,
            columns,
            where_,
        } => resolve_table(session, spec, name, columns.as_deref(), where_.is_some()).await,
        Source::Query { sql } => resolve_query(session, spec, sql).await,
    }
}

async fn resolve_table(
    session: &mut ReadSession,
    spec: &ValidSource,
    name: &QualifiedName,
    wanted_columns: Option<&[String]>,
    filtered: bool,
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
    let key = spec.key_column.clone();
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
    let parameters = match &spec.rows {
        Source::Table {
            where_: Some(filter),
            ..
        } => {
            // The filter as written, `$n` and all: what the server infers types from.
            let text = format!("SELECT 1 FROM {name} WHERE ({})\n  AND false", filter.sql());
            parameter_types(session, &text, spec, "spec.source.where").await?
        }
        _ => Vec::new(),
    };
    let column_types = columns
        .iter()
        .map(|c| {
            all.iter()
                .find(|(n, _, _)| n == c)
                .map(|(_, t, _)| t.clone())
                .unwrap_or_default()
        })
        .collect();
    let source = PlannedSource {
        description: shown,
        table: Some(TableName {
            schema: nsp.clone(),
            name: rel.clone(),
        }),
        key_column: key.clone(),
        key_type,
        columns,
        spec_digest: source_digest(spec),
        parameters,
        column_types,
    };
    let sql = SourceSql::build(spec, &source)?;
    check_parses(session, &sql, "spec.source.where").await?;
    check_values(session, spec, &source.parameters).await?;
    let warnings = privilege_warnings(session, &[oid]).await?;
    Ok(Resolved {
        source,
        sql,
        warnings,
        key_nullable: !key_not_null,
        table: Some(TableRef {
            oid,
            schema: nsp,
            name: rel,
            key_collation,
            filtered,
        }),
    })
}

async fn resolve_query(
    session: &mut ReadSession,
    spec: &ValidSource,
    parsed: &SelectQuery,
) -> Result<Resolved> {
    let key = spec.key_column.clone();
    let wrapped = format!("SELECT * FROM (\n{}\n) AS rj_src", parsed.sql());
    // Preparing (not running) the query checks it is one valid SELECT and gives its columns
    // and the types of its parameters.
    let (described, parameters) = prepare_typed(
        session,
        &format!("{wrapped} WHERE false"),
        spec,
        "spec.source.query",
        "the query is not valid",
    )
    .await?;
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
    let source = PlannedSource {
        description: "query".to_string(),
        table: None,
        key_column: key.clone(),
        key_type,
        column_types: columns.iter().map(|(_, t)| t.clone()).collect(),
        columns: columns.into_iter().map(|(n, _)| n).collect(),
        spec_digest: source_digest(spec),
        parameters,
    };
    let sql = SourceSql::build(spec, &source)?;
    check_values(session, spec, &source.parameters).await?;
    let mut oids = Vec::new();
    for table in parsed.tables() {
        let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
            .bind(table)
            .fetch_one(session.conn())
            .await
            .map_err(|e| Error::db("looking up the query's tables", e))?;
        oids.extend(oid);
    }
    let warnings = privilege_warnings(session, &oids).await?;
    Ok(Resolved {
        source,
        sql,
        warnings,
        key_nullable: true,
        table: None,
    })
}

/// What the session's role may do beyond reading: a superuser, a member of
/// `pg_write_server_files`, `pg_execute_server_program` or `pg_read_server_files`, or a
/// holder of INSERT, UPDATE, DELETE or TRUNCATE on a source relation. Nothing here stops
/// the run (the transaction is read-only and the SQL is checked), but a report job needs
/// none of it: each is a warning for people.
pub async fn privilege_warnings(session: &mut ReadSession, oids: &[i64]) -> Result<Vec<String>> {
    let (role, superuser, write_files, programs, read_files): (String, bool, bool, bool, bool) =
        sqlx::query_as(
            "SELECT current_user::text,
                    coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
                    pg_has_role(current_user, 'pg_write_server_files', 'MEMBER'),
                    pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER'),
                    pg_has_role(current_user, 'pg_read_server_files', 'MEMBER')",
        )
        .fetch_one(session.conn())
        .await
        .map_err(|e| Error::db("reading the role's privileges", e))?;
    let mut warnings = Vec::new();
    if superuser {
        warnings.push(format!(
            "the database role {role:?} is a superuser; a report job needs only SELECT on its source (see the README's read-only role)"
        ));
        return Ok(warnings);
    }
    for (held, name) in [
        (write_files, "pg_write_server_files"),
        (programs, "pg_execute_server_program"),
        (read_files, "pg_read_server_files"),
    ] {
        if held {
            warnings.push(format!(
                "the database role {role:?} is a member of {name}; a report job needs only SELECT on its source"
            ));
        }
    }
    for oid in oids {
        let row: (String, Vec<String>) = sqlx::query_as(
            "SELECT $1::int8::oid::regclass::text,
                    array_remove(ARRAY[
                      CASE WHEN has_table_privilege($1::int8::oid, 'INSERT') THEN 'INSERT' END,
                      CASE WHEN has_table_privilege($1::int8::oid, 'UPDATE') THEN 'UPDATE' END,
                      CASE WHEN has_table_privilege($1::int8::oid, 'DELETE') THEN 'DELETE' END,
                      CASE WHEN has_table_privilege($1::int8::oid, 'TRUNCATE') THEN 'TRUNCATE' END
                    ], NULL)",
        )
        .bind(oid)
        .fetch_one(session.conn())
        .await
        .map_err(|e| Error::db("reading the role's table privileges", e))?;
        if !row.1.is_empty() {
            warnings.push(format!(
                "the database role {role:?} may {} on {}; a report job needs only SELECT",
                row.1.join(", "),
                row.0
            ));
        }
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    Ok(warnings)
}

/// The spec's declared parameter types for the server (`0`, unspecified, where undeclared).
fn declared_types(spec: &ValidSource) -> Vec<PgTypeInfo> {
    spec.parameters
        .iter()
        .map(|p| match p.declared {
            Some(t) => PgTypeInfo::with_name(t.sql_name()),
            None => PgTypeInfo::with_oid(Oid(0)),
        })
        .collect()
}

/// Prepares `text` (the spec's SQL with its `$n`) with the declared types and returns the
/// type of each parameter as the server sees it; errors name `$n` and `field`.
async fn parameter_types(
    session: &mut ReadSession,
    text: &str,
    spec: &ValidSource,
    field: &'static str,
) -> Result<Vec<ParamType>> {
    Ok(
        prepare_typed(session, text, spec, field, "is not a valid filter")
            .await?
            .1,
    )
}

/// Prepares `text` with the spec's declared parameter types. When that fails and types
/// were declared, prepares it again with none declared (inside a savepoint, as the failure
/// ended the first attempt) to name the `$n` whose declared type the SQL does not accept.
async fn prepare_typed(
    session: &mut ReadSession,
    text: &str,
    spec: &ValidSource,
    field: &'static str,
    invalid: &str,
) -> Result<(sqlx::postgres::PgStatement, Vec<ParamType>)> {
    let declared = declared_types(spec);
    let any_declared = spec.parameters.iter().any(|p| p.declared.is_some());
    let sql = || AssertSqlSafe(text.to_string()).into_sql_str();
    let what = if field == "spec.source.where" {
        "where"
    } else {
        "query"
    };
    if any_declared {
        savepoint(session, "SAVEPOINT rj_types").await?;
    }
    let first = session.conn().prepare_with(sql(), &declared).await;
    let e = match first {
        Ok(described) => {
            let types = check_types(&described, spec, what)?;
            return Ok((described, types));
        }
        Err(e) if e.as_database_error().is_none() => {
            return Err(Error::db("checking the parameters", e));
        }
        Err(e) => e,
    };
    let refused = Error::Source {
        field,
        message: format!("{invalid}: {}", crate::error::describe_sqlx(&e)),
    };
    if !any_declared {
        return Err(refused);
    }
    savepoint(session, "ROLLBACK TO SAVEPOINT rj_types").await?;
    let unspecified = vec![PgTypeInfo::with_oid(Oid(0)); spec.parameters.len()];
    let Ok(described) = session.conn().prepare_with(sql(), &unspecified).await else {
        return Err(refused);
    };
    let Some(Either::Left(inferred)) = described.parameters() else {
        return Err(refused);
    };
    for (i, (t, p)) in inferred.iter().zip(&spec.parameters).enumerate() {
        if let Some(d) = p.declared
            && ParamType::parse(t.name()) != Some(d)
        {
            return Err(source_err(
                "spec.source.parameters",
                format!(
                    "${n} (parameters[{i}]) is declared {d}, but the {what} uses ${n} as {}: {}",
                    t.name().to_lowercase(),
                    crate::error::describe_sqlx(&e),
                    n = i + 1
                ),
            ));
        }
    }
    Err(refused)
}

async fn savepoint(session: &mut ReadSession, statement: &'static str) -> Result<()> {
    sqlx::query(statement)
        .execute(session.conn())
        .await
        .map(|_| ())
        .map_err(|e| Error::db("checking the parameters", e))
}

/// Checks the server's parameter count and types against the spec.
fn check_types(
    described: &sqlx::postgres::PgStatement,
    spec: &ValidSource,
    what: &str,
) -> Result<Vec<ParamType>> {
    let field = "spec.source.parameters";
    let inferred: Vec<String> = match described.parameters() {
        Some(Either::Left(types)) => types.iter().map(|t| t.name().to_string()).collect(),
        Some(Either::Right(n)) => vec![String::new(); n],
        None => Vec::new(),
    };
    if inferred.len() != spec.parameters.len() {
        return Err(source_err(
            field,
            format!(
                "the server finds {} parameters in the {what} ($1 to ${}), the spec gives {} values",
                inferred.len(),
                inferred.len(),
                spec.parameters.len()
            ),
        ));
    }
    let mut types = Vec::with_capacity(inferred.len());
    for (i, (name, p)) in inferred.iter().zip(&spec.parameters).enumerate() {
        let n = i + 1;
        let Some(found) = ParamType::parse(name) else {
            return Err(source_err(
                field,
                format!(
                    "${n}: the server types it {name}, which is not a supported parameter type; declare                      parameters[{i}].type as one of: {} (and cast in the SQL, e.g. ${n}::text, if needed)",
                    ParamType::SUPPORTED
                ),
            ));
        };
        if let Some(declared) = p.declared
            && declared != found
        {
            return Err(source_err(
                field,
                format!("${n}: declared {declared}, but the server uses it as {found}"),
            ));
        }
        types.push(found);
    }
    Ok(types)
}

/// Reads each bound value as its type, so a value its type cannot read (`1; DROP TABLE x`
/// as an integer) is refused now, naming `$n`, instead of failing every chunk.
async fn check_values(
    session: &mut ReadSession,
    spec: &ValidSource,
    types: &[ParamType],
) -> Result<()> {
    for (i, ty) in types.iter().enumerate() {
        let n = i as u32 + 1;
        let sql = format!(
            "SELECT CAST(current_setting('{}') AS {})::text",
            reportjob_core::sql::params::setting_name(n),
            ty.sql_name()
        );
        if let Err(e) = sqlx::query(AssertSqlSafe(sql))
            .execute(session.conn())
            .await
        {
            if e.as_database_error().is_none() {
                return Err(Error::db("checking the parameters", e));
            }
            let value = spec.parameters.get(i).map_or("", |p| p.value.as_str());
            let shown: String = value.chars().take(80).collect();
            return Err(source_err(
                "spec.source.parameters",
                format!(
                    "${n} (parameters[{i}]): {shown:?} is not a valid {ty}: {}",
                    crate::error::describe_sqlx(&e)
                ),
            ));
        }
    }
    Ok(())
}

/// Prepares the source's SELECT with its filter, so a bad `where` fails now, naming the
/// field, and so nothing in it can turn one statement into several.
async fn check_parses(
    session: &mut ReadSession,
    source: &SourceSql,
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
