//! Loads a plain-format SQL dump into a new, empty database: kt's own
//! loader, faster than `psql -f` and with the same meaning.
//!
//! Statements and meta-commands are read as psql reads them
//! ([`script`]) and run one by one on one connection. The data of a
//! `COPY ... FROM stdin` block whose column types [`binary`] knows is
//! re-encoded into binary COPY and spread over several connections
//! ([`workers`]); any other block goes to the server as text, exactly as
//! psql sends it. When a row turns out not to convert (an old bytea escape
//! format, say), the rows before it are committed as sent and the rest of
//! the block goes as text: the dump is read once, front to back, so it can
//! come straight from decryption.
//!
//! Not one transaction: loading over several connections cannot be. The
//! caller loads into a database that nothing else uses and drops it when
//! the load fails, which gives the same all-or-nothing.
//!
//! kt loads dumps only the way pg_dump writes them for one UTF-8 database:
//! [`check_dump`] refuses psql meta-commands other than `\restrict` and
//! `\unrestrict` and client encodings other than UTF-8, from the scan of
//! the dump's line starts that staging already makes. psql itself never
//! loads a backup: it would run every meta-command (`\!` is a shell
//! command as kt's own user), and two readers of one script can disagree.

pub mod binary;
pub mod filter;
pub mod requalify;
pub mod script;
mod workers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::instance::DB_USER;
use crate::storage::scratch::Login;
use crate::storage::{db_error_text, Cluster};
use binary::{Kind, RowEncoder};
use script::{Item, Script};

/// Every load connection: have the kernel start writing the table files
/// while the load goes on (as kt backup does for its archive), instead of
/// leaving gigabytes of dirty pages for the next checkpoint's fsync to
/// wait for at the end.
const SESSION: &str = "SET backend_flush_after = '2MB'";

/// Rows go to the load connections in batches of about this size.
const BATCH_BYTES: usize = 256 * 1024;

/// Whom the cluster loaded into serves, which decides how rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// A cluster that serves others too (the live instance's, perhaps an
    /// HA primary streaming its WAL): rows are written as any client's,
    /// over several connections at once.
    Shared,
    /// A cluster of this load alone, running with `wal_level = minimal`
    /// (a fresh host's, in the staging area). Each table's rows go on one
    /// connection, in the transaction that truncates the new, empty table,
    /// frozen (`COPY ... FREEZE`): PostgreSQL then writes no WAL for them
    /// (about as many bytes again as the rows themselves) and no later
    /// pass sets their hint bits. One such connection does more than
    /// several logging ones on this 2-core host (BENCHMARKS.md, issue 17).
    Private,
}

/// What the load did, table by table.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Rows the server took in per table (from its COPY replies).
    pub rows: BTreeMap<String, u64>,
    /// Tables loaded through binary COPY.
    pub binary: Vec<String>,
}

/// Refuses a dump kt does not load: psql meta-commands other than those
/// pg_dump writes (`\restrict`, `\unrestrict`), or a client encoding
/// other than UTF-8 (kt's own dumps and the documented `pg_dump` of a kt
/// database are UTF-8). Bad input.
pub fn check_dump(meta_commands: &[String], client_encoding: Option<&str>) -> Result<()> {
    if let Some(enc) = client_encoding {
        if !enc.eq_ignore_ascii_case("UTF8") && !enc.eq_ignore_ascii_case("UTF-8") {
            return Err(Error::usage(format!("the dump's client encoding is {enc}: kt loads UTF-8 dumps only"))
                .with_hint("dump with pg_dump --encoding UTF8"));
        }
    }
    match meta_commands.iter().find(|m| !understood_meta(m)) {
        None => Ok(()),
        Some(m) => Err(Error::usage(format!("the dump holds the psql meta-command {}: refused", first_line(m)))
            .with_hint("kt loads dumps as pg_dump writes them for one database; a backup with anything else was not made by kt")),
    }
}

fn understood_meta(line: &str) -> bool {
    matches!(line.split_whitespace().next(), Some("\\restrict" | "\\unrestrict"))
}

/// Loads the staged dump `sql` into `database` (new and empty) as `login`.
pub fn load(cl: &Cluster, login: &Login, database: &str, sql: &Path, sharing: Sharing, progress: &dyn Progress) -> Result<LoadReport> {
    let file = std::fs::File::open(sql).map_err(|e| Error::env("cannot open the staged dump").because_err(&e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    load_from(cl, login, database, BufReader::with_capacity(1 << 20, file), total, sharing, progress)
}

/// Where a load goes: how to open a connection to it, the owner a dump may
/// name (`OWNER TO`), and the scratch schema to map `public` into
/// ([`requalify`]; `None`: a scratch database of its own, as is), and
/// whom its cluster serves ([`Sharing`]).
pub struct Target<'a> {
    pub connect: &'a dyn Fn() -> Result<postgres::Client>,
    pub owner: &'a str,
    pub schema: Option<&'a str>,
    pub sharing: Sharing,
}

/// Loads the staged dump `sql` into `target`.
pub fn load_into(target: &Target, sql: &Path, progress: &dyn Progress) -> Result<LoadReport> {
    let file = std::fs::File::open(sql).map_err(|e| Error::env("cannot open the staged dump").because_err(&e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    load_source(target, BufReader::with_capacity(1 << 20, file), total, progress)
}

fn refused(n: usize, what: &str) -> Error {
    Error::usage(format!("the dump holds a statement kt does not load: {what} (statement {n})"))
        .with_hint("kt loads only what pg_dump writes for kt's schema; a backup with anything else was not made by kt")
}

/// kt's loader over any buffered dump source (a file, or the dump as it
/// is being decrypted); `total` is its size when known, for progress.
pub fn load_from<R: BufRead>(
    cl: &Cluster,
    login: &Login,
    database: &str,
    source: R,
    total: Option<u64>,
    sharing: Sharing,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let connect = || cl.connect_as(&login.user, &login.password, database);
    load_source(&Target { connect: &connect, owner: DB_USER, schema: None, sharing }, source, total, progress)
}

fn load_source<R: BufRead>(target: &Target, source: R, total: Option<u64>, progress: &dyn Progress) -> Result<LoadReport> {
    let parallel = match target.sharing {
        Sharing::Shared => std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4),
        Sharing::Private => 1,
    };
    let mut main = (target.connect)()?;
    // Index builds after the data are most of the rest of a load.
    main.batch_execute(&format!("SET maintenance_work_mem = '256MB'; {SESSION}")).map_err(|e| Error::env("cannot prepare the load").because_err(&e))?;
    if let Some(schema) = target.schema {
        // Until the dump empties it: unqualified names find nothing live.
        main.batch_execute(&format!("SET search_path = \"{schema}\""))
            .map_err(|e| Error::env("cannot prepare the load").because_err(&e))?;
    }
    let loader = Loader {
        target,
        main,
        script: Script::new(source),
        total,
        parallel,
        pool: None,
        settings: Vec::new(),
        report: LoadReport::default(),
    };
    let result = loader.run(progress);
    progress.finish();
    result.map_err(|e| match e {
        Failure::Refused(n, what) => refused(n, &what),
        Failure::Subverted(what) => Error::usage(format!("the dump changes the session that loads it: {what}"))
            .with_hint("kt loads only what pg_dump writes for kt's schema; a backup with anything else was not made by kt"),
        Failure::Other(why) => Error::env("loading the dump failed").because(why),
    })
}

/// Why a load stopped: a statement the filter refused (bad input), or
/// anything else.
enum Failure {
    Refused(usize, String),
    /// The dump changed the session's search_path or role while it
    /// loaded (bad input, like a refused statement).
    Subverted(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Other(why)
    }
}

struct Loader<'a, R> {
    target: &'a Target<'a>,
    main: postgres::Client,
    script: Script<R>,
    total: Option<u64>,
    parallel: usize,
    pool: Option<workers::Pool>,
    /// Session settings the dump made (`SET ...`), replayed on the load
    /// connections before their COPY.
    settings: Vec<String>,
    report: LoadReport,
}

impl<R: BufRead> Loader<'_, R> {
    fn run(mut self, progress: &dyn Progress) -> std::result::Result<LoadReport, Failure> {
        let mut statements = 0usize;
        while let Some(item) = self.script.next_item()? {
            match item {
                Item::Statement(sql) => {
                    statements += 1;
                    match filter::judge(&sql, self.target.owner) {
                        filter::Verdict::Run => {}
                        filter::Verdict::SkipOwnership => continue,
                        filter::Verdict::Refuse(what) => return Err(Failure::Refused(statements, what)),
                    }
                    let sql = match self.target.schema {
                        None => sql,
                        Some(schema) => {
                            self.check_search_path(schema)?;
                            match requalify::map(&sql, schema) {
                                requalify::Mapped::Run(mapped) => mapped,
                                requalify::Mapped::Skip => continue,
                                requalify::Mapped::Refuse(why) => return Err(Failure::Refused(statements, format!("{} ({why})", first_line(&sql)))),
                            }
                        }
                    };
                    // The extended protocol runs exactly one statement:
                    // nothing can ride along after a `;` that the script
                    // reader and the server might read differently.
                    self.main.execute(sql.as_str(), &[]).map(|_| ()).map_err(|e| format!("statement {statements} ({}): {}", first_line(&sql), db_error_text(&e)))?;
                    if is_setting(&sql) {
                        self.settings.push(sql);
                    }
                }
                Item::Meta(line) => {
                    if !understood_meta(&line) {
                        return Err(Failure::Other(format!("the psql meta-command {line} is not something kt runs")));
                    }
                }
                Item::Copy(statement) => {
                    // Only the target is taken from the dump: kt writes the
                    // COPY itself (no options, no WHERE clause).
                    if let Some(schema) = self.target.schema {
                        self.check_search_path(schema)?;
                    }
                    let statement = plain_copy(&statement, self.target.schema).ok_or_else(|| {
                        Failure::Refused(statements + 1, format!("{} (kt loads COPY into public tables with plain column names)", first_line(&statement)))
                    })?;
                    let (table, rows) = self.copy(&statement, progress)?;
                    *self.report.rows.entry(table).or_insert(0) += rows;
                }
            }
            progress.bytes("loading the dump", self.script.offset(), self.total);
        }
        // The last COPY's rows ran defaults and checks too.
        if let Some(schema) = self.target.schema {
            self.check_search_path(schema)?;
        }
        Ok(self.report)
    }

    /// In a scratch schema: the session's search_path is still the scratch
    /// schema or empty (the dump's own setting), so that no unqualified
    /// name can resolve to a live table, and the session still runs as
    /// kt's role (`current_user = session_user`): a column default or a
    /// check that called `set_config('search_path' | 'role', ...)` while
    /// rows loaded would show here, and the load stops before the next
    /// statement runs with the other path or role's rights.
    fn check_search_path(&mut self, schema: &str) -> std::result::Result<(), Failure> {
        let row = self
            .main
            .query_one("SELECT pg_catalog.current_setting('search_path'), current_user::text, session_user::text", &[])
            .map_err(|e| db_error_text(&e))?;
        let (path, current, session): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if current != session {
            return Err(Failure::Subverted(format!("the load's role changed from {session} to {current}")));
        }
        if path.is_empty() || path == "\"\"" || path == format!("\"{schema}\"") || path == schema {
            Ok(())
        } else {
            Err(Failure::Subverted(format!("the load's search_path changed to {path}")))
        }
    }

    /// One COPY block: binary over the pool when every column converts,
    /// else (or from the first row that does not) text on the main
    /// connection. Returns the table's short name and the rows the server
    /// took.
    fn copy(&mut self, statement: &str, progress: &dyn Progress) -> std::result::Result<(String, u64), String> {
        let (table, columns) = script::copy_target(statement).ok_or_else(|| format!("cannot read {statement}"))?;
        let name = table.rsplit('.').next().unwrap_or(&table).trim_matches('"').to_string();
        let mut pending = None;
        let mut rows = 0;
        if let Some(columns) = &columns {
            if let Some(kinds) = self.binary_kinds(&table, columns)? {
                let (sent, rest) = self.copy_binary(&table, columns, kinds, progress)?;
                rows += sent;
                match rest {
                    None => {
                        self.report.binary.push(name.clone());
                        return Ok((name, rows));
                    }
                    Some(line) => pending = Some(line),
                }
            }
        }
        rows += self.copy_text(statement, pending, progress)?;
        Ok((name, rows))
    }

    /// The columns' kinds, when every one has a binary encoding here.
    fn binary_kinds(&mut self, table: &str, columns: &str) -> std::result::Result<Option<Vec<Kind>>, String> {
        let probe = format!("SELECT {columns} FROM {table} LIMIT 0");
        let stmt = self.main.prepare(&probe).map_err(|e| format!("cannot read the columns of {table}: {}", db_error_text(&e)))?;
        Ok(stmt.columns().iter().map(|c| Kind::of(c.type_())).collect())
    }

    /// The rows the server took, and the first row that did not convert
    /// (`None`: the whole block went through).
    fn copy_binary(
        &mut self,
        table: &str,
        columns: &str,
        kinds: Vec<Kind>,
        progress: &dyn Progress,
    ) -> std::result::Result<(u64, Option<Vec<u8>>), String> {
        if self.pool.is_none() {
            let mut clients = Vec::new();
            for _ in 0..self.parallel {
                let mut client = (self.target.connect)().map_err(|e| e.to_string())?;
                client.batch_execute(SESSION).map_err(|e| db_error_text(&e))?;
                clients.push(client);
            }
            self.pool = Some(workers::Pool::new(clients));
        }
        let pool = self.pool.as_mut().expect("made above");
        // A private cluster's table, empty still (no block of it loaded
        // before): truncated in the COPY's transaction, rows frozen
        // (`Sharing::Private`). `table` is `public.<plain name>`
        // (`plain_copy`).
        if self.target.sharing == Sharing::Private && !self.report.rows.contains_key(table.rsplit('.').next().unwrap_or(table).trim_matches('"')) {
            pool.begin(&self.settings, Some(&format!("BEGIN; TRUNCATE {table}")), &format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary, FREEZE)"))?;
        } else {
            pool.begin(&self.settings, None, &format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)"))?;
        }
        let mut encoder = RowEncoder::new(kinds);
        let mut line = Vec::with_capacity(4096);
        let mut batch = Vec::with_capacity(BATCH_BYTES + 64 * 1024);
        let mut rows = 0u64;
        let mut since_progress = 0usize;
        let mut rest = None;
        loop {
            let more = match self.script.copy_line(&mut line) {
                Ok(more) => more,
                Err(e) => {
                    let _ = pool.abort();
                    return Err(e);
                }
            };
            if !more {
                break;
            }
            if encoder.encode(&line, &mut batch).is_err() {
                rest = Some(line);
                break;
            }
            rows += 1;
            if batch.len() >= BATCH_BYTES {
                since_progress += batch.len();
                pool.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BYTES + 64 * 1024)))?;
                if since_progress >= 4 << 20 {
                    since_progress = 0;
                    progress.bytes("loading the dump", self.script.offset(), self.total);
                }
            }
        }
        if !batch.is_empty() {
            pool.send(batch)?;
        }
        let taken = pool.finish().map_err(|e| format!("COPY {table}: {e}"))?;
        if taken != rows {
            return Err(format!("COPY {table}: the server took {taken} rows of {rows}"));
        }
        Ok((rows, rest))
    }

    /// The block's rows (from `first`, when given) as text, as psql sends
    /// them.
    fn copy_text(&mut self, statement: &str, first: Option<Vec<u8>>, progress: &dyn Progress) -> std::result::Result<u64, String> {
        let mut writer = self.main.copy_in(statement).map_err(|e| format!("{}: {}", first_line(statement), db_error_text(&e)))?;
        if let Some(line) = &first {
            let _ = writer.write_all(line);
        }
        let mut line = Vec::with_capacity(4096);
        let mut n = 0u64;
        while self.script.copy_line(&mut line)? {
            if writer.write_all(&line).is_err() {
                break;
            }
            n += 1;
            if n.is_multiple_of(16384) {
                progress.bytes("loading the dump", self.script.offset(), self.total);
            }
        }
        writer.finish().map_err(|e| format!("{}: {}", first_line(statement), db_error_text(&e)))
    }
}

/// `COPY public.table (col, ...) FROM stdin` rebuilt from a dump's COPY
/// statement, when its table is in `public` and its columns are plain
/// (or double-quoted plain) names; `None` otherwise. With `schema`, the
/// table is that scratch schema's instead (`requalify`).
fn plain_copy(statement: &str, schema: Option<&str>) -> Option<String> {
    let (table, columns) = script::copy_target(statement)?;
    let plain = |name: &str| {
        let bare = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name);
        bare.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let name = table.strip_prefix("public.")?;
    if !plain(name) {
        return None;
    }
    let columns = columns?;
    let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
    if columns.iter().any(|c| !plain(c)) {
        return None;
    }
    let schema = match schema {
        Some(s) => format!("\"{s}\""),
        None => "public".into(),
    };
    Some(format!("COPY {schema}.{name} ({}) FROM stdin", columns.join(", ")))
}

/// `SET ...` and `SELECT pg_catalog.set_config(...)`: what pg_dump uses
/// to set up the session.
fn is_setting(sql: &str) -> bool {
    let lower = sql.trim_start().to_ascii_lowercase();
    (lower.starts_with("set ") && !lower.starts_with("set constraints")) || lower.starts_with("select pg_catalog.set_config(")
}

fn first_line(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or("");
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_dumps_kt_loads() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_dump(&m(&["\\restrict abc", "\\unrestrict abc"]), Some("UTF8")).is_ok());
        assert!(check_dump(&m(&["\\connect keytrustee"]), None).is_err());
        assert!(check_dump(&m(&["\\set ON_ERROR_STOP on"]), None).is_err());
        assert!(check_dump(&m(&["\\! touch /tmp/x"]), None).is_err());
        assert!(check_dump(&[], Some("LATIN1")).is_err());
        assert!(is_setting("SET client_encoding = 'UTF8'"));
        assert_eq!(plain_copy("COPY public.deposits (uuid, \"by\") FROM stdin", None).as_deref(), Some("COPY public.deposits (uuid, \"by\") FROM stdin"));
        assert_eq!(plain_copy("COPY pg_temp.clients (a) FROM stdin", None), None);
        assert_eq!(plain_copy("COPY public.t FROM stdin", None), None);
        assert_eq!(plain_copy("COPY public.t (a) FROM stdin", Some("kt_restore_load_1")).as_deref(), Some("COPY \"kt_restore_load_1\".t (a) FROM stdin"));
        // Only the target is taken: whatever else the text holds is not.
        assert_eq!(plain_copy("COPY public.t (a) FROM stdin WHERE (f())", None).as_deref(), Some("COPY public.t (a) FROM stdin"));
        assert_eq!(plain_copy("COPY public.t (a, \"b\"\"c\") FROM stdin", None), None);
        assert!(is_setting("SELECT pg_catalog.set_config('search_path', '', false)"));
        assert!(!is_setting("SELECT pg_catalog.setval('s', 1, true)"));
    }
}

