//! Errors for people: one line from an error and its causes.

/// An error and its causes on one line (`a: b: c`), skipping a cause whose text the
/// message already holds (many errors repeat their source's text). Not anyhow's `{:#}`:
/// that prints every cause, so kube's and reqwest's errors, whose messages already embed
/// their source, would show the same text twice; and these errors are typed, not anyhow's.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}
