//! A chunk worker's side of a workbook: the `COPY` text rows of its chunk encoded as sheet
//! XML ([`super::sheet_xml`]) and deflated as they stream, in segments a sheet can hold
//! whole (see [`SheetSegment`]): each starts afresh and ends with a full flush, with its
//! rows, sizes and CRC-32 recorded for the part manifest. Memory: one row and the
//! compressor's window.

use flate2::{Compress, Compression, FlushCompress};

use super::cell::ColumnKind;
use super::copy_text::split_row;
use super::sheet_xml::RowEncoder;
use reportjob_core::staging::{MAX_SEGMENT_XML_BYTES, SheetSegment};

/// XML gathered before it is handed to the compressor.
const BATCH: usize = 128 * 1024;

/// The deflate level of sheet XML: zlib's fastest, which on sheet XML compresses about as
/// well as its default in a fraction of the time (BENCHMARKS.md, Formats).
const LEVEL: u32 = 1;

/// Encodes one part's rows.
#[derive(Debug)]
pub struct SheetPartStream {
    encoder: RowEncoder,
    /// The unfinished line at the end of the last piece.
    carry: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    nulls: Vec<bool>,
    /// Encoded XML not yet compressed.
    xml: Vec<u8>,
    deflate: Compress,
    crc: crc32fast::Hasher,
    /// Most rows in a segment: the most a sheet holds.
    rows_per_segment: u64,
    /// The open segment's rows and XML bytes (compressed or not).
    segment_rows: u64,
    segment_xml: u64,
    /// The compressor's output when the open segment started.
    segment_start_out: u64,
    segments: Vec<SheetSegment>,
    rows: u64,
}

impl SheetPartStream {
    /// A stream for rows of `columns` (their types `column_types` as planned), at most
    /// `rows_per_segment` rows per segment.
    pub fn new(
        columns: &[String],
        column_types: &[String],
        key_column: &str,
        truncate_long_text: bool,
        rows_per_segment: u32,
    ) -> Result<SheetPartStream, String> {
        let kinds = column_types.iter().map(|t| ColumnKind::of(t)).collect();
        Ok(SheetPartStream {
            encoder: RowEncoder::new(columns.to_vec(), kinds, key_column, truncate_long_text)?,
            carry: Vec::new(),
            buffers: Vec::new(),
            nulls: Vec::new(),
            xml: Vec::with_capacity(BATCH + 4096),
            deflate: Compress::new(Compression::new(LEVEL), false),
            crc: crc32fast::Hasher::new(),
            rows_per_segment: u64::from(rows_per_segment.max(1)),
            segment_rows: 0,
            segment_xml: 0,
            segment_start_out: 0,
            segments: Vec::new(),
            rows: 0,
        })
    }

    /// Encodes the rows `bytes` (the next piece of the `COPY` stream) completes; their
    /// deflated bytes go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut carry = std::mem::take(&mut self.carry);
        let done = crate::formats::complete_lines(&mut carry, bytes, |line| self.row(line, out));
        self.carry = carry;
        done
    }

    /// Encodes one row (without its line feed).
    fn row(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let before = self.xml.len();
        let values = split_row(
            line,
            self.encoder.width(),
            &mut self.buffers,
            &mut self.nulls,
        )?;
        self.encoder
            .write_row(&values, self.rows + 1, &mut self.xml)?;
        let row_xml = (self.xml.len() - before) as u64;
        if self.segment_rows > 0 && self.segment_xml + row_xml > MAX_SEGMENT_XML_BYTES {
            // The row starts the next segment: the one open ends before it.
            let row = self.xml.split_off(before);
            self.end_segment(out)?;
            self.xml = row;
        }
        if row_xml > MAX_SEGMENT_XML_BYTES {
            return Err(format!(
                "row {} is {row_xml} bytes of sheet XML; a sheet holds at most {MAX_SEGMENT_XML_BYTES}",
                self.rows + 1
            ));
        }
        self.rows += 1;
        self.segment_rows += 1;
        self.segment_xml += row_xml;
        if self.segment_rows == self.rows_per_segment {
            self.end_segment(out)
        } else if self.xml.len() >= BATCH {
            self.compress(out, FlushCompress::None)
        } else {
            Ok(())
        }
    }

    /// Compresses the gathered XML into `out`.
    fn compress(&mut self, out: &mut Vec<u8>, flush: FlushCompress) -> Result<(), String> {
        self.crc.update(&self.xml);
        super::zip_writer::deflate_into(&mut self.deflate, &self.xml, out, flush)
            .map_err(|e| format!("compressing sheet XML: {e}"))?;
        self.xml.clear();
        Ok(())
    }

    /// Ends the open segment (when it holds rows): a full flush, and its record.
    fn end_segment(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.segment_rows == 0 {
            return Ok(());
        }
        self.compress(out, FlushCompress::Full)?;
        let crc = std::mem::take(&mut self.crc);
        self.segments.push(SheetSegment {
            rows: self.segment_rows,
            bytes: self.deflate.total_out() - self.segment_start_out,
            xml_bytes: self.segment_xml,
            crc32: crc.finalize(),
        });
        // The next segment refers to nothing before it (a full flush resets the window;
        // a reset also starts the compressor's counts from the next byte).
        self.segment_start_out = self.deflate.total_out();
        self.segment_rows = 0;
        self.segment_xml = 0;
        Ok(())
    }

    /// Ends the part: it must end at a row's end; the last segment's bytes go to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if !self.carry.is_empty() {
            return Err("the COPY stream ended inside a row".into());
        }
        self.end_segment(out)
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The segments ended so far.
    pub fn segments(&self) -> &[SheetSegment] {
        &self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn stream(rows_per_segment: u32) -> SheetPartStream {
        SheetPartStream::new(
            &["id".into(), "note".into()],
            &["integer".into(), "text".into()],
            "id",
            false,
            rows_per_segment,
        )
        .unwrap()
    }

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // A segment has no final block: the decoder stops at the end of its input.
        let _ = flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out);
        out
    }

    #[test]
    fn rows_split_across_pieces_become_segments_of_at_most_the_sheet_s_rows() {
        let mut s = stream(3);
        let mut out = Vec::new();
        let copy = b"1\tone\n2\t\\N\n3\tth";
        s.feed(copy, &mut out).unwrap();
        s.feed(b"ree\n4\t_x0041_\n", &mut out).unwrap();
        s.finish(&mut out).unwrap();
        assert_eq!(s.rows(), 4);
        let segs = s.segments().to_vec();
        assert_eq!(segs.iter().map(|g| g.rows).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(segs.iter().map(|g| g.bytes).sum::<u64>(), out.len() as u64);
        let (first, second) = out.split_at(segs[0].bytes as usize);
        let (a, b) = (inflate(first), inflate(second));
        assert_eq!(
            String::from_utf8(a.clone()).unwrap(),
            "<row><c><v>1</v></c><c t=\"inlineStr\"><is><t>one</t></is></c></row>\
             <row><c><v>2</v></c></row>\
             <row><c><v>3</v></c><c t=\"inlineStr\"><is><t>three</t></is></c></row>"
        );
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            "<row><c><v>4</v></c><c t=\"inlineStr\"><is><t>_x005F_x0041_</t></is></c></row>"
        );
        assert_eq!(
            (segs[0].xml_bytes, segs[0].crc32),
            (a.len() as u64, crc32fast::hash(&a))
        );
        assert_eq!(
            (segs[1].xml_bytes, segs[1].crc32),
            (b.len() as u64, crc32fast::hash(&b))
        );
        // Each segment is byte-aligned and self-contained: the second inflates alone.
        assert!(
            first.ends_with(&[0, 0, 0xFF, 0xFF]),
            "a full flush ends the segment"
        );
    }

    #[test]
    fn a_stream_cut_inside_a_row_or_a_bad_row_is_refused() {
        let mut s = stream(10);
        s.feed(b"1\tone\n2\ttw", &mut Vec::new()).unwrap();
        assert!(s.finish(&mut Vec::new()).is_err());
        let mut s = stream(10);
        assert!(s.feed(b"1\tone\textra\n", &mut Vec::new()).is_err());
        let mut s = stream(10);
        s.finish(&mut Vec::new()).unwrap();
        assert!(s.segments().is_empty(), "no rows, no segment");
    }

    #[test]
    fn a_big_part_keeps_its_memory_to_a_batch() {
        let mut s = stream(1_000_000);
        let mut out = Vec::new();
        let piece: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("{i}\tsome text for row {i}\n").into_bytes())
            .collect();
        for _ in 0..20 {
            s.feed(&piece, &mut out).unwrap();
            assert!(s.xml.len() < BATCH + 1024, "{}", s.xml.len());
            out.clear();
        }
        s.finish(&mut out).unwrap();
        assert_eq!(s.segments().len(), 1);
        assert_eq!(s.segments()[0].rows, 200_000);
    }
}
