//! Reads a plain-format SQL script (what `pg_dump --format plain` writes)
//! the way psql reads it: statements end at a `;` outside quotes and
//! comments, a line starting with `\` between statements is a meta-command,
//! and a `COPY ... FROM stdin;` statement is followed by data lines up to
//! `\.`. The lexer knows single quotes (with `''`, and backslash escapes
//! in `E''` strings or when `standard_conforming_strings` is off), double
//! quoted identifiers, dollar quotes (`$$`, `$tag$`), `--` comments and
//! nested `/* */` comments: everything pg_dump can put into a statement.

use std::io::BufRead;

/// One unit of the script, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// An SQL statement, without its terminating `;`.
    Statement(String),
    /// A backslash line, trimmed (`\restrict KEY`).
    Meta(String),
    /// A `COPY ... FROM stdin` statement (without `;`); its data lines
    /// follow and are read with [`Script::copy_line`].
    Copy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    Single { backslash_escapes: bool },
    Double,
    Dollar(Vec<u8>),
    Block(u32),
}

pub struct Script<R> {
    reader: R,
    /// Bytes of the script consumed so far (whole lines).
    offset: u64,
    line: Vec<u8>,
    /// Where lexing resumes in `line`.
    pos: usize,
    statement: Vec<u8>,
    state: State,
    /// `SET standard_conforming_strings = off` makes `\` an escape in ''.
    standard_strings: bool,
}

impl<R: BufRead> Script<R> {
    pub fn new(reader: R) -> Self {
        Script { reader, offset: 0, line: Vec::new(), pos: 0, statement: Vec::new(), state: State::Normal, standard_strings: true }
    }

    /// Bytes consumed so far (for progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn read_line(&mut self) -> Result<bool, String> {
        self.line.clear();
        self.pos = 0;
        let n = self.reader.read_until(b'\n', &mut self.line).map_err(|e| format!("cannot read the dump: {e}"))?;
        self.offset += n as u64;
        Ok(n > 0)
    }

    /// The next statement, meta-command or COPY; `None` at the end.
    pub fn next_item(&mut self) -> Result<Option<Item>, String> {
        loop {
            if self.pos >= self.line.len() {
                if !self.read_line()? {
                    if self.state != State::Normal {
                        return Err("the dump ends inside a quoted string or comment".into());
                    }
                    if is_blank(&self.statement) {
                        return Ok(None);
                    }
                    // psql sends a last statement without `;` at the end.
                    let text = self.take_statement()?;
                    return Ok(Some(Item::Statement(text)));
                }
                if self.state == State::Normal && is_blank(&self.statement) {
                    let trimmed = self.line.trim_ascii();
                    if trimmed.first() == Some(&b'\\') {
                        let meta = String::from_utf8(trimmed.to_vec()).map_err(|_| "a meta-command is not UTF-8".to_string())?;
                        self.pos = self.line.len();
                        return Ok(Some(Item::Meta(meta)));
                    }
                }
            }
            if let Some(text) = self.lex_line()? {
                if let Some(copy) = copy_from_stdin(&text) {
                    if !self.line[self.pos..].trim_ascii().is_empty() {
                        return Err(format!("text after a COPY statement on its line: {copy}"));
                    }
                    self.pos = self.line.len();
                    return Ok(Some(Item::Copy(copy)));
                }
                self.note_setting(&text);
                return Ok(Some(Item::Statement(text)));
            }
        }
    }

    /// Reads one COPY data line into `out` (replacing its contents, with its
    /// newline). `false` at the end marker `\.`.
    pub fn copy_line(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        out.clear();
        let n = self.reader.read_until(b'\n', out).map_err(|e| format!("cannot read the dump: {e}"))?;
        self.offset += n as u64;
        if n == 0 {
            return Err("the dump ends inside COPY data (no \\. line)".into());
        }
        let end = out.strip_suffix(b"\n").unwrap_or(out);
        let end = end.strip_suffix(b"\r").unwrap_or(end);
        Ok(end != b"\\.")
    }

    /// Lexes from `pos`; returns a statement when a `;` ends one.
    fn lex_line(&mut self) -> Result<Option<String>, String> {
        let line = std::mem::take(&mut self.line);
        let result = self.lex(&line);
        self.line = line;
        result
    }

    fn lex(&mut self, line: &[u8]) -> Result<Option<String>, String> {
        let at = |i: usize| line.get(i).copied().unwrap_or(0);
        let mut i = self.pos;
        while i < line.len() {
            let c = line[i];
            match &mut self.state {
                State::Normal => match c {
                    b';' => {
                        self.pos = i + 1;
                        return self.take_statement().map(Some);
                    }
                    b'\'' => {
                        let prefix = self.statement.last().copied().unwrap_or(b' ');
                        let before = self.statement.len().checked_sub(2).map(|j| self.statement[j]).unwrap_or(b' ');
                        let e_string = matches!(prefix, b'E' | b'e') && !is_ident(before);
                        self.state = State::Single { backslash_escapes: e_string || !self.standard_strings };
                        self.statement.push(c);
                    }
                    b'"' => {
                        self.state = State::Double;
                        self.statement.push(c);
                    }
                    b'$' => {
                        let after_ident = self.statement.last().is_some_and(|&p| is_ident(p) || p == b'$');
                        let tag_len = line[i + 1..].iter().take_while(|&&b| is_ident(b)).count();
                        let starts_ok = tag_len == 0 || !line[i + 1].is_ascii_digit();
                        if !after_ident && starts_ok && at(i + 1 + tag_len) == b'$' {
                            let tag = line[i..i + tag_len + 2].to_vec();
                            self.statement.extend_from_slice(&tag);
                            i += tag.len();
                            self.state = State::Dollar(tag);
                            continue;
                        }
                        self.statement.push(c);
                    }
                    b'-' if at(i + 1) == b'-' => {
                        // A comment to the end of the line: the newline stays.
                        self.statement.push(b'\n');
                        i = line.len();
                        continue;
                    }
                    b'/' if at(i + 1) == b'*' => {
                        self.state = State::Block(1);
                        i += 2;
                        continue;
                    }
                    b'\\' => {
                        return Err(format!(
                            "a psql meta-command inside a statement: {}",
                            String::from_utf8_lossy(line.trim_ascii())
                        ))
                    }
                    _ => self.statement.push(c),
                },
                State::Single { backslash_escapes } => {
                    self.statement.push(c);
                    if c == b'\\' && *backslash_escapes && i + 1 < line.len() {
                        self.statement.push(line[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == b'\'' {
                        if at(i + 1) == b'\'' {
                            self.statement.push(b'\'');
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                }
                State::Double => {
                    self.statement.push(c);
                    if c == b'"' {
                        if at(i + 1) == b'"' {
                            self.statement.push(b'"');
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                }
                State::Dollar(tag) => {
                    if line[i..].starts_with(tag) {
                        let n = tag.len();
                        self.statement.extend_from_slice(&line[i..i + n]);
                        i += n;
                        self.state = State::Normal;
                        continue;
                    }
                    self.statement.push(c);
                }
                State::Block(depth) => {
                    if c == b'/' && at(i + 1) == b'*' {
                        *depth += 1;
                        i += 2;
                        continue;
                    }
                    if c == b'*' && at(i + 1) == b'/' {
                        *depth -= 1;
                        if *depth == 0 {
                            // The comment separates tokens like a space.
                            self.statement.push(b' ');
                            self.state = State::Normal;
                        }
                        i += 2;
                        continue;
                    }
                }
            }
            i += 1;
        }
        self.pos = line.len();
        Ok(None)
    }

    fn take_statement(&mut self) -> Result<String, String> {
        let bytes = std::mem::take(&mut self.statement);
        let text = String::from_utf8(bytes).map_err(|_| "a statement is not UTF-8".to_string())?;
        Ok(text.trim().to_string())
    }

    fn note_setting(&mut self, statement: &str) {
        let words: Vec<String> = statement.split(|c: char| c.is_whitespace() || c == '=').filter(|w| !w.is_empty()).map(str::to_ascii_lowercase).collect();
        if let [set, name, value] = words.as_slice() {
            if set == "set" && name == "standard_conforming_strings" {
                self.standard_strings = !matches!(value.trim_matches('\''), "off" | "false");
            }
        }
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// `COPY target FROM stdin` (any case) gives the statement back.
fn copy_from_stdin(statement: &str) -> Option<String> {
    let lower = statement.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    (words.first() == Some(&"copy") && words.len() >= 4 && words[words.len() - 2..] == ["from", "stdin"]).then(|| statement.to_string())
}

/// Splits the target of `COPY target FROM stdin` into the table and its
/// column list (`None` when the statement names no columns).
pub fn copy_target(statement: &str) -> Option<(String, Option<String>)> {
    let body = statement.trim();
    let body = body.get(4..)?.trim_start();
    let lower = body.to_ascii_lowercase();
    let end = lower.rfind("from")?;
    let target = body[..end].trim();
    // The column list starts at the first `(` outside double quotes.
    let mut quoted = false;
    for (i, c) in target.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                let columns = target[i..].trim();
                return columns.ends_with(')').then(|| (target[..i].trim().to_string(), Some(columns[1..columns.len() - 1].to_string())));
            }
            _ => {}
        }
    }
    Some((target.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<Item> {
        let mut script = Script::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        let mut out = Vec::new();
        let mut line = Vec::new();
        while let Some(item) = script.next_item().unwrap() {
            if let Item::Copy(_) = &item {
                let mut rows = 0;
                while script.copy_line(&mut line).unwrap() {
                    rows += 1;
                }
                out.push(item);
                out.push(Item::Meta(format!("rows {rows}")));
                continue;
            }
            out.push(item);
        }
        out
    }

    fn stmt(s: &str) -> Item {
        Item::Statement(s.into())
    }

    #[test]
    fn splits_like_psql() {
        let got = items(
            "--\n-- header\n--\n\n\\restrict abc\n\nSET a = 1;\nSELECT 'x;y', \"q;\"\"\" FROM t; SELECT 2;\n\
             CREATE FUNCTION f() RETURNS int AS $body$ SELECT ';' $x$ ; $body$ LANGUAGE sql;\n\
             SELECT $$a;b$$, E'it\\'s;', 'a''b;' /* c; /* nested; */ */ ;\n\
             COPY public.t (a, \"b c\") FROM stdin;\n1\t\\\\x00\n\\.\n\\unrestrict abc\nSELECT 3",
        );
        assert_eq!(
            got,
            vec![
                Item::Meta("\\restrict abc".into()),
                stmt("SET a = 1"),
                stmt("SELECT 'x;y', \"q;\"\"\" FROM t"),
                stmt("SELECT 2"),
                stmt("CREATE FUNCTION f() RETURNS int AS $body$ SELECT ';' $x$ ; $body$ LANGUAGE sql"),
                stmt("SELECT $$a;b$$, E'it\\'s;', 'a''b;'"),
                Item::Copy("COPY public.t (a, \"b c\") FROM stdin".into()),
                Item::Meta("rows 1".into()),
                Item::Meta("\\unrestrict abc".into()),
                stmt("SELECT 3"),
            ]
        );
    }

    #[test]
    fn backslash_strings_when_standard_strings_are_off() {
        let got = items("SET standard_conforming_strings = off;\nSELECT 'a\\';b';\n");
        assert_eq!(got, vec![stmt("SET standard_conforming_strings = off"), stmt("SELECT 'a\\';b'")]);
        // With them on (the default), a backslash is an ordinary character.
        assert_eq!(items("SELECT 'a\\';\n"), vec![stmt("SELECT 'a\\'")]);
    }

    #[test]
    fn dollar_signs_that_are_not_quotes() {
        assert_eq!(items("SELECT $1, a$b$c FROM t;"), vec![stmt("SELECT $1, a$b$c FROM t")]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let mut s = Script::new(std::io::Cursor::new(b"SELECT 'open;\n".to_vec()));
        assert!(s.next_item().is_err());
        let mut s = Script::new(std::io::Cursor::new(b"COPY t (a) FROM stdin;\n1\n".to_vec()));
        assert!(matches!(s.next_item(), Ok(Some(Item::Copy(_)))));
        let mut line = Vec::new();
        assert!(s.copy_line(&mut line).unwrap());
        assert!(s.copy_line(&mut line).is_err());
        let mut s = Script::new(std::io::Cursor::new(b"SELECT 1 \\gset\n".to_vec()));
        assert!(s.next_item().is_err());
    }

    #[test]
    fn copy_targets() {
        assert_eq!(
            copy_target("COPY public.deposits (uuid, owner) FROM stdin"),
            Some(("public.deposits".into(), Some("uuid, owner".into())))
        );
        assert_eq!(copy_target("COPY \"a (b\".t FROM stdin"), Some(("\"a (b\".t".into(), None)));
    }
}
