//! The CSV part stream: Postgres's `COPY ... (FORMAT csv)` bytes passed on as they are,
//! records counted (a record ends at a `\n` outside quotes) and, for `lineEnding: crlf`,
//! each record's `\n` written as `\r\n`. Line breaks inside quoted values stay as stored.

use crate::csv_encode::RecordCounter;

/// Counts records and rewrites record endings when asked.
#[derive(Clone, Debug)]
pub struct CsvStream {
    crlf: bool,
    counter: RecordCounter,
    in_quotes: bool,
}

impl CsvStream {
    /// A stream writing `\r\n` record endings when `crlf`.
    pub fn new(crlf: bool) -> CsvStream {
        CsvStream {
            crlf,
            counter: RecordCounter::default(),
            in_quotes: false,
        }
    }

    /// Whether the part bytes are the streamed bytes unchanged (`\n` record ends).
    pub fn passes_through(&self) -> bool {
        !self.crlf
    }

    /// Counts the records of `bytes` and, for CRLF, appends its part bytes to `out` (with
    /// `\n` record ends nothing is appended: the part bytes are `bytes` themselves).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.counter.feed(bytes);
        if !self.crlf {
            return;
        }
        let mut start = 0;
        for pos in memchr::memchr2_iter(b'"', b'\n', bytes) {
            if bytes[pos] == b'"' {
                self.in_quotes = !self.in_quotes;
            } else if !self.in_quotes {
                out.extend_from_slice(&bytes[start..pos]);
                out.extend_from_slice(b"\r\n");
                start = pos + 1;
            }
        }
        out.extend_from_slice(&bytes[start..]);
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
        let mut s = CsvStream::new(crlf);
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
}
