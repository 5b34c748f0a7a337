//! The registration form's defences: the form body, cross-site posts,
//! and repeated failures.
//!
//! Cross-site posting is refused twice over:
//!
//! - a browser's own word: a post whose `Sec-Fetch-Site` is not
//!   `same-origin` (or `none`, typed by the user), or whose `Origin` is not
//!   this server's (`https://` + the `Host` it was sent to), is refused;
//! - an anti-forgery field: the form carries HMAC-SHA256 of the token
//!   under a key derived from the server's OpenPGP secret key, and a post
//!   without the right value is refused. This was chosen over a
//!   double-submit cookie because it needs no state and no cookie, and it
//!   is the same on both servers of an HA pair (`kt ha sync` copies the
//!   secret key), so a form served by one is accepted by the other. Only
//!   whoever rendered the form knows the value, and it is bound to the
//!   token, so it is no use for another contact's link.
//!
//! Failed posts (a bad key, a refused form) are counted per token: after
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW`] the token's posts are
//! refused until the window passes. Tokens are 256-bit random, so
//! guessing them is hopeless and unknown tokens are not counted.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The form field of the key.
pub const KEY_FIELD: &str = "key";
/// The form field of the anti-forgery value.
pub const FORM_FIELD: &str = "form";
/// Failed posts allowed per token within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 20;
/// Seconds over which failed posts are counted.
pub const FAILURE_WINDOW: u64 = 3600;
/// Tokens whose failures are remembered at most (old ones go first).
const MAX_TRACKED: usize = 10_000;

/// The posted form.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form {
    pub key: String,
    pub form: String,
}

/// Parses an `application/x-www-form-urlencoded` body (`+` is a space,
/// `%XX` a byte). Unknown fields are ignored; a field given twice is
/// refused (which value would count?).
pub fn parse(body: &[u8]) -> Result<Form, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8")?;
    let mut form = Form::default();
    let (mut seen_key, mut seen_form) = (false, false);
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8()
            .map_err(|_| "the form is not UTF-8")?
            .into_owned();
        let (seen, slot) = match name {
            KEY_FIELD => (&mut seen_key, &mut form.key),
            FORM_FIELD => (&mut seen_form, &mut form.form),
            _ => continue,
        };
        if std::mem::replace(seen, true) {
            return Err("a form field is given twice");
        }
        *slot = value;
    }
    Ok(form)
}

/// Why a post looks cross-site, from the headers browsers send. A client
/// that sends neither header (curl, an old browser) passes here and is
/// held by the anti-forgery field.
///
/// The page's `Referrer-Policy: no-referrer` makes browsers send
/// `Origin: null` with its own form: `null` is accepted only when
/// `Sec-Fetch-Site` vouches that the post is same-origin.
pub fn cross_site(origin: Option<&str>, sec_fetch_site: Option<&str>, host: Option<&str>) -> Option<&'static str> {
    if let Some(site) = sec_fetch_site {
        if !matches!(site, "same-origin" | "none") {
            return Some("the form was sent from another site");
        }
    }
    if let Some(origin) = origin.filter(|o| !(*o == "null" && sec_fetch_site.is_some())) {
        let ours = host.map(|h| format!("https://{h}"));
        if ours.as_deref() != Some(origin) {
            return Some("the form was sent from another origin");
        }
    }
    None
}

/// The anti-forgery key and the per-token failure counts, shared by the
/// server's requests.
pub struct FormGuard {
    key: [u8; 32],
    failures: Mutex<HashMap<[u8; 32], (u32, u64)>>,
}

impl std::fmt::Debug for FormGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormGuard").field("key", &"***").finish()
    }
}

impl FormGuard {
    /// A guard whose key derives from `secret` (the server's secret key
    /// file): the same on every server that has the same secret key.
    pub fn new(secret: &[u8]) -> FormGuard {
        let mut h = Sha256::new();
        h.update(b"kt contact registration form v1\0");
        h.update(secret);
        FormGuard { key: h.finalize().into(), failures: Mutex::new(HashMap::new()) }
    }

    fn mac(&self, token: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(token.as_bytes());
        mac
    }

    /// The anti-forgery value of the form for `token`.
    pub fn field(&self, token: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(token).finalize().into_bytes())
    }

    /// Whether `given` is the form value for `token` (compared in constant time).
    pub fn field_ok(&self, token: &str, given: &str) -> bool {
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(given.trim()) {
            Ok(bytes) => self.mac(token).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Whether posts with this token may be tried at `now` (seconds).
    pub fn allowed(&self, token_hash: &[u8; 32], now: u64) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(token_hash) {
            Some(&(count, since)) => count < MAX_FAILURES || now.saturating_sub(since) >= FAILURE_WINDOW,
            None => true,
        }
    }

    /// Counts a failed post with this token at `now`.
    pub fn failed(&self, token_hash: &[u8; 32], now: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(token_hash) {
            failures.retain(|_, (_, since)| now.saturating_sub(*since) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED {
                if let Some(oldest) = failures.iter().min_by_key(|(_, (_, since))| *since).map(|(k, _)| *k) {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(*token_hash).or_insert((0, now));
        if now.saturating_sub(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse() {
        let form = parse(b"key=-----BEGIN+PGP%0D%0Aa%2Bb%3D&form=abc&submit=Register").unwrap();
        assert_eq!(form, Form { key: "-----BEGIN PGP\r\na+b=".into(), form: "abc".into() });
        assert_eq!(parse(b"").unwrap(), Form::default());
        assert!(parse(b"key=a&key=b").is_err());
        assert!(parse(b"key=%FF").is_err());
    }

    #[test]
    fn cross_site_posts_are_named() {
        let host = Some("kts.example.com:11371");
        assert_eq!(cross_site(None, None, host), None);
        assert_eq!(cross_site(Some("https://kts.example.com:11371"), Some("same-origin"), host), None);
        assert!(cross_site(None, Some("cross-site"), host).is_some());
        assert!(cross_site(None, Some("same-site"), host).is_some());
        assert!(cross_site(Some("https://evil.example"), None, host).is_some());
        assert!(cross_site(Some("null"), None, host).is_some());
        assert_eq!(cross_site(Some("null"), Some("same-origin"), host), None, "no-referrer: the page's own form");
        assert!(cross_site(Some("null"), Some("cross-site"), host).is_some());
        assert!(cross_site(Some("http://kts.example.com:11371"), None, host).is_some());
        assert!(cross_site(Some("https://kts.example.com:11371"), None, None).is_some());
    }

    #[test]
    fn the_form_value_is_bound_to_token_and_key() {
        let guard = FormGuard::new(b"secret one");
        let (a, b) = ("a".repeat(43), "b".repeat(43));
        let field = guard.field(&a);
        assert!(guard.field_ok(&a, &field));
        assert!(!guard.field_ok(&b, &field), "another token");
        assert!(!FormGuard::new(b"secret two").field_ok(&a, &field), "another server key");
        assert!(FormGuard::new(b"secret one").field_ok(&a, &field), "the HA peer with the same key");
        assert!(!guard.field_ok(&a, ""));
        assert!(!guard.field_ok(&a, "%%%"));
        assert_eq!(format!("{guard:?}"), "FormGuard { key: \"***\" }");
    }

    #[test]
    fn failures_are_limited_per_token_and_window() {
        let guard = FormGuard::new(b"k");
        let (t, u) = ([1u8; 32], [2u8; 32]);
        for _ in 0..MAX_FAILURES {
            assert!(guard.allowed(&t, 100));
            guard.failed(&t, 100);
        }
        assert!(!guard.allowed(&t, 100 + FAILURE_WINDOW - 1));
        assert!(guard.allowed(&u, 100), "another token is not held up");
        assert!(guard.allowed(&t, 100 + FAILURE_WINDOW), "the window passed");
        guard.failed(&t, 100 + FAILURE_WINDOW);
        assert!(guard.allowed(&t, 100 + FAILURE_WINDOW), "counting starts again");
    }
}
