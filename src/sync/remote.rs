//! The remote side of a sync, reached the way rsync reaches it: the client
//! runs `RSH [user@]host REMOTE_KT ha sync --server --sender|--receiver
//! [options] PATH...` and speaks the sync protocol over that command's
//! stdin and stdout; the remote kt runs [`send::send`] or
//! [`receive::receive`] on its own stdin and stdout.
//!
//! Like ssh, the remote shell joins the words after the host with spaces
//! and hands them to the remote user's shell, so every word kt adds is
//! shell-quoted here (rsync quotes them the same way since 3.2.4);
//! `--remote-kt` goes verbatim, as rsync's `--rsync-path`, so that
//! `--remote-kt 'sudo kt'` works.
//!
//! With `-z` both directions go through one zlib stream each, flushed
//! (`Z_SYNC_FLUSH`) whenever a side waits for the other. The byte counts
//! of the totals line are taken on the pipes, after compression.
//!
//! A remote receiver reports what it changed back to the client after the
//! session (`Item`, `Note`, then `Done`), so that `-i`, `-v` and the exit
//! code of a push are the client's to print, as with rsync.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::filter::{Action, Filter};
use super::list::{FileList, ListOptions};
use super::receive::{self, Item, ReceiveOptions, ReceiveStats};
use super::send::{self, SendStats};
use super::wire::{Msg, Reader, Writer};
use crate::error::{Error, Result};

/// Where one SRC or DEST argument points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// `[user@]host:path`; an empty path is the remote home, `.`.
    Remote { host: OsString, path: OsString },
}

/// rsync's rule: an argument is remote when it has a `:` with no `/`
/// before it (`host:path`, `user@host:path`); `./a:b` and `/x:y` are local.
pub fn parse_location(arg: &OsStr) -> Location {
    let b = arg.as_bytes();
    match b.iter().position(|&c| c == b':') {
        Some(at) if at > 0 && !b[..at].contains(&b'/') => {
            let path = if at + 1 == b.len() { b".".to_vec() } else { b[at + 1..].to_vec() };
            Location::Remote { host: OsString::from_vec(b[..at].to_vec()), path: OsString::from_vec(path) }
        }
        _ => Location::Local(PathBuf::from(arg)),
    }
}

/// Which side the remote kt plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

/// The options both sides must agree on, as the client was given them.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub list: ListOptions,
    pub receive: ReceiveOptions,
    pub compress: bool,
    /// The client prints `-i`/`-v` lines: a remote receiver reports its changes.
    pub report_items: bool,
}

/// The arguments after `REMOTE_KT` (unquoted): `ha sync --server
/// --sender|--receiver`, the options the remote side applies, the filter
/// rules in order, `--`, the paths.
pub fn server_args(role: Role, opts: &SessionOptions, paths: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["ha".into(), "sync".into(), "--server".into()];
    args.push(if role == Role::Sender { "--sender" } else { "--receiver" }.into());
    let mut short = String::from("-");
    let l = &opts.list;
    let r = &opts.receive;
    for (on, c) in [
        (l.recursive, 'r'),
        (l.links, 'l'),
        (r.perms, 'p'),
        (r.times, 't'),
        (r.group, 'g'),
        (r.owner, 'o'),
        (l.devices || r.devices, 'D'),
        (l.checksum || r.checksum, 'c'),
        (r.dry_run, 'n'),
        (opts.compress, 'z'),
        (opts.report_items, 'i'),
    ] {
        if on {
            short.push(c);
        }
    }
    if short.len() > 1 {
        args.push(short.into());
    }
    if r.delete {
        args.push("--delete".into());
    }
    match r.whole_file {
        Some(true) => args.push("--whole-file".into()),
        Some(false) => args.push("--no-whole-file".into()),
        None => {}
    }
    for (action, pattern) in r.filter.rules() {
        let flag = if action == Action::Include { "--include=" } else { "--exclude=" };
        args.push(format!("{flag}{pattern}").into());
    }
    args.push("--".into());
    args.extend(paths.iter().cloned());
    args
}

/// One word for a POSIX shell: single-quoted unless it is plainly safe.
pub fn shell_quote(word: &OsStr) -> OsString {
    let b = word.as_bytes();
    let safe = !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_./=,+:@%".contains(c));
    if safe {
        return word.to_os_string();
    }
    let mut out = vec![b'\''];
    for &c in b {
        if c == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(c);
        }
    }
    out.push(b'\'');
    OsString::from_vec(out)
}

/// Byte counts of a session's pipes, shared with the counting wrappers.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub read: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl Counters {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

struct CountRead<R>(R, Arc<AtomicU64>);

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct CountWrite<W>(W, Arc<AtomicU64>);

impl<W: Write> Write for CountWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The two byte streams of a session, counted on the pipe side and
/// compressed with `-z`.
pub struct Transport {
    pub input: Box<dyn Read + Send>,
    pub output: Box<dyn Write + Send>,
    pub counters: Counters,
}

impl Transport {
    pub fn new<R, W>(input: R, output: W, compress: bool) -> Transport
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let counters = Counters::default();
        let input = CountRead(input, counters.read.clone());
        let output = CountWrite(output, counters.written.clone());
        if compress {
            Transport {
                input: Box::new(flate2::read::ZlibDecoder::new(input)),
                output: Box::new(flate2::write::ZlibEncoder::new(output, flate2::Compression::new(6))),
                counters,
            }
        } else {
            Transport { input: Box::new(input), output: Box::new(output), counters }
        }
    }

    /// This process's stdin and stdout (the server side), unbuffered: a
    /// duplicate of each descriptor, so nothing else writes into the
    /// protocol stream through Rust's line-buffered stdout.
    pub fn stdio(compress: bool) -> Result<Transport> {
        use std::os::fd::AsFd;
        let dup = |fd: std::os::fd::BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map(std::fs::File::from)
                .map_err(|e| Error::env("cannot use the standard streams").because_err(&e))
        };
        let input = dup(io::stdin().as_fd())?;
        let output = dup(io::stdout().as_fd())?;
        super::wire::widen_pipe(input.as_fd());
        super::wire::widen_pipe(output.as_fd());
        Ok(Transport::new(input, output, compress))
    }
}

/// The server's receiving side: receive into `dest`, then report the
/// changes (when asked) and the per-file failures to the client.
pub fn serve_receiver(dest: &Path, opts: &ReceiveOptions, report_items: bool, t: &mut Transport) -> Result<ReceiveStats> {
    let mut items = Vec::new();
    let mut keep = |i: &Item| {
        if report_items {
            items.push(i.clone())
        }
    };
    // The client shows a push's progress (its sender's).
    let stats = receive::receive(dest, opts, &mut t.input, &mut t.output, &mut keep, &crate::progress::Silent)?;
    let mut w = Writer::new(&mut t.output);
    for i in items {
        w.send(&Msg::Item { code: i.code, path: i.path, kind: i.kind, target: i.target })?;
    }
    for message in &stats.errors {
        w.send(&Msg::Note { message: message.clone() })?;
    }
    w.send(&Msg::Done)?;
    w.flush()?;
    Ok(stats)
}

/// What a push did: the send, and the remote receiver's failures.
#[derive(Debug, Default)]
pub struct PushReport {
    pub send: SendStats,
    pub errors: Vec<String>,
}

/// The client's sending side: the session (files and bytes sent to
/// `progress`), then the remote receiver's reports (changes to `itemize`,
/// failures in the report).
pub fn push(
    list: &FileList,
    t: &mut Transport,
    itemize: &mut dyn FnMut(&Item),
    progress: &dyn crate::progress::Progress,
) -> Result<PushReport> {
    let send = send::send(list, &mut t.input, &mut t.output, progress)?;
    let mut errors = Vec::new();
    let mut r = Reader::new(&mut t.input);
    loop {
        match r.read()? {
            Msg::Item { code, path, kind, target } => itemize(&Item { code, path, kind, target }),
            Msg::Note { message } => errors.push(message),
            Msg::Done => break,
            Msg::Error { message } => return Err(Error::env("the receiving side failed").because(message)),
            _ => return Err(Error::usage("sync protocol violation").because("the receiver sent an unexpected report")),
        }
    }
    Ok(PushReport { send, errors })
}

/// Most bytes of the remote's stderr kept for the error message.
const STDERR_KEEP: usize = 16 * 1024;

/// A started remote side: the remote shell and its pipes.
pub struct Remote {
    child: Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    /// The command line, for messages.
    pub command: String,
}

impl Remote {
    /// Starts `RSH HOST REMOTE_KT ARGS...` with `rsh` split into words as a
    /// shell would (`-e 'ssh -p 2222'`).
    pub fn start(rsh: &str, host: &OsStr, remote_kt: &str, args: &[OsString]) -> Result<(Remote, ChildStdout, ChildStdin)> {
        let words = shlex::split(rsh)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| Error::usage(format!("cannot split the remote shell command {rsh:?} into words")))?;
        // A host that starts with '-' would reach ssh as an option
        // (`-oProxyCommand=...`): never a host name.
        if host.as_bytes().first() == Some(&b'-') {
            return Err(Error::usage(format!("{:?} is not a host name: it starts with '-'", host.to_string_lossy())));
        }
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).arg(host).arg(remote_kt);
        cmd.args(args.iter().map(|a| shell_quote(a)));
        let command = {
            let mut parts: Vec<String> = words.clone();
            parts.push(host.to_string_lossy().into_owned());
            parts.push(remote_kt.to_string());
            parts.extend(args.iter().map(|a| shell_quote(a).to_string_lossy().into_owned()));
            parts.join(" ")
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::env(format!("cannot start the remote shell {:?}", words[0])).because_err(&e))?;
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
            kept
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        {
            use std::os::fd::AsFd;
            super::wire::widen_pipe(stdout.as_fd());
            super::wire::widen_pipe(stdin.as_fd());
        }
        Ok((Remote { child, stderr, command }, stdout, stdin))
    }

    /// Waits for the remote side once the session's pipes are closed
    /// (dropped by the caller), and joins its outcome with the session's:
    /// a failure quotes what the remote wrote on stderr. On success the
    /// remote's stderr (warnings) is returned for the caller to show.
    pub fn finish<T>(mut self, session: Result<T>) -> Result<(T, String)> {
        let status = self.child.wait();
        let mut stderr = self.stderr.join().unwrap_or_default();
        if stderr.len() > STDERR_KEEP {
            stderr.drain(..stderr.len() - STDERR_KEEP);
        }
        let said = String::from_utf8_lossy(&stderr).trim_end().to_string();
        let quote = |e: Error| {
            if said.is_empty() {
                e
            } else {
                e.because(format!("the remote side said: {said}"))
            }
        };
        match (session, status) {
            (Err(e), Ok(st)) if !st.success() => {
                let e = quote(e.because(format!("the remote command exited with {st}")));
                Err(e.with_hint(format!("the remote side was started as: {}", self.command)))
            }
            (Err(e), _) => Err(quote(e)),
            (Ok(_), Err(e)) => Err(Error::env("cannot wait for the remote side").because_err(&e)),
            (Ok(_), Ok(st)) if !st.success() => Err(quote(Error::env(format!("the remote side failed ({st})")))),
            (Ok(v), Ok(_)) => Ok((v, said)),
        }
    }
}

/// The rules of `filter`, rebuilt from the `(include, pattern)` pairs a
/// command line gave in order.
pub fn filter_from(rules: &[(bool, String)]) -> Result<Filter> {
    let mut f = Filter::new();
    for (include, pattern) in rules {
        f.push(if *include { Action::Include } else { Action::Exclude }, pattern)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_rsyncs_rule() {
        let remote = |h: &str, p: &str| Location::Remote { host: h.into(), path: p.into() };
        assert_eq!(parse_location(OsStr::new("root@h:/var/lib/x/.")), remote("root@h", "/var/lib/x/."));
        assert_eq!(parse_location(OsStr::new("h:")), remote("h", "."));
        assert_eq!(parse_location(OsStr::new("./a:b")), Location::Local("./a:b".into()));
        assert_eq!(parse_location(OsStr::new("/x:y")), Location::Local("/x:y".into()));
        assert_eq!(parse_location(OsStr::new(":y")), Location::Local(":y".into()));
        assert_eq!(parse_location(OsStr::new("dir")), Location::Local("dir".into()));
    }

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote(OsStr::new("/var/lib/x")), "/var/lib/x");
        assert_eq!(shell_quote(OsStr::new("it's a $x")), "'it'\\''s a $x'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
        let word = OsStr::from_bytes(b"a 'b' \"c\" $d `e` caf\xe9");
        let script = [&b"printf %s "[..], shell_quote(word).as_bytes()].concat();
        let out = Command::new("sh").arg("-c").arg(OsStr::from_bytes(&script)).output().unwrap();
        assert_eq!(out.stdout, word.as_bytes());
    }
}
