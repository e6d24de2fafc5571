//! CSV encoding details the engine owns: the header line (quoted exactly as Postgres's `COPY ...
//! CSV` quotes values, so header and rows follow one rule) and counting records in a CSV
//! byte stream whose fields may hold newlines.

/// Encodes one field as `COPY ... (FORMAT csv)` does: quoted when it contains the
/// delimiter, a quote, CR or LF, or equals the NULL string; quotes doubled.
pub fn push_field(out: &mut String, value: &str, delimiter: char, null_string: &str) {
    let needs_quotes = value.contains([delimiter, '"', '\r', '\n']) || value == null_string;
    if needs_quotes {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The header line for `columns`, ending in `\n`.
pub fn header_line(columns: &[String], delimiter: char, null_string: &str) -> String {
    let mut out = String::new();
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        push_field(&mut out, column, delimiter, null_string);
    }
    out.push('\n');
    out
}

/// Counts CSV records in a byte stream fed in pieces: a record ends at a `\n` outside
/// quotes. Doubled quotes inside a quoted field toggle the state twice, so they cancel.
#[derive(Clone, Debug, Default)]
pub struct RecordCounter {
    in_quotes: bool,
    records: u64,
}

impl RecordCounter {
    /// Feeds the next bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        for pos in memchr::memchr2_iter(b'"', b'\n', bytes) {
            if bytes[pos] == b'"' {
                self.in_quotes = !self.in_quotes;
            } else if !self.in_quotes {
                self.records += 1;
            }
        }
    }

    /// Records completed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// True when the stream ended at a record boundary.
    pub fn at_boundary(&self) -> bool {
        !self.in_quotes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_quotes_like_copy() {
        let cols = vec![
            "id".to_string(),
            "a,b".into(),
            "say \"hi\"".into(),
            "NULL".into(),
        ];
        assert_eq!(
            header_line(&cols, ',', ""),
            "id,\"a,b\",\"say \"\"hi\"\"\",NULL\n"
        );
        assert_eq!(
            header_line(&cols, ',', "NULL"),
            "id,\"a,b\",\"say \"\"hi\"\"\",\"NULL\"\n"
        );
        assert_eq!(
            header_line(&cols, '\t', ""),
            "id\ta,b\t\"say \"\"hi\"\"\"\tNULL\n"
        );
    }

    #[test]
    fn counter_ignores_newlines_in_quotes_across_pieces() {
        let mut c = RecordCounter::default();
        c.feed(b"1,\"multi\nline\",x\n2,\"quote \"\"");
        c.feed(b"\n\"\"\",y\n3,,\n");
        assert_eq!(c.records(), 3);
        assert!(c.at_boundary());
    }
}
