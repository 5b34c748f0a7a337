//! Crontab(5) expressions, as cron reads them: the one adapter between kt
//! and the scheduling crate.
//!
//! croner evaluates the expression (next run times, month ends, leap days),
//! but it accepts more than crontab does (seconds and years fields, Quartz's
//! `L`, `W`, `#`, `?`, a `+` that changes the day rule) and reads some of
//! crontab's text its own way. So this module parses each field itself,
//! with crontab's grammar (lists, ranges, steps on `*` and ranges, month and
//! day names, 0 and 7 both Sunday), refuses anything else, and hands croner
//! only the resulting sets as plain numbers, with the day rule decided here:
//! crontab(5) runs a job when either day field matches if both are
//! restricted, and Vixie cron counts a field as unrestricted when it starts
//! with `*` (so `*/2` is unrestricted); otherwise both must match.
//!
//! The same sets are what [`Schedule::on_calendar`] translates into
//! systemd's `OnCalendar=`; the tests compare croner's next runs with
//! `systemd-analyze calendar` on that translation and with a brute-force
//! matcher written from crontab(5).

use std::str::FromStr;

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// A checked crontab expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written (trimmed): what goes into the cron file.
    pub source: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `@reboot`: once when cron (or `kt schedule run`) starts.
    Reboot,
    Calendar(Box<Calendar>),
}

#[derive(Debug, Clone)]
struct Calendar {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    /// 0 = Sunday .. 6 = Saturday (7 folded into 0).
    weekdays: Vec<u32>,
    /// crontab's "restricted": the field does not start with `*`.
    days_restricted: bool,
    weekdays_restricted: bool,
    cron: croner::Cron,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One field's grammar: its range and the names it accepts (index + base).
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    name_base: u32,
}

const FIELDS: [Field; 5] = [
    Field { what: "minute", min: 0, max: 59, names: &[], name_base: 0 },
    Field { what: "hour", min: 0, max: 23, names: &[], name_base: 0 },
    Field { what: "day of month", min: 1, max: 31, names: &[], name_base: 0 },
    Field { what: "month", min: 1, max: 12, names: &MONTHS, name_base: 1 },
    Field { what: "day of week", min: 0, max: 7, names: &DAYS, name_base: 0 },
];

impl Schedule {
    /// Parses `expr` with crontab(5)'s grammar; anything cron would not
    /// accept (or would read differently) is a usage error.
    pub fn parse(expr: &str) -> Result<Schedule> {
        let source = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let bad = |why: String| {
            Error::usage(format!("bad cron expression '{source}': {why}"))
                .with_hint("five fields: minute hour day-of-month month day-of-week (e.g. '30 2 * * *'), or @hourly, @daily, @weekly, @monthly, @yearly, @reboot")
        };
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@reboot" => return Ok(Schedule { source, kind: Kind::Reboot }),
            "@hourly" => "0 * * * *".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            s if s.starts_with('@') => return Err(bad(format!("unknown nickname {s}"))),
            _ => source.clone(),
        };
        let fields: Vec<&str> = expanded.split(' ').collect();
        if fields.len() != 5 {
            return Err(bad(format!("{} fields, cron wants 5", fields.len())));
        }
        let mut sets = Vec::with_capacity(5);
        for (text, field) in fields.iter().zip(FIELDS.iter()) {
            sets.push(parse_field(text, field).map_err(|why| bad(format!("{}: {why}", field.what)))?);
        }
        let mut weekdays: Vec<u32> = sets[4].iter().map(|d| d % 7).collect();
        weekdays.sort_unstable();
        weekdays.dedup();
        let days_restricted = !fields[2].starts_with('*');
        let weekdays_restricted = !fields[4].starts_with('*');
        // croner ORs the two day fields unless told otherwise; cron ORs
        // them only when both are restricted.
        let or_rule = days_restricted && weekdays_restricted;
        if !or_rule && !some_date_exists(&sets[2], &sets[3]) {
            // Under the AND rule a date that exists falls on every weekday
            // within 28 years (29 February too): none exists, none ever runs.
            return Err(bad("no month has any of these days: it would never run".into()));
        }
        // croner gets the sets, not the text: it reads nothing its own way.
        let numbers = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let plain = [numbers(&sets[0]), numbers(&sets[1]), numbers(&sets[2]), numbers(&sets[3]), numbers(&weekdays)].join(" ");
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .dom_and_dow(!or_rule)
            .build()
            .parse(&plain)
            .map_err(|e| bad(e.to_string()))?;
        let calendar = Calendar {
            minutes: sets[0].clone(),
            hours: sets[1].clone(),
            days: sets[2].clone(),
            months: sets[3].clone(),
            weekdays,
            days_restricted,
            weekdays_restricted,
            cron,
        };
        Ok(Schedule { source, kind: Kind::Calendar(Box::new(calendar)) })
    }

    /// `@reboot`: no calendar times.
    pub fn is_reboot(&self) -> bool {
        matches!(self.kind, Kind::Reboot)
    }

    /// The first run strictly after `after` (None for `@reboot`).
    pub fn next_after(&self, after: &DateTime<Local>) -> Option<DateTime<Local>> {
        match &self.kind {
            Kind::Reboot => None,
            Kind::Calendar(c) => c.next_after(after),
        }
    }

    /// The next `count` runs after `after`.
    pub fn next_runs(&self, after: &DateTime<Local>, count: usize) -> Vec<DateTime<Local>> {
        let mut out = Vec::with_capacity(count);
        let mut at = *after;
        while out.len() < count {
            match self.next_after(&at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// The same times as systemd `OnCalendar=` values (a timer fires at
    /// the earliest of several): one for the AND rule, two when cron ORs
    /// the day of month and the day of week. Empty for `@reboot`.
    pub fn on_calendar(&self) -> Vec<String> {
        let Kind::Calendar(c) = &self.kind else { return Vec::new() };
        let time = format!("{}:{}:00", list(&c.hours, 0, 23), list(&c.minutes, 0, 59));
        let months = list(&c.months, 1, 12);
        let days = list(&c.days, 1, 31);
        let weekdays = if c.weekdays.len() == 7 {
            String::new()
        } else {
            c.weekdays.iter().map(|d| SYSTEMD_DAYS[*d as usize]).collect::<Vec<_>>().join(",") + " "
        };
        if c.days_restricted && c.weekdays_restricted {
            vec![format!("{weekdays}*-{months}-* {time}"), format!("*-{months}-{days} {time}")]
        } else {
            vec![format!("{weekdays}*-{months}-{days} {time}")]
        }
    }
}

impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Schedule> {
        Schedule::parse(s)
    }
}

impl Calendar {
    /// cron matches the wall clock's fields, so croner is asked on the
    /// wall clock (naive local time, read as UTC) and each answer is then
    /// placed on the local time line, as cron places it: a time the clock
    /// skips (spring forward) runs when the skipped hour ends, once; a
    /// time the clock repeats (fall back) runs at its first occurrence
    /// only. Times returned are strictly increasing instants.
    fn next_after(&self, after: &DateTime<Local>) -> Option<DateTime<Local>> {
        let mut from = after.naive_local();
        for _ in 0..8 {
            let wall = self.cron.find_next_occurrence(&Utc.from_utc_datetime(&from), false).ok()?.naive_utc();
            let at = match instants_of(wall).first() {
                Some(t) => Some(*t),
                None => gap_end(wall),
            };
            match at {
                Some(t) if t > *after => return Some(t),
                _ => from = wall,
            }
        }
        None
    }
}

/// The first local time that exists after `wall`, a time the clock skips
/// (gaps end on a whole minute: 02:30 skipped gives 03:00).
fn gap_end(wall: NaiveDateTime) -> Option<DateTime<Local>> {
    (1..=24 * 60).find_map(|m| instants_of(wall + chrono::Duration::minutes(m)).first().copied())
}

/// The instants at which the local wall clock shows `wall`, earliest
/// first: none (skipped by a change to summer time), one, or two (repeated
/// when it ends). Asked of the C library's `localtime_r` (the system's
/// zone data and `TZ`): chrono 0.4's `Local.from_local_datetime` answers
/// wrongly around the changes (02:00 on a spring-forward day as existing,
/// a repeated hour's two instants latest first), which cron times meet.
pub fn instants_of(wall: NaiveDateTime) -> Vec<DateTime<Local>> {
    let w = wall.and_utc().timestamp();
    let mut out: Vec<i64> = Vec::new();
    // The offsets in force half a day around: every offset `wall` could
    // be read with (changes are months apart).
    for probe in [w - 43_200, w + 43_200] {
        if let Some(offset) = utc_offset_at(probe - utc_offset_at(probe).unwrap_or(0)) {
            let instant = w - offset;
            if utc_offset_at(instant) == Some(offset) && !out.contains(&instant) {
                out.push(instant);
            }
        }
    }
    out.sort_unstable();
    out.into_iter().filter_map(|i| Local.timestamp_opt(i, 0).single()).collect()
}

/// The local zone's offset from UTC (seconds east) at `instant`.
fn utc_offset_at(instant: i64) -> Option<i64> {
    let t = instant as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        Some(tm.tm_gmtoff)
    }
}

/// Whether some month of `months` has some day of `days` (29 February
/// counts: leap years come within 8 years).
fn some_date_exists(days: &[u32], months: &[u32]) -> bool {
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    months.iter().any(|m| days.iter().any(|d| *d <= LONGEST[*m as usize - 1]))
}

/// `*` for a full range, else the values, two digits each.
fn list(values: &[u32], min: u32, max: u32) -> String {
    if values.len() as u32 == max - min + 1 {
        return "*".into();
    }
    values.iter().map(|v| format!("{v:02}")).collect::<Vec<_>>().join(",")
}

/// One field: a comma-separated list of `*`, `N`, `N-M`, `*/S`, `N-M/S`,
/// numbers or (month, day of week) three-letter names. Sorted, unique.
fn parse_field(text: &str, field: &Field) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("bad step '{step}'"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (base, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if base == "*" {
            (field.min, field.max)
        } else if let Some((a_text, b_text)) = base.split_once('-') {
            let (a, mut b) = (value(a_text, field)?, value(b_text, field)?);
            // `fri-sun`: Sunday at the end of a range is 7, as in cron.
            if field.max == 7 && b == 0 && a > 0 && b_text.eq_ignore_ascii_case("sun") {
                b = 7;
            }
            if a > b {
                return Err(format!("the range {base} runs backwards"));
            }
            (a, b)
        } else {
            if step.is_some() {
                // Vixie cron and croner read `5/10` differently: refused.
                return Err(format!("'{item}': a step needs * or a range (e.g. {base}-{}/..)", field.max));
            }
            let v = value(base, field)?;
            (v, v)
        };
        let mut v = low;
        while v <= high {
            out.push(v);
            v += step.unwrap_or(1);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn value(text: &str, field: &Field) -> std::result::Result<u32, String> {
    if text.is_empty() {
        return Err("an empty value".into());
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + field.name_base);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a number{}", if field.names.is_empty() { String::new() } else { format!(" or a name ({})", field.names.join(", ")) }));
    }
    let v: u32 = text.parse().map_err(|_| format!("'{text}' is out of range"))?;
    if v < field.min || v > field.max {
        return Err(format!("{v} is outside {}-{}", field.min, field.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cron_refuses() {
        for bad in ["* * * *", "0 0 * * * *", "61 * * * *", "0 0 L * *", "0 0 * * 5#2", "0 0 ? * *", "5/10 * * * *", "0 0 * * 8", "0 0 * foo *", "@often", "*/0 * * * *", "10-5 * * * *", "0 0 * * mon-jan"] {
            assert!(Schedule::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refuses_what_never_runs_and_nothing_that_runs() {
        let now = Local::now();
        let horizon = now + chrono::Duration::days(28 * 366);
        for never in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 30-31 2 */2", "0 0 31 4 */9"] {
            let err = Schedule::parse(never).expect_err(never);
            assert!(err.message().contains("never run"), "{never}: {}", err.message());
        }
        // Rare but real: each has a run within 28 years.
        for rare in ["0 0 29 2 *", "0 0 29 2 mon", "0 0 29 2 */3", "0 0 31 * *", "0 0 30 2 mon", "0 0 29 2 fri-sun"] {
            let s = Schedule::parse(rare).unwrap_or_else(|e| panic!("{rare}: {}", e.message()));
            let next = s.next_after(&now).unwrap_or_else(|| panic!("{rare}: no next run"));
            assert!(next < horizon, "{rare}: {next}");
        }
    }

    #[test]
    fn sunday_ends_a_range_as_7() {
        let s = Schedule::parse("0 2 * * fri-sun").unwrap();
        assert_eq!(s.on_calendar(), ["Sun,Fri,Sat *-*-* 02:00:00"]);
        assert!(Schedule::parse("0 2 * * 5-0").is_err(), "only the name sun ends a range as 7");
        assert!(Schedule::parse("0 2 * * sun-sat").is_ok());
    }

    #[test]
    fn translates_the_day_rule() {
        assert_eq!(Schedule::parse("0 2 1 * mon").unwrap().on_calendar(), ["Mon *-*-* 02:00:00", "*-*-01 02:00:00"]);
        assert_eq!(Schedule::parse("0 2 */2 * 7").unwrap().on_calendar(), ["Sun *-*-01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31 02:00:00"]);
        assert_eq!(Schedule::parse("@weekly").unwrap().on_calendar(), ["Sun *-*-* 00:00:00"]);
    }
}

