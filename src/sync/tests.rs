//! Whole sessions: both sides over real pipes, on real trees, with rsync
//! as the reference where it has an answer (the tests fail, never skip,
//! without it), and a scripted hostile sender.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::list::tests::{rsync, write, Scratch};
use super::list::{Entry, FileKind, ListOptions};
use super::receive::{receive, Item, ReceiveOptions, ReceiveStats, TMP_PREFIX};
use super::sync_local;
use super::wire::{Msg, Reader, Writer, VERSION};
use crate::error::Result;
use crate::progress::{Progress, Silent};

/// `-a`: `-rlptgoD`.
fn archive() -> (ListOptions, ReceiveOptions) {
    let list = ListOptions { recursive: true, links: true, devices: true, checksum: false };
    let recv = ReceiveOptions { perms: true, times: true, owner: true, group: true, devices: true, ..Default::default() };
    (list, recv)
}

fn run(srcs: &[PathBuf], dest: &Path, list: &ListOptions, recv: &ReceiveOptions) -> (super::Report, Vec<String>) {
    let mut lines = Vec::new();
    let report = sync_local(srcs, dest, list, recv, &mut |i: &Item| lines.push(i.line()), &Silent).unwrap();
    (report, lines)
}

/// Sets the mtime of a file or a directory (through a read-only handle,
/// which a directory allows; the owner may set times on it).
fn set_mtime(path: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Kind, mode, size, content or target, and mtime of every entry below
/// `root` (not following links).
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).unwrap())
            } else if m.file_type().is_fifo() {
                format!("fifo {:o} {}", m.mode() & 0o7777, m.mtime())
            } else if m.file_type().is_char_device() {
                format!("chr {:x} {:o} {}", m.rdev(), m.mode() & 0o7777, m.mtime())
            } else if m.is_dir() {
                format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
            } else {
                let data = fs::read(&p).unwrap();
                format!("file {:o} {} {} {:x}", m.mode() & 0o7777, m.mtime(), data.len(), crc(&data))
            };
            out.insert(rel, what);
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn crc(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tree(s: &Scratch, odd_names: bool) {
    write(&s.join("src/keytrustee.conf"), b"{\"a\": 1}\n");
    write(&s.join("src/.ssl/ssl-cert-keytrustee-pk.pem"), b"private");
    write(&s.join("src/sub/deep/file"), &noise(100_000, 7));
    write(&s.join("src/with space 'quote\" x"), b"q");
    if odd_names {
        write(&s.join("src/caf\u{e9} \u{65e5}\u{672c}"), b"utf8");
        write(&s.join("src").join(OsStr::from_bytes(b"latin\xe9")), b"bytes");
    }
    fs::create_dir_all(s.join("src/empty")).unwrap();
    symlink("../keytrustee.conf", s.join("src/sub/link")).unwrap();
    symlink("/nonexistent/outside", s.join("src/dangling")).unwrap();
    fs::set_permissions(s.join("src/.ssl/ssl-cert-keytrustee-pk.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.join("src/.ssl"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(s.join("src/sub/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&s.join("src/keytrustee.conf"), 1_600_000_000);
    // -D: a fifo always, a device when root (as rsync, only root makes them).
    let c = |p: PathBuf| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated paths.
    unsafe {
        assert_eq!(libc::mkfifo(c(s.join("src/fifo")).as_ptr(), 0o640), 0);
        if crate::account::is_root() {
            assert_eq!(libc::mknod(c(s.join("src/null")).as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)), 0);
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn documented_command_line_gives_rsyncs_tree_and_itemize_lines() {
    let s = Scratch::new("sess-doc");
    tree(&s, true);
    let (ours, theirs) = (s.join("ours"), s.join("theirs"));
    fs::create_dir_all(&ours).unwrap();
    fs::create_dir_all(&theirs).unwrap();
    let (list, mut recv) = archive();
    recv.filter.exclude(".ssl").unwrap();
    let (report, _) = run(&[s.join("src")], &ours, &list, &recv);
    let args: Vec<OsString> =
        vec!["-a".into(), "--exclude".into(), ".ssl".into(), s.join("src").into(), format!("{}/", theirs.display()).into()];
    rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let snap = snapshot(&ours);
    assert_eq!(snap, snapshot(&theirs));
    assert!(!snap.keys().any(|k| k.windows(4).any(|w| w == b".ssl")), "{snap:?}");
    assert!(snap.contains_key(b"src/empty".as_slice()));
    assert_eq!(report.receive.transferred, 5);
    assert!(report.receive.errors.is_empty() && report.send.errors.is_empty());

    // Itemize lines as rsync -i prints them (ASCII names: rsync escapes others by locale).
    let s2 = Scratch::new("sess-doc-i");
    tree(&s2, false);
    let (ours, theirs) = (s2.join("ours"), s2.join("theirs"));
    fs::create_dir_all(&ours).unwrap();
    fs::create_dir_all(&theirs).unwrap();
    let (_, lines) = run(&[s2.join("src")], &ours, &list, &recv);
    let args: Vec<OsString> = vec![
        "-a".into(), "-i".into(), "--exclude".into(), ".ssl".into(), s2.join("src").into(),
        format!("{}/", theirs.display()).into(),
    ];
    let out = rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert_eq!(sorted(lines), sorted(out.lines().map(String::from).collect()));
}

#[test]
fn trailing_slash_copies_contents_and_second_run_does_nothing() {
    let s = Scratch::new("sess-slash");
    tree(&s, true);
    let dest = s.join("dest");
    let (list, recv) = archive();
    let src = PathBuf::from(format!("{}/", s.join("src").display()));
    let (_, first) = run(std::slice::from_ref(&src), &dest, &list, &recv);
    assert!(first.contains(&"cd+++++++++ ./".to_string()), "{first:?}");
    let want = snapshot(&s.join("src"));
    assert_eq!(snapshot(&dest), want);
    assert_eq!(fs::metadata(&dest).unwrap().mtime(), fs::metadata(s.join("src")).unwrap().mtime());
    let (report, again) = run(&[src], &dest, &list, &recv);
    assert_eq!((again.len(), report.receive.transferred), (0, 0), "{again:?}");
}

#[test]
fn a_changed_large_file_sends_only_the_change() {
    let s = Scratch::new("sess-delta");
    let big = noise(10 << 20, 3);
    write(&s.join("src/big"), &big);
    let dest = s.join("dest");
    let (list, recv) = archive();
    // --no-whole-file: the delta path, locally (the local default sends whole files).
    let recv = ReceiveOptions { whole_file: Some(false), ..recv };
    let (first, _) = run(&[s.join("src")], &dest, &list, &recv);
    assert!(first.receive.data_bytes >= big.len() as u64);
    assert_eq!(first.send.local_bytes, 0, "--no-whole-file sends data through the pipe");
    let mut changed = big.clone();
    changed[5 << 20..(5 << 20) + 65536].copy_from_slice(&noise(65536, 99));
    write(&s.join("src/big"), &changed);
    set_mtime(&s.join("src/big"), 1_650_000_000);
    let (second, lines) = run(&[s.join("src")], &dest, &list, &recv);
    assert!(fs::read(dest.join("src/big")).unwrap() == changed, "DEST differs from SRC");
    assert_eq!(lines, [">f..t...... src/big"]);
    assert_eq!(second.receive.transferred, 1);
    // The unchanged aligned chunks are copied from the old file, not searched.
    assert!(second.send.chunk_bytes >= 9 << 20, "chunk copies: {}", second.send.chunk_bytes);
    assert_eq!(second.receive.copied_bytes, second.send.chunk_bytes);
    assert!(second.receive.data_bytes < 200_000, "sent {} bytes for a 64 KiB change", second.receive.data_bytes);
    assert!(second.receive.bytes_read < 300_000, "wire bytes {}", second.receive.bytes_read);
    // An insertion shifts everything after it: blocks are still found,
    // across segment boundaries, because each segment is diffed against
    // the whole old file.
    let mut shifted = changed.clone();
    shifted.splice(3 << 20..3 << 20, noise(100, 4));
    write(&s.join("src/big"), &shifted);
    set_mtime(&s.join("src/big"), 1_660_000_000);
    let (third, _) = run(&[s.join("src")], &dest, &list, &recv);
    assert!(fs::read(dest.join("src/big")).unwrap() == shifted, "DEST differs from SRC");
    assert!(third.receive.data_bytes < 100_000, "sent {} bytes for a 100-byte insertion", third.receive.data_bytes);
}

#[test]
fn a_local_sync_copies_whole_files_in_the_kernel_and_checks_them() {
    let s = Scratch::new("sess-local-whole");
    let big = noise(3 << 20, 5);
    write(&s.join("src/big"), &big);
    write(&s.join("src/small"), b"small");
    let dest = s.join("dest");
    for checksum in [false, true] {
        let _ = fs::remove_dir_all(&dest);
        let (mut list, mut recv) = archive();
        list.checksum = checksum;
        recv.checksum = checksum;
        let (first, _) = run(&[s.join("src")], &dest, &list, &recv);
        assert!(fs::read(dest.join("src/big")).unwrap() == big, "DEST differs from SRC");
        assert_eq!(first.send.local_bytes, big.len() as u64 + 5);
        // rsync counts -W data as sent: the -v totals include it.
        assert!(first.send.bytes_written > big.len() as u64, "{}", first.send.bytes_written);
        assert!(first.receive.bytes_read < 10_000, "data went through the pipe: {}", first.receive.bytes_read);
        // A change is sent whole too (rsync's -W default for local copies), no delta.
        let mut changed = big.clone();
        changed[1 << 20] ^= 1;
        write(&s.join("src/big"), &changed);
        set_mtime(&s.join("src/big"), 1_650_000_000);
        let (second, lines) = run(&[s.join("src")], &dest, &list, &recv);
        assert_eq!(lines, [if checksum { ">fc.t...... src/big" } else { ">f..t...... src/big" }]);
        assert!(fs::read(dest.join("src/big")).unwrap() == changed, "DEST differs from SRC");
        assert_eq!((second.send.local_bytes, second.send.delta_bytes), (changed.len() as u64, 0));
        assert_eq!(second.receive.redone, 0);
        write(&s.join("src/big"), &big);
    }
}

#[test]
fn checksum_catches_a_change_that_kept_size_and_mtime() {
    let s = Scratch::new("sess-c");
    write(&s.join("src/f"), b"aaaa");
    set_mtime(&s.join("src/f"), 1_700_000_000);
    let dest = s.join("dest");
    let (mut list, mut recv) = archive();
    run(&[s.join("src")], &dest, &list, &recv);
    write(&s.join("src/f"), b"bbbb");
    set_mtime(&s.join("src/f"), 1_700_000_000);
    let (_, lines) = run(&[s.join("src")], &dest, &list, &recv);
    assert!(lines.is_empty(), "quick check sees no change: {lines:?}");
    assert_eq!(fs::read(dest.join("src/f")).unwrap(), b"aaaa");
    // rsync -c says the same thing about the same situation.
    let theirs = s.join("theirs");
    let copy: Vec<OsString> = vec!["-a".into(), dest.join("src").into(), format!("{}/", theirs.display()).into()];
    rsync(&copy.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let args: Vec<OsString> =
        vec!["-aci".into(), s.join("src").into(), format!("{}/", theirs.display()).into()];
    let rs = rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    list.checksum = true;
    recv.checksum = true;
    let (_, lines) = run(&[s.join("src")], &dest, &list, &recv);
    assert_eq!(lines, rs.lines().map(String::from).collect::<Vec<_>>());
    assert_eq!(lines, [">fc........ src/f"]);
    assert_eq!(fs::read(dest.join("src/f")).unwrap(), b"bbbb");
}

#[test]
fn delete_removes_extras_but_keeps_excluded_files_as_rsync_does() {
    let s = Scratch::new("sess-del");
    tree(&s, false);
    let (ours, theirs) = (s.join("ours"), s.join("theirs"));
    for d in [&ours, &theirs] {
        write(&d.join("src/extra"), b"x");
        write(&d.join("src/olddir/f"), b"x");
        write(&d.join("src/.ssl/keep.pem"), b"dest's own key");
        write(&d.join("outside-of-src"), b"stays");
        // What the sync leaves alone keeps its times: the same in both
        // trees, whichever second each was written in.
        for kept in ["src/.ssl/keep.pem", "src/.ssl", "outside-of-src"] {
            set_mtime(&d.join(kept), 1_700_000_000);
        }
    }
    let (list, mut recv) = archive();
    recv.filter.exclude(".ssl").unwrap();
    recv.delete = true;
    let (report, lines) = run(&[s.join("src")], &ours, &list, &recv);
    let args: Vec<OsString> = vec![
        "-a".into(), "--delete".into(), "--exclude".into(), ".ssl".into(), s.join("src").into(),
        format!("{}/", theirs.display()).into(),
    ];
    rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert_eq!(snapshot(&ours), snapshot(&theirs));
    assert_eq!(fs::read(ours.join("src/.ssl/keep.pem")).unwrap(), b"dest's own key");
    assert!(!ours.join("src/extra").exists() && !ours.join("src/olddir").exists());
    assert_eq!(report.receive.deleted, 3);
    assert!(lines.contains(&"*deleting   src/olddir/".to_string()), "{lines:?}");
}

#[test]
fn dry_run_changes_nothing_and_itemizes_like_the_real_run() {
    let s = Scratch::new("sess-n");
    tree(&s, false);
    let dest = s.join("dest");
    write(&dest.join("src/extra"), b"x");
    let (list, mut recv) = archive();
    recv.delete = true;
    let before = snapshot(&dest);
    recv.dry_run = true;
    let (_, dry) = run(&[s.join("src")], &dest, &list, &recv);
    assert_eq!(snapshot(&dest), before);
    recv.dry_run = false;
    let (_, real) = run(&[s.join("src")], &dest, &list, &recv);
    assert_eq!(sorted(dry), sorted(real));
}

#[test]
fn a_symlink_in_dest_is_replaced_never_written_through() {
    let s = Scratch::new("sess-link");
    write(&s.join("src/a/secret"), b"new");
    write(&s.join("elsewhere/secret"), b"must stay");
    let dest = s.join("dest");
    fs::create_dir_all(dest.join("src")).unwrap();
    symlink(s.join("elsewhere"), dest.join("src/a")).unwrap();
    let (list, recv) = archive();
    run(&[s.join("src")], &dest, &list, &recv);
    assert_eq!(fs::read(s.join("elsewhere/secret")).unwrap(), b"must stay");
    assert!(fs::symlink_metadata(dest.join("src/a")).unwrap().is_dir());
    assert_eq!(fs::read(dest.join("src/a/secret")).unwrap(), b"new");
}

#[test]
fn leftover_temp_files_of_an_interrupted_run_are_removed() {
    let s = Scratch::new("sess-tmp");
    write(&s.join("src/f"), b"1");
    let dest = s.join("dest");
    let (list, recv) = archive();
    run(&[s.join("src")], &dest, &list, &recv);
    let leftover = dest.join("src").join(OsStr::from_bytes(&[TMP_PREFIX, b"999.0"].concat()));
    let top = dest.join(OsStr::from_bytes(&[TMP_PREFIX, b"999.1"].concat()));
    write(&leftover, b"half");
    write(&top, b"half");
    run(&[s.join("src")], &dest, &list, &recv);
    assert!(!leftover.exists() && !top.exists());
}

// ---- a hostile sender ----

fn entry(path: &[u8], kind: FileKind, size: u64) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        size,
        uid: 0,
        gid: 0,
        user: Vec::new(),
        group: Vec::new(),
        target: if kind == FileKind::Symlink { b"x".to_vec() } else { Vec::new() },
        rdev: 0,
    }
}

type Answer = fn(&mut Reader<std::io::PipeReader>, &mut Writer<std::io::PipeWriter>) -> Result<()>;

/// Runs the real receiver against a scripted sender.
fn hostile(dest: &Path, entries: Vec<Entry>, answer: Answer) -> Result<ReceiveStats> {
    hostile_with(dest, entries, answer, archive().1)
}

fn hostile_with(dest: &Path, entries: Vec<Entry>, answer: Answer, recv: ReceiveOptions) -> Result<ReceiveStats> {
    let (from_sender, to_receiver) = std::io::pipe().unwrap();
    let (from_receiver, to_sender) = std::io::pipe().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || -> Result<()> {
            let mut w = Writer::new(to_receiver);
            let mut r = Reader::new(from_receiver);
            w.send(&Msg::Hello { version: VERSION })?;
            w.flush()?;
            r.read()?;
            w.send_list(&entries)?;
            w.send(&Msg::EndOfList)?;
            w.flush()?;
            answer(&mut r, &mut w)
        });
        receive(dest, &recv, from_sender, to_sender, &mut |_| {}, &Silent)
    })
}

/// Answers every request with the data `abc` and whatever the lie is.
fn serve(r: &mut Reader<std::io::PipeReader>, w: &mut Writer<std::io::PipeWriter>, lie: &dyn Fn(u32) -> Vec<Msg>) -> Result<()> {
    loop {
        match r.read()? {
            Msg::Request { index, .. } => {
                for m in lie(index) {
                    w.send(&m)?;
                }
            }
            Msg::EndOfPhase => w.send(&Msg::EndOfPhase)?,
            _ => return Ok(()),
        }
        w.flush()?;
    }
}

/// The strong hash the protocol's `FileEnd` carries (BLAKE3).
fn strong(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

fn hostile_dest(s: &Scratch) -> PathBuf {
    let dest = s.join("dest");
    write(&dest.join("d/f"), b"old");
    write(&dest.join("keep"), b"keep");
    dest
}

fn assert_refused(result: Result<ReceiveStats>, naming: &str) {
    let err = result.expect_err("the receiver must refuse");
    assert!(format!("{err}").contains(naming), "{err} should name {naming}");
}

#[test]
fn hostile_list_entries_are_refused_before_anything_changes() {
    let cases: Vec<(Vec<Entry>, &str)> = vec![
        (vec![entry(b"../escape", FileKind::File, 3)], "../escape"),
        (vec![entry(b"d", FileKind::Dir, 0), entry(b"d/../../x", FileKind::File, 3)], "d/../../x"),
        (vec![entry(b"/etc/passwd", FileKind::File, 3)], "/etc/passwd"),
        (vec![entry(b"d/f", FileKind::File, 3)], "its directory is not listed"),
        (vec![entry(b"a\0b", FileKind::File, 3)], "NUL"),
        (vec![entry(b"x", FileKind::File, 1), entry(b"x", FileKind::File, 1)], "listed twice"),
        // (A size on a non-file cannot be said any more: the list carries
        // sizes for regular files only.)
        (vec![Entry { target: Vec::new(), ..entry(b"l", FileKind::Symlink, 0) }], "empty link target"),
        (vec![entry(b"new", FileKind::File, 1), entry(b".", FileKind::Dir, 0)], "`.` may only be"),
    ];
    for (entries, naming) in cases {
        let s = Scratch::new("hostile-list");
        let dest = hostile_dest(&s);
        let before = snapshot(&dest);
        assert_refused(hostile(&dest, entries, |_, _| Ok(())), naming);
        assert_eq!(snapshot(&dest), before, "{naming}");
    }
}

#[test]
fn a_list_over_its_memory_budget_is_refused() {
    // Every byte counts, owner and group names too: 2,000 entries with
    // 255-byte names of each kind exceed a 1 MiB budget.
    let s = Scratch::new("hostile-budget");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    let entries: Vec<Entry> = (0..2_000)
        .map(|i| {
            let mut e = entry(format!("f{i}").as_bytes(), FileKind::File, 0);
            e.user = vec![b'u'; 255];
            e.group = vec![b'g'; 255];
            e
        })
        .collect();
    let recv = ReceiveOptions { max_list_bytes: 1 << 20, ..archive().1 };
    assert_refused(hostile_with(&dest, entries, |_, _| Ok(()), recv), "bytes of list");
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn a_sender_lying_about_size_is_refused_and_the_file_stays_old() {
    let s = Scratch::new("hostile-size");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
    let result = hostile(&dest, entries, |r, w| {
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(vec![b'z'; 100]), Msg::FileEnd { index, hash: strong(&[b'z'; 100]) }])
    });
    assert_refused(result, "more than the 3 bytes");
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"old");
    // d's attributes were not finished, but no file changed and no temp file is left.
    let after = snapshot(&dest);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    assert_eq!(after[b"d/f".as_slice()], before[b"d/f".as_slice()]);
}

/// `-c` against a scripted sender: the receiver asks sums for `d/f` only
/// (DEST has it at the same size), and `sums` answers.
fn hostile_sums(dest: &Path, sums: Answer) -> Result<ReceiveStats> {
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
    let recv = ReceiveOptions { checksum: true, ..archive().1 };
    hostile_with(dest, entries, sums, recv)
}

/// Reads the receiver's `WantSums`, which must ask for `d/f` alone.
fn want_sums(r: &mut Reader<std::io::PipeReader>) -> Result<()> {
    match r.read()? {
        Msg::WantSums(indices) if indices == [1] => Ok(()),
        other => Err(crate::error::Error::problem(format!("expected sums asked for [1], got {other:?}"))),
    }
}

#[test]
fn sums_that_do_not_answer_the_question_are_refused() {
    let s = Scratch::new("hostile-sums");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::Sums(vec![None, None]))?;
        w.flush()
    });
    assert_refused(result, "answered 2 sums when asked for 1 (d/f first)");
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::FileStart { index: 1 })?;
        w.flush()
    });
    assert_refused(result, "expected sums, got file start");
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn sums_unasked_twice_or_asked_for_by_the_sender_are_refused() {
    let s = Scratch::new("hostile-sums-order");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    // A second answer to one question.
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::Sums(vec![None]))?;
        w.send(&Msg::Sums(vec![None]))?;
        w.flush()?;
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(b"new".to_vec()), Msg::FileEnd { index, hash: strong(b"new") }])
    });
    assert_refused(result, "got sums");
    // The sender asking the receiver for sums.
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::WantSums(vec![1]))?;
        w.flush()
    });
    assert_refused(result, "got a request for sums");
    // Sums nobody asked for: DEST has no file of that size, so no question.
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 4)];
    let recv = ReceiveOptions { checksum: true, ..archive().1 };
    let result = hostile_with(&dest, entries, |r, w| {
        w.send(&Msg::Sums(vec![None]))?;
        w.flush()?;
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(b"news".to_vec()), Msg::FileEnd { index, hash: strong(b"news") }])
    }, recv);
    assert_refused(result, "got sums");
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn under_checksum_data_that_does_not_match_its_trailer_hash_is_refused() {
    let s = Scratch::new("hostile-sums-hash");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    // The sum says the file differs; the data then lies about its hash.
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::Sums(vec![Some([7; super::list::LIST_SUM])]))?;
        w.flush()?;
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(b"new".to_vec()), Msg::FileEnd { index, hash: [0; 32] }])
    });
    assert_refused(result, "does not match the sender's BLAKE3 hash, twice");
    assert_eq!(snapshot(&dest)[b"d/f".as_slice()], before[b"d/f".as_slice()]);
    // A sum that claims DEST's content asks for nothing: the file stays.
    let result = hostile_sums(&dest, |r, w| {
        want_sums(r)?;
        w.send(&Msg::Sums(vec![Some(blake3::hash(b"old").as_bytes()[..16].try_into().unwrap())]))?;
        w.flush()?;
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::FileError { index, message: "asked".into() }])
    });
    let stats = result.unwrap();
    assert_eq!((stats.transferred, stats.errors.len()), (0, 0), "{:?}", stats.errors);
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"old");
}

#[test]
fn a_bad_hash_is_retried_whole_then_refused() {
    let s = Scratch::new("hostile-hash");
    let dest = hostile_dest(&s);
    let before = snapshot(&dest);
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
    let result = hostile(&dest, entries, |r, w| {
        serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(b"new".to_vec()), Msg::FileEnd { index, hash: [0; 32] }])
    });
    assert_refused(result, "does not match the sender's BLAKE3 hash, twice");
    assert_eq!(snapshot(&dest)[b"d/f".as_slice()], before[b"d/f".as_slice()]);
    assert!(!fs::read_dir(dest.join("d")).unwrap().any(|e| e.unwrap().file_name().as_bytes().starts_with(TMP_PREFIX)));
}

#[test]
fn a_short_file_a_delta_without_basis_and_a_wrong_file_are_refused() {
    let scripts: Vec<(Answer, &str)> = vec![
        (
            |r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Literal(b"n".to_vec()), Msg::FileEnd { index, hash: strong(b"n") }]),
            "sent 1 bytes for a file of 3",
        ),
        (
            |r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Delta { len: 3, delta: vec![0; 4] }]),
            "delta for a file it was asked for whole",
        ),
        (|r, w| serve(r, w, &|_| vec![Msg::FileStart { index: 0 }]), "not asked for next"),
        // A remote sender cannot make the receiver copy a file of its own choosing.
        (
            |r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::LocalCopy, Msg::FileEnd { index, hash: strong(b"new") }]),
            "only a local session may",
        ),
        (|r, w| serve(r, w, &|_| vec![Msg::EndOfList]), "protocol violation"),
    ];
    for (script, naming) in scripts {
        let s = Scratch::new("hostile-misc");
        let dest = hostile_dest(&s);
        let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/new", FileKind::File, 3)];
        assert_refused(hostile(&dest, entries, script), naming);
        assert!(!dest.join("d/new").exists(), "{naming}");
        assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"old");
    }
}

#[test]
fn a_chunk_copy_out_of_the_basis_or_without_one_is_refused() {
    // d/f exists (3 bytes, other mtime): it is asked for with a basis of one chunk.
    let scripts: Vec<(Answer, &str)> = vec![
        (|r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Copy { chunk: 1, count: 1 }]), "of a basis of 1 chunks"),
        (|r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Copy { chunk: 0, count: u32::MAX }]), "of a basis of 1 chunks"),
        (|r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Copy { chunk: u32::MAX, count: u32::MAX }]), "of a basis of 1 chunks"),
    ];
    for (script, naming) in scripts {
        let s = Scratch::new("hostile-chunk");
        let dest = hostile_dest(&s);
        let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
        assert_refused(hostile(&dest, entries, script), naming);
        assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"old", "{naming}");
    }
    // A copy for a new file (asked for whole: there is no basis).
    let s = Scratch::new("hostile-chunk-new");
    let dest = hostile_dest(&s);
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/new", FileKind::File, 3)];
    let script: Answer = |r, w| serve(r, w, &|index| vec![Msg::FileStart { index }, Msg::Copy { chunk: 0, count: 1 }]);
    assert_refused(hostile(&dest, entries, script), "chunk copy for a file it was asked for whole");
    assert!(!dest.join("d/new").exists());
    // A copy of the right chunk that does not make the sender's file: the
    // whole-file check catches it, and the redo phase asks for it whole.
    let s = Scratch::new("hostile-chunk-hash");
    let dest = hostile_dest(&s);
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
    let script: Answer = |r, w| loop {
        match r.read()? {
            Msg::Request { index, chunks, .. } if !chunks.is_empty() => {
                for m in [Msg::FileStart { index }, Msg::Copy { chunk: 0, count: 1 }, Msg::FileEnd { index, hash: strong(b"new") }] {
                    w.send(&m)?;
                }
            }
            Msg::Request { index, .. } => {
                for m in [Msg::FileStart { index }, Msg::Literal(b"new".to_vec()), Msg::FileEnd { index, hash: strong(b"new") }] {
                    w.send(&m)?;
                }
            }
            Msg::EndOfPhase => w.send(&Msg::EndOfPhase)?,
            _ => return Ok(()),
        }
        w.flush()?;
    };
    let stats = hostile(&dest, entries, script).unwrap();
    assert_eq!((stats.redone, stats.copied_bytes), (1, 3));
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"new");
}

// ---- a hostile receiver ----

/// Runs the real sender for `src` against a receiver that asks `request`.
fn against_sender(src: &Path, request: Msg) -> Result<super::send::SendStats> {
    let (list_opts, _) = archive();
    let list = super::list::build(&[src.to_path_buf()], &list_opts, &super::filter::Filter::new()).unwrap();
    let (from_sender, to_receiver) = std::io::pipe().unwrap();
    let (from_receiver, to_sender) = std::io::pipe().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || -> Result<()> {
            let mut r = Reader::new(from_sender);
            let mut w = Writer::new(to_sender);
            w.send(&Msg::Hello { version: VERSION })?;
            w.flush()?;
            while !matches!(r.read()?, Msg::EndOfList) {}
            w.send(&request)?;
            w.flush()?;
            while !matches!(r.read()?, Msg::Error { .. }) {}
            Ok(())
        });
        super::send::send(&list, from_receiver, to_receiver, &Silent)
    })
}

/// What the real sender answers a scripted receiver that asks, in the
/// first phase, for each of `wanted` whole (`WantSums` first when given),
/// up to the sender's closing `EndOfPhase`. `change` runs once the list
/// is sent (a source that changes after it was listed).
fn sender_answers(src: &Path, sums: Option<Vec<u32>>, wanted: &[u32], change: &(dyn Fn() + Sync)) -> (Result<super::send::SendStats>, Vec<Msg>) {
    let (list_opts, _) = archive();
    let list = super::list::build(&[src.to_path_buf()], &list_opts, &super::filter::Filter::new()).unwrap();
    let (from_sender, to_receiver) = std::io::pipe().unwrap();
    let (from_receiver, to_sender) = std::io::pipe().unwrap();
    std::thread::scope(|scope| {
        let script = scope.spawn(move || -> Result<Vec<Msg>> {
            let mut r = Reader::new(from_sender);
            let mut w = Writer::new(to_sender);
            w.send(&Msg::Hello { version: VERSION })?;
            w.flush()?;
            while !matches!(r.read()?, Msg::EndOfList) {}
            change();
            let mut got = Vec::new();
            if let Some(indices) = sums {
                w.send(&Msg::WantSums(indices))?;
                w.flush()?;
                got.push(r.read()?);
            }
            for &index in wanted {
                w.send(&Msg::Request { index, signature: Vec::new(), chunks: Vec::new() })?;
            }
            w.send(&Msg::EndOfPhase)?;
            w.flush()?;
            loop {
                match r.read()? {
                    Msg::EndOfPhase => break,
                    m => got.push(m),
                }
            }
            w.send(&Msg::EndOfPhase)?;
            w.flush()?;
            r.read()?;
            w.send(&Msg::Done)?;
            w.flush()?;
            Ok(got)
        });
        let sent = super::send::send(&list, from_receiver, to_receiver, &Silent);
        (sent, script.join().unwrap().unwrap())
    })
}

#[test]
fn a_file_that_grew_since_it_was_listed_is_not_sent_as_its_first_bytes() {
    // The receiver takes exactly the listed size: a prefix of a file that
    // grew (a log, a keyring being written) must not land as the file.
    let s = Scratch::new("grown");
    write(&s.join("src/f"), b"abc");
    let grow = || fs::OpenOptions::new().append(true).open(s.join("src/f")).unwrap().write_all(b"def").unwrap();
    for sums in [None, Some(vec![1])] {
        let (sent, got) = sender_answers(&s.join("src"), sums.clone(), &[1], &grow);
        let sent = sent.unwrap();
        assert!(
            matches!(got.last(), Some(Msg::FileError { index: 1, message }) if message.contains("changed size")),
            "with sums {sums:?}: {got:?}"
        );
        assert!(!got.iter().any(|m| matches!(m, Msg::FileEnd { .. })), "{got:?}");
        assert_eq!(sent.files_sent, 0);
        write(&s.join("src/f"), b"abc");
    }
}

#[test]
fn a_file_replaced_by_a_fifo_after_listing_is_reported_not_waited_on() {
    // Opening a FIFO for reading waits for a writer: the sender would
    // hang for ever on its sum or its data.
    let s = Scratch::new("fifo-swap");
    write(&s.join("src/f"), b"abc");
    let swap = || {
        fs::remove_file(s.join("src/f")).unwrap();
        let path = std::ffi::CString::new(s.join("src/f").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    };
    let (sent, got) = sender_answers(&s.join("src"), Some(vec![1]), &[1], &swap);
    assert_eq!(got.first(), Some(&Msg::Sums(vec![None])), "{got:?}");
    assert!(matches!(got.last(), Some(Msg::FileError { index: 1, message }) if message.contains("regular file")), "{got:?}");
    assert_eq!(sent.unwrap().files_sent, 0);
}

#[test]
fn a_receiver_may_only_ask_for_files_of_the_list_with_sane_signatures() {
    let s = Scratch::new("hostile-recv");
    write(&s.join("src/f"), &noise(5000, 1));
    let err = against_sender(&s.join("src"), Msg::Request { index: 0, signature: vec![], chunks: vec![] }).unwrap_err();
    assert!(format!("{err}").contains("no file of the list"), "{err}");
    let err = against_sender(&s.join("src"), Msg::Request { index: 99, signature: vec![], chunks: vec![] }).unwrap_err();
    assert!(format!("{err}").contains("no file of the list"), "{err}");
    // Sums only of files of the list (0 is the directory).
    let err = against_sender(&s.join("src"), Msg::WantSums(vec![0])).unwrap_err();
    assert!(format!("{err}").contains("file number 0, which is no file of the list"), "{err}");
    let err = against_sender(&s.join("src"), Msg::WantSums(vec![1, 99])).unwrap_err();
    assert!(format!("{err}").contains("file number 99"), "{err}");
    // A block size of 0 would make fast_rsync's diff loop for ever.
    let mut sig = fast_rsync::Signature::calculate(b"abc", fast_rsync::SignatureOptions { block_size: 8, crypto_hash_size: 8 })
        .into_serialized();
    sig[4..8].copy_from_slice(&0u32.to_be_bytes());
    let err = against_sender(&s.join("src"), Msg::Request { index: 1, signature: sig, chunks: vec![] }).unwrap_err();
    assert!(format!("{err}").contains("bad block signature"), "{err}");
}

#[test]
fn dry_run_into_a_missing_dest_creates_nothing() {
    let s = Scratch::new("sess-n-missing");
    tree(&s, false);
    let (list, mut recv) = archive();
    recv.dry_run = true;
    let (_, lines) = run(&[s.join("src")], &s.join("dest"), &list, &recv);
    assert!(!s.join("dest").exists());
    assert!(lines.contains(&"cd+++++++++ src/".to_string()) && lines.contains(&">f+++++++++ src/keytrustee.conf".to_string()), "{lines:?}");
}

#[test]
fn an_interrupted_transfer_leaves_no_temp_file_and_a_rerun_completes() {
    let s = Scratch::new("sess-cut");
    let dest = hostile_dest(&s);
    let entries = vec![entry(b"d", FileKind::Dir, 0), entry(b"d/f", FileKind::File, 3)];
    // The sender dies after one byte of the file.
    let result = hostile(&dest, entries, |r, w| {
        r.read()?;
        w.send(&Msg::FileStart { index: 1 })?;
        w.send(&Msg::Literal(b"n".to_vec()))?;
        w.flush()
    });
    let err = result.unwrap_err();
    assert_eq!(err.kind(), crate::error::Kind::Environment, "{err}");
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"old");
    assert!(!fs::read_dir(dest.join("d")).unwrap().any(|e| e.unwrap().file_name().as_bytes().starts_with(TMP_PREFIX)));
    write(&s.join("src/d/f"), b"new");
    // Same size as the old file: a different mtime is what the quick check sees.
    set_mtime(&s.join("src/d/f"), 1_650_000_000);
    let (list, recv) = archive();
    run(&[PathBuf::from(format!("{}/", s.join("src").display()))], &dest, &list, &recv);
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"new");
}


/// Sets a directory's or file's mtime without following links.
fn set_dir_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [libc::timespec { tv_sec: secs, tv_nsec: 0 }, libc::timespec { tv_sec: secs, tv_nsec: 0 }];
    // SAFETY: valid path and two timespecs.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }, 0);
}

#[test]
fn itemized_changes_match_rsync_with_and_without_checksum() {
    for checksum in [false, true] {
        let s = Scratch::new(if checksum { "sess-items-c" } else { "sess-items" });
        // The old tree, copied by rsync into both DESTs.
        write(&s.join("old/f"), b"b");
        fs::set_permissions(s.join("old/f"), fs::Permissions::from_mode(0o600)).unwrap();
        write(&s.join("old/g"), b"same");
        write(&s.join("old/h"), b"abcd");
        write(&s.join("old/d/inner"), b"i");
        write(&s.join("old/extra"), b"x");
        symlink("b", s.join("old/l")).unwrap();
        // The new tree.
        write(&s.join("src/f"), b"aaaa");
        write(&s.join("src/g"), b"same");
        write(&s.join("src/h"), b"wxyz");
        write(&s.join("src/d/inner"), b"i");
        write(&s.join("src/n"), b"new");
        symlink("a", s.join("src/l")).unwrap();
        for (tree, t) in [("old", 1_500_000_000), ("src", 1_500_000_000)] {
            for f in ["g", "h", "d/inner"] {
                set_mtime(&s.join(tree).join(f), t);
            }
        }
        set_mtime(&s.join("old/f"), 1_500_000_000);
        set_mtime(&s.join("src/f"), 1_600_000_000);
        set_dir_mtime(&s.join("old/d"), 1_500_000_000);
        set_dir_mtime(&s.join("src/d"), 1_600_000_000);
        set_dir_mtime(&s.join("old/l"), 1_500_000_000);
        set_dir_mtime(&s.join("src/l"), 1_500_000_000);
        set_dir_mtime(&s.join("old"), 1_500_000_000);
        set_dir_mtime(&s.join("src"), 1_500_000_000);
        let (ours, theirs) = (s.join("ours"), s.join("theirs"));
        for d in [&ours, &theirs] {
            let args: Vec<OsString> = vec!["-a".into(), format!("{}/", s.join("old").display()).into(), d.into()];
            rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
        }
        let (mut list, mut recv) = archive();
        list.checksum = checksum;
        recv.checksum = checksum;
        recv.delete = true;
        let src = PathBuf::from(format!("{}/", s.join("src").display()));
        let (_, lines) = run(std::slice::from_ref(&src), &ours, &list, &recv);
        let flags = if checksum { "-aci" } else { "-ai" };
        let args: Vec<OsString> = vec![flags.into(), "--delete".into(), src.into(), theirs.clone().into()];
        let out = rsync(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
        assert!(lines.len() >= 5, "{lines:?}");
        assert_eq!(sorted(lines), sorted(out.lines().map(String::from).collect()), "checksum {checksum}");
        assert_eq!(snapshot(&ours), snapshot(&theirs));
    }
}

// ---- progress ----

/// What a session reported: the bytes after each report, the last count.
#[derive(Default)]
struct Recorder {
    bytes: std::cell::RefCell<Vec<u64>>,
    files: std::cell::Cell<u64>,
}

impl Progress for Recorder {
    fn step(&self, message: &str) {
        panic!("a sync reports no steps: {message}");
    }
    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        assert_eq!((what, total), (super::meter::SYNCING, None));
        self.bytes.borrow_mut().push(done);
    }
    fn count(&self, what: &str, done: u64) {
        assert_eq!(what, "files");
        assert_eq!(done, self.files.get() + 1, "files are counted one by one");
        self.files.set(done);
    }
}

impl Recorder {
    /// Files and bytes at the end; the bytes never went down and were
    /// reported more than once on the way (not only at the end).
    fn totals(&self) -> (u64, u64) {
        let bytes = self.bytes.borrow();
        assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
        let last = bytes.last().copied().unwrap_or(0);
        assert!(bytes.iter().filter(|b| **b > 0 && **b < last).count() >= 2, "{bytes:?}");
        (self.files.get(), last)
    }
}

/// Three files, one of several segments: 9 MiB + 1000 bytes + empty.
fn progress_source(s: &Scratch) -> PathBuf {
    write(&s.join("src/big"), &noise(9 << 20, 3));
    write(&s.join("src/d/small"), &noise(1000, 4));
    write(&s.join("src/d/empty"), b"");
    s.join("src/")
}

#[test]
fn a_local_session_reports_files_and_bytes_as_they_land() {
    for (name, whole) in [("progress-local", None), ("progress-delta", Some(false))] {
        let s = Scratch::new(name);
        let src = progress_source(&s);
        let (list, mut recv) = archive();
        recv.whole_file = whole;
        let seen = Recorder::default();
        sync_local(std::slice::from_ref(&src), &s.join("dest"), &list, &recv, &mut |_| {}, &seen).unwrap();
        assert_eq!(seen.totals(), (3, (9 << 20) + 1000), "{name}");
        // Nothing to do, nothing reported.
        let again = Recorder::default();
        sync_local(&[src], &s.join("dest"), &list, &recv, &mut |_| {}, &again).unwrap();
        assert!(again.bytes.borrow().is_empty() && again.files.get() == 0, "{name}");
    }
}

#[test]
fn a_sender_reports_files_and_bytes_as_it_sends() {
    let s = Scratch::new("progress-send");
    let src = progress_source(&s);
    let (list_opts, recv) = archive();
    let list = super::list::build(&[src], &list_opts, &super::filter::Filter::new()).unwrap();
    let (from_sender, to_receiver) = std::io::pipe().unwrap();
    let (from_receiver, to_sender) = std::io::pipe().unwrap();
    let seen = Recorder::default();
    let dest = s.join("dest");
    std::thread::scope(|scope| {
        let received = scope.spawn(|| receive(&dest, &recv, from_sender, to_sender, &mut |_| {}, &Silent));
        super::send::send(&list, from_receiver, to_receiver, &seen).unwrap();
        received.join().unwrap().unwrap();
    });
    assert_eq!(seen.totals(), (3, (9 << 20) + 1000));
    assert_eq!(fs::read(dest.join("big")).unwrap(), fs::read(s.join("src/big")).unwrap());
}

/// More files than one landing batch (256): batches are flushed on the
/// landing thread while the next is received, and every one is renamed
/// into place, itemized once, with no temp file left; locally (kernel
/// copies) and over the pipe protocol.
#[test]
fn files_of_many_batches_all_land() {
    let s = Scratch::new("sess-batches");
    for i in 0..700u64 {
        write(&s.join(&format!("src/d{}/f{i:04}", i % 3)), &noise(1 + (i as usize * 37) % 3000, i));
    }
    for whole in [true, false] {
        let dest = s.join(if whole { "local" } else { "piped" });
        let (list, mut recv) = archive();
        recv.whole_file = Some(whole);
        let (report, lines) = run(&[s.join("src/")], &dest, &list, &recv);
        assert!(report.receive.errors.is_empty(), "{:?}", report.receive.errors);
        assert_eq!(report.receive.transferred, 700);
        assert_eq!(lines.iter().filter(|l| l.starts_with(">f")).count(), 700, "{lines:?}");
        assert_eq!(snapshot(&dest), snapshot(&s.join("src")));
        for d in 0..3 {
            let dir = dest.join(format!("d{d}"));
            assert!(!fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().as_bytes().starts_with(TMP_PREFIX)));
        }
    }
}
