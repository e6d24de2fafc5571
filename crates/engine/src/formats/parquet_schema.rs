//! The Parquet column of each Postgres type: which Arrow type holds it, which cast the
//! chunk's SELECT applies (so that the binary `COPY` stream has exactly the layout the
//! decoder expects), and which columns fall back to text (with a warning). Pure.

use std::sync::Arc;

use arrow_schema::extension::{Json, Uuid};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// Largest precision of a Parquet DECIMAL held in 128 bits.
const DECIMAL128_MAX: u8 = 38;
/// Largest precision of a DECIMAL held in 256 bits; wider `numeric`s become text.
const DECIMAL256_MAX: u8 = 76;

/// What one value of a column is, in Parquet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// `smallint`: INT32 (INT_16).
    Int2,
    /// `integer`: INT32.
    Int4,
    /// `bigint`: INT64.
    Int8,
    /// `real`: FLOAT.
    Float4,
    /// `double precision`: DOUBLE.
    Float8,
    /// `boolean`.
    Bool,
    /// `numeric(p,s)` with 0 <= s <= p <= 76: DECIMAL(p,s).
    Decimal {
        /// Precision.
        precision: u8,
        /// Scale.
        scale: u8,
    },
    /// `numeric` without a usable precision: its exact text (`NaN`, `Infinity` included).
    NumericText,
    /// `text`, `varchar`, `bpchar` (blank padding kept) and anything cast to text.
    Text(TextType),
    /// `date`: DATE (days).
    Date,
    /// `timestamp`: TIMESTAMP(MICROS), not adjusted to UTC.
    Timestamp,
    /// `timestamptz`: TIMESTAMP(MICROS) adjusted to UTC.
    TimestampTz,
    /// `uuid`: FIXED_LEN_BYTE_ARRAY(16) with the UUID logical type.
    Uuid,
    /// `json`: a string with the JSON logical type.
    Json,
    /// `jsonb`: a string with the JSON logical type.
    Jsonb,
    /// `bytea`: BYTE_ARRAY.
    Bytea,
}

/// The SQL type a text column is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextType {
    /// `text` (and what falls back to text).
    Text,
    /// `varchar`.
    Varchar,
    /// `bpchar` (cast to `text` would strip its padding).
    Bpchar,
}

/// How one exported column is read and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnType {
    /// The value (or element) type.
    pub scalar: Scalar,
    /// A one-dimensional array of `scalar`: a Parquet LIST.
    pub array: bool,
    /// The Postgres type has no Parquet mapping and is read as its text.
    pub fallback: bool,
}

impl Scalar {
    /// The SQL type the column is cast to in the chunk's SELECT.
    fn sql(&self) -> &'static str {
        match self {
            Scalar::Int2 => "int2",
            Scalar::Int4 => "int4",
            Scalar::Int8 => "int8",
            Scalar::Float4 => "float4",
            Scalar::Float8 => "float8",
            Scalar::Bool => "bool",
            Scalar::Decimal { .. } | Scalar::NumericText => "numeric",
            Scalar::Text(TextType::Text) => "text",
            Scalar::Text(TextType::Varchar) => "varchar",
            Scalar::Text(TextType::Bpchar) => "bpchar",
            Scalar::Date => "date",
            Scalar::Timestamp => "timestamp",
            Scalar::TimestampTz => "timestamptz",
            Scalar::Uuid => "uuid",
            Scalar::Json => "json",
            Scalar::Jsonb => "jsonb",
            Scalar::Bytea => "bytea",
        }
    }

    /// The oid of the SQL type (array elements name it).
    pub fn oid(&self) -> u32 {
        match self {
            Scalar::Int2 => 21,
            Scalar::Int4 => 23,
            Scalar::Int8 => 20,
            Scalar::Float4 => 700,
            Scalar::Float8 => 701,
            Scalar::Bool => 16,
            Scalar::Decimal { .. } | Scalar::NumericText => 1700,
            Scalar::Text(TextType::Text) => 25,
            Scalar::Text(TextType::Varchar) => 1043,
            Scalar::Text(TextType::Bpchar) => 1042,
            Scalar::Date => 1082,
            Scalar::Timestamp => 1114,
            Scalar::TimestampTz => 1184,
            Scalar::Uuid => 2950,
            Scalar::Json => 114,
            Scalar::Jsonb => 3802,
            Scalar::Bytea => 17,
        }
    }

    /// The Arrow field of a value (nullable: Postgres columns may hold NULL).
    pub fn field(&self, name: &str) -> Field {
        let data_type = match *self {
            Scalar::Int2 => DataType::Int16,
            Scalar::Int4 => DataType::Int32,
            Scalar::Int8 => DataType::Int64,
            Scalar::Float4 => DataType::Float32,
            Scalar::Float8 => DataType::Float64,
            Scalar::Bool => DataType::Boolean,
            Scalar::Decimal { precision, scale } if precision <= DECIMAL128_MAX => {
                DataType::Decimal128(precision, scale as i8)
            }
            Scalar::Decimal { precision, scale } => DataType::Decimal256(precision, scale as i8),
            Scalar::NumericText | Scalar::Text(_) | Scalar::Json | Scalar::Jsonb => DataType::Utf8,
            Scalar::Date => DataType::Date32,
            Scalar::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Scalar::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Scalar::Uuid => DataType::FixedSizeBinary(16),
            Scalar::Bytea => DataType::Binary,
        };
        let field = Field::new(name, data_type, true);
        match self {
            Scalar::Uuid => field.with_extension_type(Uuid),
            Scalar::Json | Scalar::Jsonb => field.with_extension_type(Json::default()),
            _ => field,
        }
    }
}

impl ColumnType {
    /// The column of a Postgres type as `format_type` (`numeric(12,2)[]`, `timestamp(3)
    /// with time zone`) or the driver (`INT4[]`, `TIMESTAMPTZ`) names it.
    pub fn from_type_name(type_name: &str) -> ColumnType {
        let t = type_name.trim().to_ascii_lowercase();
        let (base, array) = match t.strip_suffix("[]") {
            Some(base) => (base.trim(), true),
            None => (t.as_str(), false),
        };
        let (name, modifier) = match base.split_once('(') {
            Some((name, rest)) => {
                let (args, after) = rest.split_once(')').unwrap_or((rest, ""));
                // `timestamp(3) with time zone`: the words after the modifier belong to the name.
                (
                    format!("{}{}", name.trim(), after.trim_end()),
                    Some(args.trim()),
                )
            }
            None => (base.to_string(), None),
        };
        let scalar = match name.as_str() {
            "smallint" | "int2" => Some(Scalar::Int2),
            "integer" | "int" | "int4" => Some(Scalar::Int4),
            "bigint" | "int8" => Some(Scalar::Int8),
            "real" | "float4" => Some(Scalar::Float4),
            "double precision" | "float8" => Some(Scalar::Float8),
            "boolean" | "bool" => Some(Scalar::Bool),
            "numeric" | "decimal" => Some(numeric(modifier)),
            "text" => Some(Scalar::Text(TextType::Text)),
            "character varying" | "varchar" => Some(Scalar::Text(TextType::Varchar)),
            // The driver names `bpchar` `CHAR` (and the one-byte `"char"` type `"CHAR"`,
            // quotes included, which falls back to text like every unmapped type).
            "character" | "bpchar" | "char" => Some(Scalar::Text(TextType::Bpchar)),
            "date" => Some(Scalar::Date),
            "timestamp" | "timestamp without time zone" => Some(Scalar::Timestamp),
            "timestamptz" | "timestamp with time zone" => Some(Scalar::TimestampTz),
            "uuid" => Some(Scalar::Uuid),
            "json" => Some(Scalar::Json),
            "jsonb" => Some(Scalar::Jsonb),
            "bytea" => Some(Scalar::Bytea),
            _ => None,
        };
        match scalar {
            Some(scalar) => ColumnType {
                scalar,
                array,
                fallback: false,
            },
            None => ColumnType {
                scalar: Scalar::Text(TextType::Text),
                array: false,
                fallback: true,
            },
        }
    }

    /// The cast the chunk's SELECT applies (`::int4[]`, `::text`).
    pub fn cast(&self) -> String {
        let brackets = if self.array { "[]" } else { "" };
        format!("::{}{brackets}", self.scalar.sql())
    }

    /// The Arrow field of the column.
    pub fn field(&self, name: &str) -> Field {
        if self.array {
            let element = self.scalar.field("element");
            Field::new(name, DataType::List(Arc::new(element)), true)
        } else {
            self.scalar.field(name)
        }
    }
}

/// `numeric(p,s)` as a DECIMAL where Parquet holds it exactly, else text.
fn numeric(modifier: Option<&str>) -> Scalar {
    let Some(args) = modifier else {
        return Scalar::NumericText;
    };
    let mut parts = args.split(',').map(str::trim);
    let precision = parts.next().and_then(|p| p.parse::<u8>().ok());
    let scale = match parts.next() {
        None => Some(0),
        Some(s) => s.parse::<u8>().ok(),
    };
    match (precision, scale, parts.next()) {
        (Some(precision), Some(scale), None)
            if (1..=DECIMAL256_MAX).contains(&precision) && scale <= precision =>
        {
            Scalar::Decimal { precision, scale }
        }
        _ => Scalar::NumericText,
    }
}

/// The columns of a plan, typed, and the Arrow schema of its parts.
#[derive(Clone, Debug)]
pub struct PartSchema {
    /// Each column's name and type, in order.
    pub columns: Vec<(String, ColumnType)>,
    /// The Arrow schema.
    pub arrow: Arc<Schema>,
}

impl PartSchema {
    /// The schema of `columns` with Postgres types `type_names` (the same length; the
    /// caller checks).
    pub fn new(columns: &[String], type_names: &[String]) -> PartSchema {
        let columns: Vec<(String, ColumnType)> = columns
            .iter()
            .zip(type_names)
            .map(|(c, t)| (c.clone(), ColumnType::from_type_name(t)))
            .collect();
        let arrow = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, t)| t.field(name))
                .collect::<Vec<_>>(),
        ));
        PartSchema { columns, arrow }
    }

    /// One warning per column read as text because its type has no Parquet mapping.
    pub fn warnings(columns: &[String], type_names: &[String]) -> Vec<String> {
        columns
            .iter()
            .zip(type_names)
            .filter(|(_, t)| ColumnType::from_type_name(t).fallback)
            .map(|(c, t)| {
                format!("column {c:?} of type {t} has no Parquet mapping; it is written as text")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> ColumnType {
        ColumnType::from_type_name(name)
    }

    #[test]
    fn catalog_and_driver_names_map_alike() {
        for (a, b) in [
            ("integer", "INT4"),
            ("bigint[]", "INT8[]"),
            ("timestamp(3) with time zone", "TIMESTAMPTZ"),
            ("timestamp without time zone", "TIMESTAMP"),
            ("character varying(20)", "VARCHAR"),
            ("character(5)", "BPCHAR"),
            ("character(5)", "CHAR"),
            ("double precision", "FLOAT8"),
            ("jsonb", "JSONB"),
        ] {
            assert_eq!(t(a), t(b), "{a} vs {b}");
            assert!(!t(a).fallback, "{a}");
        }
        assert_eq!(t("timestamp(3) with time zone").scalar, Scalar::TimestampTz);
        assert_eq!(t("text[]").cast(), "::text[]");
        assert_eq!(t("character(5)").cast(), "::bpchar");
    }

    #[test]
    fn numerics_are_decimals_where_parquet_holds_them() {
        assert_eq!(
            t("numeric(12,2)").scalar,
            Scalar::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            t("numeric(5)").scalar,
            Scalar::Decimal {
                precision: 5,
                scale: 0
            }
        );
        assert_eq!(
            t("numeric(60,10)").field("x").data_type(),
            &DataType::Decimal256(60, 10)
        );
        assert_eq!(
            t("numeric(12,2)").field("x").data_type(),
            &DataType::Decimal128(12, 2)
        );
        for text in [
            "numeric",
            "NUMERIC",
            "numeric(100,2)",
            "numeric(5,-2)",
            "numeric(2,5)",
        ] {
            assert_eq!(t(text).scalar, Scalar::NumericText, "{text}");
        }
    }

    #[test]
    fn unmapped_types_fall_back_to_text_with_a_warning() {
        assert!(t("\"char\"").fallback && t("\"CHAR\"").fallback);
        let c = t("interval");
        assert!(c.fallback);
        assert_eq!(c.cast(), "::text");
        assert!(
            t("inet[]").fallback && !t("inet[]").array,
            "a whole array of an unmapped type is one text"
        );
        let w = PartSchema::warnings(
            &["id".into(), "addr".into()],
            &["bigint".into(), "inet".into()],
        );
        assert_eq!(
            w,
            vec![r#"column "addr" of type inet has no Parquet mapping; it is written as text"#]
        );
    }

    #[test]
    fn uuid_and_json_carry_their_logical_types() {
        let u = t("uuid").field("u");
        assert_eq!(u.extension_type_name(), Some("arrow.uuid"));
        let j = t("json[]").field("j");
        let DataType::List(element) = j.data_type() else {
            panic!("{j:?}")
        };
        assert_eq!(element.extension_type_name(), Some("arrow.json"));
    }
}
