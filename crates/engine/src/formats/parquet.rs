//! Parquet parts: the chunk's rows read with `COPY (...) TO STDOUT (FORMAT binary)`, each
//! column cast to the type its Parquet column is built from ([`parquet_schema`]), decoded
//! ([`pgbinary`], [`pgvalue`]) into Arrow batches and written as one Parquet file per part,
//! in row groups of `rowGroupRows` rows (or fewer, when a row group's encoded size passes
//! [`ROW_GROUP_MAX_BYTES`]). Memory holds one batch and one row group in progress, never
//! the chunk: the writer's output is handed on after every batch.
//!
//! [`parquet_schema`]: super::parquet_schema
//! [`pgbinary`]: super::pgbinary
//! [`pgvalue`]: super::pgvalue

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::parquet_builder::ColumnBuilder;
use super::parquet_schema::{PartSchema, Scalar};
use super::pgbinary::BinaryRows;
use super::pgvalue;
use reportjob_core::api::ParquetCompression;
use reportjob_core::ident::Quoted;
use reportjob_core::plan::PlannedSource;

/// Rows gathered into one Arrow batch before it is encoded.
const BATCH_ROWS: usize = 8192;
/// Value bytes gathered into one batch before it is encoded (wide rows).
const BATCH_BYTES: usize = 8 << 20;
/// A row group in progress is closed when its encoded size passes this, whatever its rows.
pub const ROW_GROUP_MAX_BYTES: usize = 128 << 20;

/// The typed schema of a plan's columns, or why the plan cannot have Parquet parts.
pub fn part_schema(planned: &PlannedSource) -> Result<PartSchema, String> {
    planned.check_column_types()?;
    Ok(PartSchema::new(&planned.columns, &planned.column_types))
}

/// The SELECT that reads the rows of `chunk_query` with each column cast to the type its
/// Parquet column is built from.
pub fn select_typed(chunk_query: &str, schema: &PartSchema) -> String {
    let exprs: Vec<String> = schema
        .columns
        .iter()
        .map(|(name, t)| {
            let q = Quoted(name);
            format!("rj_chunk.{q}{} AS {q}", t.cast())
        })
        .collect();
    format!(
        "SELECT {} FROM (\n{chunk_query}\n) AS rj_chunk",
        exprs.join(", ")
    )
}

/// Writer settings of every part of a plan. `key` is the key column's name and Arrow type:
/// a part's rows come in key order, so an integer-like key (integers, dates, timestamps) is
/// written with `DELTA_BINARY_PACKED` and no dictionary: consecutive keys differ by little,
/// and a dictionary of unique values is the worst encoding there is (a sequential int4 key
/// took 4.6 bytes a row that way, after zstd; delta-packed it takes well under one).
pub fn writer_properties(
    row_group_rows: u64,
    compression: ParquetCompression,
    key: Option<(&str, &DataType)>,
) -> WriterProperties {
    let compression = match compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_size(usize::try_from(row_group_rows).unwrap_or(usize::MAX).max(1));
    if let Some((name, data_type)) = key
        && delta_packs(data_type)
    {
        let path = ColumnPath::from(name);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    builder.build()
}

/// Whether a column of this Arrow type is stored as Parquet INT32 or INT64, which
/// `DELTA_BINARY_PACKED` encodes.
fn delta_packs(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
            | DataType::Time32(_)
            | DataType::Time64(_)
    )
}

/// Turns a binary `COPY` stream into one Parquet file.
pub struct ParquetStream {
    framing: BinaryRows,
    schema: PartSchema,
    builders: Vec<ColumnBuilder>,
    writer: Option<ArrowWriter<Vec<u8>>>,
    /// Position of the key column among the columns, to name a row in errors.
    key: Option<usize>,
    batch_rows: usize,
    batch_bytes: usize,
}

impl std::fmt::Debug for ParquetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetStream")
            .field("rows", &self.framing.rows())
            .finish_non_exhaustive()
    }
}

impl ParquetStream {
    /// A stream for one part of `planned`'s rows.
    pub fn new(
        planned: &PlannedSource,
        row_group_rows: u64,
        compression: ParquetCompression,
    ) -> Result<ParquetStream, String> {
        let schema = part_schema(planned)?;
        let builders = schema
            .columns
            .iter()
            .zip(schema.arrow.fields())
            .map(|((_, t), f)| ColumnBuilder::new(t, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let key = planned
            .columns
            .iter()
            .position(|c| *c == planned.key_column);
        let key_field = key.map(|k| schema.arrow.field(k));
        let writer = ArrowWriter::try_new(
            Vec::new(),
            schema.arrow.clone(),
            Some(writer_properties(
                row_group_rows,
                compression,
                key_field.map(|f| (f.name().as_str(), f.data_type())),
            )),
        )
        .map_err(|e| format!("cannot start a Parquet part: {e}"))?;
        Ok(ParquetStream {
            framing: BinaryRows::new(schema.columns.len()),
            key,
            schema,
            builders,
            writer: Some(writer),
            batch_rows: 0,
            batch_bytes: 0,
        })
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.framing.rows()
    }

    /// Takes the next piece of the `COPY` stream; `out` receives the Parquet bytes that are
    /// ready.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let ParquetStream {
            framing,
            schema,
            builders,
            key,
            batch_rows,
            batch_bytes,
            ..
        } = self;
        let first = framing.rows();
        let mut row_index = first;
        framing.feed(bytes, |row| {
            for (i, builder) in builders.iter_mut().enumerate() {
                let value = row.field(i);
                if let Err(e) = builder.append(value) {
                    let (name, _) = &schema.columns[i];
                    let at = match key.and_then(|k| Some((k, row.field(k)?))) {
                        Some((k, bytes)) => format!(
                            "the row whose {} is {}",
                            schema.columns[k].0,
                            render_key(schema.columns[k].1.scalar, bytes)
                        ),
                        None => format!("row {} of the chunk", row_index + 1),
                    };
                    return Err(format!("column {name:?}, {at}: {e}"));
                }
                *batch_bytes += value.map_or(0, <[u8]>::len);
            }
            *batch_rows += 1;
            row_index += 1;
            Ok(())
        })?;
        if self.batch_rows >= BATCH_ROWS || self.batch_bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        self.drain(out);
        Ok(())
    }

    /// Encodes the rows gathered so far into the writer.
    fn write_batch(&mut self) -> Result<(), String> {
        if self.batch_rows == 0 {
            return Ok(());
        }
        let arrays = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.schema.arrow.clone(), arrays)
            .map_err(|e| format!("cannot build a record batch: {e}"))?;
        let writer = self
            .writer
            .as_mut()
            .ok_or("the Parquet part is already finished")?;
        writer
            .write(&batch)
            .map_err(|e| format!("cannot encode a Parquet row group: {e}"))?;
        if writer.in_progress_size() >= ROW_GROUP_MAX_BYTES {
            writer
                .flush()
                .map_err(|e| format!("cannot write a Parquet row group: {e}"))?;
        }
        self.batch_rows = 0;
        self.batch_bytes = 0;
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        if let Some(writer) = self.writer.as_mut() {
            out.append(writer.inner_mut());
        }
    }

    /// Checks the stream ended with its trailer and writes the rest of the file (the last
    /// row group and the footer) into `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if !self.framing.at_end() {
            return Err("the binary COPY stream ended before its trailer".into());
        }
        self.write_batch()?;
        let writer = self
            .writer
            .take()
            .ok_or("the Parquet part is already finished")?;
        let bytes = writer
            .into_inner()
            .map_err(|e| format!("cannot finish the Parquet part: {e}"))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }
}

/// A key value for an error message (its text where it has a short one).
fn render_key(scalar: Scalar, b: &[u8]) -> String {
    let shown = match scalar {
        Scalar::Int2 => pgvalue::int2(b).map(|v| v.to_string()),
        Scalar::Int4 => pgvalue::int4(b).map(|v| v.to_string()),
        Scalar::Int8 => pgvalue::int8(b).map(|v| v.to_string()),
        Scalar::Decimal { .. } | Scalar::NumericText => pgvalue::numeric(b).map(|n| n.to_text()),
        Scalar::Text(_) => {
            pgvalue::text(b).map(|t| format!("{:?}", t.chars().take(64).collect::<String>()))
        }
        Scalar::Uuid => pgvalue::uuid(b).map(hex::encode),
        Scalar::Date => pgvalue::date(b).and_then(|d| {
            jiff::Timestamp::from_second(i64::from(d) * 86_400)
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
                .map_err(|e| e.to_string())
        }),
        Scalar::Timestamp | Scalar::TimestampTz => pgvalue::timestamp(b).and_then(|t| {
            jiff::Timestamp::from_microsecond(t)
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
        }),
        _ => Err(String::new()),
    };
    shown.unwrap_or_else(|_| "not printable".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pgbinary::tests::stream;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use reportjob_core::plan::KeyType;

    fn planned(columns: &[(&str, &str)]) -> PlannedSource {
        PlannedSource {
            description: "t".into(),
            table: None,
            key_column: "id".into(),
            key_type: KeyType::Integer,
            columns: columns.iter().map(|(c, _)| c.to_string()).collect(),
            spec_digest: String::new(),
            parameters: Vec::new(),
            column_types: columns.iter().map(|(_, t)| t.to_string()).collect(),
        }
    }

    fn numeric_12_5(units: u16, cents: u16) -> Vec<u8> {
        // 12.50-style values: [units, cents * 100] with weight 0, dscale 2.
        let mut b = Vec::new();
        for v in [2u16, 0, 0, 2, units, cents * 100] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn int_array(values: &[Option<i32>]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [1i32, 1, 23, values.len() as i32, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&4i32.to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn the_select_casts_every_column_to_its_parquet_source_type() {
        let p = planned(&[
            ("id", "bigint"),
            ("Amount", "numeric(12,2)"),
            ("iv", "interval"),
        ]);
        assert_eq!(
            select_typed("Q", &part_schema(&p).unwrap()),
            "SELECT rj_chunk.\"id\"::int8 AS \"id\", rj_chunk.\"Amount\"::numeric AS \"Amount\", rj_chunk.\"iv\"::text AS \"iv\" FROM (\nQ\n) AS rj_chunk"
        );
        let mut old = p.clone();
        old.column_types.clear();
        assert!(part_schema(&old).unwrap_err().contains("plan again"));
    }

    #[test]
    fn a_binary_stream_becomes_a_parquet_file_with_row_groups_of_the_asked_size() {
        let p = planned(&[
            ("id", "bigint"),
            ("amount", "numeric(12,2)"),
            ("t", "text"),
            ("xs", "integer[]"),
        ]);
        let ids: Vec<[u8; 8]> = (1..=10i64).map(i64::to_be_bytes).collect();
        let amount = numeric_12_5(12, 50);
        let xs = int_array(&[Some(7), None]);
        let rows: Vec<Vec<Option<&[u8]>>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                vec![
                    Some(&id[..]),
                    (i % 2 == 0).then_some(&amount[..]),
                    Some(&b"caf\xc3\xa9"[..]),
                    (i % 3 == 0).then_some(&xs[..]),
                ]
            })
            .collect();
        let bytes = stream(&rows);
        let mut s = ParquetStream::new(&p, 4, ParquetCompression::Zstd).unwrap();
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            let mut o = Vec::new();
            s.feed(piece, &mut o).unwrap();
            out.extend_from_slice(&o);
        }
        let mut o = Vec::new();
        s.finish(&mut o).unwrap();
        out.extend_from_slice(&o);
        assert_eq!(s.rows(), 10);

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out)).unwrap();
        let meta = reader.metadata().clone();
        assert_eq!(meta.file_metadata().num_rows(), 10);
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![4, 4, 2]);
        // The key, in order within a part, is delta-packed without a dictionary; the other
        // columns keep the writer's defaults (a dictionary where it pays).
        let key = meta.row_group(0).column(0);
        assert!(
            key.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED),
            "{:?}",
            key.encodings().collect::<Vec<_>>()
        );
        assert!(key.dictionary_page_offset().is_none());
        let text = meta.row_group(0).column(2);
        assert!(text.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
        let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        let batch = arrow_select_concat(&batches);
        assert_eq!(batch.0, (1..=10).collect::<Vec<i64>>());
        assert_eq!(batch.1[0], Some(1250));
        assert_eq!(batch.1[1], None);
        assert_eq!(
            batch.2,
            vec![
                Some(vec![Some(7), None]),
                None,
                None,
                Some(vec![Some(7), None])
            ]
        );
    }

    /// The ids, amounts (unscaled) and the first four lists of `batches`.
    #[allow(clippy::type_complexity)]
    fn arrow_select_concat(
        batches: &[RecordBatch],
    ) -> (Vec<i64>, Vec<Option<i128>>, Vec<Option<Vec<Option<i32>>>>) {
        let (mut ids, mut amounts, mut lists) = (Vec::new(), Vec::new(), Vec::new());
        for b in batches {
            ids.extend(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            amounts.extend(b.column(1).as_primitive::<Decimal128Type>().iter());
            let list = b.column(3).as_list::<i32>();
            for i in 0..list.len() {
                lists.push(list.is_valid(i).then(|| {
                    list.value(i)
                        .as_primitive::<Int32Type>()
                        .iter()
                        .collect::<Vec<_>>()
                }));
            }
        }
        lists.truncate(4);
        (ids, amounts, lists)
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_column_and_the_key() {
        let p = planned(&[("id", "integer"), ("d", "date")]);
        let id = 42i32.to_be_bytes();
        let inf = i32::MAX.to_be_bytes();
        let bytes = stream(&[vec![Some(&id[..]), Some(&inf[..])]]);
        let mut s = ParquetStream::new(&p, 100, ParquetCompression::None).unwrap();
        let err = s.feed(&bytes, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            "column \"d\", the row whose id is 42: the date is infinity, which a Parquet DATE cannot hold"
        );
        // A stream cut before its trailer is not a finished part.
        let mut s = ParquetStream::new(&p, 100, ParquetCompression::None).unwrap();
        let ok = stream(&[vec![Some(&id[..]), None]]);
        s.feed(&ok[..ok.len() - 2], &mut Vec::new()).unwrap();
        assert!(s.finish(&mut Vec::new()).unwrap_err().contains("trailer"));
    }
}
