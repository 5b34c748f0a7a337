//! rsync's `--exclude` / `--include` rules.
//!
//! Paths are relative to the transfer root (for SRC `dir` the root is the
//! directory holding `dir`, so paths start with `dir/`; for `dir/` they are
//! the contents' names), `/`-separated, as bytes. The rules, as rsync's man
//! page states them:
//!
//! - the first rule that matches decides; no rule matching means included;
//! - a pattern starting with `/` is anchored at the transfer root;
//! - a trailing `/` makes the rule match directories only;
//! - a pattern with a `/` inside (not counting a trailing one) or a `**` is
//!   matched against the whole path, and when unanchored also against every
//!   tail of it that starts after a `/`; any other pattern is matched against
//!   the last component only, so it matches at any depth;
//! - `*` matches anything but `/`, `**` anything, `?` one byte that is not
//!   `/`, `[...]` a class (`!` or `^` negates, `a-z` ranges), `\` escapes;
//! - `dir/***` matches `dir` itself and everything below it.
//!
//! Excluding a directory excludes its contents because the walker does not
//! descend into it ([`super::list`]) and `--delete` does not look inside it
//! ([`super::receive`]); the matcher itself only judges one path.

use crate::error::{Error, Result};

/// What a matching rule does with the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Include,
    Exclude,
}

#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    /// The pattern as given, for messages and for sending to the other side.
    text: String,
    /// Alternatives, any of which matching makes the rule match (`dir/***`
    /// is `dir` or `dir/**`).
    patterns: Vec<Vec<u8>>,
    anchored: bool,
    dir_only: bool,
    full_path: bool,
}

/// An ordered list of include/exclude rules.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    rules: Vec<Rule>,
}

impl Filter {
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Appends `--exclude PATTERN`.
    pub fn exclude(&mut self, pattern: &str) -> Result<()> {
        self.push(Action::Exclude, pattern)
    }

    /// Appends `--include PATTERN`.
    pub fn include(&mut self, pattern: &str) -> Result<()> {
        self.push(Action::Include, pattern)
    }

    /// Appends a rule; an empty pattern is a usage error (rsync ignores it
    /// silently, which hides typos such as `--exclude ""`).
    pub fn push(&mut self, action: Action, pattern: &str) -> Result<()> {
        let mut p = pattern.as_bytes();
        if p.is_empty() || p == b"/" {
            return Err(Error::usage(format!("empty filter pattern {pattern:?}")));
        }
        let anchored = p[0] == b'/';
        if anchored {
            p = &p[1..];
        }
        let mut dir_only = false;
        let mut patterns = Vec::new();
        if let Some(base) = p.strip_suffix(b"/***") {
            patterns.push(base.to_vec());
            patterns.push([base, b"/**"].concat());
        } else {
            if let Some(stripped) = p.strip_suffix(b"/") {
                dir_only = true;
                p = stripped;
            }
            patterns.push(p.to_vec());
        }
        let full_path = patterns.iter().any(|q| q.contains(&b'/') || contains(q, b"**"));
        self.rules.push(Rule { action, text: pattern.to_string(), patterns, anchored, dir_only, full_path });
        Ok(())
    }

    /// The rules in order, as `(action, pattern as given)`: what the other
    /// side needs to rebuild the same filter.
    pub fn rules(&self) -> impl Iterator<Item = (Action, &str)> {
        self.rules.iter().map(|r| (r.action, r.text.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative to the transfer root) is excluded.
    pub fn is_excluded(&self, path: &[u8], is_dir: bool) -> bool {
        self.decide(path, is_dir) == Some(Action::Exclude)
    }

    /// The action of the first matching rule, if any.
    pub fn decide(&self, path: &[u8], is_dir: bool) -> Option<Action> {
        let path = path.strip_prefix(b"/").unwrap_or(path);
        self.rules.iter().find(|r| r.matches(path, is_dir)).map(|r| r.action)
    }
}

impl Rule {
    fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        self.patterns.iter().any(|p| {
            if self.anchored {
                wildmatch(p, path)
            } else if self.full_path {
                // The whole path, then each tail after a `/`.
                wildmatch(p, path)
                    || path.iter().enumerate().any(|(i, &c)| c == b'/' && wildmatch(p, &path[i + 1..]))
            } else {
                let last = match path.iter().rposition(|&c| c == b'/') {
                    Some(i) => &path[i + 1..],
                    None => path,
                };
                wildmatch(p, last)
            }
        })
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// rsync's wildcard match of the whole of `s` against `p`.
fn wildmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    while pi < p.len() {
        match p[pi] {
            b'*' => {
                let mut np = pi + 1;
                while np < p.len() && p[np] == b'*' {
                    np += 1;
                }
                let double = np - pi >= 2;
                let rest = &p[np..];
                if rest.is_empty() {
                    return double || !s[si..].contains(&b'/');
                }
                for k in si..=s.len() {
                    if wildmatch(rest, &s[k..]) {
                        return true;
                    }
                    if k < s.len() && !double && s[k] == b'/' {
                        return false;
                    }
                }
                return false;
            }
            b'?' => {
                if si >= s.len() || s[si] == b'/' {
                    return false;
                }
                pi += 1;
                si += 1;
            }
            b'[' => match class(&p[pi..]) {
                Some((set, negated, len)) => {
                    if si >= s.len() || s[si] == b'/' {
                        return false;
                    }
                    let c = s[si];
                    let hit = set.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    if hit == negated {
                        return false;
                    }
                    pi += len;
                    si += 1;
                }
                // No closing `]`: a literal `[`.
                None => {
                    if si >= s.len() || s[si] != b'[' {
                        return false;
                    }
                    pi += 1;
                    si += 1;
                }
            },
            c => {
                let (lit, step) = if c == b'\\' && pi + 1 < p.len() { (p[pi + 1], 2) } else { (c, 1) };
                if si >= s.len() || s[si] != lit {
                    return false;
                }
                pi += step;
                si += 1;
            }
        }
    }
    si == s.len()
}

/// A parsed `[...]`: its byte ranges, whether it is negated, and its
/// length in the pattern.
type Class = (Vec<(u8, u8)>, bool, usize);

/// Parses a `[...]` class at the start of `p`; None when it is not closed.
fn class(p: &[u8]) -> Option<Class> {
    let mut i = 1;
    let negated = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negated {
        i += 1;
    }
    let mut set = Vec::new();
    let mut first = true;
    while i < p.len() {
        let mut c = p[i];
        if c == b']' && !first {
            return Some((set, negated, i + 1));
        }
        first = false;
        if c == b'\\' && i + 1 < p.len() {
            i += 1;
            c = p[i];
        }
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            set.push((c, p[i + 2]));
            i += 3;
        } else {
            set.push((c, c));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rules: &[(Action, &str)]) -> Filter {
        let mut f = Filter::new();
        for (a, p) in rules {
            f.push(*a, p).unwrap();
        }
        f
    }

    use Action::{Exclude as X, Include as I};

    #[test]
    fn plain_name_matches_last_component_at_any_depth() {
        let f = f(&[(X, ".ssl")]);
        assert!(f.is_excluded(b".ssl", true));
        assert!(f.is_excluded(b".keytrustee/.ssl", true));
        assert!(f.is_excluded(b"a/b/.ssl", false));
        assert!(!f.is_excluded(b".ssl2", false));
        assert!(!f.is_excluded(b".ssl/x", false), "contents are excluded by not descending, not by the matcher");
    }

    #[test]
    fn anchored_matches_only_at_the_root() {
        let f = f(&[(X, "/foo")]);
        assert!(f.is_excluded(b"foo", false));
        assert!(!f.is_excluded(b"a/foo", false));
    }

    #[test]
    fn trailing_slash_is_for_directories_only() {
        let f = f(&[(X, "cache/")]);
        assert!(f.is_excluded(b"x/cache", true));
        assert!(!f.is_excluded(b"x/cache", false));
    }

    #[test]
    fn star_does_not_cross_slash_and_double_star_does() {
        let f1 = f(&[(X, "/a/*.log")]);
        assert!(f1.is_excluded(b"a/x.log", false));
        assert!(!f1.is_excluded(b"a/b/x.log", false));
        let f2 = f(&[(X, "/a/**.log")]);
        assert!(f2.is_excluded(b"a/b/c/x.log", false));
        let f3 = f(&[(X, "*.log")]);
        assert!(f3.is_excluded(b"deep/dir/x.log", false));
        assert!(!f3.is_excluded(b"x.log.1", false));
    }

    #[test]
    fn unanchored_path_pattern_matches_any_tail_at_a_slash() {
        let f = f(&[(X, "b/c")]);
        assert!(f.is_excluded(b"b/c", false));
        assert!(f.is_excluded(b"a/b/c", false));
        assert!(!f.is_excluded(b"ab/c", false));
    }

    #[test]
    fn question_mark_and_classes() {
        let f = f(&[(X, "file?.[a-c]"), (X, "[!x]z")]);
        assert!(f.is_excluded(b"file1.b", false));
        assert!(!f.is_excluded(b"file1.d", false));
        assert!(!f.is_excluded(b"file12.b", false));
        assert!(f.is_excluded(b"yz", false));
        assert!(!f.is_excluded(b"xz", false));
        let lit = super::wildmatch(b"a[b", b"a[b");
        assert!(lit, "an unclosed [ is literal");
        assert!(super::wildmatch(b"\\*", b"*") && !super::wildmatch(b"\\*", b"a"));
    }

    #[test]
    fn first_match_wins() {
        let f = f(&[(I, "keep.log"), (X, "*.log")]);
        assert!(!f.is_excluded(b"keep.log", false));
        assert!(f.is_excluded(b"other.log", false));
        let g = super::Filter { rules: f.rules.iter().rev().cloned().collect() };
        assert!(g.is_excluded(b"keep.log", false));
    }

    #[test]
    fn triple_star_matches_dir_and_contents() {
        let f = f(&[(I, "/d/***"), (X, "*")]);
        assert!(!f.is_excluded(b"d", true));
        assert!(!f.is_excluded(b"d/x/y", false));
        assert!(f.is_excluded(b"e", true));
    }

    #[test]
    fn empty_pattern_is_a_usage_error() {
        let err = Filter::new().exclude("").unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Usage);
    }
}
