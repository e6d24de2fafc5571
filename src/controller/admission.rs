//! The controller-wide cap on runs in flight (`--max-concurrent-runs`): a run holds database
//! connections from its start (its snapshot holder keeps one for the whole run), so at most
//! that many ReportJobs are started and not finished at once; the others wait in phase
//! `Pending` with the condition `Queued`, and are admitted in creation order as runs end,
//! so none starves. The decision is pure ([`decide`], [`next_up`]); [`RunGate`] keeps what
//! it needs between reconciles (the runs admitted or ended that the watch does not show yet)
//! and wakes the next runs when one ends.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::ReportJob;

/// How soon a queued ReportJob is looked at again when no run's end wakes it (a missed
/// wake-up, such as a run deleted before it started).
pub const QUEUED_RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// What the cap says about one ReportJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It may run (it runs already, it fits, or there is no cap).
    Admitted,
    /// It waits: `limit` runs are in flight, and `ahead` queued ones were created before it.
    Queued {
        /// The cap.
        limit: usize,
        /// Queued runs before it.
        ahead: usize,
    },
}

/// A ReportJob as the cap sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    /// `namespace/name`.
    pub key: String,
    /// When it was created (queue order), then its key.
    pub created: Option<Timestamp>,
    /// Its run started (`status.startTime` is set) and has not finished.
    pub in_flight: bool,
    /// Waiting to start: not started, not finished, not being deleted.
    pub startable: bool,
}

impl RunView {
    /// The view of a ReportJob.
    pub fn of(rj: &ReportJob) -> RunView {
        let status = rj.status.as_ref();
        let finished = status
            .and_then(|s| s.phase)
            .is_some_and(crate::api::Phase::is_terminal);
        let started = status.is_some_and(|s| s.start_time.is_some());
        RunView {
            key: key_of(rj),
            created: rj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            in_flight: started && !finished,
            startable: !started && !finished && rj.metadata.deletion_timestamp.is_none(),
        }
    }
}

/// `namespace/name` of a ReportJob.
pub fn key_of(rj: &ReportJob) -> String {
    format!("{}/{}", rj.namespace().unwrap_or_default(), rj.name_any())
}

/// What the cap remembers between reconciles, until the watch shows it.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Admitted, not yet shown started by the watch.
    pub admitted: HashSet<String>,
    /// Ended (or gone), not yet shown finished by the watch.
    pub ended: HashSet<String>,
}

impl Memory {
    /// Forgets what the runs now show themselves.
    pub fn prune(&mut self, runs: &[RunView]) {
        self.admitted
            .retain(|k| runs.iter().any(|r| &r.key == k && r.startable));
        self.ended
            .retain(|k| runs.iter().any(|r| &r.key == k && r.in_flight));
    }
}

/// The runs in flight: started and not finished, or admitted and not started yet; not those
/// known to have ended.
fn in_flight<'a>(runs: &'a [RunView], memory: &Memory) -> BTreeSet<&'a str> {
    runs.iter()
        .filter(|r| !memory.ended.contains(&r.key))
        .filter(|r| r.in_flight || (r.startable && memory.admitted.contains(&r.key)))
        .map(|r| r.key.as_str())
        .collect()
}

/// The queue: startable runs not admitted, oldest first.
fn queue<'a>(runs: &'a [RunView], flying: &BTreeSet<&str>) -> Vec<&'a RunView> {
    let mut waiting: Vec<&RunView> = runs
        .iter()
        .filter(|r| r.startable && !flying.contains(r.key.as_str()))
        .collect();
    waiting.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    waiting
}

/// Whether the run `me` (one of `runs`) may start under a cap of `limit` runs in flight.
pub fn decide(me: &str, runs: &[RunView], memory: &Memory, limit: usize) -> Admission {
    let flying = in_flight(runs, memory);
    if flying.contains(me) {
        return Admission::Admitted;
    }
    let waiting = queue(runs, &flying);
    let Some(ahead) = waiting.iter().position(|r| r.key == me) else {
        // Not waiting to start (finished, being deleted): nothing to hold back.
        return Admission::Admitted;
    };
    if ahead < limit.saturating_sub(flying.len()) {
        Admission::Admitted
    } else {
        Admission::Queued { limit, ahead }
    }
}

/// The queued runs that fit now, oldest first: those to wake when a run ended.
pub fn next_up(runs: &[RunView], memory: &Memory, limit: usize) -> Vec<String> {
    let flying = in_flight(runs, memory);
    let free = limit.saturating_sub(flying.len());
    queue(runs, &flying)
        .into_iter()
        .take(free)
        .map(|r| r.key.clone())
        .collect()
}

/// Where a woken ReportJob's reconcile is requested: one sender per watched scope (a
/// namespace, or `None` for all).
pub type Wakers = Vec<(Option<String>, UnboundedSender<ObjectRef<ReportJob>>)>;

/// The cap at run time: the ReportJob watches' stores, the memory, and the wakers.
pub struct RunGate {
    limit: Option<usize>,
    stores: Vec<Store<ReportJob>>,
    memory: Mutex<Memory>,
    wakers: Wakers,
}

impl RunGate {
    /// A cap of `limit` runs (`None`: no cap) over the ReportJobs of these stores.
    pub fn new(limit: Option<usize>, stores: Vec<Store<ReportJob>>, wakers: Wakers) -> Self {
        RunGate {
            limit,
            stores,
            memory: Mutex::new(Memory::default()),
            wakers,
        }
    }

    /// The runs as the watches show them, `me` as the reconcile read it.
    fn runs(&self, me: Option<&ReportJob>) -> Vec<RunView> {
        let mine = me.map(key_of);
        let mut runs: Vec<RunView> = self
            .stores
            .iter()
            .flat_map(|s| s.state())
            .map(|rj| RunView::of(&rj))
            .filter(|r| Some(&r.key) != mine.as_ref())
            .collect();
        runs.extend(me.map(RunView::of));
        runs
    }

    /// Whether `rj` may start now; an admitted run counts as in flight from here on.
    pub async fn admit(&self, rj: &ReportJob) -> Admission {
        let Some(limit) = self.limit else {
            return Admission::Admitted;
        };
        let me = RunView::of(rj);
        if !me.startable {
            return Admission::Admitted;
        }
        for store in &self.stores {
            // Ready, or its writer is gone (stopping); a reconcile only runs once the
            // controller's own watch listed, so this does not wait in practice.
            let _ = store.wait_until_ready().await;
        }
        let runs = self.runs(Some(rj));
        let Ok(mut memory) = self.memory.lock() else {
            return Admission::Admitted;
        };
        memory.prune(&runs);
        let admission = decide(&me.key, &runs, &memory, limit);
        if admission == Admission::Admitted {
            memory.admitted.insert(me.key);
        }
        admission
    }

    /// `rj`'s run ended (it finished, or it is going): its slot is free, and the queued runs
    /// that fit now are woken.
    pub fn ended(&self, rj: &ReportJob) {
        let Some(limit) = self.limit else {
            return;
        };
        let key = key_of(rj);
        let runs = self.runs(None);
        let next = match self.memory.lock() {
            Ok(mut memory) => {
                memory.prune(&runs);
                memory.admitted.remove(&key);
                // Remembered only while the watch still shows it in flight.
                if runs.iter().any(|r| r.key == key && r.in_flight) {
                    memory.ended.insert(key);
                }
                next_up(&runs, &memory, limit)
            }
            Err(_) => Vec::new(),
        };
        for key in next {
            if let Some((ns, name)) = key.split_once('/') {
                self.wake(ns, name);
            }
        }
    }

    /// The ReportJobs of `ns` as the watches show them.
    pub fn reportjobs_in(&self, ns: &str) -> Vec<std::sync::Arc<ReportJob>> {
        self.stores
            .iter()
            .flat_map(|s| s.state_filter(|rj| rj.namespace().as_deref() == Some(ns)))
            .collect()
    }

    /// Requests a reconcile of the ReportJob `ns/name`.
    pub fn wake(&self, ns: &str, name: &str) {
        let waker = self
            .wakers
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == ns));
        if let Some((_, tx)) = waker {
            let _ = tx.unbounded_send(ObjectRef::new(name).within(ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, created: i64, in_flight: bool, startable: bool) -> RunView {
        RunView {
            key: key.into(),
            created: Timestamp::from_second(created).ok(),
            in_flight,
            startable,
        }
    }

    #[test]
    fn runs_beyond_the_cap_wait_and_are_admitted_in_creation_order() {
        let runs = vec![
            run("ns/a", 1, true, false),
            run("ns/b", 2, true, false),
            run("ns/late", 9, false, true),
            run("ns/early", 3, false, true),
            run("ns/done", 0, false, false),
        ];
        let memory = Memory::default();
        assert_eq!(
            decide("ns/early", &runs, &memory, 2),
            Admission::Queued { limit: 2, ahead: 0 }
        );
        assert_eq!(
            decide("ns/late", &runs, &memory, 2),
            Admission::Queued { limit: 2, ahead: 1 }
        );
        // One slot frees: the earliest created gets it, not whichever reconciles first.
        assert_eq!(
            decide("ns/late", &runs, &memory, 3),
            Admission::Queued { limit: 3, ahead: 1 }
        );
        assert_eq!(decide("ns/early", &runs, &memory, 3), Admission::Admitted);
        assert_eq!(next_up(&runs, &memory, 3), vec!["ns/early".to_string()]);
        assert_eq!(next_up(&runs, &memory, 2), Vec::<String>::new());
        // Runs in flight and finished ones are never held back.
        assert_eq!(decide("ns/a", &runs, &memory, 0), Admission::Admitted);
        assert_eq!(decide("ns/done", &runs, &memory, 0), Admission::Admitted);
    }

    #[test]
    fn admitted_runs_hold_their_slot_until_the_watch_shows_them_and_ended_ones_free_it() {
        let mut runs = vec![
            run("ns/a", 1, false, true),
            run("ns/b", 2, false, true),
            run("ns/c", 3, false, true),
        ];
        let mut memory = Memory::default();
        assert_eq!(decide("ns/a", &runs, &memory, 1), Admission::Admitted);
        memory.admitted.insert("ns/a".into());
        // The watch still shows a as not started: it counts, so b waits.
        assert_eq!(
            decide("ns/b", &runs, &memory, 1),
            Admission::Queued { limit: 1, ahead: 0 }
        );
        // The watch shows a started: memory forgets it, it still counts.
        runs[0] = run("ns/a", 1, true, false);
        memory.prune(&runs);
        assert!(memory.admitted.is_empty());
        assert_eq!(
            decide("ns/b", &runs, &memory, 1),
            Admission::Queued { limit: 1, ahead: 0 }
        );
        // a ended before the watch shows it: b fits, c does not.
        memory.ended.insert("ns/a".into());
        assert_eq!(next_up(&runs, &memory, 1), vec!["ns/b".to_string()]);
        assert_eq!(decide("ns/b", &runs, &memory, 1), Admission::Admitted);
        // The watch shows a finished: the memory of its end goes.
        runs[0] = run("ns/a", 1, false, false);
        memory.prune(&runs);
        assert!(memory.ended.is_empty());
    }
}
