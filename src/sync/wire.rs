//! The sync protocol's messages and their framing.
//!
//! A frame is a 1-byte tag, a 4-byte big-endian payload length, then the
//! payload. Every length is checked against a fixed bound before anything
//! is allocated, every payload must be consumed exactly, and an unknown tag
//! is an error: a hostile peer gets a clear refusal, never an allocation of
//! its choosing. Integers are big-endian; byte strings carry a length
//! prefix whose width and bound depend on the field.

use std::io::{self, Read, Write};

use super::list::{Entry, FileKind};
use crate::error::{Error, Result};

/// The protocol version; both sides must speak the same one.
pub const VERSION: u32 = 2;
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
/// Largest payload of any frame: a segment's delta can exceed the segment
/// a little (operation headers), a block signature of the largest basis
/// stays far below.
pub const MAX_FRAME: usize = 2 * SEGMENT;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// First message each way: magic and version.
    Hello { version: u32 },
    /// One file list entry, sender to receiver, in list order.
    Entry(Entry),
    /// The file list is complete.
    EndOfList,
    /// Receiver to sender: send file `index`; `signature` is fast_rsync's
    /// block signature of the receiver's basis file, empty for "whole file".
    Request { index: u32, signature: Vec<u8> },
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
    /// Sender: the file is complete; SHA-256 of all its bytes.
    FileEnd { index: u32, sha256: [u8; 32] },
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
const T_ENTRY: u8 = 2;
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
            Msg::Entry(e) => {
                put_bytes16(&mut p, &e.path);
                p.push(kind_code(e.kind));
                p.extend_from_slice(&e.mode.to_be_bytes());
                p.extend_from_slice(&e.mtime.to_be_bytes());
                p.extend_from_slice(&e.mtime_nsec.to_be_bytes());
                p.extend_from_slice(&e.size.to_be_bytes());
                p.extend_from_slice(&e.uid.to_be_bytes());
                p.extend_from_slice(&e.gid.to_be_bytes());
                put_bytes16(&mut p, &e.user);
                put_bytes16(&mut p, &e.group);
                put_bytes16(&mut p, &e.target);
                p.extend_from_slice(&e.rdev.to_be_bytes());
                match &e.checksum {
                    Some(h) => {
                        p.push(1);
                        p.extend_from_slice(h);
                    }
                    None => p.push(0),
                }
                T_ENTRY
            }
            Msg::EndOfList => T_END_LIST,
            Msg::Request { index, signature } => {
                p.extend_from_slice(&index.to_be_bytes());
                p.extend_from_slice(signature);
                T_REQUEST
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
            Msg::FileEnd { index, sha256 } => {
                p.extend_from_slice(&index.to_be_bytes());
                p.extend_from_slice(sha256);
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
    pub fn decode(tag: u8, payload: &[u8]) -> Result<Msg> {
        let mut r = Cursor { buf: payload, pos: 0 };
        let msg = match tag {
            T_HELLO => {
                if r.take(8)? != MAGIC {
                    return Err(bad("the peer does not speak kt's sync protocol"));
                }
                Msg::Hello { version: r.u32()? }
            }
            T_ENTRY => {
                let path = r.bytes16(MAX_PATH, "path")?;
                let kind = kind_from(r.u8()?).ok_or_else(|| bad("unknown file kind"))?;
                let mode = r.u32()?;
                if mode & !0o7777 != 0 {
                    return Err(bad("mode has bits beyond 07777"));
                }
                let mtime = r.i64()?;
                let mtime_nsec = r.u32()?;
                if mtime_nsec >= 1_000_000_000 {
                    return Err(bad("nanoseconds out of range"));
                }
                let size = r.u64()?;
                let uid = r.u32()?;
                let gid = r.u32()?;
                let user = r.bytes16(MAX_ACCOUNT_NAME, "user name")?;
                let group = r.bytes16(MAX_ACCOUNT_NAME, "group name")?;
                let target = r.bytes16(MAX_TARGET, "link target")?;
                let rdev = r.u64()?;
                let checksum = match r.u8()? {
                    0 => None,
                    1 => Some(r.array32()?),
                    _ => return Err(bad("bad checksum flag")),
                };
                Msg::Entry(Entry { path, kind, mode, mtime, mtime_nsec, size, uid, gid, user, group, target, rdev, checksum })
            }
            T_END_LIST => Msg::EndOfList,
            T_REQUEST => {
                let index = r.u32()?;
                Msg::Request { index, signature: r.rest().to_vec() }
            }
            T_END_PHASE => Msg::EndOfPhase,
            T_FILE_START => Msg::FileStart { index: r.u32()? },
            T_LITERAL => Msg::Literal(r.rest().to_vec()),
            T_DELTA => {
                let len = r.u32()?;
                if len as usize > SEGMENT {
                    return Err(bad("delta output larger than a segment"));
                }
                Msg::Delta { len, delta: r.rest().to_vec() }
            }
            T_FILE_END => Msg::FileEnd { index: r.u32()?, sha256: r.array32()? },
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
        if let Msg::Literal(d) = &msg {
            if d.len() > SEGMENT {
                return Err(bad("literal data larger than a segment"));
            }
        }
        Ok(msg)
    }
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
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
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
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader { inner, bytes: 0 }
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
        let mut payload = vec![0u8; len];
        self.inner.read_exact(&mut payload).map_err(broken)?;
        self.bytes += 5 + len as u64;
        Msg::decode(head[0], &payload)
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
            checksum: Some([9; 32]),
        }
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
        roundtrip(Msg::Entry(entry()));
        roundtrip(Msg::Entry(Entry { kind: FileKind::Symlink, target: b"../x".to_vec(), checksum: None, ..entry() }));
        roundtrip(Msg::EndOfList);
        roundtrip(Msg::Request { index: 3, signature: vec![1, 2, 3] });
        roundtrip(Msg::Request { index: 3, signature: vec![] });
        roundtrip(Msg::EndOfPhase);
        roundtrip(Msg::FileStart { index: u32::MAX });
        roundtrip(Msg::Literal(vec![0; 1000]));
        roundtrip(Msg::Delta { len: 10, delta: vec![5; 7] });
        roundtrip(Msg::FileEnd { index: 1, sha256: [3; 32] });
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
    fn entry_fields_are_bounded() {
        let long = Msg::Entry(Entry { path: vec![b'a'; MAX_PATH + 1], ..entry() }).encode();
        assert!(refused(&long).contains("path longer"));
        let mut bad_kind = Msg::Entry(entry()).encode();
        let kind_at = 5 + 2 + entry().path.len();
        bad_kind[kind_at] = 42;
        assert!(refused(&bad_kind).contains("unknown file kind"));
        let bad_mode = Msg::Entry(Entry { mode: 0o170000, ..entry() }).encode();
        assert!(refused(&bad_mode).contains("mode"));
        let mut cut = Msg::Entry(entry()).encode();
        cut.truncate(cut.len() - 3);
        let n = (cut.len() - 5) as u32;
        cut[1..5].copy_from_slice(&n.to_be_bytes());
        assert!(refused(&cut).contains("cut short"));
        let big = Msg::Delta { len: SEGMENT as u32 + 1, delta: vec![] }.encode();
        assert!(refused(&big).contains("larger than a segment"));
    }
}
