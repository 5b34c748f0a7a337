//! How a composed message leaves this host (`MAIL_TRANSPORT`): SMTP to
//! `MAIL_SMTP_HOST:MAIL_SMTP_PORT` (the documented local Postfix by
//! default) or the local sendmail program, through lettre's blocking
//! transports (the outbox worker runs on its own thread; `kt mail test`
//! is synchronous by design).
//!
//! SMTP TLS (`MAIL_SMTP_TLS`): STARTTLS when offered by default; the
//! relay's certificate is checked against the system's CAs and
//! `MAIL_SMTP_CA`, except for opportunistic STARTTLS to a loopback
//! address (nothing leaves the host; Debian's Postfix offers a self-signed
//! certificate). A password (`MAIL_SMTP_PASSWORD_FILE` or `_SCRIPT`) is
//! read when a transport is built, never kept in the configuration, and is
//! only sent over TLS or to loopback.

use std::net::IpAddr;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::settings::{MailSettings, MailTransport, SmtpTls};

/// How long one SMTP exchange may take before it counts as a failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A ready transport.
pub enum Sender {
    Smtp { transport: SmtpTransport, server: String },
    Sendmail { transport: SendmailTransport, program: String },
    /// `MAIL_TRANSPORT` off: nothing is sent.
    Off,
}

/// Why a message was not delivered.
#[derive(Debug)]
pub struct Refused {
    /// The MTA's answer or the connection's failure, for the queue and logs.
    pub reason: String,
    /// The MTA answered with a permanent (5xx) refusal.
    pub permanent: bool,
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A warning for the server's log when the settings let someone on the
/// network read the mail: opportunistic STARTTLS to a relay that is not on
/// this host can be stripped by whoever sits between, and the mail holds
/// registration links (a link is enough to register a key for a contact).
/// None when the relay is loopback or TLS is required.
pub fn downgrade_warning(s: &MailSettings) -> Option<String> {
    let exposed = s.transport == MailTransport::Smtp
        && !is_loopback(&s.smtp_host)
        && matches!(s.smtp_tls, SmtpTls::Off | SmtpTls::Opportunistic);
    exposed.then(|| {
        format!(
            "mail: MAIL_SMTP_TLS is {} for the relay {}: someone on the network between can read the registration links in contact mail; set MAIL_SMTP_TLS to \"required\"",
            s.smtp_tls.name(),
            s.smtp_host
        )
    })
}

impl Sender {
    /// Builds the transport of `settings`. `hostname` is this server's name
    /// (EHLO); `account` runs a password script (the service account when
    /// kt runs as root, as the server itself does).
    pub fn new(settings: &MailSettings, hostname: &str, account: Option<&Account>) -> Result<Sender> {
        match settings.transport {
            MailTransport::Off => Ok(Sender::Off),
            MailTransport::Sendmail => Ok(Sender::Sendmail {
                transport: SendmailTransport::new_with_command(settings.sendmail.as_os_str()),
                program: settings.sendmail.display().to_string(),
            }),
            MailTransport::Smtp => Self::smtp(settings, hostname, account),
        }
    }

    fn smtp(s: &MailSettings, hostname: &str, account: Option<&Account>) -> Result<Sender> {
        let loopback = is_loopback(&s.smtp_host);
        let tls_error = |e: lettre::transport::smtp::Error| {
            Error::usage(format!("cannot set up TLS to the mail relay {}", s.smtp_host)).because(e)
        };
        let parameters = |verify: bool| -> Result<TlsParameters> {
            let mut builder = TlsParameters::builder(s.smtp_host.clone());
            if let Some(ca) = &s.smtp_ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| Error::usage(format!("cannot read MAIL_SMTP_CA {}", ca.display())).because_err(&e))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| Error::usage(format!("MAIL_SMTP_CA {} is not a PEM certificate", ca.display())).because(e))?;
                builder = builder.add_root_certificate(cert);
            }
            if !verify {
                builder = builder.dangerous_accept_invalid_certs(true).dangerous_accept_invalid_hostnames(true);
            }
            builder.build_rustls().map_err(tls_error)
        };
        let tls = match s.smtp_tls {
            SmtpTls::Off => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(parameters(!loopback)?),
            SmtpTls::Required => Tls::Required(parameters(true)?),
            SmtpTls::Wrapper => Tls::Wrapper(parameters(true)?),
        };
        let mut builder = SmtpTransport::builder_dangerous(s.smtp_host.clone())
            .port(s.smtp_port)
            .tls(tls)
            .hello_name(ClientId::Domain(hostname.to_string()))
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(auth) = &s.smtp_auth {
            if !loopback && matches!(s.smtp_tls, SmtpTls::Off | SmtpTls::Opportunistic) {
                return Err(Error::usage(format!(
                    "MAIL_SMTP_USER is set but MAIL_SMTP_TLS is {}: the password could cross the network in clear",
                    s.smtp_tls.name()
                ))
                .with_hint("set MAIL_SMTP_TLS to \"required\" or \"wrapper\" in keytrustee.conf"));
            }
            let password = auth.password.clone().run_by(account).read(auth.password_key())?;
            builder = builder.credentials(Credentials::new(auth.user.clone(), password.expose().to_string()));
        }
        Ok(Sender::Smtp { transport: builder.build(), server: format!("{}:{}", s.smtp_host, s.smtp_port) })
    }

    /// Where messages go, for logs and `kt mail test`.
    pub fn describe(&self) -> String {
        match self {
            Sender::Smtp { server, .. } => format!("SMTP {server}"),
            Sender::Sendmail { program, .. } => format!("sendmail {program}"),
            Sender::Off => "nowhere (MAIL_TRANSPORT is off)".to_string(),
        }
    }

    /// Sends `message` now; the MTA's answer on success.
    pub fn send(&self, message: &Message) -> std::result::Result<String, Refused> {
        match self {
            Sender::Smtp { transport, server } => match transport.send(message) {
                Ok(response) => {
                    let text: Vec<&str> = response.message().collect();
                    Ok(format!("{} {}", response.code(), text.join(" ")))
                }
                Err(e) => Err(Refused {
                    permanent: e.is_permanent(),
                    reason: format!("{server}: {}", chain(&e)),
                }),
            },
            Sender::Sendmail { transport, program } => match transport.send(message) {
                Ok(()) => Ok(format!("{program} accepted the message")),
                Err(e) => Err(Refused { permanent: false, reason: format!("{program}: {}", chain(&e)) }),
            },
            Sender::Off => Err(Refused { permanent: false, reason: "MAIL_TRANSPORT is off".to_string() }),
        }
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("::1"));
        assert!(!is_loopback("mail.example.com") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn a_strippable_relay_is_warned_about() {
        let mail = |json: &str| -> MailSettings {
            let settings: crate::settings::Settings = serde_json::from_str(json).unwrap();
            settings.mail
        };
        assert_eq!(downgrade_warning(&mail(r#"{"HOSTNAME": "h"}"#)), None, "the documented local MTA");
        let warning = downgrade_warning(&mail(r#"{"HOSTNAME": "h", "MAIL_SMTP_HOST": "relay.example.com"}"#)).unwrap();
        assert!(warning.contains("opportunistic") && warning.contains("relay.example.com"), "{warning}");
        assert!(downgrade_warning(&mail(r#"{"HOSTNAME": "h", "MAIL_SMTP_HOST": "relay.example.com", "MAIL_SMTP_TLS": "off"}"#)).is_some());
        assert_eq!(downgrade_warning(&mail(r#"{"HOSTNAME": "h", "MAIL_SMTP_HOST": "relay.example.com", "MAIL_SMTP_TLS": "required"}"#)), None);
        assert_eq!(downgrade_warning(&mail(r#"{"HOSTNAME": "h", "MAIL_SMTP_HOST": "relay.example.com", "MAIL_TRANSPORT": "sendmail"}"#)), None);
    }
}
