//! SQL identifiers and literals: parse names as users write them, quote what we send.
//!
//! Nothing a user writes in an identifier reaches SQL unquoted: names are parsed with
//! Postgres's rules (unquoted parts fold to lower case, `"..."` parts are taken as written)
//! and always sent double-quoted.

use std::fmt;

/// A parsed, possibly schema-qualified name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedName {
    /// The schema, when given.
    pub schema: Option<String>,
    /// The object's name.
    pub name: String,
}

/// Why an identifier could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentError(pub String);

/// Parses `name`, `schema.name`, `"Quoted Name"` and combinations.
pub fn parse_qualified(text: &str) -> Result<QualifiedName, IdentError> {
    let parts = parse_parts(text)?;
    match parts.as_slice() {
        [name] => Ok(QualifiedName {
            schema: None,
            name: name.clone(),
        }),
        [schema, name] => Ok(QualifiedName {
            schema: Some(schema.clone()),
            name: name.clone(),
        }),
        _ => Err(IdentError(format!(
            "{text:?} has {} parts; write `table` or `schema.table`",
            parts.len()
        ))),
    }
}

/// Parses a single (unqualified) identifier, such as a column name.
pub fn parse_ident(text: &str) -> Result<String, IdentError> {
    let parts = parse_parts(text)?;
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        _ => Err(IdentError(format!(
            "{text:?} is not a single identifier (quote a name that contains a dot)"
        ))),
    }
}

fn parse_parts(text: &str) -> Result<Vec<String>, IdentError> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    if text.trim().is_empty() {
        return Err(IdentError("is empty".into()));
    }
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some('\0') => return Err(IdentError(format!("{text:?} contains a NUL byte"))),
                    Some(c) => part.push(c),
                    None => return Err(IdentError(format!("{text:?} has an unterminated quote"))),
                }
            }
            if part.is_empty() {
                return Err(IdentError(format!("{text:?} has an empty quoted name")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                let valid = c == '_'
                    || c.is_alphabetic()
                    || (!part.is_empty() && (c.is_ascii_digit() || c == '$'));
                if !valid {
                    return Err(IdentError(format!(
                        "{text:?} is not a valid name: unexpected {c:?} (double-quote names with special characters)"
                    )));
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(IdentError(format!("{text:?} has an empty name part")));
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => {
                return Err(IdentError(format!(
                    "{text:?} is not a valid name: unexpected {c:?} after a quoted part"
                )));
            }
        }
    }
}

/// An identifier, displayed double-quoted for SQL.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.replace('"', "\"\""))
    }
}

/// A string literal for SQL (with `standard_conforming_strings` on, which we always set).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{}.{}", Quoted(schema), Quoted(&self.name)),
            None => write!(f, "{}", Quoted(&self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_names_fold_to_lower_case() {
        let q = parse_qualified("Public.Orders").unwrap();
        assert_eq!(q.schema.as_deref(), Some("public"));
        assert_eq!(q.name, "orders");
    }

    #[test]
    fn quoted_names_are_taken_as_written() {
        let q = parse_qualified(r#""My Schema"."Order ""Lines"".v2""#).unwrap();
        assert_eq!(q.schema.as_deref(), Some("My Schema"));
        assert_eq!(q.name, r#"Order "Lines".v2"#);
        assert_eq!(q.to_string(), r#""My Schema"."Order ""Lines"".v2""#);
    }

    #[test]
    fn injection_attempts_are_rejected() {
        for bad in [
            "orders; DROP TABLE x",
            "orders--",
            "x\"y",
            "\"unterminated",
            "a.b.c",
            "",
            "1abc",
            "a..b",
        ] {
            assert!(parse_qualified(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_ident("a.b").is_err());
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(Quoted("a\"b").to_string(), "\"a\"\"b\"");
    }
}
