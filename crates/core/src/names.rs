//! The names and labels that the API checks and the stage pods carry: a ReportJob's name
//! must leave room for every name derived from it, and pod settings may not claim our labels.

/// Label: the ReportJob an object belongs to.
pub const REPORTJOB_LABEL: &str = "reporting.dev/reportjob";
/// Label: the stage an object belongs to.
pub const STAGE_LABEL: &str = "reporting.dev/stage";
/// Label: who manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "reportjob";
/// Annotation Kubernetes sets on an Indexed Job's pods: their completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Longest name Kubernetes allows in a label value or a pod's hostname.
pub const MAX_LABEL: usize = 63;

/// Most digits of a chunk's completion index (`spec.chunking.maxChunks` is at most 100,000:
/// indexes 0 to 99999).
const MAX_INDEX_DIGITS: usize = 5;

/// Longest ReportJob name: every name and label the controller derives from it fits in
/// [`MAX_LABEL`]. The longest is the chunks Job's pods' hostname, `<name>-chunks-<index>`
/// (an Indexed Job names each pod's host after the Job and the index); the Job names
/// (`<name>-assemble`, `<name>-snapshot`...) and their `job-name` labels are shorter.
pub const MAX_REPORTJOB_NAME: usize = MAX_LABEL - "-chunks-".len() - MAX_INDEX_DIGITS;

/// Longest ReportSchedule name: its ReportJobs are named `<schedule>-<minutes since the
/// epoch>` (8 digits until the year 2160; 9 are allowed for).
pub const MAX_SCHEDULE_NAME: usize = MAX_REPORTJOB_NAME - 1 - 9;

/// Refuses a ReportJob name longer than [`MAX_REPORTJOB_NAME`], saying why.
pub fn check_reportjob_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_REPORTJOB_NAME {
        return Err(format!(
            "is {} characters long; at most {MAX_REPORTJOB_NAME}: the names and labels of the \
             Jobs and pods the controller creates add up to 13 more (`-chunks-` and a chunk \
             index) and Kubernetes allows {MAX_LABEL}",
            name.chars().count()
        ));
    }
    Ok(())
}
