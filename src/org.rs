//! Organizations and their clients (`kt org`, the documented
//! keytrustee-orgtool): add, list, auth secrets, enabling and disabling
//! clients. Every change is one statement or one transaction, so a refused
//! request changes nothing.

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Checks an organization name: letters, digits, `.`, `_`, `-`, starting
/// with a letter or digit, at most 64 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("invalid organization name {name:?}"))
            .with_hint("use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit"))
    }
}

/// Checks one contact address (`local@domain`, no spaces).
pub fn validate_contact(contact: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::usage(format!("invalid contact {contact:?}")).because(why));
    if contact.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces");
    }
    let Some((local, domain)) = contact.split_once('@') else { return bad("it has no '@'") };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return bad("it is not of the form name@domain");
    }
    if !local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c)) {
        return bad("the part before '@' has characters an address cannot have");
    }
    crate::hostname::validate(domain).map_err(|_| Error::usage(format!("invalid contact {contact:?}")).because("the domain is not a valid host name"))
}

/// Splits `a@x,b@y` (commas, optional spaces after them) into checked contacts.
pub fn parse_contacts(list: &str) -> Result<Vec<String>> {
    let mut contacts = Vec::new();
    for c in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        validate_contact(c)?;
        if !contacts.iter().any(|x: &String| x.eq_ignore_ascii_case(c)) {
            contacts.push(c.to_string());
        }
    }
    Ok(contacts)
}

fn db_error(what: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::env(what.to_string()).because_err(&e)
}

/// What `add` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Created,
    /// The organization existed: its contacts were merged in.
    Updated,
}

/// The documented organization states, as `kt org list` prints them
/// (keytrustee-orgtool's integer codes): 0 active, 1 disabled.
pub fn state_code(state: &str) -> i64 {
    match state {
        "active" => 0,
        _ => 1,
    }
}

/// What the documented listing shows as the expiration of an
/// organization that never expires.
pub const NO_EXPIRATION: &str = "9999-12-31T15:59:59";

/// A new organization's documented id: base64url (no padding) of 32
/// random bytes from the OS random source, 43 characters. Contact
/// registration links use the same form
/// ([`crate::registration::token::LinkToken`]), so this is their generator
/// too; the raw bytes are wiped after encoding.
pub fn new_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
}

/// A new organization's auth secret in the documented form: base64 of 16
/// random bytes (24 characters, `==` at the end).
pub fn new_auth_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Adds an organization with a random auth secret and documented id, or
/// merges contacts into an existing one (an existing contact is not added
/// twice; its id and secret stay). Every contact new to the organization
/// is queued the documented registration mail, with its link to `site`, in
/// the same transaction (src/mail/outbox.rs): the mail exists exactly when
/// the contact does, and sending it is the server's job, never this
/// command's, so an MTA that is down does not fail it.
pub fn add(db: &mut postgres::Client, name: &str, contacts: &[String], site: &crate::mail::messages::Site) -> Result<Added> {
    validate_name(name)?;
    for c in contacts {
        validate_contact(c)?;
    }
    let secret = new_auth_secret();
    let token = new_token();
    let mut tx = db.transaction().map_err(db_error("cannot start a transaction"))?;
    let existing = tx
        .query_opt("SELECT uuid::text, contacts FROM organizations WHERE name = $1 FOR UPDATE", &[&name])
        .map_err(db_error("cannot read the organization"))?;
    let (added, uuid, new_contacts) = match existing {
        None => {
            let uuid: String = tx
                .query_one(
                    "INSERT INTO organizations (name, auth_secret, contacts, token) VALUES ($1, $2, $3, $4) RETURNING uuid::text",
                    &[&name, &secret, &contacts, &token],
                )
                .map_err(db_error("cannot add the organization"))?
                .get(0);
            (Added::Created, uuid, contacts.to_vec())
        }
        Some(row) => {
            let uuid: String = row.get(0);
            let mut merged: Vec<String> = row.get(1);
            let mut new_contacts = Vec::new();
            for c in contacts {
                if !merged.iter().any(|m| m.eq_ignore_ascii_case(c)) {
                    merged.push(c.clone());
                    new_contacts.push(c.clone());
                }
            }
            tx.execute("UPDATE organizations SET contacts = $2 WHERE name = $1", &[&name, &merged])
                .map_err(db_error("cannot update the organization"))?;
            (Added::Updated, uuid, new_contacts)
        }
    };
    for contact in &new_contacts {
        crate::mail::outbox::queue_registration(&mut tx, site, &uuid, name, contact)?;
    }
    tx.commit().map_err(db_error("cannot commit"))?;
    Ok(added)
}

/// Queues a new registration link to contacts already in organization
/// `name` (`kt org invite`): the pages of an expired or used link tell the
/// contact to ask the administrator for a new one, and a link whose mail
/// was given up never arrived. The contacts' older links that are still
/// unused stop working (they expire now): a new link is asked for when an
/// old one may have gone astray. All in one transaction.
pub fn invite(db: &mut postgres::Client, name: &str, contacts: &[String], site: &crate::mail::messages::Site) -> Result<()> {
    validate_name(name)?;
    for c in contacts {
        validate_contact(c)?;
    }
    if contacts.is_empty() {
        return Err(Error::usage("no contact to invite").with_hint("name them with -c ADDRESS[,ADDRESS...]"));
    }
    let mut tx = db.transaction().map_err(db_error("cannot start a transaction"))?;
    let row = tx
        .query_opt("SELECT uuid::text, contacts FROM organizations WHERE name = $1 FOR UPDATE", &[&name])
        .map_err(db_error("cannot read the organization"))?
        .ok_or_else(|| Error::usage(format!("no organization {name:?}")).with_hint("kt org list shows the organizations"))?;
    let (uuid, known): (String, Vec<String>) = (row.get(0), row.get(1));
    for c in contacts {
        let Some(contact) = known.iter().find(|k| k.eq_ignore_ascii_case(c)) else {
            return Err(Error::usage(format!("{c} is not a contact of {name}"))
                .with_hint(format!("add it (it is mailed a link then): kt org add -n {name} -c {c}")));
        };
        tx.execute(
            "UPDATE contact_tokens SET expires = now() WHERE organization = $1::text::uuid \
             AND lower(contact) = lower($2) AND used IS NULL AND expires > now()",
            &[&uuid, contact],
        )
        .map_err(db_error("cannot retire the contact's older links"))?;
        crate::mail::outbox::queue_registration(&mut tx, site, &uuid, name, contact)?;
    }
    tx.commit().map_err(db_error("cannot commit"))?;
    Ok(())
}

/// Every organization in the documented keytrustee-orgtool JSON shape,
/// keyed by name: `state` as its integer code ([`state_code`]),
/// `expiration` [`NO_EXPIRATION`] when there is none, `creation` in UTC
/// without fraction, `uuid` the documented 43-character id (the RFC 4122
/// uuid for organizations made before kt had one, shown as it is), and
/// `key_info` null until a contact registered a key, then the registered
/// keys by contact ([`contact_keys`]).
///
/// `extended` adds kt's own fields (`kt_state`, `kt_id`, `clients`,
/// `pending_clients`) that the documented format does not have.
pub fn list(db: &mut postgres::Client, extended: bool) -> Result<Value> {
    let rows = db
        .query(
            "SELECT o.name, coalesce(o.token, o.uuid::text), o.auth_secret, o.contacts, o.state, \
             to_char(o.creation AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
             to_char(o.expiration AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), o.uuid::text, \
             (SELECT count(*) FROM clients c WHERE c.organization = o.uuid), \
             (SELECT count(*) FROM clients c WHERE c.organization = o.uuid AND c.state = 'pending') \
             FROM organizations o ORDER BY o.name",
            &[],
        )
        .map_err(db_error("cannot list organizations"))?;
    let mut keys = contact_keys(db)?;
    let mut out = Map::new();
    for r in rows {
        let name: String = r.get(0);
        let state: String = r.get(4);
        let mut entry = json!({
            "auth_secret": r.get::<_, String>(2),
            "contacts": r.get::<_, Vec<String>>(3),
            "creation": r.get::<_, Option<String>>(5),
            "expiration": r.get::<_, Option<String>>(6).unwrap_or_else(|| NO_EXPIRATION.to_string()),
            "key_info": keys.remove(&name).map(Value::Object).unwrap_or(Value::Null),
            "name": name,
            "state": state_code(&state),
            "uuid": r.get::<_, String>(1),
        });
        if extended {
            entry["kt_state"] = json!(state);
            entry["kt_id"] = json!(r.get::<_, String>(7));
            entry["clients"] = json!(r.get::<_, i64>(8));
            entry["pending_clients"] = json!(r.get::<_, i64>(9));
        }
        out.insert(name, entry);
    }
    Ok(Value::Object(out))
}

/// The contacts' registered OpenPGP keys (the registration page), by
/// organization name, each organization's keyed by contact:
/// `{"fingerprint": "40 HEX", "user_ids": [...], "registered": "UTC"}`.
/// The armored key itself stays in the database (`contact_keys`).
fn contact_keys(db: &mut postgres::Client) -> Result<std::collections::HashMap<String, Map<String, Value>>> {
    let rows = db
        .query(
            "SELECT o.name, k.contact, k.fingerprint, k.user_ids, \
             to_char(k.registered AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
             FROM contact_keys k JOIN organizations o ON o.uuid = k.organization ORDER BY o.name, k.contact",
            &[],
        )
        .map_err(db_error("cannot list the contacts' keys"))?;
    let mut out: std::collections::HashMap<String, Map<String, Value>> = std::collections::HashMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().insert(
            r.get(1),
            json!({
                "fingerprint": r.get::<_, String>(2),
                "user_ids": r.get::<_, Vec<String>>(3),
                "registered": r.get::<_, Option<String>>(4),
            }),
        );
    }
    Ok(out)
}

/// Sets the auth secret ("" for automatic approval of new clients).
pub fn set_auth(db: &mut postgres::Client, name: &str, secret: &str) -> Result<()> {
    validate_name(name)?;
    if secret.chars().any(|c| c.is_control()) || secret.len() > 1024 {
        return Err(Error::usage("the auth secret must be printable and at most 1024 bytes"));
    }
    let n = db
        .execute("UPDATE organizations SET auth_secret = $2 WHERE name = $1", &[&name, &secret])
        .map_err(db_error("cannot set the auth secret"))?;
    if n == 0 {
        return Err(unknown_org(name));
    }
    Ok(())
}

fn unknown_org(name: &str) -> Error {
    Error::usage(format!("no organization named {name:?}")).with_hint("see `kt org list`")
}

/// Sets a client's state (`active` or `disabled`); returns the state it
/// had, so that enabling a pending client can be told as its approval.
pub fn set_client_state(db: &mut postgres::Client, fingerprint: &str, state: &str) -> Result<String> {
    let fingerprint = normalize_fingerprint(fingerprint)?;
    let row = db
        .query_opt(
            "UPDATE clients c SET state = $2 FROM clients old \
             WHERE c.fingerprint = $1 AND old.fingerprint = c.fingerprint RETURNING old.state",
            &[&fingerprint, &state],
        )
        .map_err(db_error("cannot change the client"))?;
    match row {
        Some(row) => Ok(row.get(0)),
        None => Err(no_client(&fingerprint)),
    }
}

fn no_client(fingerprint: &str) -> Error {
    Error::usage(format!("no client with fingerprint {fingerprint}")).with_hint("see `kt org clients`")
}

/// Refuses a pending client: its registration is removed, so that the
/// same key may ask again later (and is pending again). A client that was
/// approved is not touched: that is `disable-client`.
pub fn deny_client(db: &mut postgres::Client, fingerprint: &str) -> Result<()> {
    let fingerprint = normalize_fingerprint(fingerprint)?;
    let mut tx = db.transaction().map_err(db_error("cannot start a transaction"))?;
    let state: Option<String> = tx
        .query_opt("SELECT state FROM clients WHERE fingerprint = $1 FOR UPDATE", &[&fingerprint])
        .map_err(db_error("cannot read the client"))?
        .map(|r| r.get(0));
    match state.as_deref() {
        None => return Err(no_client(&fingerprint)),
        Some("pending") => {}
        Some(other) => {
            return Err(Error::usage(format!("client {fingerprint} is not pending approval (it is {other})"))
                .with_hint(format!("to stop it acting: kt org disable-client --fingerprint {fingerprint}")))
        }
    }
    tx.execute("DELETE FROM clients WHERE fingerprint = $1 AND state = 'pending'", &[&fingerprint])
        .map_err(db_error("cannot remove the client"))?;
    tx.commit().map_err(db_error("cannot commit"))?;
    Ok(())
}

/// Accepts a fingerprint with spaces or lower case, or in the
/// `<bits><algo>/<FPR>` form; returns the 40 upper-case hex digits.
pub fn normalize_fingerprint(input: &str) -> Result<String> {
    let bare = input.rsplit('/').next().unwrap_or(input);
    let fpr: String = bare.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    if crate::auth::valid_fingerprint(&fpr) {
        Ok(fpr)
    } else {
        Err(Error::usage(format!("invalid fingerprint {input:?}")).with_hint("give the 40 hex digits of the client key"))
    }
}

/// The clients, of one organization or all, as JSON: state (`active`,
/// `disabled`, or `pending` approval), the host name the client gave at
/// registration (`claimed_host`: its own claim, not verified, so named that
/// no administrator takes it for a checked fact) and when it registered
/// (`creation`, UTC).
pub fn clients(db: &mut postgres::Client, org: Option<&str>) -> Result<Value> {
    if let Some(name) = org {
        validate_name(name)?;
        let exists = db
            .query_opt("SELECT 1 FROM organizations WHERE name = $1", &[&name])
            .map_err(db_error("cannot read organizations"))?;
        if exists.is_none() {
            return Err(unknown_org(name));
        }
    }
    let rows = db
        .query(
            "SELECT c.fingerprint, o.name, c.state, \
             to_char(c.creation AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
             (SELECT count(*) FROM deposits d WHERE d.owner = c.fingerprint), c.host \
             FROM clients c JOIN organizations o ON o.uuid = c.organization \
             WHERE $1::text IS NULL OR o.name = $1 ORDER BY o.name, c.creation, c.fingerprint",
            &[&org],
        )
        .map_err(db_error("cannot list clients"))?;
    Ok(Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "fingerprint": r.get::<_, String>(0),
                    "organization": r.get::<_, String>(1),
                    "state": r.get::<_, String>(2),
                    "creation": r.get::<_, Option<String>>(3),
                    "deposits": r.get::<_, i64>(4),
                    "claimed_host": r.get::<_, Option<String>>(5),
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_contacts() {
        assert!(validate_name("acme-corp.eu_1").is_ok());
        for bad in ["", "acme corp", "-acme", "acme;drop", "ä", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_contacts("a@x.com, b@y.org,a@x.com").unwrap(), ["a@x.com", "b@y.org"]);
        for bad in ["a b@x.com", "nobody", "a@", "@x.com", "a@b@c", "a@bad_domain"] {
            assert!(parse_contacts(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_fingerprint("4096R/4edc46882386c827e20deea2d850aca33bedb0d1").unwrap(),
            "4EDC46882386C827E20DEEA2D850ACA33BEDB0D1"
        );
        assert!(normalize_fingerprint("XYZ").is_err());
    }

    #[test]
    fn documented_formats() {
        let token = new_token();
        assert_eq!(token.len(), 43, "{token}");
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");
        assert_ne!(token, new_token());
        let secret = new_auth_secret();
        assert_eq!(secret.len(), 24, "{secret}");
        assert!(secret.ends_with("=="), "{secret}");
        let decoded = base64::engine::general_purpose::STANDARD.decode(&secret).unwrap();
        assert_eq!(decoded.len(), 16);
        assert_eq!((state_code("active"), state_code("disabled")), (0, 1));
    }
}
