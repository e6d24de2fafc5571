//! The chunk budget of a ReportDatabase, dealt between namespaces: one pod at a time to
//! the namespace furthest below its weighted share (then to its oldest run that can use
//! more), so that while several namespaces wait each gets its part and none waits for
//! another to finish. Pure; [`view`] gives one run its [`View`](super::super::budget::View)
//! as the namespace budget does, so the two compose.

use std::collections::BTreeMap;

use super::super::budget::{Contender, View};

/// The namespace of a contender (`namespace/name`).
fn namespace(c: &Contender) -> &str {
    c.key.split_once('/').map_or("", |(ns, _)| ns)
}

/// Most pods dealt one by one: a budget beyond what every claimant can use is never dealt.
const MAX_DEALT: u32 = 100_000;

/// Deals `limit` pods among `claimants` (sorted by their order): each pod to the namespace
/// with the fewest pods per unit of weight among those with a run that can use one (ties:
/// the namespace whose oldest such run is older), within it to its oldest run below what
/// it can use. Returns each claimant's share and the order in which claimants got their
/// first pod.
pub fn deal(
    limit: u32,
    claimants: &[Contender],
    weight: impl Fn(&str) -> u32,
) -> (Vec<u32>, Vec<usize>) {
    let mut given = vec![0u32; claimants.len()];
    let mut first = Vec::new();
    let mut per_ns: BTreeMap<&str, u32> = BTreeMap::new();
    let wanted: u64 = claimants.iter().map(|c| u64::from(c.want)).sum();
    let limit = u64::from(limit).min(wanted).min(u64::from(MAX_DEALT));
    for _ in 0..limit {
        // For each namespace, its oldest run that can use another pod.
        let mut candidates: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in claimants.iter().enumerate() {
            if given[i] < c.want {
                candidates.entry(namespace(c)).or_insert(i);
            }
        }
        let pick = candidates.into_iter().min_by(|(ns_a, a), (ns_b, b)| {
            let (ga, gb) = (
                u64::from(per_ns.get(ns_a).copied().unwrap_or(0)),
                u64::from(per_ns.get(ns_b).copied().unwrap_or(0)),
            );
            let (wa, wb) = (
                u64::from(weight(ns_a).max(1)),
                u64::from(weight(ns_b).max(1)),
            );
            (ga * wb).cmp(&(gb * wa)).then(a.cmp(b))
        });
        let Some((ns, i)) = pick else {
            break;
        };
        if given[i] == 0 {
            first.push(i);
        }
        given[i] += 1;
        *per_ns.entry(ns).or_insert(0) += 1;
    }
    (given, first)
}

/// This run's view of the database's chunk budget: its fair share, what the other runs'
/// chunks Jobs may run (`others`), the runs below their share to wake when pods free, and
/// how many waiting runs (no pods yet) come before it.
pub fn view(
    limit: u32,
    me: &str,
    claimants: &mut [Contender],
    others: u32,
    weight: impl Fn(&str) -> u32,
) -> (View, usize) {
    claimants.sort_by(|a, b| a.order.cmp(&b.order));
    let (shares, _) = deal(limit, claimants, &weight);
    // The queue of runs waiting for their first pod: the order an unbounded deal serves them.
    let (_, first) = deal(MAX_DEALT, claimants, &weight);
    let position = |key: &str| {
        first
            .iter()
            .position(|i| claimants[*i].key == key)
            .unwrap_or(usize::MAX)
    };
    let mine = position(me);
    let ahead = claimants
        .iter()
        .filter(|c| c.key != me && c.granted == 0 && c.want > 0 && position(&c.key) < mine)
        .count();
    (View::dealt(limit, me, claimants, &shares, others), ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimant(key: &str, at: i64, want: u32, granted: u32) -> Contender {
        Contender {
            key: key.into(),
            order: (jiff::Timestamp::from_second(at).ok(), key.into()),
            want,
            granted,
        }
    }

    fn one(_: &str) -> u32 {
        1
    }

    #[test]
    fn namespaces_share_the_budget_equally_whatever_their_number_of_runs() {
        // Namespace a has five runs (created first), b and c one each.
        let mut runs: Vec<Contender> = (0..5)
            .map(|i| claimant(&format!("a/r{i}"), i, 2, 0))
            .collect();
        runs.push(claimant("b/r0", 10, 2, 0));
        runs.push(claimant("c/r0", 11, 2, 0));
        let (shares, first) = deal(4, &runs, one);
        // a gets two (its oldest run), b and c one each.
        assert_eq!(shares, vec![2, 0, 0, 0, 0, 1, 1]);
        assert_eq!(first, vec![0, 5, 6]);
    }

    #[test]
    fn weights_give_a_namespace_more_pods_while_both_wait() {
        let runs = vec![
            claimant("heavy/r0", 1, 10, 0),
            claimant("light/r0", 2, 10, 0),
        ];
        let weight = |ns: &str| if ns == "heavy" { 3 } else { 1 };
        let (shares, _) = deal(8, &runs, weight);
        assert_eq!(shares, vec![6, 2]);
        // No run gets more than it can use; what it cannot use goes to the others.
        let runs = vec![
            claimant("heavy/r0", 1, 1, 0),
            claimant("light/r0", 2, 10, 0),
        ];
        assert_eq!(deal(8, &runs, weight).0, vec![1, 7]);
    }

    #[test]
    fn a_waiting_run_sees_its_place_and_gets_pods_as_others_free_them() {
        let mut runs = vec![
            claimant("a/r0", 1, 2, 2),
            claimant("a/r1", 2, 2, 2),
            claimant("a/r2", 3, 2, 0),
            claimant("b/r0", 4, 2, 0),
            claimant("c/r0", 5, 2, 0),
        ];
        // Budget full (a's two runs hold 4): c waits behind b (a/r2 comes after both:
        // its namespace already has pods).
        let (c, ahead) = view(4, "c/r0", &mut runs, 4, one);
        assert_eq!(c.grant(0), 0);
        assert_eq!(ahead, 1);
        let (a2, ahead) = view(4, "a/r2", &mut runs, 4, one);
        assert_eq!((a2.grant(0), ahead), (0, 2));
        // a/r0's chunks run out (it may run 1 now): one pod is free and b's run takes it.
        let (b, ahead) = view(4, "b/r0", &mut runs, 3, one);
        assert_eq!((b.share, b.grant(0), ahead), (1, 1, 0));
        assert!(b.starved.contains(&"c/r0".to_string()));
    }
}
