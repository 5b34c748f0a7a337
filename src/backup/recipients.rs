//! Who a backup is encrypted to. `--gpg-recipient NAME` is resolved the way
//! `gpg -r NAME` would resolve it, in the GnuPG keyring of the account
//! running kt (GNUPGHOME honoured); `--gpg-recipient-file FILE` takes an
//! armored key file. Either way GnuPG judges validity (expired, revoked,
//! disabled) and capability, and exactly one usable key must match.

use std::path::Path;
use std::process::{Command, Stdio};

use pgp::composed::SignedPublicKey;
use pgp::types::KeyDetails;

use crate::account::Account;
use crate::error::{Error, Result};

/// One recipient, ready to encrypt to.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// How the operator named it (for messages).
    pub label: String,
    pub primary_fingerprint: String,
    pub key: SignedPublicKey,
    /// The encryption subkey to use (None: the primary key encrypts).
    pub subkey_fingerprint: Option<String>,
}

impl Recipient {
    /// The 16-hex key ID that appears in the encrypted message.
    pub fn key_id(&self) -> String {
        let fpr = self.subkey_fingerprint.as_deref().unwrap_or(&self.primary_fingerprint);
        fpr[fpr.len().saturating_sub(16)..].to_string()
    }
}

/// One key of a `--with-colons` listing.
#[derive(Debug, Default)]
struct Listed {
    validity: String,
    caps: String,
    fingerprint: String,
    uid: Option<String>,
    subkeys: Vec<ListedSub>,
}

#[derive(Debug)]
struct ListedSub {
    validity: String,
    caps: String,
    fingerprint: String,
    created: u64,
}

fn parse_colons(text: &str) -> Vec<Listed> {
    let mut keys: Vec<Listed> = Vec::new();
    // The `fpr` line belongs to the key or subkey line just before it.
    let mut last_was_sub = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let field = |i: usize| f.get(i).copied().unwrap_or("").to_string();
        match f.first().copied() {
            Some("pub") => {
                keys.push(Listed {
                    validity: field(1),
                    caps: field(11),
                    ..Default::default()
                });
                last_was_sub = false;
            }
            Some("sub") => {
                if let Some(k) = keys.last_mut() {
                    k.subkeys.push(ListedSub {
                        validity: field(1),
                        caps: field(11),
                        fingerprint: String::new(),
                        created: field(5).parse().unwrap_or(0),
                    });
                }
                last_was_sub = true;
            }
            Some("fpr") => {
                if let Some(k) = keys.last_mut() {
                    if last_was_sub {
                        if let Some(s) = k.subkeys.last_mut() {
                            if s.fingerprint.is_empty() {
                                s.fingerprint = field(9);
                            }
                        }
                    } else if k.fingerprint.is_empty() {
                        k.fingerprint = field(9);
                    }
                }
            }
            Some("uid") => {
                if let Some(k) = keys.last_mut() {
                    if k.uid.is_none() {
                        k.uid = Some(field(9));
                    }
                }
            }
            _ => {}
        }
    }
    keys
}

/// GnuPG's validity letters that make a key or subkey unusable.
fn unusable(validity: &str) -> Option<&'static str> {
    match validity {
        "e" => Some("expired"),
        "r" => Some("revoked"),
        "d" => Some("disabled"),
        "i" => Some("invalid"),
        _ => None,
    }
}

/// gpg as this process, or as `account` with that account's own keyring
/// (its HOME, no GNUPGHOME inherited): how `kt schedule add` checks the
/// keyring its scheduled runs will use.
/// gpg as this process, or as another account as its scheduled backup
/// will run: started as cron starts a job (that account's HOME and so its
/// keyring, a clean environment, a session of its own), and with
/// `--no-options`: the account's gpg.conf, which it can write, is not read
/// by a probe that root starts.
fn gpg_command(account: Option<&Account>) -> Command {
    let mut cmd = Command::new("gpg");
    if let Some(account) = account.filter(|a| a.is_other_than_current()) {
        account.apply_as_job(&mut cmd);
        cmd.arg("--no-options");
    }
    cmd
}

fn gpg(args: &[&str], account: Option<&Account>) -> Result<std::process::Output> {
    gpg_command(account)
        .args(["--batch", "--no-tty", "--with-colons", "--fixed-list-mode"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::env("cannot run gpg to resolve the recipient").because_err(&e).with_hint("install GnuPG (gpg)")
        })
}

/// Resolves `name` in the keyring, as `gpg -r NAME` would.
pub fn from_keyring(name: &str) -> Result<Recipient> {
    from_keyring_of(name, None)
}

/// Resolves `name` in `account`'s keyring (None: this process's).
pub fn from_keyring_of(name: &str, account: Option<&Account>) -> Result<Recipient> {
    if name.trim().is_empty() {
        return Err(Error::usage("an empty --gpg-recipient"));
    }
    let out = gpg(&["--list-keys", "--", name], account)?;
    let listed = parse_colons(&String::from_utf8_lossy(&out.stdout));
    let not_found = || {
        Error::usage(format!("no key for recipient {name:?} in the GnuPG keyring"))
            .with_hint("import the recipient's public key (gpg --import KEY.asc), set GNUPGHOME, or use --gpg-recipient-file")
    };
    if listed.is_empty() {
        return Err(not_found());
    }
    if listed.len() > 1 {
        let candidates: Vec<String> = listed
            .iter()
            .map(|k| format!("{} {}", k.fingerprint, k.uid.as_deref().unwrap_or("")))
            .collect();
        return Err(Error::usage(format!("recipient {name:?} is ambiguous: {} keys match", listed.len()))
            .because(candidates.join("; "))
            .with_hint("name the key by its full fingerprint"));
    }
    let chosen = &listed[0];
    let export = gpg_command(account)
        .args(["--batch", "--no-tty", "--export", "--", &chosen.fingerprint])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::env("cannot run gpg --export").because_err(&e))?;
    // `gpg --export` of an unknown key exits 0 with no output: check.
    if export.stdout.is_empty() {
        return Err(not_found());
    }
    build(name, chosen, &export.stdout)
}

/// Reads an armored (or binary) public key file.
pub fn from_file(path: &Path) -> Result<Recipient> {
    let data = std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read the recipient key file {}", path.display())).because_err(&e))?;
    let path_text = path.to_string_lossy().into_owned();
    let out = gpg(&["--show-keys", "--", &path_text], None)?;
    let listed = parse_colons(&String::from_utf8_lossy(&out.stdout));
    match listed.len() {
        0 => Err(Error::usage(format!("{} holds no OpenPGP public key", path.display()))),
        1 => build(&path_text, &listed[0], &data),
        n => Err(Error::usage(format!("{} holds {n} keys: give one key per --gpg-recipient-file", path.display()))),
    }
}

fn build(label: &str, listed: &Listed, key_data: &[u8]) -> Result<Recipient> {
    let refuse = |why: String| Err(Error::usage(format!("cannot encrypt to {label:?}: {why}")));
    if let Some(why) = unusable(&listed.validity) {
        return refuse(format!("the key {} is {why}", listed.fingerprint));
    }
    // Newest usable encryption subkey, as gpg picks it.
    let sub = listed
        .subkeys
        .iter()
        .filter(|s| s.caps.contains('e') && unusable(&s.validity).is_none() && !s.fingerprint.is_empty())
        .max_by_key(|s| s.created);
    let primary_encrypts = listed.caps.contains('e');
    if sub.is_none() && !primary_encrypts {
        let expired_subs = listed.subkeys.iter().any(|s| s.caps.contains('e'));
        return refuse(if expired_subs {
            format!("every encryption subkey of {} is expired or revoked", listed.fingerprint)
        } else {
            format!("the key {} has no encryption subkey (it can only sign)", listed.fingerprint)
        });
    }
    let key = crate::pgp::parse_public_key(key_data)
        .map_err(|e| Error::usage(format!("cannot read the key of {label:?}")).because(e.to_string()))?;
    let primary_fingerprint = format!("{:X}", key.fingerprint());
    if !primary_fingerprint.eq_ignore_ascii_case(&listed.fingerprint) {
        return refuse(format!("GnuPG listed {} but exported {primary_fingerprint}", listed.fingerprint));
    }
    let subkey_fingerprint = match sub {
        Some(s) => {
            let found = key.public_subkeys.iter().any(|k| format!("{:X}", k.key.fingerprint()).eq_ignore_ascii_case(&s.fingerprint));
            if !found {
                return refuse(format!("the encryption subkey {} is missing from the exported key", s.fingerprint));
            }
            Some(s.fingerprint.to_ascii_uppercase())
        }
        None => None,
    };
    Ok(Recipient { label: label.to_string(), primary_fingerprint, key, subkey_fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_colon_listing() {
        let text = "tru::1:1\npub:u:3072:1:AAAA:1700000000:::u:::scESC:::+:::23::0:\nfpr:::::::::PRIMARYFPR:\nuid:u::::1700000000::HASH::John Doe <john@example.com>::::::::::0:\nsub:e:3072:1:BBBB:1600000000:1650000000:::::e:::+:::23:\nfpr:::::::::OLDSUB:\nsub:u:3072:1:CCCC:1700000001::::::e:::+:::23:\nfpr:::::::::NEWSUB:\n";
        let keys = parse_colons(text);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint, "PRIMARYFPR");
        assert_eq!(keys[0].uid.as_deref(), Some("John Doe <john@example.com>"));
        assert_eq!(keys[0].subkeys.len(), 2);
        assert_eq!(keys[0].subkeys[1].fingerprint, "NEWSUB");
        assert_eq!(unusable(&keys[0].subkeys[0].validity), Some("expired"));
    }
}
