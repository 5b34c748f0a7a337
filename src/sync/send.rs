//! The sending side: sends the file list, then answers the receiver's
//! requests with literal data or fast_rsync deltas, segment by segment,
//! and a BLAKE3 hash of each whole file.
//!
//! The receiver is untrusted too (in a pull, the remote side receives
//! nothing but may ask for anything): it may only ask for regular files of
//! the list by index, and its block signatures are checked before use
//! (a block size of 0 would make fast_rsync's diff loop for ever).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::list::{FileKind, FileList};
use super::wire::{self, Msg, Reader, Writer};
use crate::error::{Error, Result};

/// What a send did.
#[derive(Debug, Default, Clone)]
pub struct SendStats {
    /// Files whose data was sent.
    pub files_sent: u64,
    /// Bytes sent verbatim.
    pub literal_bytes: u64,
    /// Bytes of deltas sent, and the file bytes they stand for.
    pub delta_bytes: u64,
    pub delta_covered: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Files that could not be sent (vanished, unreadable, changed size).
    pub errors: Vec<String>,
}

/// Runs the sending side of a session over `input`/`output`.
pub fn send<R: Read, W: Write>(list: &FileList, input: R, output: W) -> Result<SendStats> {
    let mut reader = Reader::new(input);
    let mut writer = Writer::new(output);
    let mut stats = SendStats::default();
    wire::greet(&mut reader, &mut writer, "receiver")?;
    writer.send_list(&list.entries)?;
    writer.send(&Msg::EndOfList)?;
    writer.flush()?;
    let mut buf = Vec::with_capacity(wire::SEGMENT);
    let mut delta = Vec::new();
    // Phase 1 may reuse the listing's hash; the redo phase (a file whose
    // data did not match) always hashes what it sends.
    let mut phase = 1;
    loop {
        match reader.read()? {
            Msg::Request { index, signature } => {
                let ok = list.entries.get(index as usize).is_some_and(|e| e.kind == FileKind::File);
                if !ok {
                    let err = Error::usage("sync protocol violation")
                        .because(format!("the receiver asked for file number {index}, which is no file of the list"));
                    let _ = writer.send(&Msg::Error { message: err.to_string() });
                    let _ = writer.flush();
                    return Err(err);
                }
                if let Err(err) = answer(list, index, &signature, phase == 1, &mut writer, &mut buf, &mut delta, &mut stats) {
                    let _ = writer.send(&Msg::Error { message: err.to_string() });
                    let _ = writer.flush();
                    return Err(err);
                }
            }
            Msg::EndOfPhase => {
                phase += 1;
                writer.send(&Msg::EndOfPhase)?;
                writer.flush()?;
            }
            Msg::Done => break,
            Msg::Error { message } => return Err(Error::env("the receiving side failed").because(message)),
            _ => return Err(Error::usage("sync protocol violation").because("the receiver sent an unexpected message")),
        }
    }
    stats.bytes_read = reader.bytes;
    stats.bytes_written = writer.bytes;
    Ok(stats)
}

/// Checks a receiver's block signature before fast_rsync sees it.
fn parse_signature(sig: Vec<u8>) -> Result<fast_rsync::Signature> {
    let bad = |why: &str| Error::usage("sync protocol violation").because(format!("bad block signature: {why}"));
    if sig.len() < 12 {
        return Err(bad("too short"));
    }
    let block_size = u32::from_be_bytes(sig[4..8].try_into().unwrap());
    let hash_size = u32::from_be_bytes(sig[8..12].try_into().unwrap());
    if !(1..=1 << 20).contains(&block_size) || !(1..=16).contains(&hash_size) {
        return Err(bad("block or hash size out of range"));
    }
    fast_rsync::Signature::deserialize(sig).map_err(|e| bad(&e.to_string()))
}

/// Threads for the delta search of one large file (at most 4).
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// Sends one file: start, segments, end with its BLAKE3 hash; a file that
/// cannot be read or changed size ends with a per-file error instead.
fn answer<W: Write>(
    list: &FileList,
    index: u32,
    signature: &[u8],
    reuse_sum: bool,
    writer: &mut Writer<W>,
    buf: &mut Vec<u8>,
    delta: &mut Vec<u8>,
    stats: &mut SendStats,
) -> Result<()> {
    let e = &list.entries[index as usize];
    let source = &list.sources[index as usize];
    let sig = if signature.is_empty() { None } else { Some(parse_signature(signature.to_vec())?) };
    let indexed = sig.as_ref().map(|s| s.index());
    // Segments end on block boundaries of the basis: an unchanged region
    // then matches block for block, with no literal tail per segment.
    let segment = match signature.get(4..8) {
        Some(b) if sig.is_some() => {
            let block = u32::from_be_bytes(b.try_into().unwrap()) as usize;
            (wire::SEGMENT / block).max(1) * block
        }
        _ => wire::SEGMENT,
    };
    writer.send(&Msg::FileStart { index })?;
    let fail = |writer: &mut Writer<W>, stats: &mut SendStats, why: String| -> Result<()> {
        stats.errors.push(format!("{}: {why}", e.display()));
        writer.send(&Msg::FileError { index, message: why })
    };
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(source) {
        Ok(f) => f,
        Err(err) => return fail(writer, stats, format!("cannot open: {err}")),
    };
    let known = match file.metadata() {
        Ok(m) if m.is_file() => match list.sums.get(index as usize) {
            // The listed hash stands for this file only while it is the
            // same inode with the same ctime: any write since moves ctime.
            // Should a write slip within one timestamp tick, the receiver's
            // check fails and the redo phase hashes what it sends.
            Some(Some((sum, stamp))) if reuse_sum && *stamp == super::list::Stamp::of(&m) => Some(*sum),
            _ => None,
        },
        Ok(_) => return fail(writer, stats, "is no longer a regular file".into()),
        Err(err) => return fail(writer, stats, format!("cannot read: {err}")),
    };
    let mut hasher = blake3::Hasher::new();
    let mut left = e.size;
    // A large file with a basis: the delta search (fast_rsync's diff,
    // mostly scalar MD4 of every matching block) is the sender's cost and
    // the critical path, so several segments are searched at once, one
    // thread each, and sent in order. Segments are independent: each is
    // diffed against the whole old file.
    let par = if indexed.is_some() && e.size > segment as u64 { parallelism() } else { 1 };
    let mut more: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while left > 0 {
        let count = (par as u64).min(left.div_ceil(segment as u64)) as usize;
        while more.len() + 1 < count {
            more.push((Vec::with_capacity(segment), Vec::new()));
        }
        for k in 0..count {
            let want = left.min(segment as u64) as usize;
            let b = if k == 0 { &mut *buf } else { &mut more[k - 1].0 };
            b.clear();
            match Read::by_ref(&mut file).take(want as u64).read_to_end(b) {
                Ok(n) if n == want => {}
                Ok(_) => return fail(writer, stats, "changed size while being sent".into()),
                Err(err) => return fail(writer, stats, format!("cannot read: {err}")),
            }
            if known.is_none() {
                hasher.update(&b[..]);
            }
            left -= want as u64;
        }
        if let Some(indexed) = &indexed {
            let diffed: Vec<std::result::Result<(), fast_rsync::DiffError>> = std::thread::scope(|scope| {
                let others: Vec<_> = more[..count - 1]
                    .iter_mut()
                    .map(|(b, d)| {
                        scope.spawn(move || {
                            d.clear();
                            fast_rsync::diff(indexed, b, d)
                        })
                    })
                    .collect();
                delta.clear();
                let mut all = vec![fast_rsync::diff(indexed, buf, &mut *delta)];
                all.extend(others.into_iter().map(|h| h.join().expect("the delta search thread panicked")));
                all
            });
            for r in diffed {
                r.map_err(|err| Error::usage("sync protocol violation").because_err(&err))?;
            }
        }
        for k in 0..count {
            let (b, d) = if k == 0 { (&*buf, &*delta) } else { (&more[k - 1].0, &more[k - 1].1) };
            if indexed.is_some() && d.len() < b.len() {
                stats.delta_bytes += d.len() as u64;
                stats.delta_covered += b.len() as u64;
                writer.send_delta(b.len() as u32, d)?;
            } else {
                stats.literal_bytes += b.len() as u64;
                writer.send_literal(b)?;
            }
        }
    }
    stats.files_sent += 1;
    let hash = known.unwrap_or_else(|| hasher.finalize().into());
    writer.send(&Msg::FileEnd { index, hash })
}
