//! `kt backup list`: the backups in a directory, newest first, with the key
//! IDs of their recipients read from the OpenPGP message's PKESK packets
//! (no secret key needed).

use std::path::Path;

use crate::backup::naming::{self, BackupName};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Listed {
    pub name: BackupName,
    pub size: u64,
    pub age_seconds: i64,
    pub key_ids: Vec<String>,
}

pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for name in naming::list(dir, None)? {
        let meta = std::fs::metadata(&name.path).ok();
        let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        let age = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let key_ids = if name.encrypted { crate::backup::message::walk(&name.path).map(|(ids, _)| ids).unwrap_or_default() } else { Vec::new() };
        out.push(Listed { name, size, age_seconds: age, key_ids });
    }
    Ok(out)
}
