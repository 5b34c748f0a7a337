//! Drop-in compatibility: the documented command lines, run verbatim
//! (with the instance's paths) through the shims in `scripts/`, and the
//! documented service names of the systemd units.

use std::path::Path;
use std::process::Command;

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
    orgtool(&["set-auth", "-n", "zeta", "-s", "ThisISAs3cr3t!"]).expect(0);
    let list: serde_json::Value = serde_json::from_str(&orgtool(&["list"]).expect(0).stdout).unwrap();
    assert_eq!(list["zeta"]["name"], "zeta");
    assert_eq!(list["zeta"]["contacts"], serde_json::json!(["root@example.com"]));
    assert_eq!(list["zeta"]["auth_secret"], "ThisISAs3cr3t!");
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
    std::fs::copy(scripts.join("lib/find-kt.sh"), away.join("lib/find-kt.sh")).unwrap();
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
    assert!(verify.stderr.trim().is_empty(), "systemd-analyze warns:\n{}", verify.stderr);
    run(Command::new("systemctl").arg(format!("--root={}", root.display())).args(["enable", "kt-db.service", "kt-server.service"]))
        .expect(0);
    for (alias, unit) in [("keytrusteed.service", "kt-server.service"), ("keytrustee-db.service", "kt-db.service")] {
        let link = std::fs::read_link(unit_dir.join(alias)).unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(link.file_name().unwrap(), unit, "{alias} -> {}", link.display());
    }
}
