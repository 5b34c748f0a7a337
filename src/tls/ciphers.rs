//! The documented `CIPHERS` setting, read as an OpenSSL cipher string and
//! mapped onto the nine AEAD suites rustls offers.
//!
//! Operators bring cipher strings written for the OpenSSL-based Key
//! Trustee Server (the documentation's example is `AES256:CAMELLIA256-SHA`),
//! so the string is read with OpenSSL's rules (ciphers(1)):
//!
//! - elements separated by `:` (also `,`, `;` or spaces);
//! - each element a suite name (OpenSSL's or IANA's), a keyword (`HIGH`,
//!   `AES256`, `ECDHE`, `aRSA`, ...), or keywords joined by `+` (all must
//!   hold: `ECDHE+AESGCM`);
//! - a prefix `!` removes the matches for good, `-` removes them (a later
//!   element may add them again), `+` moves them to the end; no prefix
//!   appends the matches not yet in the list;
//! - `@STRENGTH` sorts by key length, strongest first; `@SECLEVEL=N` drops
//!   suites weaker than the level's bits (its certificate rules are not
//!   applied here: a warning says so).
//!
//! What kt cannot offer is never silently narrowed away from the operator:
//! every element that adds nothing kt offers (a CAMELLIA or CBC suite, a
//! `3DES` keyword, a typo) is named in a warning that the server logs once
//! at start, and so is every word kt does not know in a removal or a move
//! (`!CHACHA` for `!CHACHA20` would otherwise leave the suites on unsaid). The string is refused only when it leaves no TLS 1.2 suite,
//! as OpenSSL refuses it ("no cipher match").
//!
//! TLS 1.3, as in OpenSSL: a cipher string does not govern TLS 1.3, whose
//! three suites stay on, strongest first, unless the string adds TLS 1.3
//! suites by name itself (kt's extension, e.g. `TLS_AES_256_GCM_SHA384`);
//! then exactly those it leaves in the list are offered, and a string
//! naming only TLS 1.3 suites offers no TLS 1.2 suite. Removing a TLS 1.3
//! suite by name (`!TLS_AES_128_GCM_SHA256`) keeps the other two.

use rustls::crypto::aws_lc_rs;
use rustls::{CipherSuite, SupportedCipherSuite};

use crate::error::{Error, Result};

/// What a suite is made of, for the keywords.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Rsa,
    Ecdsa,
    /// TLS 1.3: authentication is not part of the suite.
    Any,
}

#[derive(Clone, Copy, PartialEq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20,
}

struct Suite {
    id: CipherSuite,
    openssl: &'static str,
    tls13: bool,
    auth: Auth,
    cipher: Cipher,
    /// The handshake hash: `SHA256` or `SHA384` in keyword terms.
    sha384: bool,
}

impl Suite {
    fn bits(&self) -> u16 {
        match self.cipher {
            Cipher::Aes128Gcm => 128,
            Cipher::Aes256Gcm | Cipher::Chacha20 => 256,
        }
    }
}

const fn suite(id: CipherSuite, openssl: &'static str, tls13: bool, auth: Auth, cipher: Cipher, sha384: bool) -> Suite {
    Suite { id, openssl, tls13, auth, cipher, sha384 }
}

/// Every suite rustls offers, in OpenSSL's default order (TLS 1.3 first,
/// then strongest first, ECDSA before RSA).
const SUITES: &[Suite] = &[
    suite(CipherSuite::TLS13_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", true, Auth::Any, Cipher::Aes256Gcm, true),
    suite(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", true, Auth::Any, Cipher::Chacha20, false),
    suite(CipherSuite::TLS13_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", true, Auth::Any, Cipher::Aes128Gcm, false),
    suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384", false, Auth::Ecdsa, Cipher::Aes256Gcm, true),
    suite(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384", false, Auth::Rsa, Cipher::Aes256Gcm, true),
    suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305", false, Auth::Ecdsa, Cipher::Chacha20, false),
    suite(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305", false, Auth::Rsa, Cipher::Chacha20, false),
    suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256", false, Auth::Ecdsa, Cipher::Aes128Gcm, false),
    suite(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256", false, Auth::Rsa, Cipher::Aes128Gcm, false),
];

/// OpenSSL keywords that select none of kt's suites (what they name is not
/// in rustls: no CBC, no RSA or DH key exchange, no CAMELLIA, ...). Adding
/// them is warned about; removing them is what kt does anyway.
const KEYWORDS_NOT_OFFERED: &[&str] = &[
    "COMPLEMENTOFDEFAULT", "COMPLEMENTOFALL", "MEDIUM", "LOW", "EXPORT", "EXP", "NULL", "eNULL", "aNULL",
    "SSLv3", "TLSv1", "TLSv1.0", "SHA1", "SHA", "MD5", "3DES", "DES", "RC4", "RC2", "IDEA", "SEED",
    "CAMELLIA", "CAMELLIA128", "CAMELLIA256", "ARIA", "ARIA128", "ARIA256", "ARIAGCM", "AESCCM", "AESCCM8",
    "PSK", "kPSK", "aPSK", "kECDHEPSK", "kDHEPSK", "kRSAPSK", "ECDHEPSK", "DHEPSK", "RSAPSK", "SRP", "kSRP",
    "aSRP", "DH", "DHE", "EDH", "kDHE", "kEDH", "ADH", "AECDH", "aDSS", "DSS", "kDH", "aDH", "kDHr", "kDHd",
    "kECDH", "kECDHr", "kECDHe", "aECDH", "kRSA", "GOST94", "GOST89MAC", "kGOST", "aGOST", "aGOST01",
    "aGOST12", "GOST2012", "SUITEB128", "SUITEB128ONLY", "SUITEB192", "CBC", "kEECDHPSK",
];

/// The suites an OpenSSL keyword selects among kt's TLS 1.2 suites;
/// `None` when kt does not know the word at all. Keywords never select
/// TLS 1.3 suites, as in OpenSSL.
fn keyword(word: &str) -> Option<Vec<usize>> {
    let select = |f: &dyn Fn(&Suite) -> bool| -> Option<Vec<usize>> {
        Some(SUITES.iter().enumerate().filter(|(_, s)| !s.tls13 && f(s)).map(|(i, _)| i).collect())
    };
    match word {
        "ALL" | "DEFAULT" | "HIGH" | "TLSv1.2" | "AEAD" | "kECDHE" | "ECDHE" | "EECDH" | "kEECDH" | "ECDH" => {
            select(&|_| true)
        }
        // kt's only AES is AES-GCM.
        "AES" | "AESGCM" => select(&|s| s.cipher != Cipher::Chacha20),
        "AES128" => select(&|s| s.cipher == Cipher::Aes128Gcm),
        "AES256" => select(&|s| s.cipher == Cipher::Aes256Gcm),
        "CHACHA20" => select(&|s| s.cipher == Cipher::Chacha20),
        "aRSA" | "RSA" => select(&|s| s.auth == Auth::Rsa),
        "aECDSA" | "ECDSA" => select(&|s| s.auth == Auth::Ecdsa),
        "SHA256" => select(&|s| !s.sha384),
        "SHA384" => select(&|s| s.sha384),
        _ if KEYWORDS_NOT_OFFERED.contains(&word) => Some(Vec::new()),
        _ => None,
    }
}

/// A suite by its OpenSSL or IANA name (any case).
fn by_name(name: &str) -> Option<usize> {
    SUITES.iter().position(|s| {
        s.openssl.eq_ignore_ascii_case(name) || s.id.as_str().is_some_and(|iana| iana.eq_ignore_ascii_case(name))
    })
}

/// The suites `CIPHERS` selects, in preference order, and what it asked
/// for that kt cannot offer.
pub struct Selection {
    pub suites: Vec<SupportedCipherSuite>,
    /// One line per element that added nothing kt offers; logged once by
    /// the server at start.
    pub warnings: Vec<String>,
}

/// Reads an OpenSSL cipher string (module doc). Empty: every suite.
pub fn select(setting: &str) -> Result<Selection> {
    let elements: Vec<&str> = setting.split([':', ',', ';', ' ']).map(str::trim).filter(|e| !e.is_empty()).collect();
    let mut warnings = Vec::new();
    // OpenSSL's model: an ordered list of the selected suites, and the
    // suites removed for good.
    let mut list: Vec<usize> = Vec::new();
    let mut killed = [false; SUITES.len()];
    // A TLS 1.3 suite added by name switches TLS 1.3 to "as listed".
    let mut names_tls13 = false;
    let mut tls13_removed = [false; SUITES.len()];
    for element in &elements {
        let (op, body) = match element.as_bytes()[0] {
            b'!' | b'-' | b'+' => (element.as_bytes()[0], &element[1..]),
            _ => (b'a', *element),
        };
        if body == "@STRENGTH" {
            list.sort_by_key(|&i| std::cmp::Reverse(SUITES[i].bits()));
            continue;
        }
        if let Some(level) = body.strip_prefix("@SECLEVEL=") {
            let bits = match level {
                "0" => 0,
                "1" => 80,
                "2" => 112,
                "3" => 128,
                "4" => 192,
                "5" => 256,
                _ => return Err(Error::usage(format!("CIPHERS: {element:?} is not a security level (0 to 5)"))),
            };
            list.retain(|&i| SUITES[i].bits() >= bits);
            warnings.push(format!(
                "CIPHERS: {element} applies to cipher strength only here; certificate key sizes are checked by kt cert check"
            ));
            continue;
        }
        let matched = match matches(body) {
            Ok(matched) => matched,
            Err(word) => {
                // Whatever the prefix: a removal of a misspelt keyword
                // (`!CHACHA` for `!CHACHA20`) would otherwise leave the
                // suites on without a word.
                warnings.push(unknown_warning(element, word));
                continue;
            }
        };
        let tls13: Vec<usize> = matched.iter().copied().filter(|&i| SUITES[i].tls13).collect();
        if op == b'a' && !tls13.is_empty() {
            names_tls13 = true;
        }
        match op {
            b'!' | b'-' => {
                for &i in &matched {
                    killed[i] |= op == b'!';
                }
                for &i in &tls13 {
                    tls13_removed[i] = true;
                }
                list.retain(|i| !matched.contains(i));
            }
            b'+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) = list.iter().partition(|i| matched.contains(i));
                list = kept;
                list.extend(moved);
            }
            _ => {
                let new: Vec<usize> = matched.into_iter().filter(|&i| !killed[i] && !list.contains(&i)).collect();
                if new.is_empty() && !elements_already_cover(element, &list, &killed) {
                    warnings.push(format!("CIPHERS: {element} selects no cipher suite kt offers; it is ignored"));
                }
                list.extend(new);
            }
        }
    }
    if elements.is_empty() {
        list = (0..SUITES.len()).collect();
    } else if !names_tls13 {
        let tls13: Vec<usize> = (0..SUITES.len()).filter(|&i| SUITES[i].tls13 && !tls13_removed[i]).collect();
        list.retain(|i| !SUITES[*i].tls13);
        list.splice(0..0, tls13);
    }
    if !names_tls13 && !list.iter().any(|&i| !SUITES[i].tls13) {
        return Err(Error::usage(format!("CIPHERS {setting:?} leaves no cipher suite kt can offer"))
            .because("kt offers only the AEAD suites of TLS 1.2 and 1.3 (rustls)")
            .with_hint(format!(
                "use keywords such as HIGH or AES256, or names from: {}",
                SUITES.iter().map(|s| s.openssl).collect::<Vec<_>>().join(":")
            )));
    }
    // SUITES and the provider's list are the same nine suites (a unit
    // test compares them both ways).
    let suites = list
        .iter()
        .filter_map(|&i| aws_lc_rs::ALL_CIPHER_SUITES.iter().find(|s| s.suite() == SUITES[i].id).copied())
        .collect();
    Ok(Selection { suites, warnings })
}

/// The suites an element's body (`A+B+...`) selects; the first part kt does
/// not know, when there is one.
fn matches(body: &str) -> std::result::Result<Vec<usize>, &str> {
    let mut selected: Option<Vec<usize>> = None;
    for part in body.split('+') {
        let these = match by_name(part) {
            Some(i) => vec![i],
            None => keyword(part).ok_or(part)?,
        };
        selected = Some(match selected {
            None => these,
            Some(before) => before.into_iter().filter(|i| these.contains(i)).collect(),
        });
    }
    Ok(selected.unwrap_or_default())
}

/// An element whose matches are all in the list already (`HIGH:AES256`)
/// asks for nothing kt lacks; only one whose matches are empty or all
/// removed for good does.
fn elements_already_cover(element: &str, list: &[usize], killed: &[bool]) -> bool {
    let body = element.strip_prefix('+').unwrap_or(element);
    matches(body).is_ok_and(|m| !m.is_empty() && m.iter().all(|i| list.contains(i) || killed[*i]))
}

/// The warning for an element with a word kt does not know, naming the
/// word (in `A+B`, the unknown part) and what is ignored: with `!` or `-`
/// the removal, with `+` the move, otherwise the addition.
fn unknown_warning(element: &str, word: &str) -> String {
    let what = if word.contains('-') || word.contains('_') {
        "a cipher suite kt offers (only the AEAD suites of TLS 1.2 and 1.3)"
    } else {
        "a cipher keyword kt knows"
    };
    let ignored = match element.as_bytes()[0] {
        b'!' | b'-' => "it removes nothing",
        b'+' => "it moves nothing",
        _ => "it is ignored",
    };
    if element == word {
        format!("CIPHERS: {word} is not {what}; {ignored}")
    } else {
        format!("CIPHERS: {element}: {word} is not {what}; {ignored}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(setting: &str) -> Vec<&'static str> {
        let selection = select(setting).unwrap();
        selection
            .suites
            .iter()
            .map(|s| SUITES.iter().find(|x| x.id == s.suite()).unwrap().openssl)
            .collect()
    }

    const TLS13: [&str; 3] = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"];

    #[test]
    fn the_documented_example_starts_with_a_warning() {
        let selection = select("AES256:CAMELLIA256-SHA").unwrap();
        assert_eq!(selection.warnings.len(), 1, "{:?}", selection.warnings);
        assert!(selection.warnings[0].contains("CAMELLIA256-SHA"));
        let mut expected = TLS13.to_vec();
        expected.extend(["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"]);
        assert_eq!(names("AES256:CAMELLIA256-SHA"), expected);
    }

    #[test]
    fn keywords_operators_and_intersections() {
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 9);
        assert!(select("HIGH:!aNULL:!MD5").unwrap().warnings.is_empty());
        let tls12 = |s: &str| names(s).into_iter().filter(|n| !n.starts_with("TLS_")).collect::<Vec<_>>();
        assert_eq!(tls12("ECDHE+AESGCM:!aECDSA"), ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]);
        // `-` removes for now, a later element adds again; `!` is for good.
        assert_eq!(tls12("aRSA:-AES128:AES128"), [
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256"
        ]);
        assert_eq!(tls12("aRSA:!AES128:AES128"), ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]);
        // `+` moves to the end; @STRENGTH sorts strongest first.
        assert_eq!(tls12("AES128:AES256:+AES128"), [
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256"
        ]);
        assert_eq!(tls12("AES128:CHACHA20:@STRENGTH")[..2], ["ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"]);
        assert_eq!(tls12("ALL:@SECLEVEL=4").len(), 4);
    }

    #[test]
    fn names_in_both_spellings_and_tls13_by_name() {
        assert_eq!(
            names("ECDHE-RSA-AES256-GCM-SHA384, TLS_AES_128_GCM_SHA256 TLS13_CHACHA20_POLY1305_SHA256"),
            ["ECDHE-RSA-AES256-GCM-SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"]
        );
        assert_eq!(names("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")[3..], ["ECDHE-RSA-AES128-GCM-SHA256"]);
        // Only TLS 1.3 names: TLS 1.3 only, as asked.
        assert_eq!(names("TLS_AES_256_GCM_SHA384"), ["TLS_AES_256_GCM_SHA384"]);
        assert_eq!(names("HIGH:!TLS_AES_128_GCM_SHA256")[..2], TLS13[..2]);
        assert_eq!(names("HIGH:!TLS_AES_128_GCM_SHA256").len(), 8);
        assert_eq!(names(""), names(crate::config::DEFAULT_CIPHERS));
        assert_eq!(names("").len(), 9);
    }

    #[test]
    fn warns_for_each_part_kt_cannot_offer_and_refuses_when_nothing_is_left() {
        let selection = select("HIGH:3DES:NOPE:AES256-SHA:!RC4:-CAMELLIA").unwrap();
        let text = selection.warnings.join("\n");
        assert_eq!(selection.warnings.len(), 3, "{text}");
        for part in ["3DES", "NOPE", "AES256-SHA"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        for bad in ["AES256-SHA", "CAMELLIA", "NOPE", "HIGH:!HIGH", "ALL:-ALL"] {
            let err = select(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.message().contains("leaves no cipher suite"), "{bad}: {err}");
        }
        assert!(select("ALL:@SECLEVEL=9").is_err());
    }

    #[test]
    fn unknown_words_are_named_in_removals_moves_and_intersections() {
        let selection = select("HIGH:!CHACHA:-AES12:+SHA265:ECDHE+AESGMC:!ECDHE-RSA-AES128-GCM-SHA265:!RC4").unwrap();
        let text = selection.warnings.join("\n");
        assert_eq!(selection.warnings, [
            "CIPHERS: !CHACHA: CHACHA is not a cipher keyword kt knows; it removes nothing",
            "CIPHERS: -AES12: AES12 is not a cipher keyword kt knows; it removes nothing",
            "CIPHERS: +SHA265: SHA265 is not a cipher keyword kt knows; it moves nothing",
            "CIPHERS: ECDHE+AESGMC: AESGMC is not a cipher keyword kt knows; it is ignored",
            "CIPHERS: !ECDHE-RSA-AES128-GCM-SHA265: ECDHE-RSA-AES128-GCM-SHA265 is not a cipher suite kt offers \
             (only the AEAD suites of TLS 1.2 and 1.3); it removes nothing",
        ], "{text}");
        // What they would have removed is still offered.
        assert_eq!(names("HIGH:!CHACHA").len(), 9);
        // Known words kt does not offer remove quietly (kt never offers them).
        assert!(select("HIGH:!RC4:-CAMELLIA:!aNULL:+3DES").unwrap().warnings.is_empty());
    }

    /// SUITES is the provider's list: every suite offered is in the table
    /// (its keywords), every suite in the table can be offered.
    #[test]
    fn the_table_is_the_providers_suites() {
        let mut ours: Vec<u16> = SUITES.iter().map(|s| u16::from(s.id)).collect();
        let mut provider: Vec<u16> = aws_lc_rs::ALL_CIPHER_SUITES.iter().map(|s| u16::from(s.suite())).collect();
        ours.sort_unstable();
        provider.sort_unstable();
        assert_eq!(ours, provider);
        assert_eq!(select("").unwrap().suites.len(), SUITES.len());
    }

    /// config::DEFAULT_CIPHERS (what kt init writes) is a copy of the table
    /// as a string, kept in step by this test rather than built at run time:
    /// it is a `const`, written verbatim into keytrustee.conf.
    #[test]
    fn the_default_setting_names_the_table_in_order() {
        let table: Vec<&str> = SUITES.iter().map(|s| s.openssl).collect();
        assert_eq!(crate::config::DEFAULT_CIPHERS, table.join(":"));
        assert!(select(crate::config::DEFAULT_CIPHERS).unwrap().warnings.is_empty());
    }
}
