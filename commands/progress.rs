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
    /// The count reported with the transfer.
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
    kind: Kind,
}

/// What a transfer's bar shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Bytes of a known total: a bar with ETA.
    Total,
    /// Bytes of an unknown total.
    Bytes,
    /// A count reported with no bytes: a spinner with the count.
    CountOnly,
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
        self.end_phase(&mut state);
    }

    fn end_phase(&self, state: &mut State) {
        let (Some(multi), Some((bar, message))) = (&self.multi, state.phase.take()) else { return };
        bar.finish_and_clear();
        multi.remove(&bar);
        line(multi, &format!("kt: {message}"));
    }

    fn end_transfer(&self, state: &mut State) {
        let count = std::mem::take(&mut state.count).text();
        let (Some(multi), Some(t)) = (&self.multi, state.transfer.take()) else { return };
        t.bar.finish_and_clear();
        multi.remove(&t.bar);
        let elapsed = t.started.elapsed();
        let rate = t.done as f64 / elapsed.as_secs_f64().max(0.001);
        let took = match elapsed.as_millis() {
            ms @ 0..1000 => format!("{ms} ms"),
            _ => format!("{}", HumanDuration(elapsed)),
        };
        let summary = match t.kind {
            Kind::CountOnly => format!("kt: {}{count} in {took}", t.what),
            _ => format!("kt: {}: {} in {took} ({}/s){count}", t.what, HumanBytes(t.done), HumanBytes(rate as u64)),
        };
        line(multi, &summary);
    }

    /// A new transfer's bar, shown from now on: the step under way becomes
    /// a line. Timed from the step's start (the first report comes late).
    fn start_transfer(&self, multi: &MultiProgress, state: &mut State, what: &str, kind: Kind) {
        self.end_phase(state);
        let template = match kind {
            Kind::Total => "kt: {msg}: [{bar:24}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta}{count}",
            Kind::Bytes => "kt: {msg}: {bytes}, {binary_bytes_per_sec}{count}",
            Kind::CountOnly => "kt: {msg}{count} {spinner} {elapsed}",
        };
        let bar = ProgressBar::no_length().with_style(state.count.key(style(template))).with_message(what.to_string());
        let bar = multi.add(bar);
        if kind == Kind::CountOnly {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        let started = state.phase_started.take().unwrap_or_else(Instant::now);
        state.transfer = Some(Transfer { bar, what: what.to_string(), started, done: 0, kind });
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
        self.end_phase(&mut state);
        state.phase_started = Some(Instant::now());
        let bar = multi.add(
            ProgressBar::new_spinner()
                .with_style(style("kt: {msg} {spinner} {elapsed}"))
                .with_message(message.to_string()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        state.phase = Some((bar, message.to_string()));
    }

    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        let Some(multi) = &self.multi else { return };
        let mut state = self.state.borrow_mut();
        let kind = if total.is_some() { Kind::Total } else { Kind::Bytes };
        if state.transfer.as_ref().is_none_or(|t| t.what != what || t.kind != kind) {
            let count = std::mem::take(&mut state.count);
            match state.transfer.take() {
                // Counted before its bytes came: the same work, and timed
                // from its start; its spinner gives way to the bar.
                Some(t) if t.kind == Kind::CountOnly => {
                    t.bar.finish_and_clear();
                    multi.remove(&t.bar);
                    state.phase_started = Some(t.started);
                }
                other => {
                    state.transfer = other;
                    self.end_transfer(&mut state);
                }
            }
            state.count = count;
            self.start_transfer(multi, &mut state, what, kind);
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
        match &state.transfer {
            Some(t) => t.bar.tick(),
            // No bytes (yet): the count is shown alone, after the step.
            None => {
                let label = state.phase.as_ref().map_or_else(|| "counting".to_string(), |(_, m)| m.clone());
                self.start_transfer(multi, &mut state, &label, Kind::CountOnly);
            }
        }
    }

    fn finish(&self) {
        let mut state = self.state.borrow_mut();
        self.end_transfer(&mut state);
    }
}
