//! Turns rows of a text-format COPY (what pg_dump writes) into PostgreSQL's
//! binary COPY format, for the column types where that is exact and cheap
//! to do: bytea, uuid, text-like, integers, bool, timestamps, json.
//!
//! Why: the server parses a hex `bytea` in text COPY at about 100 MB/s
//! (unescaping, then hex decoding, one character at a time); in binary it
//! copies the bytes. Loading the deposits table is most of a restore, and
//! binary COPY loads it about 3x faster on the server side.
//!
//! Anything this module does not recognise is an `Err`, never a guess: the
//! loader then loads that table in text format, as psql would.

use postgres::types::Type;

/// The binary COPY header: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bytea,
    Uuid,
    /// text, varchar, name, json: the characters as they are.
    Text,
    Jsonb,
    Int2,
    Int4,
    Int8,
    Bool,
    Timestamp,
    Timestamptz,
}

impl Kind {
    pub fn of(ty: &Type) -> Option<Kind> {
        Some(match *ty {
            Type::BYTEA => Kind::Bytea,
            Type::UUID => Kind::Uuid,
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::JSON => Kind::Text,
            Type::JSONB => Kind::Jsonb,
            Type::INT2 => Kind::Int2,
            Type::INT4 => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::BOOL => Kind::Bool,
            Type::TIMESTAMP => Kind::Timestamp,
            Type::TIMESTAMPTZ => Kind::Timestamptz,
            _ => return None,
        })
    }
}

/// Encodes text COPY lines of one table into binary tuples.
pub struct RowEncoder {
    kinds: Vec<Kind>,
    scratch: Vec<u8>,
}

impl RowEncoder {
    pub fn new(kinds: Vec<Kind>) -> Self {
        RowEncoder { kinds, scratch: Vec::new() }
    }

    /// Appends the tuple for `line` (one data line, newline included) to
    /// `out`. On `Err`, `out` is left as it was.
    pub fn encode(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let result = self.encode_fields(line, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_fields(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.ends_with(b"\r") {
            return Err("a line ends with a carriage return".into());
        }
        out.extend_from_slice(&(self.kinds.len() as i16).to_be_bytes());
        // memchr, not a byte loop: a field can be kilobytes of hex.
        let mut rest = Some(line);
        let mut next_field = || {
            let r = rest?;
            match memchr::memchr(b'\t', r) {
                Some(i) => {
                    rest = Some(&r[i + 1..]);
                    Some(&r[..i])
                }
                None => {
                    rest = None;
                    Some(r)
                }
            }
        };
        for kind in &self.kinds {
            let field = next_field().ok_or("a row has too few fields")?;
            if field == b"\\N" {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            match kind {
                Kind::Bytea => hex_bytea(field, out)?,
                _ => {
                    let value: &[u8] = if memchr::memchr(b'\\', field).is_some() {
                        unescape(field, &mut self.scratch)?;
                        &self.scratch
                    } else {
                        field
                    };
                    encode_value(*kind, value, out)?;
                }
            }
            let len = i32::try_from(out.len() - len_at - 4).map_err(|_| "a value is too large")?;
            out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        }
        if next_field().is_some() {
            return Err("a row has too many fields".into());
        }
        Ok(())
    }
}

fn encode_value(kind: Kind, value: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let text = || std::str::from_utf8(value).map_err(|_| "a value is not UTF-8".to_string());
    match kind {
        Kind::Text => out.extend_from_slice(value),
        Kind::Jsonb => {
            out.push(1);
            out.extend_from_slice(value);
        }
        Kind::Uuid => out.extend_from_slice(&uuid(value)?),
        Kind::Int2 => out.extend_from_slice(&text()?.parse::<i16>().map_err(|e| e.to_string())?.to_be_bytes()),
        Kind::Int4 => out.extend_from_slice(&text()?.parse::<i32>().map_err(|e| e.to_string())?.to_be_bytes()),
        Kind::Int8 => out.extend_from_slice(&text()?.parse::<i64>().map_err(|e| e.to_string())?.to_be_bytes()),
        Kind::Bool => out.push(match value {
            b"t" => 1,
            b"f" => 0,
            _ => return Err("a bool that is not t or f".into()),
        }),
        Kind::Timestamp => out.extend_from_slice(&timestamp(text()?, false)?.to_be_bytes()),
        Kind::Timestamptz => out.extend_from_slice(&timestamp(text()?, true)?.to_be_bytes()),
        Kind::Bytea => unreachable!("bytea is decoded from the raw field"),
    }
    Ok(())
}

const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A bytea in hex output format, as text COPY escapes it: `\\x` + hex.
fn hex_bytea(field: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let hex = field.strip_prefix(b"\\\\x").ok_or("a bytea not in hex format")?;
    if hex.len() % 2 != 0 {
        return Err("a bytea with an odd number of hex digits".into());
    }
    let start = out.len();
    out.resize(start + hex.len() / 2, 0);
    let dst = &mut out[start..];
    // Eight characters at a time (the bulk of a restore is this loop), the
    // tail through the table.
    let mut chunks = hex.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let bytes = hex8(word).ok_or("a bytea with a character that is not a hex digit")?;
        dst[at..at + 4].copy_from_slice(&bytes);
        at += 4;
    }
    let mut bad = 0u8;
    for (byte, pair) in dst[at..].iter_mut().zip(chunks.remainder().chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= hi | lo;
        *byte = hi << 4 | (lo & 0x0f);
    }
    // 0xff marks a non-hex character; valid digits never set the high bit.
    if bad & 0x80 != 0 {
        return Err("a bytea with a character that is not a hex digit".into());
    }
    Ok(())
}

/// Decodes eight ASCII hex digits (a little-endian word: the first
/// character in the low byte) into four bytes, or `None` when any is not a
/// hex digit. Plain integer arithmetic on all eight lanes at once.
fn hex8(word: u64) -> Option<[u8; 4]> {
    const LANES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if word & HIGH != 0 {
        return None;
    }
    // With every byte below 0x80, adding at most 0x7f never carries into
    // the next byte: the high bit then says "byte >= lo" or "byte > hi".
    let in_range = |x: u64, lo: u8, hi: u8| {
        let at_least_lo = x + LANES * u64::from(0x80 - lo);
        let above_hi = x + LANES * u64::from(0x7f - hi);
        at_least_lo & !above_hi & HIGH
    };
    let digit = in_range(word, b'0', b'9');
    let letter = in_range(word | (LANES * 0x20), b'a', b'f');
    if digit | letter != HIGH {
        return None;
    }
    // '0'-'9' -> low nibble; 'a'-'f'/'A'-'F' -> low nibble + 9.
    let values = (word & (LANES * 0x0f)) + (letter >> 7) * 9;
    // Pair each high nibble (even byte) with the next low nibble.
    let pairs = ((values & 0x00ff_00ff_00ff_00ff) << 4) | ((values >> 8) & 0x00ff_00ff_00ff_00ff);
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let pairs = (pairs | (pairs >> 16)) & 0x0000_0000_ffff_ffff;
    Some((pairs as u32).to_le_bytes())
}

/// Undoes text COPY escaping: `\b \f \n \r \t \v \\`, octal `\NNN`, hex
/// `\xHH`, and `\c` for any other `c`.
fn unescape(field: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = field.get(i) else { return Err("a field ends with a lone backslash".into()) };
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(|&d| HEX[d as usize] != 0xff) => {
                let mut v = HEX[field[i] as usize];
                i += 1;
                if let Some(&d) = field.get(i) {
                    if HEX[d as usize] != 0xff {
                        v = v * 16 + HEX[d as usize];
                        i += 1;
                    }
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    Ok(())
}

/// The canonical form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or 32 digits).
fn uuid(value: &[u8]) -> Result<[u8; 16], String> {
    let canonical = value.len() == 36 && [8, 13, 18, 23].iter().all(|&i| value[i] == b'-');
    if !canonical && value.len() != 32 {
        return Err("a uuid not in canonical form".into());
    }
    let mut digits = value.iter().filter(|&&b| !canonical || b != b'-');
    let mut out = [0u8; 16];
    for byte in &mut out {
        let (Some(&h), Some(&l)) = (digits.next(), digits.next()) else { return Err("a uuid not in canonical form".into()) };
        let (hi, lo) = (HEX[h as usize], HEX[l as usize]);
        if hi == 0xff || lo == 0xff {
            return Err("a uuid with a character that is not a hex digit".into());
        }
        *byte = hi << 4 | lo;
    }
    Ok(out)
}

/// Microseconds since 2000-01-01 00:00:00 (UTC for timestamptz), from
/// the ISO output format pg_dump uses (`DateStyle = ISO`):
/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]`, or `infinity`.
pub fn timestamp(text: &str, with_zone: bool) -> Result<i64, String> {
    match text {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let bad = || format!("a timestamp kt does not read: {text:?}");
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let (date, time) = text.split_once(' ').ok_or_else(bad)?;
    let mut date_parts = date.splitn(3, '-');
    let year_text = date_parts.next().ok_or_else(bad)?;
    let month_text = date_parts.next().ok_or_else(bad)?;
    let day_text = date_parts.next().ok_or_else(bad)?;
    let number = |s: &str, digits: std::ops::RangeInclusive<usize>| -> Result<i64, String> {
        if !digits.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let year = number(year_text, 4..=7)?;
    let month = number(month_text, 2..=2)?;
    let day = number(day_text, 2..=2)?;
    // The zone offset starts at the first sign after the seconds.
    let (clock, zone) = match time.find(['+', '-']) {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    if zone.is_some() != with_zone {
        return Err(bad());
    }
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (clock, None),
    };
    let mut hms_parts = hms.split(':');
    let hour = number(hms_parts.next().ok_or_else(bad)?, 2..=2)?;
    let minute = number(hms_parts.next().ok_or_else(bad)?, 2..=2)?;
    let second = number(hms_parts.next().ok_or_else(bad)?, 2..=2)?;
    if hms_parts.next().is_some() {
        return Err(bad());
    }
    let micros = match fraction {
        Some(f) => {
            let n = number(f, 1..=6)?;
            n * 10i64.pow(6 - f.len() as u32)
        }
        None => 0,
    };
    let astronomical_year = if bc { 1 - year } else { year };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(astronomical_year, month) || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let offset_seconds = match zone {
        None => 0,
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let mut parts = z[1..].split(':');
            let h = number(parts.next().ok_or_else(bad)?, 2..=2)?;
            let m = parts.next().map(|p| number(p, 2..=2)).transpose()?.unwrap_or(0);
            let s = parts.next().map(|p| number(p, 2..=2)).transpose()?.unwrap_or(0);
            if parts.next().is_some() || m > 59 || s > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60 + s)
        }
    };
    let days = days_from_civil(astronomical_year, month, day) - days_from_civil(2000, 1, 1);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000).and_then(|us| us.checked_add(micros)).ok_or_else(bad)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (the one
/// PostgreSQL uses for every date), for any year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_words_agree_with_the_table() {
        let digits = b"0123456789abcdefABCDEF";
        let mut seed = 12345u64;
        for _ in 0..20000 {
            let mut chars = [0u8; 8];
            for c in &mut chars {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Mostly digits, sometimes any byte at all.
                *c = if seed >> 60 == 0 { (seed >> 32) as u8 } else { digits[(seed >> 33) as usize % digits.len()] };
            }
            let table: Option<Vec<u8>> = chars
                .chunks(2)
                .map(|p| {
                    let (h, l) = (HEX[p[0] as usize], HEX[p[1] as usize]);
                    (h != 0xff && l != 0xff).then_some(h << 4 | l)
                })
                .collect();
            assert_eq!(hex8(u64::from_le_bytes(chars)).map(|b| b.to_vec()), table, "{chars:?}");
        }
        let mut out = Vec::new();
        hex_bytea(b"\\\\x0123456789abcdefABCDEF00ff", &mut out).unwrap();
        assert_eq!(out, [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xab, 0xcd, 0xef, 0x00, 0xff]);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2000-01-01 00:00:00+00", true), Ok(0));
        assert_eq!(timestamp("2000-01-01 00:00:00", false), Ok(0));
        assert_eq!(timestamp("2000-01-01 01:00:00+01", true), Ok(0));
        assert_eq!(timestamp("1999-12-31 18:30:00-05:30", true), Ok(0));
        assert_eq!(timestamp("2000-01-01 00:00:00.5+00", true), Ok(500_000));
        assert_eq!(timestamp("2000-01-01 00:00:00.000001+00", true), Ok(1));
        assert_eq!(timestamp("1970-01-01 00:00:00+00", true), Ok(-946_684_800_000_000));
        assert_eq!(timestamp("2000-03-01 00:00:00", false), Ok(60 * 86_400_000_000));
        assert_eq!(timestamp("infinity", true), Ok(i64::MAX));
        // 1 BC is year 0, a leap year.
        assert!(timestamp("0001-02-29 00:00:00 BC", false).is_ok());
        assert!(timestamp("0001-02-29 00:00:00", false).is_err());
        for bad in ["2000-01-01", "2000-01-01T00:00:00Z", "2000-13-01 00:00:00", "2000-01-01 24:00:00", "2000-01-01 00:00:00.1234567"] {
            assert!(timestamp(bad, false).is_err(), "{bad}");
        }
        assert!(timestamp("2000-01-01 00:00:00", true).is_err(), "a timestamptz needs its zone");
    }

    #[test]
    fn rows() {
        let mut enc = RowEncoder::new(vec![Kind::Uuid, Kind::Text, Kind::Bytea, Kind::Int4, Kind::Bool]);
        let mut out = Vec::new();
        enc.encode(b"3aef51aa-b66f-43c4-8d58-21ddedd9ba86\ta\\tb\\\\\\101\t\\\\x00ff\t-7\t\\N\n", &mut out).unwrap();
        let mut want = vec![0, 5, 0, 0, 0, 16];
        want.extend_from_slice(&[0x3a, 0xef, 0x51, 0xaa, 0xb6, 0x6f, 0x43, 0xc4, 0x8d, 0x58, 0x21, 0xdd, 0xed, 0xd9, 0xba, 0x86]);
        want.extend_from_slice(&[0, 0, 0, 5, b'a', b'\t', b'b', b'\\', b'A']);
        want.extend_from_slice(&[0, 0, 0, 2, 0x00, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xf9]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(out, want);
        for bad in [&b"3aef51aa-b66f-43c4-8d58-21ddedd9ba8-\ta\t\\\\x00\t1\tt\n"[..], b"3aef51aa-b66f-43c4-8d58-21ddedd9ba86\ta\t\\\\x0g\t1\tt\n", &b"x\ta\t\\\\x00\t1\tt\n"[..], b"3aef51aa-b66f-43c4-8d58-21ddedd9ba86\ta\t\\\\000\t1\tt\n", b"3aef51aa-b66f-43c4-8d58-21ddedd9ba86\ta\n"] {
            let before = out.len();
            assert!(enc.encode(bad, &mut out).is_err());
            assert_eq!(out.len(), before, "a failed row leaves nothing behind");
        }
    }
}
