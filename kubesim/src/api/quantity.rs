//! Resource quantities (`500m`, `128Mi`, `2`) as apimachinery's `resource.Quantity`: parsing,
//! arithmetic in milli-units and the canonical `String()` form used in quota and LimitRange messages.

use std::cmp::Ordering;

/// The suffix family a quantity was written in; sums keep the first operand's, as `Quantity.Add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
}

/// A quantity held exactly in thousandths of a unit (enough for cpu `m` and memory up to exabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub milli: i128,
    pub format: Format,
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: [(&str, i32); 8] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
];

impl Quantity {
    pub fn zero() -> Self {
        Quantity {
            milli: 0,
            format: Format::DecimalSI,
        }
    }

    /// A count (`pods=1`).
    pub fn count(n: i128) -> Self {
        Quantity {
            milli: n * 1000,
            format: Format::DecimalSI,
        }
    }

    /// Parse `resource.MustParse`-style text; fractions below a milli-unit round up, as `MilliValue`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(num_end);
        if num.is_empty() {
            return None;
        }
        let neg = num.starts_with('-');
        let num = num.trim_start_matches(['-', '+']);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        // value = digits * 10^(exp10) * 1024^(exp2), kept as (mantissa, decimal exponent).
        let digits: i128 = format!("{int}{frac}").parse().ok()?;
        let mut exp10: i32 = -i32::try_from(frac.len()).ok()?;
        let mut exp2 = 0u32;
        let mut format = Format::DecimalSI;
        if let Some((_, e)) = BINARY.iter().find(|(n, _)| *n == suffix) {
            exp2 = *e;
            format = Format::BinarySI;
        } else if let Some((_, e)) = DECIMAL.iter().find(|(n, _)| *n == suffix) {
            exp10 += e;
        } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
            exp10 += e.parse::<i32>().ok()?;
        } else if !suffix.is_empty() {
            return None;
        }
        let mut v = digits * 1024i128.checked_pow(exp2)?;
        exp10 += 3; // to milli-units
        if exp10 >= 0 {
            v = v.checked_mul(10i128.checked_pow(u32::try_from(exp10).ok()?)?)?;
        } else {
            let d = 10i128.checked_pow(u32::try_from(-exp10).ok()?)?;
            v = (v + d - 1) / d;
        }
        Some(Quantity {
            milli: if neg { -v } else { v },
            format,
        })
    }

    /// `Quantity.Add`: the sum, in the first operand's format (a zero takes the other's).
    pub fn plus(self, o: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + o.milli,
            format: if self.milli == 0 && o.milli != 0 {
                o.format
            } else {
                self.format
            },
        }
    }

    /// `Quantity.String()`: the canonical form.
    pub fn render(&self) -> String {
        let m = self.milli;
        if m == 0 {
            return "0".into();
        }
        let sign = if m < 0 { "-" } else { "" };
        let a = m.abs();
        if a % 1000 != 0 {
            return format!("{sign}{a}m");
        }
        let mut v = a / 1000;
        if self.format == Format::BinarySI && v >= 1024 {
            let mut i = 0;
            while v % 1024 == 0 && i < BINARY.len() {
                v /= 1024;
                i += 1;
            }
            if i > 0 {
                return format!("{sign}{v}{}", BINARY[i - 1].0);
            }
            return format!("{sign}{v}");
        }
        let names = ["", "k", "M", "G", "T", "P", "E"];
        let mut i = 0;
        while v % 1000 == 0 && i + 1 < names.len() {
            v /= 1000;
            i += 1;
        }
        format!("{sign}{v}{}", names[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("parse {s}"))
    }

    #[test]
    fn canonical_forms_match_apimachinery() {
        assert_eq!(q("500m").render(), "500m");
        assert_eq!(q("0.5").render(), "500m");
        assert_eq!(q("1500m").render(), "1500m");
        assert_eq!(q("2000m").render(), "2");
        assert_eq!(q("2000").render(), "2k");
        assert_eq!(q("128Mi").render(), "128Mi");
        assert_eq!(q("1Gi").render(), "1Gi");
        assert_eq!(q("1536Mi").render(), "1536Mi");
        assert_eq!(q("128Mi").plus(q("128Mi")).render(), "256Mi");
        assert_eq!(q("100M").render(), "100M");
        assert_eq!(q("1e3").render(), "1k");
        assert!(q("1Gi") > q("1000Mi"));
        assert_eq!(Quantity::zero().plus(q("64Mi")).render(), "64Mi");
        assert!(Quantity::parse("12x").is_none());
    }
}
