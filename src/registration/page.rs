//! The registration pages: one small HTML document each, no external
//! assets, no script (the form works as plain HTML), every value escaped.
//!
//! Every page carries the same headers ([`headers`]): a Content-Security-
//! Policy that allows nothing but its own inline style (by hash) and a
//! post back to this server, no framing, no `<base>`; `nosniff`; no
//! referrer (the token is in the URL, and a link followed from the page
//! must not carry it away); and no caching (the page shows who the token
//! belongs to, and a used token's form must not come back from a cache).

use std::sync::OnceLock;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::key::{grouped, CheckedKey};
use super::token::Holder;

/// The page's one style sheet, allowed by its hash in the policy.
const STYLE: &str = "body{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.4em}textarea{width:100%;font-family:monospace;font-size:.85em}\
.problem{border-left:4px solid #b00;padding:.3em .8em;background:#fdecec}\
.done{border-left:4px solid #080;padding:.3em .8em;background:#ecfdec}\
code,.fpr{font-family:monospace}.fpr{font-size:1.1em;font-weight:bold}\
dt{font-weight:bold}button{font-size:1em;padding:.4em 1.2em}";

/// The page title, as the registration mail's subject names it.
pub const TITLE: &str = "KeyTrustee Contact Registration";

/// An HTML page and its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub html: String,
}

/// The Content-Security-Policy of every page.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        format!("default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    })
}

/// The headers every page is served with (besides its status).
pub fn headers() -> [(&'static str, &'static str); 6] {
    [
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", content_security_policy()),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ]
}

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn document(status: u16, heading: &str, body: &str) -> Page {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{heading}</h1>\n{body}\n</body></html>\n",
        title = escape(TITLE),
        heading = escape(heading),
    );
    Page { status, html }
}

fn holder_lines(holder: &Holder) -> String {
    format!(
        "<dl><dt>Organization</dt><dd id=\"organization\">{}</dd><dt>Contact</dt><dd id=\"contact\">{}</dd></dl>",
        escape(&holder.organization),
        escape(&holder.contact)
    )
}

/// The form for a valid token; with `problem`, shown again after a
/// refused key (status 400) so that the contact can correct it.
pub fn form(holder: &Holder, token: &str, form_value: &str, problem: Option<&str>) -> Page {
    let problem_html = problem
        .map(|p| format!("<p class=\"problem\" id=\"problem\">The key was not accepted: {}. Nothing was stored; correct it and send it again.</p>\n", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "{holder}\n{problem_html}<p>Paste your OpenPGP public key below: the entire key, including the \
         <code>-----BEGIN PGP PUBLIC KEY BLOCK-----</code> and <code>-----END PGP PUBLIC KEY BLOCK-----</code> lines. \
         With GnuPG: <code>gpg --armor --export {contact}</code>.</p>\n\
         <p>This link works once and expires at {expires}.</p>\n\
         <form method=\"post\" action=\"/?q={token}\" accept-charset=\"utf-8\">\n\
         <input type=\"hidden\" name=\"form\" value=\"{form_value}\">\n\
         <p><textarea id=\"key\" name=\"key\" rows=\"18\" required \
         placeholder=\"-----BEGIN PGP PUBLIC KEY BLOCK-----\"></textarea></p>\n\
         <p><button type=\"submit\" id=\"submit\">Register this key</button></p>\n</form>",
        holder = holder_lines(holder),
        contact = escape(&holder.contact),
        expires = escape(&holder.expires),
        token = escape(token),
        form_value = escape(form_value),
    );
    document(if problem.is_some() { 400 } else { 200 }, TITLE, &body)
}

/// The answer to a key that was stored.
pub fn registered(holder: &Holder, key: &CheckedKey) -> Page {
    let user_ids: String = key.user_ids.iter().map(|u| format!("<li>{}</li>", escape(u))).collect();
    let body = format!(
        "<p class=\"done\" id=\"result\">Your key is registered.</p>\n{holder}\n\
         <p>Fingerprint: <span class=\"fpr\" id=\"fingerprint\">{fpr}</span></p>\n\
         <p>User IDs:</p><ul id=\"user-ids\">{user_ids}</ul>\n\
         <p>Mail from this server to you will be encrypted to this key. This link is now used; \
         to register another key, ask the server's administrator for a new link.</p>",
        holder = holder_lines(holder),
        fpr = escape(&grouped(&key.fingerprint)),
    );
    document(200, "Key registered", &body)
}

/// A page that refuses: `status`, a heading and the explanation.
pub fn refused(status: u16, heading: &str, message: &str) -> Page {
    document(status, heading, &format!("<p class=\"problem\" id=\"problem\">{}</p>", escape(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            organization: "acme".into(),
            contact: "<script>alert(1)</script>@x".into(),
            expires: "2026-01-01 00:00:00 UTC".into(),
        }
    }

    #[test]
    fn every_value_is_escaped() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let page = form(&holder(), "tok\"en", "v<", Some("bad <key>"));
        assert_eq!(page.status, 400);
        assert!(!page.html.contains("<script>"), "{}", page.html);
        assert!(page.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;@x"));
        assert!(page.html.contains("bad &lt;key&gt;"));
        assert!(page.html.contains("action=\"/?q=tok&quot;en\""));
        let key = CheckedKey { fingerprint: "AB".repeat(20), user_ids: vec!["Eve <e@x> & <b>".into()], armored: String::new() };
        let done = registered(&holder(), &key);
        assert!(done.html.contains("<li>Eve &lt;e@x&gt; &amp; &lt;b&gt;</li>"), "{}", done.html);
        assert!(done.html.contains("ABAB ABAB"));
    }

    #[test]
    fn the_policy_allows_the_style_and_nothing_else() {
        let policy = content_security_policy();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        assert!(policy.starts_with("default-src 'none'; "), "{policy}");
        assert!(policy.contains(&format!("style-src 'sha256-{hash}'")), "{policy}");
        for part in ["form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
            assert!(policy.contains(part), "{policy}");
        }
        let page = form(&holder(), "t", "v", None);
        assert_eq!(page.status, 200);
        assert!(page.html.contains(&format!("<style>{STYLE}</style>")));
        assert!(!page.html.contains("<script") && !page.html.contains("src="), "no script, no external asset");
        let names: Vec<_> = headers().iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"referrer-policy") && names.contains(&"cache-control"));
    }
}
