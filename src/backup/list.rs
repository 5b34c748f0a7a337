//! `kt backup list`: the backups in a directory, newest first, with the key
//! IDs of their recipients read from the OpenPGP message's PKESK packets
//! (no secret key needed, and only the first packets are read).

use std::io::Read;
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
        let key_ids = if name.encrypted { recipient_key_ids(&name.path).unwrap_or_default() } else { Vec::new() };
        out.push(Listed { name, size, age_seconds: age, key_ids });
    }
    Ok(out)
}

/// Key IDs of the PKESK packets at the start of an OpenPGP message.
pub fn recipient_key_ids(path: &Path) -> std::io::Result<Vec<String>> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut ids = Vec::new();
    for _ in 0..64 {
        let Some((tag, len)) = read_header(&mut file)? else { break };
        match tag {
            1 => {
                let mut body = vec![0u8; len.min(8192)];
                file.read_exact(&mut body)?;
                if len > body.len() {
                    std::io::copy(&mut (&mut file).take((len - body.len()) as u64), &mut std::io::sink())?;
                }
                if body.first() == Some(&3) && body.len() >= 9 {
                    ids.push(crate::auth::hex(&body[1..9]).to_ascii_uppercase());
                }
            }
            3 => {
                std::io::copy(&mut (&mut file).take(len as u64), &mut std::io::sink())?;
            }
            _ => break,
        }
    }
    Ok(ids)
}

/// A packet header: (tag, body length); None at the end or at a packet
/// with a partial or indeterminate length (the encrypted data).
fn read_header(r: &mut impl Read) -> std::io::Result<Option<(u8, usize)>> {
    let mut b = [0u8; 1];
    if r.read(&mut b)? == 0 {
        return Ok(None);
    }
    let first = b[0];
    if first & 0x80 == 0 {
        return Ok(None);
    }
    let mut byte = || -> std::io::Result<usize> {
        let mut x = [0u8; 1];
        r.read_exact(&mut x)?;
        Ok(x[0] as usize)
    };
    if first & 0x40 != 0 {
        let tag = first & 0x3f;
        let o1 = byte()?;
        let len = match o1 {
            0..=191 => o1,
            192..=223 => ((o1 - 192) << 8) + byte()? + 192,
            255 => (byte()? << 24) | (byte()? << 16) | (byte()? << 8) | byte()?,
            _ => return Ok(None),
        };
        Ok(Some((tag, len)))
    } else {
        let tag = (first >> 2) & 0x0f;
        let len = match first & 3 {
            0 => byte()?,
            1 => (byte()? << 8) | byte()?,
            2 => (byte()? << 24) | (byte()? << 16) | (byte()? << 8) | byte()?,
            _ => return Ok(None),
        };
        Ok(Some((tag, len)))
    }
}
