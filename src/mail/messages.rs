//! The texts kt mails to contacts. Pure functions of their facts, so that
//! tests pin them and the caller decides when (in which transaction) a
//! message is queued. A line never starts with "From " (an mbox would
//! change it, and the signature with it).

use crate::registration::token::LinkToken;

/// The subject of the documented contact registration message.
pub const REGISTRATION_SUBJECT: &str = "KeyTrustee Contact Registration";
/// How long a registration link is valid (the documented 12 hours).
pub const LINK_VALID_HOURS: i64 = 12;

/// Where links point: the server's name (`HOSTNAME`) and its port (the
/// port of `LISTEN`, 11371 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub hostname: String,
    pub port: u16,
}

impl Site {
    pub fn for_settings(settings: &crate::settings::Settings) -> Site {
        Site { hostname: settings.hostname.clone(), port: settings.listen.port() }
    }

    fn base(&self) -> String {
        format!("https://{}:{}", self.hostname, self.port)
    }
}

/// A message as queued: subject and plain-text body.
pub struct Text {
    pub subject: String,
    pub body: String,
}

/// Shown without the body: a registration body holds its link's token.
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text").field("subject", &self.subject).field("body", &"***").finish()
    }
}

/// The documented "KeyTrustee Contact Registration": the single-use link
/// `https://<host>:<port>/?q=<token>` that "will expire in 12 hours, at
/// <UTC time>". `expires_utc` is `YYYY-MM-DD HH:MM:SS` in UTC (the
/// database's `expires` of the token row, so the two agree).
pub fn registration(site: &Site, organization: &str, token: &LinkToken, expires_utc: &str) -> Text {
    let base = site.base();
    let body = format!(
        "Hello,\n\
         \n\
         You have been added as a contact of the organization \"{organization}\"\n\
         on the Key Trustee Server {host}.\n\
         \n\
         To register your OpenPGP (GPG) public key, follow this link:\n\
         \n\
         {base}/?q={token}\n\
         \n\
         and paste the entire key, including the BEGIN and END strings.\n\
         Mail from this server to you will then be encrypted to that key.\n\
         \n\
         This link will expire in {LINK_VALID_HOURS} hours, at {expires_utc} UTC.\n\
         It can be used once.\n\
         \n\
         Every message from this server is signed with its OpenPGP key:\n\
         {base}/?a=pubkey\n\
         ({base}/?a=fingerprint gives its fingerprint.)\n",
        host = site.hostname,
        token = token.expose(),
    );
    Text { subject: REGISTRATION_SUBJECT.to_string(), body }
}

/// The facts of a client's registration that its organization's contacts
/// are told.
#[derive(Debug, Clone)]
pub struct ClientFacts<'a> {
    pub organization: &'a str,
    pub fingerprint: &'a str,
    /// The host name the client gave: its claim, not verified.
    pub host: Option<&'a str>,
    /// When, `YYYY-MM-DD HH:MM:SS` UTC.
    pub time_utc: &'a str,
    /// The Key Trustee Server's own name (`HOSTNAME`).
    pub server: &'a str,
}

fn client_lines(f: &ClientFacts<'_>) -> String {
    let host = match f.host {
        Some(h) => format!("{h} (the client's own claim, not verified)"),
        None => "(not given)".to_string(),
    };
    format!(
        "Organization: {}\nFingerprint:  {}\nHost name:    {host}\nTime:         {} UTC\nServer:       {}\n",
        f.organization, f.fingerprint, f.time_utc, f.server
    )
}

/// A client registered with the organization and is active.
pub fn client_registered(f: &ClientFacts<'_>) -> Text {
    let body = format!(
        "Hello,\n\
         \n\
         A new client registered with your organization on the Key Trustee\n\
         Server and is active:\n\
         \n\
         {}\n\
         If you do not know this client, disable it on the server:\n\
         \n\
         kt org disable-client --fingerprint {}\n",
        client_lines(f),
        f.fingerprint
    );
    Text { subject: format!("KeyTrustee: new client registered with {}", f.organization), body }
}

/// A client asks to register and waits for an administrator's approval.
pub fn client_pending(f: &ClientFacts<'_>) -> Text {
    let body = format!(
        "Hello,\n\
         \n\
         A client asks to register with your organization on the Key Trustee\n\
         Server and is waiting for approval:\n\
         \n\
         {}\n\
         To approve it, an administrator of the server runs:\n\
         \n\
         kt org enable-client --fingerprint {fpr}\n\
         \n\
         To refuse it:\n\
         \n\
         kt org deny-client --fingerprint {fpr}\n\
         \n\
         Until then it cannot use the server. You are told again at most once\n\
         an hour while it keeps asking.\n",
        client_lines(f),
        fpr = f.fingerprint
    );
    Text { subject: format!("KeyTrustee: client awaiting approval for {}", f.organization), body }
}

/// The test message of `kt mail test`.
pub fn test_message(server: &str) -> Text {
    Text {
        subject: format!("KeyTrustee test message from {server}"),
        body: format!(
            "This is a test message from the Key Trustee Server {server} (kt mail test).\n\
             It is signed with the server's OpenPGP key.\n"
        ),
    }
}

/// Now as `YYYY-MM-DD HH:MM:SS` (UTC), the form the messages use.
pub fn utc_now() -> String {
    crate::clock::rfc3339_now().trim_end_matches('Z').replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_text_has_the_documented_parts() {
        let site = Site { hostname: "kts01.example.com".into(), port: 11371 };
        let token = LinkToken::new();
        let t = registration(&site, "acme", &token, "2026-11-30 01:02:03");
        assert_eq!(t.subject, "KeyTrustee Contact Registration");
        assert!(t.body.contains(&format!("https://kts01.example.com:11371/?q={}\n", token.expose())), "{}", t.body);
        assert!(t.body.contains("will expire in 12 hours, at 2026-11-30 01:02:03 UTC"), "{}", t.body);
        assert!(t.body.contains("including the BEGIN and END strings"));
        assert!(!t.body.lines().any(|l| l.starts_with("From ")));
        assert!(!format!("{t:?}").contains(token.expose()));
    }

    #[test]
    fn client_texts_name_the_facts_and_the_command() {
        let f = ClientFacts {
            organization: "acme",
            fingerprint: "4EDC46882386C827E20DEEA2D850ACA33BEDB0D1",
            host: Some("web01.acme.example"),
            time_utc: "2026-11-29 12:00:00",
            server: "kts01",
        };
        let p = client_pending(&f);
        assert!(p.body.contains("kt org enable-client --fingerprint 4EDC46882386C827E20DEEA2D850ACA33BEDB0D1"));
        assert!(p.body.contains("web01.acme.example (the client's own claim, not verified)"));
        assert!(p.body.contains("2026-11-29 12:00:00 UTC"));
        let r = client_registered(&f);
        assert!(r.subject.contains("acme") && r.body.contains("4EDC46882386C827E20DEEA2D850ACA33BEDB0D1"));
        assert!(!r.body.contains("enable-client"));
        assert_eq!(utc_now().len(), 19);
    }
}
