//! The archive: a POSIX tar whose members are the confdir and the dump at
//! their absolute paths without the leading `/`, then a manifest; written
//! either as is (`--cleartext`) or through an OpenPGP encryptor (SEIPD v1
//! with MDC, v3 PKESK per recipient: what GnuPG 2.2 reads; see
//! [`super::seal`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::backup::recipients::Recipient;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// One confdir entry, read and hashed before the archive is written.
#[derive(Debug, Clone)]
pub struct ConfEntry {
    /// The member path: the absolute path without its leading `/`.
    pub member: String,
    pub kind: EntryType,
    pub meta_mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// File contents (the confdir is small) or the symlink target.
    pub data: Vec<u8>,
    pub link: Option<PathBuf>,
}

/// The member path of an absolute path.
pub fn member_path(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

/// Reads the whole confdir (directories, files, symlinks), sorted.
///
/// A symbolic link whose target stays inside the confdir is archived as a
/// link; one that leaves it (an operator's link into /etc/letsencrypt, say)
/// is archived as the file it points to, since a restore only recreates
/// links inside the confdir (see [`super::read`]).
pub fn read_confdir(confdir: &Path) -> Result<Vec<ConfEntry>> {
    let mut out = Vec::new();
    fn walk(confdir: &Path, path: &Path, out: &mut Vec<ConfEntry>) -> Result<()> {
        let unreadable = |e: std::io::Error| Error::env(format!("cannot read {}", path.display())).because_err(&e);
        let mut meta = std::fs::symlink_metadata(path).map_err(unreadable)?;
        let mut ft = meta.file_type();
        let mut link = None;
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(unreadable)?;
            let inside = path.strip_prefix(confdir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            if super::read::link_stays_inside(&inside, &target.to_string_lossy()) {
                link = Some(target);
            } else {
                meta = std::fs::metadata(path).map_err(|e| {
                    Error::env(format!("{} is a link to {}, which cannot be read", path.display(), target.display())).because_err(&e)
                })?;
                ft = meta.file_type();
                if !ft.is_file() {
                    return Err(Error::env(format!(
                        "{} is a link out of the confdir to {}, which is not a file: kt cannot back it up",
                        path.display(),
                        target.display()
                    )));
                }
            }
        }
        let (kind, data) = if link.is_some() {
            (EntryType::Symlink, Vec::new())
        } else if ft.is_dir() {
            (EntryType::Directory, Vec::new())
        } else if ft.is_file() {
            (EntryType::Regular, std::fs::read(path).map_err(unreadable)?)
        } else {
            return Ok(()); // sockets, fifos, devices have no place in a backup
        };
        out.push(ConfEntry {
            member: member_path(path),
            kind,
            meta_mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime().max(0) as u64,
            data,
            link,
        });
        if kind == EntryType::Directory {
            let mut children: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::env(format!("cannot read {}", path.display())).because_err(&e))?
                .flatten()
                .map(|e| e.path())
                .collect();
            children.sort();
            for child in children {
                walk(confdir, &child, out)?;
            }
        }
        Ok(())
    }
    walk(confdir, confdir, &mut out)?;
    Ok(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The last two members of the archive: the manifest and its detached
/// signature by the server key (see [`super::manifest`]).
pub struct SignedManifest {
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What goes into the archive after the confdir.
pub struct Payload<'a> {
    pub confdir: &'a [ConfEntry],
    pub dump_file: &'a Path,
    pub dump_member: String,
    pub dump_size: u64,
    pub dump_owner: (u32, u32),
    pub manifest_member: String,
}

/// User and group names for tar headers, so `tar tv` shows them.
#[derive(Default)]
struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                crate::account::Account::lookup_uid(uid).map(|a| a.name).unwrap_or_default()
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> String {
        self.groups.entry(gid).or_insert_with(|| crate::account::group_name(gid).unwrap_or_default()).clone()
    }
}

fn header(kind: EntryType, mode: u32, uid: u32, gid: u32, mtime: u64, size: u64, names: &mut Names) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(mtime);
    h.set_size(size);
    let _ = h.set_username(&names.user(uid));
    let _ = h.set_groupname(&names.group(gid));
    h
}

/// The tar stream as one reader: the confdir members and the dump's header
/// (built in memory), the dump file itself, then its padding, the manifest
/// with its signature and the end-of-archive blocks. Its length is known
/// before the first byte is read (the encrypted packet is framed by it).
pub struct TarStream {
    prefix: std::io::Cursor<Vec<u8>>,
    dump: SizeChecked<File>,
    suffix: std::io::Cursor<Vec<u8>>,
    len: u64,
}

impl TarStream {
    pub fn new(payload: &Payload<'_>, signed: &SignedManifest) -> std::io::Result<TarStream> {
        let mut names = Names::default();
        let now = crate::clock::unix_now().max(0) as u64;
        let mut prefix = tar::Builder::new(Vec::new());
        for e in payload.confdir {
            match e.kind {
                EntryType::Directory => {
                    let mut h = header(e.kind, e.meta_mode, e.uid, e.gid, e.mtime, 0, &mut names);
                    prefix.append_data(&mut h, format!("{}/", e.member), std::io::empty())?;
                }
                EntryType::Symlink => {
                    let mut h = header(e.kind, e.meta_mode, e.uid, e.gid, e.mtime, 0, &mut names);
                    prefix.append_link(&mut h, &e.member, e.link.as_deref().unwrap_or(Path::new("")))?;
                }
                _ => {
                    let mut h = header(e.kind, e.meta_mode, e.uid, e.gid, e.mtime, e.data.len() as u64, &mut names);
                    prefix.append_data(&mut h, &e.member, &e.data[..])?;
                }
            }
        }
        let (uid, gid) = payload.dump_owner;
        // The dump's header alone: its data follows from the file.
        let mut h = header(EntryType::Regular, 0o600, uid, gid, now, payload.dump_size, &mut names);
        prefix.append_data(&mut h, &payload.dump_member, std::io::empty())?;
        let prefix_bytes = std::mem::take(prefix.get_mut());
        drop(prefix);

        let padding = (512 - payload.dump_size % 512) % 512;
        let mut suffix = tar::Builder::new(vec![0u8; padding as usize]);
        let signature_member = format!("{}{}", payload.manifest_member, super::manifest::SIG_SUFFIX);
        for (member, bytes) in [(&payload.manifest_member, &signed.manifest), (&signature_member, &signed.signature)] {
            let mut h = header(EntryType::Regular, 0o600, uid, gid, now, bytes.len() as u64, &mut names);
            suffix.append_data(&mut h, member, &bytes[..])?;
        }
        let suffix_bytes = suffix.into_inner()?;
        let len = prefix_bytes.len() as u64 + payload.dump_size + suffix_bytes.len() as u64;
        Ok(TarStream {
            prefix: std::io::Cursor::new(prefix_bytes),
            dump: SizeChecked { inner: File::open(payload.dump_file)?, left: payload.dump_size },
            suffix: std::io::Cursor::new(suffix_bytes),
            len,
        })
    }

    /// The whole archive's length in bytes.
    pub fn total_len(&self) -> u64 {
        self.len
    }

    /// Whether every byte has been read, and the dump file ended where its
    /// size said (it did not grow while it was archived).
    fn at_end(&mut self) -> std::io::Result<bool> {
        let mut probe = [0u8; 1];
        Ok(self.read(&mut probe)? == 0 && self.dump.inner.read(&mut probe)? == 0)
    }
}

impl Read for TarStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.prefix.position() as usize) < self.prefix.get_ref().len() {
            return self.prefix.read(buf);
        }
        if self.dump.left > 0 {
            return self.dump.read(buf);
        }
        self.suffix.read(buf)
    }
}

/// Fails if the reader ends before `left` bytes.
struct SizeChecked<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for SizeChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the dump file shrank while archiving"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts bytes written and reports them as progress (the dump's rows are
/// reported while it is taken, see [`super::dump`]).
pub struct CountingWriter<'p, W> {
    pub inner: W,
    pub written: u64,
    pub total: u64,
    pub progress: &'p dyn Progress,
    reported: u64,
}

impl<'p, W> CountingWriter<'p, W> {
    pub fn new(inner: W, total: u64, progress: &'p dyn Progress) -> Self {
        CountingWriter { inner, written: 0, total, progress, reported: 0 }
    }

    /// Reports where the transfer stands (also the last state, which the
    /// 8 MiB steps of `write` can miss).
    pub fn report(&mut self) {
        self.progress.bytes("writing the backup", self.written, Some(self.total.max(self.written)));
        self.reported = self.written;
    }
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.written - self.reported >= 8 << 20 {
            self.report();
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the archive, encrypted to `recipients` (none: cleartext), to
/// `out`.
pub fn write_archive(
    payload: &Payload<'_>,
    signed: &SignedManifest,
    recipients: &[Recipient],
    out: &mut impl Write,
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot write the backup").because(e);
    let mut stream = TarStream::new(payload, signed).map_err(|e| failed(&e))?;
    if recipients.is_empty() {
        std::io::copy(&mut stream, out).map_err(|e| failed(&e))?;
        out.flush().map_err(|e| failed(&e))?;
    } else {
        let len = stream.total_len();
        super::seal::encrypt(recipients, &mut stream, len, out)?;
    }
    if !stream.at_end().map_err(|e| failed(&e))? {
        return Err(Error::env("the dump changed size while it was archived"));
    }
    Ok(())
}
