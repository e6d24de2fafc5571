//! Which pods are a ReportJob's stage pods, for `logs` and for following them: the label
//! selector of a stage (or of the chunk pods), and the plan chunk a chunk pod exports.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::controller::names::{REPORTJOB_LABEL, STAGE_LABEL, Stage};
use crate::names::COMPLETION_INDEX_ANNOTATION;
use crate::stage_protocol::{ChunkSet, MAX_CHUNKS, env};

/// The label selector of a ReportJob's pods, of one stage (the chunk pods for a chunk).
pub fn selector(name: &str, stage: Option<Stage>, chunk: Option<usize>) -> String {
    let mut selector = format!("{REPORTJOB_LABEL}={name}");
    if let Some(stage) = stage {
        selector.push_str(&format!(",{STAGE_LABEL}={}", stage.as_str()));
    } else if chunk.is_some() {
        selector.push_str(&format!(",{STAGE_LABEL}={}", Stage::Chunks.as_str()));
    }
    selector
}

/// The plan chunk a chunk pod exports: its completion index, mapped through the
/// `REPORTJOB_CHUNKS` list the pod was given when the Job covers only some chunks.
pub fn pod_chunk(pod: &Pod) -> Option<usize> {
    let index: usize = pod
        .annotations()
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse()
        .ok()?;
    let listed = pod.spec.as_ref().and_then(|s| {
        s.containers
            .first()?
            .env
            .as_ref()?
            .iter()
            .find_map(|e| (e.name == env::CHUNKS).then(|| e.value.clone()).flatten())
    });
    match listed.and_then(|l| ChunkSet::parse(&l, MAX_CHUNKS).ok()) {
        Some(chunks) => chunks.chunk_of_completion_index(index),
        None => Some(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk_pod(index: &str, listed: Option<&str>) -> Pod {
        let env: Vec<_> = listed
            .map(|l| json!({"name": env::CHUNKS, "value": l}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({
            "metadata": {
                "name": "p",
                "labels": {STAGE_LABEL: "chunks"},
                "annotations": {COMPLETION_INDEX_ANNOTATION: index},
            },
            "spec": {"containers": [{"name": "worker", "env": env}]},
        }))
        .expect("a pod")
    }

    #[test]
    fn a_chunk_pod_exports_its_index_mapped_through_the_listed_chunks() {
        assert_eq!(pod_chunk(&chunk_pod("2", None)), Some(2));
        assert_eq!(pod_chunk(&chunk_pod("2", Some("0-1,7,9-10"))), Some(7));
        assert_eq!(pod_chunk(&chunk_pod("4", Some("0-1,7,9-10"))), Some(10));
        assert_eq!(pod_chunk(&chunk_pod("5", Some("0-1,7,9-10"))), None);
        // An unreadable list falls back to the index.
        assert_eq!(pod_chunk(&chunk_pod("1", Some("x"))), Some(1));
        assert_eq!(pod_chunk(&chunk_pod("x", None)), None);
    }
}
