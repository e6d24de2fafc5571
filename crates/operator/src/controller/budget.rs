//! The per-namespace budget of chunk worker pods (`--max-stage-pods-per-namespace`): the
//! chunks Jobs of one namespace never have more pods running, together, than the budget.
//! Each chunks Job's `parallelism` is its grant: a run gets at most its fair share (the
//! budget dealt round-robin over the namespace's exporting runs, oldest first, none above
//! what it can use) and at most what the other Jobs leave free. Grants only grow while a
//! Job runs (a pod is never stopped to make room), and a Job's claim shrinks as its chunks
//! run out, so every run gets pods as older ones finish: none starves. The arithmetic is
//! pure ([`charge`], [`shares`], [`View::grant`]); [`PodBudget`] serialises the decisions
//! of one namespace so that two reconciles never hand out the same free pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;

use super::cache::Seen;
use super::job_state::{JobOutcome, job_outcome};

/// The pods a chunks Job may have running: none once it is complete; while it runs at most
/// its parallelism and at most its chunks not yet known to be done (the status lags the
/// pods, so this never undercounts); and at least the active pods its status shows (a
/// suspended or failed Job's pods are still stopping).
pub fn charge(job: &Job) -> u32 {
    let status = job.status.clone().unwrap_or_default();
    let active = u32::try_from(status.active.unwrap_or(0)).unwrap_or(0);
    let spec = job.spec.clone().unwrap_or_default();
    match job_outcome(job) {
        JobOutcome::Complete => return 0,
        JobOutcome::Failed { .. } => return active,
        JobOutcome::Running => {}
    }
    if spec.suspend.unwrap_or(false) {
        return active;
    }
    let parallelism = u32::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let completions = u32::try_from(spec.completions.unwrap_or(1)).unwrap_or(0);
    let succeeded = u32::try_from(status.succeeded.unwrap_or(0)).unwrap_or(0);
    parallelism
        .min(completions.saturating_sub(succeeded))
        .max(active)
}

/// The fair shares of `limit` pods among runs that can use `wants` pods each (oldest
/// first): one pod each in turn, skipping those that have what they can use.
pub fn shares(limit: u32, wants: &[u32]) -> Vec<u32> {
    let mut given = vec![0u32; wants.len()];
    let mut left = limit;
    while left > 0 {
        let mut dealt = false;
        for (g, want) in given.iter_mut().zip(wants) {
            if left == 0 {
                break;
            }
            if *g < *want {
                *g += 1;
                left -= 1;
                dealt = true;
            }
        }
        if !dealt {
            break;
        }
    }
    given
}

/// One run's view of its namespace's budget, as a reconcile observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The budget.
    pub limit: u32,
    /// The pods the other runs' chunks Jobs may have running.
    pub others: u32,
    /// This run's fair share.
    pub share: u32,
    /// The other exporting runs below their fair share, oldest first: woken when pods
    /// are free.
    pub starved: Vec<String>,
}

impl View {
    /// The parallelism this run may have now (0: it waits), never below what it has.
    pub fn grant(&self, current: u32) -> u32 {
        let free = self.limit.saturating_sub(self.others);
        self.share.min(free).max(current)
    }

    /// Whether pods are left over once this run has `mine`.
    pub fn free_after(&self, mine: u32) -> bool {
        self.others.saturating_add(mine) < self.limit
    }
}

/// An exporting run of the namespace, as the budget sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    /// `namespace/name`.
    pub key: String,
    /// Creation time then key: the order of the round.
    pub order: (Option<jiff::Timestamp>, String),
    /// The pods it can use: its parallelism, at most its chunks left.
    pub want: u32,
    /// The parallelism of its chunks Job (0 without one).
    pub granted: u32,
}

/// This run's [`View`] among the namespace's contenders (itself one of them) and the other
/// chunks Jobs' charges.
pub fn view(limit: u32, me: &str, contenders: &mut [Contender], others: u32) -> View {
    contenders.sort_by(|a, b| a.order.cmp(&b.order));
    let wants: Vec<u32> = contenders.iter().map(|c| c.want).collect();
    let dealt = shares(limit, &wants);
    View::dealt(limit, me, contenders, &dealt, others)
}

impl View {
    /// The view of `me` once `limit` pods were dealt as `dealt` (one share per contender, in
    /// their order): its share, and the others below theirs (woken when pods free).
    pub fn dealt(
        limit: u32,
        me: &str,
        contenders: &[Contender],
        dealt: &[u32],
        others: u32,
    ) -> View {
        let share = contenders
            .iter()
            .zip(dealt)
            .find(|(c, _)| c.key == me)
            .map_or(0, |(_, s)| *s);
        let starved = contenders
            .iter()
            .zip(dealt)
            .filter(|(c, s)| c.key != me && c.granted < **s)
            .map(|(c, _)| c.key.clone())
            .collect();
        View {
            limit,
            others,
            share,
            starved,
        }
    }
}

/// What a chunks Job as the cache shows it claims of a budget, and its parallelism (the
/// grant): a live Job its [`charge`]; one being deleted, its pods still active (and no grant).
pub fn claim(seen: &Seen) -> (u32, u32) {
    match seen {
        Seen::Live(job) => (
            charge(job),
            job.spec
                .as_ref()
                .and_then(|s| s.parallelism)
                .unwrap_or(0)
                .unsigned_abs(),
        ),
        Seen::Terminating(job) => (
            job.status
                .as_ref()
                .and_then(|s| s.active)
                .unwrap_or(0)
                .unsigned_abs(),
            0,
        ),
    }
}

/// The budget at run time: its size and one lock per namespace, held by a reconcile from
/// what it observes to what it writes.
pub struct PodBudget {
    limit: Option<u32>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PodBudget {
    /// A budget of `limit` chunk pods per namespace (`None`: unlimited).
    pub fn new(limit: Option<u32>) -> Self {
        PodBudget {
            limit,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The budget, when there is one.
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// Holds the namespace's decisions until the guard is dropped (`None` without a budget).
    pub async fn lock(&self, ns: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.limit?;
        let lock = self
            .locks
            .lock()
            .ok()?
            .entry(ns.to_string())
            .or_default()
            .clone();
        Some(lock.lock_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};

    fn job(parallelism: i32, completions: i32, succeeded: i32, active: i32) -> Job {
        Job {
            spec: Some(JobSpec {
                parallelism: Some(parallelism),
                completions: Some(completions),
                ..Default::default()
            }),
            status: Some(JobStatus {
                succeeded: Some(succeeded),
                active: Some(active),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_jobs_charge_is_what_it_may_run_and_shrinks_as_its_chunks_run_out() {
        assert_eq!(charge(&job(4, 10, 0, 0)), 4);
        assert_eq!(charge(&job(4, 10, 8, 2)), 2);
        assert_eq!(charge(&job(4, 10, 10, 0)), 0);
        // A status showing more active pods than the parallelism (lowered): they count.
        assert_eq!(charge(&job(1, 10, 0, 3)), 3);
        let mut done = job(4, 10, 10, 0);
        done.status.as_mut().unwrap().conditions = Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        assert_eq!(charge(&done), 0);
        let mut suspended = job(4, 10, 0, 1);
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(charge(&suspended), 1);
    }

    #[test]
    fn shares_go_round_robin_oldest_first_and_never_above_what_a_run_can_use() {
        assert_eq!(shares(4, &[10, 10, 10]), vec![2, 1, 1]);
        assert_eq!(shares(4, &[1, 10, 10]), vec![1, 2, 1]);
        assert_eq!(shares(2, &[10, 10, 10, 10]), vec![1, 1, 0, 0]);
        assert_eq!(shares(10, &[2, 3]), vec![2, 3]);
        assert_eq!(shares(0, &[2, 3]), vec![0, 0]);
    }

    fn contender(key: &str, at: i64, want: u32, granted: u32) -> Contender {
        Contender {
            key: key.into(),
            order: (jiff::Timestamp::from_second(at).ok(), key.into()),
            want,
            granted,
        }
    }

    #[test]
    fn a_run_gets_its_share_of_what_is_free_and_never_loses_pods_it_has() {
        let mut runs = vec![
            contender("ns/b", 2, 10, 0),
            contender("ns/a", 1, 10, 3),
            contender("ns/c", 3, 10, 0),
        ];
        // a holds 3 (more than its share of 2): b may take only the 1 pod left.
        let b = view(4, "ns/b", &mut runs, 3);
        assert_eq!(b.share, 1);
        assert_eq!(b.grant(0), 1);
        assert_eq!(b.starved, vec!["ns/c".to_string()]);
        // Nothing free: c waits.
        let c = view(4, "ns/c", &mut runs, 4);
        assert_eq!(c.grant(0), 0);
        assert!(!c.free_after(0));
        // a keeps what it has, but does not grow past its share.
        let a = view(4, "ns/a", &mut runs, 0);
        assert_eq!(a.grant(3), 3);
        // Pods free up as a's chunks run out: b grows to its share.
        let b = view(4, "ns/b", &mut runs, 1);
        assert_eq!(b.grant(1), 1);
        let b = view(6, "ns/b", &mut runs, 1);
        assert_eq!(b.share, 2);
        assert_eq!(b.grant(1), 2);
        assert!(b.free_after(2));
    }
}
