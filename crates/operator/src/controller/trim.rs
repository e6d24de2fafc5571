//! What the controller's caches keep of each object: what reconciles read, no more. Every
//! finished run keeps its Jobs and pods until its ReportJob goes, so with a thousand runs
//! their labels, annotations and managed fields are most of the controller's memory.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::names;
use super::pod_identity::TEMPLATE_FINGERPRINT;
use reportjob_core::api::ReportJob;

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

/// A stage Job as the caches keep it: a type of its own, read from the API as a `Job` but
/// holding only what reconciles read (a `Job` holds its pod template's ~2 KB of fields even
/// when empty; a thousand finished runs keep three each).
#[derive(kube::Resource, Clone, Debug, Deserialize)]
#[resource(inherit = Job)]
pub struct StageJob {
    /// Its metadata (trimmed by [`stage_job`]).
    pub metadata: ObjectMeta,
    /// What reconciles read of its spec.
    #[serde(default)]
    pub spec: Option<StageJobSpec>,
    /// Its status.
    #[serde(default)]
    pub status: Option<JobStatus>,
}

/// The fields of a Job's spec reconciles read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StageJobSpec {
    /// `spec.completions`.
    pub completions: Option<i32>,
    /// `spec.parallelism`.
    pub parallelism: Option<i32>,
    /// `spec.suspend`.
    pub suspend: Option<bool>,
    /// The fingerprint of `spec.template.spec` ([`super::pod_identity`]): what the pods it
    /// built run, to tell them from pods that only name it as their owner.
    #[serde(
        default,
        rename = "template",
        deserialize_with = "super::pod_identity::template_fingerprint"
    )]
    pub template_fingerprint: Option<String>,
}

impl StageJob {
    /// The Job as reconciles read it.
    pub fn to_job(&self) -> Job {
        let mut metadata = self.metadata.clone();
        // The template's fingerprint rides on the in-memory copy, set from the template
        // itself (whatever the API's annotations say).
        let annotations = metadata.annotations.get_or_insert_with(Default::default);
        match self
            .spec
            .as_ref()
            .and_then(|s| s.template_fingerprint.clone())
        {
            Some(f) => annotations.insert(TEMPLATE_FINGERPRINT.to_string(), f),
            None => annotations.remove(TEMPLATE_FINGERPRINT),
        };
        Job {
            metadata,
            spec: self.spec.as_ref().map(|s| JobSpec {
                completions: s.completions,
                parallelism: s.parallelism,
                suspend: s.suspend,
                ..JobSpec::default()
            }),
            status: self.status.clone(),
        }
    }
}

/// A stage Job as the cache keeps it: our labels and annotations (the plan Job's spec),
/// its status but the conditions' probe times.
pub fn stage_job(job: &mut StageJob) {
    keep_ours(&mut job.metadata, &[]);
    job.metadata.generate_name = None;
    if let Some(conditions) = job.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        for condition in conditions {
            condition.last_probe_time = None;
        }
    }
}

/// A stage pod as the caches keep it: read from the API as a `Pod`, holding its metadata
/// and of its status the phase and container states (a `Pod` holds its spec's ~1.4 KB of
/// fields even when empty).
#[derive(kube::Resource, Clone, Debug, Deserialize)]
#[resource(inherit = Pod)]
pub struct StagePod {
    /// Its metadata (trimmed by [`stage_pod`]).
    pub metadata: ObjectMeta,
    /// The fingerprint of its spec ([`super::pod_identity`]), compared with its Job's
    /// template's before its result counts.
    #[serde(
        default,
        rename = "spec",
        deserialize_with = "super::pod_identity::spec_fingerprint"
    )]
    pub spec_fingerprint: Option<String>,
    /// Its phase and container states.
    #[serde(default)]
    pub status: Option<StagePodStatus>,
}

/// What reconciles read of a pod's status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagePodStatus {
    /// `status.phase`.
    pub phase: Option<String>,
    /// Each container's name and state.
    pub container_statuses: Option<Vec<StageContainer>>,
}

/// A container's name and state.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StageContainer {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its state (the termination message is in it).
    pub state: Option<ContainerState>,
}

impl StagePod {
    /// The pod as reconciles read it.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: None,
            status: self.status.as_ref().map(|s| PodStatus {
                phase: s.phase.clone(),
                container_statuses: s.container_statuses.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            state: c.state.clone(),
                            ..ContainerStatus::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            }),
        }
    }
}

/// A stage pod as the cache keeps it: its identity, owners, our labels and its completion
/// index.
pub fn stage_pod(pod: &mut StagePod) {
    keep_ours(
        &mut pod.metadata,
        &[reportjob_core::names::COMPLETION_INDEX_ANNOTATION],
    );
    pod.metadata.generate_name = None;
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
            reportjob_core::api::load::load_str(reportjob_core::api::test_specs::MINIMAL, "t")
                .expect("valid");
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

    #[test]
    fn stage_objects_read_a_whole_pod_and_job_and_keep_what_reconciles_read() {
        let pod: StagePod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "r-plan-x", "namespace": "ns", "generateName": "r-plan-",
                "labels": {"reporting.dev/stage": "plan", "job-name": "r-plan"},
                "annotations": {"batch.kubernetes.io/job-completion-index": "0", "x": "y"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "r-plan",
                    "uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "reportjob", "image": "i"}]},
            "status": {"phase": "Succeeded", "hostIP": "10.0.0.1",
                "containerStatuses": [{"name": "reportjob", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": "{\"result\":\"Planned\"}"}}}]}
        }))
        .expect("a pod reads as a stage pod");
        let mut pod = pod;
        stage_pod(&mut pod);
        let pod = pod.to_pod();
        assert_eq!(pod.metadata.generate_name, None);
        assert_eq!(
            pod.metadata.owner_references.as_ref().map(Vec::len),
            Some(1)
        );
        let kept: Vec<&String> = pod
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, [reportjob_core::names::COMPLETION_INDEX_ANNOTATION]);
        let status = pod.status.expect("status");
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(status.host_ip, None);
        let terminated = status.container_statuses.expect("containers")[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .expect("terminated");
        assert_eq!(
            terminated.message.as_deref(),
            Some("{\"result\":\"Planned\"}")
        );

        let mut job: StageJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "r-chunks", "namespace": "ns",
                "annotations": {"reporting.dev/chunks": "0-3"}},
            "spec": {"completions": 4, "parallelism": 2, "suspend": true,
                "template": {"spec": {"containers": [{"name": "reportjob"}]}}},
            "status": {"succeeded": 3, "conditions": [{"type": "Complete", "status": "True",
                "lastProbeTime": "2026-12-01T00:00:00Z"}]}
        }))
        .expect("a job reads as a stage job");
        stage_job(&mut job);
        let job = job.to_job();
        let spec = job.spec.expect("spec");
        assert_eq!(
            (spec.completions, spec.parallelism, spec.suspend),
            (Some(4), Some(2), Some(true))
        );
        let status = job.status.expect("status");
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(
            status.conditions.expect("conditions")[0].last_probe_time,
            None
        );
    }
}
