//! The server's key material as its configuration names it: the
//! certificate, its chain and CA file, the private key and the script that
//! decrypts it, read and checked the way the server loads them at start
//! and at every reload (SIGHUP). `kt cert check` and `kt verify` load it
//! through the same code.

use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cert::key::PrivateKey;
use crate::error::{Error, Result};
use crate::secret::PasswordSource;

/// Where the server's certificate and key come from.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    pub certificate: std::path::PathBuf,
    pub private_key: std::path::PathBuf,
    pub ca: Option<std::path::PathBuf>,
    /// A shell command printing the password of an encrypted PKCS#8 key.
    pub password_script: Option<String>,
    /// Who runs the script: the service account when kt runs as root (the
    /// script comes from keytrustee.conf, which that account can write).
    pub script_runs_as: Option<crate::account::Account>,
}

impl KeyMaterial {
    /// The instance's key material as its configuration says now
    /// (`SSL_CERTIFICATE`, `SSL_PRIVATE_KEY`, `SSL_CA`,
    /// `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`): read at start and again at every
    /// reload, so `kt cert replace` may change paths and script.
    pub fn for_instance(instance: &crate::instance::Instance) -> Result<KeyMaterial> {
        let (certificate, private_key, ca) = instance.tls_files();
        Ok(KeyMaterial {
            certificate,
            private_key,
            ca: Some(ca),
            password_script: instance.settings.ssl_private_key_password_script.clone(),
            script_runs_as: instance.service_account()?,
        })
    }

    /// Reads, decrypts and checks the certificate chain and key.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey> {
        let mut chain = read_certs(&self.certificate)?;
        if let Some(ca) = &self.ca {
            if ca.exists() {
                for cert in read_certs(ca)? {
                    // A self-signed certificate is its own CA: send it once.
                    if !chain.contains(&cert) {
                        chain.push(cert);
                    }
                }
            }
        }
        let key = self.read_key()?;
        CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            Error::usage(format!(
                "the private key {} does not belong to the certificate {}",
                self.private_key.display(),
                self.certificate.display()
            ))
            .because(e)
        })
    }

    fn read_key(&self) -> Result<PrivateKeyDer<'static>> {
        let script = self.password_script.clone().map(|s| PasswordSource::Script(s).run_by(self.script_runs_as.as_ref()));
        let key = PrivateKey::read_configured(&self.private_key, script.as_ref())?;
        Ok(key.rustls_der())
    }
}

/// Every certificate of a certificate file (at least one); an unreadable
/// configured file is the environment's fault.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::env(format!("cannot read the certificate {}", path.display())).because_err(&e))?;
    // The one reader of certificate files (PEM, any number, or one DER):
    // what kt cert checks and installs is what the server reads.
    crate::cert::chain::parse_certs(&bytes, &path.display().to_string())
}

