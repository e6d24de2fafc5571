//! Condition types and reasons as named constants, and the merge rule for conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The plan was computed and staged.
pub const PLANNED: &str = "Planned";
/// The report is assembled and published.
pub const COMPLETE: &str = "Complete";
/// The ReportJob failed.
pub const FAILED: &str = "Failed";
/// The ReportJob is suspended.
pub const SUSPENDED: &str = "Suspended";
/// The completion notification of `spec.notify` was delivered (or why not).
pub const NOTIFIED: &str = "Notified";

/// Reason: the spec breaks a rule the schema cannot express.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// Sets `new` in `conditions`, keeping the existing `lastTransitionTime` when the status
/// did not flip, so that a re-written condition does not look like a new transition.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let time: Time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time: time,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, secs: i64) -> Condition {
        Condition {
            type_: COMPLETE.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::from_second(secs).expect("valid time")),
        }
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut conditions = vec![cond("False", 10)];
        set_condition(&mut conditions, cond("False", 20));
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            cond("False", 10).last_transition_time
        );
    }

    #[test]
    fn transition_time_changes_on_flip() {
        let mut conditions = vec![cond("False", 10)];
        set_condition(&mut conditions, cond("True", 20));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(
            conditions[0].last_transition_time,
            cond("True", 20).last_transition_time
        );
    }
}
