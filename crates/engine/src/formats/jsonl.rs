//! JSON Lines parts: each row one object, keys in column order, byte for byte what
//! Postgres's `row_to_json` writes. The chunk's columns stream as `COPY` text and the
//! worker writes the objects, so the server does no more than for CSV; only the values
//! whose JSON form takes Postgres's own rules come as JSON from the server.
//!
//! Per column type (as the plan names it):
//! - `smallint`, `integer`, `bigint`: the number as Postgres writes it.
//! - `real`, `double precision`, and `numeric` with `numericAsNumber`: the number as
//!   Postgres writes it when that is a JSON number, else a string (`"NaN"`, `"Infinity"`),
//!   as `to_json` does.
//! - `numeric` without `numericAsNumber`: a string of its text, so that readers that parse
//!   numbers as doubles cannot round it.
//! - `boolean`: `true`, `false`.
//! - `text`, `varchar`, `char(n)`, `uuid`: a JSON string, escaped as Postgres's
//!   `escape_json` does (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters
//!   as `\u00XX`; nothing else).
//! - Anything else (`json`, `jsonb`, dates, timestamps in `output.timeZone`, `bytea`,
//!   arrays, domains, enums, ...): selected as `to_json(column)` (`numeric[]` without
//!   `numericAsNumber` as `to_json(column::text[])`), the value `row_to_json` would write,
//!   embedded as the server wrote it.
//! - NULL: `null`.
//!
//! The `COPY` text format escapes a backslash as `\\` and line breaks and tabs as `\n`,
//! `\r`, `\t`; a row ends at an unescaped `\n`. Inside a value Postgres sent as JSON, a line
//! break or tab can only be whitespace between tokens (JSON strings hold none raw), so it is
//! written as a space: each object stays on one line and means the same JSON.

use reportjob_core::ident::Quoted;
use reportjob_core::plan::PlannedSource;

/// How one column's `COPY` text becomes its JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonKind {
    /// An integer: its text is a JSON number.
    Integer,
    /// A number whose text is a JSON number or else a string (`NaN`, `Infinity`).
    Number,
    /// A string of the value's text.
    Text,
    /// `t` or `f`.
    Bool,
    /// JSON text the server wrote (`to_json`).
    Json,
}

/// The kind of a column of type `type_name` (as `format_type` or the driver names it).
fn kind_of(type_name: &str, numeric_as_number: bool) -> JsonKind {
    let lower = type_name.trim().to_ascii_lowercase();
    if lower.ends_with("[]") {
        return JsonKind::Json;
    }
    let base = lower.split('(').next().unwrap_or_default().trim();
    match base {
        "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8" => JsonKind::Integer,
        "real" | "double precision" | "float4" | "float8" => JsonKind::Number,
        "numeric" | "decimal" if numeric_as_number => JsonKind::Number,
        "numeric" | "decimal" => JsonKind::Text,
        "boolean" | "bool" => JsonKind::Bool,
        "text" | "character varying" | "varchar" | "character" | "bpchar" | "uuid" => {
            JsonKind::Text
        }
        _ => JsonKind::Json,
    }
}

/// Whether a `numeric[]` column (by its type name) is written as strings.
fn is_numeric_array(type_name: &str) -> bool {
    let lower = type_name.trim().to_ascii_lowercase();
    lower
        .strip_suffix("[]")
        .map(|base| {
            base.split('(')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .is_some_and(|base| base == "numeric" || base == "decimal")
}

/// The SELECT whose `COPY` text rows (in `chunk_query`'s order) a JSON Lines part is written
/// from: plain columns, and `to_json` of those whose JSON form is Postgres's.
pub fn select_columns(
    chunk_query: &str,
    planned: &PlannedSource,
    numeric_as_number: bool,
) -> Result<String, String> {
    planned.check_column_types()?;
    let exprs: Vec<String> = planned
        .columns
        .iter()
        .zip(&planned.column_types)
        .map(|(column, type_name)| {
            let q = Quoted(column);
            match kind_of(type_name, numeric_as_number) {
                JsonKind::Json if !numeric_as_number && is_numeric_array(type_name) => {
                    format!("to_json(rj_chunk.{q}::text[]) AS {q}")
                }
                JsonKind::Json => format!("to_json(rj_chunk.{q}) AS {q}"),
                _ => format!("rj_chunk.{q}"),
            }
        })
        .collect();
    Ok(format!(
        "SELECT {} FROM (\n{chunk_query}\n) AS rj_chunk",
        exprs.join(", ")
    ))
}

/// Writes JSON Lines from `COPY` text rows, counting rows.
#[derive(Clone, Debug)]
pub struct JsonlStream {
    /// What opens each column's value: `{"id":` for the first, `,"name":` for the others.
    keys: Vec<Vec<u8>>,
    kinds: Vec<JsonKind>,
    /// The unfinished row at the end of the last piece.
    carry: Vec<u8>,
    rows: u64,
}

impl JsonlStream {
    /// A stream for rows of `planned`'s columns.
    pub fn new(planned: &PlannedSource, numeric_as_number: bool) -> Result<JsonlStream, String> {
        planned.check_column_types()?;
        let keys = planned
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let mut key = Vec::with_capacity(column.len() + 4);
                key.push(if i == 0 { b'{' } else { b',' });
                push_string(&mut key, column.as_bytes())?;
                key.push(b':');
                Ok(key)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let kinds = planned
            .column_types
            .iter()
            .map(|t| kind_of(t, numeric_as_number))
            .collect();
        Ok(JsonlStream {
            keys,
            kinds,
            carry: Vec::new(),
            rows: 0,
        })
    }

    /// Appends the JSON Lines bytes of the rows `bytes` completes to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.reserve(bytes.len() + bytes.len() / 2);
        let mut carry = std::mem::take(&mut self.carry);
        let done = super::complete_lines(&mut carry, bytes, |line| self.row(line, out));
        self.carry = carry;
        done
    }

    /// Writes one row (without its line feed) as one object and a line feed.
    fn row(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut fields = line.split(|&b| b == b'\t');
        for (key, &kind) in self.keys.iter().zip(&self.kinds) {
            let field = fields.next().ok_or_else(|| {
                format!(
                    "a row has fewer than the {} columns of the plan",
                    self.keys.len()
                )
            })?;
            out.extend_from_slice(key);
            if field == b"\\N" {
                out.extend_from_slice(b"null");
                continue;
            }
            match kind {
                JsonKind::Integer => out.extend_from_slice(field),
                JsonKind::Number if is_json_number(field) => out.extend_from_slice(field),
                JsonKind::Number | JsonKind::Text => push_string(out, field)?,
                JsonKind::Bool => out.extend_from_slice(match field {
                    b"t" => b"true",
                    b"f" => b"false",
                    _ => return Err("a boolean is neither t nor f".into()),
                }),
                JsonKind::Json => push_json(out, field)?,
            }
        }
        if fields.next().is_some() || self.keys.is_empty() {
            return Err(format!(
                "a row has more than the {} columns of the plan",
                self.keys.len()
            ));
        }
        out.extend_from_slice(b"}\n");
        self.rows += 1;
        Ok(())
    }

    /// Rows completed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// True when the stream ended at the end of a row.
    pub fn at_boundary(&self) -> bool {
        self.carry.is_empty()
    }
}

/// Bytes a JSON string cannot hold as they are in `COPY` text: the backslash (a `COPY`
/// escape), the quote and control characters.
const fn string_specials() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'\\' as usize] = true;
    table[b'"' as usize] = true;
    table
}

static STRING_SPECIAL: [bool; 256] = string_specials();

/// Appends the `COPY` text field `field` as a JSON string, escaped as `escape_json` does.
fn push_string(out: &mut Vec<u8>, field: &[u8]) -> Result<(), String> {
    out.push(b'"');
    let mut plain = 0;
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if !STRING_SPECIAL[b as usize] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&field[plain..i]);
        let mut width = 1;
        // The character the bytes stand for: a `COPY` escape is two bytes.
        let c = if b == b'\\' {
            width = 2;
            match field.get(i + 1) {
                Some(b'\\') => b'\\',
                Some(b'n') => b'\n',
                Some(b'r') => b'\r',
                Some(b't') => b'\t',
                Some(b'b') => 0x08,
                Some(b'f') => 0x0c,
                Some(b'v') => 0x0b,
                Some(&other) => return Err(copy_escape(other)),
                None => return Err("a field ends in a lone backslash".into()),
            }
        } else {
            b
        };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(control >> 4)]);
                out.push(HEX[usize::from(control & 0xf)]);
            }
        }
        i += width;
        plain = i;
    }
    out.extend_from_slice(&field[plain..]);
    out.push(b'"');
    Ok(())
}

/// Appends JSON text the server wrote (a `COPY` text field): `\\` is a backslash; an
/// escaped line break or tab, whitespace between tokens, becomes a space.
fn push_json(out: &mut Vec<u8>, field: &[u8]) -> Result<(), String> {
    let mut rest = field;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..at]);
        match rest.get(at + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n' | b'r' | b't') => out.push(b' '),
            Some(&other) => return Err(copy_escape(other)),
            None => return Err("a field ends in a lone backslash".into()),
        }
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

fn copy_escape(c: u8) -> String {
    format!(
        "the COPY stream holds the escape \\{}, which it does not write for this value",
        char::from(c).escape_default()
    )
}

/// Whether `text` is a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), as
/// Postgres's `IsValidJsonNumber` decides.
fn is_json_number(text: &[u8]) -> bool {
    let digits = |s: &[u8], at: usize| s[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = usize::from(text.first() == Some(&b'-'));
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(text, i),
        _ => return false,
    }
    if text.get(i) == Some(&b'.') {
        let n = digits(text, i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(text, i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == text.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reportjob_core::plan::KeyType;

    fn planned(columns: &[(&str, &str)]) -> PlannedSource {
        PlannedSource {
            description: "t".into(),
            table: None,
            key_column: "id".into(),
            key_type: KeyType::Integer,
            columns: columns.iter().map(|(c, _)| c.to_string()).collect(),
            spec_digest: String::new(),
            parameters: Vec::new(),
            column_types: columns.iter().map(|(_, t)| t.to_string()).collect(),
        }
    }

    #[test]
    fn only_values_whose_json_is_postgres_s_are_selected_as_json() {
        let p = planned(&[
            ("id", "integer"),
            ("Amount", "numeric(12,2)"),
            ("xs", "NUMERIC[]"),
            ("at", "timestamp with time zone"),
            ("j", "jsonb"),
            ("t", "character varying(20)"),
        ]);
        assert_eq!(
            select_columns("Q", &p, false).unwrap(),
            "SELECT rj_chunk.\"id\", rj_chunk.\"Amount\", to_json(rj_chunk.\"xs\"::text[]) AS \"xs\", \
             to_json(rj_chunk.\"at\") AS \"at\", to_json(rj_chunk.\"j\") AS \"j\", rj_chunk.\"t\" \
             FROM (\nQ\n) AS rj_chunk"
        );
        assert!(
            select_columns("Q", &p, true)
                .unwrap()
                .contains("to_json(rj_chunk.\"xs\") AS \"xs\"")
        );
        let mut old = p.clone();
        old.column_types.clear();
        assert!(select_columns("Q", &old, false).is_err());
    }

    fn stream(columns: &[(&str, &str)], numeric_as_number: bool) -> JsonlStream {
        JsonlStream::new(&planned(columns), numeric_as_number).unwrap()
    }

    #[test]
    fn rows_become_objects_as_row_to_json_writes_them_across_pieces() {
        let mut s = stream(
            &[
                ("id", "bigint"),
                ("f", "double precision"),
                ("n", "numeric"),
                ("ok", "boolean"),
                ("note \"q\"", "text"),
                ("j", "json"),
            ],
            false,
        );
        let mut out = Vec::new();
        s.feed(
            b"1\t-0\t1.50\tt\ta\\\\b \"c\"\\n\\t\x01\xc3\xa9\t{\"k\":\\n [1, \"x\\\\\"y\"]}\n2\tNa",
            &mut out,
        )
        .unwrap();
        assert!(!s.at_boundary());
        s.feed(b"N\t\\N\tf\t\t\"s\"\n", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"f\":-0,\"n\":\"1.50\",\"ok\":true,\"note \\\"q\\\"\":\"a\\\\b \\\"c\\\"\\n\\t\\u0001é\",\"j\":{\"k\":  [1, \"x\\\"y\"]}}\n\
             {\"id\":2,\"f\":\"NaN\",\"n\":null,\"ok\":false,\"note \\\"q\\\"\":\"\",\"j\":\"s\"}\n"
        );
        assert_eq!(s.rows(), 2);
        assert!(s.at_boundary());
    }

    #[test]
    fn numbers_are_json_numbers_only_when_they_are() {
        for good in [
            "0", "-0", "12", "1.5", "-1e+30", "5e-324", "1E5", "0.000001",
        ] {
            assert!(is_json_number(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "NaN",
            "Infinity",
            "-Infinity",
            "1e",
            "1e+",
            "+1",
            "1 ",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
        let mut s = stream(&[("n", "numeric")], true);
        let mut out = Vec::new();
        s.feed(b"123.4500\nNaN\n-Infinity\n", &mut out).unwrap();
        assert_eq!(
            out,
            b"{\"n\":123.4500}\n{\"n\":\"NaN\"}\n{\"n\":\"-Infinity\"}\n"
        );
    }

    #[test]
    fn a_row_that_does_not_fit_the_plan_is_refused() {
        let mut s = stream(&[("a", "integer"), ("b", "boolean")], false);
        assert!(s.feed(b"1\n", &mut Vec::new()).is_err(), "too few fields");
        assert!(s.feed(b"1\tt\t3\n", &mut Vec::new()).is_err(), "too many");
        assert!(
            s.feed(b"1\tyes\n", &mut Vec::new()).is_err(),
            "not a boolean"
        );
        let mut j = stream(&[("j", "json")], false);
        assert!(
            j.feed(b"{\\x}\n", &mut Vec::new()).is_err(),
            "an escape COPY never writes in JSON"
        );
    }
}
