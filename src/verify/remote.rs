//! `kt verify --server URL`: a key server seen from outside, as a client
//! sees it: the certificate chain and host name (unless --insecure), the
//! certificate's expiry, and the fingerprint it answers.

use std::time::Duration;

use crate::client::https::{HttpsClient, Trust, Url};
use crate::error::Result;
use crate::cert::check::validity;
use crate::cert::info::CertInfo;
use crate::verify::Report;

#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub servers: Vec<String>,
    pub trust: Trust,
    pub expect_fingerprint: Option<String>,
    pub warn_days: i64,
}

/// Checks every server; returns the report and the fingerprints exactly
/// as the servers gave them.
///
/// What the operator gave is checked before any server is asked: a
/// malformed URL or an unreadable `--ca` file is bad input (exit 2) or a
/// missing file (exit 3), never a finding about a server (exit 1).
pub fn verify(options: &RemoteOptions) -> Result<(Report, Vec<(String, String)>)> {
    let urls = options.servers.iter().map(|s| Url::parse(s)).collect::<Result<Vec<Url>>>()?;
    if let Trust::Ca(ca) = &options.trust {
        crate::cert::material::read_certs(ca)?;
    }
    let mut report = Report::default();
    let mut answers = Vec::new();
    for url in urls {
        let mut client = match HttpsClient::new(&url, &options.trust, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                report.fail(&format!("{url} tls"), e.to_string());
                continue;
            }
        };
        let resp = match client.request("GET", "/?a=fingerprint", &[], b"") {
            Ok(resp) => resp,
            Err(e) => {
                report.fail(&format!("{url} tls"), e.to_string());
                continue;
            }
        };
        let trust = match &options.trust {
            Trust::Ca(ca) => format!("chain and host name verified against {}", ca.display()),
            Trust::Insecure => "not verified (--insecure)".to_string(),
        };
        match client.peer_certificate().map(CertInfo::parse) {
            // Dates judged as `kt cert check` judges the local certificate.
            Some(Ok(info)) => match validity(&info, options.warn_days, crate::clock::unix_now()) {
                Ok(detail) => report.ok(&format!("{url} certificate"), format!("{trust}; {detail}")),
                Err(problem) => report.fail(&format!("{url} certificate"), problem),
            },
            Some(Err(e)) => report.fail(&format!("{url} certificate"), e),
            None => report.fail(&format!("{url} certificate"), "no certificate presented"),
        }
        let fingerprint = String::from_utf8_lossy(&resp.body).trim().to_string();
        if resp.status != 200 {
            report.fail(&format!("{url} fingerprint"), format!("HTTP {}", resp.status));
            continue;
        }
        answers.push((url.to_string(), fingerprint.clone()));
        match &options.expect_fingerprint {
            Some(expected) => {
                let bare = |f: &str| f.rsplit('/').next().unwrap_or(f).replace(' ', "").to_ascii_uppercase();
                if bare(expected) == bare(&fingerprint) {
                    report.ok(&format!("{url} fingerprint"), format!("{fingerprint} as expected"));
                } else {
                    report.fail(&format!("{url} fingerprint"), format!("{fingerprint}, expected {expected}"));
                }
            }
            None => report.ok(&format!("{url} fingerprint"), fingerprint),
        }
    }
    // HA hosts must all serve the same key.
    if answers.len() > 1 && answers.iter().any(|(_, f)| *f != answers[0].1) {
        report.fail("same key everywhere", answers.iter().map(|(u, f)| format!("{u} {f}")).collect::<Vec<_>>().join("; "));
    }
    Ok((report, answers))
}
