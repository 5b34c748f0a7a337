//! The cron file `kt schedule` owns (default `/etc/cron.d/kt`): cron.d's
//! format (five time fields or an `@` nickname, the user, the command), one
//! entry per line, each after a comment line naming it:
//!
//! ```text
//! # kt-schedule: nightly
//! 30 2 * * * keytrustee /usr/local/bin/kt -c /var/lib/keytrustee/.keytrustee backup --quiet ... >/dev/null
//! ```
//!
//! The file is the only state: `list`, `remove` and `kt schedule run` read
//! it back, so a host with cron and a container running `kt schedule run`
//! run the same entries. Lines kt did not write are kept as they are. The
//! file is replaced atomically (temp file, fsync, rename), mode 0644 (cron
//! ignores a cron.d file that others can write), and no `crontab` binary is
//! involved.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::schedule::expr::Schedule;

pub const DEFAULT_PATH: &str = "/etc/cron.d/kt";
const MARK: &str = "# kt-schedule: ";
/// stdout of a scheduled run (the backup's path) is dropped, so that cron
/// mails only what goes to stderr: errors.
const TAIL: &str = " >/dev/null";
/// The PATH the cron file sets for its entries (and `kt schedule run`
/// gives them).
pub const PATH: &str = crate::account::JOB_PATH;
/// The longest line kt writes: Debian's cron cuts a line at 1000 bytes
/// (MAX_COMMAND) and runs what is left, so a long line is refused well
/// before that.
pub const MAX_LINE: usize = 900;

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub schedule: Schedule,
    /// The account the command runs as (cron.d's user field).
    pub user: String,
    /// The command: argv[0] is kt's absolute path.
    pub argv: Vec<String>,
}

#[derive(Debug, Clone)]
enum Line {
    Other(String),
    Entry(Entry),
}

#[derive(Debug, Clone)]
pub struct CronFile {
    pub path: PathBuf,
    lines: Vec<Line>,
}

impl Entry {
    /// The cron.d line (without the naming comment).
    pub fn line(&self) -> String {
        format!("{} {} {}{TAIL}", self.schedule.source, self.user, self.command())
    }

    /// The command as a shell would read it, for display.
    pub fn command(&self) -> String {
        self.argv.iter().map(|a| shlex::try_quote(a).map(|q| q.into_owned()).unwrap_or_default()).collect::<Vec<_>>().join(" ")
    }
}

/// Entry names: short, and safe in a comment, a unit name and a shell.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("bad schedule name '{name}'")).with_hint("letters, digits, - and _ (at most 64)"))
    }
}

/// An argument cron would change before the shell sees it (`%` ends the
/// command; a newline ends the line) is refused: kt would not be run with
/// the command line that was checked.
pub fn check_arg(arg: &str) -> Result<()> {
    if arg.contains('%') || arg.contains('\n') || arg.contains('\r') || arg.contains('\0') {
        return Err(Error::usage(format!("the argument {arg:?} cannot go into a cron line"))
            .with_hint("cron reads % as a newline: name the file or key without %"));
    }
    Ok(())
}

impl CronFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<CronFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
        };
        let mut lines = Vec::new();
        let mut pending: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            if let Some(name) = pending.take() {
                let entry = parse_entry(&name, raw).map_err(|why| {
                    Error::usage(format!("{}:{}: the entry {name} is not one kt can read: {why}", path.display(), n + 1))
                        .with_hint("fix or remove the line by hand, or kt schedule remove it")
                })?;
                lines.push(Line::Entry(entry));
                continue;
            }
            if let Some(name) = raw.strip_prefix(MARK) {
                pending = Some(name.trim().to_string());
                continue;
            }
            lines.push(Line::Other(raw.to_string()));
        }
        if let Some(name) = pending {
            return Err(Error::usage(format!("{}: the entry {name} has no line", path.display()))
                .with_hint("fix or remove the comment by hand"));
        }
        Ok(CronFile { path: path.to_path_buf(), lines })
    }

    /// Loads `path`, applies `change` and saves the result, holding an
    /// exclusive lock on the file's directory throughout, so that two
    /// `kt schedule add` at once both land (the file itself is replaced by
    /// rename, so its directory is what is locked). Nothing is written when
    /// `change` fails.
    pub fn edit<T>(path: &Path, change: impl FnOnce(&mut CronFile) -> Result<T>) -> Result<T> {
        let dir = crate::fsutil::parent_dir(path);
        let lock = std::fs::File::open(dir)
            .map_err(|e| Error::env(format!("cannot open {}", dir.display())).because_err(&e))
            .map_err(|e| e.with_hint("is cron installed? Use --cron-file, or kt schedule run / kt schedule systemd on a host without cron"))?;
        lock.lock().map_err(|e| Error::env(format!("cannot lock {}", dir.display())).because_err(&e))?;
        let mut file = CronFile::load(path)?;
        let out = change(&mut file)?;
        file.save()?;
        Ok(out)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries().find(|e| e.name == name)
    }

    /// A name not yet taken: `base`, `base-2`, ...
    pub fn free_name(&self, base: &str) -> String {
        (1..)
            .map(|i| if i == 1 { base.to_string() } else { format!("{base}-{i}") })
            .find(|n| self.get(n).is_none())
            .expect("an unbounded range")
    }

    pub fn add(&mut self, entry: Entry) -> Result<()> {
        if self.get(&entry.name).is_some() {
            return Err(Error::usage(format!("{} already has an entry named {}", self.path.display(), entry.name))
                .with_hint("choose another --name, or kt schedule remove it first"));
        }
        let length = entry.line().len();
        if length > MAX_LINE {
            return Err(Error::usage(format!("the cron line of {} would be {length} bytes, more than {MAX_LINE}", entry.name))
                .because("cron cuts a line at 1000 bytes and would run the rest")
                .with_hint("shorten the command: fewer or shorter paths and recipients (a --gpg-recipient-file, a fingerprint)"));
        }
        if self.lines.is_empty() {
            for header in [
                "# Written by kt schedule add; change it with kt schedule add / remove.",
                "SHELL=/bin/sh",
                &format!("PATH={PATH}"),
            ] {
                self.lines.push(Line::Other(header.to_string()));
            }
        }
        self.lines.push(Line::Entry(entry));
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<Entry> {
        let at = self.lines.iter().position(|l| matches!(l, Line::Entry(e) if e.name == name)).ok_or_else(|| {
            Error::usage(format!("{} has no entry named {name}", self.path.display())).with_hint("kt schedule list shows the names")
        })?;
        match self.lines.remove(at) {
            Line::Entry(e) => Ok(e),
            Line::Other(_) => unreachable!("checked above"),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text) => out.push_str(text),
                Line::Entry(e) => {
                    out.push_str(MARK);
                    out.push_str(&e.name);
                    out.push('\n');
                    out.push_str(&e.line());
                }
            }
            out.push('\n');
        }
        out
    }

    /// Replaces the file atomically, mode 0644.
    pub fn save(&self) -> Result<()> {
        let dir = crate::fsutil::parent_dir(&self.path);
        if !dir.is_dir() {
            return Err(Error::env(format!("the directory {} does not exist", dir.display()))
                .with_hint("is cron installed? Use --cron-file, or kt schedule run / kt schedule systemd on a host without cron"));
        }
        crate::fsutil::write_atomic(&self.path, self.render().as_bytes(), 0o644, None)?;
        // write_atomic creates with the mode, but the umask may have cut it.
        crate::fsutil::set_mode(&self.path, 0o644)
    }
}

fn parse_entry(name: &str, line: &str) -> std::result::Result<Entry, String> {
    let line = line.trim();
    let body = line.strip_suffix(TAIL.trim_start()).map(str::trim_end).ok_or("it does not end with >/dev/null")?;
    let mut rest = body;
    // cron separates fields by any run of spaces and tabs.
    let mut take = || {
        let word_end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let word = &rest[..word_end];
        rest = rest[word_end..].trim_start();
        word.to_string()
    };
    let first = take();
    let expr = if first.starts_with('@') {
        first
    } else {
        let mut fields = vec![first];
        for _ in 0..4 {
            fields.push(take());
        }
        fields.join(" ")
    };
    let user = take();
    let schedule = Schedule::parse(&expr).map_err(|e| e.to_string())?;
    let argv = shlex::split(rest).ok_or("its command does not parse as shell words")?;
    if user.is_empty() || argv.is_empty() {
        return Err("no user or no command".into());
    }
    Ok(Entry { name: name.to_string(), schedule, user, argv })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_separated_by_tabs_and_runs_of_spaces() {
        let e = parse_entry("n", "30\t2  *\t* *   keytrustee\t/usr/local/bin/kt -c /etc/kt --quiet backup --cleartext\t>/dev/null").unwrap();
        assert_eq!((e.schedule.source.as_str(), e.user.as_str()), ("30 2 * * *", "keytrustee"));
        assert_eq!(e.argv, ["/usr/local/bin/kt", "-c", "/etc/kt", "--quiet", "backup", "--cleartext"]);
        let r = parse_entry("r", "@reboot\tkeytrustee  /kt backup >/dev/null").unwrap();
        assert!(r.schedule.is_reboot() && r.user == "keytrustee" && r.argv == ["/kt", "backup"]);
    }

    #[test]
    fn refuses_a_line_cron_would_cut() {
        let path = Path::new("/nonexistent/kt");
        let mut file = CronFile { path: path.into(), lines: Vec::new() };
        let entry = |n: usize| Entry {
            name: "long".into(),
            schedule: Schedule::parse("@daily").unwrap(),
            user: "keytrustee".into(),
            argv: vec!["/kt".into(), "backup".into(), "x".repeat(n)],
        };
        let err = file.add(entry(MAX_LINE)).unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Usage);
        file.add(entry(MAX_LINE - 40)).unwrap();
        assert!(file.render().lines().all(|l| l.len() <= MAX_LINE));
    }
}
