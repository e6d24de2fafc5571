//! Pure encoding of a worksheet's XML, written by the chunk workers: each row a `<row>`
//! without an `r` attribute and its cells without references (an empty cell is `<c/>`), so a
//! row needs no global row number and the rows of any part can follow any other's. Strings
//! are inline; the styles are fixed in advance ([`Style`], written by
//! [`super::package::STYLES`]). Text is escaped as Excel writes it: `&`, `<`, `>` as
//! entities, control characters (and U+FFFE, U+FFFF) as `_xHHHH_`, a literal `_xHHHH_` as
//! `_x005F_xHHHH_`.

use std::io::Write;

use super::cell::{Cell, ColumnKind, MAX_TEXT_CHARS, cell, fit_text};

/// The cell styles of every workbook, by their index in `styles.xml`'s `cellXfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The header row: bold.
    Header = 1,
    /// A date: `yyyy-mm-dd`.
    Date = 2,
    /// A date and time: `yyyy-mm-dd hh:mm:ss.000`.
    DateTime = 3,
}

/// What opens every sheet's XML, up to and including its header row (the column names in
/// bold).
pub fn sheet_start(columns: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + columns.len() * 48);
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n\
          <worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" \
          xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">\
          <sheetViews><sheetView workbookViewId=\"0\"/></sheetViews>\
          <sheetFormatPr defaultRowHeight=\"15\"/><sheetData><row>",
    );
    for column in columns {
        push_text(&mut out, column, Some(Style::Header));
    }
    out.extend_from_slice(b"</row>");
    out
}

/// What closes every sheet's XML.
pub const SHEET_END: &[u8] = b"</sheetData><pageMargins left=\"0.7\" right=\"0.7\" top=\"0.75\" \
    bottom=\"0.75\" header=\"0.3\" footer=\"0.3\"/></worksheet>";

/// Encodes rows of Postgres's text values into sheet XML.
#[derive(Clone, Debug)]
pub struct RowEncoder {
    columns: Vec<String>,
    kinds: Vec<ColumnKind>,
    key_index: Option<usize>,
    key_column: String,
    truncate_long_text: bool,
}

impl RowEncoder {
    /// An encoder for rows of `columns` (of `kinds`), keyed by `key_column` (named in
    /// errors when it is among the columns); text over Excel's cell limit is cut when
    /// `truncate_long_text`, else refused.
    pub fn new(
        columns: Vec<String>,
        kinds: Vec<ColumnKind>,
        key_column: &str,
        truncate_long_text: bool,
    ) -> Result<RowEncoder, String> {
        if columns.len() > MAX_COLUMNS {
            return Err(format!(
                "the report has {} columns; an Excel sheet holds at most {MAX_COLUMNS}",
                columns.len()
            ));
        }
        if columns.len() != kinds.len() {
            return Err(format!(
                "{} column kinds for {} columns",
                kinds.len(),
                columns.len()
            ));
        }
        Ok(RowEncoder {
            key_index: columns.iter().position(|c| c == key_column),
            key_column: key_column.to_string(),
            columns,
            kinds,
            truncate_long_text,
        })
    }

    /// Columns of a row.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Appends row `values` (text forms, `None` for NULL) to `out`; `row` (from 1, in the
    /// part) names the row in errors when the key is not among the columns.
    pub fn write_row(
        &self,
        values: &[Option<&str>],
        row: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        if values.len() != self.columns.len() {
            return Err(format!(
                "a row has {} values for {} columns",
                values.len(),
                self.columns.len()
            ));
        }
        out.extend_from_slice(b"<row>");
        let mut empty = 0usize;
        for (col, (value, &kind)) in values.iter().zip(&self.kinds).enumerate() {
            let decided = cell(kind, *value);
            if decided == Cell::Empty {
                empty += 1;
                continue;
            }
            // Cells carry no reference: an empty cell before a value holds its place.
            for _ in 0..std::mem::take(&mut empty) {
                out.extend_from_slice(b"<c/>");
            }
            match decided {
                Cell::Empty => {}
                Cell::Number(v) => match (kind, value) {
                    // An integer's text is already the number's shortest form.
                    (ColumnKind::Int32 | ColumnKind::Int64, Some(text)) => {
                        out.extend_from_slice(b"<c><v>");
                        out.extend_from_slice(text.as_bytes());
                        out.extend_from_slice(b"</v></c>");
                    }
                    _ => push_number(out, v, None),
                },
                Cell::Bool(v) => {
                    out.extend_from_slice(if v {
                        b"<c t=\"b\"><v>1</v></c>"
                    } else {
                        b"<c t=\"b\"><v>0</v></c>"
                    });
                }
                Cell::Date(v) => push_number(out, v, Some(Style::Date)),
                Cell::DateTime(v) => push_number(out, v, Some(Style::DateTime)),
                Cell::Text(text) => match fit_text(text, self.truncate_long_text) {
                    Ok(fitted) => push_text(out, fitted, None),
                    Err(chars) => return Err(self.too_long(col, chars, values, row)),
                },
            }
        }
        out.extend_from_slice(b"</row>");
        Ok(())
    }

    /// The error for a text value of `chars` characters in column `col`.
    fn too_long(&self, col: usize, chars: usize, values: &[Option<&str>], row: u64) -> String {
        let at = match self.key_index.map(|k| values[k]) {
            Some(Some(key)) => format!("the row with {} = {key}", self.key_column),
            Some(None) => format!("the row with {} = NULL", self.key_column),
            None => format!("row {row} of the chunk"),
        };
        format!(
            "column {:?} of {at} holds {chars} characters; an Excel cell holds at most \
             {MAX_TEXT_CHARS}. Set spec.output.xlsx.truncateLongText: true to cut such values \
             to their first {MAX_TEXT_CHARS} characters",
            self.columns[col],
        )
    }
}

/// Excel's column limit.
pub const MAX_COLUMNS: usize = 16_384;

/// A number cell (as `rust_xlsxwriter` writes one: Rust's shortest round-trip form).
fn push_number(out: &mut Vec<u8>, v: f64, style: Option<Style>) {
    match style {
        None => out.extend_from_slice(b"<c><v>"),
        Some(style) => {
            let _ = write!(out, "<c s=\"{}\"><v>", style as u8);
        }
    }
    let _ = write!(out, "{v}");
    out.extend_from_slice(b"</v></c>");
}

/// An inline string cell holding `text`, escaped.
fn push_text(out: &mut Vec<u8>, text: &str, style: Option<Style>) {
    match style {
        None => out.extend_from_slice(b"<c t=\"inlineStr\"><is><t"),
        Some(style) => {
            let _ = write!(out, "<c s=\"{}\" t=\"inlineStr\"><is><t", style as u8);
        }
    }
    let edge = |c: Option<char>| matches!(c, Some('\t' | '\n' | ' '));
    if edge(text.chars().next()) || edge(text.chars().next_back()) {
        out.extend_from_slice(b" xml:space=\"preserve\"");
    }
    out.push(b'>');
    escape_text(text, out);
    out.extend_from_slice(b"</t></is></c>");
}

/// Bytes that may need escaping: `&`, `<`, `>`, `_` (a literal `_xHHHH_`), control
/// characters other than tab and line feed, and 0xEF (which starts U+FFFE and U+FFFF).
const fn special_bytes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b != b'\t' as usize && b != b'\n' as usize;
        b += 1;
    }
    table[b'&' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'_' as usize] = true;
    table[0xEF] = true;
    table
}

static SPECIAL: [bool; 256] = special_bytes();

/// Appends `text` escaped for a sheet's `<t>` element, as Excel writes it.
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !SPECIAL[b as usize] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        let mut width = 1;
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'_' => {
                if is_ooxml_escape(&bytes[i..]) {
                    out.extend_from_slice(b"_x005F");
                }
                out.push(b'_');
            }
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                out.extend_from_slice(if bytes[i + 2] == 0xBE {
                    b"_xFFFE_"
                } else {
                    b"_xFFFF_"
                });
                width = 3;
            }
            0xEF => out.push(b),
            control => {
                let _ = write!(out, "_x{control:04X}_");
            }
        }
        i += width;
        plain = i;
    }
    out.extend_from_slice(&bytes[plain..]);
}

/// Whether `bytes` opens with `_xHHHH_` (four hex digits).
fn is_ooxml_escape(bytes: &[u8]) -> bool {
    bytes.len() >= 7
        && bytes[1] == b'x'
        && bytes[2..6].iter().all(u8::is_ascii_hexdigit)
        && bytes[6] == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape_text(text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_escaped_as_excel_writes_it() {
        assert_eq!(
            escaped("a & b < c > d \"q\" 'x'"),
            "a &amp; b &lt; c &gt; d \"q\" 'x'"
        );
        assert_eq!(
            escaped("tab\there\nline\rcr\u{1}"),
            "tab\there\nline_x000D_cr_x0001_"
        );
        assert_eq!(
            escaped("_x0041_ and _x00zz_ and _x"),
            "_x005F_x0041_ and _x00zz_ and _x"
        );
        assert_eq!(
            escaped("\u{FFFE}\u{FFFF}\u{FFFD}é€"),
            "_xFFFE__xFFFF_\u{FFFD}é€"
        );
        assert_eq!(escaped("plain"), "plain");
    }

    #[test]
    fn escaping_agrees_with_a_char_by_char_reading_of_excel_s_rules() {
        // The byte-table fast path against the rules applied one char at a time (as
        // rust_xlsxwriter, which wrote workbooks before, applies them).
        let samples = [
            "_x0041_x",
            "__x1234_",
            "x_xABCD_y_x12_",
            "\u{0}\u{8}\u{b}\u{c}\u{1f}",
            "a\r\nb",
            "<>&",
            "_xFFFE_\u{FFFE}",
        ];
        for s in samples {
            let mut want = String::new();
            for (i, ch) in s.char_indices() {
                if ch == '_' && is_ooxml_escape(&s.as_bytes()[i..]) {
                    want.push_str("_x005F");
                }
                match ch {
                    '&' => want.push_str("&amp;"),
                    '<' => want.push_str("&lt;"),
                    '>' => want.push_str("&gt;"),
                    '\t' | '\n' => want.push(ch),
                    c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                        want.push_str(&format!("_x{:04X}_", c as u32))
                    }
                    c => want.push(c),
                }
            }
            assert_eq!(escaped(s), want, "{s:?}");
        }
    }

    fn encoder(truncate: bool) -> RowEncoder {
        RowEncoder::new(
            vec![
                "id".into(),
                "note".into(),
                "day".into(),
                "ok".into(),
                "x".into(),
            ],
            vec![
                ColumnKind::Int64,
                ColumnKind::Text,
                ColumnKind::Date,
                ColumnKind::Bool,
                ColumnKind::Float,
            ],
            "id",
            truncate,
        )
        .unwrap()
    }

    #[test]
    fn a_row_is_cells_without_references_and_empty_cells_hold_their_place() {
        let mut out = Vec::new();
        encoder(false)
            .write_row(
                &[Some("7"), None, Some("2024-02-29"), Some("t"), Some("0.5")],
                1,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<row><c><v>7</v></c><c/><c s=\"2\"><v>45351</v></c><c t=\"b\"><v>1</v></c>\
             <c><v>0.5</v></c></row>"
        );
        let mut out = Vec::new();
        encoder(false)
            .write_row(&[Some("8"), Some(" pad "), None, None, None], 2, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<row><c><v>8</v></c><c t=\"inlineStr\"><is><t xml:space=\"preserve\"> pad </t>\
             </is></c></row>",
            "trailing empty cells are left out"
        );
    }

    #[test]
    fn long_text_is_refused_naming_the_key_or_cut_when_asked() {
        let long = "z".repeat(MAX_TEXT_CHARS + 1);
        let row = [Some("9"), Some(long.as_str()), None, None, None];
        let err = encoder(false)
            .write_row(&row, 3, &mut Vec::new())
            .unwrap_err();
        assert!(
            err.starts_with("column \"note\" of the row with id = 9 holds 32768 characters"),
            "{err}"
        );
        let mut out = Vec::new();
        encoder(true).write_row(&row, 3, &mut out).unwrap();
        assert_eq!(
            out.iter().filter(|&&b| b == b'z').count(),
            MAX_TEXT_CHARS,
            "cut to the cell limit"
        );
        let keyless = RowEncoder::new(vec!["n".into()], vec![ColumnKind::Text], "id", false)
            .unwrap()
            .write_row(&[Some(long.as_str())], 12, &mut Vec::new())
            .unwrap_err();
        assert!(
            keyless.starts_with("column \"n\" of row 12 of the chunk"),
            "{keyless}"
        );
        assert!(
            encoder(false)
                .write_row(&[Some("1")], 1, &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn the_sheet_opens_with_a_bold_escaped_header_and_closes_its_data() {
        let start = String::from_utf8(sheet_start(&["a&b".into(), " c".into()])).unwrap();
        assert!(start.ends_with(
            "<sheetData><row><c s=\"1\" t=\"inlineStr\"><is><t>a&amp;b</t></is></c>\
             <c s=\"1\" t=\"inlineStr\"><is><t xml:space=\"preserve\"> c</t></is></c></row>"
        ));
        assert!(
            std::str::from_utf8(SHEET_END)
                .unwrap()
                .starts_with("</sheetData>")
        );
    }
}
