//! `kt schedule run`: the cron file's entries run by kt itself, in the
//! foreground, for containers and hosts without cron.
//!
//! One run at a time: entries that fall due while another runs run once
//! when it ends (a missed run is never replayed twice), and an entry's next
//! time is counted from the end of its run, so a job never queues behind
//! itself. Each run is started as cron starts a job ([`Account::apply_as_job`]): as
//! the entry's account, in a session of its own, with a clean environment;
//! stdout dropped as in the cron line. A run that cannot be started is a
//! failed run, not the end of the loop. One runner per cron file
//! ([`lock`]). The caller decides when to stop (its signal handling sets
//! the flag [`run`] watches); a running backup is waited for first.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::schedule::cronfile::Entry;

/// Held while `kt schedule run` runs the entries of a cron file.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// The lock file of `cron_file`'s runner: beside it, hidden (cron skips
/// dot files in cron.d).
pub fn lock_path(cron_file: &Path) -> PathBuf {
    let name = cron_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kt".into());
    crate::fsutil::parent_dir(cron_file).join(format!(".{name}.run-lock"))
}

/// Takes the runner's lock on `cron_file` without waiting: a second
/// runner would run every entry twice, so it is refused (environment).
pub fn lock(cron_file: &Path) -> Result<RunLock> {
    let path = lock_path(cron_file);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        // An account that cannot create it can still lock a read-only handle.
        .or_else(|_| File::open(&path))
        .map_err(|e| Error::env(format!("cannot open the lock file {}", path.display())).because_err(&e))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(Error::env(format!("another kt schedule run is running the entries of {}", cron_file.display()))
            .because(format!("{} is locked", path.display()))
            .with_hint("stop it first: one runner per cron file, or each entry would run twice")),
        Err(TryLockError::Error(e)) => Err(Error::env(format!("cannot lock {}", path.display())).because_err(&e)),
    }
}

/// What the loop reports as it goes.
pub enum Event<'a> {
    Next { entry: &'a Entry, at: DateTime<Local> },
    Started { entry: &'a Entry },
    Finished { entry: &'a Entry, status: ExitStatus, took: Duration },
    /// The run could not be started (or waited for): a failed run.
    Failed { entry: &'a Entry, error: Error, took: Duration },
    Stopping,
}

/// Checks that every entry can be run from this process: its account
/// exists, and is this process's unless it runs as root.
pub fn check(entries: &[Entry]) -> Result<()> {
    for entry in entries {
        account_for(entry)?;
    }
    Ok(())
}

fn account_for(entry: &Entry) -> Result<Account> {
    let account = Account::lookup(&entry.user)?.ok_or_else(|| {
        Error::env(format!("the entry {} runs as {}, which does not exist", entry.name, entry.user))
    })?;
    if account.is_other_than_current() && !crate::account::is_root() {
        return Err(Error::env(format!("the entry {} runs as {}: this process cannot switch to it", entry.name, entry.user))
            .with_hint(format!("run kt schedule run as root or as {}", entry.user)));
    }
    Ok(account)
}

/// Runs `entry` once, now, as cron would, and waits for it (signals to
/// this process do not reach it).
pub fn run_once(entry: &Entry) -> Result<ExitStatus> {
    let account = account_for(entry)?;
    let mut cmd = Command::new(&entry.argv[0]);
    cmd.args(&entry.argv[1..]).stdin(Stdio::null()).stdout(Stdio::null());
    account.apply_as_job(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::env(format!("cannot run the entry {} ({})", entry.name, entry.argv[0])).because_err(&e))?;
    child.wait().map_err(|e| Error::env(format!("cannot wait for the entry {}", entry.name)).because_err(&e))
}

/// When each entry is due next: the runner's whole policy, apart from the
/// processes it starts.
#[derive(Debug)]
pub struct Plan {
    due: Vec<Option<DateTime<Local>>>,
}

impl Plan {
    /// `@reboot` entries are due at once (then never again), the others
    /// at their next time after `now`.
    pub fn new(entries: &[Entry], now: DateTime<Local>) -> Plan {
        Plan { due: entries.iter().map(|e| if e.schedule.is_reboot() { Some(now) } else { e.schedule.next_after(&now) }).collect() }
    }

    /// The entry to run at `now`, if one is due (the earliest first).
    pub fn ready(&self, now: DateTime<Local>) -> Option<usize> {
        let (at, i) = self.due.iter().enumerate().filter_map(|(i, d)| d.map(|d| (d, i))).min()?;
        (now >= at).then_some(i)
    }

    pub fn due(&self, i: usize) -> Option<DateTime<Local>> {
        self.due[i]
    }

    /// Entry `i` ran and ended at `now`: its next time counts from `now`,
    /// so the times it missed while running are not run at all, and other
    /// entries that fell due meanwhile stay due once (not once per missed
    /// time).
    pub fn ran(&mut self, entries: &[Entry], i: usize, now: DateTime<Local>) {
        self.due[i] = entries[i].schedule.next_after(&now);
    }
}

/// Runs the entries at their times until `stop` is set.
pub fn run(entries: &[Entry], stop: &AtomicBool, on_event: &mut dyn FnMut(Event)) -> Result<()> {
    check(entries)?;
    let mut plan = Plan::new(entries, Local::now());
    for (i, entry) in entries.iter().enumerate() {
        if let Some(at) = plan.due(i) {
            on_event(Event::Next { entry, at });
        }
    }
    loop {
        if stop.load(Ordering::SeqCst) {
            on_event(Event::Stopping);
            return Ok(());
        }
        // Short sleeps: the flag is checked, and a changed clock noticed.
        let Some(i) = plan.ready(Local::now()) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let entry = &entries[i];
        on_event(Event::Started { entry });
        let started = Instant::now();
        match run_once(entry) {
            Ok(status) => on_event(Event::Finished { entry, status, took: started.elapsed() }),
            Err(error) => on_event(Event::Failed { entry, error, took: started.elapsed() }),
        }
        plan.ran(entries, i, Local::now());
        if let Some(at) = plan.due(i) {
            on_event(Event::Next { entry, at });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use chrono::TimeZone;

    fn entry(name: &str, expr: &str) -> Entry {
        Entry { name: name.into(), schedule: Schedule::parse(expr).unwrap(), user: "nobody".into(), argv: vec!["true".into()] }
    }

    #[test]
    fn a_missed_run_runs_once_not_once_per_missed_time() {
        let entries = [entry("a", "* * * * *"), entry("b", "* * * * *")];
        // 1_800_000_000 is a whole hour (a multiple of 3600).
        let at = |m: u32| Local.timestamp_opt(1_800_000_000 + 60 * m as i64, 0).unwrap();
        let mut plan = Plan::new(&entries, at(0));
        assert_eq!(plan.ready(at(0)), None);
        // At minute 1 both are due; a runs and takes until minute 4.
        assert_eq!(plan.ready(at(1)), Some(0));
        plan.ran(&entries, 0, at(4));
        // b missed minutes 2, 3 and 4 behind a: it runs once, now.
        assert_eq!(plan.ready(at(4)), Some(1));
        plan.ran(&entries, 1, at(4));
        assert_eq!(plan.ready(at(4)), None, "a missed run replayed");
        assert_eq!((plan.due(0), plan.due(1)), (Some(at(5)), Some(at(5))));
    }
}
