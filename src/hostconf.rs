//! This host's own settings: `<confdir>/.ssl/host.conf`.
//!
//! In an HA pair the confdir is copied from the active to the passive
//! with the documented `kt ha sync -zcav --exclude .ssl ...`, so a re-sync
//! would overwrite the passive's `keytrustee.conf` and with it the keys
//! that belong to the host: its name, its role, its peer, where its TLS
//! files and database are. `.ssl` is the one directory that sync leaves
//! alone, and it already holds the host's identity (its certificate and
//! key); the host's settings live beside them.
//!
//! `host.conf` has the syntax of `keytrustee.conf` (a JSON object) and may
//! hold only the keys of [`HOST_KEYS`]; anything else is refused when the
//! instance is loaded (exit 2, naming the key), so that a shared setting
//! can never be pinned on one host by mistake. It is read after
//! `keytrustee.conf` and its keys override that file's.
//!
//! Who writes it: `kt ha init-passive` (the passive's own keys), `kt cert
//! replace|rollback` (the TLS paths, when the file holds them) and `kt
//! restore` (paths moved with the confdir). `kt init` does not: a single
//! host, or an active, keeps every key in `keytrustee.conf`, where the
//! operator edits them and where a key is never silently overridden; only
//! a passive, whose `keytrustee.conf` comes from the active, needs the
//! file. An instance without it reads every key from `keytrustee.conf`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::account::Account;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::fsutil;

/// The file's name inside `.ssl`.
pub const HOST_FILE: &str = "host.conf";

/// The keys that belong to one host of a pair, never to both.
pub const HOST_KEYS: [&str; 10] = [
    config::HOSTNAME,
    config::LISTEN,
    config::DB_PORT,
    config::PG_ROOTDIR,
    config::SSL_CERTIFICATE,
    config::SSL_PRIVATE_KEY,
    config::SSL_CA,
    config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT,
    config::HA_ROLE,
    config::HA_PEER,
];

/// `<confdir>/.ssl/host.conf`.
pub fn path(confdir: &Path) -> PathBuf {
    confdir.join(crate::instance::SSL_DIR).join(HOST_FILE)
}

pub fn is_host_key(key: &str) -> bool {
    HOST_KEYS.contains(&key)
}

/// The host file of `confdir`, checked (None when there is none).
pub fn load(confdir: &Path) -> Result<Option<Config>> {
    let file = path(confdir);
    if file.symlink_metadata().is_err() {
        return Ok(None);
    }
    let host = Config::load(&file)?;
    let foreign: Vec<&str> = host.values().keys().map(String::as_str).filter(|k| !is_host_key(k)).collect();
    if !foreign.is_empty() {
        return Err(Error::usage(format!("{} sets {}, which {} not host-specific", file.display(), foreign.join(", "), if foreign.len() == 1 { "is" } else { "are" }))
            .because(format!("this file may set only {}", HOST_KEYS.join(", ")))
            .with_hint("move shared settings to keytrustee.conf (the file `kt ha sync` carries to the peer)"));
    }
    Ok(Some(host))
}

/// `keytrustee.conf` of `confdir` with the host file's keys over it: the
/// configuration this host runs with.
pub fn load_merged(confdir: &Path) -> Result<Config> {
    let mut config = Config::load(&confdir.join(crate::instance::CONFIG_FILE))?;
    if let Some(host) = load(confdir)? {
        for (key, value) in host.values() {
            config.set(key, value.clone());
        }
    }
    Ok(config)
}

/// The host keys `config` sets, as the content of a host file.
pub fn host_part(config: &Config) -> Config {
    let mut host = Config::new();
    for key in HOST_KEYS {
        if let Some(value) = config.get(key) {
            host.set(key, value.clone());
        }
    }
    host
}

/// Writes (or replaces) the host file of `confdir` with the host keys of
/// `config`, atomically, 0600. `.ssl` must exist.
pub fn write(confdir: &Path, config: &Config, owner: Option<&Account>) -> Result<()> {
    host_part(config).save(&path(confdir), owner)
}

/// [`write`] under an undo journal: undone, the file is as it was (or
/// gone, if there was none).
pub fn write_recorded(journal: &mut crate::journal::Journal, confdir: &Path, config: &Config, owner: Option<&Account>) -> Result<()> {
    let file = path(confdir);
    let old = match std::fs::read(&file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::env(format!("cannot read {}", file.display())).because_err(&e)),
    };
    write(confdir, config, owner)?;
    let owner = owner.cloned();
    journal.record(format!("wrote this host's settings in {}", file.display()), move || match old {
        Some(bytes) => fsutil::write_atomic(&file, &bytes, 0o600, owner.as_ref()),
        None => std::fs::remove_file(&file).map_err(|e| Error::env(format!("cannot remove {}", file.display())).because_err(&e)),
    });
    Ok(())
}

/// Sets (Some) or removes (None) host keys in the host file, for those
/// keys the file holds already; no file, nothing to do. For commands that
/// change a host setting in `keytrustee.conf`: the file would otherwise
/// keep overriding the new value with the old one.
pub fn update(confdir: &Path, changes: &[(&str, Option<Value>)], owner: Option<&Account>) -> Result<()> {
    let Some(mut host) = load(confdir)? else { return Ok(()) };
    let mut changed = false;
    for (key, value) in changes {
        if host.get(key).is_none() {
            continue;
        }
        match value {
            Some(v) => host.set(key, v.clone()),
            None => host.remove(key),
        }
        changed = true;
    }
    if changed {
        fsutil::write_atomic(&path(confdir), &serialized(&host), 0o600, owner)?;
    }
    Ok(())
}

fn serialized(config: &Config) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(&Value::Object(config.values().clone())).expect("a JSON map always serializes");
    text.push('\n');
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confdir(name: &str, main: &str, host: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kt-hostconf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".ssl")).unwrap();
        std::fs::write(dir.join("keytrustee.conf"), main).unwrap();
        if let Some(h) = host {
            std::fs::write(dir.join(".ssl/host.conf"), h).unwrap();
        }
        dir
    }

    #[test]
    fn host_keys_override_and_others_are_refused() {
        let main = r#"{"HOSTNAME": "kts01", "HA_ROLE": "active", "DB_POOL_SIZE": 8}"#;
        let dir = confdir("merge", main, Some(r#"{"HOSTNAME": "kts02", "HA_ROLE": "passive"}"#));
        let merged = load_merged(&dir).unwrap();
        assert_eq!(merged.get("HOSTNAME").unwrap(), "kts02");
        assert_eq!(merged.get("HA_ROLE").unwrap(), "passive");
        assert_eq!(merged.get("DB_POOL_SIZE").unwrap(), 8);
        // Without the file: keytrustee.conf alone, as before.
        std::fs::remove_file(path(&dir)).unwrap();
        assert_eq!(load_merged(&dir).unwrap().get("HOSTNAME").unwrap(), "kts01");
        // A shared key there is refused, naming it.
        std::fs::write(path(&dir), r#"{"HOSTNAME": "kts02", "DB_POOL_SIZE": 2}"#).unwrap();
        let err = load_merged(&dir).unwrap_err();
        assert_eq!(err.kind(), crate::Kind::Usage);
        assert!(err.to_string().contains("DB_POOL_SIZE") && err.to_string().contains("not host-specific"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_keeps_host_keys_only_and_update_touches_held_keys_only() {
        let main = r#"{"HOSTNAME": "kts01", "SSL_CA": "/a/ca.pem", "CIPHERS": "x"}"#;
        let dir = confdir("write", main, None);
        update(&dir, &[("SSL_CA", Some("/b".into()))], None).unwrap();
        assert!(!path(&dir).exists(), "update made a file");
        write(&dir, &Config::load(&dir.join("keytrustee.conf")).unwrap(), None).unwrap();
        let host = load(&dir).unwrap().unwrap();
        assert_eq!(host.values().keys().collect::<Vec<_>>(), ["HOSTNAME", "SSL_CA"]);
        update(&dir, &[("SSL_CA", Some("/b/ca.pem".into())), ("SSL_CERTIFICATE", Some("/b/c.pem".into()))], None).unwrap();
        let host = load(&dir).unwrap().unwrap();
        assert_eq!(host.get("SSL_CA").unwrap(), "/b/ca.pem");
        assert!(host.get("SSL_CERTIFICATE").is_none());
        update(&dir, &[("SSL_CA", None)], None).unwrap();
        assert!(load(&dir).unwrap().unwrap().get("SSL_CA").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
