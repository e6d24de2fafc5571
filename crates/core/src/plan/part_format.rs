//! How a plan's parts are encoded (format, options, compression), fixed in `plan.json` so
//! that every part of a run agrees.

use serde::{Deserialize, Serialize};

use crate::api::ParquetCompression;

/// What a part holds: CSV records, JSON Lines, Parquet row groups, or a workbook's sheet
/// rows (XML, deflated).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
pub enum PartKind {
    /// CSV records (the `delimiter`, `nullString`, `header`, `bom` and `crlf` fields apply).
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl {
        /// `numeric` values as JSON numbers.
        #[serde(default)]
        numeric_as_number: bool,
    },
    /// One Parquet file per part; the report is rewritten from their row groups.
    Parquet {
        /// Most rows in a row group.
        row_group_rows: u64,
        /// The codec of column chunk pages.
        compression: ParquetCompression,
    },
    /// A workbook's rows as sheet XML, raw deflate segments (see
    /// [`crate::staging::SheetSegment`]); assembly copies them into the workbook's sheets.
    Xlsx {
        /// Text over Excel's cell limit is cut to it instead of failing the chunk.
        #[serde(default, skip_serializing_if = "is_false")]
        truncate_long_text: bool,
    },
}

impl PartKind {
    fn is_csv(&self) -> bool {
        *self == PartKind::Csv
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How each part is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartCompression {
    /// Not compressed.
    None,
    /// One gzip member per part.
    Gzip,
    /// One zstd frame per part.
    Zstd,
}

/// How parts are encoded; fixed in the plan so that every part of a run agrees. Fields
/// added after the first release are left out at their defaults, so a plan staged by an
/// older version keeps its digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartFormat {
    /// Field delimiter.
    pub delimiter: char,
    /// How NULL is written.
    pub null_string: String,
    /// Write a header line (once, at assembly).
    pub header: bool,
    /// Parts are gzip members.
    pub gzip: bool,
    /// Parts are zstd frames.
    #[serde(default, skip_serializing_if = "is_false")]
    pub zstd: bool,
    /// A UTF-8 byte order mark opens the first part (CSV).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bom: bool,
    /// CSV records end in CRLF.
    #[serde(default, skip_serializing_if = "is_false")]
    pub crlf: bool,
    /// CSV cells and header names a spreadsheet would read as a formula get a `'` first.
    #[serde(default, skip_serializing_if = "is_false")]
    pub escape_formulas: bool,
    /// What the parts hold.
    #[serde(default, skip_serializing_if = "PartKind::is_csv")]
    pub kind: PartKind,
}

impl PartFormat {
    /// Plain CSV as Postgres writes it: comma, empty NULL, a header, no compression.
    pub fn plain_csv() -> PartFormat {
        PartFormat {
            delimiter: ',',
            null_string: String::new(),
            header: true,
            gzip: false,
            zstd: false,
            bom: false,
            crlf: false,
            escape_formulas: false,
            kind: PartKind::Csv,
        }
    }

    /// The compression of the parts, or why the (staged, untrusted) format is contradictory.
    pub fn compression(&self) -> Result<PartCompression, String> {
        if matches!(self.kind, PartKind::Parquet { .. }) && (self.gzip || self.zstd) {
            return Err("its format compresses Parquet parts as a whole".into());
        }
        match (self.gzip, self.zstd) {
            (false, false) => Ok(PartCompression::None),
            (true, false) => Ok(PartCompression::Gzip),
            (false, true) => Ok(PartCompression::Zstd),
            (true, true) => Err("its format asks for both gzip and zstd".into()),
        }
    }

    /// The file name extension of a part (and of the report): `csv`, `jsonl.gz`, ...
    pub fn extension(&self) -> &'static str {
        let zstd = self.zstd && !self.gzip;
        match (self.kind, self.gzip, zstd) {
            (PartKind::Csv, false, false) => "csv",
            (PartKind::Csv, true, _) => "csv.gz",
            (PartKind::Csv, false, true) => "csv.zst",
            (PartKind::Jsonl { .. }, false, false) => "jsonl",
            (PartKind::Jsonl { .. }, true, _) => "jsonl.gz",
            (PartKind::Jsonl { .. }, false, true) => "jsonl.zst",
            // Parquet compresses its pages itself; the plan never sets gzip or zstd for it.
            (PartKind::Parquet { .. }, _, _) => "parquet",
            // Deflated sheet XML; gzip and zstd are refused for xlsx at validation.
            (PartKind::Xlsx { .. }, _, _) => "xml.deflate",
        }
    }

    /// The compression's name in the report manifest.
    pub fn compression_name(&self) -> &'static str {
        if let PartKind::Parquet { compression, .. } = self.kind {
            return match compression {
                ParquetCompression::Zstd => "zstd",
                ParquetCompression::Snappy => "snappy",
                ParquetCompression::None => "none",
            };
        }
        match self.compression() {
            Ok(PartCompression::None) | Err(_) => "none",
            Ok(PartCompression::Gzip) => "gzip",
            Ok(PartCompression::Zstd) => "zstd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv() -> PartFormat {
        PartFormat::plain_csv()
    }

    #[test]
    fn a_plain_csv_format_serializes_as_before_the_new_fields() {
        // What plans staged by earlier versions hold: read back alike, written back alike
        // (so their digests still verify).
        let old = r#"{"delimiter":",","null_string":"","header":true,"gzip":false}"#;
        let read: PartFormat = serde_json::from_str(old).unwrap();
        assert_eq!(read, csv());
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }

    #[test]
    fn extensions_and_compressions_follow_the_format() {
        let mut f = csv();
        assert_eq!((f.extension(), f.compression_name()), ("csv", "none"));
        f.zstd = true;
        assert_eq!((f.extension(), f.compression_name()), ("csv.zst", "zstd"));
        f.kind = PartKind::Jsonl {
            numeric_as_number: true,
        };
        assert_eq!(f.extension(), "jsonl.zst");
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains(r#""kind":{"type":"jsonl","numericAsNumber":true}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<PartFormat>(&json).unwrap(), f);
        f.gzip = true;
        assert!(
            f.compression().is_err(),
            "a staged plan asking for both is refused"
        );
    }
}
