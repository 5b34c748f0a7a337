//! A checklist: named checks, each ok, a problem, or skipped, and the
//! verdict (sound when nothing failed). The shape of every read-only check
//! kt prints one line per finding for: `kt verify`, `kt cert check`, and
//! (next) `kt ha status`. It knows none of them.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// A problem: the verdict becomes "problem" (exit 1).
    Fail,
    /// Not applicable here (e.g. no HA peer configured).
    Skip,
    /// Worth knowing, not a problem: the verdict stays sound (e.g. a right
    /// only some commands need).
    Warn,
}

impl Status {
    /// The mark of a checklist line, four characters wide.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
            Status::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// A list of checks and its verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Ok, detail);
    }
    pub fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Fail, detail);
    }
    pub fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Skip, detail);
    }
    pub fn warn(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Warn, detail);
    }
    pub fn push(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check { name: name.to_string(), status, detail: detail.into() });
    }
    /// Records a check from a result: Ok(detail) or Err(problem).
    pub fn record(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(d) => {
                self.ok(name, d);
                true
            }
            Err(d) => {
                self.fail(name, d);
                false
            }
        }
    }
    pub fn sound(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}
