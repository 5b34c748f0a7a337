//! Passwords kt reads for private keys and bundles: from a file or from a
//! script's output, never from argv, and never shown in Debug output or
//! logs. The script contract is the documented one of
//! `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`: a shell command whose stdout, without
//! the final newline, is the password.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::account::Account;
use crate::error::{Error, Result};

/// A password that never shows in Debug output or logs, wiped from memory
/// when dropped (zeroize: a write the optimiser may not remove).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of a file (the final newline is not part of it).
    File(PathBuf),
    /// A command run by /bin/sh whose stdout is the password.
    Script(String),
    /// A script that came from a file the service account can write
    /// (keytrustee.conf, `.ssl.bak`): run as that account, never as root,
    /// which is also how the server itself runs it.
    ScriptAs { command: String, account: Account },
    /// A password already read (from a file readable only by root,
    /// before kt dropped to the service account).
    Given(Secret),
}

/// Names the kind of source only: a script may carry a password inline.
impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::File(path) => write!(f, "File({})", path.display()),
            PasswordSource::Script(_) => f.write_str("Script(***)"),
            PasswordSource::ScriptAs { account, .. } => write!(f, "ScriptAs(***, {})", account.name),
            PasswordSource::Given(_) => f.write_str("Given(***)"),
        }
    }
}

impl PasswordSource {
    /// Reads the password. `what` names the setting or option in errors
    /// (`SSL_PRIVATE_KEY_PASSWORD_SCRIPT`, `--key-password-file`).
    pub fn read(&self, what: &str) -> Result<Secret> {
        match self {
            PasswordSource::File(path) => {
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    Error::usage(format!("cannot read {what} {}", path.display())).because_err(&e)
                })?);
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::usage(format!("{what} {} is not UTF-8 text", path.display())))?;
                let first = text.split(['\n', '\r']).next().unwrap_or_default();
                Ok(Secret::new(first.to_string()))
            }
            PasswordSource::Script(script) => run_script(script, what, None),
            PasswordSource::ScriptAs { command, account } => run_script(command, what, Some(account)),
            PasswordSource::Given(secret) => Ok(secret.clone()),
        }
    }

    /// The script's command line, when this source is a script (it goes
    /// into `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`; a file's path does not).
    pub fn script(&self) -> Option<&str> {
        match self {
            PasswordSource::Script(s) | PasswordSource::ScriptAs { command: s, .. } => Some(s),
            PasswordSource::File(_) | PasswordSource::Given(_) => None,
        }
    }

    /// The password of a file read now (as the user kt runs as); other
    /// sources as they are.
    pub fn read_file_now(self, what: &str) -> Result<PasswordSource> {
        match self {
            PasswordSource::File(_) => Ok(PasswordSource::Given(self.read(what)?)),
            other => Ok(other),
        }
    }

    /// A script run as `account` when there is one (kt runs as root and
    /// the script will run in the server, or came from a file that account
    /// can write); a file stays a file.
    pub fn run_by(self, account: Option<&Account>) -> PasswordSource {
        match (self, account) {
            (PasswordSource::Script(command), Some(account)) => PasswordSource::ScriptAs { command, account: account.clone() },
            (other, _) => other,
        }
    }
}

/// Runs `script` through /bin/sh, as `account` when given; its stdout
/// (without the final newline) is the password. Its output is never
/// logged; its stderr's last line is quoted when it fails.
pub fn run_script(script: &str, what: &str, account: Option<&Account>) -> Result<Secret> {
    let mut command = std::process::Command::new("/bin/sh");
    command.arg("-c").arg(script);
    if let Some(account) = account {
        account.apply(&mut command);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::env(format!("cannot run {what}")).because_err(&e))?;
    let printed = Zeroizing::new(output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut err = Error::env(format!("{what} failed ({})", output.status));
        if let Some(line) = stderr.trim().lines().last() {
            err = err.because(line.to_string());
        }
        return Err(err);
    }
    let text = std::str::from_utf8(&printed).map_err(|_| Error::usage(format!("{what} printed a password that is not UTF-8")))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_files() {
        let pw = PasswordSource::Script("printf 'pa ss\\n'".into()).read("x").unwrap();
        assert_eq!(pw.expose(), "pa ss");
        assert_eq!(format!("{pw:?}"), "Secret(***)");
        let err = PasswordSource::Script("echo nope >&2; exit 4".into()).read("THE_SCRIPT").unwrap_err();
        assert!(err.message().contains("THE_SCRIPT failed"), "{err}");
        assert!(err.causes().iter().any(|c| c == "nope"), "{err:?}");
        let dir = std::env::temp_dir().join(format!("kt-secret-{}", std::process::id()));
        std::fs::write(&dir, "line one\nline two\n").unwrap();
        assert_eq!(PasswordSource::File(dir.clone()).read("f").unwrap().expose(), "line one");
        std::fs::remove_file(&dir).unwrap();
        assert!(PasswordSource::File(dir).read("f").is_err());
    }
}
