//! The file list of the sending side: what SRC holds, as data.
//!
//! rsync's trailing-slash rule decides the names: SRC `dir` gives entries
//! `dir`, `dir/a`, ...; SRC `dir/` gives `.` (the directory itself, whose
//! mode and times then apply to DEST) and `a`, .... Names are bytes (Unix
//! file names need not be UTF-8), `/`-separated, relative. The walk never
//! follows a symlink, reads each directory sorted by name bytes so the list
//! is deterministic, puts every directory before its contents, and does not
//! descend into an excluded directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};


use super::filter::Filter;
use crate::error::{Context, Error, Result};

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileKind {
    /// rsync's itemize letter for this kind.
    pub fn letter(self) -> char {
        match self {
            FileKind::File => 'f',
            FileKind::Dir => 'd',
            FileKind::Symlink => 'L',
            FileKind::CharDev | FileKind::BlockDev => 'D',
            FileKind::Fifo | FileKind::Socket => 'S',
        }
    }

    pub fn of(ft: &fs::FileType) -> FileKind {
        if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDev
        } else if ft.is_block_device() {
            FileKind::BlockDev
        } else {
            FileKind::File
        }
    }
}

/// One entry of the file list: everything `-a` carries about a file.
/// The sender fills every field; the receiver's options decide which it
/// applies (`-p` mode, `-t` times, `-o`/`-g` owner and group, mapped by
/// name as rsync does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative `/`-separated name; `.` for the root of a `dir/` source.
    pub path: Vec<u8>,
    pub kind: FileKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Bytes of a regular file; 0 for anything else.
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Owner and group names, empty when the id has none.
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    /// Target of a symlink, as stored (never followed).
    pub target: Vec<u8>,
    /// Device number of a character or block device.
    pub rdev: u64,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// The name as text for messages (non-UTF-8 bytes escaped).
    pub fn display(&self) -> String {
        display_name(&self.path)
    }
}

/// A name as text for messages and itemize lines: invalid UTF-8 bytes as
/// `\#ooo` (octal), which is what rsync prints for them.
pub fn display_name(path: &[u8]) -> String {
    let mut out = String::new();
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\#{b:03o}"));
        }
    }
    out
}

/// Bytes of BLAKE3 a `-c` sum carries (`Sums`, asked for by the receiver
/// for the files it has at the same size): 128 bits decide whether a file
/// is already up to date (rsync's `-c` sums are 128 bits too, MD5 or
/// xxh128). Data that is transferred is checked against the 32-byte
/// BLAKE3 hash (`FileEnd`) before it lands.
pub const LIST_SUM: usize = 16;

/// Which kinds of file the walk takes (rsync's `-r`, `-l`, `-D`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions {
    /// `-r`: descend into directories (without it, a directory SRC is skipped).
    pub recursive: bool,
    /// `-l`: list symlinks as links (without it they are skipped, as rsync
    /// skips "non-regular" files).
    pub links: bool,
    /// `-D`: list devices, fifos and sockets.
    pub devices: bool,
    /// `-c`: compare by content. The walk does not read it (protocol 6:
    /// the list carries no hash; the sender hashes whatever files the
    /// receiver asks sums for, [`sums_of`], with or without it); it is
    /// the `-c` forwarded to a remote receiver (`remote`), which decides.
    pub checksum: bool,
}

/// The sender's list: the entries in order and where each one is on disk.
#[derive(Debug, Default)]
pub struct FileList {
    pub entries: Vec<Entry>,
    /// `sources[i]` is the file behind `entries[i]`.
    pub sources: Vec<PathBuf>,
    /// Files that vanished or could not be read while listing (rsync goes
    /// on and reports them; so does the caller).
    pub skipped: Vec<String>,
}

/// What identifies a file's content without reading it: the inode and its
/// change time (any write moves ctime), size and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        Stamp { dev: m.dev(), ino: m.ino(), size: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// Builds the list for the SRC arguments, in order.
pub fn build(srcs: &[PathBuf], opts: &ListOptions, filter: &Filter) -> Result<FileList> {
    let mut w = Walker { opts, filter, list: FileList::default(), users: HashMap::new(), groups: HashMap::new() };
    let mut seen = std::collections::HashSet::new();
    for src in srcs {
        let bytes = src.as_os_str().as_bytes();
        let contents = bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b".";
        let meta = fs::symlink_metadata(src).env_context(|| format!("cannot read {}", src.display()))?;
        if contents {
            if !meta.is_dir() {
                return Err(Error::usage(format!("{} is not a directory", src.display())));
            }
            if !seen.insert(b".".to_vec()) {
                return Err(Error::usage(format!("{}: a second source for the same name .", src.display())));
            }
            w.push(b".".to_vec(), src.clone(), &meta)?;
            if opts.recursive {
                w.walk_dir(src, b"")?;
            }
            continue;
        }
        let name = match src.file_name() {
            Some(n) => n.as_bytes().to_vec(),
            None => return Err(Error::usage(format!("{}: no file name to copy it as", src.display()))),
        };
        if !seen.insert(name.clone()) {
            return Err(Error::usage(format!("{}: a second source for the same name", src.display())));
        }
        if w.filter.is_excluded(&name, meta.is_dir()) {
            continue;
        }
        if meta.is_dir() && !opts.recursive {
            w.list.skipped.push(format!("skipping directory {}", src.display()));
            continue;
        }
        if w.push(name.clone(), src.clone(), &meta)? && meta.is_dir() {
            w.walk_dir(src, &name)?;
        }
    }
    Ok(w.list)
}

/// `-c`: the BLAKE3 hashes of the listed files `indices` (regular files),
/// on all cores, with the inode state each was taken under (the sender
/// sends the hash again in `FileEnd` without reading the file a second
/// time while it is still that inode, unchanged); None for a file that
/// cannot be read (the receiver then asks for it and hears why).
pub fn sums_of(list: &FileList, indices: &[u32]) -> Vec<Option<([u8; 32], Stamp)>> {
    let paths: Vec<&Path> = indices.iter().map(|&i| list.sources[i as usize].as_path()).collect();
    let sizes: Vec<u64> = indices.iter().map(|&i| list.entries[i as usize].size).collect();
    hash_files(&paths, &sizes).into_iter().map(Result::ok).collect()
}

struct Walker<'a> {
    opts: &'a ListOptions,
    filter: &'a Filter,
    list: FileList,
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Walker<'_> {
    /// Lists the contents of `dir` (named `prefix` in the list), sorted.
    fn walk_dir(&mut self, dir: &Path, prefix: &[u8]) -> Result<()> {
        let mut names: Vec<Vec<u8>> = match fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().as_bytes().to_vec()).collect(),
            Err(e) => {
                self.list.skipped.push(format!("cannot read directory {}: {e}", dir.display()));
                return Ok(());
            }
        };
        names.sort();
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            let rel = if prefix.is_empty() { name.clone() } else { [prefix, b"/", &name].concat() };
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.list.skipped.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            if self.filter.is_excluded(&rel, meta.is_dir()) {
                continue;
            }
            if self.push(rel.clone(), path.clone(), &meta)? && meta.is_dir() {
                self.walk_dir(&path, &rel)?;
            }
        }
        Ok(())
    }

    /// Adds one entry; false when its kind is not taken by the options.
    fn push(&mut self, rel: Vec<u8>, path: PathBuf, meta: &fs::Metadata) -> Result<bool> {
        let kind = FileKind::of(&meta.file_type());
        let wanted = match kind {
            FileKind::File | FileKind::Dir => true,
            FileKind::Symlink => self.opts.links,
            _ => self.opts.devices,
        };
        if !wanted {
            self.list.skipped.push(format!("skipping non-regular file {}", display_name(&rel)));
            return Ok(false);
        }
        let target = if kind == FileKind::Symlink {
            match fs::read_link(&path) {
                Ok(t) => t.as_os_str().as_bytes().to_vec(),
                Err(e) => {
                    self.list.skipped.push(format!("cannot read link {}: {e}", path.display()));
                    return Ok(false);
                }
            }
        } else {
            Vec::new()
        };
        let uid = meta.uid();
        let gid = meta.gid();
        let user = self
            .users
            .entry(uid)
            .or_insert_with(|| crate::account::Account::lookup_uid(uid).map(|a| a.name.into_bytes()).unwrap_or_default())
            .clone();
        let group = self
            .groups
            .entry(gid)
            .or_insert_with(|| crate::account::group_name(gid).map(String::into_bytes).unwrap_or_default())
            .clone();
        self.list.entries.push(Entry {
            path: rel,
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            size: if kind == FileKind::File { meta.len() } else { 0 },
            uid,
            gid,
            user: truncate_name(user),
            group: truncate_name(group),
            target,
            rdev: if matches!(kind, FileKind::CharDev | FileKind::BlockDev) { meta.rdev() } else { 0 },
        });
        self.list.sources.push(path);
        Ok(true)
    }
}

/// The list's size as rsync's "total size is" counts it: regular files'
/// sizes and symlinks' target lengths.
pub fn total_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match e.kind {
            FileKind::File => e.size,
            FileKind::Symlink => e.target.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Account names longer than the wire allows are sent as none (numeric ids).
fn truncate_name(name: Vec<u8>) -> Vec<u8> {
    if name.len() > super::wire::MAX_ACCOUNT_NAME {
        Vec::new()
    } else {
        name
    }
}

const HASH_BUF: usize = 256 * 1024;

/// Flags for opening a file that was listed (or lstat'ed) as a regular
/// file: no symlink followed, and no wait should it have been replaced by
/// a FIFO since (opening one for reading waits for a writer; on a
/// regular file O_NONBLOCK changes nothing). The caller checks the opened
/// file is still a regular file.
pub const OPEN_LISTED: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// The hash, and the file's stamp taken before it was read.
fn hash_with(path: &Path, buf: &mut [u8]) -> std::io::Result<([u8; 32], Stamp)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().read(true).custom_flags(OPEN_LISTED).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let stamp = Stamp::of(&meta);
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().into(), stamp))
}

/// BLAKE3 hashes of many files, one thread per core (`-c` hashes every
/// byte of SRC and of DEST's candidates: hashing is the cost of a `-c` run). The
/// largest files are taken first so that no core is left with a big one
/// at the end. `sizes` are hints for that order only.
pub fn hash_files(paths: &[&Path], sizes: &[u64]) -> Vec<std::io::Result<([u8; 32], Stamp)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes.get(i).copied().unwrap_or(0)));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8).min(paths.len());
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<std::io::Result<([u8; 32], Stamp)>>> = (0..paths.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; HASH_BUF];
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(k) else { break };
                        done.push((i, hash_with(paths[i], &mut buf)));
                    }
                    done
                })
            })
            .collect();
        for w in workers {
            for (i, r) in w.join().unwrap_or_default() {
                out[i] = Some(r);
            }
        }
    });
    // A file left without a result (a worker panicked) counts as unreadable.
    out.into_iter().map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("not hashed")))).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A scratch directory removed at the end of the test.
    pub struct Scratch(pub PathBuf);
    impl Scratch {
        pub fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("kt-sync-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        pub fn join(&self, p: &str) -> PathBuf {
            self.0.join(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub fn write(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn all() -> ListOptions {
        ListOptions { recursive: true, links: true, devices: true, checksum: false }
    }

    fn names(list: &FileList) -> Vec<String> {
        list.entries.iter().map(|e| e.display()).collect()
    }

    fn tree(s: &Scratch) {
        write(&s.join("src/b.txt"), b"b");
        write(&s.join("src/a/x"), b"x");
        write(&s.join("src/.ssl/key.pem"), b"secret");
        fs::create_dir_all(s.join("src/empty")).unwrap();
        symlink("../b.txt", s.join("src/a/link")).unwrap();
    }

    #[test]
    fn trailing_slash_rule_and_order() {
        let s = Scratch::new("list-slash");
        tree(&s);
        let l = build(&[s.join("src")], &all(), &Filter::new()).unwrap();
        assert_eq!(
            names(&l),
            ["src", "src/.ssl", "src/.ssl/key.pem", "src/a", "src/a/link", "src/a/x", "src/b.txt", "src/empty"]
        );
        let slash = PathBuf::from(format!("{}/", s.join("src").display()));
        let l = build(&[slash], &all(), &Filter::new()).unwrap();
        assert_eq!(names(&l), [".", ".ssl", ".ssl/key.pem", "a", "a/link", "a/x", "b.txt", "empty"]);
        assert_eq!(l.sources[0], PathBuf::from(format!("{}/", s.join("src").display())));
    }

    #[test]
    fn entries_carry_attributes_and_links_are_not_followed() {
        let s = Scratch::new("list-attrs");
        tree(&s);
        fs::set_permissions(s.join("src/.ssl/key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
        let opts = ListOptions { checksum: true, ..all() };
        let l = build(&[s.join("src")], &opts, &Filter::new()).unwrap();
        let key = l.entries.iter().find(|e| e.path == b"src/.ssl/key.pem").unwrap();
        assert_eq!((key.kind, key.mode, key.size), (FileKind::File, 0o600, 6));
        let k = l.entries.iter().position(|e| e.path == b"src/.ssl/key.pem").unwrap() as u32;
        let sums = sums_of(&l, &[k]);
        assert_eq!(sums[0].unwrap().0, *blake3::hash(b"secret").as_bytes());
        let link = l.entries.iter().find(|e| e.path == b"src/a/link").unwrap();
        assert_eq!((link.kind, link.target.as_slice(), link.size), (FileKind::Symlink, &b"../b.txt"[..], 0));
        let me = crate::account::Account::current().unwrap();
        assert_eq!(key.user, me.name.as_bytes());
    }

    #[test]
    fn filter_prunes_while_walking_and_options_select_kinds() {
        let s = Scratch::new("list-filter");
        tree(&s);
        let mut f = Filter::new();
        f.exclude(".ssl").unwrap();
        let l = build(&[s.join("src")], &all(), &f).unwrap();
        assert!(!names(&l).iter().any(|n| n.contains(".ssl")), "{:?}", names(&l));
        let nolinks = ListOptions { links: false, ..all() };
        let l = build(&[s.join("src")], &nolinks, &Filter::new()).unwrap();
        assert!(!names(&l).contains(&"src/a/link".to_string()));
        let flat = ListOptions { recursive: false, ..all() };
        let l = build(&[s.join("src")], &flat, &Filter::new()).unwrap();
        assert!(l.entries.is_empty() && l.skipped.len() == 1);
    }

    #[test]
    fn non_utf8_names_are_kept_as_bytes() {
        let s = Scratch::new("list-bytes");
        let name = OsStr::from_bytes(b"caf\xe9 'q\" x");
        write(&s.join("src").join(name), b"1");
        let l = build(&[s.join("src")], &all(), &Filter::new()).unwrap();
        assert_eq!(l.entries[1].path, b"src/caf\xe9 'q\" x");
        assert_eq!(l.entries[1].display(), "src/caf\\#351 'q\" x");
    }

    /// Runs the real rsync; fails (never skips) when it is missing.
    pub fn rsync(args: &[&std::ffi::OsStr]) -> String {
        let out = std::process::Command::new("rsync").args(args).output().unwrap_or_else(|e| {
            panic!("rsync is needed as the reference for kt's sync tests ({e}): apt-get install -y rsync (.ci/run installs it)")
        });
        assert!(out.status.success(), "rsync failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn filter_decisions_agree_with_rsync() {
        let s = Scratch::new("list-rsync");
        for p in [
            "src/keytrustee.conf", "src/.ssl/a.pem", "src/logs/x.log", "src/logs/keep.log", "src/logs/deep/y.log",
            "src/cache/c", "src/sub/cache", "src/sub/b/c", "src/b/c", "src/file1.b", "src/file12.b", "src/d/e/f",
            "src/top.log", "src/[x]", "src/q?",
        ] {
            write(&s.join(p), b"data");
        }
        let cases: &[&[(&str, &str)]] = &[
            &[("-", ".ssl")],
            &[("+", "keep.log"), ("-", "*.log")],
            &[("-", "/src/logs/*.log")],
            &[("-", "/src/logs/**.log")],
            &[("-", "cache/")],
            &[("-", "b/c")],
            &[("-", "file?.[a-c]")],
            &[("+", "/src/d/***"), ("+", "/src"), ("-", "*")],
            &[("-", "/src/d/e")],
            &[("-", "[[]x]"), ("-", "q\\?")],
        ];
        let dest = s.join("dest");
        fs::create_dir_all(&dest).unwrap();
        for rules in cases {
            let mut args: Vec<std::ffi::OsString> = vec!["-n".into(), "-r".into(), "-i".into()];
            let mut filter = Filter::new();
            for (sign, pat) in rules.iter() {
                args.push(if *sign == "+" { "--include".into() } else { "--exclude".into() });
                args.push(pat.into());
                if *sign == "+" { filter.include(pat).unwrap() } else { filter.exclude(pat).unwrap() }
            }
            args.push(s.join("src").into());
            args.push(format!("{}/", dest.display()).into());
            let argv: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let mut theirs: Vec<String> = rsync(&argv)
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(_, n)| n.trim_end_matches('/').to_string()))
                .collect();
            theirs.sort();
            assert!(theirs.len() > 1, "rsync listed nothing for {rules:?}");
            let mut ours = names(&build(&[s.join("src")], &all(), &filter).unwrap());
            ours.sort();
            assert_eq!(ours, theirs, "rules {rules:?}");
        }
    }
}
