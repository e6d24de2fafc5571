//! The CSV part stream: Postgres's `COPY ... (FORMAT csv)` bytes passed on as they are,
//! records counted (a record ends at a `\n` outside quotes) and, when asked, rewritten in one
//! streaming pass: each record's `\n` written as `\r\n` (`lineEnding: crlf`; line breaks
//! inside quoted values stay as stored), and a `'` put before the first character of a field
//! that a spreadsheet would read as a formula (`escapeFormulas`). Everything else is
//! Postgres's bytes, so the report stays exact apart from what was asked.

use crate::csv_encode::RecordCounter;

use reportjob_core::api::valid::FORMULA_STARTS;

/// `text` with a `'` in front when it starts like a formula.
pub fn escape_formula(text: &str) -> String {
    match text.as_bytes().first() {
        Some(b) if FORMULA_STARTS.contains(b) => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// Where the rewriting pass is in Postgres's CSV: fields are unquoted (no quote, delimiter or
/// line break inside: Postgres quotes those) or quoted, with `""` for a quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The next byte is the first of a field.
    FieldStart,
    /// The next byte is the first inside a quoted field's opening quote.
    QuotedStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Right after a quote inside a quoted field: a second quote continues the field, any
    /// other byte (a delimiter or the record's end) follows its closing quote.
    QuoteSeen,
}

/// Counts records and rewrites record endings and formula-like field starts when asked.
#[derive(Clone, Debug)]
pub struct CsvStream {
    crlf: bool,
    escape: bool,
    delimiter: u8,
    counter: RecordCounter,
    at: At,
}

impl CsvStream {
    /// A stream writing `\r\n` record endings when `crlf` and escaping formula-like fields
    /// when `escape`, over fields separated by `delimiter` (one ASCII character).
    pub fn new(crlf: bool, escape: bool, delimiter: char) -> CsvStream {
        CsvStream {
            crlf,
            escape,
            delimiter: u8::try_from(delimiter).unwrap_or(b','),
            counter: RecordCounter::default(),
            at: At::FieldStart,
        }
    }

    /// Whether the part bytes are the streamed bytes unchanged (`\n` record ends, no
    /// escaping).
    pub fn passes_through(&self) -> bool {
        !self.crlf && !self.escape
    }

    /// Counts the records of `bytes` and, when rewriting, appends its part bytes to `out`
    /// (when passing through nothing is appended: the part bytes are `bytes` themselves).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.counter.feed(bytes);
        if self.passes_through() {
            return;
        }
        let (n, mut pos, mut copied) = (bytes.len(), 0, 0);
        let formula = |b: u8| FORMULA_STARTS.contains(&b);
        while pos < n {
            match self.at {
                At::FieldStart => {
                    if bytes[pos] == b'"' {
                        pos += 1;
                        self.at = At::QuotedStart;
                    } else {
                        if self.escape && formula(bytes[pos]) {
                            out.extend_from_slice(&bytes[copied..pos]);
                            out.push(b'\'');
                            copied = pos;
                        }
                        self.at = At::Unquoted;
                    }
                }
                At::QuotedStart => {
                    if self.escape && formula(bytes[pos]) {
                        out.extend_from_slice(&bytes[copied..pos]);
                        out.push(b'\'');
                        copied = pos;
                    }
                    self.at = At::Quoted;
                }
                At::Unquoted => match memchr::memchr2(self.delimiter, b'\n', &bytes[pos..]) {
                    None => pos = n,
                    Some(k) => {
                        let end = pos + k;
                        if bytes[end] == b'\n' && self.crlf {
                            out.extend_from_slice(&bytes[copied..end]);
                            out.extend_from_slice(b"\r\n");
                            copied = end + 1;
                        }
                        pos = end + 1;
                        self.at = At::FieldStart;
                    }
                },
                At::Quoted => match memchr::memchr(b'"', &bytes[pos..]) {
                    None => pos = n,
                    Some(k) => {
                        pos += k + 1;
                        self.at = At::QuoteSeen;
                    }
                },
                At::QuoteSeen => {
                    if bytes[pos] == b'"' {
                        pos += 1;
                        self.at = At::Quoted;
                    } else {
                        self.at = At::Unquoted;
                    }
                }
            }
        }
        out.extend_from_slice(&bytes[copied..]);
    }

    /// Records completed so far.
    pub fn records(&self) -> u64 {
        self.counter.records()
    }

    /// True when the stream ended at a record boundary.
    pub fn at_boundary(&self) -> bool {
        self.counter.at_boundary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(crlf: bool, pieces: &[&[u8]]) -> (Vec<u8>, u64, bool) {
        let mut s = CsvStream::new(crlf, false, ',');
        let mut out = Vec::new();
        for p in pieces {
            s.feed(p, &mut out);
        }
        (out, s.records(), s.at_boundary())
    }

    #[test]
    fn crlf_rewrites_record_ends_only() {
        let pieces: [&[u8]; 3] = [
            b"1,\"multi\nli",
            b"ne\",x\n2,\"q \"\"",
            b"\n\"\"\",y\n3,,\n",
        ];
        let (out, rows, ok) = run(true, &pieces);
        assert_eq!(
            out,
            b"1,\"multi\nline\",x\r\n2,\"q \"\"\n\"\"\",y\r\n3,,\r\n".to_vec()
        );
        assert_eq!((rows, ok), (3, true));
        let (out, rows, _) = run(false, &pieces);
        assert!(out.is_empty(), "passed through, not copied");
        assert_eq!(rows, 3);
    }

    #[test]
    fn a_stream_ending_in_quotes_is_not_at_a_boundary() {
        let (_, rows, ok) = run(true, &[b"1,\"open\n"]);
        assert_eq!((rows, ok), (0, false));
    }

    fn escaped(crlf: bool, delimiter: char, pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = CsvStream::new(crlf, true, delimiter);
        let mut out = Vec::new();
        for p in pieces {
            s.feed(p, &mut out);
        }
        out
    }

    #[test]
    fn formula_starts_get_a_quote_in_front_and_nothing_else_changes() {
        let input: &[u8] =
            b"1,=1+1,\"=HYPERLINK(\"\"x\"\")\",+a,-5,@SUM(A1),plain,,\"\"\n2,\"\tt\",\"\rcr\",a=b,\"x\ny\",\"\"\"=q\"\n";
        let want: &[u8] =
            b"1,'=1+1,\"'=HYPERLINK(\"\"x\"\")\",'+a,'-5,'@SUM(A1),plain,,\"\"\n2,\"'\tt\",\"'\rcr\",a=b,\"x\ny\",\"\"\"=q\"\n";
        assert_eq!(escaped(false, ',', &[input]), want.to_vec());
        // Cut anywhere, the result is the same.
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(escaped(false, ',', &[a, b]), want.to_vec(), "cut at {cut}");
        }
        // With CRLF record ends, both rewrites at once (inner line breaks stay).
        let want_crlf: Vec<u8> = String::from_utf8(want.to_vec())
            .unwrap()
            .replace(",\"\"\n2", ",\"\"\r\n2")
            .replace("=q\"\n", "=q\"\r\n")
            .into_bytes();
        assert_eq!(escaped(true, ',', &[input]), want_crlf);
        // Another delimiter: a field starts after it.
        assert_eq!(
            escaped(false, ';', &[b"=a;-b,c\n"]),
            b"'=a;'-b,c\n".to_vec()
        );
        // A quoted field's second quote (an escaped quote at its start) is not a start.
        assert_eq!(
            escaped(false, ',', &[b"\"\"\"\",x\n"]),
            b"\"\"\"\",x\n".to_vec()
        );
    }

    #[test]
    fn header_names_are_escaped_by_the_same_rule() {
        assert_eq!(escape_formula("=cmd"), "'=cmd");
        assert_eq!(escape_formula("\tname"), "'\tname");
        assert_eq!(escape_formula("total"), "total");
        assert_eq!(escape_formula(""), "");
    }
}
