//! The receiving side: applies a sender's file list and data into DEST.
//!
//! Everything the sender says is untrusted input (DESIGN.md, "Trust before
//! action"). In order:
//!
//! 1. The whole file list is read and validated before DEST is touched:
//!    every name relative, without `.`/`..`/empty components or NUL, within
//!    the length bounds, unique, and its parent a directory listed before
//!    it. A bad entry refuses the whole session, naming the path; DEST is
//!    unchanged.
//! 2. A plan is made by looking at DEST (never following a symlink). Every
//!    directory of the list becomes a real directory in DEST before anything
//!    below it is written (a symlink or file in its place is removed), so no
//!    write can pass through a symlink. `-n` stops here and only itemizes.
//! 3. Directories, symlinks and devices are created; leftover temp files of
//!    an interrupted run are removed (they are recognisable by
//!    [`TMP_PREFIX`]). New directories are 0700 until the end.
//! 4. A generator thread sends one request per file whose data is needed,
//!    with fast_rsync's block signature and the aligned chunk sums of the
//!    old file as the basis (none with `-W`, the local default), while
//!    this thread takes the answers: each file is rebuilt into a temp file
//!    in its own directory, never larger than the size the list declared
//!    (`apply_limited`), compared with the sender's BLAKE3 hash, then, in
//!    batches, flushed to disk on their own thread (`land`) while the next
//!    batch is received, given its mode, owner and times, and renamed into
//!    place (see the module doc of `sync`: the flush precedes every
//!    rename). A hash mismatch
//!    (MD4 is weak) asks for the whole file again in a second phase; a
//!    second mismatch, more data than declared, or any malformed message
//!    ends the session with an error naming the file.
//! 5. With `--delete`, entries of DEST that are not in the list and not
//!    protected by the filter are removed, within the listed directories.
//! 6. Directory modes and times are set last, deepest first, and the
//!    entries of the directories that changed are flushed to disk.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use super::filter::Filter;
use super::list::{display_name, Entry, FileKind};
use super::wire::{self, Msg, Reader, Writer};
use super::land::{self, Durable, PendingFile};
use super::meter::Meter;
use crate::error::{Context, Error, Result};
use crate::progress::Progress;

/// Names of temp files start with this; a later run removes any it finds
/// in a directory it syncs (unless the name is in the list itself).
pub const TMP_PREFIX: &[u8] = b".kt-sync-tmp.";

/// What the receiver applies, rsync's options on the receiving side.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// `-p`: set modes as the sender's.
    pub perms: bool,
    /// `-t`: set modification times as the sender's.
    pub times: bool,
    /// `-o`: set owners (only as root, mapped by name as rsync does).
    pub owner: bool,
    /// `-g`: set groups (mapped by name).
    pub group: bool,
    /// `-D`: create devices and special files.
    pub devices: bool,
    /// `-c`: compare content by checksum (the sender's sums, asked for the
    /// files DEST has at the same size).
    pub checksum: bool,
    /// `--delete`: remove what the sender does not have.
    pub delete: bool,
    /// `-n`: change nothing, only itemize.
    pub dry_run: bool,
    /// The same include/exclude rules as the sender's: they protect
    /// excluded DEST files from `--delete`.
    pub filter: Filter,
    /// Most entries a list may have.
    pub max_entries: usize,
    /// Most memory the list may take while it is read and checked: every
    /// byte of every entry (its name counted twice: the list and the index
    /// of names), plus a fixed cost per entry. A hostile sender cannot make
    /// the receiver hold more before it refuses the list.
    pub max_list_bytes: usize,
    /// Largest old file used as a delta basis (read into memory); larger
    /// ones are fetched whole.
    pub max_basis: u64,
    /// `-W`/`--no-whole-file`: whether changed files are sent whole, with
    /// no delta against the old file. None is rsync's default: whole files
    /// when both sides are local (a delta saves pipe bytes, not disk
    /// work, and costs a read of the old file plus the search), deltas
    /// over a remote shell.
    pub whole_file: Option<bool>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            perms: false,
            times: false,
            owner: false,
            group: false,
            devices: false,
            checksum: false,
            delete: false,
            dry_run: false,
            filter: Filter::new(),
            max_entries: 1_000_000,
            max_list_bytes: 256 << 20,
            max_basis: 512 << 20,
            whole_file: None,
        }
    }
}

/// One itemized change, in rsync's `-i` notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `>f+++++++++`, `cd+++++++++`, `>fcst......`, `*deleting`, ...
    pub code: String,
    pub path: Vec<u8>,
    pub kind: FileKind,
    pub target: Vec<u8>,
}

impl Item {
    /// The line rsync prints: code, name (`/` after directories, `-> target`
    /// after symlinks).
    pub fn line(&self) -> String {
        let mut name = if self.path == b"." { ".".to_string() } else { display_name(&self.path) };
        if self.kind == FileKind::Dir {
            name.push('/');
        }
        let mut line = format!("{:<11} {name}", self.code);
        if self.kind == FileKind::Symlink && !self.target.is_empty() {
            line.push_str(&format!(" -> {}", display_name(&self.target)));
        }
        line
    }
}

/// What a receive did.
#[derive(Debug, Default, Clone)]
pub struct ReceiveStats {
    /// Entries in the sender's list.
    pub files: u64,
    /// Their size as rsync counts it: regular files' sizes and symlinks'
    /// target lengths.
    pub total_size: u64,
    /// Files whose data was transferred.
    pub transferred: u64,
    /// Their total size.
    pub transferred_bytes: u64,
    /// File data on the wire (literal data and deltas).
    pub data_bytes: u64,
    /// File bytes taken from the old file by chunk (not on the wire).
    pub copied_bytes: u64,
    /// Files asked for a second time, whole, after a hash mismatch.
    pub redone: u64,
    pub deleted: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Per-file failures that did not end the session (rsync's "some files
    /// were not transferred"); deletion is skipped when there are any.
    pub errors: Vec<String>,
}

/// Receives a sync session from `input`/`output` into `dest`, reporting
/// each change to `itemize` and the files and bytes received to `progress`.
pub fn receive<R, W>(
    dest: &Path,
    opts: &ReceiveOptions,
    input: R,
    output: W,
    itemize: &mut dyn FnMut(&Item),
    progress: &dyn Progress,
) -> Result<ReceiveStats>
where
    R: Read,
    W: Write + Send,
{
    receive_session(dest, opts, None, input, output, itemize, progress)
}

/// The receiving side of a local session ([`super::sync_local`]):
/// `sources[i]` is the sender's file behind entry `i`, which this side
/// copies itself (`copy_file_range`) when the sender answers `LocalCopy`.
pub fn receive_local<R, W>(
    dest: &Path,
    opts: &ReceiveOptions,
    sources: &[PathBuf],
    input: R,
    output: W,
    itemize: &mut dyn FnMut(&Item),
    progress: &dyn Progress,
) -> Result<ReceiveStats>
where
    R: Read,
    W: Write + Send,
{
    receive_session(dest, opts, Some(sources), input, output, itemize, progress)
}

fn receive_session<R, W>(
    dest: &Path,
    opts: &ReceiveOptions,
    sources: Option<&[PathBuf]>,
    input: R,
    output: W,
    itemize: &mut dyn FnMut(&Item),
    progress: &dyn Progress,
) -> Result<ReceiveStats>
where
    R: Read,
    W: Write + Send,
{
    let mut reader = Reader::new(input);
    let mut writer = Writer::new(output);
    wire::greet(&mut reader, &mut writer, "sender")?;
    let entries = match read_list(&mut reader, opts) {
        Ok(entries) => entries,
        Err(e) => {
            let _ = writer.send(&Msg::Error { message: e.to_string() });
            let _ = writer.flush();
            return Err(e);
        }
    };
    let total_size = super::list::total_size(&entries);
    let mut rx = Receiver::new(dest, opts, entries, Meter::new(progress));
    if let Some(sources) = sources {
        if sources.len() != rx.entries.len() {
            return Err(Error::problem("internal error: a local sync's sources do not match its list"));
        }
    }
    rx.local = sources;
    rx.whole = opts.whole_file.unwrap_or(sources.is_some());
    rx.stats.total_size = total_size;
    let result = rx.run(reader, writer, itemize);
    rx.stats.files = rx.entries.len() as u64;
    result.map(|()| rx.stats)
}

fn unexpected(msg: &Msg, wanted: &str) -> Error {
    let name = match msg {
        Msg::Error { message } => {
            return Error::env("the other side of the sync failed").because(message);
        }
        Msg::Hello { .. } => "greeting",
        Msg::Entries(_) => "file list entries",
        Msg::EndOfList => "end of list",
        Msg::WantSums(_) => "a request for sums",
        Msg::Sums(_) => "sums",
        Msg::Request { .. } => "request",
        Msg::EndOfPhase => "end of phase",
        Msg::FileStart { .. } => "file start",
        Msg::Literal(_) => "file data",
        Msg::LocalCopy => "local copy",
        Msg::Delta { .. } => "delta",
        Msg::Copy { .. } => "chunk copy",
        Msg::FileEnd { .. } => "file end",
        Msg::FileError { .. } => "file error",
        Msg::Done => "end of session",
        Msg::Item { .. } => "change report",
        Msg::Note { .. } => "failure report",
    };
    Error::usage("sync protocol violation").because(format!("expected {wanted}, got {name}"))
}

/// Reads and validates the whole list.
fn read_list<R: Read>(reader: &mut Reader<R>, opts: &ReceiveOptions) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut names: HashMap<Vec<u8>, FileKind> = HashMap::new();
    let mut total = 0usize;
    loop {
        match reader.read()? {
            Msg::Entries(payload) => {
                let mut decoder = wire::EntryDecoder::new(&payload);
                while let Some(e) = decoder.next_entry()? {
                    // The entry, its name again in `names`, and the map's slot.
                    const PER_ENTRY: usize = std::mem::size_of::<Entry>() + 64;
                    total += 2 * e.path.len() + e.target.len() + e.user.len() + e.group.len() + PER_ENTRY;
                    if entries.len() >= opts.max_entries || total > opts.max_list_bytes {
                        return Err(Error::usage("refused the sender's file list").because(format!(
                            "more than {} entries or {} bytes of list",
                            opts.max_entries, opts.max_list_bytes
                        )));
                    }
                    validate(&e, entries.is_empty(), &names).map_err(|why| {
                        Error::usage(format!("refused the file list entry {:?}", display_name(&e.path))).because(why)
                    })?;
                    names.insert(e.path.clone(), e.kind);
                    entries.push(e);
                }
            }
            Msg::EndOfList => return Ok(entries),
            other => return Err(unexpected(&other, "a file list entry")),
        }
    }
}

/// Why an entry may not be applied, if it may not.
fn validate(e: &Entry, first: bool, names: &HashMap<Vec<u8>, FileKind>) -> std::result::Result<(), String> {
    let p = &e.path;
    if p == b"." {
        if !first || e.kind != FileKind::Dir {
            return Err("`.` may only be the first entry, a directory".into());
        }
        return Ok(());
    }
    if p.is_empty() {
        return Err("empty name".into());
    }
    if p.contains(&0) {
        return Err("NUL in the name".into());
    }
    if p[0] == b'/' {
        return Err("absolute path".into());
    }
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => return Err("empty path component".into()),
            b"." | b".." => return Err("`.` or `..` in the path: it would leave DEST".into()),
            c if c.len() > wire::MAX_NAME => return Err(format!("a component longer than {} bytes", wire::MAX_NAME)),
            _ => {}
        }
    }
    if names.contains_key(p) {
        return Err("listed twice".into());
    }
    if let Some(i) = p.iter().rposition(|&b| b == b'/') {
        if names.get(&p[..i]) != Some(&FileKind::Dir) {
            return Err("its directory is not listed before it".into());
        }
    }
    match e.kind {
        FileKind::Symlink if e.target.is_empty() || e.target.contains(&0) => {
            return Err("empty link target or NUL in it".into())
        }
        FileKind::File => {}
        _ if e.size != 0 => return Err("a size on something that is not a file".into()),
        _ => {}
    }
    Ok(())
}

/// What to do with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Up to date, attributes too.
    Nothing,
    /// A new directory (`replace`: remove the non-directory in its place).
    MkDir { replace: bool },
    /// An existing directory: its attributes are set at the end.
    Dir,
    /// Fetch the data (`basis`: the old file is a delta basis).
    Fetch { basis: bool },
    /// Up to date content; attributes to set.
    Attrs,
    /// Create a symlink or special file (`replace`: remove a directory first).
    Make { replace: bool },
    /// Cannot be done (recorded in the errors).
    Refuse,
}

struct Planned {
    op: Op,
    code: Option<String>,
    /// The DEST entry was absent (or replaced): the new one gets the
    /// sender's mode even without `-p`.
    new: bool,
}

struct Receiver<'a> {
    dest: &'a Path,
    opts: &'a ReceiveOptions,
    entries: Vec<Entry>,
    plan: Vec<Planned>,
    listed: HashSet<Vec<u8>>,
    /// Temp files of earlier runs, and DEST entries `--delete` removes
    /// (children before their directory).
    leftovers: Vec<PathBuf>,
    deletions: Vec<(Vec<u8>, PathBuf, bool)>,
    touched_dirs: HashSet<PathBuf>,
    stats: ReceiveStats,
    umask: u32,
    root: bool,
    uids: HashMap<Vec<u8>, Option<u32>>,
    gids: HashMap<Vec<u8>, Option<u32>>,
    /// `-c` candidates whose DEST content is still to be hashed: index,
    /// attribute changes, DEST size and mtime.
    to_hash: Vec<(usize, AttrChanges, u64, i64)>,
    /// Verified temp files not yet handed to `durable`, and their bytes.
    pending: Vec<PendingFile>,
    pending_bytes: u64,
    /// The batch being flushed on its own thread, renamed once it is back.
    durable: Durable,
    /// A local session: the sender's source of each entry.
    local: Option<&'a [PathBuf]>,
    /// Changed files are fetched whole (no basis signature).
    whole: bool,
    /// The read-back buffer of local copies.
    copy_buf: Vec<u8>,
    /// File data written and files verified, as they are.
    meter: Meter<'a>,
}

/// Old files the generator read for their signatures, handed to the
/// receiving thread so that each basis is read once (a 100 MB old file
/// was read twice, and the second read started only when the first delta
/// arrived). The delta was computed against the signature of exactly these
/// bytes, so rebuilding from them is also the consistent choice. Bounded:
/// the bytes cached plus those the receiving thread still holds stay under
/// `max_basis` (so peak memory is what it was, one basis on each thread);
/// a basis that does not fit is dropped and read again when needed.
struct BasisCache {
    max: u64,
    /// The cached bases by file index, and the bytes counted.
    inner: std::sync::Mutex<(HashMap<u32, Basis>, u64)>,
}

/// An old file's bytes, shared between the generator and the receiving thread.
type Basis = std::sync::Arc<Vec<u8>>;

impl BasisCache {
    fn new(max: u64) -> BasisCache {
        BasisCache { max, inner: std::sync::Mutex::new((HashMap::new(), 0)) }
    }

    /// Generator: keeps `data` for file `index` if the budget allows.
    fn offer(&self, index: u32, data: Vec<u8>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let len = data.len() as u64;
        if g.1 + len <= self.max {
            g.1 += len;
            g.0.insert(index, std::sync::Arc::new(data));
        }
    }

    /// Receiving thread: the cached basis of `index`, if any; its bytes
    /// stay counted until [`BasisCache::release`].
    fn take(&self, index: u32) -> Option<Basis> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.remove(&index)
    }

    fn release(&self, basis: Option<Basis>) {
        if let Some(b) = basis {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.1 = g.1.saturating_sub(b.len() as u64);
        }
    }
}

/// Messages from the receiving thread to the generator thread.
enum GenCmd {
    Redo(Vec<u32>),
    Abort(String),
}

impl<'a> Receiver<'a> {
    fn new(dest: &'a Path, opts: &'a ReceiveOptions, entries: Vec<Entry>, meter: Meter<'a>) -> Receiver<'a> {
        let listed = entries.iter().map(|e| e.path.clone()).collect();
        Receiver {
            dest,
            opts,
            entries,
            plan: Vec::new(),
            listed,
            leftovers: Vec::new(),
            deletions: Vec::new(),
            touched_dirs: HashSet::new(),
            stats: ReceiveStats::default(),
            umask: current_umask(),
            root: crate::account::is_root(),
            uids: HashMap::new(),
            gids: HashMap::new(),
            to_hash: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            durable: Durable::new(),
            local: None,
            whole: false,
            copy_buf: Vec::new(),
            meter,
        }
    }

    fn abs(&self, path: &[u8]) -> PathBuf {
        if path == b"." {
            self.dest.to_path_buf()
        } else {
            self.dest.join(OsStr::from_bytes(path))
        }
    }

    fn run<R: Read, W: Write + Send>(
        &mut self,
        mut reader: Reader<R>,
        mut writer: Writer<W>,
        itemize: &mut dyn FnMut(&Item),
    ) -> Result<()> {
        let prepared = self.prepare().and_then(|()| self.settle_checksums(&mut reader, &mut writer));
        if let Err(e) = prepared {
            let _ = writer.send(&Msg::Error { message: e.to_string() });
            let _ = writer.flush();
            return Err(e);
        }
        if self.opts.dry_run {
            for (i, p) in self.plan.iter().enumerate() {
                if let Some(code) = &p.code {
                    itemize(&item(code, &self.entries[i]));
                }
            }
            for (rel, _, is_dir) in &self.deletions {
                itemize(&deleting(rel, *is_dir));
            }
            // Close the session: no requests in either phase.
            for m in [Msg::EndOfPhase, Msg::EndOfPhase, Msg::Done] {
                writer.send(&m)?;
            }
            writer.flush()?;
            for _ in 0..2 {
                match reader.read()? {
                    Msg::EndOfPhase => {}
                    other => return Err(unexpected(&other, "end of phase")),
                }
            }
            self.stats.bytes_read = reader.bytes;
            self.stats.bytes_written = writer.bytes;
            return Ok(());
        }
        for p in std::mem::take(&mut self.leftovers) {
            let _ = fs::remove_file(&p);
        }
        if let Err(e) = self.make_entries(itemize) {
            let _ = writer.send(&Msg::Error { message: e.to_string() });
            let _ = writer.flush();
            return Err(e);
        }
        self.transfer(reader, writer, itemize)?;
        if self.opts.delete {
            if self.stats.errors.is_empty() {
                self.delete(itemize);
            } else {
                self.stats.errors.push("some files could not be transferred: deletion skipped".into());
            }
        }
        self.finish_dirs()?;
        let dirs = std::mem::take(&mut self.touched_dirs);
        land::sync_dirs(dirs.iter().map(PathBuf::as_path))
    }

    /// Creates DEST when missing, looks at every entry's counterpart and
    /// decides what to do; changes nothing.
    fn prepare(&mut self) -> Result<()> {
        let dest_meta = fs::metadata(self.dest);
        let dest_exists = match &dest_meta {
            Ok(m) if m.is_dir() => true,
            Ok(_) => return Err(Error::usage(format!("{} is not a directory", self.dest.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(Error::env(format!("cannot read {}", self.dest.display())).because_err(e));
            }
        };
        if !dest_exists && !self.opts.dry_run {
            fs::create_dir(self.dest).env_context(|| format!("cannot create {}", self.dest.display()))?;
            self.touched_dirs.insert(crate::fsutil::parent_dir(self.dest).to_path_buf());
        }
        // Directories whose DEST counterpart is not (yet) a real directory:
        // everything below them is new.
        let mut fresh: HashSet<Vec<u8>> = HashSet::new();
        if !dest_exists {
            fresh.insert(b".".to_vec());
        }
        for i in 0..self.entries.len() {
            let e = self.entries[i].clone();
            let parent: &[u8] = match e.path.iter().rposition(|&b| b == b'/') {
                Some(at) => &e.path[..at],
                None => b".",
            };
            if e.path == b"." {
                let planned = if dest_exists {
                    let m = fs::metadata(self.dest).env_context(|| format!("cannot read {}", self.dest.display()))?;
                    let attrs = self.attr_changes(&self.entries[0].clone(), &m);
                    let code = attrs.any().then(|| format!(".d{}", attrs.code(false, false)));
                    self.scan_dir(b".")?;
                    Planned { op: Op::Dir, code, new: false }
                } else {
                    Planned { op: Op::Dir, code: Some("cd+++++++++".into()), new: true }
                };
                self.plan.push(planned);
                continue;
            }
            let existing = if fresh.contains(parent) {
                None
            } else {
                match fs::symlink_metadata(self.abs(&e.path)) {
                    Ok(m) => Some(m),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                    Err(err) => {
                        return Err(Error::env(format!("cannot read {}", self.abs(&e.path).display())).because_err(&err))
                    }
                }
            };
            let planned = self.plan_one(i, existing.as_ref());
            if e.kind == FileKind::Dir {
                if matches!(planned.op, Op::MkDir { .. }) {
                    fresh.insert(e.path.clone());
                } else if planned.op == Op::Dir && !planned.new {
                    let path = e.path.clone();
                    self.scan_dir(&path)?;
                }
            }
            self.plan.push(planned);
        }
        if dest_exists && !self.listed.contains(b".".as_slice()) {
            // Temp files of an earlier run of `dir` into DEST.
            self.scan_leftovers(self.dest.to_path_buf())?;
        }
        Ok(())
    }

    /// Leftover temp files in DEST itself (when it is not a listed dir).
    fn scan_leftovers(&mut self, dir: PathBuf) -> Result<()> {
        let rd = fs::read_dir(&dir).env_context(|| format!("cannot read {}", dir.display()))?;
        for child in rd.flatten() {
            if child.file_name().as_bytes().starts_with(TMP_PREFIX) {
                self.leftovers.push(child.path());
            }
        }
        Ok(())
    }

    /// Looks into an existing listed directory: temp files to remove, and
    /// with `--delete` what is not in the list and not excluded.
    fn scan_dir(&mut self, rel: &[u8]) -> Result<()> {
        let dir = self.abs(rel);
        let rd = fs::read_dir(&dir).env_context(|| format!("cannot read {}", dir.display()))?;
        let mut children: Vec<_> = rd.flatten().collect();
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let name = child.file_name().as_bytes().to_vec();
            let child_rel = if rel == b"." { name.clone() } else { [rel, b"/", &name].concat() };
            if self.listed.contains(&child_rel) {
                continue;
            }
            if name.starts_with(TMP_PREFIX) {
                self.leftovers.push(child.path());
                continue;
            }
            if self.opts.delete {
                let is_dir = child.file_type().map(|t| t.is_dir()).unwrap_or(false);
                self.plan_delete(child_rel, child.path(), is_dir);
            }
        }
        Ok(())
    }

    /// Adds a DEST entry (and, for a directory, its contents first) to
    /// the deletions, leaving what the filter protects.
    fn plan_delete(&mut self, rel: Vec<u8>, path: PathBuf, is_dir: bool) {
        if self.opts.filter.is_excluded(&rel, is_dir) {
            return;
        }
        if is_dir {
            if let Ok(rd) = fs::read_dir(&path) {
                let mut children: Vec<_> = rd.flatten().collect();
                children.sort_by_key(|c| c.file_name());
                for child in children {
                    let name = child.file_name().as_bytes().to_vec();
                    let is_dir = child.file_type().map(|t| t.is_dir()).unwrap_or(false);
                    self.plan_delete([rel.as_slice(), b"/", &name].concat(), child.path(), is_dir);
                }
            }
        }
        self.deletions.push((rel, path, is_dir));
    }

    fn plan_one(&mut self, i: usize, existing: Option<&fs::Metadata>) -> Planned {
        let e = self.entries[i].clone();
        let new = |op| Planned { op, code: Some(format!("{}{}+++++++++", if op == (Op::Fetch { basis: false }) { '>' } else { 'c' }, e.kind.letter())), new: true };
        let Some(m) = existing else {
            return match e.kind {
                FileKind::Dir => new(Op::MkDir { replace: false }),
                FileKind::File => new(Op::Fetch { basis: false }),
                _ if !self.may_make(&e) => self.refuse(&e, "not creating a special file (needs -D, and root for devices)"),
                _ => new(Op::Make { replace: false }),
            };
        };
        let have = FileKind::of(&m.file_type());
        if have != e.kind {
            return match (e.kind, have) {
                (FileKind::Dir, _) => new(Op::MkDir { replace: true }),
                (_, FileKind::Dir) if !self.opts.delete => {
                    self.refuse(&e, "a directory is in its place (use --delete to replace it)")
                }
                (FileKind::File, _) => new(Op::Fetch { basis: false }),
                _ if !self.may_make(&e) => self.refuse(&e, "not creating a special file (needs -D, and root for devices)"),
                (_, FileKind::Dir) => new(Op::Make { replace: true }),
                _ => new(Op::Make { replace: false }),
            };
        }
        let attrs = self.attr_changes(&e, m);
        match e.kind {
            FileKind::Dir => {
                let code = attrs.any().then(|| format!(".d{}", attrs.code(false, false)));
                Planned { op: Op::Dir, code, new: false }
            }
            FileKind::File => {
                let size = m.len() != e.size;
                let same = if self.opts.checksum {
                    // Of the same size: settled by the sender's sum
                    // against this file's, once every entry is planned.
                    if !size {
                        self.to_hash.push((i, attrs, m.len(), m.mtime()));
                    }
                    false
                } else {
                    !size && m.mtime() == e.mtime
                };
                self.file_plan(&e, attrs, m.len(), m.mtime(), same)
            }
            FileKind::Symlink => {
                let target = fs::read_link(self.abs(&e.path)).map(|t| t.as_os_str().as_bytes().to_vec()).unwrap_or_default();
                if target != e.target {
                    Planned { op: Op::Make { replace: false }, code: Some(format!("cL{}", attrs.code(true, false))), new: true }
                } else {
                    let code = attrs.any().then(|| format!(".L{}", attrs.code(false, false)));
                    Planned { op: if attrs.any() { Op::Attrs } else { Op::Nothing }, code, new: false }
                }
            }
            _ => {
                let differs = matches!(e.kind, FileKind::CharDev | FileKind::BlockDev) && m.rdev() != e.rdev;
                if differs {
                    if !self.may_make(&e) {
                        return self.refuse(&e, "not creating a device (needs -D and root)");
                    }
                    Planned { op: Op::Make { replace: false }, code: Some(format!("c{}{}", e.kind.letter(), attrs.code(true, false))), new: true }
                } else {
                    let code = attrs.any().then(|| format!(".{}{}", e.kind.letter(), attrs.code(false, false)));
                    Planned { op: if attrs.any() { Op::Attrs } else { Op::Nothing }, code, new: false }
                }
            }
        }
    }

    /// The plan of a regular file that exists in DEST as one.
    fn file_plan(&self, e: &Entry, attrs: AttrChanges, len: u64, mtime: i64, same: bool) -> Planned {
        if same {
            let code = attrs.any().then(|| format!(".f{}", attrs.code(false, false)));
            let op = if attrs.any() { Op::Attrs } else { Op::Nothing };
            Planned { op, code, new: false }
        } else {
            let basis = !self.whole && len > 0 && len <= self.opts.max_basis;
            let mut a = attrs;
            if !self.opts.times && mtime != e.mtime {
                a.time_now = true;
            }
            let code = format!(">f{}", a.code(self.opts.checksum, len != e.size));
            Planned { op: Op::Fetch { basis }, code: Some(code), new: false }
        }
    }

    /// `-c`: asks the sender for the sums of the files DEST has at the
    /// same size (`WantSums`), hashes those DEST files on every core while
    /// the sender hashes its own, and settles their plans. A file the
    /// sender has no sum for is fetched. The answer is checked: one sum
    /// per file asked for, nothing else (a false "same" only leaves DEST's
    /// file as it is).
    fn settle_checksums<R: Read, W: Write>(&mut self, reader: &mut Reader<R>, writer: &mut Writer<W>) -> Result<()> {
        let pending = std::mem::take(&mut self.to_hash);
        for batch in pending.chunks(wire::MAX_WANT_SUMS) {
            writer.send(&Msg::WantSums(batch.iter().map(|&(i, ..)| i as u32).collect()))?;
            writer.flush()?;
            let paths: Vec<PathBuf> = batch.iter().map(|&(i, ..)| self.abs(&self.entries[i].path)).collect();
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            let sizes: Vec<u64> = batch.iter().map(|&(_, _, len, _)| len).collect();
            let ours = super::list::hash_files(&refs, &sizes);
            let theirs = match reader.read()? {
                Msg::Sums(sums) if sums.len() == batch.len() => sums,
                Msg::Sums(sums) => {
                    let first = self.entries[batch[0].0].display();
                    return Err(Error::usage("sync protocol violation").because(format!(
                        "the sender answered {} sums when asked for {} ({first} first)",
                        sums.len(),
                        batch.len()
                    )));
                }
                other => return Err(unexpected(&other, "sums")),
            };
            for ((&(i, attrs, len, mtime), mine), theirs) in batch.iter().zip(ours).zip(theirs) {
                let same = matches!((&mine, &theirs), (Ok((h, _)), Some(want)) if h[..want.len()] == want[..]);
                self.plan[i] = self.file_plan(&self.entries[i], attrs, len, mtime, same);
            }
        }
        Ok(())
    }

    fn may_make(&self, e: &Entry) -> bool {
        match e.kind {
            FileKind::Symlink => true,
            FileKind::CharDev | FileKind::BlockDev => self.opts.devices && self.root,
            FileKind::Fifo | FileKind::Socket => self.opts.devices,
            _ => true,
        }
    }

    fn refuse(&mut self, e: &Entry, why: &str) -> Planned {
        self.stats.errors.push(format!("{}: {why}", e.display()));
        Planned { op: Op::Refuse, code: None, new: false }
    }

    /// The uid and gid the entry should get here, when `-o`/`-g` apply:
    /// by name when the name exists here, else the sender's number.
    fn ids(&mut self, e: &Entry) -> (Option<u32>, Option<u32>) {
        let uid = (self.opts.owner && self.root).then(|| {
            let by_name = self
                .uids
                .entry(e.user.clone())
                .or_insert_with(|| {
                    std::str::from_utf8(&e.user)
                        .ok()
                        .filter(|n| !n.is_empty())
                        .and_then(|n| crate::account::Account::lookup(n).ok().flatten())
                        .map(|a| a.uid)
                })
                .to_owned();
            by_name.unwrap_or(e.uid)
        });
        let gid = self.opts.group.then(|| {
            let by_name = *self.gids.entry(e.group.clone()).or_insert_with(|| group_id(&e.group));
            by_name.unwrap_or(e.gid)
        });
        (uid, gid)
    }

    fn attr_changes(&mut self, e: &Entry, m: &fs::Metadata) -> AttrChanges {
        let (uid, gid) = self.ids(e);
        AttrChanges {
            time: self.opts.times && m.mtime() != e.mtime,
            time_now: false,
            perms: self.opts.perms && e.kind != FileKind::Symlink && m.mode() & 0o7777 != e.mode,
            owner: uid.is_some_and(|u| u != m.uid()),
            group: gid.is_some_and(|g| g != m.gid()),
        }
    }

    /// Step 3: directories, symlinks, specials, attributes of up-to-date
    /// entries, in list order (parents first).
    fn make_entries(&mut self, itemize: &mut dyn FnMut(&Item)) -> Result<()> {
        for i in 0..self.entries.len() {
            let e = self.entries[i].clone();
            let path = self.abs(&e.path);
            let planned_code = self.plan[i].code.clone();
            match self.plan[i].op {
                Op::MkDir { replace } => {
                    if replace {
                        fs::remove_file(&path).env_context(|| format!("cannot remove {}", path.display()))?;
                    }
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .env_context(|| format!("cannot create directory {}", path.display()))?;
                    self.touched_dirs.insert(crate::fsutil::parent_dir(&path).to_path_buf());
                }
                Op::Make { replace } => {
                    if replace {
                        remove_tree(&path)?;
                    }
                    if let Err(err) = self.make_special(&e, &path) {
                        self.stats.errors.push(err.to_string());
                        continue;
                    }
                }
                Op::Attrs => {
                    if let Err(err) = self.set_attrs(&e, &path, false, e.kind != FileKind::Symlink) {
                        self.stats.errors.push(err.to_string());
                        continue;
                    }
                }
                Op::Fetch { .. } => {
                    if self.plan[i].new {
                        if let Ok(m) = fs::symlink_metadata(&path) {
                            if m.is_dir() {
                                remove_tree(&path)?;
                            }
                        }
                    }
                    continue;
                }
                Op::Nothing | Op::Dir | Op::Refuse => {}
            }
            if let Some(code) = planned_code {
                itemize(&item(&code, &e));
            }
        }
        Ok(())
    }

    /// A symlink or special file at a temp name, then renamed into place.
    fn make_special(&mut self, e: &Entry, path: &Path) -> Result<()> {
        let tmp = temp_path(path);
        let c_tmp = CString::new(tmp.as_os_str().as_bytes()).map_err(|_| Error::usage("NUL in a path"))?;
        let made = match e.kind {
            FileKind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), &tmp),
            _ => {
                let kind = match e.kind {
                    FileKind::Fifo => libc::S_IFIFO,
                    FileKind::Socket => libc::S_IFSOCK,
                    FileKind::CharDev => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                };
                // SAFETY: c_tmp is a valid NUL-terminated path.
                let rc = unsafe { libc::mknod(c_tmp.as_ptr(), kind | 0o600, e.rdev as libc::dev_t) };
                if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            }
        };
        made.env_context(|| format!("cannot create {}", path.display()))?;
        let result = self.set_attrs(e, &tmp, true, e.kind != FileKind::Symlink).and_then(|()| {
            fs::rename(&tmp, path).env_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        self.touched_dirs.insert(crate::fsutil::parent_dir(path).to_path_buf());
        result
    }

    /// Owner and group, then mode (chown clears set-id bits), then times;
    /// never through a symlink.
    fn set_attrs(&mut self, e: &Entry, path: &Path, new: bool, mode: bool) -> Result<()> {
        let (uid, gid) = self.ids(e);
        if uid.is_some() || gid.is_some() {
            match std::os::unix::fs::lchown(path, uid, gid) {
                Ok(()) => {}
                // Not root: -g sets only groups this user is in; rsync too
                // leaves the others alone.
                Err(e) if !self.root && e.raw_os_error() == Some(libc::EPERM) => {}
                Err(e) => {
                    return Err(Error::env(format!("cannot change the owner of {}", path.display())).because_err(&e))
                }
            }
        }
        if mode {
            let bits = if self.opts.perms {
                Some(e.mode)
            } else if new {
                Some(e.mode & !self.umask & 0o777)
            } else {
                None
            };
            if let Some(bits) = bits {
                fs::set_permissions(path, fs::Permissions::from_mode(bits))
                    .env_context(|| format!("cannot set the mode of {}", path.display()))?;
            }
        }
        if self.opts.times {
            set_mtime(path, e.mtime, e.mtime_nsec)?;
        }
        Ok(())
    }

    /// Step 4: requests from a generator thread, answers here.
    fn transfer<R: Read, W: Write + Send>(
        &mut self,
        reader: Reader<R>,
        writer: Writer<W>,
        itemize: &mut dyn FnMut(&Item),
    ) -> Result<()> {
        let wanted: Vec<(u32, Option<PathBuf>)> = self
            .plan
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.op {
                Op::Fetch { basis } => Some((i as u32, basis.then(|| self.abs(&self.entries[i].path)))),
                _ => None,
            })
            .collect();
        let (tx, rx) = mpsc::channel::<GenCmd>();
        let max_basis = self.opts.max_basis;
        let bases = BasisCache::new(max_basis);
        std::thread::scope(|scope| {
            let wanted_ref = &wanted;
            let bases_ref = &bases;
            let generator = scope.spawn(move || generate(writer, wanted_ref, rx, max_basis, bases_ref));
            let mut reader = reader;
            let mut result = self.take_answers(&mut reader, &wanted, &tx, &bases, itemize);
            // Files verified so far land even when the session failed.
            let landed = self.land_pending(itemize);
            if result.is_ok() {
                result = landed;
            }
            self.stats.bytes_read = reader.bytes;
            drop(reader);
            if let Err(e) = &result {
                let _ = tx.send(GenCmd::Abort(e.to_string()));
            }
            drop(tx);
            let generated = generator.join().unwrap_or_else(|_| Err(Error::problem("the sync generator thread panicked")));
            match (result, generated) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(written)) => {
                    self.stats.bytes_written = written;
                    Ok(())
                }
            }
        })
    }

    fn take_answers<R: Read>(
        &mut self,
        reader: &mut Reader<R>,
        wanted: &[(u32, Option<PathBuf>)],
        tx: &mpsc::Sender<GenCmd>,
        bases: &BasisCache,
        itemize: &mut dyn FnMut(&Item),
    ) -> Result<()> {
        // (index, whether a basis signature may have been sent), in the
        // order the sender must answer.
        let mut queue: std::collections::VecDeque<(u32, bool)> =
            wanted.iter().map(|(i, b)| (*i, b.is_some())).collect();
        let mut redo: Vec<u32> = Vec::new();
        let mut phase = 1;
        loop {
            match reader.read()? {
                Msg::FileStart { index } => {
                    let use_basis = match queue.front() {
                        Some(&(next, basis)) if next == index => basis && phase == 1,
                        _ => {
                            return Err(Error::usage("sync protocol violation")
                                .because(format!("the sender sent file number {index}, which was not asked for next")))
                        }
                    };
                    queue.pop_front();
                    // Taken whether used or not, so that it leaves the cache.
                    let cached = bases.take(index);
                    // A local copy is for the first phase only: the redo
                    // phase sends through the pipe what the sender hashes.
                    let local = self.local.filter(|_| phase == 1 && !use_basis).map(|s| s[index as usize].clone());
                    let received = self.receive_file(reader, index as usize, use_basis, cached.clone(), local.as_deref());
                    bases.release(cached);
                    match received? {
                        Landed::Pending => {
                            if let Some(flushed) = self.durable.take(false) {
                                self.rename_flushed(flushed, itemize)?;
                            }
                            // A batch goes as soon as the landing thread is
                            // idle (a slow flush gathers a bigger one), and
                            // the receiver waits only at the cap.
                            let enough = self.pending.len() >= LAND_MIN_FILES || self.pending_bytes >= LAND_MIN_BYTES;
                            if (enough && !self.durable.busy())
                                || self.pending.len() >= LAND_FILES
                                || self.pending_bytes >= LAND_BYTES
                            {
                                self.flush_batch(itemize)?;
                            }
                        }
                        Landed::Mismatch if phase == 1 => {
                            redo.push(index);
                            self.stats.redone += 1;
                        }
                        Landed::Mismatch => {
                            return Err(Error::usage(format!(
                                "refused {}: its data does not match the sender's BLAKE3 hash, twice",
                                self.entries[index as usize].display()
                            ))
                            .with_hint("the sender or the connection corrupts data; nothing was written for this file"));
                        }
                        Landed::Failed(why) => self.stats.errors.push(why),
                    }
                }
                Msg::EndOfPhase => {
                    if let Some((index, _)) = queue.front() {
                        return Err(Error::usage("sync protocol violation").because(format!(
                            "the sender ended the phase without sending {}",
                            self.entries[*index as usize].display()
                        )));
                    }
                    // Phase 2 may fetch again what landed in phase 1 never;
                    // landing here keeps every phase's changes in order.
                    self.land_pending(itemize)?;
                    if phase == 2 {
                        return Ok(());
                    }
                    phase = 2;
                    queue.extend(redo.iter().map(|&i| (i, false)));
                    let _ = tx.send(GenCmd::Redo(std::mem::take(&mut redo)));
                }
                other => return Err(unexpected(&other, "file data")),
            }
        }
    }

    /// Receives one file into a temp file and lands it, or says why not.
    fn receive_file<R: Read>(
        &mut self,
        reader: &mut Reader<R>,
        index: usize,
        use_basis: bool,
        cached: Option<Basis>,
        local: Option<&Path>,
    ) -> Result<Landed> {
        let e = self.entries[index].clone();
        let path = self.abs(&e.path);
        let tmp = temp_path(&path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .env_context(|| format!("cannot create {}", tmp.display()))?;
        let result = self.fill(reader, &mut file, index, &path, use_basis, cached, local);
        let landed = match result {
            Ok(Some(landed)) => landed,
            Ok(None) => {
                // Start writing the data out now; land_pending waits for it.
                // SAFETY: a valid open fd; the call only schedules writeback.
                unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                self.pending_bytes += e.size;
                self.pending.push(PendingFile { file, tmp, path, index });
                return Ok(Landed::Pending);
            }
            Err(err) => {
                drop(file);
                let _ = fs::remove_file(&tmp);
                return Err(err);
            }
        };
        let _ = fs::remove_file(&tmp);
        Ok(landed)
    }

    /// Writes the file's data; None when it is complete and verified.
    #[allow(clippy::too_many_arguments)]
    fn fill<R: Read>(
        &mut self,
        reader: &mut Reader<R>,
        file: &mut File,
        index: usize,
        path: &Path,
        use_basis: bool,
        cached: Option<Basis>,
        local: Option<&Path>,
    ) -> Result<Option<Landed>> {
        let e = &self.entries[index].clone();
        let mut hasher = blake3::Hasher::new();
        let mut written: u64 = 0;
        // Bytes whose writeback was started (see WRITEBACK_STEP).
        let mut kicked: u64 = 0;
        let mut basis: Option<Basis> = cached;
        let mut out = Vec::new();
        // A local copy that could not be made: reported at FileEnd.
        let mut local_failed: Option<String> = None;
        let lie = |what: &str| {
            Error::usage(format!("refused {}: the sender {what}", e.display()))
                .with_hint("the sending side is not a trustworthy kt; nothing was written for this file")
        };
        loop {
            let chunk: &[u8] = match reader.read()? {
                Msg::Literal(data) => {
                    self.stats.data_bytes += data.len() as u64;
                    reader.recycle(std::mem::replace(&mut out, data));
                    &out
                }
                Msg::Delta { len, delta } => {
                    if !use_basis {
                        return Err(lie("sent a delta for a file it was asked for whole"));
                    }
                    if basis.is_none() {
                        basis = Some(std::sync::Arc::new(read_basis(path, self.opts.max_basis)?));
                    }
                    out.clear();
                    fast_rsync::apply_limited(basis.as_deref().unwrap(), &delta, &mut out, len as usize)
                        .map_err(|err| lie("sent a delta that does not apply").because_err(&err))?;
                    if out.len() != len as usize {
                        return Err(lie("sent a delta of another length than it declared"));
                    }
                    self.stats.data_bytes += delta.len() as u64;
                    &out
                }
                Msg::Copy { chunk, count } => {
                    if !use_basis {
                        return Err(lie("sent a chunk copy for a file it was asked for whole"));
                    }
                    if basis.is_none() {
                        basis = Some(std::sync::Arc::new(read_basis(path, self.opts.max_basis)?));
                    }
                    let data = basis.as_deref().unwrap();
                    let size = wire::chunk_size(block_size(data.len() as u64)) as u64;
                    let chunks = (data.len() as u64).div_ceil(size);
                    if chunk as u64 + count as u64 > chunks {
                        return Err(lie(&format!("asked to copy chunks {chunk}+{count} of a basis of {chunks} chunks")));
                    }
                    let start = chunk as u64 * size;
                    let end = ((chunk as u64 + count as u64) * size).min(data.len() as u64);
                    self.stats.copied_bytes += end - start;
                    &data[start as usize..end as usize]
                }
                Msg::LocalCopy => {
                    let Some(source) = local else {
                        return Err(lie("asked for a local copy, which only a local session may"));
                    };
                    if written != 0 || local_failed.is_some() {
                        return Err(lie("mixed a local copy with other data"));
                    }
                    match copy_local(source, file, e.size, &mut hasher, &mut self.copy_buf, &mut self.meter) {
                        Ok(n) if n == e.size => written = n,
                        Ok(_) => local_failed = Some("changed size while being copied".into()),
                        Err(err) => local_failed = Some(format!("cannot copy: {err}")),
                    }
                    self.stats.data_bytes += written;
                    continue;
                }
                Msg::FileEnd { index: ended, hash } => {
                    if ended as usize != index {
                        return Err(lie("ended another file than it started"));
                    }
                    if let Some(why) = local_failed {
                        return Ok(Some(Landed::Failed(format!("{}: {why}", e.display()))));
                    }
                    reader.recycle(std::mem::take(&mut out));
                    if written != e.size {
                        return Err(lie(&format!("sent {written} bytes for a file of {} bytes", e.size)));
                    }
                    let got: [u8; 32] = hasher.finalize().into();
                    if got != hash {
                        return Ok(Some(Landed::Mismatch));
                    }
                    self.stats.transferred += 1;
                    self.stats.transferred_bytes += written;
                    self.meter.file();
                    return Ok(None);
                }
                Msg::FileError { index: failed, message } => {
                    if failed as usize != index {
                        return Err(lie("reported an error on another file than it started"));
                    }
                    return Ok(Some(Landed::Failed(format!("{}: {message}", e.display()))));
                }
                other => return Err(unexpected(&other, "file data")),
            };
            if local_failed.is_some() {
                return Err(lie("mixed a local copy with other data"));
            }
            written += chunk.len() as u64;
            if written > e.size {
                return Err(lie(&format!("sent more than the {} bytes it declared", e.size)));
            }
            // In cache-sized slices: a chunk copy is up to the whole basis
            // (99 MB of a 100 MB file), and hashing all of it, then writing
            // all of it, read it from memory twice.
            for slice in chunk.chunks(wire::WHOLE_SEGMENT) {
                hasher.update(slice);
                file.write_all(slice).env_context(|| format!("cannot write the temp file of {}", path.display()))?;
            }
            self.meter.bytes(chunk.len() as u64);
            if written - kicked >= WRITEBACK_STEP {
                // SAFETY: a valid open fd; the call only schedules writeback.
                unsafe {
                    libc::sync_file_range(file.as_raw_fd(), kicked as i64, (written - kicked) as i64, libc::SYNC_FILE_RANGE_WRITE)
                };
                kicked = written;
            }
        }
    }

    /// Starts flushing the batch gathered so far on the flushing thread,
    /// after renaming the one in flight (waiting for it if need be), so
    /// that the receiving thread keeps reading while a batch is flushed.
    fn flush_batch(&mut self, itemize: &mut dyn FnMut(&Item)) -> Result<()> {
        let renamed = match self.durable.take(true) {
            Some(flushed) => self.rename_flushed(flushed, itemize),
            None => Ok(()),
        };
        self.pending_bytes = 0;
        let batch = std::mem::take(&mut self.pending);
        if let Err(err) = renamed {
            remove_temps(batch);
            return Err(err);
        }
        if !batch.is_empty() {
            self.durable.submit(batch);
        }
        Ok(())
    }

    /// Lands every verified temp file: flushed (see [`land`]), then given
    /// its attributes and renamed. A file is renamed into place only once
    /// its data is on disk, so a crash leaves the old file or the new one,
    /// whole.
    fn land_pending(&mut self, itemize: &mut dyn FnMut(&Item)) -> Result<()> {
        self.flush_batch(itemize)?;
        match self.durable.take(true) {
            Some(flushed) => self.rename_flushed(flushed, itemize),
            None => Ok(()),
        }
    }

    /// Renames a flushed batch into place; a batch that could not be
    /// flushed is removed and its error returned.
    fn rename_flushed(&mut self, (batch, flushed): land::Flushed, itemize: &mut dyn FnMut(&Item)) -> Result<()> {
        if let Err(err) = flushed {
            remove_temps(batch);
            return Err(err);
        }
        for p in batch {
            drop(p.file);
            match self.land(p.index, &p.tmp, &p.path) {
                Ok(()) => {
                    if let Some(code) = &self.plan[p.index].code {
                        itemize(&item(code, &self.entries[p.index]));
                    }
                }
                Err(err) => self.stats.errors.push(err.to_string()),
            }
        }
        Ok(())
    }

    /// Attributes on the verified temp file, then the rename.
    fn land(&mut self, index: usize, tmp: &Path, path: &Path) -> Result<()> {
        let e = &self.entries[index].clone();
        let new = self.plan[index].new;
        let keep_mode = if !new && !self.opts.perms {
            fs::symlink_metadata(path).ok().map(|m| m.mode() & 0o7777)
        } else {
            None
        };
        let result = self.set_attrs(e, tmp, true, true).and_then(|()| {
            if let Some(bits) = keep_mode {
                fs::set_permissions(tmp, fs::Permissions::from_mode(bits))
                    .env_context(|| format!("cannot set the mode of {}", tmp.display()))?;
            }
            fs::rename(tmp, path).env_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        self.touched_dirs.insert(crate::fsutil::parent_dir(path).to_path_buf());
        result
    }

    /// Step 5.
    fn delete(&mut self, itemize: &mut dyn FnMut(&Item)) {
        for (rel, path, is_dir) in std::mem::take(&mut self.deletions) {
            let removed = if is_dir { fs::remove_dir(&path) } else { fs::remove_file(&path) };
            match removed {
                Ok(()) => {
                    self.stats.deleted += 1;
                    self.touched_dirs.insert(crate::fsutil::parent_dir(&path).to_path_buf());
                    itemize(&deleting(&rel, is_dir));
                }
                // A directory still holding excluded files stays, as in rsync.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => self.stats.errors.push(format!("cannot delete {}: {e}", path.display())),
            }
        }
    }

    /// Step 6: directory attributes, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        for i in (0..self.entries.len()).rev() {
            let e = self.entries[i].clone();
            let new = match self.plan[i].op {
                Op::MkDir { .. } => true,
                Op::Dir => self.plan[i].new,
                _ => continue,
            };
            let path = self.abs(&e.path);
            if let Err(err) = self.set_attrs(&e, &path, new, true) {
                self.stats.errors.push(err.to_string());
            }
        }
        Ok(())
    }
}

/// Removes temp files that will not be renamed.
fn remove_temps(batch: Vec<PendingFile>) {
    for p in batch {
        drop(p.file);
        let _ = fs::remove_file(&p.tmp);
    }
}

/// Verified temp files are made durable and renamed in batches (see
/// [`land`]): one flush for the batch instead of one per file. A batch is
/// handed over once it holds this many files or bytes and the landing
/// thread is idle...
const LAND_MIN_FILES: usize = 32;
const LAND_MIN_BYTES: u64 = 8 << 20;
/// ...and the receiver waits for the landing thread when one holds this
/// many (at most two batches of temp files are open).
const LAND_FILES: usize = 256;
const LAND_BYTES: u64 = 64 << 20;

enum Landed {
    /// Verified; waits in `pending` for its flush and rename.
    Pending,
    Mismatch,
    Failed(String),
}

/// Which attributes differ, in itemize order.
#[derive(Clone, Copy)]
struct AttrChanges {
    time: bool,
    time_now: bool,
    perms: bool,
    owner: bool,
    group: bool,
}

impl AttrChanges {
    fn any(&self) -> bool {
        self.time || self.perms || self.owner || self.group
    }

    /// The nine letters after the type: `c s t p o g u a x`.
    fn code(&self, checksum: bool, size: bool) -> String {
        let f = |b: bool, c: char| if b { c } else { '.' };
        let t = if self.time { 't' } else if self.time_now { 'T' } else { '.' };
        format!("{}{}{t}{}{}{}...", f(checksum, 'c'), f(size, 's'), f(self.perms, 'p'), f(self.owner, 'o'), f(self.group, 'g'))
    }
}

fn item(code: &str, e: &Entry) -> Item {
    Item { code: code.to_string(), path: e.path.clone(), kind: e.kind, target: e.target.clone() }
}

fn deleting(rel: &[u8], is_dir: bool) -> Item {
    Item {
        code: "*deleting".into(),
        path: rel.to_vec(),
        kind: if is_dir { FileKind::Dir } else { FileKind::File },
        target: Vec::new(),
    }
}

/// The generator: one request per wanted file (with the block signature
/// of its basis), then the redo requests the receiving thread sends back.
/// Returns the bytes it wrote.
fn generate<W: Write>(
    mut writer: Writer<W>,
    wanted: &[(u32, Option<PathBuf>)],
    rx: mpsc::Receiver<GenCmd>,
    max_basis: u64,
    bases: &BasisCache,
) -> Result<u64> {
    let abort = |writer: &mut Writer<W>, message: String| -> Result<u64> {
        writer.send(&Msg::Error { message })?;
        writer.flush()?;
        Ok(writer.bytes)
    };
    for (index, basis) in wanted {
        if let Ok(GenCmd::Abort(message)) = rx.try_recv() {
            return abort(&mut writer, message);
        }
        let (signature, chunks) = match basis {
            Some(path) => match read_basis(path, max_basis) {
                Ok(data) => {
                    let summary = summarize(&data);
                    // Before the request: the answer cannot come first.
                    bases.offer(*index, data);
                    summary
                }
                // The old file went away or grew: fetch the new one whole.
                Err(_) => (Vec::new(), Vec::new()),
            },
            None => (Vec::new(), Vec::new()),
        };
        writer.send(&Msg::Request { index: *index, signature, chunks })?;
        writer.flush()?;
    }
    writer.send(&Msg::EndOfPhase)?;
    writer.flush()?;
    match rx.recv() {
        Ok(GenCmd::Redo(list)) => {
            for index in list {
                writer.send(&Msg::Request { index, signature: Vec::new(), chunks: Vec::new() })?;
            }
            writer.send(&Msg::EndOfPhase)?;
            writer.send(&Msg::Done)?;
            writer.flush()?;
            Ok(writer.bytes)
        }
        Ok(GenCmd::Abort(message)) => abort(&mut writer, message),
        Err(_) => Ok(writer.bytes),
    }
}

/// A basis' fast_rsync block signature and the sums of its aligned chunks
/// (`wire::chunk_size`), from the one read of it. A large basis is
/// summarized on two threads, split on a chunk boundary (a whole number of
/// blocks): fast_rsync's serialized signature is a header and then one
/// entry per block, so the second half's entries follow the first's.
fn summarize(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let block = block_size(data.len() as u64);
    let chunk = wire::chunk_size(block);
    let options = fast_rsync::SignatureOptions { block_size: block, crypto_hash_size: 8 };
    let part = |d: &[u8]| {
        let signature = fast_rsync::Signature::calculate(d, options).into_serialized();
        let sums: Vec<u8> = d.chunks(chunk).flat_map(wire::chunk_sum).collect();
        (signature, sums)
    };
    let half = (data.len() / 2).div_ceil(chunk) * chunk;
    if data.len() < 4 * wire::SEGMENT || half >= data.len() {
        return part(data);
    }
    let (first, second) = data.split_at(half);
    let ((mut signature, mut sums), (more_sig, more_sums)) = std::thread::scope(|scope| {
        let other = scope.spawn(move || part(second));
        let mine = part(first);
        (mine, other.join().expect("the signature thread panicked"))
    });
    signature.extend_from_slice(&more_sig[12..]);
    sums.extend_from_slice(&more_sums);
    (signature, sums)
}

/// rsync's block size: the square root of the length, a multiple of 8,
/// between 700 bytes and 128 KiB.
pub fn block_size(len: u64) -> u32 {
    let root = (len as f64).sqrt() as u64 & !7;
    root.clamp(700, 128 << 10) as u32
}

/// The old file as a delta basis: a regular file, not through a symlink,
/// no larger than the bound.
fn read_basis(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(super::list::OPEN_LISTED)
        .open(path)
        .env_context(|| format!("cannot open {}", path.display()))?;
    let meta = file.metadata().env_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() || meta.len() > max {
        return Err(Error::env(format!("{} is no usable delta basis", path.display())));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut file).take(max + 1).read_to_end(&mut data).env_context(|| format!("cannot read {}", path.display()))?;
    if data.len() as u64 > max {
        return Err(Error::env(format!("{} grew past the delta basis limit", path.display())));
    }
    Ok(data)
}

/// A large file's writeback is started every this many bytes written, so
/// that the disk writes while the rest arrives: its flush before the
/// rename (`land`) then waits for the tail only (a 100 MB file was written
/// out only after its last byte, 60 ms of `syncfs` at the end). Only a
/// start: the guarantee is still the flush before the rename.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Bytes copied (and then hashed) at a time by [`copy_local`]: small
/// enough to hash while the copy is still in the CPU cache.
const LOCAL_CHUNK: u64 = 1 << 20;

/// A local session's copy of `source` into the temp file: the kernel moves
/// the data (`io::copy` between two files is `copy_file_range` on Linux,
/// no pass through user space), then each copied chunk is read back from
/// the temp file and hashed, so the hash is of what landed. Never follows
/// a symlink; stops once more than `size` bytes came (the file grew: the
/// caller sees the count). Each chunk copied goes to `meter`.
fn copy_local(
    source: &Path,
    file: &mut File,
    size: u64,
    hasher: &mut blake3::Hasher,
    buf: &mut Vec<u8>,
    meter: &mut Meter,
) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let src = OpenOptions::new().read(true).custom_flags(super::list::OPEN_LISTED).open(source)?;
    if !src.metadata()?.is_file() {
        return Err(std::io::Error::other("no longer a regular file"));
    }
    // One buffer for the session (zeroing 1 MiB per small file showed up
    // as page faults in the profile of a first copy).
    if buf.len() < LOCAL_CHUNK as usize {
        buf.resize(LOCAL_CHUNK as usize, 0);
    }
    let mut done = 0u64;
    while done <= size {
        let n = std::io::copy(&mut Read::take(&src, LOCAL_CHUNK), file)?;
        if n == 0 {
            break;
        }
        let mut at = 0u64;
        while at < n {
            let k = file.read_at(&mut buf[..(n - at) as usize], done + at)?;
            if k == 0 {
                return Err(std::io::Error::other("the temp file is shorter than what was copied"));
            }
            hasher.update(&buf[..k]);
            at += k as u64;
        }
        done += n;
        meter.bytes(n);
    }
    Ok(done)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp name in the same directory as `path`.
fn temp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = TMP_PREFIX.to_vec();
    name.extend_from_slice(format!("{}.{n}", std::process::id()).as_bytes());
    crate::fsutil::parent_dir(path).join(OsStr::from_bytes(&name))
}

/// Removes a file, symlink or whole directory tree (never following links).
fn remove_tree(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).env_context(|| format!("cannot read {}", path.display()))?;
    if m.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
        .env_context(|| format!("cannot remove {}", path.display()))
}

/// Sets the modification time (and access time to now) without following
/// a symlink.
fn set_mtime(path: &Path, sec: i64, nsec: u32) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::usage("NUL in a path"))?;
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        libc::timespec { tv_sec: sec as libc::time_t, tv_nsec: nsec as libc::c_long },
    ];
    // SAFETY: c is a valid path, times has the two entries utimensat reads.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(Error::env(format!("cannot set the time of {}", path.display()))
            .because(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The gid of a group name, if it exists here.
fn group_id(name: &[u8]) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getgrnam_r fills grp with pointers into buf, which outlives
    // the read of gr_gid below.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(grp.gr_gid)
    }
}

/// The process umask, read without changing it (umask(2) would race with
/// other threads creating files).
fn current_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
