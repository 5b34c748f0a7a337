//! `kt cert replace` and `kt cert rollback`: print the plan, then make the
//! change (src/cert/replace.rs does both halves).

use kt::cert::info::CertInfo;
use kt::cert::replace::{self, Given, Options, Plan, Source};
use kt::secret::PasswordSource;
use kt::instance::Layout;

use crate::cli::{CertReplaceArgs, CertRollbackArgs, GlobalArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, args: CertReplaceArgs, printer: &Printer) -> CommandResult {
    // Everything named on the command line is read now, as the operator
    // (who may be root and keep new keys where only root can read them).
    let source = match (&args.pkcs12, &args.cert) {
        (Some(bundle), _) => {
            let file = args.pkcs12_password_file.clone().expect("clap requires it with --pkcs12");
            Source::Pkcs12 {
                bundle: Given::read(bundle, "the PKCS#12 bundle")?,
                password: PasswordSource::File(file).read("--pkcs12-password-file")?,
            }
        }
        (None, Some(cert)) => Source::Files {
            cert: Given::read(cert, "the certificate")?,
            key: args.key.as_deref().map(|k| Given::read(k, "the private key")).transpose()?,
            password: args.password.source().map(|p| p.read_file_now(args.password.what())).transpose()?,
            password_what: args.password.what().to_string(),
        },
        (None, None) => unreachable!("clap requires --cert or --pkcs12"),
    };
    let options = Options {
        source,
        ca: args.ca.as_deref().map(|c| Given::read(c, "the CA file")).transpose()?,
        warn_days: args.warn_days,
        allow_hostname_mismatch: args.allow_hostname_mismatch,
    };
    change(global, options, args.dry_run, "replace", printer)
}

pub fn rollback(global: &GlobalArgs, args: CertRollbackArgs, printer: &Printer) -> CommandResult {
    let options = Options {
        source: Source::Backup,
        ca: None,
        warn_days: 30,
        allow_hostname_mismatch: args.allow_hostname_mismatch,
    };
    change(global, options, args.dry_run, "rollback", printer)
}

fn change(global: &GlobalArgs, options: Options, dry_run: bool, verb: &str, printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    // From here on kt works as the service account: every file it reads
    // or writes in the confdir is that account's, which may be hostile;
    // root working by path in a directory another account can write is
    // open to symlink and rename races. The server runs as that account
    // too, so it can still be signalled and its scripts run as they will.
    if let Some(service) = instance.service_account()? {
        kt::account::become_account(&service)?;
    }
    let plan = replace::plan(&instance, &options, kt::clock::unix_now())?;
    print_plan(&plan, dry_run, printer)?;
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    if dry_run {
        printer.info(format!("kt: dry run: nothing changed (kt cert {verb} without --dry-run does the above)"));
        return Ok(Status::Success);
    }
    let new = plan.new.clone();
    let outcome = replace::apply(&instance, plan, printer)?;
    match outcome.reloaded {
        Some(pid) => printer.info(format!("kt: the server (pid {pid}) now serves {}", new.sha256)),
        None => printer.info("kt: the server is not running; it will serve the new certificate when it starts"),
    }
    printer.info(format!("kt: the previous certificate is in {} (kt cert rollback puts it back)", outcome.backup_dir.display()));
    Ok(Status::Success)
}

/// The plan, as data with --dry-run, as information otherwise.
fn print_plan(plan: &Plan, dry_run: bool, printer: &Printer) -> std::io::Result<()> {
    let mut lines = Vec::new();
    let describe = |info: &CertInfo| {
        format!(
            "{} (names {}; issued by {}; valid until {}, {} days left; {}; SHA-256 {})",
            info.subject,
            info.names().join(", "),
            if info.self_issued { "itself".to_string() } else { info.issuer.clone() },
            kt::clock::rfc3339(info.not_after),
            info.days_left(),
            info.key,
            info.sha256
        )
    };
    lines.push(format!("current:      {}", plan.old.as_ref().map(describe).unwrap_or_else(|| "unreadable".into())));
    lines.push(format!("new:          {}", describe(&plan.new)));
    lines.push(format!(
        "chain:        {}",
        match (plan.chain.as_slice(), plan.chain_verified) {
            ([], _) => "none".to_string(),
            ([only], true) if only.sha256 == plan.new.sha256 => "self-signed (the certificate is its own CA)".to_string(),
            (chain, verified) => format!(
                "{} ({})",
                chain.iter().map(|c| c.subject.clone()).collect::<Vec<_>>().join(" <- "),
                if verified { "verified to the root" } else { "NOT verified" }
            ),
        }
    ));
    lines.push(format!(
        "backup:       the current .ssl becomes {}{}",
        plan.backup_dir.display(),
        plan.set_aside.as_ref().map(|p| format!(" (the older one is kept as {})", p.display())).unwrap_or_default()
    ));
    for (key, value) in &plan.settings {
        // The script may carry a password inline: never shown.
        let shown = match (*key, value) {
            ("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", v) if !v.is_empty() => "(the given password script)".to_string(),
            (_, v) => format!("{v:?}"),
        };
        lines.push(format!("config:       {key} = {shown}"));
    }
    lines.push(format!(
        "server:       {}",
        match plan.server_pid {
            Some(pid) => format!("running (pid {pid}): reloaded, then checked to serve the new certificate"),
            None => "not running: it uses the new certificate when it starts".to_string(),
        }
    ));
    for line in lines {
        if dry_run {
            printer.data(line)?;
        } else {
            printer.info(line);
        }
    }
    Ok(())
}
