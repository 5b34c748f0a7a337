//! Confdir drift between the two hosts of a pair (`kt ha status --peer`).
//!
//! The passive runs with a copy of the active's confdir, made with the
//! documented `kt ha sync -zcav --exclude .ssl`; anything changed on one
//! host since (a setting, the server key, the replication password) and
//! not synced again is drift, and a failover onto a drifted passive would
//! serve with something else. Drift is found the way an operator would:
//! a dry run of that sync from this host to the peer over the remote
//! shell (`-a -c -n -i --delete`, through the sync module's façade,
//! [`crate::sync::run`]), whose itemized lines are the paths that differ.
//!
//! What is left out, because it belongs to one host:
//! - `.ssl` (the host's certificate, key and its own settings,
//!   `.ssl/host.conf`, see [`crate::hostconf`]) and `.ssl.*` (`kt cert`'s
//!   previous and staged copies of it);
//! - in `keytrustee.conf`, the host-specific keys
//!   ([`crate::hostconf::HOST_KEYS`]): when the dry run says the file
//!   differs, the peer's copy is fetched (a second session, a real
//!   transfer into a private temporary directory) and only the shared
//!   keys are compared;
//! - directories whose modification time alone differs (`.d..t......`):
//!   a directory's time changes whenever a file in it is replaced, which
//!   says nothing about what it holds.
//!
//! This module only drives `crate::sync`; the sync module never knows of HA.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::hostconf;
use crate::instance::{Instance, CONFIG_FILE};
use crate::sync::{self, FileKind, Item, ListOptions, Location, ReceiveOptions, RemoteShell, SessionOptions};

/// Where the peer's confdir is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfdir {
    /// `[user@]host`, as the remote shell takes it.
    pub host: String,
    pub confdir: PathBuf,
}

impl PeerConfdir {
    /// `[USER@]HOST[:CONFDIR]`; CONFDIR defaults to `default_confdir`
    /// (the documented layout has the same path on both hosts).
    pub fn parse(spec: &str, default_confdir: &Path) -> Result<PeerConfdir> {
        let bad = |why: &str| {
            Error::usage(format!("invalid --peer {spec:?}: {why}"))
                .with_hint("give [USER@]HOST[:CONFDIR], e.g. root@kts02.example.com:/var/lib/keytrustee/.keytrustee")
        };
        let (host, confdir) = match spec.split_once(':') {
            Some((h, "")) => (h, default_confdir.to_path_buf()),
            Some((h, c)) if c.starts_with('/') => (h, PathBuf::from(c)),
            Some(_) => return Err(bad("CONFDIR must be an absolute path")),
            None => (spec, default_confdir.to_path_buf()),
        };
        let name = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
        if name.is_empty() || host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("no valid host"));
        }
        Ok(PeerConfdir { host: host.to_string(), confdir })
    }
}

impl std::fmt::Display for PeerConfdir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.confdir.display())
    }
}

/// How the peer is reached: the remote shell and kt's command there.
pub type Reach = RemoteShell;

/// The drift between this host's confdir and the peer's.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// `[user@]host:confdir`.
    pub peer: String,
    /// The paths that differ, as `kt ha sync -n -i` prints them from this
    /// host to the peer (`<f.st...... pubring.gpg`, `*deleting x`, ...).
    pub changes: Vec<String>,
    /// The shared keys of keytrustee.conf whose values differ.
    pub settings: Vec<String>,
    /// The documented sync that ends the drift (when this host holds the
    /// copy both should have).
    pub fix: String,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The problem line for the status.
    pub fn problem(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut text = format!("the confdir differs from the peer's ({}): {} path(s)", self.peer, self.changes.len());
        if !self.settings.is_empty() {
            text.push_str(&format!("; keytrustee.conf differs in {}", self.settings.join(", ")));
        }
        text.push_str(&format!("; if this host's copy is the right one: {}", self.fix));
        Some(text)
    }
}

/// The filter of the comparison: the host's own files left out.
fn filter() -> Result<sync::Filter> {
    sync::filter_from(&[(false, "/.ssl".into()), (false, "/.ssl.*".into())])
}

/// Compares `instance`'s confdir with the peer's (see the module doc).
pub fn check(instance: &Instance, peer: &PeerConfdir, reach: &Reach) -> Result<Drift> {
    let local = &instance.layout.confdir;
    let session = SessionOptions {
        list: ListOptions { recursive: true, links: true, devices: true, checksum: true },
        receive: ReceiveOptions {
            perms: true,
            times: true,
            owner: true,
            group: true,
            devices: true,
            checksum: true,
            delete: true,
            dry_run: true,
            filter: filter()?,
            ..ReceiveOptions::default()
        },
        compress: false,
        report_items: true,
    };
    let mut src = local.as_os_str().to_os_string();
    src.push("/");
    let dest = Location::Remote { host: peer.host.clone().into(), path: peer.confdir.clone().into_os_string() };
    let mut items: Vec<Item> = Vec::new();
    let outcome = sync::run(&[Location::Local(src.into())], &dest, &session, reach, &mut |i: &Item| items.push(i.clone()), &crate::progress::Silent)?;
    if let Some(first) = outcome.errors.first() {
        return Err(Error::env(format!("the peer could not compare its confdir {}", peer.confdir.display())).because(first.clone()));
    }
    let fix = format!("kt ha sync -zcav --exclude .ssl {}/ {}", local.display(), peer);
    let mut drift = Drift { peer: peer.to_string(), changes: Vec::new(), settings: Vec::new(), fix };
    for item in items {
        if item.kind == FileKind::Dir && item.code == ".d..t......" {
            continue;
        }
        if item.path == CONFIG_FILE.as_bytes() && item.kind == FileKind::File && !item.code.contains('+') {
            drift.settings = shared_differences(instance, peer, reach)?;
            if drift.settings.is_empty() {
                continue;
            }
        }
        drift.changes.push(item.line());
    }
    Ok(drift)
}

/// Fetches the peer's keytrustee.conf and names the shared keys whose
/// values differ from this host's file.
fn shared_differences(instance: &Instance, peer: &PeerConfdir, reach: &Reach) -> Result<Vec<String>> {
    let here = Config::load(&instance.layout.config_file())?;
    let theirs = fetch_config(peer, reach)?;
    let mut keys: Vec<String> = here.values().keys().chain(theirs.values().keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    Ok(keys.into_iter().filter(|k| !hostconf::is_host_key(k) && here.get(k) != theirs.get(k)).collect())
}

/// Most bytes of a keytrustee.conf fetched for comparison.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn fetch_config(peer: &PeerConfdir, reach: &Reach) -> Result<Config> {
    // Removed when dropped, whatever happens.
    let dir = crate::gnupg::PrivateDir::create(std::env::temp_dir().join(format!("kt-drift-{}", std::process::id())))?;
    let session = SessionOptions {
        list: ListOptions::default(),
        receive: ReceiveOptions::default(),
        compress: false,
        report_items: false,
    };
    let src = Location::Remote { host: peer.host.clone().into(), path: peer.confdir.join(CONFIG_FILE).into_os_string() };
    sync::run(&[src], &Location::Local(dir.0.clone()), &session, reach, &mut |_| {}, &crate::progress::Silent)?;
    let file = dir.0.join(CONFIG_FILE);
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if size > MAX_CONFIG_BYTES {
        return Err(Error::problem(format!("the peer's {CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Config::load(&file).map_err(|e| Error::problem(format!("the peer's {CONFIG_FILE} cannot be read")).because(e))
}

/// The status with its drift, for `--json`: the status's fields and
/// `drift` (null without `--peer`).
#[derive(Debug, Serialize)]
pub struct StatusWithDrift<'a> {
    #[serde(flatten)]
    pub status: &'a crate::ha::status::HaStatus,
    pub drift: Option<&'a Drift>,
}

/// Adds the drift (or the failure to find it) to `status`: either makes
/// it degraded. A peer that cannot be reached is a problem of the status,
/// not an error of the command: the replication state is still worth
/// printing.
pub fn apply(status: &mut crate::ha::status::HaStatus, drift: &Result<Drift>) {
    match drift {
        Ok(d) => status.problems.extend(d.problem()),
        Err(e) => status.problems.push(format!("cannot compare the confdir with the peer's: {}", e.to_string().trim_end())),
    }
    status.healthy = status.problems.is_empty();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let d = Path::new("/var/lib/keytrustee/.keytrustee");
        assert_eq!(PeerConfdir::parse("kts02", d).unwrap(), PeerConfdir { host: "kts02".into(), confdir: d.into() });
        assert_eq!(
            PeerConfdir::parse("root@kts02:/srv/kt/.keytrustee", d).unwrap(),
            PeerConfdir { host: "root@kts02".into(), confdir: "/srv/kt/.keytrustee".into() }
        );
        assert_eq!(PeerConfdir::parse("kts02:", d).unwrap().confdir, d);
        for bad in ["", "@", "-oProxyCommand=x", "kts02:relative", "a b:/x", ":/x"] {
            assert!(PeerConfdir::parse(bad, d).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hosts_own_files_are_left_out() {
        let f = filter().unwrap();
        let rules: Vec<_> = f.rules().map(|(_, p)| p.to_string()).collect();
        assert_eq!(rules, ["/.ssl", "/.ssl.*"]);
    }
}
