//! rsync-style file synchronisation, the library core of `kt ha sync`
//! (issue 12). It knows no instance: it copies trees, as rsync does.
//!
//! # Pieces
//!
//! - [`filter`]: rsync's `--include`/`--exclude` rules (first match wins,
//!   anchored `/`, trailing `/`, `*`, `**`, `?`, classes, `dir/***`);
//!   checked against `rsync -n -i` in its tests.
//! - [`list`]: the sender's file list: rsync's trailing-slash rule (`dir`
//!   sends `dir/...`, `dir/` sends `.` and the contents), `-r -l -D`
//!   deciding what is listed, every attribute `-a` needs as data, names as
//!   bytes, no symlink followed, excluded directories not entered.
//! - [`wire`]: the messages and their framing (tag, u32 length, payload),
//!   strict and bounded parsing.
//! - [`send`]: the sending side. [`receive`]: the receiving side, which
//!   holds every safety check; `land`: its durable landing (batches
//!   flushed to disk on their own thread before their renames).
//! - [`meter`]: files and bytes done, for a [`crate::progress::Progress`]:
//!   reported by whichever side runs in the caller's thread.
//! - [`sync_local`]: both sides in one process over two pipes; the same
//!   [`send::send`] and [`receive::receive`] run over any `Read`/`Write`
//!   pair, which is how the remote side is driven ([`remote`]).
//!
//! # The protocol
//!
//! ```text
//! sender                                  receiver
//!   Hello ------------------------------->  (both ways; version must match)
//!   Entries* EndOfList ------------------>  validate the whole list, plan
//!              <------------------------- WantSums{i...}  (-c only, files
//!   Sums{sum|none...} ------------------>   DEST has at the same size;
//!     (hashed on every core while the       DEST's hashed meanwhile;
//!      receiver hashes its own)             one pair per 65,536 files)
//!              <------------- Request{i, signature, chunks}* EndOfPhase
//!   per request: FileStart{i}             (a generator thread computes the
//!     (Literal | Delta{len} | Copy{k,n})*  fast_rsync block signature and
//!       or LocalCopy (local session)       the aligned chunk sums of the
//!     FileEnd{i, blake3} | FileError{i}    old file; empty = whole file)
//!   EndOfPhase -------------------------->
//!                   <-------------------- Request{i, empty}* EndOfPhase Done
//!   (whole files for any that failed       (redo phase: a file whose rebuilt
//!    its BLAKE3 check)  EndOfPhase --->   data did not match its hash)
//!                   <-------------------- Item* Note* Done (a remote
//!                                          receiver only: its report)
//! ```
//!
//! The list is compact (`wire`'s list format: each entry carries only the
//! fields that differ from the previous one, names share prefixes, owner
//! and group names go once per id). It carries no `-c` hash (protocol 6):
//! a sum can only decide for a file DEST has at the same size, so the
//! receiver asks for those alone (`WantSums`, at most
//! [`wire::MAX_WANT_SUMS`] a message, one answer each) and the sender
//! answers 16 bytes of each file's BLAKE3 hash ([`list::LIST_SUM`], 128
//! bits as rsync's MD5 or xxh128 sums). Every other file is read once by
//! the sender, to send it, and hashed as it is read; the 32-byte BLAKE3
//! hash of every file that is transferred comes after its data
//! (`FileEnd`, a trailer) and the receiver checks what it wrote against
//! it before the file may land. Protocol 5 hashed every file for the list
//! first, so a first copy read each source twice. A false sum can only
//! make the receiver keep its own file or fetch one it did not need; it
//! cannot make anything land unchecked. BLAKE3 is a cryptographic hash (rsync's xxh128 is not): a
//! sender cannot make two contents collide in a `-c` sum or in the
//! whole-file check, so the receiver's check of what lands stays an
//! integrity check against a hostile peer, not only against corruption;
//! it replaced SHA-256 (protocol version 4) because it is about 3.5x
//! faster a core here (AVX-512/AVX2, detected at run time).
//!
//! Data goes in segments of at most [`wire::SEGMENT`] bytes, cut on the
//! basis' block boundaries: each is literal or a fast_rsync delta against
//! the whole old file (so moved blocks are still found) that must produce
//! exactly `len` bytes (`apply_limited`).
//!
//! The delta search (fast_rsync's scalar MD4 of every matching block) was
//! the sender's cost for a large file with a small change, so a fast path
//! runs in front of it (protocol 5): with the signature the generator
//! sends a 16-byte sum of each aligned chunk of the old file
//! ([`wire::chunk_size`]: about 256 KiB, whole blocks), from the same
//! read: xxh3-128 since protocol 7 (BLAKE3 before; nothing rests on a
//! chunk sum, see [`wire::CHUNK_SUM`], and BLAKE3 there was two of the
//! five hash passes over a large file with a small change). The sender sums its own file's aligned chunks; a chunk whose sum
//! equals the old file's chunk at the same index goes as `Copy{k, n}`
//! (chunks `k..k+n` of the basis, a range the receiver checks against its
//! basis), and only the runs of chunks that differ are diffed, still
//! against the whole signature. A wrong chunk match cannot land: the
//! rebuilt file is checked against the sender's whole-file BLAKE3 as
//! always (a mismatch asks for the file whole).
//!
//! A local session ([`sync_local`]) sends whole files, as rsync does for
//! two local paths (`-W` is its default there: a delta saves pipe bytes,
//! not disk work). Sender and receiver share one process, so the data does
//! not go through the pipe at all: the sender answers `LocalCopy` and the
//! file's hash (the `-c` sum's when one was asked for, else hashed while
//! the receiver copies); the receiver copies the source into its temp file with
//! `copy_file_range` (`O_NOFOLLOW`, at most the listed size plus one byte),
//! reads back and hashes what landed, and checks it against the sender's
//! hash and size like any other file; a file that changed during the copy
//! fails the check and is sent again through the pipe in the redo phase.
//! A remote sender's `LocalCopy` is refused. `--no-whole-file` runs the
//! remote protocol over the pipes, deltas included. The sender holds one
//! segment (a few, one a thread, for a large file's delta search); the
//! receiver holds the old file (up to [`receive::ReceiveOptions::max_basis`],
//! larger old files are fetched whole) and one segment. Either side may
//! send `Error` and stop; the other reports it.
//!
//! # Who checks what
//!
//! The receiver trusts nothing: list entries (relative, no `..`, no NUL,
//! bounded, unique, parents listed first), sizes (never more than
//! declared), every file's BLAKE3 hash before its rename, message order
//! (one `Sums` answer per `WantSums`, one sum per file asked). Every
//! listed directory is made a real directory before anything below it is
//! written, so nothing is written through a symlink; files land by temp
//! file (named [`receive::TMP_PREFIX`]`...`, removed by the next run) +
//! flush to disk + rename. The flushes are batched, not skipped: a
//! verified temp file's writeback starts at once (`sync_file_range`), and
//! the files gathered so far (at least 32 files or 8 MiB, handed over as
//! soon as the landing thread is idle; the receiver waits for it at 256
//! files or 64 MiB; and all of them at the end of each phase, or of a
//! failed session) are made durable on a thread of its own (`land`:
//! one `syncfs` per filesystem, the guarantee of an fsync of each file
//! with one device cache flush instead of one per file, then each file's
//! writeback checked for errors) while the next batch is received, and
//! only then is each of its files renamed into place; the directories'
//! entries are made durable the same way after their renames, at the end.
//! A crash therefore leaves under each name the old file or the
//! new one, whole and on disk, never a part: an unrenamed temp file is
//! removed by the next run. The sender checks that the receiver asks (data or sums)
//! only for regular files of the list and sends sane signatures, and
//! reports a file that changed size since it was listed instead of
//! sending its first listed bytes. A refused list changes nothing;
//! a lie found mid-transfer (size, hash twice, bad delta) ends the session
//! leaving the file being received as it was, but files already landed
//! stay (each whole and verified).
//!
//! # The remote side
//!
//! [`remote`]: `[user@]host:path` (rsync's rule: a `:` with no `/` before
//! it), the remote shell started as `RSH [user@]host REMOTE_KT ha sync
//! --server --sender|--receiver [options] -- PATH...` (every word but
//! REMOTE_KT shell-quoted, since ssh hands them to a shell), the session
//! over its pipes, `-z` as one zlib stream each way, byte counts on the
//! pipes, and the remote's stderr quoted when it fails. A remote receiver
//! reports its changes (`Item`) and per-file failures (`Note`) after the
//! session, so a push prints `-i`/`-v` and exits 1 like a local run.
//! `commands/ha.rs` is the command line (`kt ha sync`).
//!
//! # The façade
//!
//! Callers outside this module (`commands/ha.rs`, `ha::drift`) use only
//! [`run`] (one client session: local, push or pull, chosen by where SRC
//! and DEST are), [`serve`] (the remote side) and the types re-exported
//! here; how a session is wired (lists, transports, the remote shell) stays
//! inside.
//!
//! # Left for the next session
//!
//! - Performance against rsync: see the figures of `scripts/bench-sync`
//!   in BENCHMARKS.md. `-c` hashes only the files DEST has at the same
//!   size, on both sides at once (`WantSums`), with BLAKE3 on every core;
//!   the sender reuses such a hash for a file whose inode and ctime have
//!   not changed and hashes every other file as it sends it, so each SRC
//!   byte is hashed once (and read once, but for a file of the same size
//!   whose sum differs: read for its sum, then to send it), and the
//!   receiver hashes what it receives once. BLAKE3 runs at about 4 GB/s a core
//!   here (SHA-256 with SHA-NI: about 1.2 GB/s). Known costs left: the
//!   receiver holds a whole old file (up to 512 MiB) as the basis (the
//!   generator's read for the signature, handed over: read once); a large
//!   file with a small change over rsh is hashed with BLAKE3 three times
//!   (SRC and DEST under -c, the rebuilt file) and with xxh3 twice (the
//!   chunk sums on both sides), where BLAKE3's tree (`blake3::hazmat`
//!   chaining values of aligned power-of-two chunks) would let the
//!   rebuilt file's hash be composed from the basis' values for copied
//!   chunks; the signature is sent whole, so the sender waits for it.
//! - `-i`/`-v` lines come in the order changes happen (directories and
//!   links first, then files as they land); rsync prints in its list
//!   order (a directory's files before its subdirectories' contents).
//!   A dry run prints kt's list order (depth first). `-v` does not print
//!   rsync's "created directory DEST"; `-vv` is refused.
//! - A lie found mid-transfer leaves directories created so far with mode
//!   0700 and no final times (their attributes are set at the end); a
//!   staging of the whole run would be needed for "DEST unchanged" there.
//! - Differences from rsync known so far: two `dir/` sources are refused
//!   (rsync merges them); the quick check compares whole seconds of mtime;
//!   a DEST that is an existing file (`rsync f g`) is refused, DEST must
//!   be a directory (the documented use); `-z` is ignored locally (rsync
//!   too); a missing SRC is exit 3 (rsync's 23); `host:a :b` (rsync's
//!   short form for more files of the same host) is not taken.
//! - `--delete` runs after the transfer (rsync's `--delete-after`) and is
//!   skipped when any file failed, as rsync does on I/O errors.

pub mod filter;
mod land;
pub mod list;
pub mod meter;
pub mod receive;
pub mod remote;
pub mod send;
pub mod wire;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::progress::{Progress, Silent};
use receive::ReceiveStats;
use send::SendStats;

pub use filter::Filter;
pub use list::{FileKind, ListOptions};
pub use receive::{Item, ReceiveOptions};
pub use remote::{filter_from, parse_location, Location, SessionOptions};

/// What a local sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub send: SendStats,
    pub receive: ReceiveStats,
    /// What the list left out (non-regular files without -l/-D,
    /// unreadable directories).
    pub skipped: Vec<String>,
}

/// Syncs `srcs` into `dest` with both sides in this process, talking the
/// real protocol over two pipes. `receive.filter` is used by both sides.
/// The receiver (this thread) reports files and bytes to `progress`.
pub fn sync_local(
    srcs: &[PathBuf],
    dest: &Path,
    list_opts: &ListOptions,
    receive_opts: &ReceiveOptions,
    itemize: &mut dyn FnMut(&Item),
    progress: &dyn Progress,
) -> Result<Report> {
    let list = list::build(srcs, list_opts, &receive_opts.filter)?;
    let pipe = || std::io::pipe().map_err(|e| Error::env("cannot create a pipe").because_err(&e));
    let (from_sender, to_receiver) = pipe()?;
    let (from_receiver, to_sender) = pipe()?;
    wire::widen_pipe(std::os::fd::AsFd::as_fd(&from_sender));
    std::thread::scope(|scope| {
        let list = &list;
        // rsync's default for two local paths: whole files (here copied
        // by the kernel); `--no-whole-file` runs the remote protocol over
        // the pipes, deltas and all.
        let (sender, received) = if receive_opts.whole_file == Some(false) {
            let sender = scope.spawn(move || send::send(list, from_receiver, to_receiver, &Silent));
            (sender, receive::receive(dest, receive_opts, from_sender, to_sender, itemize, progress))
        } else {
            let sender = scope.spawn(move || send::send_local(list, from_receiver, to_receiver));
            (sender, receive::receive_local(dest, receive_opts, &list.sources, from_sender, to_sender, itemize, progress))
        };
        let sent = sender.join().unwrap_or_else(|_| Err(Error::problem("the sync sender thread panicked")));
        match (received, sent) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(receive), Ok(send)) => Ok(Report { send, receive, skipped: list.skipped.clone() }),
        }
    })
}

/// How a remote side is reached: the remote shell (`-e`, split into words
/// as a shell would) and kt's command on the other host (`--remote-kt`).
#[derive(Debug, Clone)]
pub struct RemoteShell {
    pub rsh: String,
    pub remote_kt: String,
}

/// What a client session did, whichever side ran where.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Bytes written to and read from the session's pipes (after `-z`).
    pub sent: u64,
    pub received: u64,
    /// The size of the sender's list, as rsync counts it.
    pub total_size: u64,
    /// What the local list left out or could not read (`skipping ...` is
    /// information; anything else is a file not transferred).
    pub skipped: Vec<String>,
    /// Files that could not be transferred.
    pub errors: Vec<String>,
    /// What a successful remote side wrote on stderr (its warnings).
    pub remote_said: String,
}

/// One client session of `srcs` into `dest`: both local (both sides in
/// this process, [`sync_local`]), a push (DEST remote) or a pull (SRCs
/// remote, all on one host). Changes go to `on_item` as they are known,
/// with rsync's direction: a push's transfers read `<` (sent), a pull's
/// and a local run's `>` (received). Files and bytes go to `progress` as
/// they are done ([`meter`]: landed by this side's receiver, or sent by
/// its sender in a push). Refused (exit 2) when both sides or SRCs on
/// different hosts are remote.
pub fn run(
    srcs: &[Location],
    dest: &Location,
    opts: &SessionOptions,
    shell: &RemoteShell,
    on_item: &mut dyn FnMut(&Item),
    progress: &dyn Progress,
) -> Result<Outcome> {
    let local_srcs = || -> Vec<PathBuf> {
        srcs.iter()
            .filter_map(|s| match s {
                Location::Local(p) => Some(p.clone()),
                Location::Remote { .. } => None,
            })
            .collect()
    };
    let all_local = srcs.iter().all(|s| matches!(s, Location::Local(_)));
    match (dest, all_local) {
        (Location::Local(dest), true) => {
            let report = sync_local(&local_srcs(), dest, &opts.list, &opts.receive, on_item, progress)?;
            Ok(Outcome {
                sent: report.send.bytes_written,
                received: report.send.bytes_read,
                total_size: report.receive.total_size,
                skipped: report.skipped,
                errors: report.receive.errors,
                remote_said: String::new(),
            })
        }
        (Location::Remote { host, path }, true) => {
            let list = list::build(&local_srcs(), &opts.list, &opts.receive.filter)?;
            let args = remote::server_args(remote::Role::Receiver, opts, std::slice::from_ref(path));
            let (child, stdout, stdin) = remote::Remote::start(&shell.rsh, host, &shell.remote_kt, &args)?;
            let mut t = remote::Transport::new(stdout, stdin, opts.compress);
            // The remote receiver reports `>` (it received): this side sent.
            let result = remote::push(&list, &mut t, &mut |i: &Item| {
                if i.code.starts_with('>') {
                    let mut sent = i.clone();
                    sent.code.replace_range(..1, "<");
                    on_item(&sent);
                } else {
                    on_item(i);
                }
            }, progress);
            let counters = t.counters.clone();
            drop(t);
            let (report, said) = child.finish(result)?;
            Ok(Outcome {
                sent: counters.written(),
                received: counters.read(),
                total_size: list::total_size(&list.entries),
                skipped: list.skipped,
                errors: report.errors,
                remote_said: said,
            })
        }
        (Location::Local(dest), false) => {
            let (host, paths) = remote_sources(srcs)?;
            let args = remote::server_args(remote::Role::Sender, opts, &paths);
            let (child, stdout, stdin) = remote::Remote::start(&shell.rsh, &host, &shell.remote_kt, &args)?;
            let mut t = remote::Transport::new(stdout, stdin, opts.compress);
            let result = receive::receive(dest, &opts.receive, &mut t.input, &mut t.output, on_item, progress);
            let counters = t.counters.clone();
            drop(t);
            let (stats, said) = child.finish(result)?;
            Ok(Outcome {
                sent: counters.written(),
                received: counters.read(),
                total_size: stats.total_size,
                skipped: Vec::new(),
                errors: stats.errors,
                remote_said: said,
            })
        }
        (Location::Remote { .. }, false) => Err(Error::usage("the sources and the destination cannot both be remote")),
    }
}

/// Remote sources must all be on one host, as rsync's `host:a host:b`.
fn remote_sources(srcs: &[Location]) -> Result<(OsString, Vec<OsString>)> {
    let mut host: Option<&OsString> = None;
    let mut paths = Vec::new();
    for s in srcs {
        match s {
            Location::Remote { host: h, path } if host.is_none_or(|x| x == h) => {
                host = Some(h);
                paths.push(path.clone());
            }
            Location::Remote { .. } => return Err(Error::usage("remote sources must all be on the same host")),
            Location::Local(p) => {
                return Err(Error::usage(format!("{} is local while other sources are remote", p.display())))
            }
        }
    }
    let host = host.ok_or_else(|| Error::usage("no source given"))?;
    Ok((host.clone(), paths))
}

/// The remote side of a session (`kt ha sync --server`), on this process's
/// stdin and stdout, which nothing else may write to. As the sender it
/// sends `paths` and returns the list's warnings (not `skipping ...`) for
/// the caller to put on stderr, where the client shows them; as the
/// receiver it receives into the one path and reports to the client.
pub fn serve(sender: bool, paths: &[OsString], opts: &SessionOptions) -> Result<Vec<String>> {
    let mut t = remote::Transport::stdio(opts.compress)?;
    if sender {
        let srcs: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let list = match list::build(&srcs, &opts.list, &opts.receive.filter) {
            Ok(list) => list,
            Err(e) => {
                // Tell the client why, in the protocol, before failing.
                let mut w = wire::Writer::new(&mut t.output);
                let _ = w.send(&wire::Msg::Error { message: e.to_string() });
                let _ = w.flush();
                return Err(e);
            }
        };
        send::send(&list, &mut t.input, &mut t.output, &Silent)?;
        Ok(list.skipped.into_iter().filter(|s| !s.starts_with("skipping ")).collect())
    } else {
        let [dest] = paths else {
            return Err(Error::usage("--server --receiver takes one destination"));
        };
        remote::serve_receiver(Path::new(dest), &opts.receive, opts.report_items, &mut t)?;
        Ok(Vec::new())
    }
}
