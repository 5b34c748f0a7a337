//! `kt cert generate`: a new key, a certificate signing request, a
//! self-signed certificate or one signed by a local CA (the documented
//! `openssl req -new` and `openssl x509 -req` in one command).
//!
//! Every input is checked (names, subject, key and its password, the CA,
//! that no output file exists) before anything is written; when a new key
//! and a request or certificate are both written and the second write
//! fails, the key is removed again, so a failed run leaves nothing behind.

use std::path::{Path, PathBuf};

use kt::cert::issue::{self, Ca, Request};
use kt::cert::key::{KeyAlgorithm, PrivateKey};
use kt::fsutil;
use kt::instance::{Instance, Layout};
use kt::journal::Journal;
use kt::secret::PasswordSource;
use kt::Error;

use crate::cli::{CertGenerateArgs, GlobalArgs, NewKeyKind};
use crate::printer::Printer;
use crate::{CommandResult, Status};

/// Mode of the written request and certificates: public documents.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of a written private key.
const KEY_MODE: u32 = 0o600;

/// What the run writes besides a new key.
enum Output {
    Csr(PathBuf),
    SelfSigned(PathBuf),
    Signed { ca_cert: PathBuf, ca_key: PathBuf, out: PathBuf },
}

impl Output {
    fn path(&self) -> &Path {
        match self {
            Output::Csr(p) | Output::SelfSigned(p) | Output::Signed { out: p, .. } => p,
        }
    }

    fn option(&self) -> &'static str {
        match self {
            Output::Csr(_) => "--csr",
            _ => "--out",
        }
    }
}

pub fn run(global: &GlobalArgs, args: CertGenerateArgs, printer: &Printer) -> CommandResult {
    let output = output(&args)?;
    if args.new_key.is_some() && args.password.source().is_some() {
        return Err(Error::usage("--key-password-file and --key-password-script are for an existing key")
            .because("--new-key writes an unencrypted PKCS#8 key (mode 0600)")
            .with_hint("encrypt it afterwards if you need to: openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.enc")
            .into());
    }

    // The instance is needed only for what the options leave out.
    let mut instance: Option<Instance> = None;
    let load_instance = || -> kt::Result<Instance> { Layout::new(global.confdir.as_deref())?.load() };
    let hostname = match &args.hostname {
        Some(name) => name.clone(),
        None => {
            let inst = load_instance()?;
            let name = inst.hostname()?.to_string();
            instance = Some(inst);
            name
        }
    };
    let request = Request::new(&hostname, &args.san, args.subject.as_deref())?;

    // Every file to write, checked before anything is made.
    let mut targets: Vec<(&Path, &str)> = Vec::new();
    if let Some(key_out) = &args.key_out {
        targets.push((key_out, "--key-out"));
    }
    targets.push((output.path(), output.option()));
    check_new_files(&targets)?;

    let now = kt::clock::unix_now();
    let ca = match &output {
        Output::Signed { ca_cert, ca_key, .. } => Some(Ca::load(ca_cert, ca_key, now)?),
        _ => None,
    };

    let key = match (&args.new_key, &args.key) {
        (Some(kind), _) => {
            let algorithm = algorithm(*kind);
            if matches!(algorithm, KeyAlgorithm::Rsa4096) {
                printer.info("kt: generating an RSA 4096 key (this takes a few seconds)");
            }
            PrivateKey::generate(algorithm)?
        }
        (None, Some(path)) => PrivateKey::read(path, args.password.source().as_ref(), args.password.what())?,
        (None, None) => {
            let inst = match instance.take() {
                Some(inst) => inst,
                None => load_instance()?,
            };
            let (_, key_path, _) = inst.tls_files();
            let (source, what) = match args.password.source() {
                Some(source) => (Some(source), args.password.what()),
                None => (
                    // From keytrustee.conf, which the service account can
                    // write: run as that account, never as root.
                    match inst.settings.ssl_private_key_password_script.clone() {
                        Some(script) => Some(PasswordSource::Script(script).run_by(inst.service_account()?.as_ref())),
                        None => None,
                    },
                    "SSL_PRIVATE_KEY_PASSWORD_SCRIPT",
                ),
            };
            printer.detail(format!("kt: using the instance's key {}", key_path.display()));
            match args.password.source() {
                Some(_) => PrivateKey::read(&key_path, source.as_ref(), what)?,
                None => PrivateKey::read_configured(&key_path, source.as_ref())?,
            }
        }
    };

    // Made in memory first: a refusal here writes nothing.
    let (contents, summary) = match (&output, &ca) {
        (Output::Csr(_), _) => (issue::csr(&request, &key)?, describe_request(&request)),
        (Output::SelfSigned(_), _) => {
            let cert = issue::self_signed_cert(&request, &key, args.days, now)?;
            (cert.pem.clone(), describe_cert(&cert.info))
        }
        (Output::Signed { .. }, Some(ca)) => {
            let cert = issue::signed_by(&request, &key, args.days, ca, now)?;
            (cert.pem.clone(), describe_cert(&cert.info))
        }
        (Output::Signed { .. }, None) => unreachable!("the CA is loaded for --ca-cert"),
    };

    let mut journal = Journal::new();
    if let Some(key_out) = &args.key_out {
        fsutil::write_new(key_out, &key.to_file_pem(), KEY_MODE, None)?;
        let path = key_out.clone();
        journal.record(format!("wrote the new key {}", key_out.display()), move || {
            std::fs::remove_file(&path)
                .map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e))
        });
    }
    if let Err(err) = fsutil::write_new(output.path(), contents.as_bytes(), PUBLIC_MODE, None) {
        let report = journal.roll_back();
        return Err(report.explain(err).into());
    }
    journal.commit();

    if let Some(key_out) = &args.key_out {
        printer.info(format!("kt: wrote a new {} key to {} (mode 0600)", key.describe(), key_out.display()));
    }
    let what = match output {
        Output::Csr(_) => "the certificate signing request",
        Output::SelfSigned(_) => "the self-signed certificate",
        Output::Signed { .. } => "the certificate",
    };
    printer.info(format!("kt: wrote {what} {}", output.path().display()));
    for line in summary {
        printer.info(format!("kt:   {line}"));
    }
    if let Output::Csr(_) = output {
        let key_arg = match (&args.key_out, &args.key) {
            (Some(path), _) | (None, Some(path)) => format!(" --key {}", path.display()),
            (None, None) => String::new(),
        };
        printer.info(format!("kt: once a CA has signed it: kt cert replace --cert SIGNED.pem{key_arg} --ca CA-CHAIN.pem"));
    }
    printer.data(output.path().display().to_string())?;
    Ok(Status::Success)
}

/// Which of --csr, --self-signed, --ca-cert was given (clap refuses two of
/// them; none, or --out without a certificate, is refused here).
fn output(args: &CertGenerateArgs) -> kt::Result<Output> {
    let one_of = "give one of --csr FILE, --self-signed --out CERT, or --ca-cert CA --ca-key KEY --out CERT";
    match (&args.csr, args.self_signed, &args.ca_cert) {
        (Some(csr), false, None) => {
            if args.out.is_some() {
                return Err(Error::usage("--out is for a certificate, not with --csr").with_hint(one_of));
            }
            Ok(Output::Csr(csr.clone()))
        }
        (None, true, None) => Ok(Output::SelfSigned(args.out.clone().ok_or_else(|| Error::usage("--self-signed needs --out"))?)),
        (None, false, Some(ca_cert)) => Ok(Output::Signed {
            ca_cert: ca_cert.clone(),
            ca_key: args.ca_key.clone().ok_or_else(|| Error::usage("--ca-cert needs --ca-key"))?,
            out: args.out.clone().ok_or_else(|| Error::usage("--ca-cert needs --out"))?,
        }),
        (None, false, None) => Err(Error::usage("nothing to generate").with_hint(one_of)),
        _ => Err(Error::usage("--csr, --self-signed and --ca-cert exclude each other").with_hint(one_of)),
    }
}

/// Each target must not exist, its directory must, and no two may be the
/// same file.
fn check_new_files(targets: &[(&Path, &str)]) -> kt::Result<()> {
    let mut seen: Vec<(PathBuf, &str)> = Vec::new();
    for &(path, option) in targets {
        if path.symlink_metadata().is_ok() {
            return Err(Error::usage(format!("{option} {} exists", path.display()))
                .with_hint("kt never writes over a file: remove it or give another name"));
        }
        let dir = fsutil::parent_dir(path);
        if !dir.is_dir() {
            return Err(Error::usage(format!("{option} {}: the directory {} does not exist", path.display(), dir.display())));
        }
        let absolute = fsutil::absolute(path)?;
        if let Some((_, other)) = seen.iter().find(|(p, _)| *p == absolute) {
            return Err(Error::usage(format!("{option} and {other} name the same file {}", path.display())));
        }
        seen.push((absolute, option));
    }
    Ok(())
}

fn algorithm(kind: NewKeyKind) -> KeyAlgorithm {
    match kind {
        NewKeyKind::Rsa2048 => KeyAlgorithm::Rsa2048,
        NewKeyKind::Rsa3072 => KeyAlgorithm::Rsa3072,
        NewKeyKind::Rsa4096 => KeyAlgorithm::Rsa4096,
        NewKeyKind::EcP256 => KeyAlgorithm::EcP256,
        NewKeyKind::EcP384 => KeyAlgorithm::EcP384,
    }
}

/// What a request says, one line each.
fn describe_request(request: &Request) -> Vec<String> {
    let names: Vec<String> = request.names().iter().map(|n| n.to_string()).collect();
    vec![format!("subject: {}", request.subject_line()), format!("SANs:    {}", names.join(", "))]
}

/// What a certificate says, one line each.
fn describe_cert(info: &kt::cert::info::CertInfo) -> Vec<String> {
    vec![
        format!("subject: {}", info.subject),
        format!("SANs:    {}", info.names().join(", ")),
        format!("issuer:  {}", info.issuer),
        format!("valid:   {} to {}", kt::clock::rfc3339(info.not_before), kt::clock::rfc3339(info.not_after)),
        format!("SHA-256: {}", info.sha256),
    ]
}
