//! The command-line definitions: the single source of `--help`, the man
//! pages in `man/` and the completions in `completions/`.
//!
//! The integration tests include this file (`tests/assets.rs`) to generate
//! the man pages and completions and fail when the checked-in copies are
//! stale; `scripts/gen-assets` regenerates them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Key Trustee Server and its operations toolkit.
///
/// kt runs the key server (coming soon as `kt serve`) and does the
/// operator's jobs around it: creating an instance, controlling its
/// PostgreSQL database, and, as they arrive, backups, restores,
/// certificates, high availability and verification.
///
/// Exit codes: 0 success; 1 a check found a problem; 2 usage error or bad
/// input (nothing changed); 3 environment failure (database down, disk
/// full, key missing, lock held).
#[derive(Debug, Parser)]
#[command(name = "kt", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The instance's configuration directory.
    ///
    /// The instance home is its parent directory. Defaults to
    /// /var/lib/keytrustee/.keytrustee.
    #[arg(short = 'c', long, global = true, env = "KT_CONFDIR", hide_env_values = true, value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// Print nothing but data and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more about what kt does.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Never show progress bars, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(InitArgs),
    #[command(subcommand)]
    Db(DbCommand),
    Fingerprint(FingerprintArgs),
}

/// Create a new instance: configuration, keys, certificate and database.
///
/// Creates the confdir (0700) with keytrustee.conf, the server's OpenPGP
/// key pair (secring.gpg, pubring.gpg), a self-signed TLS certificate for
/// the host name in .ssl/, and a PostgreSQL cluster in the pg-rootdir with
/// the keytrustee database and its schema. The database is stopped again at
/// the end: start it with `kt db start`.
///
/// kt init never touches an existing instance, and a failure half way
/// removes everything the run created. As root, PostgreSQL runs as the
/// service account (created when missing); as an ordinary user, everything
/// runs as that user, so an instance can live under any directory:
///
///     kt init --confdir ./demo/.keytrustee --hostname localhost
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The server's host name, in its TLS certificate and configuration.
    ///
    /// Defaults to this host's fully qualified domain name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// The address and port the key server listens on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:11371")]
    pub listen: String,

    /// The TCP port of the instance's PostgreSQL (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 11381, value_parser = clap::value_parser!(u16).range(1..))]
    pub database_port: u16,

    /// The PostgreSQL data directory. Defaults to <home>/db.
    #[arg(long, value_name = "DIR")]
    pub pg_rootdir: Option<PathBuf>,

    /// The account PostgreSQL runs as when kt runs as root.
    ///
    /// Created (as a system account) when missing. Ignored for ordinary
    /// users, who run everything as themselves.
    #[arg(long, value_name = "USER", default_value = "keytrustee")]
    pub service_user: String,

    /// The kind of server OpenPGP key to generate.
    #[arg(long, value_enum, default_value_t = KeyType::Rsa4096)]
    pub key_type: KeyType,

    /// Days the self-signed TLS certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub cert_days: u32,

    /// An extra DNS name or IP address for the TLS certificate (repeatable).
    #[arg(long = "san", value_name = "NAME")]
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// RSA 4096 with an RSA 4096 encryption subkey.
    Rsa4096,
    /// Ed25519 with a Curve25519 encryption subkey.
    Ed25519,
}

/// Control the instance's PostgreSQL database.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start the database in the background and wait until it accepts
    /// connections.
    ///
    /// Starting a running database is not an error. A stale postmaster.pid
    /// (left by a crash) is removed. If the database fails to start, the
    /// error quotes the end of its log.
    Start,
    /// Stop the database (fast shutdown) and wait until it is down.
    ///
    /// Stopping a stopped database is not an error.
    Stop,
    /// Show whether the database runs, with its pid, port and data directory.
    ///
    /// Exits 1 when the database is stopped.
    Status(DbStatusArgs),
}

#[derive(Debug, Args)]
pub struct DbStatusArgs {
    /// Print the status as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Print the server's OpenPGP key fingerprint, as `/?a=fingerprint` answers.
///
/// The format is <bits><algorithm letter>/<fingerprint>, for example
/// 4096R/4EDC46882386C827E20DEEA2D850ACA33BEDB0D1.
#[derive(Debug, Args)]
pub struct FingerprintArgs {}
