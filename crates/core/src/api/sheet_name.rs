//! Excel's sheet names: the rules a name must keep (at most 31 UTF-16 code units, so an
//! emoji or another character outside the Basic Multilingual Plane counts twice; none of
//! `[ ] : * ? / \`, not starting or ending with `'`, not "History"), the default name
//! derived from the report's file name, and the names of the sheets a long report rolls
//! over into. The rules include the workbook writer's own, so what passes here is what it
//! accepts at assembly.

/// Most UTF-16 code units in a sheet name (Excel counts them, not characters).
pub const MAX_CHARS: usize = 31;

/// The length of `text` as Excel counts it: UTF-16 code units.
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The longest start of `text` within `max` UTF-16 code units.
fn cut(text: &str, max: usize) -> String {
    let mut used = 0;
    text.chars()
        .take_while(|c| {
            used += c.len_utf16();
            used <= max
        })
        .collect()
}

/// Characters Excel refuses in a sheet name.
const FORBIDDEN: &[char] = &['[', ']', ':', '*', '?', '/', '\\'];

/// The name of the first sheet when neither a sheet name nor a usable file name is given.
const FALLBACK: &str = "Report";

/// Checks `name` against Excel's rules, saying what is wrong.
pub fn check(name: &str) -> Result<(), String> {
    let chars = units(name);
    if chars == 0 {
        return Err("must not be empty".into());
    }
    if chars > MAX_CHARS {
        return Err(format!(
            "{name:?} is {chars} UTF-16 code units long; Excel allows at most {MAX_CHARS} \
             (a character outside the Basic Multilingual Plane, such as an emoji, counts as two)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control())
    {
        return Err(format!(
            "{name:?} contains {c:?}; Excel refuses [ ] : * ? / \\ and control characters in sheet names"
        ));
    }
    if name.starts_with('\'') || name.ends_with('\'') {
        return Err(format!(
            "{name:?} starts or ends with an apostrophe, which Excel refuses"
        ));
    }
    if name.eq_ignore_ascii_case("History") {
        return Err("\"History\" is reserved by Excel".into());
    }
    Ok(())
}

/// The default sheet name for a report at `path` (a volume path or an `s3://` URL): its
/// file name without extensions, forbidden characters replaced by `_`, cut to 31 characters.
pub fn from_file_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if FORBIDDEN.contains(&c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cut(&cleaned, MAX_CHARS);
    let cleaned = cleaned.trim_matches('\'').to_string();
    if check(&cleaned).is_ok() {
        cleaned
    } else {
        FALLBACK.to_string()
    }
}

/// The name of sheet `n` (1-based) of a report whose first sheet is `base`: `base` itself,
/// then `base (2)`, `base (3)`, ..., the base cut so that the whole stays within 31 characters.
pub fn nth(base: &str, n: u32) -> String {
    if n <= 1 {
        return base.to_string();
    }
    let suffix = format!(" ({n})");
    let keep = MAX_CHARS.saturating_sub(units(&suffix));
    let mut head = cut(base, keep);
    // A cut that leaves an apostrophe or space at the end would read oddly; a cut base never
    // ends in an apostrophe before the suffix matters, since the suffix ends the name.
    while head.ends_with(' ') {
        head.pop();
    }
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_rules_are_checked() {
        assert!(check("Orders 2024").is_ok());
        assert!(check(&"x".repeat(31)).is_ok());
        assert!(check(&"é".repeat(31)).is_ok(), "characters, not bytes");
        assert!(check(&"x".repeat(32)).unwrap_err().contains("at most 31"));
        assert!(check("").is_err());
        for bad in ["a[b", "a]b", "a:b", "a*b", "a?b", "a/b", "a\\b"] {
            assert!(check(bad).unwrap_err().contains("contains"), "{bad}");
        }
        assert!(check("'quoted").is_err());
        assert!(check("quoted'").is_err());
        assert!(check("it's").is_ok());
        assert!(check("history").is_err());
    }

    #[test]
    fn astral_characters_count_twice_as_excel_counts_them() {
        // 16 emoji: 16 characters, 32 UTF-16 code units.
        let emoji = "\u{1F600}".repeat(16);
        let err = check(&emoji).expect_err("too long for Excel");
        assert!(err.contains("32 UTF-16 code units"), "{err}");
        assert!(check(&"\u{1F600}".repeat(15)).is_ok());
        assert!(check(&format!("{}x", "\u{1F600}".repeat(15))).is_ok());
        assert!(check(&format!("{}xy", "\u{1F600}".repeat(15))).is_err());
        for name in [
            "\u{1F600}".repeat(15),
            "Orders \u{1F680} 2024".into(),
            "é".repeat(31),
        ] {
            assert!(check(&name).is_ok(), "{name}");
        }
        // Derived and rolled-over names are cut by the same count, never inside a pair.
        let derived = from_file_name(&format!("{}.xlsx", "\u{1F600}".repeat(20)));
        assert_eq!(derived, "\u{1F600}".repeat(15));
        let second = nth(&"\u{1F600}".repeat(15), 2);
        assert!(check(&second).is_ok(), "{second}");
        assert_eq!(second, format!("{} (2)", "\u{1F600}".repeat(13)));
    }

    #[test]
    fn the_default_name_is_the_file_stem_made_valid() {
        assert_eq!(from_file_name("reports/orders-2024.xlsx"), "orders-2024");
        assert_eq!(from_file_name("s3://bucket/a/b/sales.q1.xlsx"), "sales");
        assert_eq!(from_file_name("x/what?[1].xlsx"), "what__1_");
        assert_eq!(
            from_file_name(&format!("{}.xlsx", "y".repeat(40))),
            "y".repeat(31)
        );
        assert_eq!(from_file_name(".xlsx"), "Report");
        assert_eq!(from_file_name("History.xlsx"), "Report");
    }

    #[test]
    fn rollover_sheets_are_numbered_within_31_characters() {
        assert_eq!(nth("orders", 1), "orders");
        assert_eq!(nth("orders", 2), "orders (2)");
        assert_eq!(nth("orders", 12), "orders (12)");
        let long = "z".repeat(31);
        let second = nth(&long, 2);
        assert_eq!(second, format!("{} (2)", "z".repeat(27)));
        assert!(check(&second).is_ok());
        assert_eq!(
            nth(&format!("{} abc", "q".repeat(26)), 3),
            format!("{} (3)", "q".repeat(26))
        );
    }
}
