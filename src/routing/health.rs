//! One target's health: the circuit breaker that keeps a failing upstream out of rotation.
//!
//! ```text
//!            failure (streak < threshold)
//!              ┌──────┐
//!              ▼      │     streak reaches threshold
//!          Healthy ───┴──────────────────────────────▶ Cooling { until }
//!             ▲                                          │      ▲
//!             │ success                  now ≥ until:    │      │ failure
//!             │                          one request     ▼      │
//!             └─────────────────────────────────────── Trial ───┘
//! ```
//! A failure is a connect error, a timeout before the answer's head, a 429 or a 5xx; anything
//! else (a 4xx is the client's fault) is a success. `until` is `now + cooldown`, or
//! `now + Retry-After` when the failure that tripped it was a 429 asking for longer. While a
//! trial request is out, the target stays closed to other requests; a trial that ends without a
//! verdict (its request was dropped) leaves the target ready for the next trial.
//!
//! Owns no clock: every transition takes `now`, a [`Duration`] on the caller's monotonic
//! clock, so the tests drive time by hand.

use std::time::Duration;

/// The rule a `[[models]]` entry sets for its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that start a cooldown; 0 = never cool down.
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failures: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Skipped until `until`; then one trial request.
    Cooling {
        until: Duration,
    },
    /// The trial request is out; closed to others until it reports.
    Trial,
}

/// What the router may do with a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Open,
    /// Cooling down (or its trial is out) until `until`; `until` may be past for a trial.
    Closed {
        until: Duration,
    },
}

/// What a report changed, for the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Entered (or, after a failed trial, went back to) a cooldown this long.
    Cooling(Duration),
    /// A success ended a cooldown.
    Recovered,
}

/// A target's failure streak and state.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    streak: u32,
    state: State,
    /// When the current cooldown ends (kept while its trial is out).
    until: Duration,
    /// The cooldown was copied from the cluster (another instance started it), so it ends
    /// when the cluster's does.
    shared: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            streak: 0,
            state: State::Healthy,
            until: Duration::ZERO,
            shared: false,
        }
    }
}

impl Health {
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a request may go to this target at `now`, without taking anything.
    pub fn availability(&self, now: Duration) -> Availability {
        match self.state {
            State::Healthy => Availability::Open,
            State::Cooling { until } if now >= until => Availability::Open,
            State::Cooling { until } => Availability::Closed { until },
            State::Trial => Availability::Closed { until: self.until },
        }
    }

    /// Takes the target for one request at `now`. `force` sends it even while it is closed
    /// (every target of the route is cooling and this one ends first). Returns whether the
    /// request was admitted; an admitted request past a cooldown is the trial.
    pub fn admit(&mut self, now: Duration, force: bool) -> bool {
        match self.state {
            State::Healthy => true,
            State::Cooling { until } if now >= until || force => {
                self.state = State::Trial;
                true
            }
            State::Cooling { .. } => false,
            State::Trial => force,
        }
    }

    /// The request answered well: the streak ends, and so does any cooldown.
    pub fn success(&mut self) -> Change {
        self.streak = 0;
        self.shared = false;
        match std::mem::replace(&mut self.state, State::Healthy) {
            State::Healthy => Change::None,
            State::Cooling { .. } | State::Trial => Change::Recovered,
        }
    }

    /// The request failed at `now`; `retry_after` is a 429's own wait, if it gave one.
    pub fn failure(
        &mut self,
        now: Duration,
        policy: Policy,
        retry_after: Option<Duration>,
    ) -> Change {
        self.streak = self.streak.saturating_add(1);
        let trips = match self.state {
            State::Healthy => policy.failures > 0 && self.streak >= policy.failures,
            // A failed trial (or a forced request while cooling) starts the wait again.
            State::Cooling { .. } | State::Trial => true,
        };
        if !trips {
            return Change::None;
        }
        let wait = retry_after.map_or(policy.cooldown, |r| r.max(policy.cooldown));
        self.shared = false;
        self.until = now + wait;
        self.state = State::Cooling { until: self.until };
        Change::Cooling(wait)
    }

    /// Another instance has the target cooling down until `until`: skip it here too (a longer
    /// cooldown of our own stays; a trial already out is left to report).
    pub fn cool_until(&mut self, until: Duration) {
        match self.state {
            State::Healthy => {
                self.state = State::Cooling { until };
                self.until = until;
                self.shared = true;
            }
            State::Cooling { until: mine } if mine < until => {
                self.state = State::Cooling { until };
                self.until = until;
                self.shared = true;
            }
            State::Cooling { .. } | State::Trial => {}
        }
    }

    /// The cluster no longer has the target cooling down: a cooldown copied from it ends.
    pub fn end_shared(&mut self) {
        if self.shared && matches!(self.state, State::Cooling { .. }) {
            self.state = State::Healthy;
            self.streak = 0;
        }
        self.shared = false;
    }

    /// A trial request ended with no verdict (dropped before its answer's head): the next
    /// request may try again.
    pub fn abandon(&mut self) {
        if self.state == State::Trial {
            self.state = State::Cooling { until: self.until };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 3,
        cooldown: Duration::from_secs(30),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn tripped(at: Duration) -> Health {
        let mut h = Health::default();
        for _ in 0..POLICY.failures {
            h.admit(at, false);
            h.failure(at, POLICY, None);
        }
        h
    }

    #[test]
    fn the_threshold_failure_starts_a_cooldown_and_not_before() {
        let mut h = Health::default();
        assert_eq!(h.failure(secs(1), POLICY, None), Change::None);
        assert_eq!(h.failure(secs(2), POLICY, None), Change::None);
        assert_eq!(h.availability(secs(2)), Availability::Open);
        assert_eq!(h.failure(secs(3), POLICY, None), Change::Cooling(secs(30)));
        assert_eq!(
            h.availability(secs(3)),
            Availability::Closed { until: secs(33) }
        );
        assert!(!h.admit(secs(32), false));
    }

    #[test]
    fn a_success_in_between_resets_the_streak() {
        let mut h = Health::default();
        h.failure(secs(1), POLICY, None);
        h.failure(secs(2), POLICY, None);
        assert_eq!(h.success(), Change::None);
        assert_eq!(h.failure(secs(3), POLICY, None), Change::None);
        assert_eq!(h.state(), State::Healthy);
    }

    #[test]
    fn expiry_admits_exactly_one_trial() {
        let mut h = tripped(secs(0));
        assert_eq!(h.availability(secs(30)), Availability::Open);
        assert!(h.admit(secs(30), false), "the trial");
        assert_eq!(h.state(), State::Trial);
        assert!(
            !h.admit(secs(30), false),
            "no second request while the trial is out"
        );
        assert!(!h.admit(secs(1000), false));
    }

    #[test]
    fn a_failed_trial_cools_down_again_at_once() {
        let mut h = tripped(secs(0));
        assert!(h.admit(secs(31), false));
        assert_eq!(h.failure(secs(31), POLICY, None), Change::Cooling(secs(30)));
        assert_eq!(
            h.availability(secs(60)),
            Availability::Closed { until: secs(61) }
        );
        assert!(h.admit(secs(61), false));
    }

    #[test]
    fn a_passing_trial_makes_it_healthy() {
        let mut h = tripped(secs(0));
        assert!(h.admit(secs(30), false));
        assert_eq!(h.success(), Change::Recovered);
        assert_eq!(h.state(), State::Healthy);
        // A fresh streak is needed to trip it again.
        assert_eq!(h.failure(secs(31), POLICY, None), Change::None);
    }

    #[test]
    fn a_longer_retry_after_wins_and_a_shorter_one_does_not() {
        let mut h = Health::default();
        let policy = Policy {
            failures: 1,
            cooldown: secs(30),
        };
        assert_eq!(
            h.failure(secs(0), policy, Some(secs(120))),
            Change::Cooling(secs(120))
        );
        assert_eq!(
            h.availability(secs(119)),
            Availability::Closed { until: secs(120) }
        );
        assert!(h.admit(secs(120), false));
        assert_eq!(
            h.failure(secs(120), policy, Some(secs(5))),
            Change::Cooling(secs(30))
        );
        assert_eq!(
            h.availability(secs(149)),
            Availability::Closed { until: secs(150) }
        );
    }

    #[test]
    fn a_forced_request_while_cooling_is_a_trial() {
        let mut h = tripped(secs(0));
        assert!(h.admit(secs(5), true));
        assert_eq!(h.success(), Change::Recovered);
        let mut h = tripped(secs(0));
        assert!(h.admit(secs(5), true));
        assert_eq!(h.failure(secs(5), POLICY, None), Change::Cooling(secs(30)));
        assert_eq!(
            h.availability(secs(6)),
            Availability::Closed { until: secs(35) }
        );
    }

    #[test]
    fn an_abandoned_trial_leaves_room_for_the_next() {
        let mut h = tripped(secs(0));
        assert!(h.admit(secs(30), false));
        h.abandon();
        assert!(h.admit(secs(40), false));
        // abandon outside a trial changes nothing
        let mut healthy = Health::default();
        healthy.abandon();
        assert_eq!(healthy.state(), State::Healthy);
    }

    #[test]
    fn a_shared_cooldown_is_honoured_and_ends_with_the_clusters() {
        let mut h = Health::default();
        h.cool_until(secs(40));
        assert_eq!(
            h.availability(secs(10)),
            Availability::Closed { until: secs(40) }
        );
        h.end_shared();
        assert_eq!(h.state(), State::Healthy);
        // Our own cooldown is not ended by the cluster's view.
        let mut own = tripped(secs(0));
        own.end_shared();
        assert_eq!(
            own.availability(secs(1)),
            Availability::Closed { until: secs(30) }
        );
        // A longer shared one extends ours; a shorter one does not shorten it.
        own.cool_until(secs(20));
        assert_eq!(
            own.availability(secs(1)),
            Availability::Closed { until: secs(30) }
        );
        own.cool_until(secs(50));
        assert_eq!(
            own.availability(secs(31)),
            Availability::Closed { until: secs(50) }
        );
    }

    #[test]
    fn zero_failures_never_cools_down() {
        let mut h = Health::default();
        let off = Policy {
            failures: 0,
            cooldown: secs(30),
        };
        for t in 0..100 {
            assert_eq!(h.failure(secs(t), off, Some(secs(60))), Change::None);
        }
        assert_eq!(h.state(), State::Healthy);
    }
}
