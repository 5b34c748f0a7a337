//! Progress on a terminal, drawn by indicatif: the step under way as a
//! spinner with its elapsed time, a transfer as a bar with bytes, rate, ETA
//! and a count (rows, files). When it ends, each leaves one plain line
//! behind, so the screen afterwards reads like the line-oriented output
//! plus a summary of each transfer.
//!
//! Off a terminal, with --quiet or --no-progress nothing is drawn: the
//! steps are printed as lines by the [`Printer`], exactly as before, and no
//! control character is written.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kt::progress::Progress;

use crate::printer::Printer;

/// The command layer's [`Progress`]: bars on a terminal, step lines
/// elsewhere. Call [`TerminalProgress::done`] before printing anything
/// else on the terminal (it is also called when dropped).
pub struct TerminalProgress<'p> {
    printer: &'p Printer,
    /// None when bars are off.
    multi: Option<MultiProgress>,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// The step under way and its spinner.
    phase: Option<(ProgressBar, String)>,
    /// When the step under way began: a transfer that follows a step is
    /// timed from there (the first bytes are reported late).
    phase_started: Option<Instant>,
    transfer: Option<Transfer>,
    /// The count reported with the transfer, or with the step while no
    /// transfer runs.
    count: Count,
}

/// A running count (", 1200 rows") as the bar's `{count}` key shows it:
/// shared with the key's closure, which indicatif calls at each redraw.
#[derive(Clone, Default)]
struct Count(Arc<Mutex<String>>);

impl Count {
    fn set(&self, what: &str, done: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = format!(", {done} {what}");
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `style` with its `{count}` key showing this count.
    fn key(&self, style: ProgressStyle) -> ProgressStyle {
        let count = self.clone();
        style.with_key("count", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&count.text());
        })
    }
}

struct Transfer {
    bar: ProgressBar,
    what: String,
    started: Instant,
    done: u64,
    known_total: bool,
}

impl<'p> TerminalProgress<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        let multi = printer.progress_bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        TerminalProgress { printer, multi, state: RefCell::default() }
    }

    /// Runs `f` (which prints) with the bars taken off the screen.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(f),
            None => f(),
        }
    }

    /// Ends whatever is drawn, leaving its plain line.
    pub fn done(&self) {
        let mut state = self.state.borrow_mut();
        self.end_transfer(&mut state);
        self.end_phase(&mut state, true);
    }

    /// Ends the step's spinner, leaving its line; with the count it showed
    /// unless a transfer takes the count over (`with_count` false).
    fn end_phase(&self, state: &mut State, with_count: bool) {
        let (Some(multi), Some((bar, message))) = (&self.multi, state.phase.take()) else { return };
        bar.finish_and_clear();
        multi.remove(&bar);
        let count = if with_count { std::mem::take(&mut state.count).text() } else { String::new() };
        line(multi, &format!("kt: {message}{count}"));
    }

    fn end_transfer(&self, state: &mut State) {
        let (Some(multi), Some(t)) = (&self.multi, state.transfer.take()) else { return };
        let count = std::mem::take(&mut state.count).text();
        t.bar.finish_and_clear();
        multi.remove(&t.bar);
        let elapsed = t.started.elapsed();
        let rate = t.done as f64 / elapsed.as_secs_f64().max(0.001);
        let took = match elapsed.as_millis() {
            ms @ 0..1000 => format!("{ms} ms"),
            _ => format!("{}", HumanDuration(elapsed)),
        };
        line(multi, &format!("kt: {}: {} in {took} ({}/s){count}", t.what, HumanBytes(t.done), HumanBytes(rate as u64)));
    }

    /// A step's spinner, with the count reported while no transfer runs.
    fn start_phase(&self, multi: &MultiProgress, state: &mut State, message: &str) {
        state.phase_started = Some(Instant::now());
        let bar = ProgressBar::new_spinner()
            .with_style(state.count.key(style("kt: {msg}{count} {spinner} {elapsed}")))
            .with_message(message.to_string());
        let bar = multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(120));
        state.phase = Some((bar, message.to_string()));
    }
}

/// A finished line above the bars, ended by a newline as any other line
/// on stderr (indicatif's own `println` leaves the cursor at the end of
/// the last line it drew when no bar is left).
fn line(multi: &MultiProgress, text: &str) {
    multi.suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    });
}

impl Drop for TerminalProgress<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ").tick_chars("|/-\\ ")
}

impl Progress for TerminalProgress<'_> {
    fn step(&self, message: &str) {
        let Some(multi) = &self.multi else {
            self.printer.step(message);
            return;
        };
        let mut state = self.state.borrow_mut();
        self.end_transfer(&mut state);
        self.end_phase(&mut state, true);
        state.count = Count::default();
        self.start_phase(multi, &mut state, message);
    }

    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        let Some(multi) = &self.multi else { return };
        let mut state = self.state.borrow_mut();
        if state.transfer.as_ref().is_none_or(|t| t.what != what || t.known_total != total.is_some()) {
            let count = std::mem::take(&mut state.count);
            self.end_transfer(&mut state);
            // The bar shows the work from now on: the step becomes a line,
            // the count goes with the bar.
            self.end_phase(&mut state, false);
            state.count = count;
            let template = if total.is_some() {
                "kt: {msg}: [{bar:24}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta}{count}"
            } else {
                "kt: {msg}: {bytes}, {binary_bytes_per_sec}{count}"
            };
            let bar = ProgressBar::no_length().with_style(state.count.key(style(template))).with_message(what.to_string());
            let bar = multi.add(bar);
            let started = state.phase_started.take().unwrap_or_else(Instant::now);
            state.transfer = Some(Transfer { bar, what: what.to_string(), started, done: 0, known_total: total.is_some() });
        }
        let t = state.transfer.as_mut().expect("made above");
        t.done = done;
        if let Some(total) = total {
            // An estimated total can be passed: the bar never shows > 100%.
            t.bar.set_length(total.max(done));
        }
        t.bar.set_position(done);
    }

    fn count(&self, what: &str, done: u64) {
        let Some(multi) = &self.multi else { return };
        let mut state = self.state.borrow_mut();
        state.count.set(what, done);
        // Shown with the transfer's bytes; with no transfer (yet), on the
        // step's spinner (one of its own when no step runs), whose line
        // keeps it unless bytes follow.
        match (&state.transfer, &state.phase) {
            (Some(t), _) => t.bar.tick(),
            (None, Some((bar, _))) => bar.tick(),
            (None, None) => self.start_phase(multi, &mut state, "counting"),
        }
    }

    fn finish(&self) {
        let mut state = self.state.borrow_mut();
        self.end_transfer(&mut state);
    }
}
