//! Bound parameters: the types a `$n` may have, where each `$n` stands in regenerated SQL,
//! and the rewrite that makes every `$n` read its value from a transaction-local setting.
//!
//! Why settings: a chunk is streamed with `COPY (SELECT ...) TO STDOUT`, and COPY takes no
//! bind parameters. So every session binds each value with `set_config($1, $2, true)`
//! through the extended protocol (the value travels as a parameter, never as SQL text),
//! and the statements read it back as `CAST(current_setting('reportjob.param_<n>') AS <type>)`,
//! where `<type>` is one of [`ParamType`]'s fixed names. The value is parsed by the
//! type's input function, exactly as a bound text parameter would be.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SqlError;

/// The types a parameter may be declared (or inferred) as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParamType {
    /// `text`
    #[serde(rename = "text")]
    Text,
    /// `varchar`
    #[serde(rename = "varchar")]
    Varchar,
    /// `smallint`
    #[serde(rename = "smallint")]
    Smallint,
    /// `integer`
    #[serde(rename = "integer")]
    Integer,
    /// `bigint`
    #[serde(rename = "bigint")]
    Bigint,
    /// `numeric`
    #[serde(rename = "numeric")]
    Numeric,
    /// `real`
    #[serde(rename = "real")]
    Real,
    /// `double precision`
    #[serde(rename = "double precision")]
    Double,
    /// `boolean`
    #[serde(rename = "boolean")]
    Boolean,
    /// `date`
    #[serde(rename = "date")]
    Date,
    /// `time`
    #[serde(rename = "time")]
    Time,
    /// `timestamp`
    #[serde(rename = "timestamp")]
    Timestamp,
    /// `timestamptz`
    #[serde(rename = "timestamptz")]
    Timestamptz,
    /// `interval`
    #[serde(rename = "interval")]
    Interval,
    /// `uuid`
    #[serde(rename = "uuid")]
    Uuid,
    /// `jsonb`
    #[serde(rename = "jsonb")]
    Jsonb,
}

impl ParamType {
    /// The supported type names, for messages.
    pub const SUPPORTED: &'static str = "text, varchar, smallint, integer, bigint, numeric, real, \
        double precision, boolean, date, time, timestamp, timestamptz, interval, uuid, jsonb";

    /// The type a name stands for: the names above, their Postgres aliases (`int4`,
    /// `float8`, `character varying`, `timestamp with time zone`...) and the upper-case
    /// catalog names the driver reports. `None` for anything else.
    pub fn parse(name: &str) -> Option<ParamType> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "text" => ParamType::Text,
            "varchar" | "character varying" => ParamType::Varchar,
            "smallint" | "int2" => ParamType::Smallint,
            "integer" | "int" | "int4" => ParamType::Integer,
            "bigint" | "int8" => ParamType::Bigint,
            "numeric" | "decimal" => ParamType::Numeric,
            "real" | "float4" => ParamType::Real,
            "double precision" | "float8" => ParamType::Double,
            "boolean" | "bool" => ParamType::Boolean,
            "date" => ParamType::Date,
            "time" | "time without time zone" => ParamType::Time,
            "timestamp" | "timestamp without time zone" => ParamType::Timestamp,
            "timestamptz" | "timestamp with time zone" => ParamType::Timestamptz,
            "interval" => ParamType::Interval,
            "uuid" => ParamType::Uuid,
            "jsonb" => ParamType::Jsonb,
            _ => return None,
        })
    }

    /// The type's name in SQL (fixed text, safe to write into a statement).
    pub fn sql_name(self) -> &'static str {
        match self {
            ParamType::Text => "text",
            ParamType::Varchar => "varchar",
            ParamType::Smallint => "smallint",
            ParamType::Integer => "integer",
            ParamType::Bigint => "bigint",
            ParamType::Numeric => "numeric",
            ParamType::Real => "real",
            ParamType::Double => "double precision",
            ParamType::Boolean => "boolean",
            ParamType::Date => "date",
            ParamType::Time => "time",
            ParamType::Timestamp => "timestamp",
            ParamType::Timestamptz => "timestamptz",
            ParamType::Interval => "interval",
            ParamType::Uuid => "uuid",
            ParamType::Jsonb => "jsonb",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// Most parameters a spec may give.
pub const MAX_PARAMS: usize = 100;

/// The name of the transaction-local setting that holds the value of `$n`.
pub fn setting_name(n: u32) -> String {
    format!("reportjob.param_{n}")
}

/// One `$n` in a regenerated text: its byte offset and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamRef {
    /// Byte offset of the `$`.
    pub offset: usize,
    /// `n`.
    pub number: u32,
}

/// Every `$n` of a parse tree (`found`: location and number, from [`super::tree::inspect`]),
/// in text order, with offsets shifted back by `prefix` (the length of text parsed before
/// the fragment). Checks each offset points at `$n` in `text` (the fragment) and that
/// numbers are within [`MAX_PARAMS`].
pub(crate) fn param_refs(
    found: Vec<(i64, i64)>,
    text: &str,
    prefix: usize,
) -> Result<Vec<ParamRef>, SqlError> {
    let mut refs = Vec::with_capacity(found.len());
    for (location, number) in found {
        let number = u32::try_from(number)
            .ok()
            .filter(|n| (1..=MAX_PARAMS as u32).contains(n))
            .ok_or_else(|| {
                SqlError(format!(
                    "uses ${number}; parameters are numbered $1 to ${MAX_PARAMS}"
                ))
            })?;
        let offset = usize::try_from(location)
            .ok()
            .and_then(|l| l.checked_sub(prefix))
            .filter(|&o| {
                text.get(o..)
                    .is_some_and(|t| t.starts_with(&format!("${number}")))
            })
            .ok_or_else(|| {
                SqlError(format!(
                    "parameter ${number} could not be located in the text"
                ))
            })?;
        refs.push(ParamRef { offset, number });
    }
    refs.sort_by_key(|r| r.offset);
    Ok(refs)
}

/// `text` with each `$n` of `refs` replaced by a read of its setting, cast to
/// `types[n - 1]`. Fails when a `$n` has no type (more `$n` than parameters).
pub fn bind_through_settings(
    text: &str,
    refs: &[ParamRef],
    types: &[ParamType],
) -> Result<String, SqlError> {
    let mut out = String::with_capacity(text.len() + refs.len() * 64);
    let mut at = 0;
    for r in refs {
        let Some(ty) = types.get(r.number as usize - 1) else {
            return Err(SqlError(format!(
                "uses ${} but only {} parameters are given",
                r.number,
                types.len()
            )));
        };
        out.push_str(&text[at..r.offset]);
        out.push_str(&format!(
            "CAST(current_setting('{}') AS {})",
            setting_name(r.number),
            ty.sql_name()
        ));
        at = r.offset + 1 + r.number.to_string().len();
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// The distinct parameter numbers of `refs`, sorted.
pub fn numbers(refs: &[ParamRef]) -> Vec<u32> {
    let mut n: Vec<u32> = refs.iter().map(|r| r.number).collect();
    n.sort_unstable();
    n.dedup();
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Filter, SelectQuery};

    #[test]
    fn type_names_and_aliases() {
        assert_eq!(ParamType::parse("INT4"), Some(ParamType::Integer));
        assert_eq!(
            ParamType::parse("timestamp with time zone"),
            Some(ParamType::Timestamptz)
        );
        assert_eq!(
            ParamType::parse("Double Precision"),
            Some(ParamType::Double)
        );
        assert_eq!(ParamType::parse("date; drop table x"), None);
        assert_eq!(ParamType::parse("regclass"), None);
    }

    #[test]
    fn params_are_rewritten_to_typed_setting_reads() {
        let q =
            SelectQuery::parse("SELECT id, $2::text AS label FROM t WHERE d >= $1 AND d < $1 + 7")
                .unwrap();
        assert_eq!(numbers(q.params()), vec![1, 2]);
        let bound = q.bound_sql(&[ParamType::Date, ParamType::Text]).unwrap();
        assert_eq!(
            bound,
            "SELECT id, CAST(current_setting('reportjob.param_2') AS text)::text AS label FROM t \
             WHERE d >= CAST(current_setting('reportjob.param_1') AS date) AND d < CAST(current_setting('reportjob.param_1') AS date) + 7"
        );
        assert_eq!(
            q.bound_sql(&[ParamType::Date]).unwrap_err().0,
            "uses $2 but only 1 parameters are given"
        );
        let f = Filter::parse("amount > $1 and note <> '$2'").unwrap();
        assert_eq!(numbers(f.params()), vec![1]);
        assert_eq!(
            f.bound_sql(&[ParamType::Numeric]).unwrap(),
            "amount > CAST(current_setting('reportjob.param_1') AS numeric) AND note <> '$2'"
        );
    }

    #[test]
    fn parameter_numbers_are_bounded() {
        let e = SelectQuery::parse("SELECT 1 FROM t WHERE a = $101").unwrap_err();
        assert_eq!(e.0, "uses $101; parameters are numbered $1 to $100");
    }
}
