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
        assert!(is_root(), "the external-database test makes a cluster run by the service account: run the tests as root");
        let dir = TestDir::new("extdb");
        let account = Account::service("keytrustee", &dir.path).expect("the service account");
        let bindir = kt::storage::cluster::find_bindir().expect("PostgreSQL's server programs (scripts/install-deps --for test)");
        let port = free_port();
        let data = dir.join("data");
        let tls = dir.join("tls");
        std::fs::create_dir(&tls).unwrap();
        let ca = make_certificates(&tls);
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
    let p = |name: &str| tls.join(name).to_str().unwrap().to_string();
    openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=kt test database CA", "-keyout", &p("ca.key"), "-out", &p("ca.crt")])
    .expect(0);
    openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", &p("server.key"), "-out", &p("server.csr")])
    .expect(0);
    std::fs::write(tls.join("ext.cnf"), "subjectAltName = DNS:localhost, IP:127.0.0.1\n").unwrap();
    openssl(&["x509", "-req", "-in", &p("server.csr"), "-CA", &p("ca.crt"), "-CAkey", &p("ca.key"), "-CAcreateserial",
        "-days", "2", "-extfile", &p("ext.cnf"), "-out", &p("server.crt")])
    .expect(0);
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

    // The instance: verify-full against the test's CA.
    let (dir, confdir, server_port, out) =
        init(&cluster, "ext", &["--db-name", DATABASE, "--db-user", ROLE, "--db-sslrootcert", &ca, "--db-sslmode", "verify-full"]);
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

    // restore: refused clearly, nothing changed.
    let before = snapshot(&confdir);
    let out = inst.kt(&["restore", archive.to_str().unwrap(), "--yes"]);
    let out = out.expect(2);
    assert!(out.stderr.contains("cannot restore into an external database"), "{}", out.stderr);
    assert_eq!(snapshot(&confdir), before);
    assert_eq!(cluster.admin(DATABASE, "SELECT count(*) FROM deposits"), "1");

    inst.kt(&["server", "stop"]).expect(0);
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
