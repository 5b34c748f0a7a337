//! `--metrics-file` of `kt backup` and `kt restore`: what the run did,
//! written by `kt::jobmetrics` whether the run succeeded or not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::printer::Printer;
use crate::{CommandResult, Status};

/// What a run got as far as doing (bytes and rows stay 0 and empty when it
/// failed before it knew them).
#[derive(Debug, Default)]
pub struct Tally {
    pub bytes: u64,
    pub rows: BTreeMap<String, u64>,
}

/// Writes the run's metrics to `path`, if given. A file that cannot be
/// written is a warning: the backup or restore itself is what it is (and
/// a collector sees the old file's timestamp go stale).
pub fn write(printer: &Printer, path: Option<&Path>, job: &'static str, started: Instant, result: &CommandResult, tally: Tally) {
    let Some(path) = path else { return };
    let result = kt::jobmetrics::JobResult {
        job,
        success: matches!(result, Ok(Status::Success)),
        duration: started.elapsed(),
        bytes: tally.bytes,
        rows: tally.rows,
        finished: kt::clock::unix_now(),
    };
    if let Err(e) = result.write(path) {
        printer.warn(format!("the metrics file {} was not written: {e}", path.display()));
    }
}
