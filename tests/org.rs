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
    documented_fields(acme);
    // A new organization gets a random auth secret and id.
    assert_ne!(acme["auth_secret"], orgs["globex"]["auth_secret"]);
    assert_ne!(acme["uuid"], orgs["globex"]["uuid"]);

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

/// The documented keytrustee-orgtool values of a new, active organization:
/// `{"auth_secret": "/qFiICsyYqMLhdTznNY3Nw==", "creation": "2013-12-02T09:55:43",
/// "expiration": "9999-12-31T15:59:59", "key_info": null, "state": 0,
/// "uuid": "xY3Z8xCwMuKZMiTYJa0mZOdhMVdxhyCUOc6vSNc9I8X"}`.
pub fn documented_fields(org: &serde_json::Value) {
    use base64::Engine;
    assert_eq!(org["state"], 0, "{org}");
    assert_eq!(org["expiration"], "9999-12-31T15:59:59", "{org}");
    assert_eq!(org["key_info"], serde_json::Value::Null, "{org}");
    let creation = org["creation"].as_str().unwrap();
    assert!(
        creation.len() == 19
            && creation.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                _ => c.is_ascii_digit(),
            }),
        "{creation}"
    );
    let uuid = org["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 43, "{uuid}");
    assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(uuid).unwrap().len(), 32, "{uuid}");
    let secret = org["auth_secret"].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(secret).unwrap().len(), 16, "{secret}");
    assert_eq!(secret.len(), 24, "{secret}");
}

#[test]
fn the_documented_format_and_the_extended_one() {
    let inst = Instance::new("orgformat");
    inst.kt(&["db", "start"]).expect(0);
    inst.kt(&["org", "add", "-n", "zeta", "-c", "finance@example.com,root@example.com"]).expect(0);
    inst.kt(&["org", "add", "-n", "old", "-c", "root@example.com"]).expect(0);
    // An organization made before kt had documented ids: RFC 4122 uuid,
    // 32-letter secret. It is shown as it is (a client that holds the
    // secret must still register with it).
    let old_secret = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
    inst.psql("keytrustee", &format!("UPDATE organizations SET token = NULL, auth_secret = '{old_secret}' WHERE name = 'old'"))
        .expect(0);
    let orgs = list(&inst);
    documented_fields(&orgs["zeta"]);
    assert_eq!(orgs["zeta"]["contacts"], serde_json::json!(["finance@example.com", "root@example.com"]));
    let old = &orgs["old"];
    assert_eq!(old["auth_secret"], old_secret);
    let old_uuid = old["uuid"].as_str().unwrap();
    let rfc4122 = inst.psql("keytrustee", "SELECT uuid FROM organizations WHERE name = 'old'").expect(0).stdout;
    assert_eq!(old_uuid, rfc4122.trim());
    assert_eq!((old["state"].clone(), old["expiration"].clone()), (serde_json::json!(0), serde_json::json!("9999-12-31T15:59:59")));
    // A disabled organization is state 1; an expiration is shown in the same form.
    inst.psql(
        "keytrustee",
        "UPDATE organizations SET state = 'disabled', expiration = '2030-01-02 03:04:05.678+00' WHERE name = 'old'",
    )
    .expect(0);
    let orgs = list(&inst);
    assert_eq!(orgs["old"]["state"], 1);
    assert_eq!(orgs["old"]["expiration"], "2030-01-02T03:04:05");

    // kt's own fields only when asked for.
    for flag in ["--json-extended", "--verbose"] {
        let out = inst.kt(&["org", "list", flag]).expect(0);
        let ext: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(ext["old"]["kt_state"], "disabled", "{flag}");
        assert_eq!(ext["zeta"]["kt_state"], "active", "{flag}");
        assert_eq!(ext["zeta"]["clients"], 0, "{flag}");
        assert_eq!(ext["zeta"]["pending_clients"], 0, "{flag}");
        assert_eq!(ext["old"]["kt_id"], old_uuid, "{flag}");
        assert_eq!(ext["zeta"]["uuid"], orgs["zeta"]["uuid"], "{flag}");
    }
    assert!(list(&inst)["zeta"].get("kt_state").is_none());
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
        &["org", "deny-client", "--fingerprint", "0123456789ABCDEF0123456789ABCDEF01234567"],
        &["org", "deny-client", "--fingerprint", "nothex"],
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
