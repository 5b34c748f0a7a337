//! The undo journal of a multi-step change (DESIGN.md, "Trust before
//! action"): each step is recorded, with how to undo it, right after it
//! succeeded; a failure later rolls back every recorded step in reverse
//! order, carries on past a step that cannot be undone, and reports every
//! step it undid and every one it could not.
//!
//! Reverse order is what makes the undo closures simple: when a step is
//! undone, everything recorded after it has been undone already, so the
//! world looks as it did right after that step. A closure can therefore
//! capture the state of its moment (which password the cluster has, which
//! confdir is in place) instead of re-discovering it.
//!
//! Rollback is explicit ([`Journal::roll_back`]) so that its [`Report`]
//! reaches the operator. A journal dropped without [`Journal::commit`] or
//! `roll_back` (an early `?` the caller forgot to route, a panic) rolls
//! back anyway: an unfinished change must never stay half done just
//! because nobody could read the report. A debug assertion flags that path
//! in tests, outside a panic.
//!
//! With [`Journal::with_log`], every step is also appended to a file as it
//! is recorded and undone, so that after a `kill -9` the operator (or the
//! next run) can read what was done and what is left to undo.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Error, Result};

type Undo = Box<dyn FnOnce() -> Result<()>>;

struct Step {
    description: String,
    undo: Undo,
}

/// The recorded steps of one change.
pub struct Journal {
    steps: Vec<Step>,
    log: Option<File>,
    finished: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|s| &s.description)).finish()
    }
}

/// What a rollback did.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps undone, in the order they were undone (newest first).
    pub undone: Vec<String>,
    /// The steps that could not be undone, with why, in the same order.
    pub failed: Vec<(String, Error)>,
}

impl Report {
    /// Every recorded step was undone.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// `err`, with one cause line for each step undone and each step that
    /// could not be undone (those first, in capitals: they need a person).
    pub fn explain(&self, mut err: Error) -> Error {
        for (step, why) in &self.failed {
            err = err.because(format!("NOT UNDONE: {step}: {why}"));
        }
        for step in &self.undone {
            err = err.because(format!("undone: {step}"));
        }
        err
    }
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Journal {
    pub fn new() -> Journal {
        Journal { steps: Vec::new(), log: None, finished: false }
    }

    /// A journal that also writes each step to `path` (created, 0600; it
    /// must not exist).
    pub fn with_log(path: &Path) -> Result<Journal> {
        let mut journal = Journal::new();
        journal.log_to(path)?;
        Ok(journal)
    }

    /// From now on, also writes each step to `path` (created, 0600; it must
    /// not exist), starting with those recorded so far: for a change whose
    /// first steps make the directory the journal file goes in.
    pub fn log_to(&mut self, path: &Path) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .env_context(|| format!("cannot create the undo journal {}", path.display()))?;
        self.log = Some(file);
        let earlier: Vec<String> = self.steps.iter().map(|s| format!("done: {}", s.description)).collect();
        for line in earlier {
            self.write_log(&line);
        }
        Ok(())
    }

    /// Records that each of `paths` (files or directory trees) was created
    /// by this run: undone by removing it, if it is still there. Only
    /// paths this run created: a new directory holds only what it put there.
    pub fn record_created(&mut self, paths: impl IntoIterator<Item = std::path::PathBuf>) {
        for path in paths {
            self.record(format!("created {}", path.display()), move || {
                let removed = match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                    Ok(_) => std::fs::remove_file(&path),
                    Err(_) => Ok(()),
                };
                removed.map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e))
            });
        }
    }

    /// Ends the change with `result`: commits on success; on failure rolls
    /// back and returns the error, with every step that could not be
    /// undone named and `hint` (what the operator does about those).
    pub fn finish<T>(self, result: Result<T>, hint: &str) -> Result<T> {
        match result {
            Ok(value) => {
                self.commit();
                Ok(value)
            }
            Err(e) => {
                let report = self.roll_back();
                if report.is_complete() {
                    Err(e)
                } else {
                    Err(report.explain(e).with_hint(hint))
                }
            }
        }
    }

    /// Records a step that has just succeeded, and how to undo it.
    pub fn record(&mut self, description: impl Into<String>, undo: impl FnOnce() -> Result<()> + 'static) {
        let description = description.into();
        self.write_log(&format!("done: {description}"));
        self.steps.push(Step { description, undo: Box::new(undo) });
    }

    /// The descriptions of the steps recorded so far, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.description.as_str())
    }

    /// The change is complete: nothing is undone.
    pub fn commit(mut self) {
        self.write_log("committed");
        self.steps.clear();
        self.finished = true;
    }

    /// Undoes every recorded step, newest first, whatever fails.
    pub fn roll_back(mut self) -> Report {
        self.finished = true;
        self.undo_all()
    }

    fn undo_all(&mut self) -> Report {
        let mut report = Report::default();
        while let Some(step) = self.steps.pop() {
            // A panicking undo step must not stop the others either.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step.undo))
                .unwrap_or_else(|_| Err(Error::env("the undo step panicked")));
            match outcome {
                Ok(()) => {
                    self.write_log(&format!("undone: {}", step.description));
                    report.undone.push(step.description);
                }
                Err(e) => {
                    self.write_log(&format!("NOT UNDONE: {}: {e}", step.description));
                    report.failed.push((step.description, e));
                }
            }
        }
        report
    }

    /// Best effort: the journal file is for people after a crash; a write
    /// that fails must not turn a working change into a failed one.
    fn write_log(&mut self, line: &str) {
        if let Some(file) = &mut self.log {
            let _ = writeln!(file, "{line}").and_then(|()| file.sync_data());
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        debug_assert!(
            std::thread::panicking() || self.steps.is_empty(),
            "a journal with recorded steps was dropped without commit or roll_back"
        );
        self.undo_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[allow(clippy::type_complexity)]
    fn recorder() -> (Rc<RefCell<Vec<String>>>, impl Fn(&str, bool) -> Box<dyn FnOnce() -> Result<()>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let make = move |name: &str, ok: bool| -> Box<dyn FnOnce() -> Result<()>> {
            let l = l.clone();
            let name = name.to_string();
            Box::new(move || {
                l.borrow_mut().push(name.clone());
                if ok {
                    Ok(())
                } else {
                    Err(Error::env(format!("{name} failed")))
                }
            })
        };
        (log, make)
    }

    #[test]
    fn rolls_back_in_reverse_order() {
        let (log, step) = recorder();
        let mut j = Journal::new();
        for name in ["a", "b", "c"] {
            j.record(format!("step {name}"), step(name, true));
        }
        let report = j.roll_back();
        assert_eq!(*log.borrow(), ["c", "b", "a"]);
        assert_eq!(report.undone, ["step c", "step b", "step a"]);
        assert!(report.is_complete());
    }

    #[test]
    fn carries_on_past_failures_and_reports_each() {
        let (log, step) = recorder();
        let mut j = Journal::new();
        j.record("a", step("a", true));
        j.record("b", step("b", false));
        j.record("c", step("c", true));
        j.record("d", step("d", false));
        j.record("e", || -> Result<()> { panic!("boom") });
        let report = j.roll_back();
        assert_eq!(*log.borrow(), ["d", "c", "b", "a"], "every step ran");
        assert_eq!(report.undone, ["c", "a"]);
        let failed: Vec<(&str, String)> = report.failed.iter().map(|(s, e)| (s.as_str(), e.to_string())).collect();
        assert_eq!(failed, [("e", "the undo step panicked".to_string()), ("d", "d failed".into()), ("b", "b failed".into())]);
        assert!(!report.is_complete());
        let err = report.explain(Error::env("it broke"));
        assert_eq!(
            err.causes(),
            [
                "NOT UNDONE: e: the undo step panicked",
                "NOT UNDONE: d: d failed",
                "NOT UNDONE: b: b failed",
                "undone: c",
                "undone: a"
            ]
        );
    }

    #[test]
    fn commit_undoes_nothing() {
        let (log, step) = recorder();
        let mut j = Journal::new();
        j.record("a", step("a", true));
        j.commit();
        assert!(log.borrow().is_empty());
    }

    #[test]
    fn an_empty_journal_may_be_dropped() {
        drop(Journal::new());
    }

    #[test]
    fn a_dropped_journal_rolls_back_during_a_panic() {
        let (log, step) = recorder();
        let l = log.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut j = Journal::new();
            j.record("a", step("a", true));
            j.record("b", step("b", true));
            panic!("the change failed");
        }));
        assert!(result.is_err());
        assert_eq!(*l.borrow(), ["b", "a"]);
    }

    #[test]
    fn the_log_file_tells_what_was_done_and_undone() {
        let dir = std::env::temp_dir().join(format!("kt-journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("journal");
        let (_log, step) = recorder();
        let mut j = Journal::with_log(&path).unwrap();
        j.record("moved aside", step("a", true));
        j.record("stopped", step("b", false));
        assert!(Journal::with_log(&path).is_err(), "an existing journal is never overwritten");
        let _ = j.roll_back();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "done: moved aside\ndone: stopped\nNOT UNDONE: stopped: b failed\nundone: moved aside\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
