//! Postgres's binary send format of single values, decoded into plain Rust values: every
//! length checked, every special value (NaN, infinities) named, never a guess. Pure.

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

fn exact<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("a {what} value has {} bytes, expected {N}", b.len()))
}

/// An `int2`.
pub fn int2(b: &[u8]) -> Result<i16, String> {
    exact::<2>(b, "int2").map(i16::from_be_bytes)
}

/// An `int4`.
pub fn int4(b: &[u8]) -> Result<i32, String> {
    exact::<4>(b, "int4").map(i32::from_be_bytes)
}

/// An `int8`.
pub fn int8(b: &[u8]) -> Result<i64, String> {
    exact::<8>(b, "int8").map(i64::from_be_bytes)
}

/// A `float4`, bit for bit (NaN, infinities and -0 included).
pub fn float4(b: &[u8]) -> Result<f32, String> {
    exact::<4>(b, "float4").map(|a| f32::from_bits(u32::from_be_bytes(a)))
}

/// A `float8`, bit for bit.
pub fn float8(b: &[u8]) -> Result<f64, String> {
    exact::<8>(b, "float8").map(|a| f64::from_bits(u64::from_be_bytes(a)))
}

/// A `bool`.
pub fn boolean(b: &[u8]) -> Result<bool, String> {
    match b {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(format!("a bool value is {b:?}, expected [0] or [1]")),
    }
}

/// A `uuid`'s 16 bytes.
pub fn uuid(b: &[u8]) -> Result<[u8; 16], String> {
    exact::<16>(b, "uuid")
}

/// Text (`text`, `varchar`, `bpchar`, `json`, a value cast to text): UTF-8 checked.
pub fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("a text value is not valid UTF-8: {e}"))
}

/// A `jsonb` value's JSON text (after its format version byte, 1).
pub fn jsonb(b: &[u8]) -> Result<&str, String> {
    match b.split_first() {
        Some((1, rest)) => text(rest),
        Some((v, _)) => Err(format!("a jsonb value has format version {v}, expected 1")),
        None => Err("a jsonb value is empty".into()),
    }
}

/// A `date` as days since 1970-01-01; infinities are refused (no Parquet date holds them).
pub fn date(b: &[u8]) -> Result<i32, String> {
    let days = exact::<4>(b, "date").map(i32::from_be_bytes)?;
    match days {
        i32::MAX => Err("the date is infinity, which a Parquet DATE cannot hold".into()),
        i32::MIN => Err("the date is -infinity, which a Parquet DATE cannot hold".into()),
        d => d
            .checked_add(EPOCH_DAYS)
            .ok_or_else(|| format!("the date ({d} days after 2000-01-01) is out of range")),
    }
}

/// A `timestamp` or `timestamptz` as microseconds since 1970-01-01 (UTC for
/// `timestamptz`); infinities are refused.
pub fn timestamp(b: &[u8]) -> Result<i64, String> {
    let micros = exact::<8>(b, "timestamp").map(i64::from_be_bytes)?;
    match micros {
        i64::MAX => Err("the timestamp is infinity, which a Parquet TIMESTAMP cannot hold".into()),
        i64::MIN => Err("the timestamp is -infinity, which a Parquet TIMESTAMP cannot hold".into()),
        m => m.checked_add(EPOCH_MICROS).ok_or_else(|| {
            format!("the timestamp ({m} microseconds after 2000-01-01) is out of range")
        }),
    }
}

/// A `numeric` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Numeric {
    /// `NaN`.
    NaN,
    /// `Infinity`.
    Infinity,
    /// `-Infinity`.
    NegInfinity,
    /// A finite value: its digits before the point (no leading zeros; `"0"` when none),
    /// and exactly its display scale's digits after it.
    Finite {
        /// A minus sign.
        negative: bool,
        /// Integer digits.
        int: String,
        /// Fraction digits (`dscale` of them).
        frac: String,
    },
}

/// A `numeric` value: `ndigits`, `weight`, `sign`, `dscale`, then base-10000 digits.
pub fn numeric(b: &[u8]) -> Result<Numeric, String> {
    let head = |i: usize| -> Option<[u8; 2]> { b.get(i..i + 2)?.try_into().ok() };
    let (Some(n), Some(w), Some(s), Some(d)) = (head(0), head(2), head(4), head(6)) else {
        return Err(format!(
            "a numeric value has {} bytes, fewer than its header's 8",
            b.len()
        ));
    };
    let ndigits = i16::from_be_bytes(n);
    let weight = i32::from(i16::from_be_bytes(w));
    let sign = u16::from_be_bytes(s);
    let dscale = u16::from_be_bytes(d);
    let ndigits =
        usize::try_from(ndigits).map_err(|_| format!("a numeric value has {ndigits} digits"))?;
    if b.len() != 8 + 2 * ndigits {
        return Err(format!(
            "a numeric value of {ndigits} digits has {} bytes, expected {}",
            b.len(),
            8 + 2 * ndigits
        ));
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(Numeric::NaN),
        0xD000 => return Ok(Numeric::Infinity),
        0xF000 => return Ok(Numeric::NegInfinity),
        other => return Err(format!("a numeric value has sign {other:#06x}")),
    };
    if dscale > 0x3FFF {
        return Err(format!("a numeric value has display scale {dscale}"));
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let g = u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]);
        if g > 9999 {
            return Err(format!("a numeric value has the base-10000 digit {g}"));
        }
        digits.push(g);
    }
    // Digit i weighs 10000^(weight - i).
    let group = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut int = String::new();
    for i in 0..=weight {
        let g = group(i);
        if int.is_empty() {
            if g != 0 {
                int.push_str(&g.to_string());
            }
        } else {
            int.push_str(&format!("{g:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let dscale = usize::from(dscale);
    let last = i32::try_from(ndigits).unwrap_or(i32::MAX) - 1;
    let groups = (dscale.div_ceil(4)).max(usize::try_from(last - weight).unwrap_or(0));
    let mut frac = String::with_capacity(groups * 4);
    for k in 1..=groups {
        let i = weight.saturating_add(i32::try_from(k).unwrap_or(i32::MAX));
        frac.push_str(&format!("{:04}", group(i)));
    }
    if frac[dscale.min(frac.len())..].bytes().any(|c| c != b'0') {
        return Err(format!(
            "a numeric value has nonzero digits beyond its display scale {dscale}"
        ));
    }
    frac.truncate(dscale);
    Ok(Numeric::Finite {
        negative,
        int,
        frac,
    })
}

impl Numeric {
    /// The value as Postgres writes it (`-12.50`, `NaN`, `Infinity`, `-Infinity`).
    pub fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::Infinity => "Infinity".into(),
            Numeric::NegInfinity => "-Infinity".into(),
            Numeric::Finite {
                negative,
                int,
                frac,
            } => {
                let sign = if *negative { "-" } else { "" };
                if frac.is_empty() {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac}")
                }
            }
        }
    }

    /// The value as an unscaled integer's decimal text for a DECIMAL(`precision`, `scale`)
    /// (`-1250` for -12.50 at scale 2), refused when it does not fit exactly.
    pub fn unscaled(&self, precision: u8, scale: u8) -> Result<String, String> {
        let Numeric::Finite {
            negative,
            int,
            frac,
        } = self
        else {
            return Err(format!(
                "the numeric value {} cannot be stored as a DECIMAL",
                self.to_text()
            ));
        };
        let scale = usize::from(scale);
        let (kept, dropped) = frac.split_at(frac.len().min(scale));
        if dropped.bytes().any(|c| c != b'0') {
            return Err(format!(
                "the numeric value {} has more than {scale} fraction digits",
                self.to_text()
            ));
        }
        let mut digits = String::with_capacity(int.len() + scale);
        digits.push_str(int.trim_start_matches('0'));
        digits.push_str(kept);
        digits.extend(std::iter::repeat_n('0', scale - kept.len()));
        let digits = digits.trim_start_matches('0');
        if digits.len() > usize::from(precision) {
            return Err(format!(
                "the numeric value {} has more than {precision} digits",
                self.to_text()
            ));
        }
        Ok(match (digits.is_empty(), negative) {
            (true, _) => "0".into(),
            (false, true) => format!("-{digits}"),
            (false, false) => digits.to_string(),
        })
    }
}

/// Calls `each` with every element of a one-dimensional array of element type
/// `element_oid` (`None` for NULL); returns how many there were.
pub fn array_elements<'a>(
    b: &'a [u8],
    element_oid: u32,
    mut each: impl FnMut(Option<&'a [u8]>) -> Result<(), String>,
) -> Result<usize, String> {
    let word = |at: usize| -> Result<i32, String> {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(i32::from_be_bytes)
            .ok_or_else(|| {
                format!(
                    "an array value ends after {} bytes, inside its header",
                    b.len()
                )
            })
    };
    let ndim = word(0)?;
    let oid = word(8)? as u32;
    if oid != element_oid {
        return Err(format!(
            "an array value has elements of type oid {oid}, expected {element_oid}"
        ));
    }
    match ndim {
        0 => {
            return if b.len() == 12 {
                Ok(0)
            } else {
                Err("an empty array value has trailing bytes".into())
            };
        }
        1 => {}
        n if n > 1 => {
            return Err(format!(
                "the array has {n} dimensions; only one-dimensional arrays become Parquet lists (cast the column to text in a query)"
            ));
        }
        n => return Err(format!("an array value has {n} dimensions")),
    }
    let len = word(12)?;
    let len = usize::try_from(len).map_err(|_| format!("an array value has {len} elements"))?;
    // Each element takes at least its 4-byte length.
    if len > (b.len().saturating_sub(20)) / 4 {
        return Err(format!(
            "an array value of {} bytes claims {len} elements",
            b.len()
        ));
    }
    let mut at = 20;
    for _ in 0..len {
        let n = word(at)?;
        at += 4;
        if n == -1 {
            each(None)?;
            continue;
        }
        let n = usize::try_from(n).map_err(|_| format!("an array element has length {n}"))?;
        let value = b
            .get(at..at + n)
            .ok_or_else(|| format!("an array element of {n} bytes runs past its array"))?;
        each(Some(value))?;
        at += n;
    }
    if at != b.len() {
        return Err(format!(
            "an array value has {} bytes after its elements",
            b.len() - at
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [ndigits as u16, weight as u16, sign, dscale] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_read_as_postgres_writes_them() {
        // 12345.678 = [1, 2345, 6780] with weight 1, dscale 3.
        let v = numeric(&num(3, 1, 0, 3, &[1, 2345, 6780])).unwrap();
        assert_eq!(v.to_text(), "12345.678");
        assert_eq!(v.unscaled(10, 3).unwrap(), "12345678");
        assert_eq!(v.unscaled(10, 5).unwrap(), "1234567800");
        assert!(
            v.unscaled(10, 2)
                .unwrap_err()
                .contains("more than 2 fraction digits")
        );
        assert!(v.unscaled(7, 3).unwrap_err().contains("more than 7 digits"));
        // -0.0001 = [1] with weight -1; 0.00000001 = [1] with weight -2.
        assert_eq!(
            numeric(&num(1, -1, 0x4000, 4, &[1])).unwrap().to_text(),
            "-0.0001"
        );
        assert_eq!(
            numeric(&num(1, -2, 0, 8, &[1])).unwrap().to_text(),
            "0.00000001"
        );
        // 10000 = [1] weight 1 (trailing zero groups are left out).
        assert_eq!(numeric(&num(1, 1, 0, 0, &[1])).unwrap().to_text(), "10000");
        assert_eq!(numeric(&num(0, 0, 0, 2, &[])).unwrap().to_text(), "0.00");
        assert_eq!(
            numeric(&num(0, 0, 0, 0, &[]))
                .unwrap()
                .unscaled(5, 2)
                .unwrap(),
            "0"
        );
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), Numeric::NaN);
        assert_eq!(
            numeric(&num(0, 0, 0xD000, 0, &[])).unwrap().to_text(),
            "Infinity"
        );
        assert_eq!(
            numeric(&num(0, 0, 0xF000, 0, &[])).unwrap().to_text(),
            "-Infinity"
        );
        assert!(Numeric::NaN.unscaled(5, 0).unwrap_err().contains("NaN"));
    }

    #[test]
    fn malformed_numerics_are_refused() {
        assert!(numeric(&[0, 1]).unwrap_err().contains("header"));
        assert!(
            numeric(&num(2, 0, 0, 0, &[1]))
                .unwrap_err()
                .contains("expected 12")
        );
        assert!(
            numeric(&num(1, 0, 0, 0, &[10000]))
                .unwrap_err()
                .contains("10000")
        );
        assert!(
            numeric(&num(1, 0, 0x1234, 0, &[1]))
                .unwrap_err()
                .contains("0x1234")
        );
        assert!(
            numeric(&num(1, -1, 0, 2, &[1]))
                .unwrap_err()
                .contains("beyond")
        );
    }

    #[test]
    fn dates_and_timestamps_shift_epochs_and_refuse_infinity() {
        assert_eq!(date(&0i32.to_be_bytes()).unwrap(), 10_957);
        assert_eq!(date(&(-10_958i32).to_be_bytes()).unwrap(), -1);
        assert!(
            date(&i32::MAX.to_be_bytes())
                .unwrap_err()
                .contains("infinity")
        );
        assert!(
            date(&i32::MIN.to_be_bytes())
                .unwrap_err()
                .contains("-infinity")
        );
        assert_eq!(timestamp(&0i64.to_be_bytes()).unwrap(), EPOCH_MICROS);
        assert!(
            timestamp(&i64::MAX.to_be_bytes())
                .unwrap_err()
                .contains("infinity")
        );
        assert!(
            timestamp(&(i64::MAX - 1).to_be_bytes())
                .unwrap_err()
                .contains("out of range")
        );
        assert!(date(&[0, 0]).unwrap_err().contains("2 bytes"));
    }

    #[test]
    fn scalars_are_exact() {
        assert!(float8(&(-0.0f64).to_be_bytes()).unwrap().is_sign_negative());
        assert!(float4(&f32::NAN.to_be_bytes()).unwrap().is_nan());
        assert_eq!(int8(&i64::MIN.to_be_bytes()).unwrap(), i64::MIN);
        assert!(int4(&[0, 0, 1]).is_err());
        assert!(boolean(&[2]).is_err());
        assert_eq!(jsonb(b"\x01{\"a\": 1}").unwrap(), "{\"a\": 1}");
        assert!(jsonb(b"\x02{}").unwrap_err().contains("version 2"));
        assert!(text(b"\xff").is_err());
    }

    fn array(ndim: i32, oid: u32, elems: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndim.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&oid.to_be_bytes());
        if ndim > 0 {
            b.extend_from_slice(&(elems.len() as i32).to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
        }
        for e in elems {
            match e {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn arrays_yield_their_elements_and_refuse_what_is_not_a_list() {
        let one = 1i32.to_be_bytes();
        let b = array(1, 23, &[Some(&one), None]);
        let mut seen = Vec::new();
        let n = array_elements(&b, 23, |e| {
            seen.push(e.map(<[u8]>::to_vec));
            Ok(())
        })
        .unwrap();
        assert_eq!((n, seen), (2, vec![Some(one.to_vec()), None]));
        assert_eq!(
            array_elements(&array(0, 23, &[]), 23, |_| Ok(())).unwrap(),
            0
        );
        assert!(
            array_elements(&b, 25, |_| Ok(()))
                .unwrap_err()
                .contains("oid 23")
        );
        let mut two = array(1, 23, &[Some(&one)]);
        two[3] = 2;
        assert!(
            array_elements(&two, 23, |_| Ok(()))
                .unwrap_err()
                .contains("2 dimensions")
        );
        let mut lying = array(1, 23, &[Some(&one)]);
        lying[12..16].copy_from_slice(&1000i32.to_be_bytes());
        assert!(
            array_elements(&lying, 23, |_| Ok(()))
                .unwrap_err()
                .contains("claims 1000")
        );
    }
}
