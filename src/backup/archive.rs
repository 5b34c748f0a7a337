//! The archive: a POSIX tar whose members are the confdir and the dump at
//! their absolute paths without the leading `/`, then a manifest; written
//! either as is (`--cleartext`) or through an OpenPGP encryptor (SEIPD v1
//! with MDC, v3 PKESK per recipient: what GnuPG 2.2 reads).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgp::composed::MessageBuilder;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::backup::dump::{DumpDigest, DumpFacts};
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

/// Builds the manifest once the dump's facts are known: its bytes and
/// their detached signature by the server key (see [`super::manifest`]).
pub type ManifestFn<'a> = Box<dyn FnOnce(&DumpFacts) -> Result<SignedManifest> + Send + 'a>;

/// The last two members of the archive.
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
    /// Data rows of the dump streamed so far, for progress: updated by the
    /// reader (which may run on another thread than the writer).
    pub rows_seen: Arc<AtomicU64>,
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
/// (built in memory), the dump file itself (hashed and counted on the way
/// through), then its padding, the manifest (made from what the dump turned
/// out to hold) and the end-of-archive blocks. No thread, no pipe, no
/// second pass over the dump.
pub struct TarStream<'a> {
    prefix: std::io::Cursor<Vec<u8>>,
    dump: SizeChecked<File>,
    digest: Option<DumpDigest>,
    manifest: Option<ManifestFn<'a>>,
    suffix: Option<std::io::Cursor<Vec<u8>>>,
    suffix_header: (u32, u32, u64),
    manifest_member: String,
    dump_size: u64,
    rows_seen: Arc<AtomicU64>,
    /// Set once the dump has been streamed.
    pub facts: Option<DumpFacts>,
}

impl<'a> TarStream<'a> {
    pub fn new(payload: &Payload<'_>, manifest: ManifestFn<'a>) -> std::io::Result<TarStream<'a>> {
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
        Ok(TarStream {
            prefix: std::io::Cursor::new(prefix_bytes),
            dump: SizeChecked { inner: File::open(payload.dump_file)?, left: payload.dump_size },
            digest: Some(DumpDigest::default()),
            manifest: Some(manifest),
            suffix: None,
            suffix_header: (uid, gid, now),
            manifest_member: payload.manifest_member.clone(),
            dump_size: payload.dump_size,
            rows_seen: payload.rows_seen.clone(),
            facts: None,
        })
    }

    fn build_suffix(&mut self) -> std::io::Result<()> {
        let facts = self.digest.take().expect("built once").finish();
        let signed = (self.manifest.take().expect("built once"))(&facts).map_err(std::io::Error::other)?;
        let padding = (512 - self.dump_size % 512) % 512;
        let mut suffix = tar::Builder::new(vec![0u8; padding as usize]);
        let (uid, gid, now) = self.suffix_header;
        let mut names = Names::default();
        let signature_member = format!("{}{}", self.manifest_member, super::manifest::SIG_SUFFIX);
        for (member, bytes) in [(&self.manifest_member, &signed.manifest), (&signature_member, &signed.signature)] {
            let mut h = header(EntryType::Regular, 0o600, uid, gid, now, bytes.len() as u64, &mut names);
            suffix.append_data(&mut h, member, &bytes[..])?;
        }
        self.suffix = Some(std::io::Cursor::new(suffix.into_inner()?));
        self.facts = Some(facts);
        Ok(())
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.prefix.position() as usize) < self.prefix.get_ref().len() {
            return self.prefix.read(buf);
        }
        if self.dump.left > 0 {
            let n = self.dump.read(buf)?;
            if let Some(d) = self.digest.as_mut() {
                d.update(&buf[..n]);
                self.rows_seen.store(d.rows(), Ordering::Relaxed);
            }
            return Ok(n);
        }
        if self.suffix.is_none() {
            self.build_suffix()?;
        }
        self.suffix.as_mut().expect("built above").read(buf)
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

/// Counts bytes written and reports them as progress, with the rows of
/// the dump read so far when `rows` is given.
pub struct CountingWriter<'p, W> {
    pub inner: W,
    pub written: u64,
    pub total: u64,
    pub progress: &'p dyn Progress,
    pub rows: Option<Arc<AtomicU64>>,
    reported: u64,
}

impl<'p, W> CountingWriter<'p, W> {
    pub fn new(inner: W, total: u64, progress: &'p dyn Progress) -> Self {
        CountingWriter { inner, written: 0, total, progress, rows: None, reported: 0 }
    }

    /// Reports where the transfer stands (also the last state, which the
    /// 8 MiB steps of `write` can miss).
    pub fn report(&mut self) {
        if let Some(rows) = &self.rows {
            self.progress.count("rows", rows.load(Ordering::Relaxed));
        }
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
/// `out`; returns what the dump held.
pub fn write_archive<'a>(
    payload: &Payload<'_>,
    manifest: ManifestFn<'a>,
    recipients: &[Recipient],
    mut out: impl Write,
) -> Result<DumpFacts> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot write the backup").because(e);
    let mut stream = TarStream::new(payload, manifest).map_err(|e| failed(&e))?;
    if recipients.is_empty() {
        std::io::copy(&mut stream, &mut out).map_err(|e| failed(&e))?;
        out.flush().map_err(|e| failed(&e))?;
        return stream.facts.take().ok_or_else(|| Error::env("the archive ended early"));
    }
    let mut rng = rand::thread_rng();
    // Reading, hashing and counting run on a second core while this one
    // encrypts: blocks travel through a small bounded channel.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Option<DumpFacts> {
            loop {
                let mut block = vec![0u8; 1 << 20];
                match read_full(&mut stream, &mut block) {
                    Ok(0) => return stream.facts.take(),
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Ok(block)).is_err() {
                            return None; // the encryptor gave up
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return None;
                    }
                }
            }
        });
        let source = ChannelReader { rx, current: std::io::Cursor::new(Vec::new()) };
        let mut builder = MessageBuilder::from_reader("", source).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        for r in recipients {
            let result = match &r.subkey_fingerprint {
                Some(fpr) => {
                    let sub = r
                        .key
                        .public_subkeys
                        .iter()
                        .find(|s| format!("{:X}", s.key.fingerprint()).eq_ignore_ascii_case(fpr))
                        .ok_or_else(|| Error::env(format!("the subkey {fpr} went missing")))?;
                    builder.encrypt_to_key(&mut rng, &sub.key)
                }
                None => builder.encrypt_to_key(&mut rng, &r.key.primary_key),
            };
            result.map_err(|e| Error::usage(format!("cannot encrypt to {:?}", r.label)).because(e))?;
        }
        let written = builder.to_writer(&mut rng, &mut out);
        let facts = reader.join().map_err(|_| Error::env("the archive reader panicked"))?;
        written.map_err(|e| failed(&e))?;
        out.flush().map_err(|e| failed(&e))?;
        facts.ok_or_else(|| Error::env("the archive ended early"))
    })
}

/// Fills `buf` as far as the reader goes.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The receiving end of the reader thread, as a `Read`.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => self.current = std::io::Cursor::new(block),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the reader is done
            }
        }
    }
}
