//! What the controller's caches keep of each object: what reconciles read, no more. Every
//! finished run keeps its Jobs and pods until its ReportJob goes, so with a thousand runs
//! their labels, annotations and managed fields are most of the controller's memory.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names;
use crate::api::ReportJob;

/// The annotation kubectl apply keeps the whole applied manifest in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Labels and annotations of ours (`reporting.dev/...`, `app.kubernetes.io/managed-by`)
/// and those in `also`; no managed fields.
pub fn keep_ours(meta: &mut ObjectMeta, also: &[&str]) {
    let ours = |key: &str| {
        key.starts_with("reporting.dev/") || key == names::MANAGED_BY_LABEL || also.contains(&key)
    };
    let keep = |map: Option<BTreeMap<String, String>>| {
        map.map(|m| {
            m.into_iter()
                .filter(|(k, _)| ours(k))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|m| !m.is_empty())
    };
    meta.managed_fields = None;
    meta.labels = keep(meta.labels.take());
    meta.annotations = keep(meta.annotations.take());
}

/// A stage Job as the cache keeps it: our labels and annotations (the plan Job's spec),
/// of its spec what reconciles read (completions, parallelism, suspend), its status but
/// the conditions' probe times.
pub fn job(job: &mut Job) {
    keep_ours(&mut job.metadata, &[]);
    job.metadata.generate_name = None;
    job.spec = job.spec.take().map(|spec| JobSpec {
        completions: spec.completions,
        parallelism: spec.parallelism,
        suspend: spec.suspend,
        ..JobSpec::default()
    });
    if let Some(conditions) = job.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        for condition in conditions {
            condition.last_probe_time = None;
        }
    }
}

/// A ReportJob as the cache keeps it: everything but its managed fields and the copy of
/// its manifest `kubectl apply` leaves in an annotation (the controller patches, never
/// replaces, so nothing it writes is lost by this).
pub fn reportjob(rj: &mut ReportJob) {
    rj.metadata.managed_fields = None;
    if let Some(annotations) = rj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_labels_and_annotations_stay() {
        let mut meta = ObjectMeta {
            labels: Some(BTreeMap::from([
                ("reporting.dev/stage".to_string(), "plan".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "reportjob".to_string(),
                ),
                (
                    "batch.kubernetes.io/job-name".to_string(),
                    "x-plan".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (
                    "batch.kubernetes.io/job-completion-index".to_string(),
                    "3".to_string(),
                ),
                ("other".to_string(), "x".to_string()),
            ])),
            ..Default::default()
        };
        keep_ours(&mut meta, &["batch.kubernetes.io/job-completion-index"]);
        let labels: Vec<&String> = meta.labels.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(
            labels,
            ["app.kubernetes.io/managed-by", "reporting.dev/stage"]
        );
        let annotations: Vec<&String> = meta.annotations.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(annotations, ["batch.kubernetes.io/job-completion-index"]);
        let mut bare = ObjectMeta {
            annotations: Some(BTreeMap::from([("other".to_string(), "x".to_string())])),
            ..Default::default()
        };
        keep_ours(&mut bare, &[]);
        assert_eq!(bare.annotations, None);
    }

    #[test]
    fn a_reportjob_keeps_its_annotations_but_the_applied_manifest() {
        let mut rj: ReportJob =
            crate::api::load::load_str(crate::api::test_specs::MINIMAL, "t").expect("valid");
        rj.metadata.annotations = Some(BTreeMap::from([
            (LAST_APPLIED.to_string(), "{...}".to_string()),
            (names::RETRY_ANNOTATION.to_string(), "1".to_string()),
        ]));
        reportjob(&mut rj);
        let kept: Vec<&String> = rj
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, [names::RETRY_ANNOTATION]);
    }
}
