//! `kt schedule`: backups at fixed times, checked before they are written
//! down. `expr` gives crontab(5) expressions their meaning (through
//! croner), `cronfile` reads and writes the cron.d file that holds the
//! entries, `runner` runs them without cron, `systemd` turns them into
//! timer units.

pub mod cronfile;
pub mod expr;
pub mod runner;
pub mod systemd;

pub use cronfile::{CronFile, Entry};
pub use expr::Schedule;
