//! Wall-clock time as kt writes it: Unix seconds for protocol fields and
//! comparisons, `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) in
//! manifests and logs. Shared by the server, the client, backup and verify.

use time::macros::format_description;
use time::OffsetDateTime;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time. Times outside the years
/// -9999..=9999 (never met: kt formats the clock and file times) are
/// clamped to the nearest end of that range rather than failing.
pub fn rfc3339(unix: i64) -> String {
    let instant = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(if unix < 0 {
        time::PrimitiveDateTime::MIN.assume_utc()
    } else {
        time::PrimitiveDateTime::MAX.assume_utc()
    });
    instant
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .expect("every field of the format is known")
}

pub fn rfc3339_now() -> String {
    rfc3339(unix_now())
}

/// The local time as `YYYY-MM-DD_HH-MM-SS`: the stamp of backup names and
/// of set-aside copies (`.ssl.bak.<stamp>`), sortable and shell-safe.
pub fn local_stamp_now() -> String {
    let now = unix_now() as libc::time_t;
    // SAFETY: localtime_r fills the zeroed tm from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02}_{:02}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_816_823), "2026-11-27T22:00:23Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(super::rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn now_is_now() {
        let now = super::unix_now();
        assert!(now > 1_700_000_000);
        assert!(super::rfc3339_now() >= super::rfc3339(now));
    }
}
