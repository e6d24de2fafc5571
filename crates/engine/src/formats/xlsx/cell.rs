//! Pure decisions: what cell each Postgres value becomes in a workbook. A value is written as
//! a number, boolean or date only where a spreadsheet holds it exactly; everything else is
//! text, so no value silently changes.
//!
//! - `smallint`, `integer`: numbers. `bigint`: a number when |v| < 10^15 (Excel keeps 15
//!   significant digits), else text.
//! - `real`, `double precision`: numbers, except NaN, ±Infinity, `-0` (Excel has no negative
//!   zero) and values outside Excel's range (|v| > 9.99999999999999e307, or below the
//!   smallest normal double), which are text as Postgres writes them.
//! - `numeric`: a number when it has at most 15 significant digits and the double nearest
//!   to it reads back as the same decimal; else (and NaN, ±Infinity) text.
//! - `boolean`: booleans.
//! - `date`: an Excel date (format `yyyy-mm-dd`) from 1900-03-01 to 9999-12-31; other
//!   dates (before March 1900, BC, ±infinity, after 9999) are text. Excel counts a
//!   fictitious 1900-02-29 and LibreOffice does not, so a serial day before 1900-03-01
//!   shows as two different dates: such dates are text, which both show alike.
//! - `timestamp`, `timestamptz` (read in UTC): an Excel date and time (format
//!   `yyyy-mm-dd hh:mm:ss.000`) cut to the millisecond, in the same range; others text.
//! - Everything else (text, uuid, json, bytea, arrays, ...): text. The empty string and NULL
//!   are both empty cells.

/// How a column's values are written, from its Postgres type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// `smallint`, `integer`.
    Int32,
    /// `bigint`.
    Int64,
    /// `real`, `double precision`.
    Float,
    /// `numeric`.
    Numeric,
    /// `boolean`.
    Bool,
    /// `date`.
    Date,
    /// `timestamp` (and `timestamptz`, which the part holds in UTC without its offset).
    Timestamp,
    /// Anything else.
    Text,
}

impl ColumnKind {
    /// The kind of a column whose type is named `type_name`, as `format_type` (`numeric(12,2)`,
    /// `timestamp(3) with time zone`) or the driver (`INT8`, `TIMESTAMPTZ`) names it. Arrays
    /// and unknown types are text.
    pub fn of(type_name: &str) -> ColumnKind {
        let lower = type_name.trim().to_ascii_lowercase();
        if lower.ends_with("[]") {
            return ColumnKind::Text;
        }
        // Drop type modifiers: `numeric(12,2)`, `timestamp(3) without time zone`.
        let mut base = String::with_capacity(lower.len());
        let mut depth = 0u32;
        for c in lower.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => base.push(c),
                _ => {}
            }
        }
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        match base.as_str() {
            "smallint" | "int2" | "integer" | "int" | "int4" => ColumnKind::Int32,
            "bigint" | "int8" => ColumnKind::Int64,
            "real" | "float4" | "double precision" | "float8" => ColumnKind::Float,
            "numeric" | "decimal" => ColumnKind::Numeric,
            "boolean" | "bool" => ColumnKind::Bool,
            "date" => ColumnKind::Date,
            "timestamp"
            | "timestamp without time zone"
            | "timestamptz"
            | "timestamp with time zone" => ColumnKind::Timestamp,
            _ => ColumnKind::Text,
        }
    }

    /// Whether a column of this kind holds `timestamptz` values, which the part selects in UTC.
    pub fn is_timestamptz(type_name: &str) -> bool {
        let lower = type_name.trim().to_ascii_lowercase();
        !lower.ends_with("[]")
            && (lower == "timestamptz"
                || (lower.starts_with("timestamp") && lower.ends_with("with time zone")))
    }
}

/// What one value becomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// An empty cell: NULL or the empty string.
    Empty,
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A date: the Excel serial day number.
    Date(f64),
    /// A date and time: the Excel serial (days and fraction of a day), to the millisecond.
    DateTime(f64),
    /// Text, as Postgres wrote it.
    Text(&'a str),
}

/// Largest magnitude Excel holds.
const EXCEL_MAX: f64 = 9.999_999_999_999_99e307;
/// Integers and decimals with more significant digits than this are text.
const MAX_DIGITS: usize = 15;
/// Bigints from this magnitude on are text.
const BIGINT_LIMIT: i64 = 1_000_000_000_000_000;

/// The cell for `value` (Postgres's text form, `None` for NULL) of a column of `kind`.
pub fn cell(kind: ColumnKind, value: Option<&str>) -> Cell<'_> {
    let Some(text) = value else {
        return Cell::Empty;
    };
    if text.is_empty() {
        return Cell::Empty;
    }
    let decided = match kind {
        ColumnKind::Int32 => text.parse::<i32>().ok().map(|v| Cell::Number(f64::from(v))),
        ColumnKind::Int64 => text
            .parse::<i64>()
            .ok()
            .filter(|v| v.unsigned_abs() < BIGINT_LIMIT.unsigned_abs())
            // |v| < 10^15 < 2^53: exact as a double.
            .map(|v| Cell::Number(v as f64)),
        ColumnKind::Float => float(text),
        ColumnKind::Numeric => numeric(text),
        ColumnKind::Bool => match text {
            "t" => Some(Cell::Bool(true)),
            "f" => Some(Cell::Bool(false)),
            _ => None,
        },
        ColumnKind::Date => parse_date(text)
            .and_then(|(y, m, d)| serial_day(y, m, d))
            .map(|day| Cell::Date(day as f64)),
        ColumnKind::Timestamp => timestamp(text),
        ColumnKind::Text => None,
    };
    decided.unwrap_or(Cell::Text(text))
}

/// A finite, non-negative-zero double inside Excel's range.
fn in_excel_range(v: f64) -> bool {
    v.is_finite()
        && !(v == 0.0 && v.is_sign_negative())
        && (v == 0.0 || (v.abs() >= f64::MIN_POSITIVE && v.abs() <= EXCEL_MAX))
}

fn float(text: &str) -> Option<Cell<'static>> {
    let v: f64 = text.parse().ok()?;
    in_excel_range(v).then_some(Cell::Number(v))
}

/// A decimal's sign, significant digits (no leading or trailing zeros; empty for zero) and
/// the power of ten of its first digit; `None` when `text` is not a plain decimal.
fn decimal_parts(text: &str) -> Option<(bool, String, i64)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{int}{frac}");
    let lead = all.bytes().take_while(|&b| b == b'0').count();
    let digits = all[lead..].trim_end_matches('0').to_string();
    // The first significant digit's power of ten.
    let first = i64::try_from(int.len()).ok()? - 1 - i64::try_from(lead).ok()? + exponent;
    Some((negative && !digits.is_empty(), digits, first))
}

fn numeric(text: &str) -> Option<Cell<'static>> {
    let (negative, digits, first) = decimal_parts(text)?;
    if digits.is_empty() {
        return Some(Cell::Number(0.0));
    }
    if digits.len() > MAX_DIGITS {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    if !in_excel_range(v) {
        return None;
    }
    // The double's shortest decimal form must be the same decimal.
    let (back_negative, back_digits, back_first) = decimal_parts(&format!("{v:e}"))?;
    (back_negative == negative && back_digits == digits && back_first == first)
        .then_some(Cell::Number(v))
}

/// `YYYY-MM-DD` (ISO, as the session's DateStyle writes it) with a year of 1 to 9999; BC
/// dates, ±infinity and wider years are `None`.
fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i64 = text[..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Excel's serial day of a date from 1900-03-01 (61) to 9999-12-31; `None` outside that
/// range (before it, Excel's serials count its fictitious 1900-02-29 and other
/// spreadsheets' do not).
pub fn serial_day(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1900..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, m, d) - days_from_civil(1899, 12, 30);
    (days >= 61).then_some(days)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` in Excel's range, cut to the millisecond.
fn timestamp(text: &str) -> Option<Cell<'static>> {
    let (date, time) = text.split_once(' ')?;
    let (y, m, d) = parse_date(date)?;
    let day = serial_day(y, m, d)?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let h = hms.as_bytes();
    if h.len() != 8 || h[2] != b':' || h[5] != b':' {
        return None;
    }
    let hour: u32 = hms[..2].parse().ok()?;
    let minute: u32 = hms[3..5].parse().ok()?;
    let second: u32 = hms[6..8].parse().ok()?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u32 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let ms_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    Some(Cell::DateTime(
        day as f64 + f64::from(ms_of_day) / 86_400_000.0,
    ))
}

/// Most characters in one cell.
pub const MAX_TEXT_CHARS: usize = 32_767;

/// `text` when it fits in a cell; with `truncate`, its first [`MAX_TEXT_CHARS`] characters;
/// else `Err` with its length in characters.
pub fn fit_text(text: &str, truncate: bool) -> Result<&str, usize> {
    // Fewer bytes than the limit means fewer characters: the common case costs nothing.
    if text.len() <= MAX_TEXT_CHARS {
        return Ok(text);
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        None => Ok(text),
        Some((cut, _)) if truncate => Ok(&text[..cut]),
        Some(_) => Err(text.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(kind: ColumnKind, text: &str) -> Cell<'_> {
        cell(kind, Some(text))
    }

    #[test]
    fn kinds_come_from_either_spelling_of_the_type() {
        for (name, kind) in [
            ("smallint", ColumnKind::Int32),
            ("INT4", ColumnKind::Int32),
            ("bigint", ColumnKind::Int64),
            ("INT8", ColumnKind::Int64),
            ("real", ColumnKind::Float),
            ("double precision", ColumnKind::Float),
            ("FLOAT8", ColumnKind::Float),
            ("numeric(36,10)", ColumnKind::Numeric),
            ("NUMERIC", ColumnKind::Numeric),
            ("boolean", ColumnKind::Bool),
            ("date", ColumnKind::Date),
            ("timestamp(3) without time zone", ColumnKind::Timestamp),
            ("timestamp with time zone", ColumnKind::Timestamp),
            ("TIMESTAMPTZ", ColumnKind::Timestamp),
            ("integer[]", ColumnKind::Text),
            ("uuid", ColumnKind::Text),
            ("character varying(20)", ColumnKind::Text),
        ] {
            assert_eq!(ColumnKind::of(name), kind, "{name}");
        }
        assert!(ColumnKind::is_timestamptz("timestamp(3) with time zone"));
        assert!(ColumnKind::is_timestamptz("TIMESTAMPTZ"));
        assert!(!ColumnKind::is_timestamptz("timestamp without time zone"));
        assert!(!ColumnKind::is_timestamptz("timestamptz[]"));
    }

    #[test]
    fn null_and_empty_are_empty_cells() {
        assert_eq!(cell(ColumnKind::Text, None), Cell::Empty);
        assert_eq!(c(ColumnKind::Text, ""), Cell::Empty);
        assert_eq!(cell(ColumnKind::Int32, None), Cell::Empty);
        assert_eq!(c(ColumnKind::Text, "x"), Cell::Text("x"));
    }

    #[test]
    fn integers_beyond_15_digits_are_text() {
        assert_eq!(c(ColumnKind::Int32, "-32768"), Cell::Number(-32768.0));
        assert_eq!(
            c(ColumnKind::Int32, "2147483647"),
            Cell::Number(2147483647.0)
        );
        assert_eq!(
            c(ColumnKind::Int64, "999999999999999"),
            Cell::Number(999_999_999_999_999.0)
        );
        assert_eq!(
            c(ColumnKind::Int64, "-999999999999999"),
            Cell::Number(-999_999_999_999_999.0)
        );
        for big in [
            "1000000000000000",
            "-1000000000000000",
            "9223372036854775807",
        ] {
            assert_eq!(c(ColumnKind::Int64, big), Cell::Text(big));
        }
        assert_eq!(
            c(ColumnKind::Int64, "-9223372036854775808"),
            Cell::Text("-9223372036854775808")
        );
    }

    #[test]
    fn floats_are_numbers_unless_a_spreadsheet_cannot_hold_them() {
        assert_eq!(c(ColumnKind::Float, "0.1"), Cell::Number(0.1));
        assert_eq!(c(ColumnKind::Float, "1.1"), Cell::Number(1.1));
        assert_eq!(
            c(ColumnKind::Float, "123456789.12345679"),
            Cell::Number(123_456_789.123_456_79)
        );
        assert_eq!(c(ColumnKind::Float, "0"), Cell::Number(0.0));
        for text in [
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
            "1.7976931348623157e+308",
            "5e-324",
        ] {
            assert_eq!(c(ColumnKind::Float, text), Cell::Text(text), "{text}");
        }
        assert_eq!(
            c(ColumnKind::Float, "3.4028235e+38"),
            Cell::Number(3.4028235e38)
        );
    }

    #[test]
    fn numerics_are_numbers_only_when_a_double_holds_them_exactly() {
        assert_eq!(c(ColumnKind::Numeric, "1.5000000000"), Cell::Number(1.5));
        assert_eq!(
            c(ColumnKind::Numeric, "-0.0000000001"),
            Cell::Number(-1e-10)
        );
        assert_eq!(c(ColumnKind::Numeric, "0.0000000000"), Cell::Number(0.0));
        assert_eq!(c(ColumnKind::Numeric, "7"), Cell::Number(7.0));
        assert_eq!(c(ColumnKind::Numeric, "-1e-30"), Cell::Number(-1e-30));
        assert_eq!(
            c(ColumnKind::Numeric, "123456789012.345"),
            Cell::Number(123_456_789_012.345)
        );
        assert_eq!(
            c(ColumnKind::Numeric, "0.000000000000000000000000000001"),
            Cell::Number(1e-30)
        );
        for text in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1234567890123456",
            "0.1234567890123456",
            "12345678901234567890123456.1234567890",
            "123456789012345678901234567890.123456789012345678901",
            "1e400",
            "1e-400",
        ] {
            assert_eq!(c(ColumnKind::Numeric, text), Cell::Text(text), "{text}");
        }
    }

    #[test]
    fn booleans_are_booleans() {
        assert_eq!(c(ColumnKind::Bool, "t"), Cell::Bool(true));
        assert_eq!(c(ColumnKind::Bool, "f"), Cell::Bool(false));
    }

    #[test]
    fn dates_count_excels_days_and_the_unholdable_are_text() {
        assert_eq!(serial_day(1900, 1, 1), None);
        assert_eq!(serial_day(1900, 2, 28), None);
        assert_eq!(serial_day(1900, 3, 1), Some(61));
        assert_eq!(serial_day(1970, 1, 1), Some(25_569));
        assert_eq!(serial_day(2038, 1, 19), Some(50_424));
        assert_eq!(serial_day(9999, 12, 31), Some(2_958_465));
        assert_eq!(c(ColumnKind::Date, "1969-12-31"), Cell::Date(25_568.0));
        for text in [
            "1899-12-31",
            "1900-01-15",
            "1900-02-28",
            "0044-03-15 BC",
            "infinity",
            "-infinity",
            "10000-01-01",
        ] {
            assert_eq!(c(ColumnKind::Date, text), Cell::Text(text), "{text}");
        }
    }

    #[test]
    fn timestamps_are_cut_to_the_millisecond() {
        assert_eq!(
            c(ColumnKind::Timestamp, "1970-01-01 12:00:00"),
            Cell::DateTime(25_569.5)
        );
        let Cell::DateTime(v) = c(ColumnKind::Timestamp, "2040-02-29 23:59:59.999999") else {
            panic!("not a date");
        };
        let day = serial_day(2040, 2, 29).unwrap() as f64;
        assert_eq!(v, day + 86_399_999.0 / 86_400_000.0);
        let Cell::DateTime(v) = c(ColumnKind::Timestamp, "2000-01-01 00:00:00.5") else {
            panic!("not a date");
        };
        assert_eq!(v, serial_day(2000, 1, 1).unwrap() as f64 + 0.5 / 86_400.0);
        for text in [
            "1899-12-31 23:59:59",
            "1900-02-28 12:00:00",
            "infinity",
            "-infinity",
            "0001-01-01 00:00:00 BC",
            "2000-01-01T00:00:00",
        ] {
            assert_eq!(c(ColumnKind::Timestamp, text), Cell::Text(text), "{text}");
        }
    }

    #[test]
    fn long_text_is_refused_or_cut_at_32767_characters() {
        let fits = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(fit_text(&fits, false), Ok(fits.as_str()));
        let long = format!("{fits}x");
        assert_eq!(fit_text(&long, false), Err(MAX_TEXT_CHARS + 1));
        assert_eq!(fit_text(&long, true), Ok(fits.as_str()));
        assert_eq!(fit_text("short", false), Ok("short"));
    }
}
