//! Spend per key, kept exact across restarts, reloads and usage-log rotation.
//!
//! The contract defines a key's spend in a period as the sum of its usage lines' `cost_usd`
//! in that period; this is that sum, kept per key and UTC day (a period's spend is the sum
//! of its days, whatever period a reload gives the key). It is charged in the same step as
//! the usage line is written (under the usage log's shared lock), so it never disagrees
//! with the log.
//!
//! Rotation would drop old lines, so before the usage log moves its active file aside it
//! writes a checkpoint, [`checkpoint_path`] (`noviqi-usage-spend.json`), atomically: the totals so far, and which file
//! and how many of its bytes they cover. At start the ledger is the checkpoint plus the
//! lines of the active file past that point (all of them when the active file is a newer
//! one), so only the active file is ever read. Days older than [`KEEP_DAYS`] are dropped.
//!
//! State owned: key name → day → spend, bounded by the configured keys (and names read back
//! from the log) times [`KEEP_DAYS`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Usd;
use super::period::{Period, day_of};

/// Days of spend kept: enough for the longest period (a month) with room to spare.
pub const KEEP_DAYS: i64 = 62;
/// Longest usage line read back; longer ones are skipped.
const MAX_LINE: usize = 64 * 1024;

/// Spend per key and UTC day.
#[derive(Default)]
pub struct Ledger {
    days: Mutex<HashMap<String, BTreeMap<i64, Usd>>>,
}

/// Which bytes of which file a checkpoint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl FileMark {
    pub fn of(file: &File) -> io::Result<FileMark> {
        let meta = file.metadata()?;
        Ok(FileMark {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        })
    }
}

/// The checkpoint file's content: spend in picos per key and day.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    covers: FileMark,
    spend: BTreeMap<String, BTreeMap<i64, u64>>,
}

/// The fields of a usage line the ledger reads (borrowed: a line is read, charged, dropped).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    cost_usd: Option<f64>,
}

impl Ledger {
    /// Adds a request's cost to `key`'s spend on the day holding `unix_secs`.
    pub fn charge(&self, key: &str, unix_secs: i64, cost: Usd) {
        self.charge_day(key, day_of(unix_secs), cost);
    }

    fn charge_day(&self, key: &str, day: i64, cost: Usd) {
        if cost == Usd::ZERO {
            return;
        }
        let mut days = self.days.lock();
        match days.get_mut(key) {
            Some(per_day) => *per_day.entry(day).or_default() += cost,
            None => {
                days.insert(key.to_owned(), BTreeMap::from([(day, cost)]));
            }
        }
    }

    /// `key`'s spend in the `period` holding `now`.
    pub fn spent(&self, key: &str, period: Period, now: i64) -> Usd {
        let days = self.days.lock();
        days.get(key)
            .map(|per_day| per_day.range(period.days(now)).map(|(_, usd)| *usd).sum())
            .unwrap_or(Usd::ZERO)
    }

    /// Drops days more than [`KEEP_DAYS`] before `now`, and keys left with none.
    pub fn prune(&self, now: i64) {
        let oldest = day_of(now) - KEEP_DAYS;
        let mut days = self.days.lock();
        days.retain(|_, per_day| {
            *per_day = per_day.split_off(&oldest);
            !per_day.is_empty()
        });
    }

    /// Writes the checkpoint beside the usage log at `log`: the ledger as it is, covering
    /// `covers` of the active file. Atomic (a temporary file renamed over the old one).
    pub fn checkpoint(&self, log: &Path, covers: FileMark, now: i64) -> io::Result<()> {
        self.prune(now);
        let spend = {
            let days = self.days.lock();
            days.iter()
                .map(|(key, per_day)| {
                    let picos = per_day.iter().map(|(d, usd)| (*d, usd.picos())).collect();
                    (key.clone(), picos)
                })
                .collect()
        };
        let text = serde_json::to_vec(&Checkpoint { covers, spend }).map_err(io::Error::other)?;
        let path = checkpoint_path(log);
        let tmp = {
            let mut name = path.as_os_str().to_owned();
            name.push(".tmp");
            PathBuf::from(name)
        };
        let mut file = File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)
    }

    /// The ledger of the usage log at `log`: its checkpoint, if any, plus the active file's
    /// lines it does not cover. A missing log is an empty ledger; an unreadable checkpoint
    /// is logged and ignored (the active file is then read whole).
    pub fn restore(log: &Path, now: i64) -> io::Result<Ledger> {
        let ledger = Ledger::default();
        let mut covered = None;
        match std::fs::read(checkpoint_path(log)) {
            Ok(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
                Ok(c) => {
                    let mut days = ledger.days.lock();
                    for (key, per_day) in c.spend {
                        let per_day = per_day
                            .into_iter()
                            .map(|(d, picos)| (d, Usd::from_picos(picos)))
                            .collect();
                        days.insert(key, per_day);
                    }
                    covered = Some(c.covers);
                }
                Err(e) => log::warn!(
                    "spend checkpoint {} unreadable ({e}); reading the usage log alone",
                    checkpoint_path(log).display()
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut file = match File::open(log) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ledger),
            Err(e) => return Err(e),
        };
        let here = FileMark::of(&file)?;
        if let Some(c) = covered.filter(|c| c.dev == here.dev && c.ino == here.ino) {
            file.seek(SeekFrom::Start(c.len))?;
        }
        ledger.read_lines(BufReader::with_capacity(64 * 1024, file))?;
        ledger.prune(now);
        Ok(ledger)
    }

    fn read_lines(&self, mut reader: impl BufRead) -> io::Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if buf.last() != Some(&b'\n') {
                if n > MAX_LINE {
                    // Too long to be a usage line: skip the rest of it.
                    skip_line(&mut reader)?;
                }
                continue;
            }
            let Ok(line) = serde_json::from_slice::<Line>(&buf) else {
                continue;
            };
            let (Some(key), Some(cost)) = (line.key, line.cost_usd.and_then(Usd::from_f64)) else {
                continue;
            };
            if let Some(day) = utc_day(&line.ts) {
                self.charge_day(&key, day, cost);
            }
        }
    }
}

/// `<usage log without its extension>-spend.json` beside the log (`noviqi-usage.jsonl` →
/// `noviqi-usage-spend.json`): not a name that `<usage log>*` matches, so tools that read
/// the log and its rotated files never take it for one.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let stem = log.file_stem().unwrap_or(log.as_os_str());
    let mut name = stem.to_owned();
    name.push("-spend.json");
    log.with_file_name(name)
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// The UTC day of a usage line's RFC 3339 `ts`. The log writes UTC (`…Z`), whose day is its
/// first ten characters, read without a calendar library (a start-up reads millions of
/// lines); any other offset goes through the full parser.
fn utc_day(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if ts.ends_with('Z') && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if (1..=12).contains(&m) && (1..=31).contains(&d) {
            return Some(days_from_civil(y, m, d));
        }
    }
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| day_of(t.unix_timestamp()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_342_400; // 2026-12-04T00:00:00Z, a Friday
    const DAY: i64 = 86_400;

    fn usd(text: &str) -> Usd {
        Usd::from_f64(text.parse().unwrap()).unwrap()
    }

    fn line(ts: i64, key: &str, cost: &str) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap();
        let ts = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        format!(r#"{{"ts":"{ts}","key":"{key}","cost_usd":{cost},"status":200}}"#) + "\n"
    }

    #[test]
    fn a_period_sums_its_days() {
        let l = Ledger::default();
        l.charge("a", NOW, usd("0.25"));
        l.charge("a", NOW - DAY, usd("0.5")); // 2026-12-03, same week and month
        l.charge("a", NOW - 4 * DAY, usd("1")); // 2026-11-30, Monday: same week, last month
        l.charge("a", NOW - 5 * DAY, usd("2")); // 2026-11-29: the week before
        l.charge("b", NOW, usd("9"));
        assert_eq!(l.spent("a", Period::Day, NOW), usd("0.25"));
        assert_eq!(l.spent("a", Period::Week, NOW), usd("1.75"));
        assert_eq!(l.spent("a", Period::Month, NOW), usd("0.75"));
        assert_eq!(l.spent("nobody", Period::Month, NOW), Usd::ZERO);
        // A new period admits again.
        assert_eq!(l.spent("a", Period::Day, NOW + DAY), Usd::ZERO);
    }

    #[test]
    fn restores_from_the_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("usage.jsonl");
        let text = [
            line(NOW, "a", "0.1"),
            line(NOW, "a", "null"),
            "{torn\n".to_owned(),
            line(NOW, "b", "0.2"),
            r#"{"ts":"2026-12-04T00:00:00Z","key":null,"cost_usd":1}"#.to_owned() + "\n",
            line(NOW, "a", "0.000000000001"),
        ]
        .concat();
        std::fs::write(&log, text).unwrap();
        let l = Ledger::restore(&log, NOW).unwrap();
        assert_eq!(l.spent("a", Period::Day, NOW), usd("0.100000000001"));
        assert_eq!(l.spent("b", Period::Day, NOW), usd("0.2"));
    }

    /// A checkpoint covers the active file up to its mark; a rotated-in new file is read
    /// whole; a crash between the checkpoint and the rename counts nothing twice.
    #[test]
    fn checkpoint_then_rotation_then_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("usage.jsonl");
        std::fs::write(&log, line(NOW, "a", "1") + &line(NOW, "a", "2")).unwrap();
        let l = Ledger::restore(&log, NOW).unwrap();
        assert_eq!(l.spend_of("a"), usd("3"));
        let mark = FileMark::of(&File::open(&log).unwrap()).unwrap();
        l.checkpoint(&log, mark, NOW).unwrap();
        // Crash before the rename: the same file, nothing past the mark.
        assert_eq!(Ledger::restore(&log, NOW).unwrap().spend_of("a"), usd("3"));
        // More lines after the checkpoint, still before the rename.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(line(NOW, "a", "4").as_bytes()).unwrap();
        assert_eq!(Ledger::restore(&log, NOW).unwrap().spend_of("a"), usd("7"));
        // The rename, and a new active file (a new inode) with one line.
        let mark = FileMark::of(&File::open(&log).unwrap()).unwrap();
        let l = Ledger::restore(&log, NOW).unwrap();
        l.checkpoint(&log, mark, NOW).unwrap();
        std::fs::rename(&log, dir.path().join("usage.jsonl.1")).unwrap();
        std::fs::write(&log, line(NOW, "a", "8")).unwrap();
        let l = Ledger::restore(&log, NOW).unwrap();
        assert_eq!(l.spend_of("a"), usd("15"));
        // Old rotated files may go: the checkpoint holds their spend.
        std::fs::remove_file(dir.path().join("usage.jsonl.1")).unwrap();
        assert_eq!(Ledger::restore(&log, NOW).unwrap().spend_of("a"), usd("15"));
    }

    #[test]
    fn old_days_are_dropped() {
        let l = Ledger::default();
        l.charge("a", NOW - (KEEP_DAYS + 1) * DAY, usd("1"));
        l.charge("b", NOW, usd("1"));
        l.prune(NOW);
        assert!(!l.days.lock().contains_key("a"));
        assert_eq!(l.spend_of("b"), usd("1"));
    }

    #[test]
    fn utc_days_read_fast_agree_with_the_calendar() {
        for ts in [
            "1970-01-01T00:00:00.000Z",
            "2026-12-04T23:59:59.999Z",
            "2028-02-29T12:00:00Z",
            "2100-03-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-12-04T23:30:00-02:00",
        ] {
            let slow =
                time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                    .unwrap()
                    .unix_timestamp();
            assert_eq!(utc_day(ts), Some(day_of(slow)), "{ts}");
        }
        assert_eq!(utc_day("not a time"), None);
        assert_eq!(utc_day("2026-13-04T00:00:00Z"), None);
    }

    #[test]
    fn the_checkpoint_is_not_named_like_a_usage_file() {
        let at = |p: &str| checkpoint_path(Path::new(p));
        assert_eq!(
            at("/d/noviqi-usage.jsonl"),
            Path::new("/d/noviqi-usage-spend.json")
        );
        assert_eq!(at("usage"), Path::new("usage-spend.json"));
        assert!(!at("/d/u.jsonl").to_string_lossy().starts_with("/d/u.jsonl"));
    }

    impl Ledger {
        fn spend_of(&self, key: &str) -> Usd {
            self.spent(key, Period::Month, NOW)
        }
    }
}
