//! The stage pods as a pod watch shows them, reduced to what reconciles read, so that
//! reconciles read pods without listing them; and the rule for when the cache is not enough.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::cache::{WatchErrors, wait_ready};
use super::names::{self, Stage};
use super::pod_identity::built_by;
use super::results::created_by;
use super::trim::StagePod;

/// The stage pods of every watched scope.
#[derive(Default)]
pub struct PodCache {
    stores: Vec<Store<StagePod>>,
    /// The errors of the watches feeding `stores`.
    pub errors: WatchErrors,
}

impl PodCache {
    /// A cache over these reflector stores (disjoint scopes).
    pub fn new(stores: Vec<Store<StagePod>>, errors: WatchErrors) -> Self {
        PodCache { stores, errors }
    }

    /// See [`wait_ready`].
    pub async fn ready(&self) -> Result<(), String> {
        wait_ready(&self.stores, &self.errors).await
    }

    /// The pods `job` (the `stage` Job of `reportjob` in `ns`) built, as cached.
    pub fn pods_of(&self, ns: &str, reportjob: &str, stage: Stage, job: &Job) -> Vec<Pod> {
        self.members(ns, reportjob, stage, job).0
    }

    /// The pods naming `job` as their controller, as cached: those it built from its
    /// template, and those whose spec is not its template's (created by someone else; their
    /// results never count).
    pub fn members(
        &self,
        ns: &str,
        reportjob: &str,
        stage: Stage,
        job: &Job,
    ) -> (Vec<Pod>, Vec<Pod>) {
        let ours = |p: &StagePod| {
            let labels = p.labels();
            p.namespace().as_deref() == Some(ns)
                && labels.get(names::REPORTJOB_LABEL).map(String::as_str) == Some(reportjob)
                && labels.get(names::STAGE_LABEL).map(String::as_str) == Some(stage.as_str())
                && created_by(p, job)
        };
        let (mut built, mut refused) = (Vec::new(), Vec::new());
        for pod in self.stores.iter().flat_map(|s| s.state_filter(ours)) {
            let is_built = built_by(
                pod.spec_fingerprint.as_deref(),
                pod.metadata.creation_timestamp.as_ref(),
                job,
            );
            match is_built {
                true => built.push(pod.to_pod()),
                false => refused.push(pod.to_pod()),
            }
        }
        built.sort_by_key(ResourceExt::name_any);
        refused.sort_by_key(ResourceExt::name_any);
        (built, refused)
    }
}

/// Whether the cached pods of a finished stage whose result is needed can tell it: they
/// include as many finished pods as the Job counts (the pod watch may lag the Job watch).
pub fn tells_results(job: &Job, pods: &[Pod]) -> bool {
    let status = job.status.clone().unwrap_or_default();
    let counted = status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0);
    let finished = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count();
    i64::try_from(finished).unwrap_or(i64::MAX) >= i64::from(counted)
}

/// Whether a Job whose status shows no active pod has made pods after all, as far as the
/// cache shows: one not finished yet, or as many succeeded as it needs. Its `FailedCreate`
/// events are then not worth reading (its status has not caught up with its pods).
pub fn pods_show_progress(job: &Job, pods: &[Pod]) -> bool {
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let running = pods
        .iter()
        .any(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"));
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    running || i64::try_from(succeeded).unwrap_or(i64::MAX) >= i64::from(completions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use k8s_openapi::api::core::v1::PodStatus;

    fn pod(phase: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn job(succeeded: i32, failed: i32) -> Job {
        Job {
            status: Some(JobStatus {
                succeeded: Some(succeeded),
                failed: Some(failed),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn the_cache_tells_results_once_it_has_every_finished_pod() {
        assert!(tells_results(&job(0, 0), &[]));
        assert!(!tells_results(&job(1, 0), &[pod("Running")]));
        assert!(tells_results(&job(1, 0), &[pod("Succeeded")]));
        assert!(!tells_results(&job(1, 1), &[pod("Succeeded")]));
        assert!(tells_results(
            &job(1, 1),
            &[pod("Failed"), pod("Succeeded")]
        ));
    }

    #[test]
    fn pods_made_by_a_job_whose_status_lags_show_progress() {
        let mut chunks = job(0, 0);
        chunks.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            completions: Some(2),
            ..Default::default()
        });
        assert!(!pods_show_progress(&chunks, &[]));
        assert!(pods_show_progress(&chunks, &[pod("Pending")]));
        assert!(pods_show_progress(&chunks, &[pod("Running")]));
        assert!(!pods_show_progress(&chunks, &[pod("Succeeded")]));
        assert!(!pods_show_progress(
            &chunks,
            &[pod("Failed"), pod("Succeeded")]
        ));
        assert!(pods_show_progress(
            &chunks,
            &[pod("Succeeded"), pod("Succeeded")]
        ));
        // Without completions a Job needs one pod to succeed.
        assert!(pods_show_progress(&job(0, 0), &[pod("Succeeded")]));
    }
}
