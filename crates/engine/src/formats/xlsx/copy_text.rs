//! What a workbook's chunk worker reads: Postgres's `COPY ... TO STDOUT` text format of the
//! exported columns, `timestamptz` columns selected `AT TIME ZONE 'UTC'`, so that each
//! value is read as the server wrote it (`\N` for NULL, tab-separated, backslash escapes)
//! and the column types come from the plan. Every row ends at a raw `\n` (line breaks
//! inside values are escaped).

use reportjob_core::ident::Quoted;
use reportjob_core::plan::PlannedSource;

use super::cell::ColumnKind;

/// The SELECT whose rows (in `chunk_query`'s order) a workbook part holds.
pub fn select_rows(chunk_query: &str, planned: &PlannedSource) -> Result<String, String> {
    planned.check_column_types()?;
    let exprs: Vec<String> = planned
        .columns
        .iter()
        .zip(&planned.column_types)
        .map(|(column, type_name)| {
            let q = Quoted(column);
            if ColumnKind::is_timestamptz(type_name) {
                format!("(rj_chunk.{q} AT TIME ZONE 'UTC') AS {q}")
            } else {
                format!("rj_chunk.{q}")
            }
        })
        .collect();
    Ok(format!(
        "SELECT {} FROM (\n{chunk_query}\n) AS rj_chunk",
        exprs.join(", ")
    ))
}

/// Splits one row (without its `\n`) into its fields, unescaped into `buffers` (reused
/// between rows); `None` marks NULL. Fails on a wrong field count, an escape `COPY` never
/// writes, or bytes that are not UTF-8.
pub fn split_row<'b>(
    line: &[u8],
    expected: usize,
    buffers: &'b mut Vec<Vec<u8>>,
    nulls: &mut Vec<bool>,
) -> Result<Vec<Option<&'b str>>, String> {
    buffers.resize_with(expected, Vec::new);
    nulls.clear();
    let mut fields = 0usize;
    for raw in line.split(|&b| b == b'\t') {
        if fields == expected {
            return Err(format!("a row has more than {expected} fields"));
        }
        let out = &mut buffers[fields];
        out.clear();
        if raw == b"\\N" {
            nulls.push(true);
        } else {
            unescape(raw, out)?;
            nulls.push(false);
        }
        fields += 1;
    }
    if fields != expected {
        return Err(format!("a row has {fields} fields, expected {expected}"));
    }
    buffers[..expected]
        .iter()
        .zip(nulls.iter())
        .map(|(bytes, &null)| {
            if null {
                Ok(None)
            } else {
                std::str::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| format!("a value is not UTF-8: {e}"))
            }
        })
        .collect()
}

/// Appends the value of the escaped field `raw` to `out`.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..at]);
        let Some(&c) = rest.get(at + 1) else {
            return Err("a field ends in a lone backslash".into());
        };
        out.push(match c {
            b'\\' => b'\\',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            other => {
                return Err(format!(
                    "a field holds the escape \\{}, which COPY does not write",
                    char::from(other).escape_default()
                ));
            }
        });
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reportjob_core::plan::KeyType;

    #[test]
    fn timestamptz_columns_are_selected_in_utc() {
        let planned = PlannedSource {
            description: "t".into(),
            table: None,
            key_column: "id".into(),
            key_type: KeyType::Integer,
            columns: vec!["id".into(), "At".into(), "ts".into()],
            spec_digest: String::new(),
            parameters: Vec::new(),
            column_types: vec![
                "bigint".into(),
                "timestamp with time zone".into(),
                "timestamp without time zone".into(),
            ],
        };
        assert_eq!(
            select_rows("Q", &planned).unwrap(),
            "SELECT rj_chunk.\"id\", (rj_chunk.\"At\" AT TIME ZONE 'UTC') AS \"At\", rj_chunk.\"ts\" FROM (\nQ\n) AS rj_chunk"
        );
        let mut old = planned;
        old.column_types.clear();
        assert!(select_rows("Q", &old).is_err());
    }

    #[test]
    fn fields_are_unescaped_and_nulls_kept_apart_from_empty() {
        let mut buffers = Vec::new();
        let mut nulls = Vec::new();
        let row = split_row(
            b"1\t\\N\t\ta\\tb\\\\c\\nd\\re\tcaf\xc3\xa9",
            5,
            &mut buffers,
            &mut nulls,
        )
        .unwrap();
        assert_eq!(
            row,
            vec![
                Some("1"),
                None,
                Some(""),
                Some("a\tb\\c\nd\re"),
                Some("café")
            ]
        );
        assert!(split_row(b"1\t2", 3, &mut buffers, &mut nulls).is_err());
        assert!(split_row(b"1\t2\t3\t4", 3, &mut buffers, &mut nulls).is_err());
        assert!(split_row(b"a\\q", 1, &mut buffers, &mut nulls).is_err());
        assert!(split_row(b"a\\", 1, &mut buffers, &mut nulls).is_err());
        assert!(split_row(b"\xff", 1, &mut buffers, &mut nulls).is_err());
        assert_eq!(
            split_row(b"\\\\N", 1, &mut buffers, &mut nulls).unwrap(),
            vec![Some("\\N")]
        );
    }
}
