//! The framing of `COPY ... TO STDOUT (FORMAT binary)`: a signature and header, then rows
//! of length-prefixed fields, then a trailer. The bytes come from the server in pieces of
//! any size and are untrusted: every count and length is checked before it is used, and a
//! row is handed on only once it is complete. What the fields mean is [`super::pgvalue`]'s
//! business.

/// The signature that opens a binary `COPY` stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Longest field accepted (Postgres's own limit on a value, 1 GiB).
pub const MAX_FIELD: usize = 1 << 30;

/// Longest header extension accepted (Postgres sends none).
const MAX_HEADER_EXTENSION: usize = 1 << 16;

/// Where the decoder is in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Ended,
}

/// Splits a binary `COPY` stream into rows of `columns` fields each.
#[derive(Debug)]
pub struct BinaryRows {
    columns: usize,
    state: State,
    /// Bytes received and not yet consumed (at most one unfinished row, plus the piece
    /// that completes it).
    pending: Vec<u8>,
    /// Field ranges of the current row in `pending` (`None` for NULL), reused.
    fields: Vec<Option<(usize, usize)>>,
    rows: u64,
}

/// One complete row: its fields, `None` for NULL.
pub struct Row<'a> {
    data: &'a [u8],
    fields: &'a [Option<(usize, usize)>],
}

impl<'a> Row<'a> {
    /// Field `i`'s bytes, `None` for NULL (or past the last field).
    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        let (start, end) = (*self.fields.get(i)?)?;
        self.data.get(start..end)
    }

    /// How many fields the row has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the row has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl BinaryRows {
    /// A decoder for rows of `columns` fields.
    pub fn new(columns: usize) -> BinaryRows {
        BinaryRows {
            columns,
            state: State::Header,
            pending: Vec::new(),
            fields: Vec::with_capacity(columns),
            rows: 0,
        }
    }

    /// Rows handed on so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the stream ended with its trailer and nothing after it.
    pub fn at_end(&self) -> bool {
        self.state == State::Ended && self.pending.is_empty()
    }

    /// Takes the next piece of the stream and calls `on_row` for each row it completes.
    pub fn feed<E>(
        &mut self,
        bytes: &[u8],
        mut on_row: impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<String>,
    {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            match self.state {
                State::Header => match self.header(at) {
                    Ok(Some(end)) => {
                        at = end;
                        self.state = State::Rows;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(E::from(e)),
                },
                State::Rows => match self.row(at) {
                    Ok(Some(RowEnd::Row(end))) => {
                        let row = Row {
                            data: &self.pending[at..end],
                            fields: &self.fields,
                        };
                        if let Err(e) = on_row(&row) {
                            break Err(e);
                        }
                        self.rows += 1;
                        at = end;
                    }
                    Ok(Some(RowEnd::Trailer(end))) => {
                        at = end;
                        self.state = State::Ended;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(E::from(e)),
                },
                State::Ended => {
                    if at < self.pending.len() {
                        break Err(E::from(
                            "the binary COPY stream goes on after its trailer".to_string(),
                        ));
                    }
                    break Ok(());
                }
            }
        };
        self.pending.drain(..at);
        result
    }

    /// The end of the header starting at `at`, `None` when it is not all here yet.
    fn header(&self, at: usize) -> Result<Option<usize>, String> {
        let b = &self.pending[at..];
        if b.len() < SIGNATURE.len() + 8 {
            if !SIGNATURE.starts_with(&b[..b.len().min(SIGNATURE.len())]) {
                return Err("the COPY stream does not start with the binary signature".into());
            }
            return Ok(None);
        }
        if &b[..SIGNATURE.len()] != SIGNATURE {
            return Err("the COPY stream does not start with the binary signature".into());
        }
        let flags = be_i32(b, 11).unwrap_or(0);
        if flags & (1 << 16) != 0 {
            return Err("the binary COPY stream carries OIDs, which were not asked for".into());
        }
        let extension = be_i32(b, 15).unwrap_or(0);
        let extension = usize::try_from(extension)
            .ok()
            .filter(|n| *n <= MAX_HEADER_EXTENSION)
            .ok_or_else(|| {
                format!("the binary COPY header extension length {extension} is out of bounds")
            })?;
        let end = SIGNATURE.len() + 8 + extension;
        Ok((b.len() >= end).then_some(at + end))
    }

    /// The end of the row (or trailer) starting at `at`, `None` when it is not all here
    /// yet; fills `fields` with absolute ranges into `pending`.
    fn row(&mut self, at: usize) -> Result<Option<RowEnd>, String> {
        let b = &self.pending;
        let Some(count) = be_i16(b, at) else {
            return Ok(None);
        };
        if count == -1 {
            return Ok(Some(RowEnd::Trailer(at + 2)));
        }
        if usize::try_from(count).ok() != Some(self.columns) {
            return Err(format!(
                "a row of the binary COPY stream has {count} fields, expected {}",
                self.columns
            ));
        }
        self.fields.clear();
        let mut pos = at + 2;
        for _ in 0..self.columns {
            let Some(len) = be_i32(b, pos) else {
                return Ok(None);
            };
            pos += 4;
            if len == -1 {
                self.fields.push(None);
                continue;
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|n| *n <= MAX_FIELD)
                .ok_or_else(|| {
                    format!("a field length of {len} in the binary COPY stream is out of bounds")
                })?;
            if b.len() < pos + len {
                return Ok(None);
            }
            self.fields.push(Some((pos - at, pos - at + len)));
            pos += len;
        }
        Ok(Some(RowEnd::Row(pos)))
    }
}

enum RowEnd {
    Row(usize),
    Trailer(usize),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A binary COPY stream of `rows` (fields `None` for NULL), with its trailer.
    pub fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn collect(
        d: &mut BinaryRows,
        bytes: &[u8],
        out: &mut Vec<Vec<Option<Vec<u8>>>>,
    ) -> Result<(), String> {
        d.feed(bytes, |row: &Row<'_>| {
            out.push(
                (0..row.len())
                    .map(|i| row.field(i).map(<[u8]>::to_vec))
                    .collect(),
            );
            Ok::<(), String>(())
        })
    }

    #[test]
    fn rows_split_anywhere_decode_alike() {
        let rows = vec![
            vec![Some(&b"abc"[..]), None, Some(&b""[..])],
            vec![Some(&b"\x00\x01"[..]), Some(&b"x"[..]), None],
        ];
        let bytes = stream(&rows);
        let want: Vec<Vec<Option<Vec<u8>>>> = rows
            .iter()
            .map(|r| r.iter().map(|f| f.map(<[u8]>::to_vec)).collect())
            .collect();
        for piece in 1..bytes.len() {
            let mut d = BinaryRows::new(3);
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                collect(&mut d, chunk, &mut got).unwrap();
            }
            assert_eq!(got, want, "pieces of {piece} bytes");
            assert!(d.at_end());
            assert_eq!(d.rows(), 2);
        }
    }

    #[test]
    fn a_stream_cut_short_is_not_at_its_end() {
        let bytes = stream(&[vec![Some(&b"abc"[..])]]);
        let mut d = BinaryRows::new(1);
        let mut got = Vec::new();
        collect(&mut d, &bytes[..bytes.len() - 1], &mut got).unwrap();
        assert_eq!(got.len(), 1);
        assert!(!d.at_end());
    }

    #[test]
    fn bad_framing_is_refused_with_a_reason() {
        let mut d = BinaryRows::new(1);
        let err = collect(
            &mut d,
            b"PGCOPX\n\xff\r\n\0\0\0\0\0\0\0\0\0",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.contains("signature"), "{err}");

        let mut bytes = stream(&[vec![Some(&b"a"[..]), None]]);
        let err = collect(&mut BinaryRows::new(1), &bytes, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            "a row of the binary COPY stream has 2 fields, expected 1"
        );

        // A negative length other than -1.
        bytes = stream(&[vec![Some(&b"a"[..])]]);
        let at = SIGNATURE.len() + 8 + 2;
        bytes[at..at + 4].copy_from_slice(&(-7i32).to_be_bytes());
        let err = collect(&mut BinaryRows::new(1), &bytes, &mut Vec::new()).unwrap_err();
        assert!(err.contains("-7"), "{err}");

        // OIDs, and bytes after the trailer.
        let mut oids = stream(&[]);
        oids[11..15].copy_from_slice(&(1i32 << 16).to_be_bytes());
        assert!(
            collect(&mut BinaryRows::new(1), &oids, &mut Vec::new())
                .unwrap_err()
                .contains("OIDs")
        );
        let mut trailing = stream(&[]);
        trailing.push(0);
        assert!(
            collect(&mut BinaryRows::new(1), &trailing, &mut Vec::new())
                .unwrap_err()
                .contains("after its trailer")
        );
    }
}
