//! When a changed status is written: at once when anything but progress changed (phase,
//! conditions, plan, output, failed chunks...); progress alone (chunks done, completed
//! chunks, the progress message) at once when no status was written in the last
//! [`PROGRESS_EVERY`], else once that has passed (or with the next write, whichever is
//! first); a change of the active pod count alone
//! not by itself (the next write carries it). So a run's status writes do not grow with its
//! chunks or with how often its Job's counts move. The decisions are pure
//! ([`progress_only`], [`active_only`]); [`StatusWrites`] remembers the last writes, so
//! that a write the watch has not brought back yet is not repeated.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reportjob_core::api::ReportJobStatus;

/// The least time between a status write and a write that only moves progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Whether `new` differs from `old` only in progress: the chunk counts, the completed
/// chunks, the progress column and the message, with the same phase; or the text of a
/// `Queued` condition that keeps its status and reason (a waiting run's place in its
/// database's queue).
pub fn progress_only(old: &ReportJobStatus, new: &ReportJobStatus) -> bool {
    let strip = |s: &ReportJobStatus| {
        let mut s = ReportJobStatus {
            chunks: None,
            completed_chunks: None,
            progress: None,
            message: None,
            ..s.clone()
        };
        for c in &mut s.conditions {
            if c.type_ == reportjob_core::api::conditions::QUEUED {
                c.message.clear();
            }
        }
        s
    };
    old != new && old.phase.is_some() && strip(old) == strip(new)
}

/// Whether `new` differs from `old` only in the count of active chunk pods.
pub fn active_only(old: &ReportJobStatus, new: &ReportJobStatus) -> bool {
    let strip = |s: &ReportJobStatus| {
        let mut s = s.clone();
        if let Some(c) = s.chunks.as_mut() {
            c.active = 0;
        }
        s
    };
    old != new && strip(old) == strip(new)
}

/// The last status this controller wrote for each ReportJob: when, and what.
#[derive(Default)]
pub struct StatusWrites {
    last: Mutex<HashMap<String, Written>>,
}

/// One status write.
struct Written {
    at: Instant,
    /// The ReportJob's `resourceVersion` as the cache showed it before the write.
    seen_version: Option<String>,
    /// A digest of the status written.
    status: u64,
}

/// A digest of `status`, to tell a repeated write.
fn digest(status: &ReportJobStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl StatusWrites {
    /// How long a progress-only write of `key` must wait (`None`: write now).
    pub fn wait(&self, key: &str) -> Option<Duration> {
        let last = self.last.lock().ok()?;
        let since = last.get(key)?.at.elapsed();
        (since < PROGRESS_EVERY).then(|| PROGRESS_EVERY - since)
    }

    /// Whether `status` is what was last written for `key` while the cache still shows
    /// `seen_version`, the version from before that write: the watch has not brought the
    /// write back yet (a Job event often wakes the next reconcile first), so writing it
    /// again would only repeat it.
    pub fn repeats(&self, key: &str, seen_version: Option<&str>, status: &ReportJobStatus) -> bool {
        let Ok(last) = self.last.lock() else {
            return false;
        };
        last.get(key).is_some_and(|w| {
            w.seen_version.as_deref() == seen_version && w.status == digest(status)
        })
    }

    /// `status` was written for `key` now, over `seen_version`.
    pub fn wrote(&self, key: &str, seen_version: Option<String>, status: &ReportJobStatus) {
        if let Ok(mut last) = self.last.lock() {
            if last.len() > 1024 {
                last.retain(|_, w| w.at.elapsed() < PROGRESS_EVERY);
            }
            last.insert(
                key.to_string(),
                Written {
                    at: Instant::now(),
                    seen_version,
                    status: digest(status),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reportjob_core::api::{ChunkCounts, Phase};

    fn running(succeeded: i64) -> ReportJobStatus {
        ReportJobStatus {
            phase: Some(Phase::Running),
            chunks: Some(ChunkCounts {
                total: 10,
                succeeded,
                ..Default::default()
            }),
            completed_chunks: Some(format!("0-{succeeded}")),
            progress: Some(format!("{succeeded}/10")),
            message: Some(format!("exporting chunks: {succeeded}/10 done")),
            ..Default::default()
        }
    }

    #[test]
    fn only_progress_moving_is_progress_only() {
        assert!(progress_only(&running(1), &running(2)));
        assert!(!progress_only(&running(2), &running(2)));
        let mut assembling = running(10);
        assembling.phase = Some(Phase::Assembling);
        assert!(!progress_only(&running(9), &assembling));
        let mut failed = running(3);
        failed.failed_chunks = Some("4".into());
        assert!(!progress_only(&running(3), &failed));
        // The first status of a ReportJob is always written.
        assert!(!progress_only(&ReportJobStatus::default(), &running(0)));
        let mut busier = running(2);
        if let Some(c) = busier.chunks.as_mut() {
            c.active = 3;
        }
        assert!(active_only(&running(2), &busier));
        assert!(!active_only(&running(1), &busier));
    }

    #[test]
    fn a_waiting_runs_place_in_the_queue_is_progress_but_a_new_reason_is_not() {
        let queued = |reason: &str, message: &str| {
            let mut s = running(0);
            s.message = Some(message.into());
            s.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: reportjob_core::api::conditions::QUEUED.into(),
                status: "True".into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH,
                ),
            }];
            s
        };
        let third = queued(
            "DatabaseBudgetInUse",
            "waiting: 8/8 chunks in use, 3 runs ahead",
        );
        let second = queued(
            "DatabaseBudgetInUse",
            "waiting: 8/8 chunks in use, 2 runs ahead",
        );
        assert!(progress_only(&third, &second));
        let other = queued("StagePodBudgetInUse", "waiting for chunk pods");
        assert!(!progress_only(&third, &other));
    }

    #[test]
    fn a_progress_write_waits_for_the_interval_since_the_last_write() {
        let writes = StatusWrites::default();
        assert_eq!(writes.wait("ns/a"), None);
        writes.wrote("ns/a", Some("7".into()), &running(1));
        let wait = writes.wait("ns/a").expect("just written");
        assert!(wait <= PROGRESS_EVERY && wait > Duration::ZERO);
        assert_eq!(writes.wait("ns/b"), None);
    }

    #[test]
    fn a_write_the_cache_has_not_shown_yet_is_not_repeated() {
        let writes = StatusWrites::default();
        writes.wrote("ns/a", Some("7".into()), &running(1));
        // The cache still at version 7: the same status again is a repeat...
        assert!(writes.repeats("ns/a", Some("7"), &running(1)));
        // ...another status is not, nor the same once the cache moved on (someone else
        // may have changed the status since).
        assert!(!writes.repeats("ns/a", Some("7"), &running(2)));
        assert!(!writes.repeats("ns/a", Some("9"), &running(1)));
        assert!(!writes.repeats("ns/b", Some("7"), &running(1)));
    }
}
