//! `kt org`: the documented keytrustee-orgtool, against the live database.

use crate::harness::*;

fn list(inst: &Instance) -> serde_json::Value {
    serde_json::from_str(&inst.kt(&["org", "list"]).expect(0).stdout).unwrap()
}

#[test]
fn organizations_round_trip() {
    let inst = Instance::new("org");
    inst.kt(&["db", "start"]).expect(0);
    assert_eq!(list(&inst), serde_json::json!({}));

    inst.kt(&["org", "add", "-n", "acme", "-c", "a@acme.com,b@acme.com"]).expect(0);
    inst.kt(&["org", "add", "-n", "globex", "-c", "ops@globex.example"]).expect(0);
    let orgs = list(&inst);
    let acme = &orgs["acme"];
    let mut keys: Vec<_> = acme.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["auth_secret", "contacts", "creation", "expiration", "key_info", "name", "state", "uuid"]);
    assert_eq!(acme["name"], "acme");
    assert_eq!(acme["contacts"], serde_json::json!(["a@acme.com", "b@acme.com"]));
    assert_eq!(acme["state"], "active");
    // A new organization gets a random auth secret.
    let secret = acme["auth_secret"].as_str().unwrap();
    assert!(secret.len() >= 24, "{secret}");
    assert_ne!(secret, orgs["globex"]["auth_secret"].as_str().unwrap());

    // Adding an existing contact is not a duplicate; new ones are merged.
    inst.kt(&["org", "add", "-n", "acme", "-c", "b@acme.com,c@acme.com"]).expect(0);
    let orgs = list(&inst);
    assert_eq!(orgs["acme"]["contacts"], serde_json::json!(["a@acme.com", "b@acme.com", "c@acme.com"]));
    assert_eq!(orgs["acme"]["auth_secret"], acme["auth_secret"], "re-adding keeps the secret");
    // --confdir works where -c means contacts, and before the subcommand.
    run(kt().args(["org", "add", "--confdir", inst.confdir.to_str().unwrap(), "-n", "initech"])).expect(0);

    inst.kt(&["org", "set-auth", "-n", "acme", "-s", "new-secret"]).expect(0);
    assert_eq!(list(&inst)["acme"]["auth_secret"], "new-secret");
    inst.kt(&["org", "set-auth", "-n", "acme", "-s", ""]).expect(0);
    assert_eq!(list(&inst)["acme"]["auth_secret"], "");
    let file = inst.dir.join("secret");
    std::fs::write(&file, "from-a-file\n").unwrap();
    inst.kt(&["org", "set-auth", "-n", "acme", "--secret-file", file.to_str().unwrap()]).expect(0);
    assert_eq!(list(&inst)["acme"]["auth_secret"], "from-a-file");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let inst = Instance::new("orgbad");
    inst.kt(&["db", "start"]).expect(0);
    inst.kt(&["org", "add", "-n", "acme", "-c", "a@acme.com"]).expect(0);
    let before = list(&inst);
    for args in [
        &["org", "add", "-n", "two words"][..],
        &["org", "add", "-n", "semi;colon"],
        &["org", "add", "-n", "-dash"],
        &["org", "add", "-n", "acme", "-c", "john doe@acme.com"],
        &["org", "add", "-n", "acme", "-c", "a@acme.com,not-an-address"],
        &["org", "add", "-n", "acme", "-c", "x@bad_domain"],
        &["org", "set-auth", "-n", "nobody", "-s", "x"],
        &["org", "set-auth", "-n", "acme"],
        &["org", "enable-client", "--fingerprint", "0123456789ABCDEF0123456789ABCDEF01234567"],
        &["org", "disable-client", "--fingerprint", "nothex"],
        &["org", "clients", "-n", "nobody"],
    ] {
        let out = inst.kt(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error"), "{args:?}: {}", out.stderr);
    }
    assert_eq!(list(&inst), before);
}

#[test]
fn a_stopped_database_is_an_environment_failure() {
    let inst = Instance::new("orgdown");
    let out = inst.kt(&["org", "list"]).expect(3);
    assert!(out.stderr.contains("cannot connect to the database"), "{}", out.stderr);
    assert!(out.stderr.contains("kt db start"), "{}", out.stderr);
}
