//! SQL from a spec, read with Postgres's own grammar (libpg_query, the server's parser):
//! `query` must be exactly one plain SELECT, `where` exactly one expression, and neither
//! may call a function with side effects ([`denylist`]). What runs is regenerated from the
//! parse tree (deparsed), never the text as written, so a fragment can never close a
//! parenthesis it did not open, end a string it did not start, or add a statement.

pub(crate) mod denylist;
pub mod params;
pub(crate) mod tree;

use pg_query::NodeEnum;
use pg_query::protobuf::SetOperation;

use params::{ParamRef, ParamType, param_refs};

/// Why a piece of SQL was refused (the caller names the field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

/// A spec's `query`: exactly one plain SELECT, as Postgres parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectQuery {
    sql: String,
    tables: Vec<String>,
    params: Vec<ParamRef>,
}

impl SelectQuery {
    /// Parses and checks `text`; the kept SQL is the deparsed tree.
    pub fn parse(text: &str) -> Result<SelectQuery, SqlError> {
        within_limit(text)?;
        let parsed = parse_one(text)?;
        let Some(NodeEnum::SelectStmt(_)) = top_node(&parsed) else {
            return Err(SqlError(format!(
                "must be one SELECT statement, not {}",
                statement_kind(&parsed)
            )));
        };
        tree::inspect(&parsed.protobuf)?;
        let sql = deparse(&parsed)?;
        let mut tables: Vec<String> = parsed.tables().into_iter().collect();
        tables.sort();
        tables.dedup();
        // A tree takes ~600 bytes per node (64 KiB of SQL: ~35 MB): one at a time.
        drop(parsed);
        // The regenerated text must itself pass (it is what runs).
        let again = parse_one(&sql)?;
        let found = tree::inspect(&again.protobuf)?;
        let params = param_refs(found.params, &sql, 0)?;
        Ok(SelectQuery {
            sql,
            tables,
            params,
        })
    }

    /// The regenerated SELECT, with its `$n` as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Where the SELECT uses `$n`.
    pub fn params(&self) -> &[ParamRef] {
        &self.params
    }

    /// The SELECT with each `$n` reading its bound value ([`params::bind_through_settings`]).
    pub fn bound_sql(&self, types: &[ParamType]) -> Result<String, SqlError> {
        params::bind_through_settings(&self.sql, &self.params, types)
    }

    /// The relations the query reads (as written, possibly schema-qualified).
    pub fn tables(&self) -> &[String] {
        &self.tables
    }
}

/// A spec's `where`: exactly one expression, as Postgres parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    sql: String,
    params: Vec<ParamRef>,
}

/// What a filter is parsed inside of; the deparsed text starts with it.
const FILTER_PREFIX: &str = "SELECT 1 WHERE ";

impl Filter {
    /// Parses `text` as the condition of `SELECT 1 WHERE <text>` and checks the statement
    /// has nothing else: no second statement, no set operation, no ORDER BY, LIMIT,
    /// GROUP BY, locking clause, INTO or WINDOW smuggled in after the expression.
    pub fn parse(text: &str) -> Result<Filter, SqlError> {
        if text.trim().is_empty() {
            return Err(SqlError("is empty".into()));
        }
        within_limit(text)?;
        // The newline ends a trailing `--` comment before anything we might add.
        let parsed = parse_one(&format!("{FILTER_PREFIX}{text}\n"))?;
        let Some(NodeEnum::SelectStmt(s)) = top_node(&parsed) else {
            return Err(SqlError("must be one expression".into()));
        };
        let only_where = s.where_clause.is_some()
            && s.target_list.len() == 1
            && s.distinct_clause.is_empty()
            && s.into_clause.is_none()
            && s.from_clause.is_empty()
            && s.group_clause.is_empty()
            && s.having_clause.is_none()
            && s.window_clause.is_empty()
            && s.values_lists.is_empty()
            && s.sort_clause.is_empty()
            && s.limit_offset.is_none()
            && s.limit_count.is_none()
            && s.locking_clause.is_empty()
            && s.with_clause.is_none()
            && s.op == SetOperation::SetopNone as i32
            && s.larg.is_none()
            && s.rarg.is_none();
        if !only_where {
            return Err(SqlError(
                "must be exactly one boolean expression (it is followed by another clause, such as ORDER BY, LIMIT, UNION or FOR UPDATE)".into(),
            ));
        }
        tree::inspect(&parsed.protobuf)?;
        let whole = deparse(&parsed)?;
        // One tree at a time (see SelectQuery::parse).
        drop(parsed);
        let Some(expr) = whole.strip_prefix(FILTER_PREFIX) else {
            return Err(SqlError(format!(
                "could not be regenerated as one expression (got {whole:?})"
            )));
        };
        // The regenerated expression must parse back the same way on its own.
        let again = parse_one(&format!("{FILTER_PREFIX}{expr}"))?;
        let found = tree::inspect(&again.protobuf)?;
        if deparse(&again)? != whole {
            return Err(SqlError(
                "does not read back as the same expression after regeneration".into(),
            ));
        }
        let params = param_refs(found.params, expr, FILTER_PREFIX.len())?;
        Ok(Filter {
            sql: expr.to_string(),
            params,
        })
    }

    /// The regenerated expression (to be wrapped in parentheses), with its `$n` as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Where the expression uses `$n`.
    pub fn params(&self) -> &[ParamRef] {
        &self.params
    }

    /// The expression with each `$n` reading its bound value.
    pub fn bound_sql(&self, types: &[ParamType]) -> Result<String, SqlError> {
        params::bind_through_settings(&self.sql, &self.params, types)
    }
}

/// The text to send for a `COPY (<select>) TO STDOUT ...` we composed from regenerated
/// pieces, quoted identifiers and quoted literals: it must parse as exactly one COPY of a
/// SELECT to the client (never to a file or program), pass the same checks as user SQL,
/// and is returned deparsed. This is what the simple-query COPY sends.
pub fn regenerate_copy_to_stdout(text: &str) -> Result<String, SqlError> {
    let parsed = parse_one(text)?;
    let Some(NodeEnum::CopyStmt(copy)) = top_node(&parsed) else {
        return Err(SqlError(format!(
            "the export statement is not a COPY but {}",
            statement_kind(&parsed)
        )));
    };
    let query_is_select = matches!(
        copy.query.as_ref().and_then(|q| q.node.as_ref()),
        Some(NodeEnum::SelectStmt(_))
    );
    if copy.is_from || copy.is_program || !copy.filename.is_empty() || !query_is_select {
        return Err(SqlError(
            "the export statement must be COPY (SELECT ...) TO STDOUT".into(),
        ));
    }
    tree::inspect(&parsed.protobuf)?;
    deparse(&parsed)
}

/// Longest `query` or `where` a spec may hold, in bytes: 64 KiB. The CRD says the same
/// (`maxLength`), so the API server refuses a longer one at admission; this refuses it in
/// `reportjob run` and in any spec that reached the controller another way.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Refuses a text longer than [`MAX_SQL_BYTES`] before it is parsed.
pub fn within_limit(text: &str) -> Result<(), SqlError> {
    if text.len() > MAX_SQL_BYTES {
        return Err(SqlError(format!(
            "is {} bytes long; at most {MAX_SQL_BYTES} bytes (64 KiB) are allowed",
            text.len()
        )));
    }
    Ok(())
}

fn parse_one(text: &str) -> Result<pg_query::ParseResult, SqlError> {
    if text.contains('\0') {
        return Err(SqlError("contains a NUL byte".into()));
    }
    let parsed = pg_query::parse(text, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| SqlError(format!("is not valid SQL: {}", parse_message(&e))))?;
    match parsed.protobuf.stmts.len() {
        1 => Ok(parsed),
        0 => Err(SqlError("is empty".into())),
        n => Err(SqlError(format!(
            "holds more than one statement ({n} statements); write exactly one"
        ))),
    }
}

fn parse_message(e: &pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

fn top_node(parsed: &pg_query::ParseResult) -> Option<&NodeEnum> {
    parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| n.node.as_ref())
}

fn statement_kind(parsed: &pg_query::ParseResult) -> String {
    match top_node(parsed) {
        // The node's kind (e.g. `InsertStmt`, `TransactionStmt`) is what Postgres calls it.
        Some(node) => tree::top_kind(node),
        None => "nothing".into(),
    }
}

fn deparse(parsed: &pg_query::ParseResult) -> Result<String, SqlError> {
    parsed
        .protobuf
        .deparse(pg_query::DeparseOptions::default())
        .map_err(|e| SqlError(format!("could not be regenerated: {e}")))
}

#[cfg(test)]
mod tests;
