//! The account PostgreSQL (and later the server) runs as.
//!
//! PostgreSQL refuses to run as root. When kt runs as root it hands the
//! instance's files to the service account (default `keytrustee`, created
//! when missing) and runs the database tools as that account. When kt runs
//! as an ordinary user, that user is the service account, so an instance can
//! live under any directory the user owns.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A Unix account: the identity kt's children run as and files belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The PATH a job started as cron starts it gets ([`Account::apply_as_job`];
/// the cron file `kt schedule` writes sets the same).
pub const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Account {
    /// The account this process runs as.
    pub fn current() -> Result<Account> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        lookup_by(Some(uid), None)?
            .ok_or_else(|| Error::env(format!("the current user id {uid} has no passwd entry")))
    }

    /// Looks an account up by uid.
    pub fn lookup_uid(uid: u32) -> Option<Account> {
        lookup_by(Some(uid), None).ok().flatten()
    }

    /// Looks an account up by name.
    pub fn lookup(name: &str) -> Result<Option<Account>> {
        lookup_by(None, Some(name))
    }

    /// The account to run PostgreSQL as: `name` when root (created when
    /// missing, with `home` as its home), else the current user.
    pub fn service(name: &str, home: &Path) -> Result<Account> {
        if !is_root() {
            return Account::current();
        }
        validate_name(name)?;
        if let Some(account) = Account::lookup(name)? {
            if account.uid == 0 {
                return Err(Error::usage(format!("service account {name} is root"))
                    .with_hint("PostgreSQL refuses to run as root: choose an ordinary account with --service-user"));
            }
            return Ok(account);
        }
        create_system_account(name, home)?;
        Account::lookup(name)?
            .ok_or_else(|| Error::env(format!("service account {name} was created but cannot be found")))
    }

    /// Whether children must switch to this account (we are someone else).
    pub fn is_other_than_current(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() != self.uid }
    }

    /// Configures `cmd` to run as this account, with a clean, explicit
    /// environment identity (HOME, USER, LOGNAME).
    pub fn apply(&self, cmd: &mut Command) {
        if self.is_other_than_current() {
            cmd.uid(self.uid).gid(self.gid);
            cmd.env("HOME", &self.home).env("USER", &self.name).env("LOGNAME", &self.name);
            // The child must not inherit a working directory it cannot enter.
            cmd.current_dir("/");
        }
    }

    /// Configures `cmd` the way cron starts a job (`kt schedule`'s runs,
    /// and the probes that must see what such a run will see): as this
    /// account (when it is not this process's), from `/`, in a new session
    /// (setsid), so that it has no controlling terminal of ours (it can
    /// neither read root's terminal nor be stopped by SIGTTOU under `stty
    /// tostop`) and a signal to our process group does not reach it; and
    /// with a clean environment: [`JOB_PATH`], the account's HOME, USER and
    /// LOGNAME, LANG=LC_ALL=C, nothing of ours (GNUPGHOME, KT_CONFDIR, ...)
    /// but TZ, so that the job reads the clock in the zone its times were
    /// planned in.
    pub fn apply_as_job(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", JOB_PATH)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("LANG", "C")
            .env("LC_ALL", "C");
        if let Some(tz) = std::env::var_os("TZ") {
            cmd.env("TZ", tz);
        }
        self.apply(cmd);
        cmd.current_dir("/");
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| if libc::setsid() == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
        }
    }

    /// Hands `path` (not following symlinks) to this account.
    pub fn chown(&self, path: &Path) -> Result<()> {
        if !self.is_other_than_current() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
            Error::env(format!("cannot give {} to {}", path.display(), self.name)).because_err(&e)
        })
    }

    /// Whether this account can enter `dir` and every directory above it.
    /// Returns the first directory it cannot enter.
    pub fn first_untraversable(&self, dir: &Path) -> Option<PathBuf> {
        if self.uid == 0 {
            return None;
        }
        let groups = supplementary_groups(&self.name, self.gid);
        let mut cursor = Some(dir);
        while let Some(p) = cursor {
            if let Ok(meta) = std::fs::metadata(p) {
                let mode = meta.mode();
                let ok = if meta.uid() == self.uid {
                    mode & 0o100 != 0
                } else if groups.contains(&meta.gid()) {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                };
                if !ok {
                    return Some(p.to_path_buf());
                }
            }
            cursor = p.parent();
        }
        None
    }
}

/// Account names as useradd accepts them; rejecting anything else also keeps
/// option-like names (`-o`) away from the command line.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("invalid service account name {name:?}"))
            .with_hint("use lower-case letters, digits, '_' and '-', starting with a letter"))
    }
}

fn create_system_account(name: &str, home: &Path) -> Result<()> {
    // Several kt processes may race to create the account (parallel tests,
    // two operators): useradd then fails on the passwd lock or because the
    // name exists. Retry a few times and accept the account if it appeared.
    let mut last_error = String::new();
    for attempt in 0..10 {
        if Account::lookup(name)?.is_some() {
            return Ok(());
        }
        let output = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"])
            .arg("--home-dir")
            .arg(home)
            .args(["--comment", "Key Trustee Server", "--"])
            .arg(name)
            .output();
        match output {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => last_error = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => {
                return Err(Error::env(format!("cannot create the service account {name}"))
                    .because(format!("cannot run useradd: {e}"))
                    .with_hint(format!("create it by hand (useradd --system {name}) or choose one with --service-user")))
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100 * (attempt + 1)));
    }
    if Account::lookup(name)?.is_some() {
        return Ok(());
    }
    Err(Error::env(format!("cannot create the service account {name}")).because(last_error))
}

fn lookup_by(uid: Option<u32>, name: Option<&str>) -> Result<Option<Account>> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r/getpwuid_r fill it and
    // point its strings into `buf`, which outlives every read below.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = match (uid, name) {
            (Some(uid), _) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result),
            (None, Some(name)) => {
                let cname = CString::new(name).map_err(|_| Error::usage("account name contains NUL"))?;
                libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result)
            }
            (None, None) => return Ok(None),
        };
        if rc != 0 {
            return Err(Error::env("cannot read the passwd database")
                .because(std::io::Error::from_raw_os_error(rc)));
        }
        if result.is_null() {
            return Ok(None);
        }
        let name = CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        let home = PathBuf::from(CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned());
        Ok(Some(Account { name, uid: pwd.pw_uid, gid: pwd.pw_gid, home }))
    }
}

fn supplementary_groups(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else { return vec![gid] };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: groups has `count` slots; getgrouplist writes at most that many.
    let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
    if rc < 0 {
        return vec![gid];
    }
    groups.truncate(count.max(0) as usize);
    groups
}

/// Makes this process run as `account` for good (supplementary groups,
/// group, then user), as `kt serve` does when started as root: the server
/// never needs root, so it never keeps it.
pub fn become_account(account: &Account) -> Result<()> {
    if !account.is_other_than_current() {
        return Ok(());
    }
    let fail = |what: &str| {
        Error::env(format!("cannot switch to the service account {} ({what})", account.name))
            .because(std::io::Error::last_os_error())
    };
    // SAFETY: plain syscalls with valid arguments; order matters (groups
    // and gid while still root, uid last).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(account.gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(account.uid) != 0 {
            return Err(fail("setuid"));
        }
        if libc::setuid(0) == 0 {
            return Err(Error::env("dropping root privileges did not stick"));
        }
    }
    std::env::set_var("HOME", &account.home);
    std::env::set_var("USER", &account.name);
    Ok(())
}

/// The name of group `gid`, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in lookup_by: getgrgid_r fills grp with pointers into buf.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned())
    }
}
