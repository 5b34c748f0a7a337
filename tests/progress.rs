//! What a person sees of `kt backup` and `kt restore` progress: on a real
//! terminal (a tmux pane of fixed size) a live bar with bytes, rate and ETA
//! that leaves clean lines behind; off a terminal, the step lines as
//! before and not one control character.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::backup::instance_with_data;
use crate::harness::*;

/// Enough deposits for a dump of over 8 MiB: the bar is redrawn while the
/// archive is written, not only at its end.
const DEPOSITS: u32 = 120_000;

/// The rows in the database, as `kt backup` reports them at the end
/// ("rows: clients 3, deposits 120000, ...").
fn total_rows(backed_up_line: &str) -> u64 {
    let list = backed_up_line.split("rows: ").nth(1).unwrap_or_else(|| panic!("no rows in {backed_up_line:?}"));
    list.trim_end_matches(')').split(", ").map(|t| t.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
}

/// One tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.as_ref().is_ok_and(|o| o.status.success()),
            "tmux is needed for the terminal test and is missing (.ci/run installs it): {found:?}"
        );
        // One server per test: tests run in parallel in this process.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tmux { socket: format!("kt-test-{}-{n}", std::process::id()) }
    }

    fn tmux(&self, args: &[&str]) -> Run {
        run(Command::new("tmux").args(["-L", &self.socket, "-f", "/dev/null"]).args(args))
    }

    /// Runs `script` (sh) in a new 100x30 pane, recording every byte it
    /// writes to the terminal in `raw`; returns the screen once the script
    /// printed its `kt-exit=` line.
    fn run(&self, name: &str, script: &str, dir: &Path, raw: &Path) -> String {
        let go = dir.join(format!("{name}.go"));
        // The script waits for the recording to be in place.
        let wrapped = format!("while [ ! -e '{}' ]; do sleep 0.05; done; {script}; echo kt-exit=$?; exec sleep 600", go.display());
        self.tmux(&["new-session", "-d", "-s", name, "-x", "100", "-y", "30", "sh", "-c", &wrapped]).expect(0);
        self.tmux(&["pipe-pane", "-t", name, &format!("cat > '{}'", raw.display())]).expect(0);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(&go, "").unwrap();
        let started = Instant::now();
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-J", "-t", name]).expect(0).stdout;
            if screen.contains("kt-exit=") {
                // Let pipe-pane's cat write out the last bytes.
                std::thread::sleep(Duration::from_millis(300));
                return screen;
            }
            assert!(started.elapsed() < Duration::from_secs(180), "the pane did not finish:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn lines(screen: &str) -> Vec<&str> {
    screen.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect()
}

fn kt_line(inst: &Instance, args: &str) -> String {
    format!("'{KT}' -c '{}' {args}", inst.confdir.display())
}

#[test]
fn a_terminal_shows_a_live_bar_and_leaves_clean_lines() {
    let tmux = Tmux::new();
    let inst = instance_with_data("progress-tty", DEPOSITS);
    let out = TestDir::new("progress-tty-out");
    let o = out.path.to_str().unwrap();

    let raw = out.join("backup.raw");
    let screen = tmux.run("backup", &kt_line(&inst, &format!("backup --output '{o}' --cleartext")), &out.path, &raw);
    eprintln!("kt backup on a terminal:\n{screen}");
    let shown = lines(&screen);
    let at = |prefix: &str| -> Vec<&str> { shown.iter().copied().filter(|l| l.starts_with(prefix)).collect() };
    // The steps, each once, whole, in order: the dump's line ends with the
    // rows counted as pg_dump wrote them; the bar replaced by a summary
    // with bytes and rate; then kt's final lines.
    let backed_up = at("kt: backed up ");
    assert_eq!(backed_up.len(), 1, "{screen}");
    let dumped = format!("kt: dumping the database, {} rows", total_rows(backed_up[0]));
    assert_eq!(&shown[..2], &[dumped.as_str(), "kt: writing the archive (cleartext)"], "{screen}");
    let summary = shown[2];
    assert!(summary.starts_with("kt: writing the backup: ") && summary.contains("MiB in ") && summary.ends_with("/s)"), "{screen}");
    assert_eq!(at("kt: warning: the backup is NOT encrypted").len(), 1, "{screen}");
    assert_eq!(shown.last(), Some(&"kt-exit=0"), "{screen}");
    let file = shown[shown.len() - 2];
    assert!(file.starts_with(o) && Path::new(file).exists(), "the backup's path on stdout: {screen}");
    // Nothing else: no bar, spinner or half-erased line left on the screen.
    assert_eq!(shown.len(), 7, "{screen}");
    assert!(!screen.contains("ETA") && !screen.contains('['), "{screen}");
    // The bar was drawn while the archive was written, not only at its
    // end: the raw terminal stream holds its frames (bytes of the total,
    // rate, ETA), at least two with rising bytes past 0, one of them short
    // of the total.
    let bytes = String::from_utf8_lossy(&std::fs::read(&raw).unwrap()).into_owned();
    let frames: Vec<&str> = bytes.split(['\r', '\n']).filter(|f| f.contains("kt: writing the backup: [") && f.contains(" ETA ")).collect();
    // The rate (the rows were counted while pg_dump wrote, on the step's line).
    assert!(frames.iter().any(|f| f.contains("iB/s")), "{frames:?}");
    let done: Vec<(f64, f64)> = frames
        .iter()
        .map(|f| {
            let of = f.split("] ").nth(1).and_then(|r| r.split(", ").next()).unwrap_or_else(|| panic!("no bytes in {f:?}"));
            let (done, total) = of.split_once('/').unwrap_or_else(|| panic!("no total in {f:?}"));
            (human_bytes(done), human_bytes(total))
        })
        .filter(|(done, _)| *done > 0.0)
        .collect();
    eprintln!("the bar's bytes and total, frame by frame: {done:?}");
    assert_rising(&done.iter().map(|d| d.0).collect::<Vec<_>>(), &frames);
    assert!(done.iter().any(|(d, t)| d < t), "every frame at the total: {frames:?}");

    // kt restore --dry-run: its step, then its transfer, then the plan.
    let raw = out.join("restore.raw");
    let screen = tmux.run("restore", &kt_line(&inst, &format!("restore --dry-run '{file}'")), &out.path, &raw);
    eprintln!("kt restore --dry-run on a terminal:\n{screen}");
    let shown = lines(&screen);
    assert_eq!(shown[0], "kt: decrypting and checking the backup", "{screen}");
    assert!(shown[1].starts_with("kt: decrypting and unpacking: ") && shown[1].contains("/s)"), "{screen}");
    let size = std::fs::metadata(file).unwrap().len() as f64 / 1048576.0;
    assert!(shown[1].contains(&format!(": {size:.2} MiB in ")), "the whole file read: {size:.2} MiB: {screen}");
    assert!(shown.contains(&"kt: --dry-run: nothing changed"), "{screen}");
    assert!(shown.iter().any(|l| l.starts_with("rows:") && l.contains(&format!("deposits {DEPOSITS}"))), "{screen}");
    assert_eq!(shown.last(), Some(&"kt-exit=0"), "{screen}");
    assert!(!screen.contains("ETA"), "{screen}");

    // --no-progress and --quiet on the same terminal: no drawing at all.
    for (name, flag) in [("noprogress", "--no-progress"), ("quiet", "--quiet")] {
        let raw = out.join(&format!("{name}.raw"));
        let screen = tmux.run(name, &kt_line(&inst, &format!("{flag} backup --output '{o}' --cleartext")), &out.path, &raw);
        assert!(screen.contains("kt-exit=0"), "{screen}");
        let bytes = std::fs::read(&raw).unwrap();
        assert_no_drawing(&bytes, true);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.contains("kt: dumping the database"), flag == "--no-progress", "{text}");
        assert!(!text.contains("kt: writing the backup"), "{text}");
    }
}

/// "3.20 MiB", "512 B" (indicatif's binary units) in bytes.
fn human_bytes(text: &str) -> f64 {
    let (number, unit) = text.trim().split_once(' ').unwrap_or_else(|| panic!("not a size: {text:?}"));
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        _ => panic!("not a size: {text:?}"),
    };
    number.parse::<f64>().unwrap_or_else(|_| panic!("not a size: {text:?}")) * scale
}

/// At least two different values in `seen` (the frames' bytes past 0),
/// never going down.
fn assert_rising(seen: &[f64], frames: &[&str]) {
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "bytes went down: {frames:?}");
    assert!(seen.first() < seen.last(), "fewer than two frames with rising bytes: {frames:?}");
}

/// The frames of a sync's bar in a raw terminal stream, with their bytes.
fn sync_frames(raw: &Path) -> (Vec<String>, Vec<f64>) {
    let bytes = String::from_utf8_lossy(&std::fs::read(raw).unwrap()).into_owned();
    let frames: Vec<String> = bytes
        .split(['\r', '\n'])
        .filter_map(|f| f.find("kt: syncing: ").map(|at| f[at..].trim_end().to_string()))
        .filter(|f| f.contains("/s") && !f.contains(" in "))
        .collect();
    let done = frames
        .iter()
        .map(|f| human_bytes(f["kt: syncing: ".len()..].split(", ").next().unwrap_or_else(|| panic!("no bytes in {f:?}"))))
        .filter(|done| *done > 0.0)
        .collect();
    (frames, done)
}

/// A source tree of `n` files of 256 KiB for `kt ha sync`.
fn sync_source(dir: &TestDir, n: usize) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..n {
        let data: Vec<u8> = (0..256 * 1024).map(|b: usize| (b * 31 + i) as u8).collect();
        std::fs::write(src.join(if i % 2 == 0 { format!("f{i}") } else { format!("sub/f{i}") }), data).unwrap();
    }
    src
}

#[test]
fn a_terminal_shows_files_and_bytes_of_a_sync() {
    let tmux = Tmux::new();
    let dir = TestDir::new("progress-sync-tty");
    let src = sync_source(&dir, 40);
    let dest = dir.join("dest");
    let raw = dir.join("sync.raw");
    let script = format!("'{KT}' ha sync -a '{}/' '{}'", src.display(), dest.display());
    let screen = tmux.run("sync", &script, &dir.path, &raw);
    eprintln!("kt ha sync on a terminal:\n{screen}");
    let shown = lines(&screen);
    assert_eq!(shown.len(), 2, "{screen}");
    assert!(shown[0].starts_with("kt: syncing: 10.00 MiB in ") && shown[0].ends_with("/s), 40 files"), "{screen}");
    assert_eq!(shown[1], "kt-exit=0", "{screen}");
    assert_eq!(std::fs::read(dest.join("sub/f1")).unwrap(), std::fs::read(src.join("sub/f1")).unwrap());
    // Nothing changed, nothing to show.
    let screen = tmux.run("again", &script, &dir.path, &dir.join("again.raw"));
    assert_eq!(lines(&screen), ["kt-exit=0"], "{screen}");
}

/// A push (DEST on "another host", through the ssh stand-in) shows the
/// files and bytes its sender sends, a pull those it receives: the bar
/// while it runs (rising bytes, a file count), then the summary line.
#[test]
fn a_terminal_shows_files_and_bytes_of_a_push_and_a_pull() {
    let tmux = Tmux::new();
    let dir = TestDir::new("progress-push-tty");
    let ssh = crate::sync::script(&dir, "ssh", crate::sync::SSH);
    // 64 MiB: long enough for several frames at indicatif's 20 a second.
    let src = sync_source(&dir, 256);
    for (name, from, to) in [
        ("push", format!("{}/", src.display()), format!("kts02.example.com:{}", dir.join("pushed").display())),
        ("pull", format!("kts01:{}/", src.display()), dir.join("pulled").display().to_string()),
    ] {
        let raw = dir.join(&format!("{name}.raw"));
        let script = format!("'{KT}' ha sync -a -e '{ssh}' --remote-kt '{KT}' '{from}' '{to}'");
        let screen = tmux.run(name, &script, &dir.path, &raw);
        eprintln!("kt ha sync ({name}) on a terminal:\n{screen}");
        let shown = lines(&screen);
        assert_eq!(shown.len(), 2, "{name}: {screen}");
        assert!(shown[0].starts_with("kt: syncing: 64.00 MiB in ") && shown[0].ends_with("/s), 256 files"), "{name}: {screen}");
        assert_eq!(shown[1], "kt-exit=0", "{name}: {screen}");
        let (frames, done) = sync_frames(&raw);
        assert_rising(&done, &frames.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(done.iter().any(|d| *d < 64.0 * 1048576.0), "{name}: every frame at the total: {frames:?}");
        assert!(frames.iter().any(|f| f.ends_with(" files")), "{name}: no file count drawn: {frames:?}");
    }
    for got in ["pushed", "pulled"] {
        assert_eq!(std::fs::read(dir.join(got).join("sub/f1")).unwrap(), std::fs::read(src.join("sub/f1")).unwrap(), "{got}");
    }
}

/// No escape sequence and no carriage return (on a terminal, the pty turns
/// each "\n" into "\r\n": those are allowed when `pty`).
fn assert_no_drawing(bytes: &[u8], pty: bool) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!bytes.contains(&0x1b), "an escape sequence: {text:?}");
    let stray_cr = bytes.iter().enumerate().any(|(i, b)| *b == b'\r' && !(pty && bytes.get(i + 1) == Some(&b'\n')));
    assert!(!stray_cr, "a carriage return: {text:?}");
    assert!(!bytes.iter().any(|b| *b < 0x20 && *b != b'\n' && *b != b'\r'), "a control character: {text:?}");
}

#[test]
fn a_pipe_gets_plain_lines_only() {
    let inst = instance_with_data("progress-pipe", DEPOSITS);
    let out = TestDir::new("progress-pipe-out");
    let o = out.path.to_str().unwrap();
    let made = Command::new(KT).args(["-c", inst.confdir.to_str().unwrap(), "backup", "--output", o, "--cleartext"]).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    assert_no_drawing(&made.stderr, false);
    assert_no_drawing(&made.stdout, false);
    let said = String::from_utf8(made.stderr).unwrap();
    assert!(said.starts_with("kt: dumping the database\nkt: writing the archive (cleartext)\nkt: warning: the backup is NOT encrypted"), "{said}");
    assert!(!said.contains("kt: writing the backup"), "{said}");
    let file = PathBuf::from(String::from_utf8(made.stdout).unwrap().trim());
    assert!(file.exists());

    let checked = Command::new(KT)
        .args(["-c", inst.confdir.to_str().unwrap(), "restore", "--dry-run", file.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    assert_no_drawing(&checked.stderr, false);
    assert_no_drawing(&checked.stdout, false);
    let said = String::from_utf8(checked.stderr).unwrap();
    assert!(said.starts_with("kt: decrypting and checking the backup\n"), "{said}");
    assert!(!said.contains("decrypting and unpacking"), "{said}");

    let src = sync_source(&out, 10);
    let synced = Command::new(KT).args(["ha", "sync", "-a", &format!("{}/", src.display()), out.join("dest").to_str().unwrap()]).output().unwrap();
    assert!(synced.status.success(), "{synced:?}");
    assert!(synced.stdout.is_empty() && synced.stderr.is_empty(), "{synced:?}");
}
