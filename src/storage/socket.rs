//! The cluster's Unix socket, for the documented manual commands run as
//! the service account (`sudo -u keytrustee pg_dump -c -p 11381
//! keytrustee`, `psql -p 11381`, the restore procedure's drop and create).
//!
//! - **Where.** `/tmp/.kt-pg-<uid>-<port>/.s.PGSQL.<port>`: short whatever
//!   the instance path (a socket path must fit in 107 bytes), outside the
//!   data directory (a base backup would copy the socket's lock file to
//!   the passive, where it names a live postmaster when both run on one
//!   host), and a directory of the service account's, mode 0700: only that
//!   account (and root) can reach the socket at all. An existing directory
//!   of that name that is not the account's own 0700 directory is refused
//!   (someone else made it first), never used. PostgreSQL touches its
//!   socket lock file hourly, which keeps /tmp cleaners away, as with its
//!   own default of /tmp.
//! - **Found by default.** libpq's compiled-in socket directory on Debian,
//!   Ubuntu and RHEL is `/var/run/postgresql`. Run as root, kt links
//!   `/var/run/postgresql/.s.PGSQL.<port>` to the socket, only once the
//!   socket directory is checked to be the account's own (the link never
//!   leads into a directory someone else made); a stop run as root removes
//!   the link and the emptied directory. A link there that points elsewhere
//!   and still leads somewhere, or any other file, is left alone with a
//!   warning. So the documented command lines work verbatim. Started
//!   without root there is no link: `-h <dir>` (shown by `kt db status`).
//! - **Who.** `pg_hba.conf` admits Unix-socket connections for the
//!   instance's database user only, by peer authentication mapped to the
//!   service account alone (`pg_ident.conf`, map `kt`): no password, and no
//!   other local user, root included. TCP stays SCRAM.

use std::path::{Path, PathBuf};

use crate::account::Account;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::instance::DB_USER;

/// libpq's default socket directory on the distributions kt runs on.
pub const LIBPQ_DEFAULT_DIR: &str = "/var/run/postgresql";

/// The marker of kt's rule in `pg_hba.conf`.
const HBA_MARKER: &str = "# kt: the service account over the Unix socket (peer)";
/// kt's ident map name.
const MAP: &str = "kt";
/// The comment above kt's ident line.
const IDENT_COMMENT: &str = "# kt: the service account is the instance's database user over the Unix socket";

/// The socket directory of a cluster run by `uid` on `port`.
pub fn dir(uid: u32, port: u16) -> PathBuf {
    PathBuf::from(format!("/tmp/.kt-pg-{uid}-{port}"))
}

/// The socket file itself.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Makes the socket directory (0700, the account's), or checks that the
/// existing one is exactly that.
pub fn prepare_dir(dir: &Path, account: &Account) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        // /tmp is sticky: once made, nobody else can move it away.
        Ok(()) => account.chown(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => check_dir(dir, account),
        Err(e) => Err(Error::env(format!("cannot create the database socket directory {}", dir.display())).because_err(&e)),
    }
}

/// The socket directory is the account's own 0700 directory (not a link,
/// not someone else's): the only place kt lets the socket be, and the only
/// one it links to.
fn check_dir(dir: &Path, account: &Account) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(dir).env_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != account.uid || meta.permissions().mode() & 0o777 != 0o700 {
        return Err(Error::env(format!(
            "{} exists but is not a 0700 directory of {}: the database socket cannot go there",
            dir.display(),
            account.name
        ))
        .with_hint("someone else created it: remove it (check who made it first), then start again"));
    }
    Ok(())
}

/// pg_ctl's `-o` text that puts the socket in `dir`: pg_ctl hands it to a
/// shell, so the path is single-quoted.
pub fn postgres_option(dir: &Path) -> Result<String> {
    let text = dir.to_str().ok_or_else(|| Error::usage(format!("{} is not UTF-8", dir.display())))?;
    if text.contains(['\n', '\0']) {
        return Err(Error::usage("the socket directory name holds a newline"));
    }
    Ok(format!("-k '{}'", text.replace('\'', r"'\''")))
}

/// Links libpq's default socket path to ours (run as root), once
/// [`prepare_dir`] made or accepted `dir`: checked again right here, so
/// the link never leads into a directory someone else controls. Returns a
/// note when it could not link (the documented commands then need `-h DIR`).
pub fn link_default(dir: &Path, port: u16, account: &Account) -> Option<String> {
    if let Err(e) = check_dir(dir, account) {
        return Some(format!("not linking the database socket: {e}"));
    }
    let default_dir = Path::new(LIBPQ_DEFAULT_DIR);
    if !default_dir.is_dir() {
        return Some(format!("{LIBPQ_DEFAULT_DIR} does not exist: reach the database socket with -h {}", dir.display()));
    }
    let link = socket_path(default_dir, port);
    let target = socket_path(dir, port);
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let points = std::fs::read_link(&link).ok();
            if points.as_deref() == Some(target.as_path()) {
                return None;
            }
            // A dead link (a removed instance's): replaced. A live one is
            // someone else's socket.
            if link.exists() {
                return Some(format!("{} leads to another socket: left alone; use -h {}", link.display(), dir.display()));
            }
            let _ = std::fs::remove_file(&link);
        }
        Ok(_) => {
            return Some(format!("{} belongs to another PostgreSQL: left alone; use -h {}", link.display(), dir.display()));
        }
        Err(_) => {}
    }
    match std::os::unix::fs::symlink(&target, &link) {
        Ok(()) => None,
        Err(e) => Some(format!("cannot link {} ({e}): use -h {}", link.display(), dir.display())),
    }
}

/// Whether libpq's default path leads to this cluster's socket (so the
/// documented commands need no `-h`).
pub fn default_is_linked(dir: &Path, port: u16) -> bool {
    std::fs::read_link(socket_path(Path::new(LIBPQ_DEFAULT_DIR), port)).ok().as_deref() == Some(socket_path(dir, port).as_path())
}

/// Removes the link [`link_default`] made, and only that.
pub fn unlink_default(dir: &Path, port: u16) {
    if default_is_linked(dir, port) {
        let _ = std::fs::remove_file(socket_path(Path::new(LIBPQ_DEFAULT_DIR), port));
    }
}

/// After the cluster stopped (PostgreSQL removed its socket and lock
/// file): the link, and the directory once it is empty, go too, so no
/// stale directory waits in /tmp for the next start.
pub fn remove_after_stop(dir: &Path, port: u16) {
    unlink_default(dir, port);
    let _ = std::fs::remove_dir(dir);
}

/// kt's `pg_hba.conf` rule, first in the file (the first match decides).
fn hba_block() -> String {
    format!("{HBA_MARKER}\n{}\n", hba_rule())
}

fn hba_rule() -> String {
    format!("local   all       {DB_USER}  peer map={MAP}")
}

fn ident_line(account: &Account) -> String {
    format!("{MAP}  {}  {DB_USER}\n", account.name)
}

/// A new cluster's `pg_hba.conf`: the peer rule, then SCRAM over TCP from
/// this host only.
pub fn initial_hba() -> String {
    format!(
        "{}# Key Trustee Server: password (SCRAM) connections from this host only.\n\
         # TYPE  DATABASE  USER  ADDRESS       METHOD\n\
         host    all       all   127.0.0.1/32  scram-sha-256\n\
         host    all       all   ::1/128       scram-sha-256\n",
        hba_block()
    )
}

/// Adds the peer rule and the ident mapping where they are missing (an
/// instance made before them, or a passive whose files came from an
/// active with another account name; the map then names this host's
/// account alone). Returns whether anything changed (the running cluster
/// must then reload). Call it as the service account, never as root in
/// that account's directory.
pub fn ensure_peer_rule(data_dir: &Path, account: &Account) -> Result<bool> {
    let hba_path = data_dir.join("pg_hba.conf");
    let ident_path = data_dir.join("pg_ident.conf");
    let hba = std::fs::read_to_string(&hba_path).env_context(|| format!("cannot read {}", hba_path.display()))?;
    let ident = std::fs::read_to_string(&ident_path).unwrap_or_default();
    let mut changed = false;
    // Both lines of the block, in order, at the top: the first match decides.
    if !hba.starts_with(&hba_block()) {
        let rest: String = hba
            .lines()
            .filter(|l| *l != HBA_MARKER && words(l) != words(&hba_rule()))
            .map(|l| format!("{l}\n"))
            .collect();
        fsutil::write_atomic(&hba_path, format!("{}{rest}", hba_block()).as_bytes(), 0o600, Some(account))?;
        changed = true;
    }
    // The map: exactly one `kt` line, this account's.
    let our_line = ident_line(account);
    let ours = words(&our_line);
    let kt_lines: Vec<&str> = ident.lines().filter(|l| words(l).first() == Some(&MAP)).collect();
    if kt_lines.len() != 1 || words(kt_lines[0]) != ours {
        let mut text: String = ident
            .lines()
            .filter(|l| words(l).first() != Some(&MAP) && *l != IDENT_COMMENT)
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(IDENT_COMMENT);
        text.push('\n');
        text.push_str(&ident_line(account));
        fsutil::write_atomic(&ident_path, text.as_bytes(), 0o600, Some(account))?;
        changed = true;
    }
    Ok(changed)
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A new cluster's ident map.
pub fn write_initial_ident(data_dir: &Path, account: &Account) -> Result<()> {
    let path = data_dir.join("pg_ident.conf");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(IDENT_COMMENT);
    text.push('\n');
    text.push_str(&ident_line(account));
    fsutil::write_atomic(&path, text.as_bytes(), 0o600, Some(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_whatever_the_instance_path() {
        let d = dir(4_294_967_294, 65535);
        assert!(socket_path(&d, 65535).as_os_str().len() < 60);
    }

    #[test]
    fn the_option_survives_the_shell() {
        assert_eq!(postgres_option(Path::new("/tmp/a b")).unwrap(), "-k '/tmp/a b'");
        assert_eq!(postgres_option(Path::new("/tmp/it's")).unwrap(), r"-k '/tmp/it'\''s'");
        assert!(postgres_option(Path::new("/tmp/a\nb")).is_err());
    }

    #[test]
    fn the_peer_rule_comes_first_and_is_added_once() {
        let tmp = std::env::temp_dir().join(format!("kt-socket-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("pg_hba.conf"), "host all all 127.0.0.1/32 scram-sha-256\n").unwrap();
        std::fs::write(tmp.join("pg_ident.conf"), "# MAPNAME SYSTEM-USERNAME PG-USERNAME\n").unwrap();
        let account = Account::current().unwrap();
        assert!(ensure_peer_rule(&tmp, &account).unwrap());
        let hba = std::fs::read_to_string(tmp.join("pg_hba.conf")).unwrap();
        assert!(hba.starts_with(HBA_MARKER), "{hba}");
        assert!(hba.ends_with("host all all 127.0.0.1/32 scram-sha-256\n"));
        let ident = std::fs::read_to_string(tmp.join("pg_ident.conf")).unwrap();
        assert!(ident.contains(&format!("kt  {}  {DB_USER}", account.name)), "{ident}");
        assert!(!ensure_peer_rule(&tmp, &account).unwrap(), "the second run changes nothing");
        assert!(initial_hba().starts_with(&hba_block()));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
