//! The strategies that pick a request's first target among those open now.
//!
//! - `fallback`: the first open target in config order.
//! - `round_robin`: a counter per route; the next open target from `counter mod n`, so with
//!   every target open they take turns exactly.
//! - `weighted`: smooth weighted round-robin (nginx's): each pick adds every open target's
//!   weight to its running score, takes the highest score and subtracts the open weights' sum
//!   from it. Over any `sum(weights)` consecutive picks each target gets exactly its weight,
//!   spread out rather than in runs (3:1 gives a a b a, a a b a, …).
//! - `least_busy`: the open target with the fewest requests in flight; ties go to the next in
//!   round-robin order, so an idle route still spreads its load.
//!
//! State owned here: per route, the round-robin counter and the weighted scores.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// A `[[models]]` entry's `strategy`, with `weights` for `weighted`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Fallback,
    RoundRobin,
    /// One positive weight per target, in target order.
    Weighted(Vec<u32>),
    LeastBusy,
}

impl Strategy {
    pub const NAMES: &'static str = "fallback, round_robin, weighted or least_busy";

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted(_) => "weighted",
            Strategy::LeastBusy => "least_busy",
        }
    }
}

/// A route's picking state.
#[derive(Debug)]
pub(super) enum Picker {
    Fallback,
    RoundRobin(AtomicUsize),
    Weighted {
        weights: Vec<i64>,
        scores: Mutex<Vec<i64>>,
    },
    LeastBusy(AtomicUsize),
}

impl Picker {
    pub(super) fn new(strategy: &Strategy) -> Picker {
        match strategy {
            Strategy::Fallback => Picker::Fallback,
            Strategy::RoundRobin => Picker::RoundRobin(AtomicUsize::new(0)),
            Strategy::Weighted(weights) => Picker::Weighted {
                weights: weights.iter().map(|&w| i64::from(w)).collect(),
                scores: Mutex::new(vec![0; weights.len()]),
            },
            Strategy::LeastBusy => Picker::LeastBusy(AtomicUsize::new(0)),
        }
    }

    /// The first target among those with `open[i]`; `None` when none is open. `inflight(i)`
    /// is target i's requests in flight.
    pub(super) fn pick(&self, open: &[bool], inflight: impl Fn(usize) -> usize) -> Option<usize> {
        let n = open.len();
        if n == 0 {
            return None;
        }
        match self {
            Picker::Fallback => open.iter().position(|&o| o),
            Picker::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed) % n;
                (0..n).map(|k| (start + k) % n).find(|&i| open[i])
            }
            Picker::LeastBusy(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed) % n;
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| open[i])
                    .min_by_key(|&i| inflight(i))
            }
            Picker::Weighted { weights, scores } => {
                let mut scores = scores.lock();
                let mut total = 0;
                let mut best: Option<(usize, i64)> = None;
                for (i, (score, &weight)) in scores.iter_mut().zip(weights).enumerate() {
                    if !open.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    *score += weight;
                    total += weight;
                    if best.is_none_or(|(_, top)| *score > top) {
                        best = Some((i, *score));
                    }
                }
                let (i, _) = best?;
                if let Some(score) = scores.get_mut(i) {
                    *score -= total;
                }
                Some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(picker: &Picker, open: &[bool], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| picker.pick(open, |_| 0).unwrap_or(99))
            .collect()
    }

    #[test]
    fn fallback_takes_the_first_open_target() {
        let p = Picker::new(&Strategy::Fallback);
        assert_eq!(picks(&p, &[true, true], 3), [0, 0, 0]);
        assert_eq!(picks(&p, &[false, true], 2), [1, 1]);
        assert_eq!(p.pick(&[false, false], |_| 0), None);
    }

    #[test]
    fn round_robin_takes_turns_and_skips_closed_targets() {
        let p = Picker::new(&Strategy::RoundRobin);
        assert_eq!(picks(&p, &[true, true, true], 6), [0, 1, 2, 0, 1, 2]);
        let p = Picker::new(&Strategy::RoundRobin);
        assert_eq!(picks(&p, &[true, false, true], 4), [0, 2, 2, 0]);
    }

    #[test]
    fn weighted_gives_each_its_weight_spread_out() {
        let p = Picker::new(&Strategy::Weighted(vec![3, 1]));
        assert_eq!(picks(&p, &[true, true], 8), [0, 0, 1, 0, 0, 0, 1, 0]);
        let p = Picker::new(&Strategy::Weighted(vec![5, 2, 1]));
        let got = picks(&p, &[true, true, true], 800);
        for (i, want) in [(0, 500), (1, 200), (2, 100)] {
            assert_eq!(got.iter().filter(|&&g| g == i).count(), want);
        }
    }

    #[test]
    fn weighted_shares_among_the_open_targets_only() {
        let p = Picker::new(&Strategy::Weighted(vec![3, 1, 1]));
        let got = picks(&p, &[false, true, true], 10);
        assert_eq!(got.iter().filter(|&&g| g == 1).count(), 5);
        assert_eq!(got.iter().filter(|&&g| g == 2).count(), 5);
    }

    #[test]
    fn least_busy_takes_the_idlest_and_spreads_ties() {
        let p = Picker::new(&Strategy::LeastBusy);
        let busy = [4, 0, 2];
        assert_eq!(p.pick(&[true, true, true], |i| busy[i]), Some(1));
        assert_eq!(p.pick(&[true, false, true], |i| busy[i]), Some(2));
        let p = Picker::new(&Strategy::LeastBusy);
        assert_eq!(picks(&p, &[true, true], 4), [0, 1, 0, 1]);
    }
}
