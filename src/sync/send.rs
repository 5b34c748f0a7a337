//! The sending side: sends the file list, answers the receiver's `-c`
//! sums (`WantSums`: only the files it has at the same size, hashed here
//! on every core), then its requests with literal data or fast_rsync
//! deltas, segment by segment, and a BLAKE3 hash of each whole file,
//! taken while reading it for sending (or the sum's, when the file is
//! still the inode it was hashed from): each file is read once.
//!
//! The receiver is untrusted too (in a pull, the remote side receives
//! nothing but may ask for anything): it may only ask for regular files of
//! the list by index, and its block signatures are checked before use
//! (a block size of 0 would make fast_rsync's diff loop for ever).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::list::{FileKind, FileList, Stamp, LIST_SUM};
use super::meter::Meter;
use super::wire::{self, Msg, Reader, Writer};
use crate::error::{Error, Result};
use crate::progress::Progress;

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
    /// File bytes the receiver copied from its old file by chunk.
    pub chunk_bytes: u64,
    pub bytes_read: u64,
    /// Bytes on the wire, plus (a local session) the data the receiver
    /// copied itself: rsync counts a local whole-file copy's data as sent.
    pub bytes_written: u64,
    /// Of `literal_bytes`, those the receiver copied itself (local session).
    pub local_bytes: u64,
    /// Files that could not be sent (vanished, unreadable, changed size).
    pub errors: Vec<String>,
}

/// Runs the sending side of a session over `input`/`output`, reporting
/// the files and bytes sent to `progress`.
pub fn send<R: Read, W: Write>(list: &FileList, input: R, output: W, progress: &dyn Progress) -> Result<SendStats> {
    send_session(list, false, input, output, &mut Meter::new(progress))
}

/// The sending side of a local session (the receiver runs in this
/// process and reads the sources itself): a whole file asked for in the
/// first phase is answered with `LocalCopy` and the file's hash, its data
/// never goes through the pipe. The redo phase sends data as always, so a
/// file that changed during its copy is sent through the pipe, hashed as
/// it is sent.
pub fn send_local<R: Read, W: Write>(list: &FileList, input: R, output: W) -> Result<SendStats> {
    send_session(list, true, input, output, &mut Meter::silent())
}

fn send_session<R: Read, W: Write>(
    list: &FileList,
    local: bool,
    input: R,
    output: W,
    meter: &mut Meter,
) -> Result<SendStats> {
    let mut reader = Reader::new(input);
    let mut writer = Writer::new(output);
    let mut stats = SendStats::default();
    wire::greet(&mut reader, &mut writer, "receiver")?;
    writer.send_list(&list.entries)?;
    writer.send(&Msg::EndOfList)?;
    writer.flush()?;
    let mut buf = Vec::with_capacity(wire::SEGMENT);
    // `-c` sums taken for `WantSums`, by list index: phase 1 reuses them
    // for `FileEnd`; the redo phase (a file whose data did not match)
    // always hashes what it sends. Made on the first `WantSums` (a run
    // without `-c` has none; a slot is about 100 bytes a listed entry).
    let mut sums: Vec<Option<([u8; 32], Stamp)>> = Vec::new();
    let mut phase = 1;
    let refuse = |writer: &mut Writer<W>, index: u32| -> Error {
        let err = Error::usage("sync protocol violation")
            .because(format!("the receiver asked for file number {index}, which is no file of the list"));
        let _ = writer.send(&Msg::Error { message: err.to_string() });
        let _ = writer.flush();
        err
    };
    loop {
        match reader.read()? {
            Msg::WantSums(indices) if phase == 1 => {
                let is_file = |i: &u32| list.entries.get(*i as usize).is_some_and(|e| e.kind == FileKind::File);
                if let Some(&bad) = indices.iter().find(|i| !is_file(i)) {
                    return Err(refuse(&mut writer, bad));
                }
                let hashed = super::list::sums_of(list, &indices);
                if sums.is_empty() {
                    sums = vec![None; list.entries.len()];
                }
                let mut answer: Vec<Option<[u8; LIST_SUM]>> = Vec::with_capacity(indices.len());
                for (&i, h) in indices.iter().zip(hashed) {
                    answer.push(h.map(|(full, _)| full[..LIST_SUM].try_into().unwrap()));
                    sums[i as usize] = h;
                }
                writer.send(&Msg::Sums(answer))?;
                writer.flush()?;
            }
            Msg::Request { index, signature, chunks } => {
                let ok = list.entries.get(index as usize).is_some_and(|e| e.kind == FileKind::File);
                if !ok {
                    return Err(refuse(&mut writer, index));
                }
                let answered = if local && phase == 1 && signature.is_empty() {
                    answer_local(list, &sums, index, &mut writer, &mut buf, &mut stats)
                } else {
                    answer(list, &sums, index, &signature, &chunks, phase == 1, &mut writer, &mut buf, &mut stats, meter)
                };
                if let Err(err) = answered {
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
    stats.bytes_written = writer.bytes + stats.local_bytes;
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

/// Opens the listed file `index` (never through a symlink) and returns it
/// with its `-c` hash (`sums`) when that may be reused: the hash
/// stands for this file only while it is the same inode with the same
/// ctime (any write since moves ctime; should a write slip within one
/// timestamp tick, the receiver's check fails and the redo phase hashes
/// what it sends). The error is the reason, for a `FileError`.
type Sums = [Option<([u8; 32], Stamp)>];

fn open_listed(sums: &Sums, index: u32, source: &Path, reuse_sum: bool) -> std::result::Result<(File, Option<[u8; 32]>), String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(super::list::OPEN_LISTED)
        .open(source)
        .map_err(|err| format!("cannot open: {err}"))?;
    let known = match file.metadata() {
        Ok(m) if m.is_file() => match sums.get(index as usize) {
            Some(Some((sum, stamp))) if reuse_sum && *stamp == Stamp::of(&m) => Some(*sum),
            _ => None,
        },
        Ok(_) => return Err("is no longer a regular file".into()),
        Err(err) => return Err(format!("cannot read: {err}")),
    };
    Ok((file, known))
}

/// Answers a whole-file request in a local session: `LocalCopy`, then the
/// file's hash: the `-c` sum's (same inode and ctime) or one taken
/// now, while the receiver copies (it compares what landed with it).
fn answer_local<W: Write>(
    list: &FileList,
    sums: &Sums,
    index: u32,
    writer: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut SendStats,
) -> Result<()> {
    let e = &list.entries[index as usize];
    let source = &list.sources[index as usize];
    writer.send(&Msg::FileStart { index })?;
    let fail = |writer: &mut Writer<W>, stats: &mut SendStats, why: String| -> Result<()> {
        stats.errors.push(format!("{}: {why}", e.display()));
        writer.send(&Msg::FileError { index, message: why })
    };
    let (mut file, known) = match open_listed(sums, index, source, true) {
        Ok(opened) => opened,
        Err(why) => return fail(writer, stats, why),
    };
    writer.send(&Msg::LocalCopy)?;
    let hash = match known {
        Some(hash) => hash,
        None => {
            // Let the receiver start its copy while this side hashes.
            writer.flush()?;
            let mut hasher = blake3::Hasher::new();
            let mut left = e.size;
            buf.resize(wire::WHOLE_SEGMENT, 0);
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                match file.read(&mut buf[..want]) {
                    Ok(0) => return fail(writer, stats, "changed size while being sent".into()),
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        left -= n as u64;
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return fail(writer, stats, format!("cannot read: {err}")),
                }
            }
            hasher.finalize().into()
        }
    };
    stats.files_sent += 1;
    stats.literal_bytes += e.size;
    stats.local_bytes += e.size;
    writer.send(&Msg::FileEnd { index, hash })
}

/// A data run's delta (by run number), or why fast_rsync refused.
type Diffed = (usize, std::result::Result<Vec<u8>, fast_rsync::DiffError>);

/// A piece of a segment: chunks of the basis, or bytes `a..z` of the
/// segment's buffer to diff (or send) as data.
enum Piece {
    Copy(u32, u32),
    Data(usize, usize),
}

/// Cuts segment `k` (its buffer `b`, at file offset `at`) into pieces:
/// each aligned chunk whose sum equals the basis' chunk at the same index
/// is copied, consecutive ones in one piece; the rest are data runs.
/// Without chunk sums the whole segment is one data run.
fn split(b: &[u8], at: u64, chunk: Option<usize>, basis: &[&[u8]], k: usize, out: &mut Vec<(usize, Piece)>) {
    let Some(size) = chunk else {
        out.push((k, Piece::Data(0, b.len())));
        return;
    };
    let first = (at / size as u64) as usize;
    for (j, data) in b.chunks(size).enumerate() {
        let index = first + j;
        let same = basis.get(index).is_some_and(|sum| *sum == wire::chunk_sum(data));
        let (a, z) = (j * size, j * size + data.len());
        match (out.last_mut(), same) {
            (Some((kk, Piece::Copy(f, n))), true) if *kk == k && *f as usize + *n as usize == index => *n += 1,
            (_, true) => out.push((k, Piece::Copy(index as u32, 1))),
            (Some((kk, Piece::Data(_, end))), false) if *kk == k && *end == a => *end = z,
            (_, false) => out.push((k, Piece::Data(a, z))),
        }
    }
}

/// Threads for the delta search of one large file (at most 4).
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// Sends one file: start, segments, end with its BLAKE3 hash; a file that
/// cannot be read or changed size ends with a per-file error instead.
#[allow(clippy::too_many_arguments)]
fn answer<W: Write>(
    list: &FileList,
    sums: &Sums,
    index: u32,
    signature: &[u8],
    chunks: &[u8],
    reuse_sum: bool,
    writer: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut SendStats,
    meter: &mut Meter,
) -> Result<()> {
    let e = &list.entries[index as usize];
    let source = &list.sources[index as usize];
    let sig = if signature.is_empty() { None } else { Some(parse_signature(signature.to_vec())?) };
    let indexed = sig.as_ref().map(|s| s.index());
    // Segments end on block boundaries of the basis: an unchanged region
    // then matches block for block, with no literal tail per segment.
    // With chunk sums they end on chunk boundaries (whole blocks too).
    let block = match signature.get(4..8) {
        Some(b) if sig.is_some() => Some(u32::from_be_bytes(b.try_into().unwrap())),
        _ => None,
    };
    let chunk = block.map(wire::chunk_size).filter(|_| !chunks.is_empty());
    let segment = match (block, chunk) {
        (_, Some(c)) => (wire::SEGMENT / c).max(1) * c,
        (Some(b), None) => (wire::SEGMENT / b as usize).max(1) * b as usize,
        _ => wire::WHOLE_SEGMENT,
    };
    let basis_sums: Vec<&[u8]> = chunks.chunks(wire::CHUNK_SUM).collect();
    writer.send(&Msg::FileStart { index })?;
    let fail = |writer: &mut Writer<W>, stats: &mut SendStats, why: String| -> Result<()> {
        stats.errors.push(format!("{}: {why}", e.display()));
        writer.send(&Msg::FileError { index, message: why })
    };
    let (mut file, known) = match open_listed(sums, index, source, reuse_sum) {
        Ok(opened) => opened,
        Err(why) => return fail(writer, stats, why),
    };
    let mut hasher = blake3::Hasher::new();
    let mut left = e.size;
    // A large file with a basis: the delta search (fast_rsync's diff,
    // mostly scalar MD4 of every matching block) is the sender's cost and
    // the critical path, so several segments are searched at once, one
    // thread each, and sent in order. Segments are independent: each is
    // diffed against the whole old file.
    let par = if indexed.is_some() && e.size > segment as u64 { parallelism() } else { 1 };
    let mut more: Vec<Vec<u8>> = Vec::new();
    while left > 0 {
        let count = (par as u64).min(left.div_ceil(segment as u64)) as usize;
        while more.len() + 1 < count {
            more.push(Vec::with_capacity(segment));
        }
        for k in 0..count {
            let want = left.min(segment as u64) as usize;
            let b = if k == 0 { &mut *buf } else { &mut more[k - 1] };
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
        // Each segment in pieces: runs of chunks the basis has at the same
        // place (copied by the receiver), and data runs to diff.
        let offset = e.size - left - (0..count).map(|k| if k == 0 { buf.len() } else { more[k - 1].len() } as u64).sum::<u64>();
        let mut pieces: Vec<(usize, Piece)> = Vec::new();
        let mut at = offset;
        for k in 0..count {
            let b = if k == 0 { &*buf } else { &more[k - 1] };
            split(b, at, chunk, &basis_sums, k, &mut pieces);
            at += b.len() as u64;
        }
        // The delta search of the data runs, on several threads: each
        // run is diffed against the whole old file (moved data is found).
        let runs: Vec<(usize, usize, usize)> =
            pieces.iter().filter_map(|(k, p)| if let Piece::Data(a, z) = p { Some((*k, *a, *z)) } else { None }).collect();
        let mut deltas: Vec<Vec<u8>> = Vec::new();
        if let Some(indexed) = &indexed {
            let bufs: Vec<&[u8]> = (0..count).map(|k| if k == 0 { &buf[..] } else { &more[k - 1][..] }).collect();
            let threads = par.min(runs.len()).max(1);
            let diffed: Vec<Vec<Diffed>> = std::thread::scope(|scope| {
                let work = |t: usize| -> Vec<Diffed> {
                    (t..runs.len())
                        .step_by(threads)
                        .map(|i| {
                            let (k, a, z) = runs[i];
                            let mut d = Vec::new();
                            (i, fast_rsync::diff(indexed, &bufs[k][a..z], &mut d).map(|()| d))
                        })
                        .collect()
                };
                let others: Vec<_> = (1..threads).map(|t| scope.spawn(move || work(t))).collect();
                let mut all = vec![work(0)];
                all.extend(others.into_iter().map(|h| h.join().expect("the delta search thread panicked")));
                all
            });
            deltas.resize(runs.len(), Vec::new());
            for (i, r) in diffed.into_iter().flatten() {
                deltas[i] = r.map_err(|err| Error::usage("sync protocol violation").because_err(&err))?;
            }
        }
        let mut run = 0;
        for (k, piece) in &pieces {
            let b = if *k == 0 { &*buf } else { &more[k - 1] };
            match *piece {
                Piece::Copy(first, n) => {
                    let chunk = chunk.unwrap_or(1) as u64;
                    let start = first as u64 * chunk;
                    let copied = ((first as u64 + n as u64) * chunk).min(e.size) - start;
                    stats.chunk_bytes += copied;
                    writer.send(&Msg::Copy { chunk: first, count: n })?;
                    meter.bytes(copied);
                }
                Piece::Data(a, z) => {
                    let data = &b[a..z];
                    let d = deltas.get(run).map(|d| &d[..]);
                    run += 1;
                    match d {
                        Some(d) if d.len() < data.len() => {
                            stats.delta_bytes += d.len() as u64;
                            stats.delta_covered += data.len() as u64;
                            writer.send_delta(data.len() as u32, d)?;
                        }
                        _ => {
                            stats.literal_bytes += data.len() as u64;
                            writer.send_literal(data)?;
                        }
                    }
                    meter.bytes(data.len() as u64);
                }
            }
        }
    }
    // The receiver takes exactly the listed size, so a file that grew
    // since it was listed (a log, a keyring being written) would land as
    // its first bytes, a whole-looking torn file: one more byte says so
    // (the local copy reads one byte past the size for the same reason).
    match Read::by_ref(&mut file).take(1).read_to_end(&mut Vec::new()) {
        Ok(0) => {}
        Ok(_) => return fail(writer, stats, "changed size while being sent".into()),
        Err(err) => return fail(writer, stats, format!("cannot read: {err}")),
    }
    stats.files_sent += 1;
    let hash = known.unwrap_or_else(|| hasher.finalize().into());
    writer.send(&Msg::FileEnd { index, hash })?;
    // A file sent again (the redo phase, where `reuse_sum` is false) is
    // counted once.
    if reuse_sum {
        meter.file();
    }
    Ok(())
}
