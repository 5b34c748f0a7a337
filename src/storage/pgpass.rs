//! The database password, kept in a libpq password file (`.pgpass` in the
//! confdir, 0600) so that neither kt nor an operator's `psql` ever needs it
//! on a command line.

use std::path::Path;

use rand::distributions::{Alphanumeric, DistString};
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// A database password (or another secret read the same ways); never
/// shown by Debug, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// 32 random alphanumerics (about 190 bits): needs no escaping anywhere.
    pub fn generate() -> Password {
        Password(Alphanumeric.sample_string(&mut rand::thread_rng(), 32))
    }

    /// Wraps a secret read from elsewhere (a password file, a prompt).
    pub fn new(secret: String) -> Password {
        Password(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `.pgpass` line for `user` on any host, port and database.
    pub fn pgpass_line(&self, user: &str) -> String {
        format!("*:*:*:{}:{}\n", escape(user), escape(&self.0))
    }

    /// Reads the password of `user` from a libpq password file.
    pub fn read(path: &Path, user: &str) -> Result<Password> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::env(format!("cannot read the database password file {}", path.display())).because_err(&e)
        })?;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields = split_fields(line);
            if fields.len() == 5 && (fields[3] == user || fields[3] == "*") {
                return Ok(Password(fields[4].clone()));
            }
        }
        Err(Error::env(format!("{} has no password for database user {user}", path.display())))
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_pgpass_line() {
        let pw = Password("a:b\\c".into());
        let line = pw.pgpass_line("kt");
        assert_eq!(line, "*:*:*:kt:a\\:b\\\\c\n");
        assert_eq!(split_fields(line.trim_end())[4], "a:b\\c");
    }

    #[test]
    fn debug_hides_the_secret() {
        let pw = Password::generate();
        assert!(!format!("{pw:?}").contains(pw.expose()));
    }
}
