//! All output of the command-line layer: data on stdout, messages on
//! stderr, `--quiet` honoured in one place.

use std::io::{IsTerminal, Write};

use kt::progress::Progress;

/// Where and how much kt prints.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub quiet: bool,
    pub verbose: bool,
    /// Progress bars allowed: stderr is a terminal and neither --quiet nor
    /// --no-progress was given.
    pub progress_bars: bool,
}

impl Printer {
    pub fn new(quiet: bool, verbose: bool, no_progress: bool) -> Printer {
        let progress_bars = !quiet && !no_progress && std::io::stderr().is_terminal();
        Printer { quiet, verbose, progress_bars }
    }

    /// A line of data on stdout. A closed pipe (`kt ... | head`) is not an
    /// error: the error bubbles up as BrokenPipe and main exits quietly.
    pub fn data(&self, line: impl AsRef<str>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line.as_ref())?;
        out.flush()
    }

    /// An informational message on stderr, silenced by --quiet.
    pub fn info(&self, message: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", message.as_ref());
        }
    }

    /// A detail shown only with --verbose.
    pub fn detail(&self, message: impl AsRef<str>) {
        if self.verbose {
            let _ = writeln!(std::io::stderr().lock(), "{}", message.as_ref());
        }
    }

    /// A warning on stderr; never silenced.
    pub fn warn(&self, message: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr().lock(), "kt: warning: {}", message.as_ref());
    }

    /// What to do next, after a warning; never silenced.
    pub fn hint(&self, message: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr().lock(), "hint: {}", message.as_ref());
    }
}

impl Progress for Printer {
    fn step(&self, message: &str) {
        self.info(format!("kt: {message}"));
    }
}
