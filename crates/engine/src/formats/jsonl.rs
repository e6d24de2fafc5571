//! JSON Lines parts, produced by Postgres: each row becomes `row_to_json` of a row whose
//! columns are the exported ones in order, streamed with `COPY (...) TO STDOUT` (text
//! format) and unescaped here.
//!
//! Why Postgres and not an encoder of our own over `COPY ... (FORMAT binary)`: the server's
//! JSON output is the one its own `to_json` documents and is byte-for-byte deterministic,
//! it streams at `COPY` speed with no per-value decoding in the client, and it already
//! does what the format asks: keys in column order; integers and floats as JSON numbers
//! (NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, since JSON has
//! no such numbers); `json`/`jsonb` embedded as JSON; arrays as JSON arrays; NULL as `null`;
//! `date` as `"YYYY-MM-DD"`; `timestamptz` as RFC 3339 with the offset of `output.timeZone`
//! (`"2024-05-01T12:00:00.5+02:00"`) and `timestamp` as the same without an offset; `bytea`
//! as its hex text `"\\x0102"`; everything else as its text. What we add is one cast:
//! `numeric` (and `numeric[]`) columns are cast to text unless `numericAsNumber`, so readers
//! that parse numbers as doubles cannot round them.
//!
//! The text format escapes a backslash as `\\` and a line break or tab as `\n`, `\r`, `\t`;
//! a row ends at an unescaped `\n`. JSON text holds no raw control characters inside
//! strings (Postgres escapes them, and its `json` input refuses them), so an escaped line
//! break or tab can only be whitespace between tokens of an embedded `json` value: it is
//! written as a space, which keeps each object on one line and means the same JSON.

use reportjob_core::ident::Quoted;
use reportjob_core::plan::PlannedSource;

/// The SELECT that turns the rows of `chunk_query` into one JSON object each, in order.
pub fn select_objects(
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
            let cast = match numeric_text_cast(type_name) {
                Some(cast) if !numeric_as_number => cast,
                _ => "",
            };
            let q = Quoted(column);
            format!("rj_chunk.{q}{cast} AS {q}")
        })
        .collect();
    Ok(format!(
        "SELECT row_to_json(rj_row) FROM (SELECT {} FROM (\n{chunk_query}\n) AS rj_chunk) AS rj_row",
        exprs.join(", ")
    ))
}

/// The cast that writes a `numeric` (or `numeric[]`) column as text, for a type as
/// `format_type` (`numeric(12,2)[]`) or the driver (`NUMERIC[]`) names it.
fn numeric_text_cast(type_name: &str) -> Option<&'static str> {
    let t = type_name.trim().to_ascii_lowercase();
    let (base, array) = match t.strip_suffix("[]") {
        Some(base) => (base, true),
        None => (t.as_str(), false),
    };
    let base = base.split('(').next().unwrap_or_default().trim();
    matches!(base, "numeric" | "decimal").then_some(if array { "::text[]" } else { "::text" })
}

/// Unescapes `COPY` text lines of one JSON value each into JSON Lines, counting rows.
#[derive(Clone, Debug, Default)]
pub struct JsonlStream {
    rows: u64,
    /// A backslash ended the last piece.
    escape: bool,
    /// Bytes of an unfinished row have been seen.
    in_row: bool,
}

impl JsonlStream {
    /// Appends the JSON Lines bytes for `bytes` to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut i = 0;
        if self.escape && !bytes.is_empty() {
            self.escape = false;
            out.push(unescape(bytes[0])?);
            i = 1;
        }
        while i < bytes.len() {
            let rest = &bytes[i..];
            let Some(pos) = memchr::memchr2(b'\\', b'\n', rest) else {
                out.extend_from_slice(rest);
                self.in_row = true;
                break;
            };
            out.extend_from_slice(&rest[..pos]);
            if rest[pos] == b'\n' {
                if pos == 0 && !self.in_row {
                    return Err("the COPY stream holds an empty line, not a JSON object".into());
                }
                out.push(b'\n');
                self.rows += 1;
                self.in_row = false;
                i += pos + 1;
            } else {
                self.in_row = true;
                match rest.get(pos + 1) {
                    Some(&c) => {
                        out.push(unescape(c)?);
                        i += pos + 2;
                    }
                    None => {
                        self.escape = true;
                        i += pos + 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows completed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// True when the stream ended at the end of a row.
    pub fn at_boundary(&self) -> bool {
        !self.escape && !self.in_row
    }
}

/// The byte a `COPY` text escape `\<c>` stands for in a JSON Lines row.
fn unescape(c: u8) -> Result<u8, String> {
    match c {
        b'\\' => Ok(b'\\'),
        b'n' | b'r' | b't' => Ok(b' '),
        other => Err(format!(
            "the COPY stream holds the escape \\{}, which no JSON text produces",
            char::from(other).escape_default()
        )),
    }
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
    fn numeric_columns_are_cast_to_text_unless_asked() {
        let p = planned(&[
            ("id", "integer"),
            ("Amount", "numeric(12,2)"),
            ("xs", "NUMERIC[]"),
            ("d", "decimal"),
        ]);
        assert_eq!(
            select_objects("Q", &p, false).unwrap(),
            "SELECT row_to_json(rj_row) FROM (SELECT rj_chunk.\"id\" AS \"id\", rj_chunk.\"Amount\"::text AS \"Amount\", rj_chunk.\"xs\"::text[] AS \"xs\", rj_chunk.\"d\"::text AS \"d\" FROM (\nQ\n) AS rj_chunk) AS rj_row"
        );
        assert!(!select_objects("Q", &p, true).unwrap().contains("::text"));
        let mut old = p.clone();
        old.column_types.clear();
        assert!(select_objects("Q", &old, false).is_err());
    }

    #[test]
    fn copy_text_is_unescaped_across_pieces() {
        let mut s = JsonlStream::default();
        let mut out = Vec::new();
        s.feed(b"{\"a\":\"x\\\\", &mut out).unwrap();
        s.feed(b"\\\\\"}\n{\"j\":{\\n\"k\"", &mut out).unwrap();
        assert!(!s.at_boundary());
        s.feed(b":\\t1}}\n", &mut out).unwrap();
        assert_eq!(out, b"{\"a\":\"x\\\\\"}\n{\"j\":{ \"k\": 1}}\n".to_vec());
        assert_eq!(s.rows(), 2);
        assert!(s.at_boundary());
        let mut s = JsonlStream::default();
        s.feed(b"{}\\", &mut out).unwrap();
        assert!(!s.at_boundary());
        assert!(s.feed(b"N\n", &mut out).is_err());
    }
}
