//! The disaster drill with a passive's backup ("Create Backup on Passive
//! Server", issue 13): `kt backup` on the passive B of a real pair,
//! restored on a fresh host (a third confdir and cluster) once the pair is
//! gone, and the deposits written on the active A read there with the
//! client. The model is tests/restore.rs's `the_disaster_drill`.

use crate::backup::keyring;
use crate::harness::*;
use crate::ha_peer::{Pair, PASSIVE_NAME};
use crate::server::{client, org_with_secret};

#[test]
fn a_passives_backup_restores_on_a_fresh_host() {
    let pair = Pair::new("ha-dr");
    let (a, b) = (&pair.a, &pair.b);
    let fingerprint = a.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();

    // Deposits written on the active, acknowledged once the passive has them.
    org_with_secret(a, "acme", "");
    let alice = a.dir.join("alice");
    let cas = a.dir.join("both-ca.pem");
    let mut pem = std::fs::read(a.ca()).unwrap();
    pem.extend(std::fs::read(b.ca()).unwrap());
    std::fs::write(&cas, pem).unwrap();
    // The client knows both servers; the fresh host takes the passive's
    // place (its address and port, from the passive's own settings).
    client(&alice, &["register", "--server", &a.url(), "--server", &b.url(), "--org", "acme", "--ca", cas.to_str().unwrap()]).expect(0);
    let mut stored = Vec::new();
    for i in 0..3 {
        let file = a.dir.join(&format!("d{i}"));
        let content = format!("key material {i}");
        std::fs::write(&file, &content).unwrap();
        let uuid = client(&alice, &["put", &format!("k{i}"), file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
        stored.push((uuid, content));
    }

    // The backup, taken on the passive.
    let out_dir = TestDir::new("ha-dr-backups");
    let made = run(kt()
        .env("GNUPGHOME", &keyring().home)
        .arg("-c")
        .arg(&b.confdir)
        .args(["backup", "--output", out_dir.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]))
    .expect(0);
    let file = made.stdout.trim().to_string();
    assert!(file.contains(&PASSIVE_NAME.replace('.', "_")), "the backup is not named for the passive: {file}");

    // Disaster: both hosts are gone (the passive's home with it).
    for inst in [&a.confdir, &b.confdir] {
        run(kt().arg("-c").arg(inst).args(["server", "stop"])).expect(0);
        run(kt().arg("-c").arg(inst).args(["db", "stop"])).expect(0);
    }
    std::fs::remove_dir_all(&b.home).unwrap();

    // The fresh host: another confdir path (the recorded paths move with it).
    let fresh = TestDir::new("ha-dr-fresh");
    let confdir = fresh.join("home/.keytrustee");
    let c = |args: &[&str]| run(kt().env("GNUPGHOME", &keyring().home).arg("-c").arg(&confdir).args(args));
    let _stop = StopDbOnDrop(confdir.clone());
    let out = c(&["restore", &file, "--force-foreign", "--yes", "--expect-fingerprint", &fingerprint]).expect(0);
    assert!(out.stderr.contains("restored"), "{}", out.stderr);
    // The passive's own settings came with its .ssl, re-rooted to the new confdir.
    let host: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(confdir.join(".ssl/host.conf")).unwrap()).unwrap();
    assert_eq!(host["HOSTNAME"], PASSIVE_NAME);
    assert_eq!(host["SSL_CERTIFICATE"], confdir.join(".ssl/ssl-cert-keytrustee.pem").to_str().unwrap());
    assert_eq!(host["PG_ROOTDIR"], fresh.join("home/db").to_str().unwrap());

    // Its settings still name the lost active: (re)started, the database
    // waits for it, bounded, and starts without it.
    c(&["db", "stop"]).expect(0);
    let out = c(&["db", "start", "--wait-for-active", "1"]).expect(0);
    assert!(out.stderr.contains("waiting up to 1s for the active"), "{}", out.stderr);
    c(&["server", "start"]).expect(0);
    let (code, served) = curl(&["-k", &format!("{}/?a=fingerprint", b.url())]);
    assert_eq!((code, served.trim()), (200, fingerprint.as_str()));
    // The client reads the active's deposits there.
    for (uuid, content) in &stored {
        assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content);
    }
    // What is left for the operator: the restored host is no standby, and
    // `kt ha status` says so (re-initialise it as the passive of a new
    // active, or remove HA_ROLE and HA_PEER from .ssl/host.conf).
    let out = c(&["ha", "status"]).expect(1);
    assert!(out.stderr.contains("HA_ROLE says passive but the database is not a standby"), "{}", out.stderr);
    c(&["server", "stop"]).expect(0);
}
