//! The controller-wide cap on runs in flight (`--max-concurrent-runs`), shared fairly
//! between namespaces: a run holds database connections from its start (its snapshot holder
//! keeps one for the whole run), so at most that many ReportJobs are started and not
//! finished at once; the others wait in phase `Pending` with the condition `Queued`. A
//! suspended run holds no slot: resuming it is admitted like a start. When a slot frees,
//! the namespace with the fewest runs in flight goes first, its oldest run first, so no
//! namespace starves another; `--max-concurrent-runs-per-namespace` caps one namespace.
//! A ReportDatabase's `maxSnapshots` caps the Snapshot runs that name it the same way, as
//! a queue of their own. The decision is pure ([`decide`], [`next_up`]); [`RunGate`] keeps what it needs between
//! reconciles (the runs admitted or ended that the watch does not show yet) and wakes the
//! next runs when one ends or pauses.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use reportjob_core::api::ReportJob;

/// How soon a queued ReportJob is looked at again when no run's end wakes it (a missed
/// wake-up, such as a run deleted before it started).
pub const QUEUED_RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an admission waits for every scope's ReportJob watch to have listed.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the cap says about one ReportJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunSlot {
    /// It may run (it runs already, it fits, or there is no cap).
    Admitted,
    /// It waits: `limit` runs are in flight, and `ahead` queued ones go before it.
    Queued {
        /// The cap.
        limit: usize,
        /// Queued runs before it.
        ahead: usize,
    },
    /// It waits: its namespace has `limit` runs in flight, as many as one namespace may.
    NamespaceFull {
        /// The per-namespace cap.
        limit: usize,
    },
    /// It waits: `limit` Snapshot runs of its ReportDatabase hold a session, and `ahead`
    /// queued ones go before it.
    DatabaseSnapshots {
        /// The ReportDatabase.
        database: String,
        /// Its `maxSnapshots`.
        limit: usize,
        /// Queued Snapshot runs of the database before it.
        ahead: usize,
    },
}

/// The caps runs are admitted under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Runs in flight at once, all namespaces together (`None`: no cap).
    pub total: Option<usize>,
    /// Runs in flight at once in one namespace (`None`: no cap but the total).
    pub per_namespace: Option<usize>,
}

/// A ReportJob as the cap sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    /// `namespace/name`.
    pub key: String,
    /// When it was created (queue order), then its key.
    pub created: Option<Timestamp>,
    /// Its run started (`status.startTime` is set), has not finished and is not suspended.
    pub in_flight: bool,
    /// Waiting to start, or to resume: not started (or suspended and asked to resume), not
    /// finished, not being deleted.
    pub startable: bool,
    /// The ReportDatabase it names, when it holds a snapshot session (`consistency:
    /// Snapshot`).
    pub snapshot_database: Option<String>,
}

impl RunView {
    /// The view of a ReportJob.
    pub fn of(rj: &ReportJob) -> RunView {
        let status = rj.status.as_ref();
        let phase = status.and_then(|s| s.phase);
        let finished = phase.is_some_and(reportjob_core::api::Phase::is_terminal);
        let started = status.is_some_and(|s| s.start_time.is_some());
        // Suspended: its chunk pods are stopped and it holds no slot until it resumes.
        let paused = phase == Some(reportjob_core::api::Phase::Suspended);
        let resuming = paused && !rj.spec.suspend;
        let deleting = rj.metadata.deletion_timestamp.is_some();
        RunView {
            key: key_of(rj),
            created: rj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            in_flight: started && !finished && !paused,
            startable: (!started || resuming) && !finished && !deleting,
            snapshot_database: rj
                .spec
                .source
                .database
                .as_ref()
                .filter(|_| {
                    rj.spec.source.consistency == reportjob_core::api::Consistency::Snapshot
                })
                .map(|db| db.name.clone()),
        }
    }

    /// The namespace of the run.
    fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
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

/// Runs in flight per namespace.
fn per_namespace<'a>(runs: &'a [RunView], flying: &BTreeSet<&str>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for r in runs.iter().filter(|r| flying.contains(r.key.as_str())) {
        *counts.entry(r.namespace()).or_insert(0) += 1;
    }
    counts
}

/// The queue: startable runs not admitted, in the order slots go to them. Each namespace's
/// runs in creation order; between namespaces, the one with the fewest runs in flight (then
/// the older run) first, so that a namespace with many runs waiting takes its turn with the
/// others instead of before them. Runs of a namespace at its cap are left out.
fn queue<'a>(
    runs: &'a [RunView],
    flying: &BTreeSet<&str>,
    per_namespace_cap: Option<usize>,
) -> Vec<&'a RunView> {
    let mut waiting: Vec<&RunView> = runs
        .iter()
        .filter(|r| r.startable && !flying.contains(r.key.as_str()))
        .collect();
    waiting.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    let in_flight = per_namespace(runs, flying);
    // A run's turn: runs its namespace has in flight plus those of it queued before it.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut turns: Vec<(usize, &RunView)> = waiting
        .into_iter()
        .map(|r| {
            let ns = r.namespace();
            let before = seen.entry(ns).or_insert(0);
            let turn = in_flight.get(ns).copied().unwrap_or(0) + *before;
            *before += 1;
            (turn, r)
        })
        .filter(|(turn, _)| per_namespace_cap.is_none_or(|cap| *turn < cap))
        .collect();
    turns.sort_by(|(ta, a), (tb, b)| (ta, a.created, &a.key).cmp(&(tb, b.created, &b.key)));
    turns.into_iter().map(|(_, r)| r).collect()
}

/// Whether the run `me` (one of `runs`) may start (or resume) under `limits`.
pub fn decide(me: &str, runs: &[RunView], memory: &Memory, limits: Limits) -> RunSlot {
    let flying = in_flight(runs, memory);
    if flying.contains(me) {
        return RunSlot::Admitted;
    }
    let Some(run) = runs.iter().find(|r| r.key == me && r.startable) else {
        // Not waiting to start (finished, being deleted): nothing to hold back.
        return RunSlot::Admitted;
    };
    if let Some(cap) = limits.per_namespace
        && per_namespace(runs, &flying)
            .get(run.namespace())
            .is_some_and(|n| *n >= cap)
    {
        return RunSlot::NamespaceFull { limit: cap };
    }
    let Some(limit) = limits.total else {
        return RunSlot::Admitted;
    };
    let waiting = queue(runs, &flying, limits.per_namespace);
    let Some(ahead) = waiting.iter().position(|r| r.key == me) else {
        // Its namespace's earlier runs fill the namespace's cap.
        return RunSlot::NamespaceFull {
            limit: limits.per_namespace.unwrap_or(limit),
        };
    };
    if ahead < limit.saturating_sub(flying.len()) {
        RunSlot::Admitted
    } else {
        RunSlot::Queued { limit, ahead }
    }
}

/// The queued runs that fit now, in their turn: those to wake when a run ended.
pub fn next_up(runs: &[RunView], memory: &Memory, limits: Limits) -> Vec<String> {
    let flying = in_flight(runs, memory);
    let free = limits
        .total
        .map_or(usize::MAX, |limit| limit.saturating_sub(flying.len()));
    queue(runs, &flying, limits.per_namespace)
        .into_iter()
        .take(free)
        .map(|r| r.key.clone())
        .collect()
}

/// The Snapshot runs that name `database`.
fn snapshot_group(runs: &[RunView], database: &str) -> Vec<RunView> {
    runs.iter()
        .filter(|r| r.snapshot_database.as_deref() == Some(database))
        .cloned()
        .collect()
}

/// Whether the Snapshot run `me` of `database` may start under its `maxSnapshots`
/// (`limit`): the database's Snapshot runs queue as the controller-wide cap's do.
pub fn decide_snapshots(
    me: &str,
    database: &str,
    runs: &[RunView],
    memory: &Memory,
    limit: usize,
) -> RunSlot {
    let group = snapshot_group(runs, database);
    match decide(me, &group, memory, Limits::total(limit)) {
        RunSlot::Queued { limit, ahead } => RunSlot::DatabaseSnapshots {
            database: database.to_string(),
            limit,
            ahead,
        },
        other => other,
    }
}

impl Limits {
    /// A cap of `limit` runs, all namespaces together.
    pub fn total(limit: usize) -> Limits {
        Limits {
            total: Some(limit),
            per_namespace: None,
        }
    }
}

/// Where a woken ReportJob's reconcile is requested: one sender per watched scope (a
/// namespace, or `None` for all).
pub type Wakers = Vec<(Option<String>, UnboundedSender<ObjectRef<ReportJob>>)>;

/// The cap at run time: the ReportJob watches' stores, the memory, and the wakers.
pub struct RunGate {
    limits: Limits,
    stores: Vec<Store<ReportJob>>,
    memory: Mutex<Memory>,
    wakers: Wakers,
}

impl RunGate {
    /// Caps of `limits` over the ReportJobs of these stores.
    pub fn new(limits: Limits, stores: Vec<Store<ReportJob>>, wakers: Wakers) -> Self {
        RunGate {
            limits,
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

    /// Whether `rj` may start (or resume) now, under the controller's caps and, for a
    /// Snapshot run naming a ReportDatabase, its `maxSnapshots` (`snapshot_limit`); an
    /// admitted run counts as in flight from here on.
    pub async fn admit(&self, rj: &ReportJob, snapshot_limit: Option<usize>) -> RunSlot {
        let me = RunView::of(rj);
        let snapshot_limit = snapshot_limit.filter(|_| me.snapshot_database.is_some());
        if self.limits == Limits::default() && snapshot_limit.is_none() {
            return RunSlot::Admitted;
        }
        if !me.startable {
            return RunSlot::Admitted;
        }
        for store in &self.stores {
            // Ready, or its writer is gone (stopping); a reconcile only runs once the
            // controller's own watch listed, so this rarely waits. Bounded all the same: a
            // scope whose watch cannot list must not hold every other scope's runs.
            if tokio::time::timeout(STORE_WAIT, store.wait_until_ready())
                .await
                .is_err()
            {
                tracing::warn!(
                    "a watched namespace's ReportJobs are not listed yet; counting runs without them"
                );
            }
        }
        let runs = self.runs(Some(rj));
        let Ok(mut memory) = self.memory.lock() else {
            return RunSlot::Admitted;
        };
        memory.prune(&runs);
        let mut slot = decide(&me.key, &runs, &memory, self.limits);
        if let (RunSlot::Admitted, Some(limit), Some(database)) =
            (&slot, snapshot_limit, &me.snapshot_database)
        {
            slot = decide_snapshots(&me.key, database, &runs, &memory, limit);
        }
        if slot == RunSlot::Admitted {
            memory.admitted.insert(me.key);
        }
        slot
    }

    /// `rj`'s run ended (it finished, it is going, or it is suspended): its slot is free,
    /// and the queued runs that fit now are woken (with `snapshot_limit`, its
    /// ReportDatabase's `maxSnapshots`, also the Snapshot runs of that database).
    pub fn ended(&self, rj: &ReportJob, snapshot_limit: Option<usize>) {
        let me = RunView::of(rj);
        let snapshot_limit = snapshot_limit.filter(|_| me.snapshot_database.is_some());
        if self.limits == Limits::default() && snapshot_limit.is_none() {
            return;
        }
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
                let mut next = if self.limits == Limits::default() {
                    Vec::new()
                } else {
                    next_up(&runs, &memory, self.limits)
                };
                if let (Some(limit), Some(database)) = (snapshot_limit, &me.snapshot_database) {
                    let group = snapshot_group(&runs, database);
                    next.extend(next_up(&group, &memory, Limits::total(limit)));
                }
                next
            }
            Err(_) => Vec::new(),
        };
        for key in next {
            if let Some((ns, name)) = key.split_once('/') {
                self.wake(ns, name);
            }
        }
    }

    /// Every ReportJob the watches show.
    pub fn all_reportjobs(&self) -> Vec<std::sync::Arc<ReportJob>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }

    /// Requests a reconcile of the ReportJob `namespace/name`.
    pub fn wake_key(&self, key: &str) {
        if let Some((ns, name)) = key.split_once('/') {
            self.wake(ns, name);
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

    fn total(limit: usize) -> Limits {
        Limits {
            total: Some(limit),
            per_namespace: None,
        }
    }

    fn run(key: &str, created: i64, in_flight: bool, startable: bool) -> RunView {
        RunView {
            key: key.into(),
            created: Timestamp::from_second(created).ok(),
            in_flight,
            startable,
            snapshot_database: None,
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
            decide("ns/early", &runs, &memory, total(2)),
            RunSlot::Queued { limit: 2, ahead: 0 }
        );
        assert_eq!(
            decide("ns/late", &runs, &memory, total(2)),
            RunSlot::Queued { limit: 2, ahead: 1 }
        );
        // One slot frees: the earliest created gets it, not whichever reconciles first.
        assert_eq!(
            decide("ns/late", &runs, &memory, total(3)),
            RunSlot::Queued { limit: 3, ahead: 1 }
        );
        assert_eq!(
            decide("ns/early", &runs, &memory, total(3)),
            RunSlot::Admitted
        );
        assert_eq!(
            next_up(&runs, &memory, total(3)),
            vec!["ns/early".to_string()]
        );
        assert_eq!(next_up(&runs, &memory, total(2)), Vec::<String>::new());
        // Runs in flight and finished ones are never held back.
        assert_eq!(decide("ns/a", &runs, &memory, total(0)), RunSlot::Admitted);
        assert_eq!(
            decide("ns/done", &runs, &memory, total(0)),
            RunSlot::Admitted
        );
    }

    #[test]
    fn admitted_runs_hold_their_slot_until_the_watch_shows_them_and_ended_ones_free_it() {
        let mut runs = vec![
            run("ns/a", 1, false, true),
            run("ns/b", 2, false, true),
            run("ns/c", 3, false, true),
        ];
        let mut memory = Memory::default();
        assert_eq!(decide("ns/a", &runs, &memory, total(1)), RunSlot::Admitted);
        memory.admitted.insert("ns/a".into());
        // The watch still shows a as not started: it counts, so b waits.
        assert_eq!(
            decide("ns/b", &runs, &memory, total(1)),
            RunSlot::Queued { limit: 1, ahead: 0 }
        );
        // The watch shows a started: memory forgets it, it still counts.
        runs[0] = run("ns/a", 1, true, false);
        memory.prune(&runs);
        assert!(memory.admitted.is_empty());
        assert_eq!(
            decide("ns/b", &runs, &memory, total(1)),
            RunSlot::Queued { limit: 1, ahead: 0 }
        );
        // a ended before the watch shows it: b fits, c does not.
        memory.ended.insert("ns/a".into());
        assert_eq!(next_up(&runs, &memory, total(1)), vec!["ns/b".to_string()]);
        assert_eq!(decide("ns/b", &runs, &memory, total(1)), RunSlot::Admitted);
        // The watch shows a finished: the memory of its end goes.
        runs[0] = run("ns/a", 1, false, false);
        memory.prune(&runs);
        assert!(memory.ended.is_empty());
    }

    #[test]
    fn a_namespace_with_many_runs_waiting_takes_turns_with_the_others() {
        // Team a queued three runs before team b's one; a has one in flight already.
        let runs = vec![
            run("a/busy", 0, true, false),
            run("a/1", 1, false, true),
            run("a/2", 2, false, true),
            run("a/3", 3, false, true),
            run("b/1", 4, false, true),
        ];
        let memory = Memory::default();
        // Two slots free: b's run (its namespace has none in flight) and a's oldest.
        assert_eq!(
            next_up(&runs, &memory, total(3)),
            vec!["b/1".to_string(), "a/1".to_string()]
        );
        assert_eq!(decide("b/1", &runs, &memory, total(2)), RunSlot::Admitted);
        assert_eq!(
            decide("a/1", &runs, &memory, total(2)),
            RunSlot::Queued { limit: 2, ahead: 1 }
        );
    }

    #[test]
    fn a_namespace_at_its_cap_waits_and_leaves_the_slots_to_others() {
        let runs = vec![
            run("a/busy", 0, true, false),
            run("a/1", 1, false, true),
            run("b/1", 2, false, true),
        ];
        let memory = Memory::default();
        let limits = Limits {
            total: Some(5),
            per_namespace: Some(1),
        };
        assert_eq!(
            decide("a/1", &runs, &memory, limits),
            RunSlot::NamespaceFull { limit: 1 }
        );
        assert_eq!(decide("b/1", &runs, &memory, limits), RunSlot::Admitted);
        assert_eq!(next_up(&runs, &memory, limits), vec!["b/1".to_string()]);
        // The per-namespace cap alone, with no total.
        let only_per_namespace = Limits {
            total: None,
            per_namespace: Some(1),
        };
        assert_eq!(
            decide("a/1", &runs, &memory, only_per_namespace),
            RunSlot::NamespaceFull { limit: 1 }
        );
        assert_eq!(
            decide("b/1", &runs, &memory, only_per_namespace),
            RunSlot::Admitted
        );
    }

    fn reportjob(
        ns: &str,
        name: &str,
        suspend: bool,
        phase: reportjob_core::api::Phase,
    ) -> ReportJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
            "metadata": {"name": name, "namespace": ns,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"pvc": {"claimName": "r", "path": "r.csv"}}},
                "suspend": suspend
            },
            "status": {"phase": phase.as_str(), "startTime": "2026-01-01T00:00:01Z"}
        }))
        .unwrap()
    }

    #[test]
    fn a_suspended_run_holds_no_slot_and_resuming_is_admitted_like_a_start() {
        use reportjob_core::api::Phase;
        let paused = RunView::of(&reportjob("a", "paused", true, Phase::Suspended));
        assert!(!paused.in_flight && !paused.startable);
        let resuming = RunView::of(&reportjob("a", "resuming", false, Phase::Suspended));
        assert!(!resuming.in_flight && resuming.startable);
        let running = RunView::of(&reportjob("b", "running", false, Phase::Running));
        assert!(running.in_flight && !running.startable);
        // Three suspended runs of a, one slot: b's new run takes it, a's resume waits.
        let mut runs = vec![
            RunView::of(&reportjob("a", "p1", true, Phase::Suspended)),
            RunView::of(&reportjob("a", "p2", true, Phase::Suspended)),
            resuming,
            run("b/new", 1, false, true),
        ];
        let memory = Memory::default();
        assert_eq!(decide("b/new", &runs, &memory, total(1)), RunSlot::Admitted);
        runs[3] = run("b/new", 1, true, false);
        assert_eq!(
            decide("a/resuming", &runs, &memory, total(1)),
            RunSlot::Queued { limit: 1, ahead: 0 }
        );
        assert_eq!(
            decide("a/resuming", &runs, &memory, total(2)),
            RunSlot::Admitted
        );
    }

    #[test]
    fn a_databases_snapshot_runs_queue_under_its_max_snapshots_and_others_do_not_count() {
        let snap = |key: &str, created, in_flight, startable, db: &str| RunView {
            snapshot_database: Some(db.to_string()),
            ..run(key, created, in_flight, startable)
        };
        let runs = vec![
            snap("a/1", 1, true, false, "orders"),
            snap("b/1", 2, true, false, "orders"),
            snap("c/1", 3, false, true, "orders"),
            snap("a/2", 4, false, true, "orders"),
            // Another database's and a run without a snapshot: not in the queue.
            snap("a/3", 0, true, false, "billing"),
            run("a/4", 0, true, false),
        ];
        let memory = Memory::default();
        assert_eq!(
            decide_snapshots("c/1", "orders", &runs, &memory, 2),
            RunSlot::DatabaseSnapshots {
                database: "orders".into(),
                limit: 2,
                ahead: 0
            }
        );
        // a/2 waits behind c/1: namespace c has no run in flight, a has one.
        assert_eq!(
            decide_snapshots("a/2", "orders", &runs, &memory, 2),
            RunSlot::DatabaseSnapshots {
                database: "orders".into(),
                limit: 2,
                ahead: 1
            }
        );
        assert_eq!(
            decide_snapshots("c/1", "orders", &runs, &memory, 3),
            RunSlot::Admitted
        );
        assert_eq!(
            decide_snapshots("a/3", "billing", &runs, &memory, 1),
            RunSlot::Admitted
        );
    }
}
