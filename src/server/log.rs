//! The server's log: one line per event on stderr (a file when run by
//! `kt server start`, the journal under systemd), with a UTC timestamp.
//! Secrets never reach it: callers log fingerprints and codes, not bodies.

use std::io::Write;

pub fn line(level: &str, message: std::fmt::Arguments<'_>) {
    let now = crate::clock::rfc3339_now();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{now} {level} {message}");
}

macro_rules! log_info {
    ($($arg:tt)*) => { $crate::server::log::line("INFO", format_args!($($arg)*)) };
}
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::server::log::line("WARN", format_args!($($arg)*)) };
}
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::server::log::line("ERROR", format_args!($($arg)*)) };
}
pub(crate) use {log_error as error, log_info as info, log_warn as warn};
