//! When a schedule fires: cron expressions read in a time zone, one-time instants, the next
//! occurrences, and the catch-up rule after downtime. Pure: time is passed in.
//!
//! Catch-up rule: a schedule's occurrences after the one it last fired (or after its
//! creation) and up to now are due. Only the most recent of them can fire, once — and only if
//! it is at most `catch_up` old; otherwise it is skipped and the schedule says so. So a
//! coordinator down for a week does not start a week of runs when it comes back.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::store::catalog::{Schedule, When};

/// A schedule's `when`, checked.
#[derive(Debug, Clone)]
pub enum Timing {
    Once(u64),
    Cron(Box<Cron>, Tz),
}

/// A cron expression: five fields (minute granularity; seconds and years are refused, so no
/// schedule fires more than once a minute).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.len() > 200 {
        return Err("cron: at most 200 characters".into());
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| {
            format!("cron {expr:?}: {e} (five fields: minute hour day-of-month month day-of-week)")
        })
}

pub fn parse_zone(tz: &str) -> Result<Tz, String> {
    Tz::from_str(tz).map_err(|_| format!("timezone {tz:?}: not an IANA zone (Europe/Paris, UTC)"))
}

pub fn timing(s: &Schedule) -> Result<Timing, String> {
    match &s.when {
        When::Once(at) => Ok(Timing::Once(*at)),
        When::Cron(expr) => Ok(Timing::Cron(
            Box::new(parse_cron(expr)?),
            parse_zone(&s.timezone)?,
        )),
    }
}

fn at(ms: u64, tz: &Tz) -> DateTime<Tz> {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .with_timezone(tz)
}

fn ms_of<T: TimeZone>(t: &DateTime<T>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// Cron occurrences fall on whole minutes: the search starts from one, or the occurrences
/// found would carry the start's seconds.
fn minute_floor(ms: u64) -> u64 {
    ms - ms % 60_000
}

/// Up to `n` occurrences strictly after `after_ms`.
pub fn next(t: &Timing, after_ms: u64, n: usize) -> Vec<u64> {
    match t {
        Timing::Once(at) => (*at > after_ms)
            .then_some(*at)
            .into_iter()
            .take(n)
            .collect(),
        Timing::Cron(cron, tz) => cron
            .iter_after(at(minute_floor(after_ms), tz))
            .take(n)
            .map(|d| ms_of(&d))
            .collect(),
    }
}

/// The most recent occurrence at or before `now_ms`.
fn latest(t: &Timing, now_ms: u64) -> Option<u64> {
    match t {
        Timing::Once(at) => (*at <= now_ms).then_some(*at),
        Timing::Cron(cron, tz) => cron
            .find_previous_occurrence(&at(minute_floor(now_ms), tz), true)
            .ok()
            .map(|d| ms_of(&d)),
    }
}

/// What a schedule should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Fire the occurrence at this instant.
    Fire(u64),
    /// The occurrence at this instant was missed by more than the catch-up window: record it
    /// as skipped.
    Skip(u64),
}

pub fn due(s: &Schedule, t: &Timing, now_ms: u64, catch_up_ms: u64) -> Due {
    if !s.enabled {
        return Due::Nothing;
    }
    let since = s.last_fired_ms.unwrap_or(s.created_at_ms);
    let Some(occ) = latest(t, now_ms) else {
        return Due::Nothing;
    };
    // A one-time schedule made for an instant just before its creation still fires once.
    let fresh = match s.last_fired_ms {
        Some(last) => occ > last,
        None => occ > since || matches!(t, Timing::Once(_)),
    };
    if !fresh {
        return Due::Nothing;
    }
    if now_ms.saturating_sub(occ) <= catch_up_ms.max(MIN_LATENESS_MS) {
        Due::Fire(occ)
    } else {
        Due::Skip(occ)
    }
}

/// However `catch_up_s` is set, an occurrence this late is on time: the scheduler looks once
/// a second, and a busy second is no downtime.
pub const MIN_LATENESS_MS: u64 = 60_000;

/// An instant as RFC 3339 in `tz`, for people.
pub fn local(ms: u64, tz: &str) -> String {
    let zone = parse_zone(tz).unwrap_or(Tz::UTC);
    at(ms, &zone).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::ScheduledSpec;

    fn ms(rfc3339: &str) -> u64 {
        ms_of(&DateTime::parse_from_rfc3339(rfc3339).expect("time"))
    }

    fn sched(when: When, tz: &str, created: u64, last: Option<u64>) -> Schedule {
        Schedule {
            id: "s".into(),
            name: "n".into(),
            spec: ScheduledSpec::Stored("x".into()),
            when,
            timezone: tz.into(),
            enabled: true,
            created_at_ms: created,
            created_by: "t".into(),
            last_fired_ms: last,
            last_error: None,
        }
    }

    #[test]
    fn weekday_mornings_in_paris_follow_daylight_saving_time() {
        let s = sched(
            When::Cron("0 9 * * MON-FRI".into()),
            "Europe/Paris",
            0,
            None,
        );
        let t = timing(&s).expect("timing");
        // Friday 2026-03-27, winter time (UTC+1): next are Fri 09:00, then Mon 30 March
        // 09:00 — summer time since the 29th (UTC+2).
        let fires = next(&t, ms("2026-03-27T07:00:00.207Z"), 3);
        assert_eq!(
            fires,
            [
                ms("2026-03-27T08:00:00Z"),
                ms("2026-03-30T07:00:00Z"),
                ms("2026-03-31T07:00:00Z")
            ]
        );
        assert_eq!(local(fires[1], "Europe/Paris"), "2026-03-30T09:00:00+02:00");
    }

    #[test]
    fn a_bad_cron_or_zone_is_refused_with_what_is_wrong() {
        for bad in ["", "* * *", "0 0 9 * * MON", "61 * * * *", "0 9 * * FUNDAY"] {
            assert!(parse_cron(bad).is_err(), "{bad:?}");
        }
        assert!(parse_zone("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
        assert!(parse_zone("Europe/Paris").is_ok());
    }

    #[test]
    fn after_downtime_only_the_latest_missed_occurrence_fires_if_recent_else_it_is_skipped() {
        let hourly = sched(
            When::Cron("0 * * * *".into()),
            "UTC",
            ms("2026-12-01T00:00:00Z"),
            None,
        );
        let t = timing(&hourly).expect("timing");
        let hour = 3_600_000;
        // Nothing due before the first occurrence after creation.
        assert_eq!(
            due(&hourly, &t, ms("2026-12-01T00:30:00Z"), hour),
            Due::Nothing
        );
        // Down from 00:30 to 05:10: 01:00…05:00 were missed; 05:00 is 10 minutes old.
        assert_eq!(
            due(&hourly, &t, ms("2026-12-01T05:10:00Z"), hour),
            Due::Fire(ms("2026-12-01T05:00:00Z"))
        );
        // The same with no catch-up allowed: 10 minutes is too late.
        assert_eq!(
            due(&hourly, &t, ms("2026-12-01T05:10:00Z"), 0),
            Due::Skip(ms("2026-12-01T05:00:00Z"))
        );
        // Once fired, the occurrence is not due again.
        let fired = Schedule {
            last_fired_ms: Some(ms("2026-12-01T05:00:00Z")),
            ..hourly.clone()
        };
        assert_eq!(
            due(&fired, &t, ms("2026-12-01T05:59:59Z"), hour),
            Due::Nothing
        );
        assert_eq!(
            due(&fired, &t, ms("2026-12-01T06:00:01Z"), hour),
            Due::Fire(ms("2026-12-01T06:00:00Z"))
        );
        let off = Schedule {
            enabled: false,
            ..hourly
        };
        assert_eq!(
            due(&off, &t, ms("2026-12-01T05:10:00Z"), hour),
            Due::Nothing
        );
    }

    #[test]
    fn a_one_time_schedule_fires_once() {
        let at = ms("2026-12-01T10:00:00Z");
        let s = sched(When::Once(at), "UTC", at - 5_000, None);
        let t = timing(&s).expect("timing");
        assert_eq!(due(&s, &t, at - 1, 0), Due::Nothing);
        assert_eq!(next(&t, at - 1, 5), [at]);
        assert_eq!(due(&s, &t, at + 500, 0), Due::Fire(at));
        let done = Schedule {
            last_fired_ms: Some(at),
            ..s
        };
        assert_eq!(due(&done, &t, at + 500, 0), Due::Nothing);
        assert!(next(&t, at, 5).is_empty());
    }
}
