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
/// kt runs the key server (`kt serve`) and does the operator's jobs around
/// it: creating an instance, controlling its PostgreSQL database and its
/// server, managing organizations and clients, and, as they arrive,
/// backups, restores, certificates, high availability and verification.
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

/// The command-line definition (man pages and completions come from it).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

/// Parses the process arguments with [`command`].
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Ha(HaCommand::Sync(args)) = &mut cli.command {
        if let Some(m) = matches.subcommand_matches("ha").and_then(|m| m.subcommand_matches("sync")) {
            args.rules = filter_rules(m);
        }
    }
    cli
}

/// `--include` and `--exclude` in the order given (first match wins, so
/// the order between the two lists matters): `(include, pattern)`.
fn filter_rules(m: &clap::ArgMatches) -> Vec<(bool, String)> {
    let mut rules = Vec::new();
    for (id, include) in [("exclude", false), ("include", true)] {
        if let (Some(values), Some(indices)) = (m.get_many::<String>(id), m.indices_of(id)) {
            rules.extend(values.zip(indices).map(|(v, i)| (i, include, v.clone())));
        }
    }
    rules.sort_by_key(|r| r.0);
    rules.into_iter().map(|(_, include, v)| (include, v)).collect()
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
    Serve(ServeArgs),
    #[command(subcommand)]
    Server(ServerCommand),
    #[command(subcommand)]
    Org(OrgCommand),
    Client(ClientArgs),
    Backup(BackupArgs),
    Verify(VerifyArgs),
    Restore(RestoreArgs),
    #[command(subcommand)]
    Cert(CertCommand),
    #[command(subcommand)]
    Ha(HaCommand),
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    #[command(subcommand)]
    Mail(MailCommand),
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
    #[arg(long, value_name = "DIR", conflicts_with = "external_db")]
    pub pg_rootdir: Option<PathBuf>,

    /// Keep the database on an existing PostgreSQL server instead of a
    /// cluster of the instance's own.
    ///
    /// kt creates its schema there (the role needs no superuser rights:
    /// CONNECT on the database and CREATE on the schema public, or
    /// ownership of the database) and never initdb's, starts or stops that
    /// server. The database must hold no tables yet. Needs --db-host and
    /// --db-password-file.
    #[arg(long, requires_all = ["db_host", "db_password_file"], help_heading = "External database")]
    pub external_db: bool,

    /// The external database server's host name or address.
    #[arg(long, value_name = "HOST", requires = "external_db", help_heading = "External database")]
    pub db_host: Option<String>,

    /// The external database server's port.
    #[arg(long, value_name = "PORT", default_value_t = 5432, value_parser = clap::value_parser!(u16).range(1..), help_heading = "External database")]
    pub db_port: u16,

    /// The database kt uses on the external server.
    #[arg(long, value_name = "NAME", default_value = "keytrustee", help_heading = "External database")]
    pub db_name: String,

    /// The role kt logs in as (no superuser).
    #[arg(long, value_name = "ROLE", default_value = "keytrustee", help_heading = "External database")]
    pub db_user: String,

    /// How the connection is protected, with libpq's meanings.
    ///
    /// verify-ca and verify-full check the server's certificate against
    /// --db-sslrootcert (verify-full also its host name); require
    /// encrypts, checking the certificate when a CA file is given.
    #[arg(long, value_name = "MODE", default_value = "verify-full", value_parser = kt::settings::SslMode::NAMES, help_heading = "External database")]
    pub db_sslmode: String,

    /// The CA certificate(s) of the database server's certificate (PEM);
    /// copied into the confdir.
    #[arg(long, value_name = "FILE", requires = "external_db", help_heading = "External database")]
    pub db_sslrootcert: Option<PathBuf>,

    /// Whether SCRAM login is bound to the TLS session, with libpq's
    /// meanings.
    ///
    /// prefer binds when the server offers it; require refuses a server
    /// that does not (and needs TLS: not with --db-sslmode disable);
    /// disable never binds.
    #[arg(long, value_name = "MODE", default_value = "prefer", value_parser = kt::settings::ChannelBinding::NAMES, help_heading = "External database")]
    pub db_channel_binding: String,

    /// A file whose first line is the role's password; - reads standard
    /// input. Stored in the confdir's .pgpass (0600), never in argv or the
    /// configuration.
    #[arg(long, value_name = "FILE", requires = "external_db", help_heading = "External database")]
    pub db_password_file: Option<PathBuf>,

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
    /// error quotes the end of its log. On an HA passive it first waits for
    /// the active's database (bounded, saying so), then starts the standby,
    /// which streams as soon as the active answers.
    Start(DbStartArgs),
    /// Stop the database (fast shutdown) and wait until it is down.
    ///
    /// Stopping a stopped database is not an error. On an instance whose
    /// database is external (kt init --external-db), start and stop refuse
    /// with exit 2: kt does not run that server.
    Stop(DbStopArgs),
    /// Show whether the database runs, with its pid, port and data directory.
    ///
    /// Exits 1 when the database is stopped. For an external database:
    /// where it is, whether it answers kt, and the session's TLS version.
    Status(DbStatusArgs),
}

#[derive(Debug, Args)]
pub struct DbStartArgs {
    /// On an HA passive: how long to wait for the active's database first.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait_for_active: u64,

    #[command(flatten)]
    pub rootdir: PgRootdirArg,
}

#[derive(Debug, Args)]
pub struct DbStopArgs {
    #[command(flatten)]
    pub rootdir: PgRootdirArg,
}

/// The documented `ktadmin db --pg-rootdir DIR`: kt knows the directory
/// from keytrustee.conf; given, it must be that one.
#[derive(Debug, Args)]
pub struct PgRootdirArg {
    /// The database directory, as the documented `ktadmin db` takes it:
    /// refused unless it is the instance's PG_ROOTDIR.
    #[arg(long, value_name = "DIR")]
    pub pg_rootdir: Option<PathBuf>,
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

/// Run the key server in the foreground (HTTPS, port 11371 by default).
///
/// Serves /?a=fingerprint, /?a=pubkey, /health, client registration and
/// authenticated deposits (see the README for the wire protocol). As root
/// it switches to the service account first. SIGHUP reloads the
/// certificate, key and CA without dropping connections; SIGTERM and
/// SIGINT stop it gracefully. The database must be running.
#[derive(Debug, Args)]
pub struct ServeArgs {}

/// Run the key server in the background, like an init script.
///
/// The pid file is <home>/kt-server.pid and the log <home>/logs/kt-server.log.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Start the server and wait until it answers over HTTPS.
    Start,
    /// Stop the server gracefully (SIGTERM) and wait until it has exited.
    Stop,
    /// Stop the server, then start it again.
    Restart,
    /// Reload the certificate, key and CA (SIGHUP) without a restart.
    Reload,
    /// Show whether the server runs; exits 1 when it does not.
    Status,
}

/// Manage organizations and their clients (the documented keytrustee-orgtool).
///
/// Needs the instance's database running (`kt db start`).
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Add an organization with a random auth secret, or add contacts to an existing one.
    Add {
        /// The organization's name: letters, digits, '.', '_', '-'.
        #[arg(short, long)]
        name: String,
        /// Contact addresses, separated by commas.
        ///
        /// -c means contacts here, as in keytrustee-orgtool: give the
        /// confdir as --confdir (or before `org`: kt -c DIR org add ...).
        #[arg(short, long, value_name = "ADDRESSES", default_value = "")]
        contacts: String,
        /// The instance's configuration directory (long form only here).
        #[arg(long, env = "KT_CONFDIR", hide_env_values = true, value_name = "DIR")]
        confdir: Option<PathBuf>,
    },
    /// Mail contacts of an organization a new registration link (theirs
    /// expired, was used, or never arrived); their older unused links stop
    /// working.
    Invite {
        /// The organization's name.
        #[arg(short, long)]
        name: String,
        /// Contact addresses of the organization, separated by commas.
        ///
        /// -c means contacts here, as in `kt org add`: give the confdir as
        /// --confdir (or before `org`: kt -c DIR org invite ...).
        #[arg(short, long, value_name = "ADDRESSES")]
        contacts: String,
        /// The instance's configuration directory (long form only here).
        #[arg(long, env = "KT_CONFDIR", hide_env_values = true, value_name = "DIR")]
        confdir: Option<PathBuf>,
    },
    /// Print every organization as JSON (auth_secret, contacts, creation,
    /// expiration, key_info, name, state, uuid), keyed by name.
    ///
    /// The documented keytrustee-orgtool format: state 0 is active, 1
    /// disabled; an organization without expiration shows
    /// 9999-12-31T15:59:59. With --verbose or --json-extended, kt's own
    /// fields are added (kt_state, kt_id, clients, pending_clients).
    List {
        /// Add kt's own fields to the documented ones (as --verbose does).
        #[arg(long)]
        json_extended: bool,
    },
    /// Set an organization's auth secret; an empty secret (-s "") approves
    /// every new client automatically.
    SetAuth {
        #[arg(short, long)]
        name: String,
        /// The new secret (visible in the process list: prefer --secret-file).
        #[arg(short, long, conflicts_with = "secret_file", required_unless_present = "secret_file")]
        secret: Option<String>,
        /// Read the secret from this file (its first line).
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// Approve a client that awaits approval, or allow a disabled client
    /// to act again.
    EnableClient {
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: String,
    },
    /// Refuse a client that awaits approval: its registration is removed
    /// (it may ask again later).
    DenyClient {
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: String,
    },
    /// Refuse every further request of a client.
    DisableClient {
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: String,
    },
    /// Print the clients (of one organization, or all) as JSON, with their
    /// state (active, disabled, pending), the host name each gave
    /// (claimed_host: the client's claim, not verified) and registration time.
    Clients {
        #[arg(short, long)]
        name: Option<String>,
    },
}

/// A reference client of the key server: register, then store, fetch,
/// list and delete deposits.
///
/// The client's key and settings live in its directory (0700).
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client's directory.
    #[arg(long, env = "KT_CLIENT_DIR", hide_env_values = true, value_name = "DIR")]
    pub dir: PathBuf,

    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a key and register it with an organization.
    Register {
        /// A server URL, https://HOST[:PORT] (repeatable: reads fail over in order).
        #[arg(long = "server", value_name = "URL", required = true)]
        servers: Vec<String>,
        /// The organization to register with.
        #[arg(long)]
        org: String,
        /// A file holding the organization's auth secret (empty for automatic approval).
        ///
        /// Without it, an organization that has a secret holds the
        /// registration until an administrator approves it (kt org
        /// enable-client): the fingerprint is printed and the exit code is
        /// 1. Run the same command again to learn the new state.
        #[arg(long, value_name = "FILE")]
        auth_secret_file: Option<PathBuf>,
        /// Trust the server certificates issued by (or equal to) this PEM file.
        #[arg(long, value_name = "FILE", conflicts_with = "insecure", required_unless_present = "insecure")]
        ca: Option<PathBuf>,
        /// Do not check the server certificate (tests and first contact only).
        #[arg(long)]
        insecure: bool,
        /// The kind of client key to generate.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
    },
    /// Store a new deposit from FILE (or standard input); prints its UUID.
    Put {
        /// The deposit's name.
        name: String,
        /// The file to store; standard input when absent or "-".
        file: Option<PathBuf>,
    },
    /// Write a deposit to standard output.
    Get { uuid: String },
    /// List this client's deposits as JSON.
    List,
    /// Delete a deposit.
    Delete { uuid: String },
    /// Show this client's fingerprint, organization, state and servers.
    Status,
    /// Send a bounded load of signed requests and report throughput and latency.
    Bench {
        /// What to send.
        #[arg(long, value_enum, default_value_t = BenchOp::Get)]
        op: BenchOp,
        /// Parallel keep-alive connections.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        connections: u16,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Stop after this many requests.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        requests: u64,
        /// Bytes per deposit for --op put.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Aim for this many requests per second in total (default: as fast
        /// as the server answers). Latency is then measured from each
        /// request's scheduled time.
        #[arg(long, value_name = "PER_SECOND")]
        rate: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchOp {
    /// Fetch random existing deposits.
    Get,
    /// Create new deposits.
    Put,
}

/// Back up the confdir and the database into one encrypted archive.
///
/// The archive is a tar of the confdir and a plain-SQL dump (one consistent
/// snapshot, taken while the server goes on serving) at their absolute
/// paths, plus a manifest with the SHA-256 of every member, row counts, the
/// server fingerprint and versions. It is an OpenPGP message to every
/// recipient (GnuPG 2.2 decrypts it with `gpg -d`), named
/// kts_bak_<host>_<YYYY-MM-DD_HH-MM-SS>.tar.gpg, 0600, and appears under
/// that name only when complete. Cron-safe: one run at a time per output
/// directory; with --quiet it prints only the backup's path.
///
///     kt backup --gpg-recipient='John Doe' --quiet --output=/var/backups/kt --roll=10
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,

    /// Encrypt to this key, found as `gpg -r` finds it in the GnuPG keyring
    /// of the account running kt (GNUPGHOME honoured). Repeatable: each
    /// recipient alone can decrypt.
    #[arg(long = "gpg-recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,

    /// Encrypt to the public key in this (armored) file. Repeatable.
    #[arg(long = "gpg-recipient-file", value_name = "FILE")]
    pub recipient_files: Vec<PathBuf>,

    /// Write an unencrypted tarball (only when asked for).
    #[arg(long)]
    pub cleartext: bool,

    /// The directory to write the backup to (default: the instance home).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Keep the N newest backups of this host, the new one included, and
    /// remove older ones (after the new one is complete).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub roll: Option<u64>,

    /// Wait this long (30s, 10m, 2h) for another backup to finish instead
    /// of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = kt::duration::parse)]
    pub lock_wait: Option<std::time::Duration>,

    /// Connect to the database on this port instead of DB_PORT.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub database_port: Option<u16>,

    /// Also write the run's result (success, duration, bytes, rows) to
    /// this file in the Prometheus text format, for node-exporter's
    /// textfile collector (name it *.prom in its directory); written
    /// atomically, after a failed run too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List the backups in a directory, newest first, with size, age,
    /// encryption and the recipients' key IDs.
    List {
        /// The directory (default: the instance home).
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Check that the key server and its backups are sound (read-only).
///
/// Without --server: the instance on this host, one line per check
/// (configuration; modes and owner of the confdir; the server key; the TLS
/// certificate against its key, the host name and --warn-days; the database
/// and its schema version; the server's /?a=fingerprint against the
/// confdir's key; HA; backup modes and, with --max-age, freshness). With
/// --server: the remote form, as a client sees each server. Exit codes are
/// the verdict: 0 sound, 1 a problem found, 2 bad input (a malformed
/// --server URL or --ca file), 3 could not check.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VerifyArgs {
    #[command(subcommand)]
    pub command: Option<VerifyCommand>,

    /// Print the checks as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    /// A certificate with fewer days left than this is a problem.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: i64,

    /// The newest backup must be younger than this (30m, 12h, 2d).
    #[arg(long, value_name = "DURATION", value_parser = kt::duration::parse)]
    pub max_age: Option<std::time::Duration>,

    /// Where the backups are (default: the instance home).
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Check this server from outside (repeatable: every HA host).
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,

    /// Trust server certificates issued by (or equal to) this PEM file.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure", requires = "servers")]
    pub ca: Option<PathBuf>,

    /// Do not verify the server certificate chain and name.
    #[arg(long, requires = "servers")]
    pub insecure: bool,

    /// The fingerprint the servers must answer.
    #[arg(long, value_name = "FINGERPRINT", requires = "servers")]
    pub expect_fingerprint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Check that a backup file is whole, signed by the server and restorable.
    ///
    /// Without a key: the OpenPGP message is walked to its last byte and its
    /// recipients listed. With --decrypt (GnuPG keyring) or --secret-key:
    /// decrypted as a stream; the tar is read under kt restore's rules;
    /// every member is compared with the manifest (SHA-256, links,
    /// directories, none unlisted); the manifest's signature is checked with
    /// the archived server key, and that key against this instance's (or
    /// --expect-fingerprint). --restore-test also loads the dump into a
    /// scratch database, as kt restore would, and drops it again.
    Backup {
        /// The backup file.
        file: PathBuf,
        /// Decrypt with the GnuPG keyring of the account running kt.
        #[arg(long)]
        decrypt: bool,
        /// Decrypt with this OpenPGP secret key (armored or binary).
        #[arg(long, value_name = "FILE")]
        secret_key: Option<PathBuf>,
        /// The secret key's passphrase, from a file.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Load the dump into a scratch database and compare rows (as a role
        /// without superuser rights; only a backup whose server key is this
        /// instance's or the expected one).
        #[arg(long)]
        restore_test: bool,
        /// The server key the backup must carry (`4096R/4EDC...` or the bare
        /// fingerprint); default: this instance's key, when there is one.
        #[arg(long, value_name = "FINGERPRINT")]
        expect_fingerprint: Option<String>,
        /// Accept a backup without kt's signature (made the documented way,
        /// or by kt before backups were signed).
        #[arg(long)]
        allow_unsigned: bool,
    },
}

/// Restore a backup: the confdir and the database, safely.
///
/// Decrypts into a private staging directory next to the instance and checks
/// everything first: GnuPG's integrity check, the tar (no escaping paths, no
/// links out of the confdir, no devices), every member against the manifest,
/// the manifest's signature by the server key, and the identity (the host
/// name and server key are this instance's, or --expect-fingerprint's on a
/// fresh host). Nothing from the backup runs before that. Then it shows the
/// plan and asks for confirmation (--yes for scripts; without a terminal and
/// without --yes it refuses). Only then is the dump loaded, into a scratch
/// database, by a database role without superuser rights that runs only the
/// statements pg_dump writes for kt's schema. When it loaded and its rows
/// match, kt stops the server, moves the current confdir into a safety
/// directory, puts the restored one in place, renames the current database
/// aside and the loaded one into its place, checks rows and key, and starts
/// the server again. If any of that fails, every step is undone in reverse:
/// the old state or the new one, never a mix.
///
///     kt restore kts_bak_kts01_example_com_2026-11-27_02-00-00.tar.gpg
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: a .tar.gpg (decrypted through GnuPG) or .tar; or the two
    /// zips of the documented manual backup (keytrustee-db.zip and
    /// keytrustee-conf.zip, ZipCrypto or AES).
    #[arg(required = true, num_args = 1..=2, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The zips' password, from a file (else asked on the terminal).
    #[arg(long, value_name = "FILE")]
    pub zip_password_file: Option<PathBuf>,
    /// Decrypt with this OpenPGP secret key instead of the GnuPG keyring.
    #[arg(long, value_name = "FILE")]
    pub secret_key: Option<PathBuf>,
    /// The secret key's passphrase, from a file.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Accept a backup of another host or key (this host replaces it).
    #[arg(long)]
    pub force_foreign: bool,
    /// The server key the backup must carry (`4096R/4EDC...` or the bare
    /// fingerprint). Needed with --yes where there is no instance key to
    /// compare with (a fresh host, or --force-foreign).
    #[arg(long, value_name = "FINGERPRINT")]
    pub expect_fingerprint: Option<String>,
    /// Accept a backup without kt's signature (made the documented way, or
    /// by kt before backups were signed).
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Check the backup and show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// The account PostgreSQL runs as when root (default: the backup's SERVICE_USER).
    #[arg(long, value_name = "USER")]
    pub service_user: Option<String>,
    /// Also write the restore's result (success, duration, bytes read,
    /// rows) to this file in the Prometheus text format, for
    /// node-exporter's textfile collector; written atomically, after a
    /// failed restore too (not with --dry-run).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// Generate, replace, show and check the server's TLS certificate.
///
/// The documented certificate procedures (openssl req, openssl x509, cp,
/// chown, chmod, an edit of keytrustee.conf and a restart) as checked,
/// reversible commands. Each HA host keeps its own certificate: run
/// `kt cert replace` on the active and on the passive host.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    Generate(CertGenerateArgs),
    Replace(CertReplaceArgs),
    Rollback(CertRollbackArgs),
    Show(CertShowArgs),
    Check(CertCheckArgs),
}

/// Where the password of an encrypted PKCS#8 key comes from.
#[derive(Debug, Args)]
pub struct KeyPasswordArgs {
    /// A file whose first line is the key's password.
    #[arg(long, value_name = "FILE", conflicts_with = "key_password_script")]
    pub key_password_file: Option<PathBuf>,

    /// A command whose output is the key's password (the contract of
    /// SSL_PRIVATE_KEY_PASSWORD_SCRIPT).
    #[arg(long, value_name = "CMD")]
    pub key_password_script: Option<String>,
}

/// Make a key, a certificate signing request or a certificate.
///
/// The documented `openssl req -new` and `openssl x509 -req` in one
/// command. The key is the instance's current one unless --key or
/// --new-key says otherwise. Give exactly one of --csr, --self-signed or
/// --ca-cert. Nothing is ever written over an existing file.
///
///     kt cert generate --new-key ec-p256 --key-out new-pk.pem --csr new.csr
///
///     kt cert generate --self-signed --days 365 --out cert.pem
#[derive(Debug, Args)]
pub struct CertGenerateArgs {
    /// The private key to use (PKCS#8, PKCS#1 or SEC1 PEM, or encrypted PKCS#8).
    ///
    /// Defaults to the instance's current key (SSL_PRIVATE_KEY).
    #[arg(long, value_name = "FILE", conflicts_with = "new_key")]
    pub key: Option<PathBuf>,

    #[command(flatten)]
    pub password: KeyPasswordArgs,

    /// Make a new key of this kind (written to --key-out, mode 0600).
    #[arg(long, value_enum, value_name = "KIND", requires = "key_out")]
    pub new_key: Option<NewKeyKind>,

    /// Where the new key goes; never over an existing file.
    #[arg(long, value_name = "FILE", requires = "new_key")]
    pub key_out: Option<PathBuf>,

    /// Write a certificate signing request for a CA to sign.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["self_signed", "ca_cert"])]
    pub csr: Option<PathBuf>,

    /// Write a self-signed certificate to --out.
    #[arg(long, requires = "out", conflicts_with = "ca_cert")]
    pub self_signed: bool,

    /// Sign the certificate with this CA certificate (labs and tests).
    #[arg(long, value_name = "FILE", requires_all = ["ca_key", "out"])]
    pub ca_cert: Option<PathBuf>,

    /// The CA's private key (unencrypted PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,

    /// Where the certificate goes; never over an existing file.
    #[arg(long, value_name = "CERT")]
    pub out: Option<PathBuf>,

    /// Days the certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,

    /// The host name (CN and first SAN). Defaults to the instance's HOSTNAME.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// An extra DNS name or IP address for the SANs (repeatable).
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,

    /// Other subject fields, as openssl's -subj ("/C=US/O=Example/OU=Ops")
    /// or comma-separated ("C=US,O=Example"). CN is always the host name.
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewKeyKind {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

/// Put a new certificate in place in a running server, with no downtime.
///
/// Checks everything first (the certificate and key parse and match; the
/// certificate is valid now and names the host; with --ca the chain
/// verifies; an encrypted key really decrypts); any refusal exits 2 with
/// every file and the configuration unchanged. Then: .ssl is copied to
/// .ssl.bak (an older .ssl.bak is kept under a timestamped name), the new
/// files are installed (mode 0600, owned by the service account),
/// keytrustee.conf is updated, and a running server is reloaded and
/// checked to serve the new certificate. If the reload or that check
/// fails, everything is put back and the server reloaded again (exit 3).
/// A stopped server stays stopped.
#[derive(Debug, Args)]
pub struct CertReplaceArgs {
    /// The new certificate (PEM or DER; may carry its chain after it).
    #[arg(long, value_name = "FILE", required_unless_present = "pkcs12", conflicts_with = "pkcs12")]
    pub cert: Option<PathBuf>,

    /// Its private key. Defaults to the instance's current key.
    #[arg(long, value_name = "FILE", conflicts_with = "pkcs12")]
    pub key: Option<PathBuf>,

    #[command(flatten)]
    pub password: KeyPasswordArgs,

    /// The CA chain: root and intermediates in one PEM file, any order.
    /// Installed as ssl-cert-keytrustee-ca.pem.
    #[arg(long, value_name = "CHAIN")]
    pub ca: Option<PathBuf>,

    /// A PKCS#12 bundle holding the key and certificate (and chain).
    #[arg(long, value_name = "FILE", requires = "pkcs12_password_file", conflicts_with_all = ["key_password_file", "key_password_script"])]
    pub pkcs12: Option<PathBuf>,

    /// A file whose first line is the PKCS#12 bundle's password.
    #[arg(long, value_name = "FILE", requires = "pkcs12")]
    pub pkcs12_password_file: Option<PathBuf>,

    /// Warn when the certificate has fewer days left than this.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: i64,

    /// Install a certificate that does not name the instance's host name.
    #[arg(long)]
    pub allow_hostname_mismatch: bool,

    /// Print the plan and change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Put the certificate saved in .ssl.bak back in place, the same checked
/// way as `kt cert replace` (the current one goes to .ssl.bak in turn).
#[derive(Debug, Args)]
pub struct CertRollbackArgs {
    /// Print the plan and change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Put back a certificate that does not name the host name.
    #[arg(long)]
    pub allow_hostname_mismatch: bool,
}

/// Show a certificate: subject, names, issuer, validity, fingerprint, key, chain.
///
/// The instance's certificate by default, or a file, or what a live server
/// presents.
#[derive(Debug, Args)]
pub struct CertShowArgs {
    /// A certificate file (PEM or DER, with or without its chain).
    #[arg(value_name = "FILE", conflicts_with = "server")]
    pub file: Option<PathBuf>,

    /// Show what the server at HOST:PORT presents.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Check the instance's certificate, for monitoring and cron.
///
/// Exits 0 when fine; 1 when it expires within --warn-days, has expired,
/// does not match its key or the host name, or the running server serves a
/// different certificate than the configured one.
#[derive(Debug, Args)]
pub struct CertCheckArgs {
    /// A certificate with fewer days left than this is a problem.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: i64,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// High availability: an active and a passive server, PostgreSQL streaming
/// replication between them.
///
/// The bootstrap, with kt alone:
///
///     kt ha enable --peer kts02.example.com                  (on the active)
///     kt ha sync -zcav --exclude .ssl /var/lib/keytrustee/.keytrustee root@kts02.example.com:/var/lib/keytrustee/.
///     kt ha init-passive --active kts01.example.com          (on the passive)
///     kt ha enable-sync                                      (on the active)
///     kt ha status                                           (on either)
#[derive(Debug, Subcommand)]
pub enum HaCommand {
    Sync(HaSyncArgs),
    Enable(HaEnableArgs),
    Disable(HaDisableArgs),
    InitPassive(HaInitPassiveArgs),
    EnableSync(HaEnableSyncArgs),
    DisableSync(HaDisableSyncArgs),
    Status(HaStatusArgs),
}

/// Prepare the active's database for a passive at PEER.
///
/// Creates the replication role kt_replication (its password set as a
/// SCRAM verifier; the password itself in <confdir>/.pgpass-replication,
/// 0600, which `kt ha sync` carries to the passive), copies the active's
/// CA to <confdir>/ha-active-ca.pem (the passive verifies the database's
/// certificate with it), admits replication from PEER's addresses only
/// (hostssl, scram-sha-256 in pg_hba.conf), and turns on TLS on the
/// database port with the instance's certificate and key, listening on the
/// address PEER reaches plus 127.0.0.1. PostgreSQL reads the key itself:
/// it must be unencrypted, 0600 and owned by the service account; an
/// encrypted key (SSL_PRIVATE_KEY_PASSWORD_SCRIPT) is refused (exit 2).
/// A running database is restarted; a stopped one is started to check the
/// settings and stopped again. Any failure undoes every step.
#[derive(Debug, Args)]
pub struct HaEnableArgs {
    /// The passive host (name or address) and its database port (default: this instance's).
    #[arg(long, value_name = "HOST[:DBPORT]")]
    pub peer: String,
}

/// Undo `kt ha enable`: the role, the files and the settings it added.
///
/// The database's configuration files come back byte for byte. Turn
/// synchronous replication off first (`kt ha disable-sync`).
#[derive(Debug, Args)]
pub struct HaDisableArgs {}

/// Make this host the passive: copy the active's database and stream from it.
///
/// Run after the active's confdir was synced here (`kt ha sync`, .ssl
/// excluded) and `kt ha enable` ran there. Writes this host's name
/// (HOSTNAME) and its own self-signed certificate (kept when .ssl has
/// one), copies the active's database with pg_basebackup -R over TLS as
/// kt_replication (password from the synced file), starts it as a
/// streaming standby and starts the key server, which answers reads and
/// refuses writes (503 read_only, naming the active). Waits for the
/// active's database when it is not up yet. Refuses when this host's
/// database has data unless --force, which sets it aside (renamed). Any
/// failure undoes every step.
#[derive(Debug, Args)]
pub struct HaInitPassiveArgs {
    /// The active host and its database port (default: DB_PORT of the synced configuration).
    #[arg(long, value_name = "HOST[:DBPORT]")]
    pub active: String,

    /// This host's name, in its certificate and keytrustee.conf (default: its FQDN).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Replace this host's database (set aside, not deleted) and stop its server.
    #[arg(long)]
    pub force: bool,

    /// This host's PostgreSQL data directory, when not the active's path.
    #[arg(long, value_name = "DIR")]
    pub pg_rootdir: Option<PathBuf>,

    /// This host's database port, when not the active's.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub database_port: Option<u16>,

    /// Where this host's key server listens, when not where the active's does.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,

    /// How long to wait for the active's database to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub wait: u64,

    /// Days the self-signed TLS certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub cert_days: u32,

    /// An extra DNS name or IP address for the TLS certificate (repeatable).
    #[arg(long = "san", value_name = "NAME")]
    pub extra_sans: Vec<String>,
}

/// Turn on synchronous replication: a commit waits until the passive has applied it.
///
/// Sets synchronous_standby_names and synchronous_commit = remote_apply,
/// and succeeds only when pg_stat_replication shows the passive as
/// sync_state 'sync' (else turns it off again; exit 3).
#[derive(Debug, Args)]
pub struct HaEnableSyncArgs {
    /// How long to wait for the passive to become synchronous.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub wait: u64,
}

/// Turn off synchronous replication (e.g. while the passive is rebuilt).
#[derive(Debug, Args)]
pub struct HaDisableSyncArgs {}

/// Show this host's HA role, its peer and the replication state.
///
/// Role, peer, replication state, sync or async, lag in bytes and seconds,
/// the last WAL received and replayed. Exits 0 when healthy, 1 when
/// degraded (or not an HA host), 3 when the database does not answer.
///
/// With --peer, also the drift of the confdir between this host and the
/// peer: a dry run of `kt ha sync -acn -i --delete` from this confdir to
/// the peer's over the remote shell, `.ssl` (the host's identity and its
/// own settings, .ssl/host.conf) and `.ssl.*` left out, and keytrustee.conf
/// compared on its shared settings only (the host-specific keys may
/// differ). Any drift makes the status degraded.
#[derive(Debug, Args)]
pub struct HaStatusArgs {
    /// Print the status as a JSON object.
    #[arg(long)]
    pub json: bool,

    /// Compare the confdir with the peer's: [USER@]HOST[:CONFDIR] (CONFDIR
    /// defaults to this host's confdir path).
    #[arg(long, value_name = "[USER@]HOST[:CONFDIR]")]
    pub peer: Option<String>,

    /// The remote shell that reaches the peer, split into words as a shell would.
    #[arg(short = 'e', long, value_name = "CMD", default_value = "ssh", requires = "peer")]
    pub rsh: String,

    /// kt's command on the peer (used verbatim: 'sudo kt' works).
    #[arg(long, value_name = "PATH", default_value = "kt", requires = "peer")]
    pub remote_kt: String,

    /// After `kt restore` on this active: remove the restore's marker
    /// (<home>/ha-reinit-needed) once a standby has caught up with the
    /// restore (kept otherwise); the status follows. kt ha enable-sync
    /// clears it too.
    #[arg(long)]
    pub clear_reinit: bool,
}

/// Copy files and directories as rsync does, locally or to or from another host.
///
/// The documented HA bootstrap step, with no rsync on either host and the
/// same command line:
///
///     kt ha sync -zcav --exclude .ssl /var/lib/keytrustee/.keytrustee root@kts02.example.com:/var/lib/keytrustee/.
///
/// SRC or DEST may be [USER@]HOST:PATH (a `:` with no `/` before it): kt
/// then starts `RSH [USER@]HOST REMOTE_KT ha sync --server ...` on that
/// host and speaks kt's own sync protocol over its pipe, as rsync -e does.
/// rsync's trailing-slash rule holds: SRC `dir` copies the directory into
/// DEST, `dir/` its contents. Only what differs is sent; a changed file
/// sends its changed blocks (rsync's delta algorithm), and every file is
/// checked against the sender's SHA-256 before it lands by temp file,
/// fsync and rename: an interrupted sync leaves each file whole, old or
/// new. The receiving side refuses paths that would leave DEST and a
/// sender that lies about sizes or checksums.
///
/// Output as rsync's: nothing without -v or -i; -v prints one line per
/// transferred path, then the totals; -i rsync's itemized changes.
/// Exit codes: 1 when some files could not be transferred (rsync's 23),
/// 2 usage error or refused input, 3 when the remote side could not be
/// started or the connection broke (the remote's stderr is quoted).
#[derive(Debug, Args)]
pub struct HaSyncArgs {
    /// Archive mode: -rlptgoD.
    #[arg(short = 'a', long)]
    pub archive: bool,

    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Copy symlinks as symlinks (without it they are skipped).
    #[arg(short = 'l', long)]
    pub links: bool,

    /// Set the permissions of DEST files to those of SRC.
    #[arg(short = 'p', long)]
    pub perms: bool,

    /// Set modification times (without it, a changed file gets the time of the copy).
    #[arg(short = 't', long)]
    pub times: bool,

    /// Set groups, by name where the name exists on the receiving host.
    #[arg(short = 'g', long)]
    pub group: bool,

    /// Set owners, by name where the name exists (only when receiving as root).
    #[arg(short = 'o', long)]
    pub owner: bool,

    /// Copy devices (as root), fifos and sockets.
    #[arg(short = 'D', long)]
    pub devices: bool,

    /// Compare files by BLAKE3 hash instead of size and modification time.
    ///
    /// -c is --checksum here, as in rsync, not kt's --confdir (this command
    /// uses no instance).
    #[arg(short = 'c', long)]
    pub checksum: bool,

    /// Compress the data on the wire (zlib) to and from a remote host.
    #[arg(short = 'z', long)]
    pub compress: bool,

    /// Show what would change, change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Print each change in rsync's notation (>f+++++++++, .d..t......, *deleting).
    #[arg(short = 'i', long)]
    pub itemize_changes: bool,

    /// Remove DEST files that SRC does not have (not excluded ones), after the transfer.
    #[arg(long)]
    pub delete: bool,

    /// Send changed files whole, no delta against DEST's old file (rsync's
    /// -W; the default when SRC and DEST are both local, as in rsync).
    #[arg(short = 'W', long, overrides_with = "no_whole_file")]
    pub whole_file: bool,

    /// Send deltas against DEST's old files even when both sides are local.
    #[arg(long, overrides_with = "whole_file")]
    pub no_whole_file: bool,

    /// Skip paths matching PATTERN (rsync's rules: `/` anchors, a trailing
    /// `/` matches directories, `*`, `**`, `?`; first matching rule wins;
    /// repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Do not skip paths matching PATTERN (before a broader --exclude; repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,

    /// The remote shell that reaches HOST, split into words as a shell would.
    #[arg(short = 'e', long, value_name = "CMD", default_value = "ssh")]
    pub rsh: String,

    /// kt's command on the remote host (used verbatim: 'sudo kt' works).
    #[arg(long, value_name = "PATH", default_value = "kt")]
    pub remote_kt: String,

    /// Run the remote side of a session on stdin and stdout (started by kt).
    #[arg(long, hide = true)]
    pub server: bool,

    /// With --server: send PATH....
    #[arg(long, hide = true, requires = "server", conflicts_with = "receiver")]
    pub sender: bool,

    /// With --server: receive into PATH.
    #[arg(long, hide = true, requires = "server")]
    pub receiver: bool,

    /// Keeps kt's global -c (--confdir) off this command, where -c is --checksum.
    #[arg(long, hide = true, value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// The sources, then the destination directory.
    #[arg(required = true, value_name = "SRC... DEST")]
    pub paths: Vec<std::ffi::OsString>,

    /// --include and --exclude in command-line order (filled by `parse`).
    #[arg(skip)]
    pub rules: Vec<(bool, String)>,
}

/// Schedule backups: checked cron entries, their next runs, a foreground
/// runner for hosts without cron, and systemd timers.
///
/// The entries live in a cron.d file (default /etc/cron.d/kt), one line
/// each after a comment naming it, run as the instance's service account
/// (SERVICE_USER) with that account's GnuPG keyring:
///
///     kt schedule add --cron '30 2 * * *' --name nightly -- backup --gpg-recipient='John Doe' --output=/var/backups/kt --roll=10
///     kt schedule list
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add an entry: check the cron expression (crontab(5): five fields,
    /// lists, ranges, steps, month and day names, 0 and 7 Sunday, the
    /// day-of-month / day-of-week OR rule, @hourly @daily @weekly @monthly
    /// @yearly @reboot) and the kt command line after `--` exactly as kt
    /// parses it, and that the --gpg-recipient keys resolve in the service
    /// account's keyring; either refused (exit 2) leaves the file as it was.
    /// The entry runs with --quiet and its stdout dropped, so cron mails
    /// only failures.
    Add {
        /// When to run, in crontab(5) syntax (e.g. '30 2 * * *', '@daily').
        #[arg(long = "cron", value_name = "EXPR")]
        expr: String,
        /// The entry's name (default: backup, backup-2, ...).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        file: CronFileArg,
        /// The kt command to run: backup and its options.
        #[arg(last = true, required = true, value_name = "KT ARGS", allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the entries, their commands and their next 5 runs (local time).
    List {
        #[command(flatten)]
        file: CronFileArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an entry by name.
    Remove {
        /// The entry's name (kt schedule list shows them).
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        file: CronFileArg,
    },
    /// Show when a cron expression would run (checking it as add does).
    Next {
        /// The expression, in crontab(5) syntax.
        #[arg(value_name = "EXPR")]
        expr: String,
        /// How many runs to show.
        #[arg(long, value_name = "N", default_value_t = 5)]
        count: usize,
        /// Count from this local time ('YYYY-MM-DD HH:MM:SS') instead of now.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Print JSON (with the equivalent systemd OnCalendar= values).
        #[arg(long)]
        json: bool,
    },
    /// Run the entries in the foreground, at their times, without cron (for
    /// containers): one run at a time, a missed run run once, never twice.
    /// SIGTERM or SIGINT waits for a running backup, then exits 0.
    Run {
        #[command(flatten)]
        file: CronFileArg,
        /// Run this entry once, now, as cron would, and exit with its
        /// result.
        #[arg(long, value_name = "NAME")]
        once: Option<String>,
    },
    /// Print a systemd .service + .timer pair that runs an entry at the
    /// same times (OnCalendar=), or write them with --install.
    Systemd {
        /// The entry's name.
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        file: CronFileArg,
        /// Write the units (then: systemctl daemon-reload; systemctl enable
        /// --now kt-schedule-NAME.timer).
        #[arg(long)]
        install: bool,
        /// Where --install writes them.
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system", requires = "install")]
        unit_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CronFileArg {
    /// The cron file holding kt's entries.
    #[arg(long, value_name = "FILE", default_value = "/etc/cron.d/kt")]
    pub cron_file: PathBuf,
}

/// Contact mail: the outbox and the MTA.
///
/// kt mails an organization's contacts when they are added (the
/// "KeyTrustee Contact Registration" link) and when a client registers or
/// waits for approval. Each message is queued in the database with the
/// change that causes it and sent by the active `kt serve`, signed with the
/// server's OpenPGP key (PGP/MIME) and encrypted to the contact's key once
/// registered. Settings (keytrustee.conf): MAIL_TRANSPORT (smtp, sendmail,
/// off), MAIL_SMTP_HOST, MAIL_SMTP_PORT, MAIL_SMTP_TLS, MAIL_SMTP_CA,
/// MAIL_SMTP_USER with MAIL_SMTP_PASSWORD_FILE or MAIL_SMTP_PASSWORD_SCRIPT,
/// MAIL_SENDMAIL, MAIL_FROM, MAIL_RETRY_SECONDS, MAIL_GIVE_UP_HOURS.
#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// List the messages not sent yet and why: state (queued, or failed:
    /// given up), attempts, the last error and when the next attempt is due.
    Queue {
        /// Include the sent messages still kept (30 days), with the MTA's answer.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a signed test message now, through the configured transport,
    /// and print the MTA's answer. Exit 3 when the MTA refuses it or cannot
    /// be reached. The message does not go through the queue.
    Test {
        /// The address to send to.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
}
