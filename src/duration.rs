//! The one duration grammar of the command line (`--lock-wait`,
//! `--max-age`): humantime's (`30s`, `10m`, `12h`, `2d`, `1h 30m`), plus a
//! bare number meaning seconds, as kt has always accepted.

use std::time::Duration;

/// Parses a duration; the error text is for clap to show as is.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a duration such as 30s, 10m, 12h or 2d");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_options_accept() {
        let s = Duration::from_secs;
        assert_eq!(parse("30").unwrap(), s(30));
        assert_eq!(parse("0").unwrap(), s(0));
        assert_eq!(parse("30s").unwrap(), s(30));
        assert_eq!(parse("10m").unwrap(), s(600));
        assert_eq!(parse(" 2h ").unwrap(), s(7200));
        assert_eq!(parse("2d").unwrap(), s(2 * 86_400));
        assert_eq!(parse("1h 30m").unwrap(), s(5400));
        assert_eq!(parse("1.5h").unwrap(), s(5400));
        for bad in ["", "soon", "-5", "5x", "m", "5 parsecs"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("is not a duration such as 30s"), "{bad}: {err}");
        }
    }
}
