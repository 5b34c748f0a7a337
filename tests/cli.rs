//! The command-line surface: help and version without an instance, usage
//! errors, and the documented error format and exit codes.

use crate::harness::*;

#[test]
fn help_and_version_work_without_an_instance() {
    let help = run(kt().arg("--help")).expect(0);
    for sub in ["init", "db", "fingerprint"] {
        assert!(help.stdout.contains(sub), "{sub} missing from --help:\n{}", help.stdout);
    }
    let version = run(kt().arg("--version")).expect(0);
    assert_eq!(version.stdout.trim(), format!("kt {}", env!("CARGO_PKG_VERSION")));
    run(kt().args(["db", "--help"])).expect(0);
}

#[test]
fn usage_errors_exit_2() {
    run(kt().arg("--no-such-flag")).expect(2);
    run(kt().arg("no-such-command")).expect(2);
    run(kt().args(["init", "--database-port", "0"])).expect(2);
    run(kt().args(["init", "--key-type", "dsa"])).expect(2);
    run(kt().args(["db", "status", "--quiet", "--verbose"])).expect(2);
}

#[test]
fn a_missing_instance_is_an_environment_failure_with_a_hint() {
    let dir = TestDir::new("missing");
    let confdir = dir.join("nowhere/.keytrustee");
    for args in [&["db", "status"][..], &["db", "start"], &["fingerprint"]] {
        let out = run(kt().arg("-c").arg(&confdir).args(args)).expect(3);
        assert!(out.stderr.starts_with("kt: error: cannot read "), "{}", out.stderr);
        assert!(out.stderr.contains("keytrustee.conf"), "{}", out.stderr);
        assert!(out.stderr.contains("\nhint: "), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    // The environment variable names the confdir too.
    let out = run(kt().env("KT_CONFDIR", &confdir).args(["db", "status"])).expect(3);
    assert!(out.stderr.contains(&confdir.display().to_string()), "{}", out.stderr);
}

#[test]
fn a_malformed_configuration_is_reported() {
    let dir = TestDir::new("badconf");
    let confdir = dir.join("home/.keytrustee");
    std::fs::create_dir_all(&confdir).unwrap();
    // Bad configuration is bad input: exit 2, the same in every command.
    std::fs::write(confdir.join("keytrustee.conf"), "{ not json").unwrap();
    for args in [&["db", "status"][..], &["server", "status"], &["serve"], &["org", "list"]] {
        let out = run(kt().arg("-c").arg(&confdir).args(args)).expect(2);
        assert!(out.stderr.contains("is not a valid configuration"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("line 1"), "{args:?}: the JSON error names its place: {}", out.stderr);
    }
    std::fs::write(confdir.join("keytrustee.conf"), r#"{"PG_ROOTDIR": "/x"}"#).unwrap();
    let out = run(kt().arg("-c").arg(&confdir).args(["db", "status"])).expect(2);
    assert!(out.stderr.contains("HOSTNAME is missing"), "{}", out.stderr);
}

#[test]
fn a_bad_configuration_value_exits_2_in_every_command() {
    let dir = TestDir::new("badvalue");
    let confdir = dir.join("home/.keytrustee");
    std::fs::create_dir_all(&confdir).unwrap();
    let conf = confdir.join("keytrustee.conf");
    let kt_c = |args: &[&str]| run(kt().arg("-c").arg(&confdir).args(args));
    // A port out of range: every command that needs the database says so.
    std::fs::write(&conf, r#"{"HOSTNAME": "localhost", "LISTEN": "127.0.0.1:1", "PG_ROOTDIR": "/x", "DB_PORT": 70000}"#).unwrap();
    for args in [&["db", "status"][..], &["db", "start"], &["org", "list"]] {
        let out = kt_c(args).expect(2);
        assert!(out.stderr.contains("DB_PORT"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("\nhint: "), "{args:?}: {}", out.stderr);
    }
    // A listen address that is none: the server commands say so.
    std::fs::write(&conf, r#"{"HOSTNAME": "localhost", "LISTEN": "nowhere", "PG_ROOTDIR": "/x", "DB_PORT": 1}"#).unwrap();
    for args in [&["serve"][..], &["server", "start"], &["server", "status"], &["server", "restart"]] {
        let out = kt_c(args).expect(2);
        assert!(out.stderr.contains("LISTEN \"nowhere\""), "{args:?}: {}", out.stderr);
    }
    // A value of the wrong type, or a limit out of its range: the settings
    // are checked once, when the instance is loaded, for every command.
    std::fs::write(&conf, r#"{"HOSTNAME": "localhost", "LISTEN": 11371, "PG_ROOTDIR": "/x", "DB_PORT": 1}"#).unwrap();
    for args in [&["serve"][..], &["server", "start"], &["db", "status"], &["backup", "--cleartext"]] {
        let out = kt_c(args).expect(2);
        assert!(out.stderr.contains("LISTEN is not a string"), "{args:?}: {}", out.stderr);
    }
    std::fs::write(&conf, r#"{"HOSTNAME": "localhost", "PG_ROOTDIR": "/x", "DB_PORT": 1, "MAX_CONNECTIONS": 0}"#).unwrap();
    for args in [&["serve"][..], &["server", "status"], &["db", "stop"], &["fingerprint"]] {
        let out = kt_c(args).expect(2);
        assert!(out.stderr.contains("MAX_CONNECTIONS must be a number from 1 to 100000"), "{args:?}: {}", out.stderr);
    }
    // `kt verify` reports the same as a failed check.
    let out = kt_c(&["verify"]).expect(1);
    assert!(out.stdout.contains("MAX_CONNECTIONS"), "{}", out.stdout);
}

/// Ctrl-C at a password prompt ends kt and leaves the terminal as it was
/// (echo on), with a real pseudo-terminal as kt's controlling terminal.
#[test]
fn ctrl_c_at_the_password_prompt_leaves_echo_on() {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    let (mut master_fd, mut slave_fd) = (-1, -1);
    // SAFETY: openpty fills in two new descriptors, owned below.
    let opened = unsafe { libc::openpty(&mut master_fd, &mut slave_fd, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master_fd), OwnedFd::from_raw_fd(slave_fd)) };
    let echo_on = |fd: i32| {
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag & libc::ECHO != 0
    };
    assert!(echo_on(slave_fd), "a new terminal echoes");

    let dir = TestDir::new("prompt");
    let mut cmd = kt();
    cmd.args(["restore", dir.join("backup.zip").to_str().unwrap()])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut terminal = std::fs::File::from(master);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains("password of the zip backup:") {
        assert!(std::time::Instant::now() < deadline, "no prompt: {}", String::from_utf8_lossy(&seen));
        let mut buf = [0u8; 256];
        let n = terminal.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    // The prompt has turned echo off; wait for that before typing.
    while echo_on(slave_fd) {
        assert!(std::time::Instant::now() < deadline, "echo never went off");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    terminal.write_all(b"secret\x03").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    assert!(echo_on(slave_fd), "Ctrl-C at the prompt left the terminal without echo");
}
