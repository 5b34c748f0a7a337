//! `kt ha sync`: the real kt binary against the real rsync, locally and
//! through a remote-shell stand-in that behaves like ssh (drops its
//! options and the host, hands the rest to `sh -c` here), both ways.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{kt, run, Run, TestDir, KT};

pub const SSH: &str = "#!/bin/sh\n\
    # ssh stand-in: skips options (-l USER takes a value) and the host,\n\
    # runs the remote command here, as ssh hands it to the remote shell\n\
    while [ $# -gt 0 ]; do case \"$1\" in -l|-p) shift 2;; -*) shift;; *) break;; esac; done\n\
    shift\n\
    exec sh -c \"$*\"\n";

pub fn script(dir: &TestDir, name: &str, body: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs the reference rsync; fails (never skips) when it is missing.
fn rsync(args: &[&OsStr]) -> Run {
    let out = Command::new("rsync").args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("rsync is the reference of these tests and must be installed ({e}): apt-get install -y rsync")
    });
    Run::from(out)
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A confdir-like tree: 0700 directories, 0600 keys, a symlink, an empty
/// directory, awkward names, a file large enough to be sent in blocks.
fn confdir(root: &Path) -> PathBuf {
    let c = root.join(".keytrustee");
    write(&c.join("keytrustee.conf"), b"{\"HOSTNAME\": \"kts01\"}\n", 0o600);
    write(&c.join("secring.gpg"), &[7u8; 3000], 0o600);
    write(&c.join(".ssl/ssl-cert-keytrustee-pk.pem"), b"-----BEGIN PRIVATE KEY-----\n", 0o600);
    write(&c.join("logs/it's \"quoted\" café.log"), b"spaces, quotes, non-ASCII\n", 0o644);
    write(&c.join(OsStr::from_bytes(b"logs/raw\xe9")), b"not UTF-8\n", 0o640);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write(&c.join("db/base.dump"), &big, 0o644);
    fs::create_dir_all(c.join("empty")).unwrap();
    symlink("keytrustee.conf", c.join("current.conf")).unwrap();
    for d in [".ssl", "logs", "db", "empty", ""] {
        fs::set_permissions(c.join(d), fs::Permissions::from_mode(0o700)).unwrap();
    }
    // Times in the past, so that a copy that forgets them is caught.
    Command::new("find").arg(&c).args(["-exec", "touch", "-h", "-d", "2024-01-02 03:04:05", "{}", "+"]).status().unwrap();
    c
}

/// Every entry under `root`: kind, mode, mtime (whole seconds), size, link target.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, String>) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let r = [rel, b"/", name.as_bytes()].concat();
            let m = fs::symlink_metadata(&path).unwrap();
            let target = fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
            let mtime = if m.file_type().is_symlink() { 0 } else { m.mtime() };
            let size = if m.is_dir() { 0 } else { m.size() };
            out.insert(r.clone(), format!("{:o} {mtime} {size} {target} {}:{}", m.mode(), m.uid(), m.gid()));
            if m.is_dir() {
                walk(&path, &r, out);
            }
        }
    }
    walk(root, b"", &mut out);
    out
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff").arg("-r").arg("--no-dereference").arg(a).arg(b).output().unwrap();
    assert!(out.status.success(), "diff -r {} {}:\n{}", a.display(), b.display(), String::from_utf8_lossy(&out.stdout));
}

#[track_caller]
fn same_tree(ours: &Path, reference: &Path) {
    diff_r(ours, reference);
    let (a, b) = (snapshot(ours), snapshot(reference));
    for (k, v) in &b {
        assert_eq!(a.get(k), Some(v), "{} differs from rsync's", String::from_utf8_lossy(k));
    }
    assert_eq!(a.len(), b.len(), "kt's tree has entries rsync's has not");
}

#[test]
fn the_documented_command_line_gives_rsyncs_tree_both_ways() {
    let d = TestDir::new("sync-doc");
    let ssh = script(&d, "ssh", SSH);
    let src = confdir(&d.join("src"));
    for dir in ["ref", "push", "pull", "local"] {
        fs::create_dir(d.join(dir)).unwrap();
    }
    let dot = |dir: &str| format!("{}/.", d.join(dir).display());
    rsync(&["-zcav".as_ref(), "--exclude".as_ref(), ".ssl".as_ref(), src.as_os_str(), dot("ref").as_ref()]);
    assert!(d.join("ref/.keytrustee/keytrustee.conf").exists() && !d.join("ref/.keytrustee/.ssl").exists());

    // Push: the documented line, DEST on "another host".
    let dest = format!("root@kts02.example.com:{}", dot("push"));
    let r = run(kt().args(["ha", "sync", "-zcav", "--exclude", ".ssl"]).arg(&src).arg(&dest).args(["-e", &ssh, "--remote-kt", KT]))
        .expect(0);
    assert!(r.stdout.contains(".keytrustee/db/base.dump\n"), "{}", r.stdout);
    same_tree(&d.join("push"), &d.join("ref"));

    // Pull: SRC on "another host".
    let from = format!("kts01:{}", src.display());
    run(kt().args(["ha", "sync", "-zcav", "--exclude=.ssl", "--rsh", &ssh, "--remote-kt", KT]).arg(&from).arg(dot("pull")))
        .expect(0);
    same_tree(&d.join("pull"), &d.join("ref"));

    // And locally.
    run(kt().args(["ha", "sync", "-zcav", "--exclude", ".ssl"]).arg(&src).arg(dot("local"))).expect(0);
    same_tree(&d.join("local"), &d.join("ref"));

    // A re-run has nothing to do; a change that keeps size and mtime is
    // found by -c, pushed, and the tree is rsync's again.
    let r = run(kt().args(["ha", "sync", "-zcai", "--exclude", ".ssl", "-e", &ssh, "--remote-kt", KT]).arg(&src).arg(&dest))
        .expect(0);
    assert_eq!(r.stdout, "", "nothing changed, nothing itemized");
    let conf = src.join("keytrustee.conf");
    let m = fs::metadata(&conf).unwrap();
    fs::write(&conf, b"{\"HOSTNAME\": \"kts09\"}\n").unwrap();
    Command::new("touch").arg("-d").arg(format!("@{}", m.mtime())).arg(&conf).status().unwrap();
    let r = run(kt().args(["ha", "sync", "-zcai", "--exclude", ".ssl", "-e", &ssh, "--remote-kt", KT]).arg(&src).arg(&dest))
        .expect(0);
    assert_eq!(r.stdout, "<fc........ .keytrustee/keytrustee.conf\n");
    rsync(&["-zcav".as_ref(), "--exclude".as_ref(), ".ssl".as_ref(), src.as_os_str(), dot("ref").as_ref()]);
    same_tree(&d.join("push"), &d.join("ref"));
}

#[test]
fn a_dry_run_itemizes_as_rsync_does() {
    let d = TestDir::new("sync-dry");
    let ssh = script(&d, "ssh", SSH);
    let src = confdir(&d.join("src"));
    let dest = d.join("dest");
    fs::create_dir(&dest).unwrap();
    rsync(&["-a".as_ref(), src.as_os_str(), dest.as_os_str()]);
    // Differences of every kind: content, mode, time, a new file, a file
    // only in DEST, a changed link.
    fs::write(dest.join(".keytrustee/secring.gpg"), [8u8; 3000]).unwrap();
    fs::set_permissions(dest.join(".keytrustee/keytrustee.conf"), fs::Permissions::from_mode(0o644)).unwrap();
    Command::new("touch").arg(dest.join(".keytrustee/logs")).status().unwrap();
    fs::remove_file(dest.join(".keytrustee/db/base.dump")).unwrap();
    write(&dest.join(".keytrustee/db/old.dump"), b"old", 0o600);
    fs::remove_file(dest.join(".keytrustee/current.conf")).unwrap();
    symlink("elsewhere", dest.join(".keytrustee/current.conf")).unwrap();
    let before = snapshot(&dest);
    let remote = format!("kts02:{}", dest.display());
    let theirs = rsync(&[
        "-n".as_ref(), "-aci".as_ref(), "--delete".as_ref(), "--exclude".as_ref(), ".ssl".as_ref(),
        "-e".as_ref(), ssh.as_ref(), src.as_os_str(), remote.as_ref(),
    ])
    .expect(0);
    let ours = run(kt().args(["ha", "sync", "-n", "-aci", "--delete", "--exclude", ".ssl", "-e", &ssh, "--remote-kt", KT])
        .arg(&src)
        .arg(&remote))
    .expect(0);
    // rsync lists a directory's files before its subdirectories'
    // contents (incremental recursion), kt depth first: same lines.
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert!(theirs.stdout.lines().count() >= 6, "rsync itemized too little: {}", theirs.stdout);
    assert_eq!(sorted(&ours.stdout), sorted(&theirs.stdout));
    assert_eq!(snapshot(&dest), before, "a dry run changed DEST");
    // The local dry run says the same, with > for the receiving side.
    let local = run(kt().args(["ha", "sync", "-n", "-aci", "--delete", "--exclude", ".ssl"]).arg(&src).arg(&dest)).expect(0);
    assert_eq!(sorted(&local.stdout), sorted(&theirs.stdout.replace("<f", ">f")));
}

#[test]
fn verbose_prints_names_and_rsyncs_totals_and_quiet_prints_nothing() {
    let d = TestDir::new("sync-verbose");
    let src = confdir(&d.join("src"));
    let r = run(kt().args(["ha", "sync", "-a"]).arg(&src).arg(d.join("quiet"))).expect(0);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    let r = run(kt().args(["ha", "sync", "-avn"]).arg(&src).arg(d.join("dry"))).expect(0);
    assert!(!d.join("dry").exists(), "a dry run created DEST");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "sending incremental file list");
    assert!(lines.contains(&".keytrustee/db/base.dump") && lines.contains(&".keytrustee/current.conf -> keytrustee.conf"));
    let n = lines.len();
    assert_eq!(lines[n - 3], "");
    let totals = regex_like(lines[n - 2], "sent # bytes  received # bytes  #.## bytes/sec");
    assert!(totals, "{}", lines[n - 2]);
    assert!(regex_like(lines[n - 1], "total size is #  speedup is #.## (DRY RUN)"), "{}", lines[n - 1]);
    let size: u64 = lines[n - 1].split_whitespace().nth(3).unwrap().replace(',', "").parse().unwrap();
    let theirs = rsync(&["-avn".as_ref(), src.as_os_str(), d.join("dry").as_os_str()]).expect(0);
    let their_size = theirs.stdout.lines().last().unwrap().split_whitespace().nth(3).unwrap().replace(',', "");
    assert_eq!(size.to_string(), their_size, "total size as rsync counts it");
}

/// `pattern` with `#` standing for a number with thousands commas.
fn regex_like(line: &str, pattern: &str) -> bool {
    let mut squashed = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_number && c == ',') {
            if !in_number {
                squashed.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            squashed.push(c);
        }
    }
    squashed == pattern.replace("#.##", "#.#")
}

#[test]
fn a_remote_that_does_not_start_exits_3_quoting_it() {
    let d = TestDir::new("sync-nostart");
    let src = confdir(&d.join("src"));
    let ssh = script(&d, "ssh", "#!/bin/sh\necho 'ssh: connect to host kts02 port 22: Connection refused' >&2\nexit 255\n");
    let r = run(kt().args(["ha", "sync", "-a", "-e", &ssh]).arg(&src).arg("kts02:/var/lib/keytrustee/.")).expect(3);
    assert!(r.stderr.contains("ssh: connect to host kts02 port 22: Connection refused"), "{}", r.stderr);
    assert!(r.stderr.starts_with("kt: error: "), "{}", r.stderr);
    let r = run(kt().args(["ha", "sync", "-a", "-e", "/nonexistent/ssh"]).arg(&src).arg("h:/x")).expect(3);
    assert!(r.stderr.contains("/nonexistent/ssh"), "{}", r.stderr);
}

#[test]
fn a_remote_that_is_not_kt_changes_nothing() {
    let d = TestDir::new("sync-garbage");
    let src = confdir(&d.join("src"));
    let dest = d.join("dest");
    write(&dest.join(".keytrustee/keytrustee.conf"), b"the passive's own\n", 0o600);
    let before = snapshot(&dest);
    // Pull from a "kt" that answers like a shell banner and then garbage.
    for body in [
        "#!/bin/sh\nprintf 'Welcome to kts01\\r\\nLast login: never\\r\\n'\ncat >/dev/null\n",
        "#!/bin/sh\nhead -c 100000 /dev/urandom\n",
        "#!/bin/sh\nexit 0\n",
    ] {
        let ssh = script(&d, "ssh", body);
        let r = run(kt().args(["ha", "sync", "-a", "-e", &ssh]).arg(format!("kts01:{}", src.display())).arg(&dest));
        assert_ne!(r.code, 0, "{body}: {r:?}");
        assert!(r.stderr.starts_with("kt: error: "), "{}", r.stderr);
        assert_eq!(snapshot(&dest), before, "{body}: DEST changed");
    }
    // A remote kt of a wrong path is a failed start.
    let ssh = script(&d, "ssh", SSH);
    let r = run(kt().args(["ha", "sync", "-a", "-e", &ssh, "--remote-kt", "/nonexistent/kt"]).arg(&src).arg(format!("h:{}", dest.display())))
        .expect(3);
    assert!(r.stderr.contains("/nonexistent/kt"), "{}", r.stderr);
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn options_parse_as_rsyncs() {
    let d = TestDir::new("sync-options");
    let src = confdir(&d.join("src"));
    // -r alone: no links, no modes kept (new files get the umask's), times not kept.
    run(kt().args(["ha", "sync", "-r"]).arg(&src).arg(d.join("r"))).expect(0);
    assert!(!d.join("r/.keytrustee/current.conf").exists());
    let m = fs::metadata(d.join("r/.keytrustee/db/base.dump")).unwrap();
    assert_ne!(m.mtime(), fs::metadata(src.join("db/base.dump")).unwrap().mtime());
    // -r -l -p -t individually: links and modes and times.
    run(kt().args(["ha", "sync", "-r", "-l", "-p", "-t", "-g", "-o", "-D"]).arg(&src).arg(d.join("rlpt"))).expect(0);
    let a = rsync(&["-a".as_ref(), src.as_os_str(), d.join("ref").as_os_str()]);
    a.expect(0);
    same_tree(&d.join("rlpt"), &d.join("ref"));
    // --include before --exclude: first match wins.
    run(kt().args(["ha", "sync", "-a", "--include=keytrustee.conf", "--exclude", "*.conf"]).arg(&src).arg(d.join("f"))).expect(0);
    assert!(d.join("f/.keytrustee/keytrustee.conf").exists());
    assert!(!d.join("f/.keytrustee/current.conf").exists());
    // Usage errors exit 2.
    run(kt().args(["ha", "sync", "-a"]).arg(&src)).expect(2);
    run(kt().args(["ha", "sync", "-a", "--exclude", ""]).arg(&src).arg(d.join("x"))).expect(2);
    run(kt().args(["ha", "sync", "-a", "h:/a", "g:/b"])).expect(2);
    // `./a:b` is a local name.
    let odd = d.join("a:b");
    fs::create_dir(&odd).unwrap();
    let r = run(kt().current_dir(&d.path).args(["ha", "sync", "-a", "./a:b", "odd"]));
    r.expect(0);
    assert!(d.join("odd/a:b").is_dir());
}

#[test]
fn compression_shrinks_what_crosses_the_wire() {
    let d = TestDir::new("sync-z");
    let ssh = script(&d, "ssh", SSH);
    write(&d.join("src/text"), "a very compressible line of configuration\n".repeat(20_000).as_bytes(), 0o644);
    let sent = |flags: &str, dest: &str| -> u64 {
        let r = run(kt().args(["ha", "sync", flags, "-e", &ssh, "--remote-kt", KT]).arg(d.join("src")).arg(format!("h:{}", d.join(dest).display())))
            .expect(0);
        let line = r.stdout.lines().find(|l| l.starts_with("sent ")).unwrap().to_string();
        line.split_whitespace().nth(1).unwrap().replace(',', "").parse().unwrap()
    };
    let plain = sent("-av", "plain");
    let zipped = sent("-avz", "zipped");
    assert!(plain > 800_000 && zipped < plain / 20, "plain {plain}, -z {zipped}");
    diff_r(&d.join("plain"), &d.join("zipped"));
}

#[test]
fn a_transfer_killed_half_way_then_run_again_ends_identical() {
    let d = TestDir::new("sync-kill");
    let src = d.join("src");
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    write(&src.join("big"), &data, 0o600);
    write(&src.join("small"), b"small", 0o644);
    let dest = d.join("dest");
    // A remote shell that lets about 10 MB (two segments) through, then
    // stalls (dd, not head: head holds its output in a stdio buffer): the pull is
    // half way through the large file when it is killed.
    let slow = script(
        &d,
        "slow-ssh",
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -*) shift;; *) break;; esac; done\nshift\n\
         sh -c \"$*\" | { dd bs=4096 count=2500 2>/dev/null; sleep 3; cat >/dev/null; }\n",
    );
    let mut child = kt()
        .args(["ha", "sync", "-a", "-e", &slow, "--remote-kt", KT])
        .arg(format!("h:{}/", src.display()))
        .arg(&dest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let temp = loop {
        let found = fs::read_dir(&dest).ok().and_then(|rd| {
            rd.flatten().find(|e| {
                e.file_name().as_bytes().starts_with(b".kt-sync-tmp.") && e.metadata().is_ok_and(|m| m.len() > 1_000_000)
            })
        });
        if let Some(e) = found {
            break e.path();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no partial temp file appeared");
        assert!(child.try_wait().unwrap().is_none(), "the transfer ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dest.join("big").exists(), "a partial file landed under its name");
    assert!(temp.exists());
    run(kt().args(["ha", "sync", "-a"]).arg(format!("{}/", src.display())).arg(&dest)).expect(0);
    diff_r(&src, &dest);
    assert_eq!(snapshot(&dest), snapshot(&src));
    let leftovers: Vec<_> = fs::read_dir(&dest).unwrap().flatten().filter(|e| e.file_name().as_bytes().starts_with(b".kt")).collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn local_syncs_send_whole_files_unless_no_whole_file_and_w_reaches_the_remote() {
    let d = TestDir::new("sync-whole");
    let ssh = script(&d, "ssh", SSH);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write(&d.join("src/big"), &data, 0o644);
    let sent = |flags: &[&str], dest: String| -> u64 {
        let r = run(kt().args(["ha", "sync", "-av", "-e", &ssh, "--remote-kt", KT]).args(flags).arg(d.join("src")).arg(dest)).expect(0);
        let line = r.stdout.lines().find(|l| l.starts_with("sent ")).unwrap().to_string();
        line.split_whitespace().nth(1).unwrap().replace(',', "").parse().unwrap()
    };
    let dests = ["local", "delta", "rsh", "rsh-w"].map(|n| d.join(n));
    let args = |i: usize| -> String { if i >= 2 { format!("h:{}", dests[i].display()) } else { dests[i].display().to_string() } };
    let flags: [&[&str]; 4] = [&[], &["--no-whole-file"], &[], &["-W"]];
    for (i, f) in flags.iter().enumerate() {
        assert!(sent(f, args(i)) > 3_000_000);
    }
    let mut changed = data.clone();
    changed[1_500_000] ^= 0xff;
    // A new size: the quick check sees the change within the same second.
    changed.push(1);
    write(&d.join("src/big"), &changed, 0o644);
    let got: Vec<u64> = (0..4).map(|i| sent(flags[i], args(i))).collect();
    // Local: whole (rsync's -W default, and its count of the data as sent);
    // --no-whole-file: a delta; over rsh a delta, whole with -W.
    assert!(got[0] > 3_000_000 && got[1] < 100_000 && got[2] < 100_000 && got[3] > 3_000_000, "{got:?}");
    for dest in &dests {
        diff_r(&d.join("src"), &dest.join("src"));
    }
}
