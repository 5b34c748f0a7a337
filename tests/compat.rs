//! Drop-in compatibility: the documented command lines, run verbatim
//! (with the instance's paths) through the shims in `scripts/`, and the
//! documented service names of the systemd units.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::harness::*;
use crate::server::{client, register};

fn shim(name: &str) -> Command {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name));
    cmd.env("KT", KT);
    cmd
}

#[test]
fn keytrustee_orgtool_shim_takes_the_documented_command_lines() {
    let inst = Instance::serving("orgtool");
    inst.kt(&["server", "start"]).expect(0);
    let confdir = inst.confdir.to_str().unwrap();
    let orgtool = |args: &[&str]| run(shim("keytrustee-orgtool").args(["--confdir", confdir]).args(args));

    orgtool(&["add", "-n", "zeta", "-c", "root@example.com"]).expect(0);
    // A new organization's secret, before set-auth: base64 of 16 bytes.
    let fresh: serde_json::Value = serde_json::from_str(&orgtool(&["list"]).expect(0).stdout).unwrap();
    let secret = fresh["zeta"]["auth_secret"].as_str().unwrap_or_else(|| panic!("{fresh}"));
    let secret_bytes = base64::engine::general_purpose::STANDARD.decode(secret).unwrap_or_else(|e| panic!("{secret}: {e}"));
    assert_eq!((secret.len(), secret_bytes.len()), (24, 16), "{secret}");
    orgtool(&["set-auth", "-n", "zeta", "-s", "ThisISAs3cr3t!"]).expect(0);
    let list: serde_json::Value = serde_json::from_str(&orgtool(&["list"]).expect(0).stdout).unwrap();
    assert_eq!(list["zeta"]["name"], "zeta");
    assert_eq!(list["zeta"]["contacts"], serde_json::json!(["root@example.com"]));
    assert_eq!(list["zeta"]["auth_secret"], "ThisISAs3cr3t!");
    // The documented values, field by field (the secret is the one set).
    let zeta = &list["zeta"];
    let mut keys: Vec<_> = zeta.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["auth_secret", "contacts", "creation", "expiration", "key_info", "name", "state", "uuid"]);
    assert_eq!(zeta["state"], 0);
    assert_eq!(zeta["expiration"], "9999-12-31T15:59:59");
    assert_eq!(zeta["key_info"], serde_json::Value::Null);
    // The documented id: base64url without padding of 32 bytes (43
    // characters of A-Z a-z 0-9 - _), the same after set-auth.
    let uuid = zeta["uuid"].as_str().unwrap();
    assert_eq!(uuid, fresh["zeta"]["uuid"], "{zeta}");
    assert!(uuid.len() == 43 && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{zeta}");
    let uuid_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(uuid).unwrap_or_else(|e| panic!("{uuid}: {e}"));
    assert_eq!(uuid_bytes.len(), 32, "{zeta}");
    assert_eq!(zeta["creation"].as_str().unwrap().len(), 19, "{zeta}");
    // The KT_CONFDIR form (as the service account's environment gives it).
    let env_list = run(shim("keytrustee-orgtool").env("KT_CONFDIR", confdir).arg("list")).expect(0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&env_list.stdout).unwrap(), list);

    let (dir, out) = register(&inst, "web01", "zeta", "ThisISAs3cr3t!");
    let fpr = out.expect(0).stdout.trim().to_string();
    orgtool(&["disable-client", "--fingerprint", &fpr]).expect(0);
    assert!(client(&dir, &["list"]).expect(3).stderr.contains("423 client_disabled"));
    orgtool(&["enable-client", "--fingerprint", &fpr]).expect(0);
    client(&dir, &["list"]).expect(0);
    // Bad input: the same exit codes as kt org.
    orgtool(&["set-auth", "-n", "no-such-org", "-s", "x"]).expect(2);
    orgtool(&["frobnicate"]).expect(2);
    // Without a reachable kt the shim says so and exits 3 (a copy of the
    // shim away from the build tree, no kt on PATH).
    let away = TestDir::new("shim-away");
    std::fs::create_dir_all(away.join("lib")).unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    std::fs::copy(scripts.join("keytrustee-orgtool"), away.join("keytrustee-orgtool")).unwrap();
    for helper in ["lib/find-kt.sh", "lib/shim-args.sh"] {
        std::fs::copy(scripts.join(helper), away.join(helper)).unwrap();
    }
    let lost = run(Command::new(away.join("keytrustee-orgtool")).env("KT", "").env("PATH", "/usr/bin:/bin").arg("list")).expect(3);
    assert!(lost.stderr.contains("keytrustee-orgtool: error: kt not found"), "{}", lost.stderr);
}

#[test]
fn ktadmin_db_shim_starts_and_stops_the_documented_way() {
    let inst = Instance::new("ktadmin");
    let confdir = inst.confdir.to_str().unwrap();
    let rootdir = inst.pg_rootdir();
    let rootdir = rootdir.to_str().unwrap();
    let ktadmin = |args: &[&str]| run(shim("ktadmin").args(["--confdir", confdir]).args(args));
    let _stop = StopDbOnDrop(inst.confdir.clone());

    ktadmin(&["db", "--start", "--pg-rootdir", rootdir, "--background"]).expect(0);
    ktadmin(&["db", "--status"]).expect(0);
    inst.psql("keytrustee", "SELECT 1").expect(0);
    // Another directory is refused and changes nothing.
    let other = inst.dir.join("other-db");
    std::fs::create_dir_all(&other).unwrap();
    let out = ktadmin(&["db", "--stop", "--pg-rootdir", other.to_str().unwrap()]).expect(2);
    assert!(out.stderr.contains("is not this instance's database directory"), "{}", out.stderr);
    ktadmin(&["db", "--status"]).expect(0);
    ktadmin(&["db", "--stop", "--pg-rootdir", rootdir]).expect(0);
    ktadmin(&["db", "--status"]).expect(1);
    // Misuse: exit 2, with the kt command named where there is one.
    assert!(ktadmin(&["init"]).expect(2).stderr.contains("kt init"));
    ktadmin(&["db"]).expect(2);
    ktadmin(&["db", "--start", "--stop"]).expect(2);
    ktadmin(&["db", "--bootstrap"]).expect(2);
    ktadmin(&["db", "--status"]).expect(1);
}

/// Misuse of the shims is refused before kt runs, with kt's usage code (2)
/// and a message naming the shim and the option: an option without its
/// value (last, empty, or followed by another option), and ktadmin's
/// `--background` with anything but `--start`. kt is the real one: a shim
/// that passed such a command line on would reach it.
#[test]
fn shims_refuse_options_without_values() {
    let refused = |name: &str, args: &[&str], message: &str| {
        let out = run(shim(name).args(args)).expect(2);
        let expected = format!("{name}: error: {message}");
        assert!(out.stderr.contains(&expected), "{name} {args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("unbound variable"), "{name} {args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{name} {args:?}");
    };
    for name in ["ktadmin", "keytrustee-orgtool"] {
        refused(name, &["--confdir"], "--confdir needs a value");
        refused(name, &["--confdir="], "--confdir needs a value");
        refused(name, &["--confdir", "--help"], "--confdir needs a value");
        refused(name, &["-c"], "-c needs a value");
    }
    refused("ktadmin", &["db", "--stop", "--pg-rootdir"], "--pg-rootdir needs a value");
    refused("ktadmin", &["db", "--start", "--pg-rootdir="], "--pg-rootdir needs a value");
    refused("ktadmin", &["db", "--start", "--pg-rootdir", "--background"], "--pg-rootdir needs a value");
    refused("ktadmin", &["db", "--status", "--background"], "--background goes with --start");
    refused("ktadmin", &["db", "--background", "--stop"], "--background goes with --start");
    refused("ktbackup.sh", &["-c"], "-c needs a value");
    refused("ktbackup.sh", &["--quiet", "-c", "--roll=3"], "-c needs a value");
    // Without --confdir the (empty) option array passes nothing on: kt
    // itself answers. (Only a bash 4.2 would fail here on the old
    // "${global[@]}"; this host's bash shows the expansion is right.)
    let unknown = run(shim("keytrustee-orgtool").arg("frobnicate")).expect(2);
    assert!(unknown.stderr.contains("frobnicate") && !unknown.stderr.contains("keytrustee-orgtool: error"), "{}", unknown.stderr);
    let usage = run(shim("ktadmin").arg("--help")).expect(0);
    assert!(usage.stdout.starts_with("usage: ktadmin"), "{}", usage.stdout);
}

/// The documented `systemctl restart keytrusteed`: kt-server.service has
/// that alias, `systemd-analyze verify` accepts both units, and enabling
/// them (offline, under a scratch root) creates the alias.
#[test]
fn systemd_units_verify_and_answer_to_the_documented_names() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd");
    let scratch = TestDir::new("units");
    let root = scratch.join("root");
    let unit_dir = root.join("etc/systemd/system");
    std::fs::create_dir_all(&unit_dir).unwrap();
    for unit in ["kt-db.service", "kt-server.service"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        // Point at the kt under test: verify checks that ExecStart exists.
        let text = text.replace("/usr/local/bin/kt", KT);
        std::fs::write(unit_dir.join(unit), text).unwrap();
    }
    let verify = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit_dir.join("kt-db.service"))
        .arg(unit_dir.join("kt-server.service")));
    assert_eq!(verify.code, 0, "systemd-analyze verify:\n{}{}", verify.stdout, verify.stderr);
    // Only warnings about kt's units count: verify also loads the units
    // they name (network.target, ...), and what it says of the host's own
    // units depends on the host.
    let ours: Vec<&str> = verify
        .stderr
        .lines()
        .filter(|l| ["kt-db.service", "kt-server.service", "keytrusteed", "keytrustee-db"].iter().any(|u| l.contains(u)))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze warns about kt's units:\n{}", verify.stderr);
    run(Command::new("systemctl").arg(format!("--root={}", root.display())).args(["enable", "kt-db.service", "kt-server.service"]))
        .expect(0);
    for (alias, unit) in [("keytrusteed.service", "kt-server.service"), ("keytrustee-db.service", "kt-db.service")] {
        let link = std::fs::read_link(unit_dir.join(alias)).unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(link.file_name().unwrap(), unit, "{alias} -> {}", link.display());
    }
}

/// The documented manual database commands, verbatim as the service
/// account (runuser stands in for sudo -u): they reach the cluster over its
/// Unix socket with peer authentication; root and other accounts do not.
/// An instance made before the rule gets it at its next `kt db start`.
#[test]
fn the_documented_database_commands_work_as_the_service_account() {
    let inst = Instance::new("pgsocket");
    let _stop = StopDbOnDrop(inst.confdir.clone());
    inst.kt(&["db", "start"]).expect(0);
    let port = inst.db_port.to_string();
    let as_account = |args: &[&str]| run(Command::new("runuser").args(["-u", "keytrustee", "--"]).args(args));
    let dump = as_account(&["pg_dump", "-c", "-p", &port, "keytrustee"]).expect(0);
    assert!(dump.stdout.contains("CREATE TABLE public.deposits"), "{}", dump.stdout);
    let who = as_account(&["psql", "-p", &port, "-Atc", "SELECT current_user"]).expect(0);
    assert_eq!(who.stdout.trim(), "keytrustee");
    // The documented restore's drop and create steps.
    as_account(&["psql", "-p", &port, "postgres", "-c", "CREATE DATABASE kt_scratch_doc"]).expect(0);
    as_account(&["psql", "-p", &port, "postgres", "-c", "DROP DATABASE kt_scratch_doc"]).expect(0);
    // Root is not the service account: refused, however it names itself.
    let root = run(Command::new("psql").args(["-p", &port, "-U", "keytrustee", "keytrustee", "-c", "SELECT 1"]));
    assert_ne!(root.code, 0);
    assert!(root.stderr.contains("Peer authentication failed"), "{}", root.stderr);
    let status = inst.kt(&["db", "status"]).expect(0).stdout;
    assert!(status.contains("/tmp/.kt-pg-"), "{status}");

    // An instance from before: no rule, no map. kt db start (running: a
    // reload) adds them, and only once.
    let data = inst.pg_rootdir();
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let old_hba: String = hba.lines().skip(2).map(|l| format!("{l}\n")).collect();
    assert!(!old_hba.contains("peer"), "{old_hba}");
    std::fs::write(data.join("pg_hba.conf"), &old_hba).unwrap();
    std::fs::write(data.join("pg_ident.conf"), "# MAPNAME SYSTEM-USERNAME PG-USERNAME\n").unwrap();
    inst.psql("postgres", "SELECT pg_reload_conf()").expect(0);
    assert_ne!(as_account(&["psql", "-p", &port, "-Atc", "SELECT 1"]).code, 0, "the old rules refuse the socket");
    let out = inst.kt(&["db", "start"]).expect(0);
    assert!(out.stderr.contains("added the Unix-socket rule"), "{}", out.stderr);
    as_account(&["psql", "-p", &port, "-Atc", "SELECT 1"]).expect(0);
    assert_eq!(std::fs::read_to_string(data.join("pg_hba.conf")).unwrap(), hba);
    let out = inst.kt(&["db", "start"]).expect(0);
    assert!(!out.stderr.contains("added the Unix-socket rule"), "{}", out.stderr);
}

/// `scripts/install-deps`, which the README's two commands and .ci/run
/// call: with everything present it says nothing; with a tool missing it
/// names the tool and the package, and exits 3 without installing when it
/// only checks (or is not root).
#[test]
fn install_deps_names_what_is_missing() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps");
    let all = run(Command::new(&script).arg("--check")).expect(0);
    assert_eq!((all.stdout.as_str(), all.stderr.as_str()), ("", ""));
    // A PATH with every tool but rsync, linked from where they are.
    let bin = TestDir::new("deps-bin");
    for tool in ["bash", "awk", "tr", "ls", "id", "psql", "pg_dump", "gpg", "gpgconf", "openssl", "curl", "tar", "zip", "unzip", "tmux", "systemd-analyze", "useradd", "apt-get", "initdb"] {
        let found = run(Command::new("bash").args(["-c", &format!("command -v {tool} || true")]));
        let path = found.stdout.trim();
        if !path.is_empty() {
            std::os::unix::fs::symlink(path, bin.join(tool)).unwrap();
        }
    }
    let out = run(Command::new(&script).arg("--check").env("PATH", &bin.path)).expect(3);
    assert!(out.stderr.contains("missing: rsync"), "{}", out.stderr);
    assert!(out.stderr.contains("apt-get install rsync"), "{}", out.stderr);
    // rsync is for the tests only: what kt runs is all there.
    run(Command::new(&script).args(["--check", "--for", "run"]).env("PATH", &bin.path)).expect(0);
    // An ordinary user with Debian's default PATH (no sbin) is not sent
    // after root's tools (useradd).
    let user = run(Command::new("runuser")
        .args(["-u", "nobody", "--", "env", "PATH=/usr/local/bin:/usr/bin:/bin"])
        .arg(&script)
        .args(["--for", "run"]));
    assert_eq!((user.code, user.stderr.as_str()), (0, ""), "as nobody");
    run(Command::new(&script).args(["--for", "nonsense"])).expect(2);
}

/// What the service account writes (keytrustee.conf) never makes root's
/// `kt db start` work on something else: SERVICE_USER=root and a
/// PG_ROOTDIR of another account are refused before anything is written,
/// and a socket directory someone else made first is never used or
/// linked to. The directory goes at stop.
#[test]
fn the_socket_and_the_data_directory_are_the_service_accounts_only() {
    let inst = Instance::new("sockguard");
    let _stop = StopDbOnDrop(inst.confdir.clone());
    let link = Path::new("/var/run/postgresql").join(format!(".s.PGSQL.{}", inst.db_port));
    let socket_dir = PathBuf::from(format!("/tmp/.kt-pg-{}-{}", keytrustee_uid(), inst.db_port));

    // Someone else's directory under the socket's name: refused, no link.
    std::fs::create_dir(&socket_dir).unwrap();
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = inst.kt(&["db", "start"]).expect(3);
    assert!(out.stderr.contains("is not a 0700 directory of keytrustee"), "{}", out.stderr);
    assert!(std::fs::symlink_metadata(&link).is_err(), "a link into someone else's directory");
    std::fs::remove_dir(&socket_dir).unwrap();

    // SERVICE_USER=root: refused, the data directory untouched.
    let hba = inst.pg_rootdir().join("pg_hba.conf");
    let before = std::fs::read(&hba).unwrap();
    inst.set_config("SERVICE_USER", serde_json::json!("root"));
    let out = inst.kt(&["db", "start"]).expect(2);
    assert!(out.stderr.contains("is root or does not own the confdir"), "{}", out.stderr);
    inst.set_config("SERVICE_USER", serde_json::json!("keytrustee"));
    // PG_ROOTDIR naming a directory of another account: refused.
    let foreign = inst.dir.join("foreign-db");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(foreign.join("pg_hba.conf"), "# someone else's\n").unwrap();
    inst.set_config("PG_ROOTDIR", serde_json::json!(foreign.to_str().unwrap()));
    let out = inst.kt(&["db", "start"]).expect(2);
    assert!(out.stderr.contains("does not belong to the service account"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(foreign.join("pg_hba.conf")).unwrap(), "# someone else's\n");
    inst.set_config("PG_ROOTDIR", serde_json::json!(inst.pg_rootdir().to_str().unwrap()));
    assert_eq!(std::fs::read(&hba).unwrap(), before);

    // The instance's own: started, linked; stopped, both gone.
    inst.kt(&["db", "start"]).expect(0);
    assert_eq!(std::fs::read_link(&link).unwrap(), socket_dir.join(format!(".s.PGSQL.{}", inst.db_port)));
    inst.kt(&["db", "stop"]).expect(0);
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(!socket_dir.exists());
}

fn keytrustee_uid() -> u32 {
    run(Command::new("id").args(["-u", "keytrustee"])).expect(0).stdout.trim().parse().unwrap()
}
