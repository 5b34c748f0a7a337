//! The sync protocol's messages and their framing.
//!
//! A frame is a 1-byte tag, a 4-byte big-endian payload length, then the
//! payload. Every length is checked against a fixed bound before anything
//! is allocated, every payload must be consumed exactly, and an unknown tag
//! is an error: a hostile peer gets a clear refusal, never an allocation of
//! its choosing. Integers are big-endian; byte strings carry a length
//! prefix whose width and bound depend on the field.

use std::io::{self, Read, Write};

use std::collections::{HashMap, HashSet};

use super::list::{Entry, FileKind, LIST_SUM};
use crate::error::{Error, Result};

/// The protocol version; both sides must speak the same one.
pub const VERSION: u32 = 7;
const MAGIC: &[u8; 8] = b"kt-sync\0";

/// Longest relative path (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest single name component (Linux NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Longest symlink target.
pub const MAX_TARGET: usize = 4096;
/// Longest user or group name.
pub const MAX_ACCOUNT_NAME: usize = 255;
/// Longest error text.
pub const MAX_MESSAGE: usize = 4096;
/// Largest data chunk the sender puts in one frame (literal data, or the
/// span of output one delta covers).
pub const SEGMENT: usize = 4 << 20;
/// The data frames of a file sent whole (no basis): small enough that its
/// bytes stay in the CPU's cache from the read to the hash to the write,
/// on both sides (with 4 MiB frames each pass went to memory again: the
/// receiver's copy into the page cache was the largest cost of a first
/// copy over `--rsh`). A frame's 5 bytes of header are 0.002% of it.
pub const WHOLE_SEGMENT: usize = 256 << 10;
/// The aligned chunks of the fast path in front of the delta search:
/// about this many bytes, rounded to a whole number of signature blocks
/// so that a changed run of chunks starts and ends on the basis' block
/// boundaries (its unchanged edges still match block for block).
pub const CHUNK: usize = 256 << 10;
/// Bytes of a chunk sum: xxh3's 128 bits (protocol 7; BLAKE3's first 16
/// bytes before). No guarantee rests on a chunk sum: each side sums its
/// own data, a wrong match (chance or a receiver's crafted collision)
/// only makes a chunk go as a copy of the basis, and the rebuilt file
/// must still match the sender's whole-file BLAKE3 before it may land (a
/// mismatch fetches it whole). A non-cryptographic sum is therefore
/// enough, and xxh3 runs several times BLAKE3's speed a core: with
/// BLAKE3, the chunk sums of both sides were two of the five hash passes
/// over a 100 MB file with 1 MB changed (the largest cost in `perf`).
pub const CHUNK_SUM: usize = 16;

/// The chunk size for a signature of `block`-byte blocks.
pub fn chunk_size(block: u32) -> usize {
    let b = (block as usize).max(1);
    (CHUNK / b).max(1) * b
}

/// The sum of one chunk.
pub fn chunk_sum(data: &[u8]) -> [u8; CHUNK_SUM] {
    xxhash_rust::xxh3::xxh3_128(data).to_be_bytes()
}

/// Largest payload of any frame: a segment's delta can exceed the segment
/// a little (operation headers), a block signature of the largest basis
/// stays far below.
pub const MAX_FRAME: usize = 2 * SEGMENT;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// First message each way: magic and version.
    Hello { version: u32 },
    /// File list entries, sender to receiver, in list order: the payload
    /// of [`encode_entries`], read with [`EntryDecoder`]. Each frame
    /// stands alone (its first entry carries every field).
    Entries(Vec<u8>),
    /// The file list is complete.
    EndOfList,
    /// Receiver to sender, `-c` only (protocol 6): the BLAKE3 sums of
    /// these files of the list, in strictly ascending order: the files DEST
    /// has at the sender's size, the only ones a sum can decide. The list
    /// carries none, so the sender reads a file the receiver lacks only
    /// once, to send it. Answered by one `Sums`; at most [`MAX_WANT_SUMS`]
    /// indices a message.
    WantSums(Vec<u32>),
    /// Sender: the [`LIST_SUM`]-byte sums asked for by the last
    /// `WantSums`, in its order; None for a file it could not read (the
    /// receiver then asks for it, and hears why not).
    Sums(Vec<Option<[u8; LIST_SUM]>>),
    /// Receiver to sender: send file `index`; `signature` is fast_rsync's
    /// block signature of the receiver's basis file, empty for "whole file";
    /// `chunks` the [`CHUNK_SUM`]-byte xxh3 sums of the basis' aligned
    /// chunks ([`chunk_size`]), in order (empty without a signature).
    Request { index: u32, signature: Vec<u8>, chunks: Vec<u8> },
    /// Receiver: no more requests in this phase. Sender: every request of
    /// the phase has been answered.
    EndOfPhase,
    /// Sender: the data of file `index` follows.
    FileStart { index: u32 },
    /// Sender: the next bytes of the file, verbatim.
    Literal(Vec<u8>),
    /// Sender: a fast_rsync delta against the basis that produces exactly
    /// `len` next bytes of the file.
    Delta { len: u32, delta: Vec<u8> },
    /// Sender: the next bytes of the file are chunks `chunk..chunk+count`
    /// of the basis (their sums matched the request's).
    Copy { chunk: u32, count: u32 },
    /// Sender, in a local session only (both sides in one process): the
    /// receiver copies the whole file itself from the sender's source
    /// (`copy_file_range`, no data through the pipe); the `FileEnd` that
    /// follows still carries the sender's hash, which the copy must match.
    /// A remote receiver refuses it.
    LocalCopy,
    /// Sender: the file is complete; the BLAKE3 hash (32 bytes) of all its bytes.
    FileEnd { index: u32, hash: [u8; 32] },
    /// Sender: file `index` could not be sent (vanished, unreadable,
    /// changed size); the receiver keeps what it had.
    FileError { index: u32, message: String },
    /// Either side: a fatal error; the session ends.
    Error { message: String },
    /// Receiver: the session is over.
    Done,
    /// A remote receiver, after `Done`, to the client that sent: one
    /// change it made, for the client's `-i`/`-v` lines.
    Item { code: String, path: Vec<u8>, kind: FileKind, target: Vec<u8> },
    /// A remote receiver, after `Done`: a file it could not apply (the
    /// client's exit 1). `Done` again ends these reports.
    Note { message: String },
}

const T_HELLO: u8 = 1;
const T_ENTRIES: u8 = 2;
const T_END_LIST: u8 = 3;
const T_REQUEST: u8 = 4;
const T_END_PHASE: u8 = 5;
const T_FILE_START: u8 = 6;
const T_LITERAL: u8 = 7;
const T_DELTA: u8 = 8;
const T_FILE_END: u8 = 9;
const T_FILE_ERROR: u8 = 10;
const T_ERROR: u8 = 11;
const T_DONE: u8 = 12;
const T_ITEM: u8 = 13;
const T_NOTE: u8 = 14;
const T_LOCAL_COPY: u8 = 15;
const T_COPY: u8 = 16;
const T_WANT_SUMS: u8 = 17;
const T_SUMS: u8 = 18;

/// Most file indices one `WantSums` may carry (its answer then stays far
/// below [`MAX_FRAME`]: 17 bytes a sum).
pub const MAX_WANT_SUMS: usize = 1 << 16;

fn kind_code(k: FileKind) -> u8 {
    match k {
        FileKind::File => 0,
        FileKind::Dir => 1,
        FileKind::Symlink => 2,
        FileKind::Fifo => 3,
        FileKind::Socket => 4,
        FileKind::CharDev => 5,
        FileKind::BlockDev => 6,
    }
}

fn kind_from(c: u8) -> Option<FileKind> {
    Some(match c {
        0 => FileKind::File,
        1 => FileKind::Dir,
        2 => FileKind::Symlink,
        3 => FileKind::Fifo,
        4 => FileKind::Socket,
        5 => FileKind::CharDev,
        6 => FileKind::BlockDev,
        _ => return None,
    })
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

impl Msg {
    /// The frame: tag, length, payload.
    pub fn encode(&self) -> Vec<u8> {
        // The header's 5 bytes first, filled in at the end: one copy.
        let mut p = vec![0u8; 5];
        let tag = match self {
            Msg::Hello { version } => {
                p.extend_from_slice(MAGIC);
                p.extend_from_slice(&version.to_be_bytes());
                T_HELLO
            }
            Msg::Entries(payload) => {
                p.extend_from_slice(payload);
                T_ENTRIES
            }
            Msg::EndOfList => T_END_LIST,
            Msg::WantSums(indices) => {
                // Gaps between ascending indices, as varints: 1-3 bytes each.
                let mut prev: Option<u32> = None;
                for &i in indices {
                    put_varint(&mut p, prev.map_or(i, |q| i.wrapping_sub(q)) as u64);
                    prev = Some(i);
                }
                T_WANT_SUMS
            }
            Msg::Sums(sums) => {
                for sum in sums {
                    match sum {
                        Some(s) => {
                            p.push(1);
                            p.extend_from_slice(s);
                        }
                        None => p.push(0),
                    }
                }
                T_SUMS
            }
            Msg::Request { index, signature, chunks } => {
                p.extend_from_slice(&index.to_be_bytes());
                p.extend_from_slice(&(signature.len() as u32).to_be_bytes());
                p.extend_from_slice(signature);
                p.extend_from_slice(chunks);
                T_REQUEST
            }
            Msg::Copy { chunk, count } => {
                p.extend_from_slice(&chunk.to_be_bytes());
                p.extend_from_slice(&count.to_be_bytes());
                T_COPY
            }
            Msg::EndOfPhase => T_END_PHASE,
            Msg::FileStart { index } => {
                p.extend_from_slice(&index.to_be_bytes());
                T_FILE_START
            }
            Msg::Literal(data) => {
                p.extend_from_slice(data);
                T_LITERAL
            }
            Msg::Delta { len, delta } => {
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(delta);
                T_DELTA
            }
            Msg::LocalCopy => T_LOCAL_COPY,
            Msg::FileEnd { index, hash } => {
                p.extend_from_slice(&index.to_be_bytes());
                p.extend_from_slice(hash);
                T_FILE_END
            }
            Msg::FileError { index, message } => {
                p.extend_from_slice(&index.to_be_bytes());
                p.extend_from_slice(clip(message));
                T_FILE_ERROR
            }
            Msg::Error { message } => {
                p.extend_from_slice(clip(message));
                T_ERROR
            }
            Msg::Done => T_DONE,
            Msg::Item { code, path, kind, target } => {
                put_bytes16(&mut p, clip_to(code, 16));
                put_bytes16(&mut p, path);
                p.push(kind_code(*kind));
                put_bytes16(&mut p, target);
                T_ITEM
            }
            Msg::Note { message } => {
                p.extend_from_slice(clip(message));
                T_NOTE
            }
        };
        let len = (p.len() - 5) as u32;
        p[0] = tag;
        p[1..5].copy_from_slice(&len.to_be_bytes());
        p
    }

    /// Parses one payload; strict: bounds, known codes, nothing left over.
    /// File data and list entries keep the buffer they were read into (no
    /// second copy of every byte received).
    pub fn decode(tag: u8, payload: Vec<u8>) -> Result<Msg> {
        match tag {
            T_LITERAL if payload.len() > SEGMENT => return Err(bad("literal data larger than a segment")),
            T_LITERAL => return Ok(Msg::Literal(payload)),
            T_ENTRIES => return Ok(Msg::Entries(payload)),
            _ => {}
        }
        let payload = &payload[..];
        let mut r = Cursor { buf: payload, pos: 0 };
        let msg = match tag {
            T_HELLO => {
                if r.take(8)? != MAGIC {
                    return Err(bad("the peer does not speak kt's sync protocol"));
                }
                Msg::Hello { version: r.u32()? }
            }
            T_END_LIST => Msg::EndOfList,
            T_WANT_SUMS => {
                let mut indices: Vec<u32> = Vec::new();
                while r.pos < payload.len() {
                    if indices.len() == MAX_WANT_SUMS {
                        return Err(bad(&format!("more than {MAX_WANT_SUMS} sums asked for at once")));
                    }
                    let v = r.varint()?;
                    let i = match indices.last() {
                        None => v,
                        Some(_) if v == 0 => return Err(bad("sums asked for out of order")),
                        Some(&q) => (q as u64).saturating_add(v),
                    };
                    indices.push(u32::try_from(i).map_err(|_| bad("file number out of range"))?);
                }
                Msg::WantSums(indices)
            }
            T_SUMS => {
                let mut sums = Vec::new();
                while r.pos < payload.len() {
                    if sums.len() == MAX_WANT_SUMS {
                        return Err(bad(&format!("more than {MAX_WANT_SUMS} sums at once")));
                    }
                    sums.push(match r.u8()? {
                        0 => None,
                        1 => Some(r.take(LIST_SUM)?.try_into().unwrap()),
                        _ => return Err(bad("unknown sum flag")),
                    });
                }
                Msg::Sums(sums)
            }
            T_REQUEST => {
                let index = r.u32()?;
                let sig_len = r.u32()? as usize;
                let signature = r.take(sig_len)?.to_vec();
                let chunks = r.rest().to_vec();
                if !chunks.len().is_multiple_of(CHUNK_SUM) {
                    return Err(bad("chunk sums of a wrong length"));
                }
                if signature.is_empty() && !chunks.is_empty() {
                    return Err(bad("chunk sums without a block signature"));
                }
                Msg::Request { index, signature, chunks }
            }
            T_COPY => {
                let (chunk, count) = (r.u32()?, r.u32()?);
                if count == 0 {
                    return Err(bad("a copy of no chunk"));
                }
                Msg::Copy { chunk, count }
            }
            T_END_PHASE => Msg::EndOfPhase,
            T_FILE_START => Msg::FileStart { index: r.u32()? },
            T_DELTA => {
                let len = r.u32()?;
                if len as usize > SEGMENT {
                    return Err(bad("delta output larger than a segment"));
                }
                Msg::Delta { len, delta: r.rest().to_vec() }
            }
            T_LOCAL_COPY => Msg::LocalCopy,
            T_FILE_END => Msg::FileEnd { index: r.u32()?, hash: r.array32()? },
            T_FILE_ERROR => {
                let index = r.u32()?;
                Msg::FileError { index, message: text(r.rest())? }
            }
            T_ERROR => Msg::Error { message: text(r.rest())? },
            T_DONE => Msg::Done,
            T_ITEM => {
                let code = text(&r.bytes16(16, "change code")?)?;
                let path = r.bytes16(MAX_PATH, "path")?;
                let kind = kind_from(r.u8()?).ok_or_else(|| bad("unknown file kind"))?;
                let target = r.bytes16(MAX_TARGET, "link target")?;
                Msg::Item { code, path, kind, target }
            }
            T_NOTE => Msg::Note { message: text(r.rest())? },
            other => return Err(bad(&format!("unknown message type {other}"))),
        };
        if r.pos != payload.len() {
            return Err(bad("trailing bytes after a message"));
        }
        Ok(msg)
    }
}

// ---- the compact file list ----
//
// An entry is a flags byte, then only what the flags and its kind call for:
//
//   [kind u8]           F_KIND: the kind differs from the previous entry's
//   name                varint bytes shared with the previous name, varint
//                       length of the rest, the rest
//   [mode varint]       F_MODE: differs from the previous entry's
//   [mtime varint]      F_MTIME: zigzag difference from the previous mtime
//   [nsec u32]          F_NSEC: nanoseconds, when not 0
//   [uid varint [name]] F_UID: differs from the previous entry's; the owner
//                       name (u8 length, bytes) follows the first time a uid
//                       appears in the frame
//   [gid varint [name]] F_GID: the same for the group
//   [size varint]       files
//   [target]            symlinks: varint length, bytes
//   [rdev varint]       devices
//
// The "previous" state starts empty in each frame, so frames stand alone.
// A bare file in a directory of files costs about 14 bytes. Since protocol
// 6 the list carries no `-c` sums (`WantSums`/`Sums` carry them, for the
// files that need one): with them, an up-to-date tree's run stays within
// rsync's bytes.

const F_KIND: u8 = 1;
const F_MODE: u8 = 2;
const F_MTIME: u8 = 4;
const F_NSEC: u8 = 8;
const F_UID: u8 = 16;
const F_GID: u8 = 32;

/// Encoded entries per list frame, about (the frame closes past this).
pub const LIST_FRAME: usize = 64 << 10;
/// Most entries one list frame may hold: with names shared with the
/// previous entry, a few wire bytes can stand for a 4 KiB name, so the
/// count is bounded as well as the bytes.
pub const MAX_FRAME_ENTRIES: usize = 4096;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Encodes entries for one frame, each against the previous one.
#[derive(Default)]
pub struct EntryEncoder {
    prev: Option<Entry>,
    users: HashSet<u32>,
    groups: HashSet<u32>,
    count: usize,
}

impl EntryEncoder {
    /// Entries encoded in this frame so far.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn push(&mut self, e: &Entry, out: &mut Vec<u8>) {
        let prev = self.prev.take();
        let (pk, pm, pt, pu, pg, pp): (Option<FileKind>, u32, i64, Option<u32>, Option<u32>, &[u8]) = match &prev {
            Some(p) => (Some(p.kind), p.mode, p.mtime, Some(p.uid), Some(p.gid), &p.path),
            None => (None, 0, 0, None, None, b""),
        };
        let mut flags = 0;
        if pk != Some(e.kind) {
            flags |= F_KIND;
        }
        if pm != e.mode {
            flags |= F_MODE;
        }
        if pt != e.mtime {
            flags |= F_MTIME;
        }
        if e.mtime_nsec != 0 {
            flags |= F_NSEC;
        }
        if pu != Some(e.uid) {
            flags |= F_UID;
        }
        if pg != Some(e.gid) {
            flags |= F_GID;
        }
        out.push(flags);
        if flags & F_KIND != 0 {
            out.push(kind_code(e.kind));
        }
        let shared = pp.iter().zip(&e.path).take_while(|(a, b)| a == b).count();
        put_varint(out, shared as u64);
        put_varint(out, (e.path.len() - shared) as u64);
        out.extend_from_slice(&e.path[shared..]);
        if flags & F_MODE != 0 {
            put_varint(out, e.mode as u64);
        }
        if flags & F_MTIME != 0 {
            put_varint(out, zigzag(e.mtime.wrapping_sub(pt)));
        }
        if flags & F_NSEC != 0 {
            out.extend_from_slice(&e.mtime_nsec.to_be_bytes());
        }
        for (on, id, name, seen) in [
            (flags & F_UID != 0, e.uid, &e.user, &mut self.users),
            (flags & F_GID != 0, e.gid, &e.group, &mut self.groups),
        ] {
            if on {
                put_varint(out, id as u64);
                if seen.insert(id) {
                    // Longer names are sent as none (numeric ids).
                    let name: &[u8] = if name.len() > MAX_ACCOUNT_NAME { b"" } else { name };
                    out.push(name.len() as u8);
                    out.extend_from_slice(name);
                }
            }
        }
        match e.kind {
            FileKind::File => {
                put_varint(out, e.size);
            }
            FileKind::Symlink => {
                put_varint(out, e.target.len() as u64);
                out.extend_from_slice(&e.target);
            }
            FileKind::CharDev | FileKind::BlockDev => put_varint(out, e.rdev),
            _ => {}
        }
        self.count += 1;
        self.prev = Some(e.clone());
    }
}

/// One frame's payload for these entries (tests, and small lists).
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut enc = EntryEncoder::default();
    let mut out = Vec::new();
    for e in entries {
        enc.push(e, &mut out);
    }
    out
}

/// Reads the entries of one list frame, one at a time, strictly: every
/// bound of the old fixed layout still holds (names, targets, account
/// names, mode bits, nanoseconds), an id's name comes with its first use
/// only, and nothing is left over.
pub struct EntryDecoder<'a> {
    r: Cursor<'a>,
    prev: Option<Entry>,
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
    count: usize,
}

impl<'a> EntryDecoder<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        EntryDecoder { r: Cursor { buf: payload, pos: 0 }, prev: None, users: HashMap::new(), groups: HashMap::new(), count: 0 }
    }

    /// The next entry, None at the end of the frame.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.r.pos == self.r.buf.len() {
            return Ok(None);
        }
        self.count += 1;
        if self.count > MAX_FRAME_ENTRIES {
            return Err(bad(&format!("more than {MAX_FRAME_ENTRIES} entries in one list frame")));
        }
        let r = &mut self.r;
        let flags = r.u8()?;
        if flags & !(F_KIND | F_MODE | F_MTIME | F_NSEC | F_UID | F_GID) != 0 {
            return Err(bad("unknown entry flags"));
        }
        let prev = self.prev.take();
        let kind = if flags & F_KIND != 0 {
            kind_from(r.u8()?).ok_or_else(|| bad("unknown file kind"))?
        } else {
            prev.as_ref().map(|p| p.kind).ok_or_else(|| bad("the first entry of a frame must carry every field"))?
        };
        let prev_path: &[u8] = prev.as_ref().map_or(b"", |p| &p.path);
        let shared = r.varint()?;
        let rest = r.varint()?;
        if shared > prev_path.len() as u64 {
            return Err(bad("a name shares more than the previous name has"));
        }
        if shared + rest > MAX_PATH as u64 {
            return Err(bad(&format!("path longer than {MAX_PATH} bytes")));
        }
        let mut path = prev_path[..shared as usize].to_vec();
        path.extend_from_slice(r.take(rest as usize)?);
        let mode = if flags & F_MODE != 0 {
            let m = r.varint()?;
            if m & !0o7777 != 0 {
                return Err(bad("mode has bits beyond 07777"));
            }
            m as u32
        } else {
            prev.as_ref().map_or(0, |p| p.mode)
        };
        let prev_mtime = prev.as_ref().map_or(0, |p| p.mtime);
        let mtime = if flags & F_MTIME != 0 { prev_mtime.wrapping_add(unzigzag(r.varint()?)) } else { prev_mtime };
        let mtime_nsec = if flags & F_NSEC != 0 { r.u32()? } else { 0 };
        if mtime_nsec >= 1_000_000_000 {
            return Err(bad("nanoseconds out of range"));
        }
        let (uid, user) = if flags & F_UID != 0 {
            read_id(r, &mut self.users, "user name")?
        } else {
            prev.as_ref().map(|p| (p.uid, p.user.clone())).ok_or_else(|| bad("no owner"))?
        };
        let (gid, group) = if flags & F_GID != 0 {
            read_id(r, &mut self.groups, "group name")?
        } else {
            prev.as_ref().map(|p| (p.gid, p.group.clone())).ok_or_else(|| bad("no group"))?
        };
        let mut e = Entry { path, kind, mode, mtime, mtime_nsec, size: 0, uid, gid, user, group, target: Vec::new(), rdev: 0 };
        match kind {
            FileKind::File => {
                e.size = r.varint()?;
            }
            FileKind::Symlink => {
                let n = r.varint()?;
                if n > MAX_TARGET as u64 {
                    return Err(bad(&format!("link target longer than {MAX_TARGET} bytes")));
                }
                e.target = r.take(n as usize)?.to_vec();
            }
            FileKind::CharDev | FileKind::BlockDev => e.rdev = r.varint()?,
            _ => {}
        }
        self.prev = Some(e.clone());
        Ok(Some(e))
    }
}

/// An id, and its name the first time it appears in the frame.
fn read_id(r: &mut Cursor<'_>, names: &mut HashMap<u32, Vec<u8>>, what: &str) -> Result<(u32, Vec<u8>)> {
    let id = r.varint()?;
    let id = u32::try_from(id).map_err(|_| bad(&format!("{what}: id out of range")))?;
    if let Some(name) = names.get(&id) {
        return Ok((id, name.clone()));
    }
    let n = r.u8()? as usize;
    if n > MAX_ACCOUNT_NAME {
        return Err(bad(&format!("{what} longer than {MAX_ACCOUNT_NAME} bytes")));
    }
    let name = r.take(n)?.to_vec();
    names.insert(id, name.clone());
    Ok((id, name))
}

fn clip(message: &str) -> &[u8] {
    clip_to(message, MAX_MESSAGE)
}

fn clip_to(message: &str, max: usize) -> &[u8] {
    let mut end = message.len().min(max);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

fn text(b: &[u8]) -> Result<String> {
    if b.len() > MAX_MESSAGE {
        return Err(bad("error text too long"));
    }
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn bad(what: &str) -> Error {
    Error::usage("malformed sync protocol message").because(what)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(bad("message cut short"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(bad("number out of range"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("number out of range"))
    }
    fn array32(&mut self) -> Result<[u8; 32]> {
        Ok(self.take(32)?.try_into().unwrap())
    }
    fn bytes16(&mut self, max: usize, what: &str) -> Result<Vec<u8>> {
        let n = u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as usize;
        if n > max {
            return Err(bad(&format!("{what} longer than {max} bytes")));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// The opening of every session, the same on both sides: send our
/// greeting, then read the peer's (`peer` names it in errors: "sender",
/// "receiver"). Different protocol versions end the session before any
/// file is listed.
pub fn greet<R: Read, W: Write>(reader: &mut Reader<R>, writer: &mut Writer<W>, peer: &str) -> Result<()> {
    writer.send(&Msg::Hello { version: VERSION })?;
    writer.flush()?;
    match reader.read()? {
        Msg::Hello { version } if version == VERSION => Ok(()),
        Msg::Hello { version } => Err(Error::env(format!("the {peer} speaks sync protocol {version}, this kt speaks {VERSION}"))
            .with_hint("use the same kt version on both hosts")),
        Msg::Error { message } => Err(Error::env(format!("the {peer} failed")).because(message)),
        _ => Err(bad("expected a greeting")),
    }
}

/// Reads frames, refusing any payload above [`MAX_FRAME`] before
/// allocating it, and counts the bytes read.
pub struct Reader<R> {
    inner: R,
    pub bytes: u64,
    /// A data buffer handed back ([`Reader::recycle`]) for the next
    /// `Literal`: its pages are mapped and its bytes need no zeroing.
    spare: Vec<u8>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader { inner, bytes: 0, spare: Vec::new() }
    }

    /// Gives a `Literal`'s buffer back once its data is used: the next
    /// data frame is read into it instead of a freshly zeroed allocation.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() > self.spare.capacity() {
            self.spare = buf;
        }
    }

    /// The next message; a closed pipe is an environment failure (exit 3),
    /// a malformed frame bad input (exit 2).
    pub fn read(&mut self) -> Result<Msg> {
        let mut head = [0u8; 5];
        self.inner.read_exact(&mut head).map_err(broken)?;
        let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        if len > MAX_FRAME {
            return Err(bad(&format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}")));
        }
        let mut payload = if head[0] == T_LITERAL && len <= SEGMENT {
            // Overwritten whole by the read: only growth is zeroed.
            let mut b = std::mem::take(&mut self.spare);
            if b.len() >= len {
                b.truncate(len);
            } else {
                b.resize(len, 0);
            }
            b
        } else {
            vec![0u8; len]
        };
        self.inner.read_exact(&mut payload).map_err(broken)?;
        self.bytes += 5 + len as u64;
        Msg::decode(head[0], payload)
    }
}

/// Writes frames through a buffer and counts the bytes written.
pub struct Writer<W: Write> {
    inner: io::BufWriter<W>,
    pub bytes: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Writer { inner: io::BufWriter::with_capacity(256 * 1024, inner), bytes: 0 }
    }

    pub fn send(&mut self, msg: &Msg) -> Result<()> {
        let frame = msg.encode();
        if frame.len() - 5 > MAX_FRAME {
            return Err(Error::problem("internal error: sync message larger than a frame"));
        }
        self.bytes += frame.len() as u64;
        self.inner.write_all(&frame).map_err(broken)
    }

    /// Sends the whole list in frames of about [`LIST_FRAME`] bytes.
    pub fn send_list(&mut self, entries: &[Entry]) -> Result<()> {
        let mut enc = EntryEncoder::default();
        let mut payload = Vec::with_capacity(LIST_FRAME + (16 << 10));
        for e in entries {
            enc.push(e, &mut payload);
            if payload.len() >= LIST_FRAME || enc.count() >= MAX_FRAME_ENTRIES {
                self.send_raw(T_ENTRIES, &[], &payload)?;
                payload.clear();
                enc = EntryEncoder::default();
            }
        }
        if !payload.is_empty() {
            self.send_raw(T_ENTRIES, &[], &payload)?;
        }
        Ok(())
    }

    /// Sends `Literal(data)` without copying the data into a message.
    pub fn send_literal(&mut self, data: &[u8]) -> Result<()> {
        self.send_raw(T_LITERAL, &[], data)
    }

    /// Sends `Delta { len, delta }` without copying the delta.
    pub fn send_delta(&mut self, len: u32, delta: &[u8]) -> Result<()> {
        self.send_raw(T_DELTA, &len.to_be_bytes(), delta)
    }

    fn send_raw(&mut self, tag: u8, head: &[u8], data: &[u8]) -> Result<()> {
        let len = head.len() + data.len();
        if len > MAX_FRAME {
            return Err(Error::problem("internal error: sync message larger than a frame"));
        }
        let mut header = [0u8; 5];
        header[0] = tag;
        header[1..].copy_from_slice(&(len as u32).to_be_bytes());
        self.bytes += 5 + len as u64;
        self.inner.write_all(&header).map_err(broken)?;
        self.inner.write_all(head).map_err(broken)?;
        self.inner.write_all(data).map_err(broken)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(broken)
    }
}

/// Widens a pipe the session runs over to 1 MiB (Linux's default most
/// for an unprivileged process), from the default 64 KiB: with segments of
/// 4 MiB, a narrow pipe makes the two sides take turns instead of working
/// at once. Anything that is not a pipe, or a refusal, is left as it is.
pub fn widen_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we borrow; F_SETPIPE_SZ changes only
    // the pipe's buffer size and fails harmlessly on anything else.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

fn broken(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::env("the other side of the sync closed the connection")
    } else {
        Error::env("the sync connection failed").because_err(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn entry() -> Entry {
        Entry {
            path: b"dir/caf\xe9 x".to_vec(),
            kind: FileKind::File,
            mode: 0o600,
            mtime: -5,
            mtime_nsec: 999_999_999,
            size: 1 << 40,
            uid: 7,
            gid: 8,
            user: b"keytrustee".to_vec(),
            group: b"".to_vec(),
            target: Vec::new(),
            rdev: 0,
        }
    }

    fn decode_all(payload: &[u8]) -> Result<Vec<Entry>> {
        let mut d = EntryDecoder::new(payload);
        let mut out = Vec::new();
        while let Some(e) = d.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    fn refused_list(payload: &[u8]) -> String {
        format!("{}", decode_all(payload).unwrap_err())
    }

    #[test]
    fn list_entries_round_trip_compactly() {
        let mut list = vec![
            Entry { path: b".".to_vec(), kind: FileKind::Dir, mode: 0o755, size: 0, ..entry() },
            entry(),
            Entry { path: b"dir/caf\xe9 y".to_vec(), mtime_nsec: 0, ..entry() },
            Entry { path: b"dir/l".to_vec(), kind: FileKind::Symlink, target: b"../x".to_vec(), size: 0, ..entry() },
            Entry { path: b"dir/dev".to_vec(), kind: FileKind::BlockDev, rdev: 0x0803, size: 0, uid: 0, user: b"root".to_vec(), ..entry() },
            Entry { path: b"dir/z".to_vec(), mtime: i64::MAX, uid: 7, gid: 9, group: b"g9".to_vec(), ..entry() },
            Entry { path: b"e".to_vec(), mtime: i64::MIN, mode: 0o7777, uid: u32::MAX, ..entry() },
        ];
        for i in 0..100u32 {
            list.push(Entry { path: format!("f/{i:05}").into_bytes(), size: i as u64, ..entry() });
        }
        let payload = encode_entries(&list);
        assert_eq!(decode_all(&payload).unwrap(), list);
        let frame = Msg::Entries(payload.clone()).encode();
        assert_eq!(Reader::new(&frame[..]).read().unwrap(), Msg::Entries(payload.clone()));
        // A file next to the previous one: flags, name, nsec, size.
        let one = encode_entries(&list[list.len() - 2..]).len() - encode_entries(&list[list.len() - 2..list.len() - 1]).len();
        assert!(one <= 1 + 3 + 2 + 4 + 1, "{one} bytes");
        // Frames stand alone, and the writer cuts long lists into frames.
        let many: Vec<Entry> = (0..5000).map(|i| Entry { path: format!("f{i:05}").into_bytes(), ..entry() }).collect();
        let mut w = Writer::new(Vec::new());
        w.send_list(&many).unwrap();
        w.flush().unwrap();
        let out = w.inner.into_inner().unwrap();
        let mut r = Reader::new(&out[..]);
        let mut back = Vec::new();
        while r.bytes < out.len() as u64 {
            match r.read().unwrap() {
                Msg::Entries(p) => back.extend(decode_all(&p).unwrap()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, many);
    }

    #[test]
    fn list_entries_are_bounded() {
        let long = encode_entries(&[Entry { path: vec![b'a'; MAX_PATH + 1], ..entry() }]);
        assert!(refused_list(&long).contains("path longer"), "{}", refused_list(&long));
        let mut bad_kind = encode_entries(&[entry()]);
        bad_kind[1] = 42;
        assert!(refused_list(&bad_kind).contains("unknown file kind"));
        let mut bad_flags = encode_entries(&[entry()]);
        bad_flags[0] |= 0x80;
        assert!(refused_list(&bad_flags).contains("flags"));
        let bad_mode = encode_entries(&[Entry { mode: 0o170000, ..entry() }]);
        assert!(refused_list(&bad_mode).contains("mode"));
        let bad_nsec = encode_entries(&[Entry { mtime_nsec: 1_000_000_000, ..entry() }]);
        assert!(refused_list(&bad_nsec).contains("nanoseconds"));
        let mut cut = encode_entries(&[entry()]);
        cut.truncate(cut.len() - 3);
        assert!(refused_list(&cut).contains("cut short"));
        // A first entry that leans on a previous one.
        let two = encode_entries(&[entry(), Entry { path: b"dir/caf".to_vec(), ..entry() }]);
        let second = &two[encode_entries(&[entry()]).len()..];
        assert!(refused_list(second).contains("every field"), "{}", refused_list(second));
        // A name that shares more than the previous name has.
        let mut share = encode_entries(&[entry()]);
        share[2] = 100;
        assert!(refused_list(&share).contains("shares more"), "{}", refused_list(&share));
        // An overlong number.
        assert!(refused_list(&[F_KIND, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).contains("out of range"));
        // Tiny entries cannot multiply without bound inside one frame.
        let many: Vec<Entry> = (0..MAX_FRAME_ENTRIES + 1).map(|_| entry()).collect();
        assert!(refused_list(&encode_entries(&many)).contains("entries in one list frame"));
    }

    fn roundtrip(m: Msg) {
        let frame = m.encode();
        let mut r = Reader::new(&frame[..]);
        assert_eq!(r.read().unwrap(), m);
        assert_eq!(r.bytes, frame.len() as u64);
    }

    #[test]
    fn every_message_round_trips() {
        roundtrip(Msg::Hello { version: VERSION });
        roundtrip(Msg::Entries(encode_entries(&[entry()])));
        roundtrip(Msg::EndOfList);
        roundtrip(Msg::WantSums(vec![]));
        roundtrip(Msg::WantSums(vec![0, 1, 200, 70_000, u32::MAX]));
        roundtrip(Msg::Sums(vec![Some([4; LIST_SUM]), None, Some([0; LIST_SUM])]));
        roundtrip(Msg::Request { index: 3, signature: vec![1, 2, 3], chunks: vec![7; 2 * CHUNK_SUM] });
        roundtrip(Msg::Request { index: 3, signature: vec![1, 2, 3], chunks: vec![] });
        roundtrip(Msg::Request { index: 3, signature: vec![], chunks: vec![] });
        roundtrip(Msg::Copy { chunk: 2, count: 5 });
        roundtrip(Msg::LocalCopy);
        roundtrip(Msg::EndOfPhase);
        roundtrip(Msg::FileStart { index: u32::MAX });
        roundtrip(Msg::Literal(vec![0; 1000]));
        roundtrip(Msg::Delta { len: 10, delta: vec![5; 7] });
        roundtrip(Msg::FileEnd { index: 1, hash: [3; 32] });
        roundtrip(Msg::FileError { index: 1, message: "gone".into() });
        roundtrip(Msg::Error { message: "no".into() });
        roundtrip(Msg::Done);
        roundtrip(Msg::Item { code: ">f+++++++++".into(), path: b"a/b".to_vec(), kind: FileKind::File, target: vec![] });
        roundtrip(Msg::Note { message: "a: gone".into() });
        let mut w = Writer::new(Vec::new());
        w.send_literal(b"abc").unwrap();
        w.send_delta(9, b"xy").unwrap();
        w.flush().unwrap();
        let bytes = w.bytes;
        let out = w.inner.into_inner().unwrap();
        assert_eq!(bytes, out.len() as u64);
        assert_eq!(out, [Msg::Literal(b"abc".to_vec()).encode(), Msg::Delta { len: 9, delta: b"xy".to_vec() }.encode()].concat());
    }

    fn refused(frame: &[u8]) -> String {
        let err = Reader::new(frame).read().unwrap_err();
        format!("{err}")
    }

    #[test]
    fn malformed_frames_are_refused_before_allocating() {
        // A length of 4 GiB is refused from the header alone.
        let msg = refused(&[T_LITERAL, 0xff, 0xff, 0xff, 0xff]);
        assert!(msg.contains("exceeds the limit"), "{msg}");
        assert!(refused(&[99, 0, 0, 0, 0]).contains("unknown message type"));
        assert!(refused(&[T_HELLO, 0, 0, 0, 12, b'r', b's', b'y', b'n', b'c', 0, 0, 0, 0, 0, 0, 1]).contains("does not speak"));
        let mut trailing = Msg::Done.encode();
        trailing[4] = 1;
        trailing.push(0);
        assert!(refused(&trailing).contains("trailing bytes"));
        let err = Reader::new(&[T_DONE, 0][..]).read().unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Environment, "a cut header is a broken pipe");
    }

    #[test]
    fn sum_messages_are_strict() {
        // Indices must ascend strictly and fit a u32.
        let frame = |tag: u8, p: &[u8]| [&[tag][..], &(p.len() as u32).to_be_bytes(), p].concat();
        assert!(refused(&frame(T_WANT_SUMS, &[5, 0])).contains("out of order"));
        let over = Msg::WantSums(vec![u32::MAX]).encode();
        let mut p = over[5..].to_vec();
        p.push(1);
        assert!(refused(&frame(T_WANT_SUMS, &p)).contains("out of range"));
        let many = Msg::WantSums((0..=MAX_WANT_SUMS as u32).collect()).encode();
        assert!(refused(&many).contains("at once"));
        assert!(refused(&frame(T_SUMS, &[2])).contains("unknown sum flag"));
        assert!(refused(&frame(T_SUMS, &[1, 0, 0])).contains("cut short"));
    }

    #[test]
    fn a_recycled_buffer_never_shows_an_earlier_frame() {
        // A long frame, then shorter and empty ones into its buffer: each
        // reads back exactly its own bytes, and a frame cut short is an
        // error, never the previous frame's tail.
        let frames: Vec<Vec<u8>> = vec![vec![0xaa; 1000], vec![0x11; 10], vec![], vec![0x22; 1500], vec![0x33; 3]];
        let mut wire: Vec<u8> = frames.iter().flat_map(|f| Msg::Literal(f.clone()).encode()).collect();
        let cut = Msg::Literal(vec![0x44; 100]).encode();
        wire.extend_from_slice(&cut[..cut.len() - 50]);
        let mut r = Reader::new(&wire[..]);
        for want in &frames {
            match r.read().unwrap() {
                Msg::Literal(got) => {
                    assert_eq!(&got, want);
                    r.recycle(got);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r.read().unwrap_err().kind(), crate::error::Kind::Environment);
    }

    #[test]
    fn data_frames_are_bounded() {
        let big = Msg::Delta { len: SEGMENT as u32 + 1, delta: vec![] }.encode();
        assert!(refused(&big).contains("larger than a segment"));
        // Literal data too, though its buffer is a recycled one.
        let big = Msg::Literal(vec![7; SEGMENT + 1]).encode();
        assert!(refused(&big).contains("literal data larger than a segment"));
        assert_eq!(Reader::new(&Msg::Literal(vec![7; SEGMENT]).encode()[..]).read().unwrap(), Msg::Literal(vec![7; SEGMENT]));
    }
}
