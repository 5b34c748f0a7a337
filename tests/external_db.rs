//! An instance whose database is an existing PostgreSQL server (issue 18,
//! "An external database"): a cluster this test makes itself with initdb
//! (not `kt init`), TLS by a certificate from openssl, SCRAM only over
//! `hostssl` (no unencrypted login possible), and a role without superuser
//! rights that owns its database. Then init, db, serve, org, client,
//! backup, verify and restore against it; psql as the cluster's
//! administrator is the outside witness.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kt::account::Account;

use crate::harness::*;
use crate::server::{client, org_with_secret, register};

const ROLE: &str = "ktapp";
const DATABASE: &str = "ktdb";
const PASSWORD: &str = "correct-horse-battery-9";

/// A PostgreSQL cluster run by the service account, stopped on drop.
struct ExternalCluster {
    dir: TestDir,
    data: PathBuf,
    port: u16,
    account: Account,
    bindir: PathBuf,
    ca: PathBuf,
}

impl ExternalCluster {
    fn start() -> ExternalCluster {
        Self::start_with(&["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], &[])
    }

    /// A cluster whose server certificate has a key made by `req -newkey
    /// KEY_ARGS` and is signed with `SIGN_ARGS` (`x509 -req` options).
    fn start_with(key_args: &[&str], sign_args: &[&str]) -> ExternalCluster {
        assert!(is_root(), "the external-database test makes a cluster run by the service account: run the tests as root");
        let dir = TestDir::new("extdb");
        let account = Account::service("keytrustee", &dir.path).expect("the service account");
        let bindir = kt::storage::cluster::find_bindir().expect("PostgreSQL's server programs (scripts/install-deps --for test)");
        let port = free_port();
        let data = dir.join("data");
        let tls = dir.join("tls");
        std::fs::create_dir(&tls).unwrap();
        let ca = make_certificates_with(&tls, key_args, sign_args);
        for path in [&dir.path, &tls, &tls.join("server.crt"), &tls.join("server.key")] {
            account.chown(path).unwrap();
        }
        let cluster = ExternalCluster { dir, data, port, account, bindir, ca };
        cluster
            .tool("initdb")
            .args(["-U", "admin", "-A", "reject", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&cluster.data)
            .run_ok();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{sock}'\n\
             ssl = on\nssl_cert_file = '{tls}/server.crt'\nssl_key_file = '{tls}/server.key'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\n",
            port = cluster.port,
            sock = cluster.dir.path.display(),
            tls = tls.display()
        );
        append(&cluster.data.join("postgresql.conf"), &conf);
        // The administrator by the socket (this test's setup and witness);
        // everyone else by TLS and SCRAM alone: no `host` line, so no
        // unencrypted login.
        std::fs::write(
            cluster.data.join("pg_hba.conf"),
            "local   all  admin                trust\nhostssl all  all    127.0.0.1/32  scram-sha-256\n",
        )
        .unwrap();
        cluster
            .tool("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&cluster.data)
            .arg("-l")
            .arg(cluster.dir.join("postgres.log"))
            .run_ok();
        // The password travels on psql's stdin, never its argv.
        cluster.admin_stdin(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{PASSWORD}';\n\
                 CREATE DATABASE {DATABASE} OWNER {ROLE};\n\
                 CREATE ROLE boss LOGIN SUPERUSER PASSWORD '{PASSWORD}';\n\
                 CREATE DATABASE bossdb OWNER boss;\n\
                 CREATE ROLE deputy LOGIN NOSUPERUSER PASSWORD '{PASSWORD}';\n\
                 GRANT boss TO deputy;\n\
                 CREATE DATABASE deputydb OWNER deputy;\n\
                 CREATE DATABASE viewdb OWNER {ROLE};\n"
            ),
        );
        cluster
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        cmd.uid(self.account.uid).gid(self.account.gid).current_dir("/").env("HOME", &self.dir.path);
        cmd
    }

    fn psql(&self, database: &str) -> Command {
        let mut cmd = self.tool("psql");
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "admin", "-h"])
            .arg(&self.dir.path)
            .args(["-p", &self.port.to_string(), "-d", database]);
        cmd
    }

    /// SQL as the administrator; its unaligned, tuples-only output.
    fn admin(&self, database: &str, sql: &str) -> String {
        run(self.psql(database).args(["-c", sql])).expect(0).stdout.trim().to_string()
    }

    fn admin_stdin(&self, database: &str, sql: &str) {
        let mut child = self.psql(database).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), sql.as_bytes()).unwrap();
        Run::from(child.wait_with_output().unwrap()).expect(0);
    }
}

impl Drop for ExternalCluster {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl").args(["stop", "-m", "immediate", "-D"]).arg(&self.data).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

trait RunOk {
    fn run_ok(&mut self);
}

impl RunOk for Command {
    #[track_caller]
    fn run_ok(&mut self) {
        run(self).expect(0);
    }
}

fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).unwrap();
    old.push_str(text);
    std::fs::write(path, old).unwrap();
}

/// A CA and a server certificate it signs for localhost and 127.0.0.1;
/// returns the CA's file.
fn make_certificates(tls: &Path) -> PathBuf {
    make_certificates_with(tls, &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], &[])
}

fn make_certificates_with(tls: &Path, key_args: &[&str], sign_args: &[&str]) -> PathBuf {
    let p = |name: &str| tls.join(name).to_str().unwrap().to_string();
    // The CA's key is of the same kind: it makes the server's signature.
    let (ca_key_file, ca_file) = (p("ca.key"), p("ca.crt"));
    let mut ca = vec!["req", "-x509", "-newkey"];
    ca.extend(key_args);
    ca.extend(["-nodes", "-days", "2", "-subj", "/CN=kt test database CA", "-keyout", &ca_key_file, "-out", &ca_file]);
    openssl(&ca).expect(0);
    let mut req = vec!["req", "-newkey"];
    req.extend(key_args);
    let (key, csr, crt, ca_crt, ca_key, ext) = (p("server.key"), p("server.csr"), p("server.crt"), p("ca.crt"), p("ca.key"), p("ext.cnf"));
    req.extend(["-nodes", "-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
    openssl(&req).expect(0);
    std::fs::write(tls.join("ext.cnf"), "subjectAltName = DNS:localhost, IP:127.0.0.1\n").unwrap();
    let mut sign = vec!["x509", "-req", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key, "-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &crt];
    sign.extend(sign_args);
    openssl(&sign).expect(0);
    std::fs::set_permissions(tls.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    tls.join("ca.crt")
}

/// `kt init --external-db` against `cluster` into a new test directory.
fn init(cluster: &ExternalCluster, name: &str, extra: &[&str]) -> (TestDir, PathBuf, u16, Run) {
    let dir = TestDir::new(name);
    let confdir = dir.join("home/.keytrustee");
    let password_file = dir.join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let server_port = free_port();
    let out = run(kt()
        .arg("init")
        .arg("--confdir")
        .arg(&confdir)
        .args(["--key-type", "ed25519", "--hostname", "localhost", "--san", "127.0.0.1"])
        .args(["--listen", &format!("127.0.0.1:{server_port}")])
        .args(["--external-db", "--db-host", "localhost", "--db-port", &cluster.port.to_string()])
        .arg("--db-password-file")
        .arg(&password_file)
        .args(extra));
    (dir, confdir, server_port, out)
}

#[test]
fn an_instance_on_an_external_database_works_end_to_end() {
    let cluster = ExternalCluster::start();
    let ca = cluster.ca.to_str().unwrap().to_string();

    // Refused before any change: a CA that did not sign the server's
    // certificate (exit 3), and a superuser role (exit 2).
    let other_ca = make_certificates(&cluster.dir.join("tls-other").tap_mkdir());
    let (dir, confdir, _, out) =
        init(&cluster, "ext-bad-ca", &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", other_ca.to_str().unwrap()]);
    let out = out.expect(3);
    assert!(out.stderr.contains("cannot connect to the database on localhost"), "{}", out.stderr);
    assert!(!confdir.exists() && !dir.join("home").exists(), "a refused init leaves nothing");
    let (_, confdir, _, out) = init(&cluster, "ext-boss", &["--db-name", "bossdb", "--db-user", "boss", "--db-sslrootcert", &ca]);
    assert!(out.expect(2).stderr.contains("superuser"));
    assert!(!confdir.exists());
    assert_eq!(cluster.admin("bossdb", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");
    // A member of a superuser role can do what it can: refused the same way.
    let (_, confdir, _, out) = init(&cluster, "ext-deputy", &["--db-name", "deputydb", "--db-user", "deputy", "--db-sslrootcert", &ca]);
    assert!(out.expect(2).stderr.contains("member of a superuser role"));
    assert!(!confdir.exists());
    // A schema holding someone's view (no table) is not empty: refused,
    // and the view is left as it was.
    cluster.admin("viewdb", &format!("CREATE VIEW public.report AS SELECT 1 AS one; ALTER VIEW public.report OWNER TO {ROLE}"));
    let (_, confdir, _, out) = init(&cluster, "ext-view", &["--db-name", "viewdb", "--db-user", ROLE, "--db-sslrootcert", &ca]);
    let out = out.expect(2);
    assert!(out.stderr.contains("already holds objects in schema public: report"), "{}", out.stderr);
    assert!(!confdir.exists());
    assert_eq!(cluster.admin("viewdb", "SELECT one FROM public.report"), "1");

    // Channel binding cannot be required without TLS: refused (exit 2).
    let (_, confdir, _, out) =
        init(&cluster, "ext-cb", &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslmode", "disable", "--db-channel-binding", "require"]);
    let out = out.expect(2);
    assert!(out.stderr.contains("DB_CHANNEL_BINDING"), "{}", out.stderr);
    assert!(!confdir.exists());

    // The instance: verify-full against the test's CA, SCRAM bound to the
    // TLS session (kt's connections and pg_dump's alike).
    let (dir, confdir, server_port, out) = init(
        &cluster,
        "ext",
        &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", &ca, "--db-sslmode", "verify-full", "--db-channel-binding", "require"],
    );
    let out = out.expect(0);
    assert!(out.stderr.contains(&format!("database external localhost:{}/{DATABASE}", cluster.port)), "{}", out.stderr);
    let home = dir.join("home");
    let inst = Instance { dir, confdir: confdir.clone(), home: home.clone(), db_port: cluster.port, server_port, init: out };
    assert!(!home.join("db").exists(), "no cluster of its own");
    let conf = std::fs::read_to_string(confdir.join("keytrustee.conf")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&conf).unwrap();
    assert_eq!(config["DB_MODE"], "external");
    assert_eq!(config["DB_HOST"], "localhost");
    assert_eq!(config["DB_PORT"], cluster.port);
    assert_eq!((config["DB_NAME"].as_str(), config["DB_USER"].as_str()), (Some(DATABASE), Some(ROLE)));
    assert_eq!(config["DB_SSLMODE"], "verify-full");
    assert_eq!(config["DB_CHANNEL_BINDING"], "require");
    assert_eq!(config["DB_SSLROOTCERT"], confdir.join("db-ca.pem").to_str().unwrap());
    assert!(config.get("PG_ROOTDIR").is_none());
    assert!(!conf.contains(PASSWORD), "the password is not in the configuration");
    assert_eq!(mode(&confdir.join(".pgpass")), 0o600);
    assert!(std::fs::read_to_string(confdir.join(".pgpass")).unwrap().contains(&format!("{ROLE}:{PASSWORD}")));
    // The schema is there, every table owned by kt's role.
    let owners = cluster.admin(DATABASE, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'");
    assert_eq!(owners, ROLE);
    assert!(cluster.admin(DATABASE, "SELECT max(version) FROM schema_version").parse::<i32>().unwrap() >= 4);

    // kt does not run that server; status says where it is.
    for args in [&["db", "start"][..], &["db", "stop"], &["ha", "status"]] {
        let out = inst.kt(args).expect(2);
        assert!(out.stderr.contains("the database is external"), "{}", out.stderr);
    }
    let status = inst.kt(&["db", "status"]).expect(0);
    assert!(status.stdout.contains(&format!("database: external localhost:{}/{DATABASE}", cluster.port)), "{}", status.stdout);
    assert!(status.stdout.contains("TLSv1.3"), "{}", status.stdout);

    // Serve, organizations, a client's deposit.
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (cdir, out) = register(&inst, "web01", "acme", "");
    out.expect(0);
    let data = inst.dir.join("data");
    std::fs::write(&data, "the secret key").unwrap();
    let uuid = client(&cdir, &["put", "k1", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "the secret key");
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM deposits"), "1");
    // The server's sessions are TLS (the server says so, not kt).
    let tls_sessions = cluster.admin(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = '{ROLE}' AND a.application_name = 'kt serve' AND s.ssl"),
    );
    assert!(tls_sessions.parse::<u32>().unwrap() >= 1, "{tls_sessions}");
    assert_eq!(
        cluster.admin("postgres", &format!("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = '{ROLE}' AND NOT s.ssl")),
        "0"
    );

    // verify: the database line names the external server, TLS and grants.
    let out = inst.kt(&["verify"]).expect(0);
    assert!(out.stdout.contains(&format!("database: external localhost:{}/{DATABASE} as {ROLE}, TLSv1.3", cluster.port)), "{}", out.stdout);
    assert!(out.stdout.contains("(no superuser)"), "{}", out.stdout);
    assert!(!out.stdout.contains("database grants"), "{}", out.stdout);
    // Without CREATE on the database everything but a restore works:
    // verify warns and stays sound.
    cluster.admin("postgres", &format!("REVOKE CREATE ON DATABASE {DATABASE} FROM {ROLE}"));
    let out = inst.kt(&["verify"]).expect(0);
    let line = out.stdout.lines().find(|l| l.contains("database grants")).unwrap_or_else(|| panic!("{}", out.stdout)).to_string();
    assert!(line.contains("warn") && line.contains(&format!("lacks CREATE on the database {DATABASE}")), "{line}");
    cluster.admin("postgres", &format!("GRANT CREATE ON DATABASE {DATABASE} TO {ROLE}"));

    // backup: pg_dump over TLS with the same settings; the dump holds the deposit.
    let out_dir = TestDir::new("ext-backups");
    let out = run(kt().arg("-c").arg(&confdir).args(["backup", "--cleartext", "--quiet", "--output", out_dir.path.to_str().unwrap()])).expect(0);
    let archive = PathBuf::from(out.stdout.trim());
    let listing = run(Command::new("tar").arg("tf").arg(&archive)).expect(0).stdout;
    let sql = listing.lines().find(|l| l.ends_with(".sql")).expect("the dump is in the archive").to_string();
    let dump = run(Command::new("tar").arg("xOf").arg(&archive).arg(&sql)).expect(0).stdout;
    assert!(dump.contains("COPY public.deposits"), "the dump is kt's database");
    assert!(dump.contains(&uuid), "the dump holds the deposit");
    assert!(
        cluster.admin("postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'") == "0",
        "pg_dump ended"
    );

    // restore onto a fresh host (no instance there): refused, nothing made.
    let fresh = TestDir::new("ext-fresh");
    let out = run(kt().arg("-c").arg(fresh.join("home/.keytrustee")).args(["restore", archive.to_str().unwrap(), "--yes", "--force-foreign"]));
    let out = out.expect(2);
    assert!(out.stderr.contains("there is no such instance"), "{}", out.stderr);
    assert!(!fresh.join("home/.keytrustee").exists());
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM deposits"), "1");

    inst.kt(&["server", "stop"]).expect(0);
}

/// The schemas a restore made for itself (scratch, reference, safety copy).
fn restore_schemas(cluster: &ExternalCluster) -> String {
    cluster.admin(DATABASE, "SELECT COALESCE(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace WHERE nspname LIKE 'kt\\_restore\\_%'")
}

/// The whole database as its administrator dumps it (pg_dump's random
/// `\restrict` key left out): the witness that nothing changed. Without
/// the mail outbox's rows, which the running server's mail worker updates
/// (no mail server here: it counts its attempts).
fn dump_as_admin(cluster: &ExternalCluster, schemas: &[&str]) -> String {
    let mut cmd = cluster.tool("pg_dump");
    cmd.args(["-U", "admin", "-h"]).arg(&cluster.dir.path).args(["-p", &cluster.port.to_string(), DATABASE]);
    cmd.arg("--exclude-table-data=public.mail_outbox");
    for schema in schemas {
        cmd.args(["--schema", schema]);
    }
    let out = run(&mut cmd).expect(0).stdout;
    out.lines().filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")).collect::<Vec<_>>().join("\n")
}

/// Rewrites the tar `from` into `to`, replacing member `name`'s data.
fn replace_member(from: &Path, to: &Path, name: &str, data: &str) {
    run(Command::new("python3")
        .arg("-c")
        .arg(concat!(
            "import tarfile,sys,io\n",
            "src=tarfile.open(sys.argv[1]); dst=tarfile.open(sys.argv[2],'w')\n",
            "for m in src.getmembers():\n",
            "  d=src.extractfile(m).read() if m.isfile() else None\n",
            "  if m.name==sys.argv[3]:\n",
            "    d=sys.argv[4].encode() if not sys.argv[4].startswith('+') else d+sys.argv[4][1:].encode(); m.size=len(d)\n",
            "  dst.addfile(m, io.BytesIO(d) if d is not None else None)\n",
            "dst.close()\n"
        ))
        .arg(from)
        .arg(to)
        .arg(name)
        .arg(data))
    .expect(0);
}

#[test]
fn a_restore_into_the_external_database_swaps_the_tables_or_changes_nothing() {
    let cluster = ExternalCluster::start();
    let ca = cluster.ca.to_str().unwrap().to_string();
    let (dir, confdir, server_port, out) =
        init(&cluster, "ext-restore", &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", &ca, "--db-sslmode", "verify-full"]);
    let out = out.expect(0);
    let home = dir.join("home");
    let inst = Instance { dir, confdir: confdir.clone(), home, db_port: cluster.port, server_port, init: out };
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (cdir, out) = register(&inst, "web01", "acme", "");
    out.expect(0);
    let data = inst.dir.join("data");
    std::fs::write(&data, "the secret key").unwrap();
    let kept = client(&cdir, &["put", "k1", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let out_dir = TestDir::new("ext-restore-backups");
    let out = run(kt().arg("-c").arg(&confdir).args(["backup", "--cleartext", "--quiet", "--output", out_dir.path.to_str().unwrap()])).expect(0);
    let archive = PathBuf::from(out.stdout.trim());
    // After the backup: a second deposit, which the restore takes back.
    std::fs::write(&data, "written later").unwrap();
    let later = client(&cdir, &["put", "k2", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let listing = run(Command::new("tar").arg("tf").arg(&archive)).expect(0).stdout;
    let sql_member = listing.lines().find(|l| l.ends_with(".sql")).unwrap().to_string();

    // The restore test loads it into a scratch schema and drops that again.
    let out = inst.kt(&["verify", "backup", archive.to_str().unwrap(), "--restore-test"]).expect(0);
    assert!(out.stdout.contains("scratch schema of the external database"), "{}", out.stdout);
    assert_eq!(restore_schemas(&cluster), "");

    // A forged backup (its dump changed after signing): refused before
    // anything of it reaches the database.
    let before = dump_as_admin(&cluster, &[]);
    let forged = out_dir.join("forged.tar");
    replace_member(&archive, &forged, &sql_member, "+DROP TABLE public.deposits;\n");
    let out = inst.kt(&["restore", forged.to_str().unwrap(), "--yes"]).expect(2);
    assert!(out.stderr.contains("manifest") || out.stderr.contains("checksum"), "{}", out.stderr);
    assert_eq!(dump_as_admin(&cluster, &[]), before, "a forged backup changed the database");
    assert_eq!(restore_schemas(&cluster), "");

    // A failure after the swap (the restored certificate is garbage, so the
    // server does not start again): everything goes back, in the database
    // too. A backup made the documented way (pg_dump, tar of the confdir).
    let work = TestDir::new("ext-restore-work");
    let sql = work.join("kts_bak_localhost_2026-01-01_00-00-01.sql");
    let mut pg_dump = cluster.tool("pg_dump");
    pg_dump.args(["-U", "admin", "-h"]).arg(&cluster.dir.path).args(["-p", &cluster.port.to_string(), DATABASE]);
    std::fs::write(&sql, run(&mut pg_dump).expect(0).stdout).unwrap();
    let documented = work.join("documented.tar");
    documented_tar(&inst, &sql, &documented);

    // Dumps with more than kt's schema, or that would reach the live
    // tables while loading: refused, the scratch schema dropped, nothing
    // changed.
    let dump_text = std::fs::read_to_string(&sql).unwrap();
    // A role kt's role may switch to (SET ROLE needs only membership).
    cluster.admin(DATABASE, &format!("CREATE ROLE ktother NOLOGIN; GRANT ktother TO {ROLE}"));
    let before = dump_as_admin(&cluster, &[]);
    for (n, (extra, needle)) in [
        ("CREATE TABLE public.extra (a integer);\n", "not kt's schema"),
        ("SELECT pg_catalog.set_config('search_path', 'public', false);\nCREATE TABLE deposits2 (a integer);\n", "search_path"),
        ("ALTER TABLE deposits ADD CONSTRAINT c CHECK (false);\n", "names nothing in schema public"),
        // The server joins `E'x'` and the next line's `'\' '` into one
        // string; read as two, `INHERITS (public.deposits)` looked like a
        // string and stayed unmapped: the scratch table would be a child
        // of the live one. Refused by the filter, before the shape check.
        (
            "CREATE TABLE public.t (a text DEFAULT E'x'\n'\\' ') INHERITS (public.deposits) --');\n",
            "a statement kt does not load: CREATE TABLE PUBLIC",
        ),
        // Moved into live `public`, a sequence outlived the scratch schema
        // (and passed the shape check, which looks at the scratch schema).
        ("CREATE SEQUENCE public.s;\nALTER SEQUENCE public.s SET SCHEMA public;\n", "a sequence"),
        // A vertical tab is a blank to PostgreSQL 16 and later.
        ("CREATE INDEX i ON public\x0b.deposits USING btree (name);\n", "a statement kt does not load: CREATE INDEX"),
        // A check run for every row loaded switches the session's role:
        // the statements after it would run with that role's rights.
        (
            "ALTER TABLE ONLY public.organizations ADD CONSTRAINT c CHECK (pg_catalog.set_config('role', 'ktother', false) <> '');\n",
            "the load's role changed from ktapp to ktother",
        ),
    ]
    .iter()
    .enumerate()
    {
        let evil_sql = work.join(&format!("kts_bak_localhost_2026-01-02_00-00-0{n}.sql"));
        let cut = dump_text.find("--\n-- Data for Name").unwrap();
        std::fs::write(&evil_sql, format!("{}{extra}{}", &dump_text[..cut], &dump_text[cut..])).unwrap();
        let evil_tar = work.join(&format!("evil-{n}.tar"));
        documented_tar(&inst, &evil_sql, &evil_tar);
        std::fs::remove_file(&evil_sql).unwrap();
        let out = inst.kt(&["restore", evil_tar.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(2);
        assert!(out.stderr.contains(needle) && out.stderr.contains("nothing was changed"), "{extra}: {}", out.stderr);
        assert_eq!(dump_as_admin(&cluster, &[]), before, "{extra}: the database changed");
        assert_eq!(restore_schemas(&cluster), "", "{extra}: a scratch schema stayed");
    }
    let bad_cert = work.join("bad-cert.tar");
    let cert_member = confdir.join(".ssl/ssl-cert-keytrustee.pem");
    replace_member(&documented, &bad_cert, cert_member.strip_prefix("/").unwrap().to_str().unwrap(), "not a certificate\n");
    let before = dump_as_admin(&cluster, &[]);
    let conf_before = snapshot(&confdir);
    let out = inst.kt(&["restore", bad_cert.to_str().unwrap(), "--yes", "--allow-unsigned"]);
    let out = out.expect(3);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    assert!(out.stderr.contains("moved kt's tables into the schema"), "the swap was undone: {}", out.stderr);
    assert_eq!(dump_as_admin(&cluster, &[]), before, "the database is as before");
    assert_eq!(snapshot(&confdir), conf_before);
    assert_eq!(restore_schemas(&cluster), "", "no scratch schema or safety copy stays");
    assert_eq!(client(&cdir, &["get", &later]).expect(0).stdout, "written later", "the server serves as before");

    // Another kt serve node on the database: its sessions would keep
    // statements prepared against the previous tables, so the swap is
    // refused while it runs, and everything goes back.
    let node_home = inst.dir.join("node2");
    std::fs::create_dir_all(&node_home).unwrap();
    let node_confdir = node_home.join(".keytrustee");
    run(Command::new("cp").arg("-a").arg(&confdir).arg(&node_confdir)).expect(0);
    run(Command::new("chown").arg("keytrustee:").arg(&node_home)).expect(0);
    let node_port = free_port();
    let conf_path = node_confdir.join("keytrustee.conf");
    let mut node_conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    node_conf["LISTEN"] = format!("127.0.0.1:{node_port}").into();
    std::fs::write(&conf_path, serde_json::to_string_pretty(&node_conf).unwrap()).unwrap();
    let node = crate::nodes::Node::serve(node_confdir, node_port);
    let before = dump_as_admin(&cluster, &[]);
    let out = inst.kt(&["restore", archive.to_str().unwrap(), "--yes"]).expect(3);
    assert!(out.stderr.contains("session(s) of kt serve on other nodes"), "{}", out.stderr);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    assert_eq!(dump_as_admin(&cluster, &[]), before, "the database is as before");
    assert_eq!(restore_schemas(&cluster), "");
    assert_eq!(client(&cdir, &["get", &later]).expect(0).stdout, "written later", "the server serves as before");
    drop(node);

    // kill -9 while the restore checks what it loaded (it waits for the
    // migration lock, which this test holds): the scratch schemas stay
    // behind, nothing live changed; the next restore sweeps them.
    let mut locker = cluster.psql(DATABASE).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut lock_stdin = locker.stdin.take().unwrap();
    std::io::Write::write_all(&mut lock_stdin, b"SELECT pg_advisory_lock(7742940530147159393);\n").unwrap();
    let granted = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted";
    wait_until(|| cluster.admin(DATABASE, granted) != "0", "the test holds the migration lock");
    let before = dump_as_admin(&cluster, &["public"]);
    let mut restoring = kt().arg("-c").arg(&confdir).args(["restore", archive.to_str().unwrap(), "--yes"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until(|| restore_schemas(&cluster).contains("kt_restore_ref_"), "the restore loaded and checks");
    restoring.kill().unwrap();
    restoring.wait().unwrap();
    drop(lock_stdin);
    locker.wait().unwrap();
    assert!(restore_schemas(&cluster).contains("kt_restore_load_"), "a killed restore leaves its scratch schema: {}", restore_schemas(&cluster));
    assert_eq!(dump_as_admin(&cluster, &["public"]), before, "nothing live changed");
    assert_eq!(client(&cdir, &["get", &later]).expect(0).stdout, "written later", "the server serves as before");

    // The restore: the backup's deposits, served by the restarted server;
    // no scratch schema or safety copy left, kt's role owns every table.
    let out = inst.kt(&["restore", archive.to_str().unwrap(), "--yes"]).expect(0);
    assert!(out.stdout.contains(&format!("kt's tables in the external database localhost:{}/{DATABASE}", cluster.port)), "{}", out.stdout);
    assert_eq!(restore_schemas(&cluster), "", "the stale scratch schemas were swept and this run's dropped");
    assert_eq!(client(&cdir, &["get", &kept]).expect(0).stdout, "the secret key");
    assert_ne!(client(&cdir, &["get", &later]).code, 0, "the deposit made after the backup is gone");
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM deposits"), "1");
    assert_eq!(cluster.admin(DATABASE, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"), ROLE);
    inst.kt(&["verify"]).expect(0);
    // A safety copy a killed restore left behind is named by kt verify.
    cluster.admin(DATABASE, "CREATE SCHEMA kt_restore_prev_999");
    let out = inst.kt(&["verify"]).expect(1);
    assert!(out.stdout.contains("kt_restore_prev_999 holds tables set aside"), "{}", out.stdout);
    cluster.admin(DATABASE, "DROP SCHEMA kt_restore_prev_999");
    inst.kt(&["server", "stop"]).expect(0);
}

/// An instance on `cluster` with its server running, a deposit, and a
/// backup made the documented way (pg_dump, tar of the confdir) in `work`.
fn serving_instance(cluster: &ExternalCluster, name: &str, work: &TestDir) -> (Instance, PathBuf) {
    let ca = cluster.ca.to_str().unwrap().to_string();
    let (dir, confdir, server_port, out) = init(cluster, name, &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", &ca]);
    let out = out.expect(0);
    let home = dir.join("home");
    let inst = Instance { dir, confdir, home, db_port: cluster.port, server_port, init: out };
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let sql = work.join("kts_bak_localhost_2026-01-01_00-00-01.sql");
    let mut pg_dump = cluster.tool("pg_dump");
    pg_dump.args(["-U", "admin", "-h"]).arg(&cluster.dir.path).args(["-p", &cluster.port.to_string(), DATABASE]);
    std::fs::write(&sql, run(&mut pg_dump).expect(0).stdout).unwrap();
    let documented = work.join("documented.tar");
    documented_tar(&inst, &sql, &documented);
    (inst, documented)
}

/// `cmd`'s outcome, or None when it has not ended within `secs`
/// (killed then).
fn run_within(cmd: &mut Command, secs: u64) -> Option<Run> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(Run::from(child.wait_with_output().unwrap()))
}

/// The restore lock is held from the load until the restore is over,
/// undo included: a restore A that failed after its swap (a garbage
/// certificate: the server does not start) and is undoing it (held there
/// by a table lock of the test's) still locks out a restore B, which
/// would otherwise swap in its tables for A's undo to drop.
#[test]
fn a_second_restore_is_refused_until_the_first_has_undone_its_swap() {
    let cluster = ExternalCluster::start();
    let work = TestDir::new("ext-lock-work");
    let (inst, documented) = serving_instance(&cluster, "ext-lock", &work);
    let bad_cert = work.join("bad-cert.tar");
    let cert_member = inst.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    replace_member(&documented, &bad_cert, cert_member.strip_prefix("/").unwrap().to_str().unwrap(), "not a certificate\n");
    let before = dump_as_admin(&cluster, &[]);

    // The test's session: as soon as A's swap committed, it takes a lock
    // on the restored deposits table that A's undo (DROP TABLE) waits for.
    let mut locker = cluster.psql(DATABASE).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut lock_stdin = locker.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut lock_stdin,
        b"BEGIN;\nDO $$ BEGIN LOOP EXIT WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname LIKE 'kt\\_restore\\_prev\\_%'); PERFORM pg_sleep(0.002); END LOOP; END $$;\n\
          LOCK TABLE public.deposits IN ACCESS SHARE MODE;\n",
    )
    .unwrap();
    let mut a = kt().arg("-c").arg(&inst.confdir).args(["restore", bad_cert.to_str().unwrap(), "--yes", "--allow-unsigned"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity s ON s.pid = l.pid \
                WHERE c.relname = 'deposits' AND l.mode = 'AccessShareLock' AND l.granted AND s.usename = 'admin' AND l.pid <> pg_backend_pid()";
    wait_until(|| cluster.admin(DATABASE, held) != "0", "the test's session locked the restored deposits table");
    assert!(a.try_wait().unwrap().is_none(), "restore A ended before the test held it in its undo");
    assert!(restore_schemas(&cluster).contains("kt_restore_prev_"), "restore A undid its swap before the test held it: {}", restore_schemas(&cluster));

    let b = run_within(kt().arg("-c").arg(&inst.confdir).args(["restore", documented.to_str().unwrap(), "--yes", "--allow-unsigned"]), 30);
    let b = b.expect("restore B was not refused on the restore lock while A undoes its swap (it went on, and waits for the tables)");
    let b = b.expect(3);
    assert!(b.stderr.contains("another kt restore is running"), "{}", b.stderr);
    assert!(b.stderr.contains(&format!("(role {ROLE}, application \"kt restore\", from 127.0.0.1")), "the holder is named: {}", b.stderr);

    drop(lock_stdin);
    locker.wait().unwrap();
    let a = Run::from(a.wait_with_output().unwrap()).expect(3);
    assert!(a.stderr.contains("rolled back") && a.stderr.contains("moved kt's tables into the schema"), "{}", a.stderr);
    assert_eq!(dump_as_admin(&cluster, &[]), before, "the database is as before");
    assert_eq!(restore_schemas(&cluster), "", "no scratch schema or safety copy stays");

    // A schema kt_restore_prev_<pid> that another role made, planted
    // while restore C checks what it loaded (it waits for the migration
    // lock, which this test holds): the swap is refused, naming the owner.
    let mut locker = cluster.psql(DATABASE).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut lock_stdin = locker.stdin.take().unwrap();
    std::io::Write::write_all(&mut lock_stdin, b"SELECT pg_advisory_lock(7742940530147159393);\n").unwrap();
    let granted = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND a.usename = 'admin'";
    wait_until(|| cluster.admin(DATABASE, granted) != "0", "the test holds the migration lock");
    let c = kt().arg("-c").arg(&inst.confdir).args(["restore", documented.to_str().unwrap(), "--yes", "--allow-unsigned"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until(|| restore_schemas(&cluster).contains("kt_restore_ref_"), "restore C loaded and checks");
    let schemas = restore_schemas(&cluster);
    let pid = schemas.split(',').find_map(|n| n.strip_prefix("kt_restore_load_")).expect("C's scratch schema").to_string();
    cluster.admin(DATABASE, &format!("CREATE SCHEMA kt_restore_prev_{pid}"));
    drop(lock_stdin);
    locker.wait().unwrap();
    let c = Run::from(c.wait_with_output().unwrap()).expect(3);
    assert!(c.stderr.contains(&format!("the schema kt_restore_prev_{pid} exists already (owned by the role admin, not kt's)")), "{}", c.stderr);
    assert!(c.stderr.contains("rolled back"), "{}", c.stderr);
    assert_eq!(restore_schemas(&cluster), format!("kt_restore_prev_{pid}"), "the planted schema is left alone, C's scratch schema dropped");
    cluster.admin(DATABASE, &format!("DROP SCHEMA kt_restore_prev_{pid}"));
    assert_eq!(dump_as_admin(&cluster, &[]), before, "the database is as before");
    inst.kt(&["server", "stop"]).expect(0);
}

/// A schema named after kt's role, made by another role, would come
/// first in the default search_path (`"$user", public`): kt's sessions
/// (kt's commands, kt serve, pg_dump) pin `public`, so the planted tables
/// get nothing and kt's own get everything.
#[test]
fn a_schema_named_after_kts_role_takes_nothing_over() {
    let cluster = ExternalCluster::start();
    let work = TestDir::new("ext-user-schema-work");
    let (inst, _) = serving_instance(&cluster, "ext-user-schema", &work);
    inst.kt(&["server", "stop"]).expect(0);
    cluster.admin(
        DATABASE,
        &format!(
            "CREATE SCHEMA {ROLE} AUTHORIZATION admin; GRANT USAGE ON SCHEMA {ROLE} TO {ROLE};\
             CREATE TABLE {ROLE}.deposits (LIKE public.deposits INCLUDING DEFAULTS);\
             CREATE TABLE {ROLE}.organizations (LIKE public.organizations INCLUDING DEFAULTS);\
             GRANT ALL ON ALL TABLES IN SCHEMA {ROLE} TO {ROLE}"
        ),
    );
    // Without the pin, kt's role resolves unqualified names there.
    let mut plain = cluster.tool("psql");
    plain.args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM deposits; SELECT current_schemas(false)::text"]);
    plain.env("PGPASSWORD", PASSWORD).env("PGSSLMODE", "require").args(["-h", "127.0.0.1", "-p", &cluster.port.to_string(), "-U", ROLE, "-d", DATABASE]);
    let out = run(&mut plain).expect(0);
    assert!(out.stdout.contains(&format!("{{{ROLE},public}}")), "the planted schema is on the default path: {}", out.stdout);

    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "beta", "");
    let (cdir, out) = register(&inst, "web02", "beta", "");
    out.expect(0);
    let data = inst.dir.join("data");
    std::fs::write(&data, "the secret key").unwrap();
    let uuid = client(&cdir, &["put", "k1", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "the secret key");
    assert_eq!(cluster.admin(DATABASE, &format!("SELECT count(*) FROM {ROLE}.deposits")), "0", "the planted deposits table got a deposit");
    assert_eq!(cluster.admin(DATABASE, &format!("SELECT count(*) FROM {ROLE}.organizations")), "0", "the planted organizations table got an organization");
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM public.deposits"), "1");
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM public.organizations WHERE name = 'beta'"), "1");
    inst.kt(&["server", "stop"]).expect(0);
}

/// The shape check compares inheritance and partitions: two schemas
/// alike in every table, column and constraint, but in one a table is
/// another's child (so a query of the parent reads its rows), or attached
/// as its partition, are told apart.
#[test]
fn the_shape_check_sees_inheritance_and_partitions() {
    let cluster = ExternalCluster::start();
    let mut db = postgres::Config::new()
        .host_path(&cluster.dir.path)
        .port(cluster.port)
        .user("admin")
        .dbname(DATABASE)
        .connect(postgres::NoTls)
        .expect("the administrator by the socket");
    let make = |db: &mut postgres::Client, ns: &str| {
        db.batch_execute(&format!(
            "CREATE SCHEMA {ns}; CREATE TABLE {ns}.parent (a integer); CREATE TABLE {ns}.child (a integer);\
             CREATE TABLE {ns}.whole (a integer) PARTITION BY LIST (a); CREATE TABLE {ns}.part (a integer)"
        ))
        .unwrap();
    };
    for ns in ["shape_a", "shape_b", "shape_c"] {
        make(&mut db, ns);
    }
    let describe = |db: &mut postgres::Client, ns: &str| kt::storage::shape::describe_schema(db, ns).unwrap();
    let plain = describe(&mut db, "shape_a");
    assert_eq!(describe(&mut db, "shape_b"), plain, "alike schemas compare equal");
    db.batch_execute("ALTER TABLE shape_b.child INHERIT shape_b.parent").unwrap();
    assert_ne!(describe(&mut db, "shape_b"), plain, "a table made another's child is not seen");
    db.batch_execute("ALTER TABLE shape_c.whole ATTACH PARTITION shape_c.part FOR VALUES IN (1)").unwrap();
    assert_ne!(describe(&mut db, "shape_c"), plain, "a table attached as a partition is not seen");
}

#[track_caller]
fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < until, "timed out waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// Removes what [`a_wrong_root_crt`] put in the account's home.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// libpq's default CA file, `~/.postgresql/root.crt` of the account
/// `kt backup` runs as, holding a CA that did not sign the server's
/// certificate: libpq would then check the server against it even in
/// sslmode `require`. Only this test's libpq connections (pg_dump as the
/// service account over TCP) can see it; removed on drop.
fn a_wrong_root_crt(account: &Account, other_ca: &Path) -> RemoveOnDrop {
    let dir = account.home.join(".postgresql");
    assert!(!dir.exists(), "{} exists already: this test would change someone's libpq settings", dir.display());
    // A home this test makes goes again with the file.
    let made = if account.home.exists() { dir.clone() } else { account.home.clone() };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(other_ca, dir.join("root.crt")).unwrap();
    for path in [&account.home, &dir, &dir.join("root.crt")] {
        account.chown(path).unwrap();
    }
    RemoveOnDrop(made)
}

#[test]
fn pg_dump_checks_what_kt_checks_whatever_is_in_the_accounts_home() {
    let cluster = ExternalCluster::start();
    // sslmode require, no CA file: kt's connector checks no certificate.
    let (dir, confdir, _, out) = init(&cluster, "ext-require", &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslmode", "require"]);
    out.expect(0);
    let other_ca = make_certificates(&cluster.dir.join("tls-other").tap_mkdir());
    let account = &cluster.account;
    let _guard = a_wrong_root_crt(account, &other_ca);
    let out_dir = dir.join("backups").tap_mkdir();
    account.chown(&out_dir).unwrap();
    let backup = || {
        run(kt()
            .uid(account.uid)
            .gid(account.gid)
            .env("HOME", &account.home)
            .arg("-c")
            .arg(&confdir)
            .args(["backup", "--cleartext", "--quiet", "--output", out_dir.to_str().unwrap()]))
    };
    // kt's own check and pg_dump's agree: the backup is taken.
    let out = backup().expect(0);
    assert!(Path::new(out.stdout.trim()).is_file(), "{}", out.stdout);
    // And kt's own connection (verify's database line; no server runs).
    let out = run(kt().arg("-c").arg(&confdir).arg("verify"));
    let line = out.stdout.lines().find(|l| l.contains("database:")).unwrap_or_else(|| panic!("{}", out.stdout)).to_string();
    assert!(line.starts_with("ok") && line.contains("sslmode require"), "{line}");
}

#[test]
fn channel_binding_works_with_a_certificate_signed_by_rsa_pss_sha384() {
    // The end-point hash is the signature's hash (SHA-384 here, named in
    // the PSS parameters), as the server computes it: with binding
    // required, a wrong hash is a refused login.
    let pss = ["-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"];
    let cluster = ExternalCluster::start_with(&["rsa:2048"], &pss);
    let text = run(Command::new("openssl").arg("x509").arg("-noout").arg("-text").arg("-in").arg(cluster.dir.join("tls/server.crt"))).expect(0).stdout;
    assert!(text.contains("rsassaPss") && text.contains("sha384"), "{text}");
    let ca = cluster.ca.to_str().unwrap().to_string();
    let (_dir, confdir, _, out) = init(
        &cluster,
        "ext-pss",
        &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", &ca, "--db-sslmode", "verify-full", "--db-channel-binding", "require"],
    );
    out.expect(0);
    // pg_dump (libpq) binds the same way.
    let out_dir = TestDir::new("ext-pss-backups");
    run(kt().arg("-c").arg(&confdir).args(["backup", "--cleartext", "--quiet", "--output", out_dir.path.to_str().unwrap()])).expect(0);
}
