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

/// Progress on a terminal: a line redrawn in place with bytes, rate and
/// (when the total is known) percent and ETA. Nothing when progress bars
/// are off (not a terminal, --quiet, --no-progress).
pub struct TerminalProgress<'p> {
    printer: &'p Printer,
    started: std::cell::Cell<Option<std::time::Instant>>,
    drawn: std::cell::Cell<bool>,
}

impl<'p> TerminalProgress<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        TerminalProgress { printer, started: Default::default(), drawn: Default::default() }
    }
}

impl Progress for TerminalProgress<'_> {
    fn step(&self, message: &str) {
        self.finish();
        self.printer.step(message);
    }

    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        if !self.printer.progress_bars {
            return;
        }
        let started = self.started.get().unwrap_or_else(std::time::Instant::now);
        self.started.set(Some(started));
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let mb = |b: f64| b / 1_000_000.0;
        let mut line = format!("kt: {what}: {:.0} MB, {:.0} MB/s", mb(done as f64), mb(rate));
        if let Some(total) = total.filter(|t| *t > 0) {
            let pct = (done as f64 / total as f64 * 100.0).min(100.0);
            let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
            line.push_str(&format!(" ({pct:.0}% of {:.0} MB, ETA {eta:.0}s)", mb(total as f64)));
        }
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{line}");
        self.drawn.set(true);
    }

    fn finish(&self) {
        if self.drawn.replace(false) {
            let _ = writeln!(std::io::stderr().lock());
        }
        self.started.set(None);
    }
}
