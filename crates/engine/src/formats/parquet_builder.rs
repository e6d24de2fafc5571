//! Arrow arrays built from binary `COPY` values, one builder per column: each value is
//! decoded by [`super::pgvalue`] into its column's Arrow type (arrays into lists). Pure.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ListArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer, i256};
use arrow_schema::{DataType, FieldRef};

use super::parquet_schema::{ColumnType, Scalar};
use super::pgvalue;

enum Values {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    D128(Decimal128Builder),
    D256(Decimal256Builder),
    Str(StringBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Bin(BinaryBuilder),
}

/// Builds the array of one scalar type.
struct ScalarBuilder {
    scalar: Scalar,
    values: Values,
}

impl ScalarBuilder {
    fn new(scalar: Scalar, data_type: &DataType) -> ScalarBuilder {
        let t = data_type.clone();
        let values = match scalar {
            Scalar::Int2 => Values::I16(Int16Builder::new()),
            Scalar::Int4 => Values::I32(Int32Builder::new()),
            Scalar::Int8 => Values::I64(Int64Builder::new()),
            Scalar::Float4 => Values::F32(Float32Builder::new()),
            Scalar::Float8 => Values::F64(Float64Builder::new()),
            Scalar::Bool => Values::Bool(BooleanBuilder::new()),
            Scalar::Decimal { .. } if matches!(t, DataType::Decimal128(..)) => {
                Values::D128(Decimal128Builder::new().with_data_type(t))
            }
            Scalar::Decimal { .. } => Values::D256(Decimal256Builder::new().with_data_type(t)),
            Scalar::NumericText | Scalar::Text(_) | Scalar::Json | Scalar::Jsonb => {
                Values::Str(StringBuilder::new())
            }
            Scalar::Date => Values::Date(Date32Builder::new()),
            Scalar::Timestamp | Scalar::TimestampTz => {
                Values::Ts(TimestampMicrosecondBuilder::new().with_data_type(t))
            }
            Scalar::Uuid => Values::Uuid(FixedSizeBinaryBuilder::new(16)),
            Scalar::Bytea => Values::Bin(BinaryBuilder::new()),
        };
        ScalarBuilder { scalar, values }
    }

    fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(b) = value else {
            match &mut self.values {
                Values::I16(v) => v.append_null(),
                Values::I32(v) => v.append_null(),
                Values::I64(v) => v.append_null(),
                Values::F32(v) => v.append_null(),
                Values::F64(v) => v.append_null(),
                Values::Bool(v) => v.append_null(),
                Values::D128(v) => v.append_null(),
                Values::D256(v) => v.append_null(),
                Values::Str(v) => v.append_null(),
                Values::Date(v) => v.append_null(),
                Values::Ts(v) => v.append_null(),
                Values::Uuid(v) => v.append_null(),
                Values::Bin(v) => v.append_null(),
            }
            return Ok(());
        };
        match (&mut self.values, self.scalar) {
            (Values::I16(v), _) => v.append_value(pgvalue::int2(b)?),
            (Values::I32(v), _) => v.append_value(pgvalue::int4(b)?),
            (Values::I64(v), _) => v.append_value(pgvalue::int8(b)?),
            (Values::F32(v), _) => v.append_value(pgvalue::float4(b)?),
            (Values::F64(v), _) => v.append_value(pgvalue::float8(b)?),
            (Values::Bool(v), _) => v.append_value(pgvalue::boolean(b)?),
            (Values::D128(v), Scalar::Decimal { precision, scale }) => {
                let text = pgvalue::numeric(b)?.unscaled(precision, scale)?;
                let n = text
                    .parse::<i128>()
                    .map_err(|e| format!("the numeric value {text} does not fit: {e}"))?;
                v.append_value(n);
            }
            (Values::D256(v), Scalar::Decimal { precision, scale }) => {
                let text = pgvalue::numeric(b)?.unscaled(precision, scale)?;
                let n = i256::from_string(&text)
                    .ok_or_else(|| format!("the numeric value {text} does not fit 256 bits"))?;
                v.append_value(n);
            }
            (Values::Str(v), Scalar::NumericText) => v.append_value(pgvalue::numeric(b)?.to_text()),
            (Values::Str(v), Scalar::Jsonb) => v.append_value(pgvalue::jsonb(b)?),
            (Values::Str(v), _) => v.append_value(pgvalue::text(b)?),
            (Values::Date(v), _) => v.append_value(pgvalue::date(b)?),
            (Values::Ts(v), _) => v.append_value(pgvalue::timestamp(b)?),
            (Values::Uuid(v), _) => v
                .append_value(pgvalue::uuid(b)?)
                .map_err(|e| format!("a uuid value was refused: {e}"))?,
            (Values::Bin(v), _) => v.append_value(b),
            (Values::D128(_) | Values::D256(_), _) => {
                return Err("a decimal builder for a column that is not a decimal".into());
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match &mut self.values {
            Values::I16(v) => Arc::new(v.finish()),
            Values::I32(v) => Arc::new(v.finish()),
            Values::I64(v) => Arc::new(v.finish()),
            Values::F32(v) => Arc::new(v.finish()),
            Values::F64(v) => Arc::new(v.finish()),
            Values::Bool(v) => Arc::new(v.finish()),
            Values::D128(v) => Arc::new(v.finish()),
            Values::D256(v) => Arc::new(v.finish()),
            Values::Str(v) => Arc::new(v.finish()),
            Values::Date(v) => Arc::new(v.finish()),
            Values::Ts(v) => Arc::new(v.finish()),
            Values::Uuid(v) => Arc::new(v.finish()),
            Values::Bin(v) => Arc::new(v.finish()),
        }
    }
}

/// Builds one column's array from its binary values.
pub struct ColumnBuilder {
    inner: Inner,
}

enum Inner {
    Scalar(ScalarBuilder),
    List {
        element: FieldRef,
        values: ScalarBuilder,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl ColumnBuilder {
    /// A builder for a column of `column` type whose Arrow field type is `data_type`.
    pub fn new(column: &ColumnType, data_type: &DataType) -> Result<ColumnBuilder, String> {
        let inner = if column.array {
            let DataType::List(element) = data_type else {
                return Err(format!("an array column has the Arrow type {data_type}"));
            };
            Inner::List {
                values: ScalarBuilder::new(column.scalar, element.data_type()),
                element: element.clone(),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(1024),
            }
        } else {
            Inner::Scalar(ScalarBuilder::new(column.scalar, data_type))
        };
        Ok(ColumnBuilder { inner })
    }

    /// Appends one value (`None` for NULL).
    pub fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        match &mut self.inner {
            Inner::Scalar(s) => s.append(value),
            Inner::List {
                values,
                offsets,
                nulls,
                ..
            } => {
                let last = offsets.last().copied().unwrap_or(0);
                let Some(b) = value else {
                    nulls.append_null();
                    offsets.push(last);
                    return Ok(());
                };
                let oid = values.scalar.oid();
                let n = pgvalue::array_elements(b, oid, |e| values.append(e))?;
                let end = i32::try_from(n)
                    .ok()
                    .and_then(|n| last.checked_add(n))
                    .ok_or("a batch of arrays holds more than 2^31 elements")?;
                nulls.append_non_null();
                offsets.push(end);
                Ok(())
            }
        }
    }

    /// The array of the values appended since the last call.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        match &mut self.inner {
            Inner::Scalar(s) => Ok(s.finish()),
            Inner::List {
                element,
                values,
                offsets,
                nulls,
            } => {
                let offsets =
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let list =
                    ListArray::try_new(element.clone(), offsets, values.finish(), nulls.finish())
                        .map_err(|e| format!("cannot build a list array: {e}"))?;
                Ok(Arc::new(list) as Arc<dyn Array>)
            }
        }
    }
}
