//! `kt verify`: whether the key server and its backups are sound. Every
//! check is read-only and reports one line; the verdict is the exit code
//! (0 sound, 1 a problem found, 3 could not check).

pub mod backup;

pub mod local;
pub mod remote;

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
}

impl Status {
    /// The mark of a checklist line, four characters wide.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
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
