//! Loading a dump into a scratch schema instead of a scratch database:
//! what `kt restore` does on an external database, where kt's role may
//! not create databases (README, "External database").
//!
//! The dump names every object `public.name` (pg_dump empties the
//! search_path and qualifies everything). Each statement the filter lets
//! through (`super::filter`, judged as written) is rewritten so that those
//! qualifiers name the scratch schema instead, outside strings, quoted
//! identifiers, comments and dollar-quoted bodies; the rewritten text is
//! tokenized again and refused if any `public.` is left (a comment between
//! `public` and `.`, say). The live tables sit in `public` of the same
//! database and kt's role owns them, so on top of the filter this mode
//! refuses what could reach them while loading:
//!
//! - a statement that names nothing in `public` (it could only act on
//!   something outside the scratch schema);
//! - `set_config('search_path', ...)` to anything but the empty path
//!   (unqualified names would resolve to live tables);
//! - `CREATE FUNCTION` and `setval` (kt's schema has neither; a function
//!   called by a column default while loading would run as kt's role);
//! - `CREATE SEQUENCE` and `ALTER SEQUENCE` (kt's schema has none, and
//!   `ALTER SEQUENCE ... SET SCHEMA public` would move an object out of
//!   the scratch schema into the live one, where it outlives a refusal);
//! - `COMMENT ON SCHEMA public` is skipped (it would change the live
//!   schema's comment; it says nothing about kt's data).

use super::filter::tokenize;

/// What the loader does with one statement in a scratch schema.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    Run(String),
    Skip,
    Refuse(String),
}

/// Maps `sql` (a statement the filter let through) into `schema` (a plain
/// lower-case name kt made).
pub fn map(sql: &str, schema: &str) -> Mapped {
    let tokens = tokenize(sql);
    let words: Vec<&str> = tokens.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["SET", ..] => return Mapped::Run(sql.to_string()),
        ["SELECT", "PG_CATALOG", ".", "SET_CONFIG", "(", "'search_path", ",", "'", ",", "FALSE", ")"] => return Mapped::Run(sql.to_string()),
        ["SELECT", "PG_CATALOG", ".", "SET_CONFIG", ..] => return Mapped::Refuse("a search_path other than the empty one".into()),
        ["SELECT", "PG_CATALOG", ".", "SETVAL", ..] => return Mapped::Refuse("setval (kt's schema has no sequences)".into()),
        ["CREATE", "FUNCTION", ..] | ["CREATE", "OR", "REPLACE", "FUNCTION", ..] => {
            return Mapped::Refuse("CREATE FUNCTION (kt's schema has no functions)".into())
        }
        ["CREATE", "SEQUENCE", ..] | ["ALTER", "SEQUENCE", ..] => {
            return Mapped::Refuse("a sequence (kt's schema has none; `SET SCHEMA` would move it out of the scratch schema)".into())
        }
        ["COMMENT", "ON", "SCHEMA", "PUBLIC", "IS", _] => return Mapped::Skip,
        _ => {}
    }
    let (text, n) = rewrite(sql, &format!("\"{schema}\""));
    let left = tokenize(&text);
    if left.windows(2).any(|w| w[0] == "PUBLIC" && w[1] == ".") {
        return Mapped::Refuse("a qualified name kt cannot map into the scratch schema".into());
    }
    if n == 0 {
        return Mapped::Refuse("a statement that names nothing in schema public".into());
    }
    Mapped::Run(text)
}

/// Replaces each unquoted `public` directly followed (after blanks) by `.`
/// with `to`, outside strings, quoted identifiers, comments and dollar
/// quotes; returns the text and the number of replacements.
fn rewrite(sql: &str, to: &str) -> (String, usize) {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 32);
    let mut n = 0;
    let mut i = 0;
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b'$' || x >= 0x80;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
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
            while i < b.len() {
                if escapes && b[i] == b'\\' {
                    i += 2;
                } else if b[i] == b'\'' {
                    i += 1;
                    if b.get(i) == Some(&b'\'') {
                        i += 1;
                    } else {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    i += 1;
                    if b.get(i) == Some(&b'"') {
                        i += 1;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        } else if c == b'$' {
            let tag_len = b[i + 1..].iter().take_while(|&&x| x.is_ascii_alphanumeric() || x == b'_' || x >= 0x80).count();
            let starts_ok = tag_len == 0 || !b[i + 1].is_ascii_digit();
            match (starts_ok && b.get(i + 1 + tag_len) == Some(&b'$')).then_some(i + 1 + tag_len) {
                Some(end) => {
                    let tag = &sql[i..=end];
                    i = match sql[end + 1..].find(tag) {
                        Some(p) => end + 1 + p + tag.len(),
                        None => b.len(),
                    };
                }
                None => i += 1,
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let after_dot = out.trim_end().ends_with('.');
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if sql[start..i].eq_ignore_ascii_case("public") && b.get(j) == Some(&b'.') && !after_dot {
                out.push_str(to);
                n += 1;
                continue;
            }
        } else {
            // One character (multi-byte characters are words above).
            i += 1;
        }
        let end = i.min(b.len());
        out.push_str(&sql[start..end]);
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "kt_restore_load_7";

    #[test]
    fn qualified_names_move_into_the_scratch_schema() {
        assert_eq!(
            map("ALTER TABLE ONLY public.clients ADD CONSTRAINT c FOREIGN KEY (o) REFERENCES public.organizations(uuid)", S),
            Mapped::Run(format!("ALTER TABLE ONLY \"{S}\".clients ADD CONSTRAINT c FOREIGN KEY (o) REFERENCES \"{S}\".organizations(uuid)"))
        );
        assert_eq!(
            map("COMMENT ON TABLE public.deposits IS 'see public.deposits'", S),
            Mapped::Run(format!("COMMENT ON TABLE \"{S}\".deposits IS 'see public.deposits'"))
        );
        assert_eq!(map("CREATE INDEX i ON Public . deposits USING btree (owner)", S), Mapped::Run(format!("CREATE INDEX i ON \"{S}\" . deposits USING btree (owner)")));
        assert_eq!(map("SELECT pg_catalog.set_config('search_path', '', false)", S), Mapped::Run("SELECT pg_catalog.set_config('search_path', '', false)".into()));
        assert_eq!(map("COMMENT ON SCHEMA public IS 'standard public schema'", S), Mapped::Skip);
    }

    #[test]
    fn what_could_reach_the_live_tables_is_refused() {
        for sql in [
            "SELECT pg_catalog.set_config('search_path', 'public', false)",
            "SELECT pg_catalog.setval('public.s', 1, true)",
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ DELETE FROM public.deposits RETURNING 1 $$",
            "ALTER TABLE deposits ALTER COLUMN owner SET DEFAULT 'x'",
            "CREATE INDEX i ON public/**/.deposits (owner)",
            "COMMENT ON DATABASE ktdb IS 'x'",
            // A sequence moved out of the scratch schema would outlive it
            // (in live `public`, or in a safety copy): kt has none.
            "CREATE SEQUENCE public.s START WITH 1",
            "ALTER SEQUENCE public.s SET SCHEMA public",
            "ALTER SEQUENCE public.s OWNED BY public.deposits.uuid",
        ] {
            let got = map(sql, S);
            assert!(matches!(got, Mapped::Refuse(_)), "{sql}: {got:?}");
        }
    }
}
