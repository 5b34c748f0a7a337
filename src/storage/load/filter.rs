//! The statement filter: the second wall around an untrusted dump (the
//! first is the loading role, which is no superuser: see
//! `storage::scratch`). kt's loader runs only the statement kinds pg_dump
//! writes for kt's schema and refuses anything else by name, before it
//! reaches the server:
//!
//! - session settings: `SET name = value` for the settings pg_dump writes
//!   (timeouts, `client_encoding = 'UTF8'`, `standard_conforming_strings =
//!   on`, ...; never `role`, `session_authorization`, `search_path` or a
//!   library to preload), `SELECT pg_catalog.set_config('search_path',
//!   '..', false)` and `SELECT pg_catalog.setval('..', n[, bool])`,
//!   literals only;
//! - `CREATE TABLE name (...)` (not `AS`), `CREATE SEQUENCE`, `CREATE
//!   [UNIQUE] INDEX`, `CREATE [OR REPLACE] FUNCTION` in `plpgsql` or `sql`;
//! - `ALTER TABLE [ONLY] name ADD CONSTRAINT | ALTER COLUMN` (one
//!   subcommand), `ALTER
//!   SEQUENCE`, and ownership (`... OWNER TO` the instance's database user,
//!   which the loader skips: the loaded database is handed over to that
//!   user as a whole afterwards; any other owner is refused);
//! - `COMMENT ON`; and `COPY ... FROM stdin` (the script reader hands those
//!   to the loader separately).
//!
//! Every qualified name is in `public` or `pg_catalog` (never `pg_temp`,
//! whose objects would vanish before the shape check sees them).
//!
//! Words are read outside quotes and comments, so a keyword inside a
//! string or a function body neither allows nor refuses anything. Strings
//! are read with `standard_conforming_strings` on (the only value the
//! filter lets a dump set), as the server reads them. Where this reader
//! and the server's could part (two string constants in a row, which the
//! server may join under the first one's escaping rule; a control
//! character between tokens, a blank to some server versions), the
//! statement is refused: pg_dump writes neither.
//!
//! What the filter cannot judge (a function's body, the expression of a
//! default, a check or an index) is judged after the load by the shape
//! check (`storage::shape`), which refuses any object kt's own migrations
//! do not make.

/// What the loader does with one statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// `OWNER TO` the instance's database user: ownership is reassigned
    /// after the load.
    SkipOwnership,
    /// Not a statement kt loads; the text names it.
    Refuse(String),
}

/// Judges one statement (without its `;`). `owner` is the instance's
/// database user, the only owner a dump may name.
pub fn judge(sql: &str, owner: &str) -> Verdict {
    let tokens = tokenize(sql);
    let words: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let refuse = || Verdict::Refuse(describe(&words));
    // One statement at a time: a `;` the script reader did not split at is
    // refused, whatever comes before it.
    if words.contains(&";") || !schemas_allowed(&words) || !read_alike(&words) {
        return refuse();
    }
    let owner_upper = owner.to_ascii_uppercase();
    // Ownership, on any object kind pg_dump sets it for.
    if let Some(i) = words.windows(2).position(|w| w == ["OWNER", "TO"]) {
        let is_alter = words.first() == Some(&"ALTER")
            && matches!(words.get(1), Some(&("TABLE" | "SEQUENCE" | "FUNCTION" | "VIEW" | "INDEX" | "SCHEMA")));
        return match words.get(i + 2) {
            Some(who) if is_alter && i + 3 == words.len() && *who == owner_upper => Verdict::SkipOwnership,
            _ => refuse(),
        };
    }
    match words.as_slice() {
        ["SET", name, "=" | "TO", value] if setting_allowed(name, value) => Verdict::Run,
        ["SELECT", "PG_CATALOG", ".", "SET_CONFIG", "(", "'search_path", ",", v, ",", "FALSE", ")"] if is_string(v) => Verdict::Run,
        ["SELECT", "PG_CATALOG", ".", "SETVAL", "(", s, ",", n, ")"] if is_string(s) && is_number(n) => Verdict::Run,
        ["SELECT", "PG_CATALOG", ".", "SETVAL", "(", s, ",", n, ",", b, ")"] if is_string(s) && is_number(n) && is_bool(b) => Verdict::Run,
        ["CREATE", "TABLE", rest @ ..] => {
            // A qualified name, then the column list: never `AS query`.
            match after_name(rest) {
                Some(["(", ..]) if !top_level_as(rest) => Verdict::Run,
                _ => refuse(),
            }
        }
        ["CREATE", "SEQUENCE", ..] | ["ALTER", "SEQUENCE", ..] => Verdict::Run,
        ["CREATE", "INDEX", ..] | ["CREATE", "UNIQUE", "INDEX", ..] => Verdict::Run,
        ["ALTER", "TABLE", rest @ ..] => {
            let rest = rest.strip_prefix(&["ONLY"]).unwrap_or(rest);
            // One subcommand: after a top-level `,` anything could follow.
            if top_level(rest, ",") {
                return refuse();
            }
            match after_name(rest) {
                Some(["ADD", "CONSTRAINT", ..]) | Some(["ALTER", "COLUMN", ..]) => Verdict::Run,
                _ => refuse(),
            }
        }
        ["CREATE", "FUNCTION", ..] | ["CREATE", "OR", "REPLACE", "FUNCTION", ..] => {
            let languages: Vec<&str> =
                words.windows(2).filter(|w| w[0] == "LANGUAGE").map(|w| w[1]).collect();
            match languages.as_slice() {
                ["PLPGSQL" | "SQL"] => Verdict::Run,
                _ => refuse(),
            }
        }
        ["COMMENT", "ON", ..] => Verdict::Run,
        _ => refuse(),
    }
}

/// The tokens after a (possibly schema-qualified, possibly quoted) name.
fn after_name<'a, 'b>(tokens: &'a [&'b str]) -> Option<&'a [&'b str]> {
    let mut i = 0;
    loop {
        if !tokens.get(i).is_some_and(|t| is_name(t)) {
            return None;
        }
        i += 1;
        if tokens.get(i) == Some(&".") {
            i += 1;
        } else {
            return Some(&tokens[i..]);
        }
    }
}

/// Whether `AS` appears outside parentheses (`CREATE TABLE x AS ...`).
fn top_level_as(tokens: &[&str]) -> bool {
    top_level(tokens, "AS")
}

/// Whether `word` appears outside parentheses.
fn top_level(tokens: &[&str], word: &str) -> bool {
    let mut depth = 0i32;
    for t in tokens {
        match *t {
            "(" => depth += 1,
            ")" => depth -= 1,
            w if w == word && depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// Whether the server reads the statement as [`tokenize`] does, as far as
/// a dump of kt's schema needs: no two string constants in a row (the
/// server joins them across a newline, keeping the first one's escaping
/// rule, so `E'x'` newline `'\' '...'` is one string to it and two here,
/// and the text between would run unseen), and no control character
/// between tokens (PostgreSQL 16 reads a vertical tab as a blank, so
/// `public\v.t` is a qualified name the filter would not see). pg_dump
/// writes neither.
fn read_alike(tokens: &[&str]) -> bool {
    let control = |t: &str| t.len() == 1 && t.as_bytes()[0].is_ascii_control();
    !tokens.iter().any(|t| control(t)) && !tokens.windows(2).any(|w| w[0].starts_with('\'') && w[1].starts_with('\''))
}

/// Whether every schema-qualified name is in `public` or `pg_catalog`:
/// a dump of kt's schema names nothing else, and `pg_temp` objects would
/// vanish with the session before the shape check could see them.
fn schemas_allowed(tokens: &[&str]) -> bool {
    tokens.iter().enumerate().all(|(i, t)| {
        // The first part of a dotted name (`schema.table.column`).
        let qualifier = tokens.get(i + 1) == Some(&".") && is_name(t) && (i == 0 || tokens[i - 1] != ".");
        (!qualifier || matches!(*t, "PUBLIC" | "PG_CATALOG")) && *t != "PG_TEMP" && !t.eq_ignore_ascii_case("\"pg_temp\"")
    })
}

/// The `SET` statements pg_dump writes at the top of a dump, with the
/// values it writes where the value matters.
fn setting_allowed(name: &str, value: &str) -> bool {
    match name {
        "STATEMENT_TIMEOUT" | "LOCK_TIMEOUT" | "IDLE_IN_TRANSACTION_SESSION_TIMEOUT" | "TRANSACTION_TIMEOUT" => is_number(value) || is_string(value),
        "CLIENT_ENCODING" => value.eq_ignore_ascii_case("'UTF8") || value.eq_ignore_ascii_case("'UTF-8"),
        "STANDARD_CONFORMING_STRINGS" => value == "ON",
        "CHECK_FUNCTION_BODIES" | "ROW_SECURITY" | "DEFAULT_WITH_OIDS" => value == "FALSE" || value == "OFF",
        "XMLOPTION" => value == "CONTENT",
        "CLIENT_MIN_MESSAGES" => value == "WARNING",
        "DEFAULT_TABLESPACE" => value == "'",
        "DEFAULT_TABLE_ACCESS_METHOD" => value == "HEAP",
        _ => false,
    }
}

fn is_string(t: &str) -> bool {
    t.starts_with('\'')
}

fn is_name(t: &str) -> bool {
    t.starts_with('"') || t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

fn is_bool(t: &str) -> bool {
    t == "TRUE" || t == "FALSE"
}

fn is_number(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// The first words of a refused statement, for the message.
fn describe(words: &[&str]) -> String {
    let head: Vec<&str> = words.iter().take(6).copied().collect();
    if head.is_empty() {
        "an empty statement".into()
    } else {
        head.join(" ")
    }
}

/// Upper-cased words, numbers and single-character punctuation, outside
/// comments; a string literal becomes `'` followed by its text as written,
/// a quoted identifier keeps its quotes (and case), a dollar-quoted body
/// becomes `$`.
pub(crate) fn tokenize(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'\'' || ((c == b'E' || c == b'e') && b.get(i + 1) == Some(&b'\'')) {
            let escapes = c != b'\'';
            i += if escapes { 2 } else { 1 };
            let start = i;
            while i < b.len() {
                if escapes && b[i] == b'\\' {
                    i += 2;
                } else if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            let end = i.saturating_sub(1).max(start).min(b.len());
            out.push(format!("'{}", String::from_utf8_lossy(&b[start..end])));
        } else if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push(sql[start..i.min(b.len())].to_string());
        } else if c == b'$' {
            // $tag$ ... $tag$ (a bare $1 parameter cannot appear in a dump).
            // The tag as the server (and the script reader) takes it:
            // letters, digits, `_` and non-ASCII bytes, not starting with a
            // digit.
            let tag_len = b[i + 1..].iter().take_while(|&&x| x.is_ascii_alphanumeric() || x == b'_' || x >= 0x80).count();
            let starts_ok = tag_len == 0 || !b[i + 1].is_ascii_digit();
            let tag_end = (starts_ok && b.get(i + 1 + tag_len) == Some(&b'$')).then_some(i + 1 + tag_len);
            match tag_end {
                Some(end) => {
                    let tag = &sql[i..=end];
                    match sql[end + 1..].find(tag) {
                        Some(p) => i = end + 1 + p + tag.len(),
                        None => i = b.len(),
                    }
                    out.push("$".to_string());
                }
                _ => {
                    out.push("$".to_string());
                    i += 1;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            out.push(sql[start..i].to_ascii_uppercase());
        } else if c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && out.last().is_some_and(|t| t == ",") {
            let start = i;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(sql[start..i].to_string());
        } else {
            // Multi-byte characters never start here (>= 0x80 is a word).
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG_DUMP: &str = include_str!("testdata/pg_dump_statements.sql");

    #[test]
    fn runs_every_statement_pg_dump_writes_for_kt() {
        let mut script = super::super::script::Script::new(PG_DUMP.as_bytes());
        let mut n = 0;
        while let Some(item) = script.next_item().unwrap() {
            if let super::super::script::Item::Statement(sql) = item {
                let verdict = judge(&sql, "keytrustee");
                assert!(matches!(verdict, Verdict::Run | Verdict::SkipOwnership), "{sql}: {verdict:?}");
                n += 1;
            }
        }
        assert!(n >= 28, "only {n} statements read");
        assert_eq!(judge("ALTER TABLE public.clients OWNER TO keytrustee", "keytrustee"), Verdict::SkipOwnership);
    }

    #[test]
    fn refuses_what_pg_dump_does_not_write_for_kt() {
        for sql in [
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
            "copy public.deposits to '/tmp/x'",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT pg_catalog.set_config('a', (SELECT pg_read_file('/etc/passwd')), false)",
            "SELECT pg_catalog.setval('s', 1, true), pg_sleep(10)",
            "ALTER SYSTEM SET archive_command = 'touch /tmp/x'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE c AS '/tmp/x.so', 'f'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$ import os $$",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$ LANGUAGE c",
            "CREATE TABLE x AS SELECT pg_read_file('/etc/passwd')",
            "CREATE TABLE public.x AS SELECT 1",
            "ALTER TABLE public.clients OWNER TO postgres",
            "ALTER TABLE public.clients OWNER TO keytrustee, ENABLE TRIGGER ALL",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CREATE TRIGGER t BEFORE INSERT ON public.deposits FOR EACH ROW EXECUTE FUNCTION f()",
            "GRANT pg_execute_server_program TO keytrustee",
            "CREATE EXTENSION plpython3u",
            "ALTER TABLE public.deposits ENABLE TRIGGER ALL",
            "CREATE UNLOGGED TABLE public.x (a int)",
            "CREATE TABLE pg_temp.t (a int)",
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "ALTER TABLE ONLY public.deposits ADD CONSTRAINT c CHECK (pg_temp.f())",
            "CREATE TABLE other.t (a int)",
            "ALTER TABLE public.deposits ALTER COLUMN name SET NOT NULL, SET UNLOGGED",
            "CREATE FUNCTION public.f() RETURNS int AS $é$ LANGUAGE sql $1$ $é$ LANGUAGE plpython3u",
            "DROP DATABASE keytrustee",
            "SET statement_timeout = 0; COPY (SELECT 1) TO PROGRAM 'x'",
            "COMMENT ON TABLE public.deposits IS 'x'; ALTER SYSTEM SET x = 1",
            "",
        ] {
            assert!(matches!(judge(sql, "keytrustee"), Verdict::Refuse(_)), "{sql:?} was not refused");
        }
    }

    #[test]
    fn settings_are_those_pg_dump_writes() {
        for sql in [
            "SET standard_conforming_strings = off",
            "SET search_path = public",
            "SET \"role\" = postgres",
            "SET session_authorization = postgres",
            "SET ROLE postgres",
            "SET LOCAL statement_timeout = 0",
            "SET client_encoding = 'LATIN1'",
            "SET session_preload_libraries = 'x'",
            "SET local_preload_libraries = 'x'",
            "SELECT pg_catalog.set_config('role', 'postgres', false)",
            "SELECT pg_catalog.set_config('search_path', 'x', true)",
            // With standard_conforming_strings off the server would read
            // '\', ' as one string: the filter never lets it be off.
            "SELECT pg_catalog.set_config('\\', ', (SELECT 1), false) --', false)",
        ] {
            assert!(matches!(judge(sql, "keytrustee"), Verdict::Refuse(_)), "{sql:?} was not refused");
        }
        assert_eq!(judge("SET client_encoding = 'UTF8'", "keytrustee"), Verdict::Run);
        assert_eq!(judge("SELECT pg_catalog.set_config('search_path', '', false)", "keytrustee"), Verdict::Run);
    }

    /// The server joins string constants separated by whitespace with a
    /// newline, under the first one's escaping rule: after `E'x'` a
    /// continued `'\' '` is one string to the server (`\'` escapes the
    /// quote) and two to a reader that does not join them, so text the
    /// filter (and `requalify`) took for a string would run as SQL.
    /// pg_dump never writes two constants in a row.
    #[test]
    fn continued_strings_are_refused() {
        for sql in [
            "CREATE TABLE public.t (a text DEFAULT E'x'\n'\\' ') INHERITS (public.deposits) --')",
            "COMMENT ON TABLE public.deposits IS 'a'\n'b'",
            "COMMENT ON TABLE public.deposits IS 'a' /* */ 'b'",
        ] {
            assert!(matches!(judge(sql, "keytrustee"), Verdict::Refuse(_)), "{sql:?} was not refused");
        }
    }

    /// PostgreSQL 16 and later read a vertical tab as a blank
    /// (`public\v.deposits` is `public.deposits`), 15 as a syntax error;
    /// the filter's reader saw neither, so the qualifier went unseen (and
    /// unmapped by `requalify`). pg_dump writes no control characters
    /// outside constants: any such statement is refused.
    #[test]
    fn control_characters_between_tokens_are_refused() {
        for sql in [
            "CREATE INDEX i ON public\x0b.deposits USING btree (owner)",
            "CREATE TABLE other\x0b.t (a int)",
            "COMMENT ON TABLE public.deposits\x01 IS 'x'",
        ] {
            assert!(matches!(judge(sql, "keytrustee"), Verdict::Refuse(_)), "{sql:?} was not refused");
        }
        assert_eq!(judge("COMMENT ON TABLE public.deposits IS 'tab\there'\t", "keytrustee"), Verdict::Run);
        assert_eq!(judge("COMMENT ON TABLE public.deposits IS 'bell \x07 inside'", "keytrustee"), Verdict::Run);
    }

    #[test]
    fn words_in_strings_and_comments_do_not_count() {
        assert_eq!(judge("COMMENT ON TABLE public.deposits IS 'COPY TO PROGRAM'", "keytrustee"), Verdict::Run);
        assert_eq!(
            judge("CREATE FUNCTION public.f() RETURNS int LANGUAGE plpgsql AS $x$ BEGIN /* LANGUAGE c */ RETURN 1; END $x$", "keytrustee"),
            Verdict::Run
        );
        assert!(matches!(judge("/* SET x = 1; */ COPY (SELECT 1) TO PROGRAM 'x'", "keytrustee"), Verdict::Refuse(_)));
        assert!(matches!(judge("-- SET x\nCOPY (SELECT 1) TO PROGRAM 'x'", "keytrustee"), Verdict::Refuse(_)));
    }
}
