//! Wall-clock timestamps for log and usage lines, with the date and time of day formatted
//! once per second per thread.
//!
//! Every proxied request writes two timestamps (its access log line and its usage line);
//! formatting a calendar date through `fmt` for each was a visible share of a request's
//! instructions. A thread keeps the text of the last whole second it formatted and only
//! appends the milliseconds.
//!
//! State owned here: per thread, the last second formatted and its text.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS`, always 19 ASCII bytes.
type SecondText = [u8; 19];

thread_local! {
    static LAST: Cell<Option<(i64, SecondText)>> = const { Cell::new(None) };
}

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One instant in UTC, ready to be written.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    unix_secs: i64,
    millis: u16,
    second: SecondText,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::at(SystemTime::now())
    }

    pub fn at(t: SystemTime) -> Stamp {
        let (unix_secs, millis) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_millis() as u16,
            ),
            // Before 1970: only a broken clock gets here; the epoch is as good as any.
            Err(_) => (0, 0),
        };
        let second = LAST.with(|last| match last.get() {
            Some((secs, text)) if secs == unix_secs => text,
            _ => {
                let text = second_text(unix_secs);
                last.set(Some((unix_secs, text)));
                text
            }
        });
        Stamp {
            unix_secs,
            millis,
            second,
        }
    }

    pub fn unix_secs(&self) -> i64 {
        self.unix_secs
    }

    /// `2026-01-02T03:04:05`, the whole second without a zone.
    pub fn second(&self) -> &str {
        // `second_text` writes ASCII digits and separators only.
        std::str::from_utf8(&self.second).unwrap_or("1970-01-01T00:00:00")
    }

    /// `2026-01-02T03:04:05.678Z`: always three fractional digits, so lines sort as text.
    pub fn rfc3339_millis(&self) -> String {
        let mut out = String::with_capacity(24);
        out.push_str(self.second());
        out.push('.');
        let ms = self.millis;
        for d in [ms / 100, ms / 10 % 10, ms % 10] {
            out.push(char::from(b'0' + d as u8));
        }
        out.push('Z');
        out
    }
}

fn second_text(unix_secs: i64) -> SecondText {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> Stamp {
        Stamp::at(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn formats_like_rfc3339_with_millis() {
        assert_eq!(at(0, 0).rfc3339_millis(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            at(1_767_323_045, 678).rfc3339_millis(),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(at(1_767_323_045, 7).second(), "2026-01-02T03:04:05");
        assert_eq!(at(1_767_323_045, 7).unix_secs(), 1_767_323_045);
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        // Same second twice, then the next one, then back: each read matches `time`'s own.
        for secs in [
            1_767_323_045,
            1_767_323_045,
            1_767_323_046,
            951_782_400,
            4_102_444_799,
        ] {
            let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            assert_eq!(at(secs, 999).second(), expected);
        }
    }

    #[test]
    fn usage_log_timestamps_are_rfc3339_millis() {
        let parsed = time::OffsetDateTime::parse(
            &Stamp::now().rfc3339_millis(),
            &time::format_description::well_known::Rfc3339,
        );
        assert!(parsed.is_ok());
    }
}
