//! The structure of an OpenPGP message, without any key: its packets are
//! walked from the first byte to the last (partial-length chunks
//! included), so a truncated file is caught and the recipients' key IDs are
//! read from the PKESK packets. Used by `kt backup list`, `kt verify backup`
//! and `kt restore`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Walks an OpenPGP message's packets to the end: `(recipient key IDs,
/// encrypted bytes)`, or where and how it is damaged.
pub fn walk(path: &Path) -> std::result::Result<(Vec<String>, u64), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut ids = Vec::new();
    let mut data = 0u64;
    let mut saw_data = false;
    let byte = |f: &mut std::fs::File| -> std::result::Result<u8, String> {
        let mut b = [0u8; 1];
        f.read_exact(&mut b).map_err(|_| "truncated: the file ends inside a packet header".to_string())?;
        Ok(b[0])
    };
    loop {
        let pos = file.stream_position().map_err(|e| e.to_string())?;
        if pos == len {
            break;
        }
        let first = byte(&mut file)?;
        if first & 0x80 == 0 {
            return Err(format!("not an OpenPGP packet at byte {pos}"));
        }
        let new_format = first & 0x40 != 0;
        let tag = if new_format { first & 0x3f } else { (first >> 2) & 0x0f };
        // Follow the body, through partial-length chunks when there are any.
        let mut body = 0u64;
        loop {
            let (chunk, more) = if new_format {
                let o1 = byte(&mut file)? as u64;
                match o1 {
                    0..=191 => (o1, false),
                    192..=223 => (((o1 - 192) << 8) + byte(&mut file)? as u64 + 192, false),
                    255 => {
                        let mut b = [0u8; 4];
                        for x in &mut b {
                            *x = byte(&mut file)?;
                        }
                        (u32::from_be_bytes(b) as u64, false)
                    }
                    _ => (1u64 << (o1 & 0x1f), true),
                }
            } else {
                let n = match first & 3 {
                    0 => 1,
                    1 => 2,
                    2 => 4,
                    _ => return Err("indeterminate-length packets are not supported".into()),
                };
                let mut v = 0u64;
                for _ in 0..n {
                    v = (v << 8) | byte(&mut file)? as u64;
                }
                (v, false)
            };
            if tag == 1 && !more && (9..=4096).contains(&chunk) {
                let mut pkesk = vec![0u8; chunk as usize];
                file.read_exact(&mut pkesk).map_err(|_| "truncated inside a PKESK packet".to_string())?;
                if pkesk[0] == 3 {
                    ids.push(hex::encode(&pkesk[1..9]).to_ascii_uppercase());
                }
            } else {
                let at = file.stream_position().map_err(|e| e.to_string())?;
                if at + chunk > len {
                    return Err(format!("truncated: a packet at byte {pos} needs {} more bytes than the file has", at + chunk - len));
                }
                file.seek(SeekFrom::Current(chunk as i64)).map_err(|e| e.to_string())?;
            }
            body += chunk;
            if !more {
                break;
            }
        }
        if matches!(tag, 18 | 9 | 20) {
            data += body;
            saw_data = true;
        }
    }
    if !saw_data {
        return Err("no encrypted data packet".into());
    }
    if ids.is_empty() {
        return Err("no public-key recipient (PKESK) packet".into());
    }
    Ok((ids, data))
}

