//! Writes rows into one workbook with bounded memory: `rust_xlsxwriter` worksheets in
//! constant-memory mode (each row goes to a temporary file as soon as the next starts;
//! strings are inline, no shared-string table), a bold header row on every sheet, and a new
//! sheet every `rows_per_sheet` data rows.

use std::io::{Seek, Write};
use std::path::Path;

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::cell::{Cell, ColumnKind, cell, fit_text};
use reportjob_core::api::sheet_name;

/// Data rows per sheet: Excel's 1,048,576 rows less the header.
pub const MAX_ROWS_PER_SHEET: u32 = 1_048_575;
/// Excel's column limit.
const MAX_COLUMNS: usize = 16_384;

/// What shapes a workbook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookOptions {
    /// Name of the first sheet (checked).
    pub sheet_name: String,
    /// Cut text over the cell limit instead of failing.
    pub truncate_long_text: bool,
    /// Data rows per sheet (1 to [`MAX_ROWS_PER_SHEET`]).
    pub rows_per_sheet: u32,
}

/// A workbook being written, row by row.
pub struct BookWriter {
    workbook: Workbook,
    columns: Vec<String>,
    kinds: Vec<ColumnKind>,
    key_index: Option<usize>,
    key_column: String,
    options: BookOptions,
    bold: Format,
    date: Format,
    date_time: Format,
    /// Sheets started.
    sheets: u32,
    /// Data rows in the current sheet.
    in_sheet: u32,
    /// Data rows written.
    rows: u64,
}

fn xlsx_err(what: &str) -> impl Fn(XlsxError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl BookWriter {
    /// A workbook for rows of `columns` (of `kinds`), keyed by `key_column` (named in
    /// errors when it is among the columns); temporary files go to `temp_dir`.
    pub fn new(
        columns: Vec<String>,
        kinds: Vec<ColumnKind>,
        key_column: &str,
        options: BookOptions,
        temp_dir: &Path,
    ) -> Result<BookWriter, String> {
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
        if !(1..=MAX_ROWS_PER_SHEET).contains(&options.rows_per_sheet) {
            return Err(format!(
                "rows per sheet must be between 1 and {MAX_ROWS_PER_SHEET}, got {}",
                options.rows_per_sheet
            ));
        }
        sheet_name::check(&options.sheet_name).map_err(|e| format!("sheet name {e}"))?;
        let mut workbook = Workbook::new();
        workbook
            .set_tempdir(temp_dir)
            .map_err(xlsx_err("setting the workbook's temporary directory"))?;
        let key_index = columns.iter().position(|c| c == key_column);
        let mut book = BookWriter {
            workbook,
            columns,
            kinds,
            key_index,
            key_column: key_column.to_string(),
            options,
            bold: Format::new().set_bold(),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            date_time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss.000"),
            sheets: 0,
            in_sheet: 0,
            rows: 0,
        };
        book.start_sheet()?;
        Ok(book)
    }

    /// Starts the next sheet with its header row.
    fn start_sheet(&mut self) -> Result<(), String> {
        let n = self.sheets + 1;
        let name = sheet_name::nth(&self.options.sheet_name, n);
        let sheet = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx_err("adding a sheet"))?;
        sheet.set_name(&name).map_err(xlsx_err("naming a sheet"))?;
        for (col, column) in self.columns.iter().enumerate() {
            sheet
                .write_string_with_format(0, col as u16, column, &self.bold)
                .map_err(xlsx_err("writing the header row"))?;
        }
        self.sheets = n;
        self.in_sheet = 0;
        Ok(())
    }

    /// Writes one row of values (Postgres's text forms, `None` for NULL).
    pub fn write_row(&mut self, values: &[Option<&str>]) -> Result<(), String> {
        if values.len() != self.columns.len() {
            return Err(format!(
                "a row has {} values for {} columns",
                values.len(),
                self.columns.len()
            ));
        }
        if self.in_sheet == self.options.rows_per_sheet {
            self.start_sheet()?;
        }
        let row = self.in_sheet + 1;
        let truncate = self.options.truncate_long_text;
        // Checked first, so that the error can name the key without holding the sheet.
        for (col, value) in values.iter().enumerate() {
            if let (ColumnKind::Text, Some(text)) = (self.kinds[col], value)
                && let Err(chars) = fit_text(text, truncate)
            {
                return Err(self.too_long(col, chars, values, row));
            }
        }
        let index = self.sheets.saturating_sub(1) as usize;
        let sheet = self
            .workbook
            .worksheet_from_index(index)
            .map_err(xlsx_err("finding the current sheet"))?;
        let (date, date_time) = (&self.date, &self.date_time);
        for (col, (value, &kind)) in values.iter().zip(&self.kinds).enumerate() {
            let col = col as u16;
            let written = match cell(kind, *value) {
                Cell::Empty => continue,
                Cell::Number(v) => sheet.write_number(row, col, v).map(|_| ()),
                Cell::Bool(v) => sheet.write_boolean(row, col, v).map(|_| ()),
                Cell::Date(v) => sheet
                    .write_number_with_format(row, col, v, date)
                    .map(|_| ()),
                Cell::DateTime(v) => sheet
                    .write_number_with_format(row, col, v, date_time)
                    .map(|_| ()),
                Cell::Text(text) => {
                    let fitted = fit_text(text, truncate).unwrap_or(text);
                    sheet.write_string(row, col, fitted).map(|_| ())
                }
            };
            written.map_err(xlsx_err("writing a cell"))?;
        }
        self.in_sheet += 1;
        self.rows += 1;
        Ok(())
    }

    /// The error for a text value of `chars` characters in column `col`.
    fn too_long(&self, col: usize, chars: usize, values: &[Option<&str>], row: u32) -> String {
        let at = match self.key_index.map(|k| values[k]) {
            Some(Some(key)) => format!("the row with {} = {key}", self.key_column),
            Some(None) => format!("the row with {} = NULL", self.key_column),
            None => format!(
                "row {} of sheet {:?}",
                row + 1,
                sheet_name::nth(&self.options.sheet_name, self.sheets)
            ),
        };
        format!(
            "column {:?} of {at} holds {chars} characters; an Excel cell holds at most {}. \
             Set spec.output.xlsx.truncateLongText: true to cut such values to their first {} characters",
            self.columns[col],
            super::cell::MAX_TEXT_CHARS,
            super::cell::MAX_TEXT_CHARS
        )
    }

    /// Data rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Sheets started so far.
    pub fn sheets(&self) -> u32 {
        self.sheets
    }

    /// Writes the workbook into `out` (the zip archive is built from the sheets'
    /// temporary files).
    pub fn save<W: Write + Seek + Send>(mut self, out: W) -> Result<(), String> {
        self.workbook
            .save_to_writer(out)
            .map_err(xlsx_err("writing the workbook"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sheet_name_the_spec_may_give_the_writer_accepts() {
        for name in [
            "\u{1F600}".repeat(15),
            "Orders \u{1F680} 2024".into(),
            "é".repeat(31),
            "x".repeat(31),
            "it's".into(),
        ] {
            assert!(sheet_name::check(&name).is_ok(), "{name}");
            assert!(
                rust_xlsxwriter::utility::check_sheet_name(&name).is_ok(),
                "{name}"
            );
        }
    }

    fn book(rows_per_sheet: u32, truncate: bool, dir: &Path) -> BookWriter {
        BookWriter::new(
            vec!["note".into(), "n".into()],
            vec![ColumnKind::Text, ColumnKind::Int32],
            "id",
            BookOptions {
                sheet_name: "Notes".into(),
                truncate_long_text: truncate,
                rows_per_sheet,
            },
            dir,
        )
        .unwrap()
    }

    #[test]
    fn sheets_roll_over_and_the_workbook_is_a_zip_with_one_sheet_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = book(2, false, dir.path());
        for i in 0..5 {
            b.write_row(&[Some("x"), Some(&i.to_string())]).unwrap();
        }
        assert_eq!((b.rows(), b.sheets()), (5, 3));
        let mut out = std::io::Cursor::new(Vec::new());
        b.save(&mut out).unwrap();
        let bytes = out.into_inner();
        assert!(bytes.starts_with(b"PK\x03\x04"));
        let text = String::from_utf8_lossy(&bytes);
        for sheet in ["sheet1.xml", "sheet2.xml", "sheet3.xml"] {
            assert!(text.contains(sheet), "{sheet}");
        }
        assert!(!text.contains("sheet4.xml"));
    }

    #[test]
    fn long_text_without_the_key_column_names_the_sheet_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = book(10, false, dir.path());
        b.write_row(&[Some("short"), None]).unwrap();
        let long = "z".repeat(40_000);
        let err = b.write_row(&[Some(&long), Some("1")]).unwrap_err();
        assert!(
            err.starts_with("column \"note\" of row 3 of sheet \"Notes\" holds 40000 characters"),
            "{err}"
        );
        let mut b = book(10, true, dir.path());
        b.write_row(&[Some(&long), Some("1")]).unwrap();
        assert!(
            b.write_row(&[Some("a")]).is_err(),
            "a row of the wrong width"
        );
    }
}
