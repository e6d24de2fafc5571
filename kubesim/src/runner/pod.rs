//! Building a Job's Pod from its template (pure), as the upstream Job controller does.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::job::INDEX_ANNOTATION;

/// A pod for `job` (with `index` for Indexed Jobs); `suffix` is the random 5-character name tail.
pub fn build_pod(job: &Job, index: Option<i32>, suffix: &str) -> Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = tmeta.annotations.unwrap_or_default();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", job_name.as_str()),
        ("controller-uid", uid.as_str()),
        ("job-name", job_name.as_str()),
    ] {
        labels.insert(k.into(), v.into());
    }
    let name = match index {
        Some(i) => {
            labels.insert(INDEX_ANNOTATION.into(), i.to_string());
            annotations.insert(INDEX_ANNOTATION.into(), i.to_string());
            format!("{job_name}-{i}-{suffix}")
        }
        None => format!("{job_name}-{suffix}"),
    };
    let mut spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        // Upstream injects JOB_COMPLETION_INDEX from the annotation into every container.
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{INDEX_ANNOTATION}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let envs = c.env.get_or_insert_with(Vec::new);
            if !envs.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                envs.push(env.clone());
            }
        }
        if spec.hostname.is_none() {
            spec.hostname = Some(format!("{job_name}-{i}"));
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: job_name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Five random lowercase alphanumerics, like upstream's generateName suffixes.
pub fn random_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_pod_carries_index_labels_owner_and_env() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rep", "namespace": "ns", "uid": "u-1"},
            "spec": {"completionMode": "Indexed", "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
        }))
        .expect("job");
        let pod = build_pod(&job, Some(3), "abcde");
        assert_eq!(pod.metadata.name.as_deref(), Some("rep-3-abcde"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("x"));
        assert_eq!(labels.get("job-name").map(String::as_str), Some("rep"));
        assert_eq!(
            labels
                .get("batch.kubernetes.io/controller-uid")
                .map(String::as_str),
            Some("u-1")
        );
        assert_eq!(labels.get(INDEX_ANNOTATION).map(String::as_str), Some("3"));
        let ann = pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(INDEX_ANNOTATION).map(String::as_str), Some("3"));
        let owner = &pod.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        let spec = pod.spec.unwrap_or_default();
        assert!(
            spec.containers[0]
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "JOB_COMPLETION_INDEX")
        );
    }
}
