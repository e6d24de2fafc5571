//! `output.maxValueBytes`: every variable-width column of a chunk's SELECT whose type does
//! not already bound it within the limit is measured by the server, and a value over the
//! limit raises an error naming the column and the row's key before the row is sent (a worker holds one whole row in memory, so the bound must
//! hold before the bytes leave the server).
//!
//! Postgres has no `raise` in plain SQL and a read-only session may not create a function,
//! so the error is a failed cast: the over-limit branch of a `CASE` (evaluated only for the
//! rows that reach the SELECT list, after the spec's filter) casts a marker text holding
//! the column's position, the size and the key to `integer`. The engine recognises the
//! marker in the server's message and reports it as [`ValueTooLarge`].

use reportjob_core::ident::Quoted;

/// What opens the marker text of the failed cast.
const MARKER: &str = "reportjob-max-value-bytes";

/// Longest key shown in the error, in characters (keys are data: a text key can be long).
const SHOWN_KEY_CHARS: usize = 200;

/// How a column's values are measured, by its type as `format_type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// Fixed width or bounded small by its type: not measured.
    Bounded,
    /// `octet_length(value)`: exact, and read from the TOAST header without detoasting.
    OctetLength,
    /// `octet_length(value::text)`: exact for types stored as their text.
    TextLength,
    /// `pg_column_size(value)`: the stored size (smaller than the text when compressed).
    StoredSize,
}

/// Most bytes one character takes in any server encoding (`pg_encoding_max_length`).
const MAX_BYTES_PER_CHARACTER: u64 = 4;

/// Longest text of any `numeric`: a sign, 131,072 digits before the point, the point and
/// 16,383 digits after it (its stored size is smaller still).
const MAX_NUMERIC_BYTES: u64 = 147_457;

/// Where a source's column type names come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeNames {
    /// `format_type` of a table's columns: with their modifiers, and a type of another
    /// schema that shares a built-in's name quoted or qualified.
    Catalog,
    /// The driver's names of a query's columns: unqualified, without modifiers.
    Driver,
}

/// The declared length `n` of a type named like `character varying(n)`.
fn declared_length(type_name: &str) -> Option<u64> {
    let (_, rest) = type_name.split_once('(')?;
    rest.strip_suffix(')')?.trim().parse().ok()
}

/// How a column of type `type_name` is measured under `limit`: not at all when its type
/// already bounds its values within the limit (measuring costs the server CPU on every row),
/// which only a catalog name with its modifier can show.
fn measure(type_name: &str, names: TypeNames, limit: u64) -> Measure {
    let t = type_name.trim().to_ascii_lowercase();
    if t.ends_with("[]") {
        return Measure::StoredSize;
    }
    let base = t.split('(').next().unwrap_or_default().trim();
    let within = |bytes: u64| names == TypeNames::Catalog && bytes <= limit;
    match base {
        "character varying" | "varchar" | "character" | "bpchar"
            if declared_length(&t)
                .is_some_and(|n| within(n.saturating_mul(MAX_BYTES_PER_CHARACTER))) =>
        {
            Measure::Bounded
        }
        "numeric" if t.contains('(') && within(MAX_NUMERIC_BYTES) => Measure::Bounded,
        "smallint"
        | "integer"
        | "bigint"
        | "real"
        | "double precision"
        | "boolean"
        | "date"
        | "time without time zone"
        | "time with time zone"
        | "timestamp without time zone"
        | "timestamp with time zone"
        | "interval"
        | "uuid"
        | "oid"
        | "money"
        | "\"char\""
        | "inet"
        | "cidr"
        | "macaddr"
        | "macaddr8"
        | "point"
        | "int2"
        | "int4"
        | "int8"
        | "float4"
        | "float8"
        | "bool"
        | "timestamp"
        | "timestamptz"
        | "time"
        | "timetz" => Measure::Bounded,
        "text" | "character varying" | "varchar" | "character" | "bpchar" | "name" | "bytea"
        | "citext" => Measure::OctetLength,
        "json" | "xml" => Measure::TextLength,
        _ => Measure::StoredSize,
    }
}

fn size_sql(measure: Measure, value: &str) -> Option<String> {
    match measure {
        Measure::Bounded => None,
        Measure::OctetLength => Some(format!("octet_length({value})")),
        Measure::TextLength => Some(format!("octet_length(({value})::text)")),
        Measure::StoredSize => Some(format!("pg_column_size({value})")),
    }
}

/// The SELECT list of a chunk under the limit: `columns` (names, with `types` named as
/// `names` says, or empty when unknown) read through `value` (the SQL of a column by
/// name), each variable-width one guarded, and aliased back to its name. `None` when no
/// column needs a guard.
pub fn guarded_select_list(
    columns: &[String],
    types: &[String],
    names: TypeNames,
    value: impl Fn(&str) -> String,
    key_sql: &str,
    limit: u64,
) -> Option<String> {
    let mut any = false;
    let items: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let v = value(column);
            let measured = types
                .get(i)
                .map_or(Measure::StoredSize, |t| measure(t, names, limit));
            let Some(size) = size_sql(measured, &v) else {
                return format!("{v} AS {}", Quoted(column));
            };
            any = true;
            // The scalar subquery has the column's own type, so the CASE keeps it; its
            // WHERE is the failing cast, reached only for an over-limit value.
            format!(
                "CASE WHEN {size} > {limit} THEN (SELECT {v} WHERE ('{MARKER} {i} ' || \
                 ({size})::text || ' ' || coalesce(({key_sql})::text, 'NULL'))::integer > 0) \
                 ELSE {v} END AS {}",
                Quoted(column)
            )
        })
        .collect();
    any.then(|| items.join(", "))
}

/// A value over `output.maxValueBytes`, read back from the server's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueTooLarge {
    /// The column's name.
    pub column: String,
    /// The value's size as measured, in bytes.
    pub bytes: u64,
    /// The row's key, as text, control characters escaped and cut to 200 characters.
    pub key: String,
}

/// Reads a [`ValueTooLarge`] from the message of a failed cast (SQLSTATE 22P02), or `None`
/// when the message is not the guard's. The column comes from `columns` by position (the
/// message is the server's, and its text is data: only the numbers are taken from it).
pub fn read_error(message: &str, columns: &[String]) -> Option<ValueTooLarge> {
    let start = message.find(MARKER)? + MARKER.len();
    let rest = message[start..].strip_prefix(' ')?;
    // Postgres quotes the input: `invalid input syntax for type integer: "<marker> ..."`.
    let rest = rest.strip_suffix('"').unwrap_or(rest);
    let mut fields = rest.splitn(3, ' ');
    let index: usize = fields.next()?.parse().ok()?;
    let bytes: u64 = fields.next()?.parse().ok()?;
    let key = fields.next()?;
    let column = columns.get(index)?.clone();
    let mut shown: String = key
        .chars()
        .take(SHOWN_KEY_CHARS)
        .collect::<String>()
        .escape_debug()
        .collect();
    if key.chars().nth(SHOWN_KEY_CHARS).is_some() {
        shown.push('…');
    }
    Some(ValueTooLarge {
        column,
        bytes,
        key: shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fixed_width_columns_are_not_guarded_and_text_is_measured_exactly() {
        let list = guarded_select_list(
            &cols(&["id", "note", "doc", "tags"]),
            &cols(&["bigint", "character varying(300)", "jsonb", "text[]"]),
            TypeNames::Catalog,
            |c| Quoted(c).to_string(),
            "\"id\"",
            1024,
        )
        .unwrap();
        assert!(list.starts_with("\"id\" AS \"id\", CASE WHEN octet_length(\"note\") > 1024"));
        assert!(list.contains("pg_column_size(\"doc\") > 1024"), "{list}");
        assert!(list.contains("pg_column_size(\"tags\") > 1024"), "{list}");
        assert!(list.contains("'reportjob-max-value-bytes 1 '"), "{list}");
        assert!(list.ends_with("ELSE \"tags\" END AS \"tags\""), "{list}");
    }

    #[test]
    fn a_type_that_bounds_its_values_within_the_limit_is_not_measured() {
        // 4 bytes per character at most: char(84) and varchar(256) fit 1 KiB, varchar(257)
        // does not; a numeric's text is at most 147,457 bytes. Without a modifier the type
        // is measured as before.
        assert_eq!(
            measure("character(84)", TypeNames::Catalog, 1024),
            Measure::Bounded
        );
        assert_eq!(
            measure("character varying(256)", TypeNames::Catalog, 1024),
            Measure::Bounded
        );
        assert_eq!(
            measure("character varying(257)", TypeNames::Catalog, 1024),
            Measure::OctetLength
        );
        assert_eq!(
            measure("character varying", TypeNames::Catalog, 1 << 30),
            Measure::OctetLength
        );
        assert_eq!(
            measure("bpchar", TypeNames::Catalog, 1 << 30),
            Measure::OctetLength
        );
        assert_eq!(
            measure("character varying(20)[]", TypeNames::Catalog, 1 << 30),
            Measure::StoredSize
        );
        assert_eq!(
            measure("numeric(12,2)", TypeNames::Catalog, 64 << 20),
            Measure::Bounded
        );
        assert_eq!(
            measure("numeric(12,2)", TypeNames::Catalog, 147_457),
            Measure::Bounded
        );
        assert_eq!(
            measure("numeric(12,2)", TypeNames::Catalog, 147_456),
            Measure::StoredSize
        );
        assert_eq!(
            measure("numeric", TypeNames::Catalog, 1 << 30),
            Measure::StoredSize
        );
        assert_eq!(
            measure("NUMERIC", TypeNames::Catalog, 1 << 30),
            Measure::StoredSize
        );
        // A query's columns are named by the driver, unqualified: a composite type named
        // "character(84)" in another schema would look like the built-in.
        assert_eq!(
            measure("character(84)", TypeNames::Driver, 1024),
            Measure::OctetLength
        );
        assert_eq!(
            measure("numeric(12,2)", TypeNames::Driver, 64 << 20),
            Measure::StoredSize
        );
        assert_eq!(
            measure("character varying(x)", TypeNames::Catalog, 1 << 30),
            Measure::OctetLength
        );
        assert_eq!(
            measure(
                "character varying(99999999999999999999)",
                TypeNames::Catalog,
                1 << 30
            ),
            Measure::OctetLength
        );
    }

    #[test]
    fn only_bounded_columns_need_no_guard() {
        assert_eq!(
            guarded_select_list(
                &cols(&["id", "at"]),
                &cols(&["integer", "timestamp with time zone"]),
                TypeNames::Catalog,
                |c| Quoted(c).to_string(),
                "\"id\"",
                1024
            ),
            None
        );
    }

    #[test]
    fn unknown_types_are_measured_by_their_stored_size() {
        let list = guarded_select_list(
            &cols(&["x"]),
            &[],
            TypeNames::Driver,
            |c| format!("rj_src.{}", Quoted(c)),
            "k",
            2048,
        )
        .unwrap();
        assert!(
            list.starts_with("CASE WHEN pg_column_size(rj_src.\"x\") > 2048"),
            "{list}"
        );
    }

    #[test]
    fn the_servers_message_is_read_back_by_position_and_numbers() {
        let columns = cols(&["id", "payload"]);
        let message = "invalid input syntax for type integer: \
                       \"reportjob-max-value-bytes 1 300000000 42\"";
        assert_eq!(
            read_error(message, &columns),
            Some(ValueTooLarge {
                column: "payload".into(),
                bytes: 300_000_000,
                key: "42".into()
            })
        );
        // A key with spaces and control characters is kept whole, escaped.
        let message = "invalid input syntax for type integer: \
                       \"reportjob-max-value-bytes 0 2000 a b\u{1b}[31m\"";
        assert_eq!(read_error(message, &columns).unwrap().key, "a b\\u{1b}[31m");
    }

    #[test]
    fn other_messages_and_forged_positions_are_not_read() {
        let columns = cols(&["id"]);
        assert_eq!(
            read_error("invalid input syntax for type integer: \"x\"", &columns),
            None
        );
        assert_eq!(
            read_error("\"reportjob-max-value-bytes 7 10 1\"", &columns),
            None,
            "a position past the columns"
        );
        assert_eq!(
            read_error("\"reportjob-max-value-bytes x 10 1\"", &columns),
            None
        );
    }
}
