//! Fault injection: fail the next N requests matching a verb and resource.

use std::sync::Mutex;

#[derive(Debug, Clone)]
struct Rule {
    verb: String,
    resource: String,
    remaining: u32,
    code: u16,
}

/// Pending injected failures.
#[derive(Debug, Default)]
pub struct FaultRules(Mutex<Vec<Rule>>);

impl FaultRules {
    /// Fail the next `n` requests of `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, or `*`) on `resource` (plural, or `*`) with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, n: u32, code: u16) {
        if let Ok(mut r) = self.0.lock() {
            r.push(Rule {
                verb: verb.into(),
                resource: resource.into(),
                remaining: n,
                code,
            });
        }
    }

    /// The code to fail this request with, consuming one use of the matching rule.
    pub fn take(&self, verb: &str, resource: &str) -> Option<u16> {
        let mut rules = self.0.lock().ok()?;
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && (r.verb == "*" || r.verb == verb)
                && (r.resource == "*" || r.resource == resource)
        })?;
        rule.remaining -= 1;
        let code = rule.code;
        rules.retain(|r| r.remaining > 0);
        Some(code)
    }
}
