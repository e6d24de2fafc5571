//! What to do after a ReportJob failed, by the reason of its `Failed` condition: the hint
//! the CLI prints under the failure (and the docs' troubleshooting table). A retry is
//! suggested only where it can help; where it cannot, what will.

/// The next step for a ReportJob `ns/name` that failed with `reason`.
pub fn after_failure(reason: &str, name: &str, ns: &str) -> String {
    let retry = format!("`reportjob retry {name} -n {ns}`");
    match reason {
        super::conditions::reason::INVALID_SPEC => format!(
            "fix the field the message names and apply the ReportJob again: it starts once its \
             spec is valid (`kubectl -n {ns} edit reportjob {name}`)"
        ),
        super::conditions::reason::PLAN_FAILED => format!(
            "a ReportJob's source cannot change once planning started: create a new one with \
             the source fixed (`kubectl -n {ns} get reportjob {name} -o yaml`, fix it, give it \
             a new name and apply it), or {retry} if the cause has passed (a database that was \
             down)"
        ),
        super::conditions::reason::CHUNKS_FAILED => {
            format!("{retry} re-runs the failed chunks once the cause is fixed")
        }
        super::conditions::reason::DEADLINE_EXCEEDED => format!(
            "{retry} re-runs the chunks not exported yet; raise spec.worker.activeDeadlineSeconds \
             if they need longer"
        ),
        super::conditions::reason::ASSEMBLE_FAILED => format!(
            "{retry} assembles again (exporting damaged chunks again first) once the cause is \
             fixed"
        ),
        super::conditions::reason::SNAPSHOT_LOST | super::conditions::reason::SNAPSHOT_FAILED => {
            format!(
                "{retry} exports every chunk again under a new snapshot; if snapshots keep \
                 being lost, see what ends the holder's session (idle timeouts, a pooler) or \
                 use consistency: PerChunk"
            )
        }
        super::conditions::reason::CANCELLED => format!(
            "a cancelled ReportJob does not run again: to export, apply it again under a new \
             name (`kubectl -n {ns} get reportjob {name} -o yaml`); `kubectl -n {ns} delete \
             reportjob {name}` removes it"
        ),
        super::conditions::reason::START_TIMEOUT => format!(
            "fix what kept the pods from starting (the message says), then {retry} runs the \
             stage again"
        ),
        _ => format!(
            "see `reportjob status {name} -n {ns}` and `reportjob logs {name} -n {ns}`; {retry} \
             runs the failed stage again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::reason;

    #[test]
    fn a_retry_is_suggested_only_where_it_can_help() {
        let invalid = after_failure(reason::INVALID_SPEC, "r", "ns");
        assert!(!invalid.contains("retry"), "{invalid}");
        assert!(
            invalid.contains("kubectl -n ns edit reportjob r"),
            "{invalid}"
        );
        let plan = after_failure(reason::PLAN_FAILED, "r", "ns");
        assert!(
            plan.starts_with("a ReportJob's source cannot change"),
            "{plan}"
        );
        assert!(plan.contains("create a new one"), "{plan}");
        let chunks = after_failure(reason::CHUNKS_FAILED, "r", "ns");
        assert_eq!(
            chunks,
            "`reportjob retry r -n ns` re-runs the failed chunks once the cause is fixed"
        );
        assert!(after_failure(reason::ASSEMBLE_FAILED, "r", "ns").contains("assembles again"));
        assert!(after_failure(reason::SNAPSHOT_LOST, "r", "ns").contains("new snapshot"));
        let cancelled = after_failure(reason::CANCELLED, "r", "ns");
        assert!(!cancelled.contains("reportjob retry"), "{cancelled}");
    }
}
