//! `kt schedule run`: the cron file's entries run by kt itself, in the
//! foreground, for containers and hosts without cron.
//!
//! One run at a time: entries that fall due while another runs run once
//! when it ends (a missed run is never replayed twice), and an entry's next
//! time is counted from the end of its run, so a job never queues behind
//! itself. Each run is a child process in its own process group (a signal
//! to the foreground group does not reach it), as the entry's account with
//! that account's HOME and keyring, stdout dropped as in the cron line.
//! SIGTERM or SIGINT stops the loop: a running backup is waited for, then
//! [`run`] returns.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::schedule::cronfile::Entry;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT set the flag [`run`] watches, instead of
/// ending the process.
pub fn stop_on_signals() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
    &STOP
}

/// What the loop reports as it goes.
pub enum Event<'a> {
    Next { entry: &'a Entry, at: DateTime<Local> },
    Started { entry: &'a Entry },
    Finished { entry: &'a Entry, status: ExitStatus, took: Duration },
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

/// Runs `entry` once, now, and waits for it (signals do not stop it).
pub fn run_once(entry: &Entry) -> Result<ExitStatus> {
    let account = account_for(entry)?;
    let mut cmd = Command::new(&entry.argv[0]);
    cmd.args(&entry.argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).process_group(0);
    if account.is_other_than_current() {
        account.apply(&mut cmd);
        // The account's own keyring, as under cron.
        cmd.env_remove("GNUPGHOME");
    }
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
        let status = run_once(entry)?;
        on_event(Event::Finished { entry, status, took: started.elapsed() });
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
