//! kt's dump loader against psql as the reference: a dump with every
//! column type kt re-encodes into binary COPY (at its edges: NULLs, escapes,
//! Unicode, extreme integers, BC dates, infinities, zone offsets with
//! seconds), types it leaves to the server as text, and a block it must
//! abandon half way (bytea in the old escape format) is restored by
//! `kt restore` and compared, table by table, with `psql -f` of the same
//! dump. A dump that uses a psql meta-command kt does not run is loaded by
//! psql itself.

use std::process::Command;

use crate::harness::*;

const ODD_TABLES: &str = "
CREATE TABLE odd (
    id int4 PRIMARY KEY, i2 int2, i8 int8, b bool, t text, v varchar(20), n name,
    ts timestamp, tz timestamptz, j json, jb jsonb, u uuid, by bytea
);
INSERT INTO odd VALUES
 (1, -32768, -9223372036854775808, true, E'tab\\there\\nnewline\\\\backslash\\r', 'ünïcødé ✓', 'name',
  '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '{\"a\": [1, 2]}', '{\"b\": null}',
  '00000000-0000-0000-0000-000000000000', ''::bytea),
 (2, 32767, 9223372036854775807, false, '', 'x', 'y', '1850-06-15 12:34:56.789', '1850-06-15 12:34:56.789+00',
  '[]', '\"s\"', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\\x00ff0a095c'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, true, E'\\\\N', 'a', 'b', '0044-03-15 00:00:00 BC', '0044-03-15 00:00:00+00 BC', '1', '1',
  '6ba7b810-9dad-11d1-80b4-00c04fd430c8', decode(repeat('ab', 5000), 'hex')),
 (5, 1, 1, true, 'x', 'x', 'x', 'infinity', '-infinity', 'null', '{}', '6ba7b811-9dad-11d1-80b4-00c04fd430c8', '\\x5c'),
 (6, 2, 2, false, 'y', 'y', 'y', '2026-11-28 23:59:59.999999', '2024-02-29 13:00:00.000001+00', '2', '[2]',
  '6ba7b812-9dad-11d1-80b4-00c04fd430c8', '\\x01'),
 (7, 3, 3, true, 'z', 'z', 'z', '12345-06-07 08:09:10', '1900-01-01 00:00:00+00', '3', '3',
  '6ba7b813-9dad-11d1-80b4-00c04fd430c8', '\\x02');
CREATE TABLE other_types (id int PRIMARY KEY, num numeric, arr text[], ip inet);
INSERT INTO other_types VALUES (1, 3.14159, '{a,\"b c\",NULL}', '10.0.0.1'), (2, NULL, '{}', '::1');
";

/// A table whose bytea is written in the escape format (as an old server
/// with `bytea_output = escape` would dump it): kt's binary encoder refuses
/// it on the second row, so kt must abandon the block and load it as text.
const ESCAPED_BYTEA: &str = "
CREATE TABLE public.escaped (id integer, b bytea);
COPY public.escaped (id, b) FROM stdin;
1\t\\\\x41
2\t\\\\101\\\\102
3\tabc
\\.
";

fn digest(inst: &Instance, database: &str, table: &str) -> String {
    let sql = format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t");
    inst.psql(database, &sql).expect(0).stdout.trim().to_string()
}

const TABLES: [&str; 6] = ["organizations", "clients", "deposits", "odd", "other_types", "escaped"];

/// The instance's database dumped in a zone with half-hour offsets (and
/// LMT offsets with seconds for old dates), with `extra` SQL appended
/// before the dump's end.
fn dump_with(inst: &Instance, extra: &str) -> String {
    let out = run(Command::new("pg_dump")
        .env("PGPASSFILE", inst.confdir.join(".pgpass"))
        .env("PGTZ", "America/St_Johns")
        .args(["-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "keytrustee"]))
    .expect(0);
    let end = out.stdout.find("-- PostgreSQL database dump complete").expect("pg_dump's last comment");
    format!("{}{extra}\n{}", &out.stdout[..end], &out.stdout[end..])
}

/// A backup the documented way (confdir + dump in a tar), unencrypted.
fn tar_with(inst: &Instance, work: &TestDir, sql: &str, name: &str) -> std::path::PathBuf {
    let dump = work.join(&format!("kts_bak_localhost_{name}.sql"));
    std::fs::write(&dump, sql).unwrap();
    let tarball = work.join(&format!("{name}.tar"));
    documented_tar(inst, &dump, &tarball);
    tarball
}

fn reference(inst: &Instance, work: &TestDir, sql: &str, database: &str) {
    inst.psql("postgres", &format!("CREATE DATABASE {database}")).expect(0);
    let file = work.join(&format!("{database}.sql"));
    std::fs::write(&file, sql).unwrap();
    run(Command::new("psql")
        .env("PGPASSFILE", inst.confdir.join(".pgpass"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "-d", database, "-f"])
        .arg(&file))
    .expect(0);
}

#[test]
fn kt_loads_what_psql_loads() {
    let inst = Instance::serving("loader");
    inst.psql("keytrustee", ODD_TABLES).expect(0);
    let work = TestDir::new("loader-work");
    let sql = dump_with(&inst, ESCAPED_BYTEA);
    reference(&inst, &work, &sql, "reference");

    // kt's loader itself (what a restore runs, before its shape check) on
    // the odd types: the same rows as psql -f.
    let file = work.join("odd.sql");
    std::fs::write(&file, &sql).unwrap();
    inst.psql("postgres", "CREATE DATABASE loaded").expect(0);
    let layout = kt::instance::Layout::new(Some(&inst.confdir)).unwrap();
    let cluster = kt::storage::Cluster::for_instance(&layout.clone().load().unwrap()).unwrap();
    let login = kt::storage::scratch::Login {
        user: "keytrustee".into(),
        password: kt::storage::pgpass::Password::read(&layout.pgpass(), "keytrustee").unwrap(),
    };
    let report = kt::storage::load::load(&cluster, &login, "loaded", &file, kt::storage::load::Sharing::Shared, &kt::progress::Silent).unwrap();
    assert!(report.binary.iter().any(|t| t == "odd"), "odd goes as binary COPY: {report:?}");
    for table in TABLES {
        assert_eq!(digest(&inst, "loaded", table), digest(&inst, "reference", table), "table {table}");
    }
    // Into a cluster of the load alone (a fresh host's staged cluster):
    // one connection, each table truncated in its COPY's transaction and
    // its rows frozen; the same rows, the abandoned block's too.
    inst.psql("postgres", "CREATE DATABASE loaded_private").expect(0);
    let report = kt::storage::load::load(&cluster, &login, "loaded_private", &file, kt::storage::load::Sharing::Private, &kt::progress::Silent).unwrap();
    assert!(report.binary.iter().any(|t| t == "odd"), "odd goes as binary COPY: {report:?}");
    for table in TABLES {
        assert_eq!(digest(&inst, "loaded_private", table), digest(&inst, "reference", table), "table {table} (private)");
    }
    // Frozen as loaded: every page all-visible (set by COPY FREEZE alone;
    // nothing vacuumed these tables).
    let all_visible = |db: &str| {
        inst.psql(db, "ANALYZE odd; SELECT relallvisible = relpages AND relpages > 0 FROM pg_class WHERE relname = 'odd'").expect(0).stdout.lines().last().unwrap_or("").trim().to_string()
    };
    assert_eq!(all_visible("loaded_private"), "t", "the private load did not freeze its rows");
    assert_eq!(all_visible("loaded"), "f", "the shared load froze its rows (the check proves nothing)");
    // A table whose rows come in two blocks: only the first block's
    // transaction truncates it (a second TRUNCATE would drop the first
    // block's rows, and the server's COPY counts would still add up).
    let two = work.join("two.sql");
    std::fs::write(
        &two,
        "SET standard_conforming_strings = on;\nCREATE TABLE public.two (id integer NOT NULL, t text);\n\
         COPY public.two (id, t) FROM stdin;\n1\ta\n2\tb\n\\.\n\nCOPY public.two (id, t) FROM stdin;\n3\tc\n\\.\n",
    )
    .unwrap();
    inst.psql("postgres", "CREATE DATABASE loaded_two").expect(0);
    let report = kt::storage::load::load(&cluster, &login, "loaded_two", &two, kt::storage::load::Sharing::Private, &kt::progress::Silent).unwrap();
    assert_eq!(report.rows.get("two"), Some(&3), "{report:?}");
    assert!(report.binary.iter().any(|t| t == "two"), "two goes as binary COPY (FREEZE): {report:?}");
    assert_eq!(inst.psql("loaded_two", "SELECT string_agg(id::text || t, ',' ORDER BY id) FROM two").expect(0).stdout.trim(), "1a,2b,3c");
    // The rows as they look in SQL, not only equal digests.
    let row = inst.psql("loaded", "SELECT t, tz AT TIME ZONE 'UTC', length(by) FROM odd WHERE id = 4").expect(0);
    assert_eq!(row.stdout.trim(), "\\N|0044-03-15 00:00:00 BC|5000");
    let row = inst.psql("loaded", "SELECT encode(b, 'escape') FROM escaped ORDER BY id").expect(0);
    assert_eq!(row.stdout.trim(), "A\nAB\nabc");

    // A restore loads the same way, then refuses a database with objects
    // kt's migrations do not make: nothing of it is adopted.
    let before = digest(&inst, "keytrustee", "odd");
    let tarball = tar_with(&inst, &work, &sql, "odd");
    let out = inst.kt(&["restore", tarball.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(2);
    assert!(out.stderr.contains("not kt's schema") && out.stderr.contains("odd"), "{}", out.stderr);
    assert_eq!(digest(&inst, "keytrustee", "odd"), before);

    // Leftovers of a restore that was killed: its scratch database is
    // dropped, a database it had set aside is not (it may be the only copy).
    inst.psql("keytrustee", "DROP TABLE odd, other_types").expect(0);
    let plain = dump_with(&inst, "");
    let dead_pid = (4_000_000..).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    for kind in ["load", "safety"] {
        inst.psql("postgres", &format!("CREATE DATABASE kt_restore_{kind}_{dead_pid}")).expect(0);
    }
    let tarball = tar_with(&inst, &work, &plain, "plain");
    let out = inst.kt(&["restore", tarball.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(0);
    assert!(out.stderr.contains("scratch database"), "{}", out.stderr);
    let left = inst.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_restore\\_%'").expect(0);
    assert_eq!(left.stdout.trim(), format!("kt_restore_safety_{dead_pid}"));
    // kt verify points the operator at it.
    let verify = inst.kt(&["verify"]);
    assert_eq!(verify.code, 1);
    assert!(verify.stdout.contains(&format!("kt_restore_safety_{dead_pid} set aside")), "{}", verify.stdout);
    inst.psql("postgres", &format!("DROP DATABASE kt_restore_safety_{dead_pid}")).expect(0);
    reference(&inst, &work, &plain, "reference2");
    for table in &TABLES[..3] {
        assert_eq!(digest(&inst, "keytrustee", table), digest(&inst, "reference2", table), "table {table}");
    }

    // A fresh host (no cluster to load into before the swap): kt creates
    // the cluster in the staging area and loads it there (as a cluster of
    // the load alone), then moves it into place.
    inst.kt(&["db", "stop"]).expect(0);
    let data = inst.pg_rootdir();
    std::fs::rename(&data, data.with_extension("moved")).unwrap();
    let out = inst.kt(&["restore", tarball.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(0);
    assert!(out.stderr.contains("scratch database of the new cluster (in the staging area)"), "{}", out.stderr);
    reference(&inst, &work, &plain, "reference3");
    for table in &TABLES[..3] {
        assert_eq!(digest(&inst, "keytrustee", table), digest(&inst, "reference3", table), "table {table} (fresh host)");
    }
}

#[test]
fn a_dump_with_other_meta_commands_is_refused() {
    // psql would run `\set` (and `\!`, a shell command as kt's own user):
    // a dump with meta-commands pg_dump does not write for one database is
    // refused before any loader sees it.
    let inst = Instance::serving("loader-psql");
    let work = TestDir::new("loader-psql-work");
    let sql = format!("\\set ON_ERROR_STOP on\n\\! touch {}\n{}", work.join("PWNED").display(), dump_with(&inst, ""));
    let tarball = tar_with(&inst, &work, &sql, "meta");
    let before = digest(&inst, "keytrustee", "deposits");
    let out = inst.kt(&["restore", tarball.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(2);
    assert!(out.stderr.contains("\\set ON_ERROR_STOP on") && out.stderr.contains("refused"), "the reason is named: {}", out.stderr);
    assert!(!work.join("PWNED").exists());
    assert_eq!(digest(&inst, "keytrustee", "deposits"), before);
    let leftovers = inst.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'kt\\_restore\\_%'").expect(0);
    assert_eq!(leftovers.stdout.trim(), "0");
}
