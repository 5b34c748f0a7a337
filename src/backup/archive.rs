//! The archive: a POSIX tar whose members are the confdir and the dump at
//! their absolute paths without the leading `/`, then a manifest; written
//! either as is (`--cleartext`) or through an OpenPGP encryptor (SEIPD v1
//! with MDC, v3 PKESK per recipient: what GnuPG 2.2 reads).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pgp::composed::MessageBuilder;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::backup::recipients::Recipient;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// One confdir entry, read and hashed before the archive is written.
#[derive(Debug, Clone)]
pub struct ConfEntry {
    pub source: PathBuf,
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
pub fn read_confdir(confdir: &Path) -> Result<Vec<ConfEntry>> {
    let mut out = Vec::new();
    fn walk(path: &Path, out: &mut Vec<ConfEntry>) -> Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Error::env(format!("cannot read {}", path.display())).because_err(&e))?;
        let ft = meta.file_type();
        let (kind, data, link) = if ft.is_dir() {
            (EntryType::Directory, Vec::new(), None)
        } else if ft.is_file() {
            let data = std::fs::read(path).map_err(|e| Error::env(format!("cannot read {}", path.display())).because_err(&e))?;
            (EntryType::Regular, data, None)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| Error::env(format!("cannot read {}", path.display())).because_err(&e))?;
            (EntryType::Symlink, Vec::new(), Some(target))
        } else {
            return Ok(()); // sockets, fifos, devices have no place in a backup
        };
        out.push(ConfEntry {
            source: path.to_path_buf(),
            member: member_path(path),
            kind,
            meta_mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime().max(0) as u64,
            data,
            link,
        });
        if ft.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::env(format!("cannot read {}", path.display())).because_err(&e))?
                .flatten()
                .map(|e| e.path())
                .collect();
            children.sort();
            for child in children {
                walk(&child, out)?;
            }
        }
        Ok(())
    }
    walk(confdir, &mut out)?;
    Ok(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    crate::auth::hex(&Sha256::digest(data))
}

/// What goes into the archive after the confdir.
pub struct Payload<'a> {
    pub confdir: &'a [ConfEntry],
    pub dump_file: &'a Path,
    pub dump_member: String,
    pub dump_size: u64,
    pub dump_owner: (u32, u32),
    pub manifest_member: String,
    pub manifest: Vec<u8>,
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

/// Writes the tar stream to `out`.
pub fn write_tar(payload: &Payload<'_>, out: impl Write) -> std::io::Result<()> {
    let mut names = Names::default();
    let mut builder = tar::Builder::new(out);
    let now = crate::auth::unix_now().max(0) as u64;
    for e in payload.confdir {
        let mut h = Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.meta_mode);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mtime(e.mtime);
        let _ = h.set_username(&names.user(e.uid));
        let _ = h.set_groupname(&names.group(e.gid));
        match e.kind {
            EntryType::Directory => {
                h.set_size(0);
                builder.append_data(&mut h, format!("{}/", e.member), std::io::empty())?;
            }
            EntryType::Symlink => {
                h.set_size(0);
                builder.append_link(&mut h, &e.member, e.link.as_deref().unwrap_or(Path::new("")))?;
            }
            _ => {
                h.set_size(e.data.len() as u64);
                builder.append_data(&mut h, &e.member, &e.data[..])?;
            }
        }
    }
    let (uid, gid) = payload.dump_owner;
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o600);
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(now);
    let _ = h.set_username(&names.user(uid));
    let _ = h.set_groupname(&names.group(gid));
    h.set_size(payload.dump_size);
    let dump = File::open(payload.dump_file)?;
    // Exactly the bytes that were hashed: a short read is an error.
    builder.append_data(&mut h, &payload.dump_member, SizeChecked { inner: dump, left: payload.dump_size })?;
    h.set_size(payload.manifest.len() as u64);
    builder.append_data(&mut h, &payload.manifest_member, &payload.manifest[..])?;
    builder.into_inner()?.flush()
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

/// Counts bytes written and reports them as progress.
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
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.written - self.reported >= 8 << 20 {
            self.progress.bytes("writing the backup", self.written, Some(self.total));
            self.reported = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the archive, encrypted to `recipients` (none: cleartext), to `out`.
pub fn write_archive(payload: &Payload<'_>, recipients: &[Recipient], out: impl Write) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot write the backup").because(e);
    if recipients.is_empty() {
        return write_tar(payload, out).map_err(|e| failed(&e));
    }
    let (reader, writer) = std::io::pipe().map_err(|e| failed(&e))?;
    std::thread::scope(|scope| {
        let tar_thread = scope.spawn(move || {
            let result = write_tar(payload, std::io::BufWriter::with_capacity(1 << 20, writer));
            result
        });
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_reader("", reader).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
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
        let encrypted = builder.to_writer(&mut rng, out);
        let tar_result = tar_thread.join().map_err(|_| Error::env("the archive thread panicked"))?;
        // The tar side's error is the root cause when both failed.
        tar_result.map_err(|e| failed(&e))?;
        encrypted.map_err(|e| failed(&e))
    })
}
