//! Binary COPY over several connections at once: the reader thread encodes
//! batches of rows and hands each to whichever connection is free, so the
//! server parses and inserts on every core. Each connection's COPY is its
//! own transaction; the loader gets all-or-nothing from loading into a new
//! database that is dropped when anything fails.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use crate::storage::db_error_text;

enum Job {
    /// Apply these session settings, run `open` (which opens a
    /// transaction: `BEGIN; TRUNCATE ...`; committed at `Finish`), then
    /// start `COPY ... (FORMAT binary)`.
    Begin { settings: Vec<String>, open: Option<String>, copy: String },
    /// Encoded tuples (no header, no trailer).
    Data(Vec<u8>),
    Finish,
    /// Abandon the current COPY: its rows are rolled back.
    Abort,
}

struct Worker {
    jobs: SyncSender<Job>,
    done: Receiver<Result<u64, String>>,
    thread: Option<JoinHandle<()>>,
    /// How many of the loader's session settings it has applied.
    settings_applied: usize,
}

pub struct Pool {
    workers: Vec<Worker>,
    next: usize,
}

impl Pool {
    /// One worker per connection.
    pub fn new(clients: Vec<postgres::Client>) -> Pool {
        let workers = clients
            .into_iter()
            .map(|client| {
                let (jobs, job_rx) = mpsc::sync_channel(4);
                let (done_tx, done) = mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name("kt-load".into())
                    .spawn(move || work(client, job_rx, done_tx))
                    .expect("a load thread starts");
                Worker { jobs, done, thread: Some(thread), settings_applied: 0 }
            })
            .collect();
        Pool { workers, next: 0 }
    }

    /// Starts `copy` (a `COPY ... FROM STDIN (FORMAT binary)`) on every
    /// connection, after the session `settings` each has not seen yet and
    /// `open`, when given: statements that open a transaction, committed
    /// when the COPY finishes (rolled back when it does not).
    pub fn begin(&mut self, settings: &[String], open: Option<&str>, copy: &str) -> Result<(), String> {
        for w in &mut self.workers {
            let new = settings[w.settings_applied.min(settings.len())..].to_vec();
            w.settings_applied = settings.len();
            let job = Job::Begin { settings: new, open: open.map(str::to_string), copy: copy.to_string() };
            w.jobs.send(job).map_err(|_| "a load connection stopped".to_string())?;
        }
        Ok(())
    }

    /// Hands a batch to a free connection (waits for one when all are busy).
    pub fn send(&mut self, mut batch: Vec<u8>) -> Result<(), String> {
        let n = self.workers.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            match self.workers[i].jobs.try_send(Job::Data(batch)) {
                Ok(()) => {
                    self.next = i + 1;
                    return Ok(());
                }
                Err(TrySendError::Full(Job::Data(b))) => batch = b,
                Err(_) => return Err("a load connection stopped".into()),
            }
        }
        let i = self.next % n;
        self.next = i + 1;
        self.workers[i].jobs.send(Job::Data(batch)).map_err(|_| "a load connection stopped".to_string())
    }

    /// Ends the COPY on every connection; the rows the server took in all.
    pub fn finish(&mut self) -> Result<u64, String> {
        self.end(|| Job::Finish)
    }

    /// Abandons the COPY on every connection (nothing of it stays).
    pub fn abort(&mut self) -> Result<(), String> {
        self.end(|| Job::Abort).map(|_| ())
    }

    fn end(&mut self, job: impl Fn() -> Job) -> Result<u64, String> {
        for w in &self.workers {
            w.jobs.send(job()).map_err(|_| "a load connection stopped".to_string())?;
        }
        let mut rows = 0;
        let mut first_error = None;
        for w in &self.workers {
            match w.done.recv() {
                Ok(Ok(n)) => rows += n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert("a load connection stopped".to_string());
                }
            }
        }
        first_error.map_or(Ok(rows), Err)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the channel ends the thread (an open COPY is aborted).
            let (closed, _) = mpsc::sync_channel(0);
            drop(std::mem::replace(&mut w.jobs, closed));
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// One connection's loop: COPY after COPY until the pool goes away. After
/// an error it keeps draining jobs (so the reader never blocks on it) and
/// reports the error when the COPY ends.
fn work(mut client: postgres::Client, jobs: Receiver<Job>, done: mpsc::Sender<Result<u64, String>>) {
    while let Ok(job) = jobs.recv() {
        let Job::Begin { settings, open, copy } = job else {
            // A Data/Finish/Abort outside a COPY cannot happen; say so.
            let _ = done.send(Err("a load connection got data outside a COPY".into()));
            continue;
        };
        let mut error: Option<String> = None;
        for s in &settings {
            if let Err(e) = client.batch_execute(s) {
                error.get_or_insert_with(|| db_error_text(&e));
            }
        }
        let in_transaction = open.is_some();
        if let (None, Some(open)) = (&error, &open) {
            if let Err(e) = client.batch_execute(open) {
                error = Some(db_error_text(&e));
            }
        }
        let mut writer = match error {
            Some(_) => None,
            None => match client.copy_in(copy.as_str()) {
                Ok(mut w) => match w.write_all(super::binary::HEADER) {
                    Ok(()) => Some(w),
                    Err(e) => {
                        error = Some(e.to_string());
                        None
                    }
                },
                Err(e) => {
                    error = Some(db_error_text(&e));
                    None
                }
            },
        };
        // The COPY's end: its result (`None`: abandoned).
        let ended = loop {
            match jobs.recv() {
                Ok(Job::Data(batch)) => {
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.write_all(&batch) {
                            error = Some(e.to_string());
                            writer = None;
                        }
                    }
                }
                Ok(Job::Finish) => {
                    break Some(match (writer.take(), error.take()) {
                        (_, Some(e)) => Err(e),
                        (Some(mut w), None) => match w.write_all(super::binary::TRAILER) {
                            Ok(()) => w.finish().map_err(|e| db_error_text(&e)),
                            Err(e) => Err(e.to_string()),
                        },
                        (None, None) => Err("the COPY did not start".into()),
                    });
                }
                Ok(Job::Abort) => {
                    drop(writer.take());
                    break None;
                }
                Ok(Job::Begin { .. }) | Err(_) => return,
            }
        };
        drop(writer);
        let (result, committed) = match (ended, in_transaction) {
            (Some(Ok(n)), true) => match client.batch_execute("COMMIT") {
                Ok(()) => (Ok(n), true),
                Err(e) => (Err(db_error_text(&e)), false),
            },
            (Some(result), _) => (result, false),
            (None, _) => (Ok(0), false),
        };
        // Rolled back on any failure (a warning only when none is open).
        if in_transaction && !committed {
            let _ = client.batch_execute("ROLLBACK");
        }
        let _ = done.send(result);
    }
}
