//! Rules of `spec.output`'s format: each format's options (and only those), typed.

use super::Errors;
use crate::api::spec::{
    Compression, CsvOptions, DEFAULT_ROW_GROUP_ROWS, LineEnding, MAX_ROW_GROUP_ROWS, OutputFormat,
    OutputSpec,
};
use crate::api::valid::{CsvFormat, Encoding, JsonlFormat, ParquetFormat};

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
    let encoding = match format {
        OutputFormat::Csv => Encoding::Csv(csv_format(&output.csv, errors)?),
        OutputFormat::Jsonl => Encoding::Jsonl(JsonlFormat {
            numeric_as_number: output.jsonl.as_ref().is_some_and(|j| j.numeric_as_number),
        }),
        OutputFormat::Parquet => Encoding::Parquet(parquet_format(output, errors)?),
    };
    ok.then_some(encoding)
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
    ok.then(|| CsvFormat {
        header: csv.header,
        delimiter,
        null_string: csv.null_string.clone(),
        bom: csv.bom,
        crlf: csv.line_ending == LineEnding::Crlf,
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
