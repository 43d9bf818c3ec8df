//! The router over real configs, with the clock passed by hand.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{Secrets, load_str};

fn config(models: &str) -> Config {
    let text = format!(
        r#"
[[providers]]
name = "a"
kind = "mock"
[[providers]]
name = "b"
kind = "mock"
[[providers]]
name = "c"
kind = "mock"
{models}
"#
    );
    match load_str(&text, Path::new("/nonexistent/noviqi.toml"), Secrets::Skip) {
        Ok(config) => config,
        Err(e) => panic!("test config: {e}"),
    }
}

const THREE: &str = r#"
[[models]]
name = "m"
targets = ["a/x", "b/x", "c/x"]
cooldown_failures = 1
cooldown_secs = 10
"#;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn route(table: &RouteTable) -> &RouteState {
    match table.get(0) {
        Some(route) => route,
        None => panic!("no route"),
    }
}

/// Sends one request to `index` at `now` and reports `verdict`.
fn call(route: &RouteState, index: usize, now: Duration, verdict: Verdict) {
    let Some(mut attempt) = route.start(index, now, false) else {
        panic!("target {index} refused at {now:?}");
    };
    attempt.report(verdict, now, None);
}

#[test]
fn a_cooling_target_is_skipped_until_its_cooldown_ends() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    let r = route(&table);
    call(r, 0, secs(0), Verdict::Unreachable);
    assert!(!r.is_open(0, secs(9)));
    assert!(r.start(0, secs(9), false).is_none());
    assert_eq!(
        r.first(secs(9)),
        First {
            index: 1,
            force: false
        }
    );
    assert!(r.is_open(0, secs(10)));
    assert_eq!(
        r.first(secs(10)),
        First {
            index: 0,
            force: false
        }
    );
}

#[test]
fn with_every_target_cooling_the_one_ending_first_is_forced() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    let r = route(&table);
    call(r, 0, secs(3), Verdict::ServerError);
    call(r, 1, secs(1), Verdict::Timeout);
    call(r, 2, secs(2), Verdict::RateLimited);
    let first = r.first(secs(4));
    assert_eq!(
        first,
        First {
            index: 1,
            force: true
        }
    );
    // Forced, it is admitted even though it is still cooling, as the trial.
    let Some(mut attempt) = r.start(first.index, secs(4), first.force) else {
        panic!("a forced start is admitted");
    };
    attempt.report(Verdict::Ok, secs(4), None);
    drop(attempt);
    assert!(r.is_open(1, secs(4)), "its success ended the cooldown");
}

#[test]
fn a_trial_is_one_request_and_its_drop_without_a_verdict_frees_it() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    let r = route(&table);
    call(r, 0, secs(0), Verdict::Unreachable);
    let trial = r.start(0, secs(10), false);
    assert!(trial.is_some());
    assert!(r.start(0, secs(10), false).is_none(), "one trial at a time");
    drop(trial);
    assert!(r.start(0, secs(11), false).is_some());
}

#[test]
fn in_flight_counts_until_the_attempt_drops() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    let r = route(&table);
    let a = r.start(2, secs(0), false);
    let b = r.start(2, secs(0), false);
    assert_eq!(targets.views(secs(0))[2].inflight, 2);
    drop(a);
    drop(b);
    assert_eq!(targets.views(secs(0))[2].inflight, 0);
}

#[test]
fn state_survives_a_reload_for_targets_that_remain_and_only_those() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    call(route(&table), 0, secs(0), Verdict::Unreachable);
    call(route(&table), 2, secs(0), Verdict::Unreachable);
    let reloaded = targets.bind(&config(
        r#"
[[models]]
name = "m"
targets = ["c/x", "a/x"]
[[models]]
name = "n"
targets = ["a/x"]
"#,
    ));
    let names: Vec<String> = targets
        .views(secs(1))
        .iter()
        .map(|v| v.name.to_string())
        .collect();
    assert_eq!(names, ["a/x", "c/x"], "b/x is gone");
    let r = route(&reloaded);
    assert!(!r.is_open(0, secs(1)), "c/x is still cooling");
    assert!(!r.is_open(1, secs(1)), "a/x is still cooling");
    let Some(n) = reloaded.get(1) else {
        panic!("model n")
    };
    assert!(
        !n.is_open(0, secs(1)),
        "one state per target, shared by routes"
    );
}

#[test]
fn attempts_are_counted_by_outcome() {
    let targets = Targets::default();
    let table = targets.bind(&config(THREE));
    let r = route(&table);
    call(r, 1, secs(0), Verdict::Ok);
    call(r, 1, secs(0), Verdict::ClientError);
    let view = &targets.views(secs(0))[1];
    assert_eq!(view.attempts[Verdict::Ok as usize], 1);
    assert_eq!(view.attempts[Verdict::ClientError as usize], 1);
    assert_eq!(
        view.state,
        State::Healthy,
        "a 4xx is not the target's failure"
    );
}

#[test]
fn round_robin_and_weighted_routes_pick_by_strategy() {
    let targets = Targets::default();
    let table = targets.bind(&config(
        r#"
[[models]]
name = "rr"
targets = ["a/x", "b/x"]
strategy = "round_robin"
[[models]]
name = "w"
targets = ["a/y", "b/y"]
strategy = "weighted"
weights = [3, 1]
"#,
    ));
    let (Some(rr), Some(w)) = (table.get(0), table.get(1)) else {
        panic!("two routes")
    };
    let picks: Vec<usize> = (0..4).map(|_| rr.first(secs(0)).index).collect();
    assert_eq!(picks, [0, 1, 0, 1]);
    let picks: Vec<usize> = (0..4).map(|_| w.first(secs(0)).index).collect();
    assert_eq!(picks, [0, 0, 1, 0]);
}

#[test]
fn retry_after_in_seconds_or_as_a_date_capped_at_an_hour() {
    assert_eq!(retry_after("5"), Some(Duration::from_secs(5)));
    assert_eq!(retry_after(" 12 "), Some(Duration::from_secs(12)));
    assert_eq!(retry_after("0"), Some(Duration::ZERO));
    assert_eq!(retry_after("99999999"), Some(MAX_RETRY_AFTER));
    assert_eq!(retry_after("soon"), None);
    assert_eq!(retry_after("-5"), None);
    let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(61);
    let wait = retry_after(&httpdate::fmt_http_date(in_a_minute));
    assert!(wait.is_some_and(|w| w > Duration::from_secs(55) && w <= Duration::from_secs(61)));
    let past = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1));
    assert_eq!(retry_after(&past), Some(Duration::ZERO));
}
