//! The shape check: after a dump was loaded into a scratch database, and
//! before anything of it is handed to the instance's database user, the
//! database must hold exactly the schema kt's own migrations make at the
//! dump's schema version, and nothing else.
//!
//! Why: the statement filter (`load::filter`) lets through the statement
//! kinds pg_dump writes for kt's schema, but a `CREATE FUNCTION` body, a
//! column `DEFAULT`, a `CHECK` or an index expression can call anything,
//! and once the database is adopted such an object would run as its new
//! owner (the cluster's superuser) whenever the server inserts a row. So
//! the loaded catalog is described object by object (schemas, relations
//! and their privileges, persistence, replica identity and tablespace,
//! inheritance and partitions (each `pg_inherits` link with its partition
//! bound, each partition key: a loaded table made a child of another
//! would have the server's queries of the parent read its rows too),
//! columns with types, defaults, storage and collation, constraints,
//! indexes, functions, triggers, rules, policies, types, operators,
//! extensions, per-database settings, large objects, publications) and
//! compared with the same description of a reference database that kt
//! builds from its embedded migrations. Any difference is a refusal.
//!
//! The description of the scratch database is read as its loading role
//! (never as a superuser: that database is still the dump's), with
//! `search_path` set to `pg_catalog` and every function qualified.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::storage::pgpass::Password;
use crate::storage::scratch::Login;
use crate::storage::{databases, db_error_text, schema, Cluster};

/// Schemas that are the system's, not the database's.
const USER_NAMESPACES: &str = "SELECT oid FROM pg_catalog.pg_namespace \
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
    AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'";

/// One line per object; equal sets mean equal schemas. `user` selects
/// the namespaces described ([`USER_NAMESPACES`], or one scratch schema).
fn queries(user: &str) -> Vec<String> {
    vec![
        format!("SELECT 'schema ' || nspname || ' ' || COALESCE(nspacl::pg_catalog.text, '') FROM pg_catalog.pg_namespace WHERE oid IN ({user})"),
        format!(
            "SELECT 'relation ' || c.oid::pg_catalog.regclass::pg_catalog.text || ' kind ' || c.relkind::pg_catalog.text \
             || ' acl ' || COALESCE(c.relacl::pg_catalog.text, '') || ' rls ' || c.relrowsecurity::pg_catalog.text \
             || ' forcerls ' || c.relforcerowsecurity::pg_catalog.text || ' persistence ' || c.relpersistence::pg_catalog.text \
             || ' replident ' || c.relreplident::pg_catalog.text || ' tablespace ' || c.reltablespace::pg_catalog.text \
             || ' options ' || COALESCE(c.reloptions::pg_catalog.text, '') \
             FROM pg_catalog.pg_class c WHERE c.relnamespace IN ({user})"
        ),
        format!(
            "SELECT 'column ' || c.oid::pg_catalog.regclass::pg_catalog.text || '.' || a.attname || ' ' \
             || pg_catalog.format_type(a.atttypid, a.atttypmod) || ' notnull ' || a.attnotnull::pg_catalog.text \
             || ' generated ' || a.attgenerated::pg_catalog.text || ' identity ' || a.attidentity::pg_catalog.text \
             || ' default ' || COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') \
             || ' acl ' || COALESCE(a.attacl::pg_catalog.text, '') || ' storage ' || a.attstorage::pg_catalog.text \
             || ' compression ' || a.attcompression::pg_catalog.text || ' collation ' || a.attcollation::pg_catalog.text \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE c.relnamespace IN ({user}) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        format!(
            "SELECT 'constraint ' || COALESCE(conrelid::pg_catalog.regclass::pg_catalog.text, '-') || ' ' || conname || ' ' \
             || pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint WHERE connamespace IN ({user})"
        ),
        format!(
            "SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace IN ({user})"
        ),
        format!(
            "SELECT 'inherits ' || i.inhrelid::pg_catalog.regclass::pg_catalog.text || ' from ' \
             || i.inhparent::pg_catalog.regclass::pg_catalog.text || ' seq ' || i.inhseqno::pg_catalog.text \
             || ' bound ' || COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '') \
             FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
             JOIN pg_catalog.pg_class p ON p.oid = i.inhparent WHERE c.relnamespace IN ({user}) OR p.relnamespace IN ({user})"
        ),
        format!(
            "SELECT 'partitioned ' || c.oid::pg_catalog.regclass::pg_catalog.text || ' ' || pg_catalog.pg_get_partkeydef(c.oid) \
             FROM pg_catalog.pg_partitioned_table t JOIN pg_catalog.pg_class c ON c.oid = t.partrelid WHERE c.relnamespace IN ({user})"
        ),
        format!("SELECT 'function ' || oid::pg_catalog.regprocedure::pg_catalog.text FROM pg_catalog.pg_proc WHERE pronamespace IN ({user})"),
        "SELECT 'trigger ' || tgrelid::pg_catalog.regclass::pg_catalog.text || ' ' || tgname FROM pg_catalog.pg_trigger WHERE NOT tgisinternal".into(),
        "SELECT 'event trigger ' || evtname FROM pg_catalog.pg_event_trigger".into(),
        "SELECT 'rule ' || ev_class::pg_catalog.regclass::pg_catalog.text || ' ' || rulename FROM pg_catalog.pg_rewrite WHERE rulename <> '_RETURN' AND ev_class >= 16384".into(),
        "SELECT 'policy ' || polrelid::pg_catalog.regclass::pg_catalog.text || ' ' || polname FROM pg_catalog.pg_policy".into(),
        format!("SELECT 'type ' || typname || ' ' || typtype::pg_catalog.text FROM pg_catalog.pg_type WHERE typnamespace IN ({user})"),
        format!("SELECT 'operator ' || oid::pg_catalog.regoperator::pg_catalog.text FROM pg_catalog.pg_operator WHERE oprnamespace IN ({user})"),
        format!("SELECT 'collation ' || collname FROM pg_catalog.pg_collation WHERE collnamespace IN ({user})"),
        format!("SELECT 'conversion ' || conname FROM pg_catalog.pg_conversion WHERE connamespace IN ({user})"),
        format!("SELECT 'opfamily ' || opfname FROM pg_catalog.pg_opfamily WHERE opfnamespace IN ({user})"),
        format!("SELECT 'statistics ' || stxname FROM pg_catalog.pg_statistic_ext WHERE stxnamespace IN ({user})"),
        format!("SELECT 'text search ' || cfgname FROM pg_catalog.pg_ts_config WHERE cfgnamespace IN ({user})"),
        "SELECT 'cast ' || castsource::pg_catalog.regtype::pg_catalog.text || ' ' || casttarget::pg_catalog.regtype::pg_catalog.text FROM pg_catalog.pg_cast WHERE oid >= 16384".into(),
        "SELECT 'extension ' || extname FROM pg_catalog.pg_extension".into(),
        "SELECT 'language ' || lanname FROM pg_catalog.pg_language".into(),
        "SELECT 'default acl ' || defaclobjtype::pg_catalog.text FROM pg_catalog.pg_default_acl".into(),
        "SELECT 'publication ' || pubname FROM pg_catalog.pg_publication".into(),
        "SELECT 'large object ' || oid::pg_catalog.text FROM pg_catalog.pg_largeobject_metadata".into(),
        "SELECT 'database setting ' || pg_catalog.array_to_string(setconfig, ',') FROM pg_catalog.pg_db_role_setting \
         WHERE setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
            .into(),
    ]
}

/// Describes the database `client` is connected to; with `schema`, only
/// that schema's objects (and the database-wide ones), its name replaced
/// by `<scratch>` so that two schemas of one database compare.
fn describe(client: &mut postgres::Client, schema: Option<&str>) -> Result<BTreeSet<String>> {
    client
        .batch_execute("SET search_path = pg_catalog")
        .map_err(|e| Error::env("cannot prepare the schema check").because(db_error_text(&e)))?;
    let user = match schema {
        Some(ns) => format!("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '{ns}'"),
        None => USER_NAMESPACES.to_string(),
    };
    let mut lines = BTreeSet::new();
    for q in queries(&user) {
        for row in client.query(q.as_str(), &[]).map_err(|e| Error::env("cannot read the catalog").because(db_error_text(&e)))? {
            let line: String = row.get::<_, Option<String>>(0).unwrap_or_default();
            lines.insert(match schema {
                Some(ns) => line.replace(&format!("{ns}."), "").replace(ns, "<scratch>"),
                None => line,
            });
        }
    }
    Ok(lines)
}

/// The description [`check_schema`] compares of the schema `schema` (its
/// name replaced by `<scratch>`), as `client`'s role sees it.
pub fn describe_schema(client: &mut postgres::Client, schema: &str) -> Result<BTreeSet<String>> {
    describe(client, Some(schema))
}

/// The schema version the loaded data claims, read as the loading role.
fn loaded_version(client: &mut postgres::Client, schema: &str) -> Result<i32> {
    let row = client
        .query_one(&format!("SELECT pg_catalog.max(version) FROM \"{schema}\".schema_version"), &[])
        .map_err(|e| Error::usage("the loaded database has no schema_version table kt can read").because(db_error_text(&e)))?;
    let version: Option<i32> = row.get(0);
    match version {
        Some(v) if (1..=schema::latest_version()).contains(&v) => Ok(v),
        Some(v) => Err(Error::usage(format!("the backup's schema version is {v}; this kt knows 1 to {}", schema::latest_version()))
            .with_hint("restore with a kt at least as new as the one that made the backup")),
        None => Err(Error::usage("the loaded database records no schema version")),
    }
}

/// Compares the scratch database `database` (read as `login`) with a
/// reference built from kt's migrations at the same version in a database
/// of its own (created and dropped through the superuser `admin_password`).
pub fn check(cluster: &Cluster, admin_password: &Password, login: &Login, database: &str) -> Result<()> {
    let mut loaded_db = cluster.connect_as(&login.user, &login.password, database)?;
    let version = loaded_version(&mut loaded_db, "public")?;
    let loaded = describe(&mut loaded_db, None)?;
    drop(loaded_db);

    let reference_name = format!("kt_shape_reference_{}", std::process::id());
    let mut admin = cluster.connect(admin_password, "postgres")?;
    databases::drop(&mut admin, &reference_name)?;
    databases::create(&mut admin, &reference_name)?;
    let reference = (|| {
        let mut db = cluster.connect(admin_password, &reference_name)?;
        schema::migrate_to(&mut db, version)?;
        describe(&mut db, None)
    })();
    let _ = databases::drop(&mut admin, &reference_name);
    compare(version, &loaded, &reference?)
}

/// The same check within one database (an external one, where kt's role
/// may not create databases): the schema `loaded` against kt's migrations
/// at the same version, built in the schema `reference` (new and empty,
/// made by the caller, which drops it). `connect` opens a session as kt's
/// role.
pub fn check_schema(connect: &dyn Fn() -> Result<postgres::Client>, loaded: &str, reference: &str) -> Result<()> {
    let mut db = connect()?;
    let version = loaded_version(&mut db, loaded)?;
    let described = describe(&mut db, Some(loaded))?;
    drop(db);
    let mut db = connect()?;
    db.batch_execute(&format!("SET search_path = \"{reference}\""))
        .map_err(|e| Error::env("cannot prepare the schema check").because(db_error_text(&e)))?;
    schema::migrate_to(&mut db, version)?;
    let built = describe(&mut db, Some(reference))?;
    compare(version, &described, &built)
}

fn compare(version: i32, loaded: &BTreeSet<String>, reference: &BTreeSet<String>) -> Result<()> {
    let extra: Vec<&String> = loaded.difference(reference).collect();
    let missing: Vec<&String> = reference.difference(loaded).collect();
    if extra.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let mut err = Error::usage(format!("the loaded database is not kt's schema (version {version}): refused"));
    for line in extra.iter().take(6) {
        err = err.because(format!("not in kt's schema: {line}"));
    }
    for line in missing.iter().take(6) {
        err = err.because(format!("missing: {line}"));
    }
    Err(err.with_hint("kt restores only its own schema; a backup with other objects was not made by kt"))
}
