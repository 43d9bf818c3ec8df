//! Budget periods: calendar days, weeks (from Monday) and months, in UTC.
//!
//! Spend is kept per key and UTC day ([`day_of`]); a period's spend is the sum of its days,
//! so a key whose `budget_period` changes in a reload is judged over the right days at once.
//! Owns no state.

use time::OffsetDateTime;

/// Seconds in a day.
const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The UTC days (as [`day_of`] numbers) of the period holding `now`: `first..end`, with
    /// `end` the first day of the next period.
    pub fn days(self, now: i64) -> std::ops::Range<i64> {
        let today = day_of(now);
        match self {
            Period::Day => today..today + 1,
            Period::Week => {
                // Day 0 (1970-01-01) was a Thursday: Monday-based weekday = (day + 3) mod 7.
                let first = today - (today + 3).rem_euclid(7);
                first..first + 7
            }
            Period::Month => {
                let Ok(t) = OffsetDateTime::from_unix_timestamp(now) else {
                    return today..today + 1;
                };
                let first = today - i64::from(t.day()) + 1;
                let days = i64::from(t.month().length(t.year()));
                first..first + days
            }
        }
    }

    /// Seconds from `now` until the period ends (at least 1).
    pub fn secs_left(self, now: i64) -> u64 {
        let end = self.days(now).end * DAY;
        u64::try_from(end - now).unwrap_or(0).max(1)
    }

    /// When the period holding `now` ends, as RFC 3339.
    pub fn resets_at(self, now: i64) -> String {
        let end = self.days(now).end * DAY;
        OffsetDateTime::from_unix_timestamp(end)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

/// The UTC day number (days since 1970-01-01) of a Unix time.
pub fn day_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(DAY)
}

/// Unix seconds of the start of a day number.
pub fn start_of(day: i64) -> i64 {
    day.saturating_mul(DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> i64 {
        OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn a_day_is_the_utc_calendar_day() {
        let now = at("2026-12-04T22:10:00Z");
        let days = Period::Day.days(now);
        assert_eq!(start_of(days.start), at("2026-12-04T00:00:00Z"));
        assert_eq!(Period::Day.secs_left(now), 110 * 60);
        assert_eq!(Period::Day.resets_at(now), "2026-12-05T00:00:00Z");
    }

    #[test]
    fn a_week_starts_on_monday() {
        // 2026-12-04 is a Friday; its week runs from Monday 2026-11-30.
        let now = at("2026-12-04T12:00:00Z");
        let days = Period::Week.days(now);
        assert_eq!(start_of(days.start), at("2026-11-30T00:00:00Z"));
        assert_eq!(start_of(days.end), at("2026-12-07T00:00:00Z"));
        let monday = at("2026-11-30T00:00:00Z");
        assert_eq!(Period::Week.days(monday), days);
        assert_eq!(Period::Week.days(monday - 1).end, days.start);
    }

    #[test]
    fn a_month_is_the_calendar_month() {
        let now = at("2028-02-29T23:59:59Z");
        let days = Period::Month.days(now);
        assert_eq!(start_of(days.start), at("2028-02-01T00:00:00Z"));
        assert_eq!(start_of(days.end), at("2028-03-01T00:00:00Z"));
        assert_eq!(Period::Month.secs_left(now), 1);
        let next = now + 1;
        assert_eq!(Period::Month.days(next).start, days.end);
        let january = Period::Month.days(at("2027-01-01T00:00:00Z"));
        assert_eq!(january, Period::Month.days(at("2027-01-31T23:59:59Z")));
        assert_eq!(january.end - january.start, 31);
    }
}
