//! Pure decisions: how many rows a sheet holds and which sheet each part's segment goes to.
//! A sheet holds whole segments in key order, as many as fit under both the row limit and
//! 4 GiB of XML (so that its zip entry needs no ZIP64 sizes); the next segment that does not
//! fit opens the next sheet. Sheet breaks therefore fall on segment boundaries: a worker
//! ends a segment at the row limit, so no segment is too big for an empty sheet.

use crate::error::{Error, Result};
use reportjob_core::staging::{MAX_SEGMENT_XML_BYTES, SheetSegment};

/// Data rows per sheet: Excel's 1,048,576 rows less the header.
pub const MAX_ROWS_PER_SHEET: u32 = 1_048_575;

/// Test-only: data rows per sheet, so that a test can show sheets rolling over on a small
/// table (the workers and the assembler of a local run read it alike). Unset, a sheet holds
/// Excel's 1,048,575 data rows.
pub const ROWS_PER_SHEET_ENV: &str = "REPORTJOB_XLSX_ROWS_PER_SHEET";

/// Data rows per sheet: Excel's limit, unless [`ROWS_PER_SHEET_ENV`] says fewer.
pub fn rows_per_sheet() -> Result<u32> {
    match std::env::var(ROWS_PER_SHEET_ENV) {
        Err(_) => Ok(MAX_ROWS_PER_SHEET),
        Ok(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_ROWS_PER_SHEET).contains(n))
            .ok_or_else(|| {
                Error::InvalidStaged(format!(
                    "{ROWS_PER_SHEET_ENV}={text:?} must be between 1 and {MAX_ROWS_PER_SHEET}"
                ))
            }),
    }
}

/// Most XML in a sheet's zip entry (what opens and closes it included): under 4 GiB.
const MAX_SHEET_BYTES: u64 = u32::MAX as u64;

/// Where a segment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into the open sheet.
    Same,
    /// Into a new sheet, after the open one (if any) is closed.
    Next,
}

/// Fills sheets with segments in order.
#[derive(Clone, Debug)]
pub struct SheetPacker {
    rows_per_sheet: u64,
    /// Bytes of what opens and closes a sheet (uncompressed).
    frame: u64,
    /// Sheets opened.
    sheets: u32,
    /// The open sheet's rows, XML and deflated bytes.
    rows: u64,
    xml: u64,
    bytes: u64,
}

impl SheetPacker {
    /// Sheets of at most `rows_per_sheet` rows, each opened and closed by `frame` bytes of
    /// XML.
    pub fn new(rows_per_sheet: u32, frame: u64) -> SheetPacker {
        SheetPacker {
            rows_per_sheet: u64::from(rows_per_sheet),
            frame,
            sheets: 0,
            rows: 0,
            xml: 0,
            bytes: 0,
        }
    }

    /// Places `segment` (read from staging: checked here), or says why no sheet can hold it.
    pub fn place(&mut self, segment: &SheetSegment) -> std::result::Result<Placement, String> {
        if segment.rows > self.rows_per_sheet {
            return Err(format!(
                "a segment of {} rows is more than a sheet's {}",
                segment.rows, self.rows_per_sheet
            ));
        }
        if segment.xml_bytes > MAX_SEGMENT_XML_BYTES
            || self.frame + segment.xml_bytes > MAX_SHEET_BYTES
        {
            return Err(format!(
                "a segment of {} bytes of XML is more than a sheet holds",
                segment.xml_bytes
            ));
        }
        let fits = self.sheets > 0
            && self.rows + segment.rows <= self.rows_per_sheet
            && self.frame + self.xml + segment.xml_bytes <= MAX_SHEET_BYTES
            && self.frame + self.bytes + segment.bytes <= MAX_SHEET_BYTES;
        let placement = if fits {
            Placement::Same
        } else {
            self.sheets += 1;
            (self.rows, self.xml, self.bytes) = (0, 0, 0);
            Placement::Next
        };
        self.rows += segment.rows;
        self.xml += segment.xml_bytes;
        self.bytes += segment.bytes;
        Ok(placement)
    }

    /// Sheets opened so far.
    pub fn sheets(&self) -> u32 {
        self.sheets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(rows: u64, xml_bytes: u64) -> SheetSegment {
        SheetSegment {
            rows,
            bytes: xml_bytes / 8 + 1,
            xml_bytes,
            crc32: 0,
        }
    }

    #[test]
    fn whole_segments_fill_a_sheet_up_to_its_rows_and_the_next_opens_a_sheet() {
        let mut p = SheetPacker::new(100, 500);
        let placed: Vec<Placement> = [60, 40, 1, 99, 100, 30, 30]
            .iter()
            .map(|&r| p.place(&seg(r, r * 10)).unwrap())
            .collect();
        use Placement::*;
        assert_eq!(placed, [Next, Same, Next, Same, Next, Next, Same]);
        assert_eq!(p.sheets(), 4);
    }

    #[test]
    fn a_sheet_also_ends_before_4_gib_of_xml() {
        let mut p = SheetPacker::new(MAX_ROWS_PER_SHEET, 1000);
        assert_eq!(p.place(&seg(10, 3 << 30)).unwrap(), Placement::Next);
        assert_eq!(p.place(&seg(10, 1 << 30)).unwrap(), Placement::Next);
        assert_eq!(p.place(&seg(10, 1 << 29)).unwrap(), Placement::Same);
    }

    #[test]
    fn a_segment_no_sheet_holds_is_refused() {
        let mut p = SheetPacker::new(100, 1000);
        assert!(p.place(&seg(101, 10)).unwrap_err().contains("101 rows"));
        assert!(p.place(&seg(1, (3 << 30) + 1)).is_err());
    }
}
