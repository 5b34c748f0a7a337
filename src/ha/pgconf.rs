//! kt's marked blocks in PostgreSQL's `postgresql.conf` and `pg_hba.conf`.
//!
//! `kt ha enable` appends one block to each file and `kt ha disable`
//! removes exactly those bytes, so the files are as they were before
//! (byte for byte) whatever the operator wrote around them. A later
//! setting wins in `postgresql.conf`, so the block's lines override kt
//! init's (`listen_addresses`) without touching them.

use std::path::Path;

use crate::account::Account;
use crate::error::{Context, Error, Result};
use crate::fsutil;

const BEGIN: &str = "\n# BEGIN kt ha: written by kt, removed by `kt ha disable`; do not edit\n";
const END: &str = "# END kt ha\n";

/// `text` with `body` appended as kt's block (it must have none yet).
pub fn with_block(text: &str, body: &str) -> Result<String> {
    if block_range(text).is_some() {
        return Err(Error::usage("the file already has a kt ha block").with_hint("run `kt ha disable` first"));
    }
    let mut out = String::with_capacity(text.len() + body.len() + BEGIN.len() + END.len());
    out.push_str(text);
    out.push_str(BEGIN);
    out.push_str(body);
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(END);
    Ok(out)
}

/// `text` without kt's block (None: there is none).
pub fn without_block(text: &str) -> Option<String> {
    let (start, end) = block_range(text)?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str(&text[end..]);
    Some(out)
}

/// kt's block in `text`, markers included (None: there is none).
pub fn current_block(text: &str) -> Option<&str> {
    let (start, end) = block_range(text)?;
    Some(&text[start..end])
}

/// The block `with_block` would add for `body`, markers included: what
/// [`current_block`] returns when the block there is that one.
pub fn rendered_block(body: &str) -> String {
    let mut out = format!("{BEGIN}{body}");
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(END);
    out
}

/// Whether `text` has kt's block.
pub fn has_block(text: &str) -> bool {
    block_range(text).is_some()
}

fn block_range(text: &str) -> Option<(usize, usize)> {
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some((start, end))
}

/// A value quoted for postgresql.conf (single quotes doubled).
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Reads a configuration file of the cluster.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).env_context(|| format!("cannot read {}", path.display()))
}

/// Writes a configuration file of the cluster (0600, the service account's).
pub fn write(path: &Path, text: &str, account: &Account) -> Result<()> {
    fsutil::write_atomic(path, text.as_bytes(), 0o600, Some(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_off_byte_for_byte() {
        for original in ["a = 1\n", "a = 1", "", "x\n\n# comment\n"] {
            let with = with_block(original, "listen_addresses = '10.0.0.1,127.0.0.1'").unwrap();
            assert!(has_block(&with));
            assert!(with.starts_with(original));
            assert_eq!(without_block(&with).unwrap(), original);
            assert!(with_block(&with, "b").is_err(), "one block at most");
            assert_eq!(current_block(&with), Some(rendered_block("listen_addresses = '10.0.0.1,127.0.0.1'").as_str()));
        }
        assert!(without_block("a = 1\n").is_none());
    }

    #[test]
    fn values_are_quoted() {
        assert_eq!(quote("/tmp/it's.pem"), "'/tmp/it''s.pem'");
    }
}
