//! Rules of `spec.output`'s format: each format's options (and only those), typed.

use super::Errors;
use crate::api::sheet_name;
use crate::api::spec::{
    Compression, CsvOptions, DEFAULT_ROW_GROUP_ROWS, LineEnding, MAX_ROW_GROUP_ROWS, OutputFormat,
    OutputSpec,
};
use crate::api::valid::{CsvFormat, Encoding, JsonlFormat, ParquetFormat, XlsxFormat};

/// The format and its options: each option block only with its format, and the
/// compression only where the format is a byte stream that concatenates.
pub(super) fn encoding(output: &OutputSpec, errors: &mut Errors) -> Option<Encoding> {
    let format = output.format;
    let mut ok = true;
    if format != OutputFormat::Csv {
        for field in csv_fields_set(&output.csv) {
            ok = false;
            errors.push::<()>(&format!("spec.output.csv.{field}"), "only for format csv");
        }
    }
    if format != OutputFormat::Jsonl && output.jsonl.is_some() {
        ok = false;
        errors.push::<()>("spec.output.jsonl", "only for format jsonl");
    }
    if format != OutputFormat::Parquet && output.parquet.is_some() {
        ok = false;
        errors.push::<()>("spec.output.parquet", "only for format parquet");
    }
    if format == OutputFormat::Parquet && output.compression != Compression::None {
        ok = false;
        errors.push::<()>(
            "spec.output.compression",
            "only for formats csv and jsonl; Parquet compresses its pages \
             (spec.output.parquet.compression)",
        );
    }
    if format != OutputFormat::Xlsx && output.xlsx.is_some() {
        ok = false;
        errors.push::<()>("spec.output.xlsx", "only for format xlsx");
    }
    if format == OutputFormat::Xlsx && output.compression != Compression::None {
        ok = false;
        errors.push::<()>(
            "spec.output.compression",
            "only none for format xlsx (a workbook is a zip archive already)",
        );
    }
    if format == OutputFormat::Xlsx && output.time_zone != "UTC" {
        ok = false;
        errors.push::<()>(
            "spec.output.timeZone",
            "only UTC for format xlsx (Excel dates carry no zone: timestamptz values are written in UTC)",
        );
    }
    let encoding = match format {
        OutputFormat::Csv => Encoding::Csv(csv_format(&output.csv, errors)?),
        OutputFormat::Jsonl => Encoding::Jsonl(JsonlFormat {
            numeric_as_number: output.jsonl.as_ref().is_some_and(|j| j.numeric_as_number),
        }),
        OutputFormat::Parquet => Encoding::Parquet(parquet_format(output, errors)?),
        OutputFormat::Xlsx => Encoding::Xlsx(xlsx_format(output, errors)?),
    };
    ok.then_some(encoding)
}

/// The workbook options: the sheet name given (checked against Excel's rules) or derived
/// from the report's file name.
fn xlsx_format(output: &OutputSpec, errors: &mut Errors) -> Option<XlsxFormat> {
    let options = output.xlsx.clone().unwrap_or_default();
    let sheet_name = match &options.sheet_name {
        Some(name) => match sheet_name::check(name) {
            Ok(()) => name.clone(),
            Err(why) => return errors.push("spec.output.xlsx.sheetName", why),
        },
        None => {
            let destination = &output.destination;
            let path = match (&destination.pvc, &destination.bucket) {
                (Some(pvc), _) => pvc.path.as_str(),
                (None, Some(bucket)) => bucket.url.as_str(),
                (None, None) => "",
            };
            sheet_name::from_file_name(path)
        }
    };
    Some(XlsxFormat {
        sheet_name,
        truncate_long_text: options.truncate_long_text,
    })
}

/// The CSV options set to something other than their defaults, by name.
fn csv_fields_set(csv: &CsvOptions) -> Vec<&'static str> {
    let default = CsvOptions::default();
    let mut set = Vec::new();
    if csv.header != default.header {
        set.push("header");
    }
    if csv.delimiter != default.delimiter {
        set.push("delimiter");
    }
    if csv.null_string != default.null_string {
        set.push("nullString");
    }
    if csv.bom != default.bom {
        set.push("bom");
    }
    if csv.line_ending != default.line_ending {
        set.push("lineEnding");
    }
    if csv.escape_formulas != default.escape_formulas {
        set.push("escapeFormulas");
    }
    set
}

fn csv_format(csv: &CsvOptions, errors: &mut Errors) -> Option<CsvFormat> {
    let mut ok = true;
    if csv.null_string.contains(['"', '\r', '\n', '\\']) {
        ok = false;
        errors.push::<()>(
            "spec.output.csv.nullString",
            "must not contain a quote, a backslash, CR or LF",
        );
    }
    let delimiter = match csv.delimiter.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => *b,
        _ => {
            return errors.push(
                "spec.output.csv.delimiter",
                format!(
                    "must be one ASCII character other than a quote, CR or LF, got {:?}",
                    csv.delimiter
                ),
            );
        }
    };
    if csv.null_string.contains(char::from(delimiter)) {
        return errors.push(
            "spec.output.csv.nullString",
            "must not contain the delimiter",
        );
    }
    if csv.escape_formulas
        && csv
            .null_string
            .starts_with(crate::api::valid::FORMULA_STARTS.map(char::from))
    {
        return errors.push(
            "spec.output.csv.nullString",
            "must not start with =, +, -, @, a tab or CR with escapeFormulas (NULL would read as an escaped value)",
        );
    }
    ok.then(|| CsvFormat {
        header: csv.header,
        delimiter,
        null_string: csv.null_string.clone(),
        bom: csv.bom,
        crlf: csv.line_ending == LineEnding::Crlf,
        escape_formulas: csv.escape_formulas,
    })
}

fn parquet_format(output: &OutputSpec, errors: &mut Errors) -> Option<ParquetFormat> {
    let options = output.parquet.clone().unwrap_or_default();
    let rows = options.row_group_rows.unwrap_or(DEFAULT_ROW_GROUP_ROWS);
    let row_group_rows = super::bounded(
        rows,
        MAX_ROW_GROUP_ROWS,
        "spec.output.parquet.rowGroupRows",
        errors,
        Some,
    )?;
    Some(ParquetFormat {
        row_group_rows,
        compression: options.compression,
    })
}
