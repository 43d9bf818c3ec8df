//! Usage analytics for the dashboard: the usage log folded into time buckets, kept current as
//! requests finish, and read back from the log (rotated files included) on start.
//!
//! State owned here, behind one mutex: two tiers of buckets — one per minute for the last two
//! hours (the `hour` range) and one per hour for the last 32 days (`day`, `week`, `month`).
//! A bucket holds what the dashboard shows and no more: one [`Cell`] per key, one per model and
//! one per status class (the totals are the status cells' sum), each with counts, token sums
//! and a small fixed-bucket latency histogram (percentiles come from it). Storing these
//! marginals rather than every (key, model, status) combination keeps a bucket to a few cells
//! (a sorted vector, trimmed when its minute or hour is over), so the minute tier's two hours
//! cost kilobytes, not megabytes. Memory is bounded: at most [`MAX_NAMES`] distinct key names
//! and model names are tracked (later ones count as `(other)`), so a bucket has at most
//! 2 × ([`MAX_NAMES`] + 2) + 6 cells, and buckets past their tier's window are dropped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::model::{MAX_MODEL_NAME_BYTES, UsageSettings};
use crate::cost::Usd;
use crate::outcome::Outcome;
use crate::usage::rotated;

/// Upper bounds (ms) of the latency histogram; one more slot counts everything above.
pub const LATENCY_BOUNDS_MS: [u64; 15] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
];
const SLOTS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// Distinct key names (and, separately, model names) tracked by name.
pub const MAX_NAMES: usize = 100;
/// Longest usage-log line read back; longer ones are skipped.
const MAX_LINE: usize = 64 * 1024;
/// The name counted for keys/models past [`MAX_NAMES`] or not worth a name.
pub const OTHER: &str = "(other)";
/// The name counted for requests without a key (never authenticated) or model.
pub const NONE: &str = "(none)";
/// Hourly buckets kept (32 days).
const HOURS_KEPT: i64 = 24 * 32;
const STATUS_CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// One finished request as the aggregator sees it: from a live [`Outcome`] ([`Sample::of`]) or
/// from a usage line read back at start.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Unix seconds when the request finished.
    pub ts: i64,
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    pub status: u16,
    /// The usage line's error code; `None` on success.
    pub error: Option<&'a str>,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<Usd>,
}

impl<'a> Sample<'a> {
    /// A live request's sample: the model is named only when [`Outcome::model_is_nameable`].
    pub fn of(outcome: &'a Outcome) -> Sample<'a> {
        let (prompt_tokens, completion_tokens) = outcome.tokens();
        let model = match outcome.model.as_deref() {
            Some(_) if !outcome.model_is_nameable() => Some(OTHER),
            model => model,
        };
        Sample {
            ts: outcome.ended_unix_secs(),
            key: outcome.key_name(),
            model,
            status: outcome.status,
            error: outcome.error,
            latency_ms: outcome.latency().as_millis() as u64,
            prompt_tokens,
            completion_tokens,
            cost: outcome.cost,
        }
    }
}

/// A dashboard range: how far back and in which bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
    Week,
    Month,
}

impl Range {
    pub fn parse(s: &str) -> Option<Range> {
        Some(match s {
            "hour" => Range::Hour,
            "day" => Range::Day,
            "week" => Range::Week,
            "month" => Range::Month,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::Hour => "hour",
            Range::Day => "day",
            Range::Week => "week",
            Range::Month => "month",
        }
    }

    /// (bucket width in seconds, number of buckets).
    pub fn shape(self) -> (i64, usize) {
        match self {
            Range::Hour => (60, 60),
            Range::Day => (3600, 24),
            Range::Week => (3600, 24 * 7),
            Range::Month => (3600, 24 * 30),
        }
    }
}

/// The latency histogram's slot for `ms`.
fn latency_slot(ms: u64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&b| ms <= b)
        .unwrap_or(SLOTS - 1)
}

/// Counts for one key, model or status class in one bucket, or any sum of those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the requests cost (those of unknown price add nothing).
    pub cost: Usd,
    pub latency: [u32; SLOTS],
    /// The fastest and slowest request (ms): percentiles never leave this range, so a
    /// histogram slot's width never invents latency (all lines at 0 ms → p50 0 ms).
    pub min_ms: u64,
    pub max_ms: u64,
}

impl Cell {
    /// Counts `s`, whose latency falls in histogram slot `slot` ([`latency_slot`]).
    fn add_sample(&mut self, s: &Sample<'_>, slot: usize) {
        self.min_ms = if self.requests == 0 {
            s.latency_ms
        } else {
            self.min_ms.min(s.latency_ms)
        };
        self.max_ms = self.max_ms.max(s.latency_ms);
        self.cost += s.cost.unwrap_or_default();
        self.requests += 1;
        self.errors += u64::from(s.error.is_some());
        self.prompt_tokens += s.prompt_tokens;
        self.completion_tokens += s.completion_tokens;
        if let Some(count) = self.latency.get_mut(slot) {
            *count = count.saturating_add(1);
        }
    }

    fn add(&mut self, other: &Cell) {
        if other.requests > 0 {
            self.min_ms = if self.requests == 0 {
                other.min_ms
            } else {
                self.min_ms.min(other.min_ms)
            };
            self.max_ms = self.max_ms.max(other.max_ms);
        }
        self.cost += other.cost;
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a = a.saturating_add(b);
        }
    }

    /// The `q` quantile (0..=1) of latency in ms, interpolated inside its histogram slot;
    /// `None` with no requests.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let n: u64 = self.latency.iter().map(|&c| u64::from(c)).sum();
        if n == 0 {
            return None;
        }
        let target = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut before = 0u64;
        for (i, &count) in self.latency.iter().enumerate() {
            let count = u64::from(count);
            if count > 0 && before + count >= target {
                let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] };
                let upper = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(lower);
                let fraction = (target - before) as f64 / count as f64;
                let estimate = lower + ((upper - lower) as f64 * fraction).round() as u64;
                return Some(estimate.clamp(self.min_ms, self.max_ms));
            }
            before += count;
        }
        None
    }

    fn totals_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": if self.requests == 0 { 0.0 } else {
                self.errors as f64 / self.requests as f64
            },
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost.as_f64(),
            "p50_ms": self.percentile(0.5),
            "p95_ms": self.percentile(0.95),
        })
    }
}

/// Names to small indices, at most [`MAX_NAMES`] plus the two fixed ones.
struct Names {
    index: HashMap<String, u16>,
    names: Vec<String>,
}

impl Names {
    fn new() -> Names {
        let mut names = Names {
            index: HashMap::new(),
            names: Vec::new(),
        };
        names.intern(OTHER);
        names.intern(NONE);
        names
    }

    fn intern(&mut self, name: &str) -> u16 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        if self.names.len() >= MAX_NAMES + 2 {
            return 0;
        }
        let i = self.names.len() as u16;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }

    fn name(&self, i: u16) -> &str {
        self.names.get(usize::from(i)).map_or(OTHER, String::as_str)
    }
}

/// Which marginal a cell counts: a key's, a model's, a status class's or a target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dim {
    Key,
    Model,
    Status,
    Target,
}

/// A cell's place in its bucket: the dimension and the name's index (the class for
/// [`Dim::Status`]).
type CellKey = (Dim, u16);

/// One bucket's cells, sorted by key.
type Cells = Vec<(CellKey, Cell)>;

/// Buckets of one width, kept for `keep` buckets back from now.
struct Tier {
    width: i64,
    keep: i64,
    buckets: BTreeMap<i64, Cells>,
}

impl Tier {
    fn new(width: i64, keep: i64) -> Tier {
        Tier {
            width,
            keep,
            buckets: BTreeMap::new(),
        }
    }

    /// The bucket holding `ts`; `None` when that bucket is past keeping. Starting a bucket
    /// drops the ones past keeping and trims the others' spare capacity.
    fn bucket(&mut self, now: i64, ts: i64) -> Option<&mut Cells> {
        let oldest = (now.div_euclid(self.width) - self.keep + 1) * self.width;
        let start = ts.div_euclid(self.width) * self.width;
        if start < oldest {
            return None;
        }
        if !self.buckets.contains_key(&start) {
            self.buckets = self.buckets.split_off(&oldest);
            for cells in self.buckets.values_mut() {
                cells.shrink_to_fit();
            }
        }
        Some(self.buckets.entry(start).or_default())
    }

    /// The cell for `key` in the bucket holding `ts`, as [`Tier::bucket`].
    fn cell(&mut self, now: i64, key: CellKey, ts: i64) -> Option<&mut Cell> {
        self.bucket(now, ts).map(|cells| cell_in(cells, key))
    }

    /// The cells of the buckets from `first` to `last` (starts), with their starts.
    fn cells(&self, first: i64, last: i64) -> impl Iterator<Item = (i64, CellKey, &Cell)> {
        self.buckets
            .range(first..=last)
            .flat_map(|(&start, cells)| cells.iter().map(move |(key, cell)| (start, *key, cell)))
    }
}

/// The cell for `key` in `cells`, added in order when missing.
fn cell_in(cells: &mut Cells, key: CellKey) -> &mut Cell {
    let i = match cells.binary_search_by_key(&key, |(k, _)| *k) {
        Ok(i) => i,
        Err(i) => {
            cells.insert(i, (key, Cell::default()));
            i
        }
    };
    // `i` is where the key was found or has just been inserted.
    &mut cells[i].1
}

/// One target's attempts in the current minute, folded into the target tiers when the minute
/// ends or a report is made: an attempt costs one add to this cell rather than two bucket
/// lookups (the tiers' cost, paid once a minute per target).
struct Pending {
    target: Arc<str>,
    /// Unix seconds of the minute's start.
    minute: i64,
    cell: Cell,
}

impl Inner {
    /// Moves `pending[i]`'s cell into the target tiers.
    fn flush(&mut self, i: usize, now: i64) {
        let Some(p) = self.pending.get_mut(i) else {
            return;
        };
        if p.cell.requests == 0 {
            return;
        }
        let cell = std::mem::take(&mut p.cell);
        let key = (Dim::Target, self.targets.intern(&p.target));
        for tier in [&mut self.target_minutes, &mut self.target_hours] {
            if let Some(total) = tier.cell(now, key, p.minute) {
                total.add(&cell);
            }
        }
    }
}

struct Inner {
    keys: Names,
    models: Names,
    minutes: Tier,
    hours: Tier,
    /// Attempts at targets (fallback attempts included), by target name; live only, not read
    /// back (the usage log records the answering target alone).
    targets: Names,
    target_minutes: Tier,
    target_hours: Tier,
    /// At most [`MAX_NAMES`] targets' current minutes.
    pending: Vec<Pending>,
    /// When each key name last finished a request (unix seconds), for the Keys page; at most
    /// [`MAX_LAST_USED`] names.
    last_used: HashMap<String, i64>,
}

/// Key names whose last use is remembered (the config's keys, plus old names read back).
pub const MAX_LAST_USED: usize = 10_000;

/// The aggregator; shared by every connection thread.
pub struct Analytics {
    inner: Mutex<Inner>,
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics {
            inner: Mutex::new(Inner {
                keys: Names::new(),
                models: Names::new(),
                minutes: Tier::new(60, 120),
                hours: Tier::new(3600, HOURS_KEPT),
                targets: Names::new(),
                target_minutes: Tier::new(60, 120),
                target_hours: Tier::new(3600, HOURS_KEPT),
                pending: Vec::new(),
                last_used: HashMap::new(),
            }),
        }
    }
}

fn status_class(status: u16) -> u8 {
    match status {
        100..=599 => (status / 100) as u8,
        _ => 0,
    }
}

impl Analytics {
    /// Counts one finished request; `now` (unix seconds) decides what is too old to keep.
    pub fn record(&self, sample: &Sample<'_>, now: i64) {
        let model = match sample.error {
            // Names a client made up are not worth a row.
            Some("model_not_found" | "model_not_allowed") => OTHER,
            _ => match sample.model {
                // Lines read back from an older log may hold names no request can send now.
                Some(name) if name.len() > MAX_MODEL_NAME_BYTES => OTHER,
                name => name.unwrap_or(NONE),
            },
        };
        if sample.ts < now - HOURS_KEPT * 3600 {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let keys = [
            (Dim::Key, inner.keys.intern(sample.key.unwrap_or(NONE))),
            (Dim::Model, inner.models.intern(model)),
            (Dim::Status, u16::from(status_class(sample.status))),
        ];
        let slot = latency_slot(sample.latency_ms);
        for tier in [&mut inner.minutes, &mut inner.hours] {
            if let Some(cells) = tier.bucket(now, sample.ts) {
                for key in keys {
                    cell_in(cells, key).add_sample(sample, slot);
                }
            }
        }
        if let Some(key) = sample.key {
            let room = inner.last_used.len() < MAX_LAST_USED;
            match inner.last_used.get_mut(key) {
                Some(last) => *last = (*last).max(sample.ts),
                None if room => {
                    inner.last_used.insert(key.to_owned(), sample.ts);
                }
                None => {}
            }
        }
    }

    /// When the key named `key` last finished a request (unix seconds), if within the
    /// analytics window (32 days).
    pub fn last_used(&self, key: &str) -> Option<i64> {
        self.inner.lock().last_used.get(key).copied()
    }

    /// Counts one attempt at `target` that ended at `now` (unix seconds) after `latency_ms`
    /// (to the answer's head, or to the failure).
    pub fn record_attempt(&self, target: &Arc<str>, failed: bool, latency_ms: u64, now: i64) {
        let sample = Sample {
            ts: now,
            key: None,
            model: None,
            status: 0,
            error: failed.then_some("upstream"),
            latency_ms,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: None,
        };
        let minute = now.div_euclid(60) * 60;
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let found = inner
            .pending
            .iter()
            .position(|p| Arc::ptr_eq(&p.target, target))
            .or_else(|| inner.pending.iter().position(|p| p.target == *target));
        let i = match found {
            Some(i) => i,
            None if inner.pending.len() < MAX_NAMES => {
                inner.pending.push(Pending {
                    target: target.clone(),
                    minute,
                    cell: Cell::default(),
                });
                inner.pending.len() - 1
            }
            None => {
                // More targets than names: counted as (other), straight into the tiers.
                let slot = latency_slot(latency_ms);
                for tier in [&mut inner.target_minutes, &mut inner.target_hours] {
                    if let Some(cell) = tier.cell(now, (Dim::Target, 0), now) {
                        cell.add_sample(&sample, slot);
                    }
                }
                return;
            }
        };
        if inner.pending.get(i).is_some_and(|p| p.minute != minute) {
            inner.flush(i, now);
        }
        if let Some(p) = inner.pending.get_mut(i) {
            p.minute = minute;
            p.cell.add_sample(&sample, latency_slot(latency_ms));
        }
    }

    /// Reads the usage log back: the rotated files oldest first, then the live one. Lines that
    /// do not parse are skipped; a missing file is not an error. Returns the lines counted.
    pub fn read_back(&self, settings: &UsageSettings, now: i64) -> usize {
        let Some(path) = &settings.path else {
            return 0;
        };
        let mut files: Vec<_> = (1..=settings.keep)
            .rev()
            .map(|n| rotated(path, n))
            .collect();
        files.push(path.clone());
        let cutoff = now - HOURS_KEPT * 3600;
        let mut counted = 0;
        for file in files {
            match read_file(self, &file, now, cutoff) {
                Ok(n) => counted += n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("usage log {}: read back stopped: {e}", file.display()),
            }
        }
        counted
    }

    /// The dashboard's JSON for `range` ending at `now` (unix seconds); `prefix_of` gives a
    /// key's prefix by name when the config still has it.
    pub fn report(
        &self,
        range: Range,
        now: i64,
        prefix_of: &dyn Fn(&str) -> Option<String>,
    ) -> Value {
        self.report_with(range, now, prefix_of, &[])
    }

    /// [`Analytics::report`] with other instances' buckets added (a cluster's dashboard).
    pub fn report_with(
        &self,
        range: Range,
        now: i64,
        prefix_of: &dyn Fn(&str) -> Option<String>,
        others: &[(i64, Vec<SharedCell>)],
    ) -> Value {
        let (width, n) = range.shape();
        let last = now.div_euclid(width) * width;
        let first = last - (n as i64 - 1) * width;
        let mut inner = self.inner.lock();
        // Other instances' names join ours (bounded like ours: past MAX_NAMES, `(other)`).
        let others: Vec<(i64, CellKey, Cell)> = others
            .iter()
            .filter(|(start, _)| (first..=last).contains(start))
            .flat_map(|(start, cells)| cells.iter().map(move |c| (*start, c)))
            .filter_map(|(start, c)| {
                let key = match (&c.k, &c.m, c.c) {
                    (Some(k), None, None) => (Dim::Key, inner.keys.intern(k)),
                    (None, Some(m), None) => (Dim::Model, inner.models.intern(m)),
                    (None, None, Some(class)) => (Dim::Status, u16::from(class)),
                    _ => return None,
                };
                Some((start, key, c.cell()))
            })
            .collect();
        let tier = if width == 60 {
            &inner.minutes
        } else {
            &inner.hours
        };
        let mut total = Cell::default();
        let mut series = vec![Cell::default(); n];
        let mut by_key: BTreeMap<u16, Group> = BTreeMap::new();
        let mut by_model: BTreeMap<u16, Group> = BTreeMap::new();
        let mut by_status: BTreeMap<u16, Group> = BTreeMap::new();
        let remote = others.iter().map(|(start, key, cell)| (*start, *key, cell));
        for (start, (dim, index), cell) in tier.cells(first, last).chain(remote) {
            let i = ((start - first) / width) as usize;
            let groups = match dim {
                Dim::Key => &mut by_key,
                Dim::Model => &mut by_model,
                Dim::Status => {
                    // Every request has exactly one status class: their cells sum to the
                    // totals.
                    total.add(cell);
                    if let Some(slot) = series.get_mut(i) {
                        slot.add(cell);
                    }
                    &mut by_status
                }
                Dim::Target => continue,
            };
            groups
                .entry(index)
                .or_insert_with(|| Group::new(n))
                .add(i, cell);
        }
        drop(others);
        let keys: Vec<Value> = sorted(by_key)
            .into_iter()
            .map(|(k, g)| {
                let name = inner.keys.name(k);
                let mut v = g.json(name);
                v["prefix"] = prefix_of(name).map_or(Value::Null, Value::String);
                v
            })
            .collect();
        let models: Vec<Value> = sorted(by_model)
            .into_iter()
            .map(|(m, g)| g.json(inner.models.name(m)))
            .collect();
        for i in 0..inner.pending.len() {
            inner.flush(i, now);
        }
        let target_tier = if width == 60 {
            &inner.target_minutes
        } else {
            &inner.target_hours
        };
        let mut by_target: BTreeMap<u16, Cell> = BTreeMap::new();
        for (_, (_, t), cell) in target_tier.cells(first, last) {
            by_target.entry(t).or_default().add(cell);
        }
        let targets: serde_json::Map<String, Value> = by_target
            .iter()
            .map(|(&t, cell)| (inner.targets.name(t).to_owned(), cell.totals_json()))
            .collect();
        drop(inner);
        let statuses: Vec<Value> = by_status
            .into_iter()
            .map(|(c, g)| g.json(STATUS_CLASSES[usize::from(c).min(5)]))
            .collect();
        let t: Vec<i64> = (0..n as i64).map(|i| first + i * width).collect();
        let mut series_json = series_json(&series);
        series_json["p50_ms"] = series.iter().map(|c| c.percentile(0.5)).collect();
        series_json["p95_ms"] = series.iter().map(|c| c.percentile(0.95)).collect();
        json!({
            "range": range.name(),
            "bucket_secs": width,
            "now": now,
            "t": t,
            "totals": total.totals_json(),
            "series": series_json,
            "by_key": keys,
            "by_model": models,
            "by_status": statuses,
            "by_target": targets,
        })
    }
}

/// One cell as another instance publishes it: names instead of this instance's indices.
/// Exactly one of `k`, `m` and `c` is set (a key's, a model's or a status class's cell).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct SharedCell {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<u8>,
    /// Requests, errors, prompt and completion tokens, cost in pico-dollars.
    pub n: u64,
    pub e: u64,
    pub p: u64,
    pub o: u64,
    pub usd: u64,
    /// Fastest and slowest (ms), and the latency histogram.
    pub lo: u64,
    pub hi: u64,
    pub l: Vec<u32>,
}

impl SharedCell {
    fn of(inner: &Inner, (dim, index): CellKey, cell: &Cell) -> Option<SharedCell> {
        let (k, m, c) = match dim {
            Dim::Key => (Some(inner.keys.name(index).to_owned()), None, None),
            Dim::Model => (None, Some(inner.models.name(index).to_owned()), None),
            Dim::Status => (None, None, u8::try_from(index).ok()),
            Dim::Target => return None,
        };
        Some(SharedCell {
            k,
            m,
            c,
            n: cell.requests,
            e: cell.errors,
            p: cell.prompt_tokens,
            o: cell.completion_tokens,
            usd: cell.cost.picos(),
            lo: cell.min_ms,
            hi: cell.max_ms,
            l: cell.latency.to_vec(),
        })
    }

    fn cell(&self) -> Cell {
        let mut latency = [0u32; SLOTS];
        for (slot, &count) in latency.iter_mut().zip(&self.l) {
            *slot = count;
        }
        Cell {
            requests: self.n,
            errors: self.e,
            prompt_tokens: self.p,
            completion_tokens: self.o,
            cost: Usd::from_picos(self.usd),
            latency,
            min_ms: self.lo,
            max_ms: self.hi,
        }
    }
}

impl Analytics {
    /// This instance's buckets of the tier `width` (60 or 3600) starting at `from` or later,
    /// as other instances read them: (bucket start, cells).
    pub fn export(&self, width: i64, from: i64) -> Vec<(i64, Vec<SharedCell>)> {
        let inner = self.inner.lock();
        let tier = if width == 60 {
            &inner.minutes
        } else {
            &inner.hours
        };
        tier.buckets
            .range(from..)
            .map(|(&start, cells)| {
                let shared = cells
                    .iter()
                    .filter_map(|&(key, ref cell)| SharedCell::of(&inner, key, cell))
                    .collect();
                (start, shared)
            })
            .collect()
    }
}

/// One key's, model's or status class's totals and per-bucket counts.
struct Group {
    total: Cell,
    series: Vec<Cell>,
}

impl Group {
    fn new(n: usize) -> Group {
        Group {
            total: Cell::default(),
            series: vec![Cell::default(); n],
        }
    }

    fn add(&mut self, i: usize, cell: &Cell) {
        self.total.add(cell);
        if let Some(slot) = self.series.get_mut(i) {
            slot.add(cell);
        }
    }

    fn json(&self, name: &str) -> Value {
        json!({
            "name": name,
            "totals": self.total.totals_json(),
            "series": series_json(&self.series),
        })
    }
}

/// Most requests first.
fn sorted<K: Ord>(groups: BTreeMap<K, Group>) -> Vec<(K, Group)> {
    let mut v: Vec<_> = groups.into_iter().collect();
    v.sort_by_key(|g| std::cmp::Reverse(g.1.total.requests));
    v
}

fn series_json(cells: &[Cell]) -> Value {
    json!({
        "requests": cells.iter().map(|c| c.requests).collect::<Vec<_>>(),
        "errors": cells.iter().map(|c| c.errors).collect::<Vec<_>>(),
        "prompt_tokens": cells.iter().map(|c| c.prompt_tokens).collect::<Vec<_>>(),
        "completion_tokens": cells.iter().map(|c| c.completion_tokens).collect::<Vec<_>>(),
        "cost_usd": cells.iter().map(|c| c.cost.as_f64()).collect::<Vec<_>>(),
    })
}

/// The fields of a usage line the dashboard needs (the rest are ignored).
#[derive(Deserialize)]
struct Line {
    ts: String,
    key: Option<String>,
    model: Option<String>,
    status: u16,
    latency_ms: u64,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// Absent in lines written before costs were recorded.
    #[serde(default)]
    cost_usd: Option<f64>,
    error: Option<String>,
}

/// Unix seconds of an RFC 3339 timestamp.
pub fn parse_ts(ts: &str) -> Option<i64> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

fn read_file(analytics: &Analytics, path: &Path, now: i64, cutoff: i64) -> io::Result<usize> {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut buf = Vec::new();
    let mut counted = 0;
    while next_line(&mut reader, &mut buf)? {
        let Ok(line) = serde_json::from_slice::<Line>(&buf) else {
            continue;
        };
        let Some(ts) = parse_ts(&line.ts) else {
            continue;
        };
        if ts < cutoff {
            continue;
        }
        analytics.record(
            &Sample {
                ts,
                key: line.key.as_deref(),
                model: line.model.as_deref(),
                status: line.status,
                error: line.error.as_deref(),
                latency_ms: line.latency_ms,
                prompt_tokens: line.prompt_tokens.unwrap_or(0),
                completion_tokens: line.completion_tokens.unwrap_or(0),
                cost: line.cost_usd.and_then(Usd::from_f64),
            },
            now,
        );
        counted += 1;
    }
    Ok(counted)
}

/// The next line into `buf` (without `\n`); a line longer than [`MAX_LINE`] comes back empty.
/// `false` at end of input.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let mut seen = false;
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            if too_long {
                buf.clear();
            }
            return Ok(seen);
        }
        seen = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(take + usize::from(done));
        if done {
            if too_long {
                buf.clear();
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600 + 10 * 3600 + 30 * 60; // 2026-01-01T10:30:00Z

    fn sample(
        ts: i64,
        key: &'static str,
        model: &'static str,
        status: u16,
        ms: u64,
    ) -> Sample<'static> {
        Sample {
            ts,
            key: Some(key),
            model: Some(model),
            status,
            error: (status >= 400).then_some("upstream_error"),
            latency_ms: ms,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost: Usd::from_f64(0.001),
        }
    }

    fn no_prefix(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn report_totals_series_and_groups() {
        let a = Analytics::default();
        a.record(&sample(NOW - 10, "laptop", "gpt", 200, 40), NOW);
        a.record(&sample(NOW - 20, "laptop", "gpt", 200, 60), NOW);
        a.record(&sample(NOW - 2 * 3600, "ci", "claude", 502, 900), NOW);
        let day = a.report(Range::Day, NOW, &|n: &str| {
            (n == "laptop").then(|| "nvq_abc".into())
        });
        assert_eq!(a.last_used("laptop"), Some(NOW - 10));
        assert_eq!(a.last_used("ci"), Some(NOW - 2 * 3600));
        assert_eq!(a.last_used("nobody"), None);
        assert_eq!(day["totals"]["requests"], 3);
        assert_eq!(day["totals"]["errors"], 1);
        assert_eq!(day["totals"]["prompt_tokens"], 30);
        assert_eq!(day["t"].as_array().unwrap().len(), 24);
        let reqs = day["series"]["requests"].as_array().unwrap();
        assert_eq!(reqs[23], 2);
        assert_eq!(reqs[21], 1);
        assert_eq!(day["by_key"][0]["name"], "laptop");
        assert_eq!(day["by_key"][0]["prefix"], "nvq_abc");
        assert_eq!(day["by_key"][1]["prefix"], Value::Null);
        assert_eq!(day["by_status"][0]["name"], "2xx");
        assert_eq!(day["by_status"][1]["name"], "5xx");
        let hour = a.report(Range::Hour, NOW, &no_prefix);
        assert_eq!(hour["totals"]["requests"], 2);
        assert_eq!(hour["bucket_secs"], 60);
        assert_eq!(hour["series"]["requests"][58], 2, "10:29:40 and 10:29:50");
    }

    #[test]
    fn attempts_are_reported_by_target_apart_from_requests() {
        let a = Analytics::default();
        let (ax, bx): (Arc<str>, Arc<str>) = ("a/x".into(), "b/x".into());
        a.record_attempt(&bx, false, 100, NOW - 2 * 3600);
        a.record_attempt(&ax, false, 40, NOW - 70);
        // A different Arc with the same name is the same target.
        a.record_attempt(&"a/x".into(), true, 3, NOW - 5);
        let hour = a.report(Range::Hour, NOW, &no_prefix);
        assert_eq!(hour["totals"]["requests"], 0, "attempts are not requests");
        assert_eq!(hour["by_target"]["a/x"]["requests"], 2);
        assert_eq!(hour["by_target"]["a/x"]["errors"], 1);
        assert!(hour["by_target"].get("b/x").is_none(), "two hours ago");
        let day = a.report(Range::Day, NOW, &no_prefix);
        assert_eq!(day["by_target"]["b/x"]["p50_ms"], 100);
    }

    #[test]
    fn old_samples_are_dropped_and_names_capped() {
        let a = Analytics::default();
        a.record(&sample(NOW - 40 * 24 * 3600, "k", "m", 200, 1), NOW);
        assert_eq!(
            a.report(Range::Month, NOW, &no_prefix)["totals"]["requests"],
            0
        );
        let names: Vec<String> = (0..MAX_NAMES + 20).map(|i| format!("key{i}")).collect();
        for name in &names {
            a.record(
                &Sample {
                    key: Some(name),
                    ..sample(NOW, "x", "m", 200, 1)
                },
                NOW,
            );
        }
        let r = a.report(Range::Day, NOW, &no_prefix);
        assert_eq!(r["totals"]["requests"], (MAX_NAMES + 20) as u64);
        let keys = r["by_key"].as_array().unwrap();
        assert_eq!(keys.len(), MAX_NAMES + 1);
        assert_eq!(keys[0]["name"], OTHER);
        assert_eq!(keys[0]["totals"]["requests"], 20);
    }

    #[test]
    fn percentiles_interpolate_within_slots() {
        let mut c = Cell::default();
        assert_eq!(c.percentile(0.5), None);
        for ms in [30, 40, 45, 50] {
            c.add_sample(&sample(0, "k", "m", 200, ms), latency_slot(ms));
        }
        // All four fall in the 25..=50 slot.
        assert_eq!(c.percentile(0.5), Some(38));
        assert_eq!(c.percentile(0.95), Some(50));
        c.add_sample(
            &sample(0, "k", "m", 200, 1_000_000),
            latency_slot(1_000_000),
        );
        assert_eq!(c.percentile(1.0), Some(300_000));
    }

    #[test]
    fn next_line_skips_overlong_lines() {
        let long = "x".repeat(MAX_LINE + 10);
        let text = format!("a\n{long}\nb");
        let mut r = BufReader::with_capacity(100, text.as_bytes());
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while next_line(&mut r, &mut buf).unwrap() {
            lines.push(String::from_utf8(buf.clone()).unwrap());
        }
        assert_eq!(lines, ["a", "", "b"]);
    }

    #[test]
    fn read_back_covers_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        let line = |ts: &str| {
            format!(
                "{{\"ts\":\"{ts}\",\"request_id\":\"r\",\"key\":\"k\",\"model\":\"m\",\"status\":200,\
                 \"latency_ms\":5,\"ttfb_ms\":1,\"prompt_tokens\":2,\"completion_tokens\":3,\"error\":null}}\n"
            )
        };
        std::fs::write(rotated(&path, 2), line("2026-01-01T09:00:00.000Z")).unwrap();
        std::fs::write(
            rotated(&path, 1),
            line("2026-01-01T10:00:00.000Z") + "garbage\n",
        )
        .unwrap();
        std::fs::write(&path, line("2026-01-01T10:29:00.000Z")).unwrap();
        let a = Analytics::default();
        let settings = UsageSettings {
            path: Some(path),
            max_bytes: 1000,
            keep: 3,
        };
        assert_eq!(a.read_back(&settings, NOW), 3);
        let r = a.report(Range::Day, NOW, &no_prefix);
        assert_eq!(r["totals"]["requests"], 3);
        assert_eq!(r["totals"]["completion_tokens"], 9);
        assert_eq!(r["series"]["requests"][22], 1);
        assert_eq!(r["series"]["requests"][23], 2);
    }

    /// Lines that all say 0 ms give a p50 of 0 ms, not a point inside the first slot.
    #[test]
    fn percentiles_stay_within_what_was_seen() {
        let a = Analytics::default();
        for _ in 0..10 {
            a.record(&sample(NOW, "k", "m", 200, 0), NOW);
        }
        let r = a.report(Range::Day, NOW, &no_prefix);
        assert_eq!(r["totals"]["p50_ms"], 0);
        assert_eq!(r["totals"]["p95_ms"], 0);
        for _ in 0..10 {
            a.record(&sample(NOW, "k", "m", 200, 7), NOW);
        }
        let r = a.report(Range::Day, NOW, &no_prefix);
        assert_eq!(r["totals"]["p95_ms"], 7);
        assert_eq!(r["totals"]["cost_usd"], 0.02);
    }

    /// A bucket holds one cell per key, per model and per status class, however they combine:
    /// 100 keys × 100 models in one minute make 100 + 100 + 1 cells, not 10,000.
    #[test]
    fn a_bucket_holds_marginals_only() {
        let a = Analytics::default();
        let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        for k in &names {
            for m in &names {
                let s = Sample {
                    key: Some(k),
                    model: Some(m),
                    ..sample(NOW, "x", "y", 200, 1)
                };
                a.record(&s, NOW);
            }
        }
        let inner = a.inner.lock();
        let bucket = inner.minutes.buckets.values().next().unwrap();
        assert_eq!(bucket.len(), 201);
        assert!(
            bucket.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no duplicates"
        );
        drop(inner);
        let r = a.report(Range::Hour, NOW, &no_prefix);
        assert_eq!(r["totals"]["requests"], 10_000);
        assert_eq!(r["by_key"].as_array().unwrap().len(), 100);
        assert_eq!(r["by_model"][0]["totals"]["requests"], 100);
    }

    /// What one instance exports, another adds to its own report, name by name.
    #[test]
    fn exported_cells_join_another_instances_report() {
        let (a, b) = (Analytics::default(), Analytics::default());
        a.record(&sample(NOW - 10, "laptop", "gpt", 200, 40), NOW);
        a.record(&sample(NOW - 10, "ci", "gpt", 502, 900), NOW);
        b.record(&sample(NOW - 70, "laptop", "claude", 200, 60), NOW);
        let exported = a.export(60, 0);
        let json = serde_json::to_string(&exported[0].1).unwrap();
        assert!(
            !json.contains("\"k\":null"),
            "unset names are left out: {json}"
        );
        let cells: Vec<SharedCell> = serde_json::from_str(&json).unwrap();
        let r = b.report_with(Range::Hour, NOW, &no_prefix, &[(exported[0].0, cells)]);
        assert_eq!(r["totals"]["requests"], 3);
        assert_eq!(r["totals"]["errors"], 1);
        assert_eq!(r["series"]["requests"][57], 1, "10:28:50");
        assert_eq!(r["series"]["requests"][58], 2, "10:29:50");
        assert_eq!(r["by_key"][0]["name"], "laptop");
        assert_eq!(r["by_key"][0]["totals"]["requests"], 2);
        assert_eq!(r["by_model"][0]["name"], "gpt");
        assert_eq!(r["by_status"][1]["name"], "5xx");
    }
}
