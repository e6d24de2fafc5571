//! When a changed status is written: at once when anything but progress changed (phase,
//! conditions, plan, output, failed chunks...); progress alone (chunks done, completed
//! chunks, the progress message) at once when no status was written in the last
//! [`PROGRESS_EVERY`], else once that has passed (or with the next write, whichever is
//! first); a change of the active pod count alone
//! not by itself (the next write carries it). So a run's status writes do not grow with its
//! chunks or with how often its Job's counts move. The decisions are pure
//! ([`progress_only`], [`active_only`]); [`ProgressWrites`] remembers the last progress
//! writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::ReportJobStatus;

/// The least time between a status write and a write that only moves progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Whether `new` differs from `old` only in progress: the chunk counts, the completed
/// chunks, the progress column and the message, with the same phase.
pub fn progress_only(old: &ReportJobStatus, new: &ReportJobStatus) -> bool {
    let strip = |s: &ReportJobStatus| ReportJobStatus {
        chunks: None,
        completed_chunks: None,
        progress: None,
        message: None,
        ..s.clone()
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

/// When each ReportJob's status was last written.
#[derive(Default)]
pub struct ProgressWrites {
    last: Mutex<HashMap<String, Instant>>,
}

impl ProgressWrites {
    /// How long a progress-only write of `key` must wait (`None`: write now).
    pub fn wait(&self, key: &str) -> Option<Duration> {
        let last = self.last.lock().ok()?;
        let since = last.get(key)?.elapsed();
        (since < PROGRESS_EVERY).then(|| PROGRESS_EVERY - since)
    }

    /// `key`'s status was written now.
    pub fn wrote(&self, key: &str) {
        if let Ok(mut last) = self.last.lock() {
            if last.len() > 1024 {
                last.retain(|_, at| at.elapsed() < PROGRESS_EVERY);
            }
            last.insert(key.to_string(), Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChunkCounts, Phase};

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
    fn a_progress_write_waits_for_the_interval_since_the_last_write() {
        let writes = ProgressWrites::default();
        assert_eq!(writes.wait("ns/a"), None);
        writes.wrote("ns/a");
        let wait = writes.wait("ns/a").expect("just written");
        assert!(wait <= PROGRESS_EVERY && wait > Duration::ZERO);
        assert_eq!(writes.wait("ns/b"), None);
    }
}
