//! The one error type of the library.
//!
//! Every failure carries the class that decides the process exit code
//! (DESIGN.md, "Exit codes"), a message saying what failed, the chain of
//! causes, and optionally a hint telling the operator what to do. Only the
//! command-line layer turns it into text and an exit status.
//!
//! Which class a failure gets is one rule, the same in every command, so
//! that the same bad input always gives the same exit code:
//!
//! - bad input that the operator can fix by editing what they gave us is
//!   [`Kind::Usage`] (2): a command-line argument, a `keytrustee.conf`
//!   value that is malformed, out of range or missing (a bad `CIPHERS`, a
//!   `LISTEN` that is no address, a `DB_PORT` of 0), a file they named
//!   whose content is wrong (a certificate that is not PEM, a key that
//!   does not match its certificate), a malformed `--server` URL;
//! - the world is not as needed is [`Kind::Environment`] (3): a file that
//!   a well-formed setting names is absent or unreadable, the database is
//!   down, the disk is full, an account or a lock is missing, a helper
//!   program failed;
//! - a check that ran and found something wrong is [`Kind::Problem`] (1).
//!
//! A command that runs another kt command (`kt server start` runs
//! `kt serve`) passes the child's class on ([`Kind::from_exit_code`]).

use std::fmt;

/// What kind of failure this is; maps one-to-one onto the exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The check ran and found a problem (exit 1).
    Problem,
    /// Usage error or bad input; nothing was changed (exit 2).
    Usage,
    /// The environment failed: database down, disk full, key missing (exit 3).
    Environment,
}

impl Kind {
    /// The process exit code of this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Problem => 1,
            Kind::Usage => 2,
            Kind::Environment => 3,
        }
    }

    /// The kind a kt child process reported through its exit code; any
    /// code that is not kt's own (a signal, a crash) is the environment.
    pub fn from_exit_code(code: Option<i32>) -> Kind {
        match code {
            Some(1) => Kind::Problem,
            Some(2) => Kind::Usage,
            _ => Kind::Environment,
        }
    }
}

/// A failure with its class, cause chain and hint.
#[derive(Debug, Clone)]
pub struct Error {
    kind: Kind,
    message: String,
    causes: Vec<String>,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), causes: Vec::new(), hint: None }
    }

    /// Bad input or usage: exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    /// The environment failed: exit 3.
    pub fn env(message: impl Into<String>) -> Self {
        Self::new(Kind::Environment, message)
    }

    /// A check found a problem: exit 1.
    pub fn problem(message: impl Into<String>) -> Self {
        Self::new(Kind::Problem, message)
    }

    /// Appends a cause (and the cause's own source chain) below the message.
    pub fn because(mut self, cause: impl fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }

    /// Appends a std error and every error in its `source()` chain.
    pub fn because_err(mut self, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            let text = e.to_string();
            // Many errors repeat their source in their own message: skip exact repeats.
            if self.causes.last() != Some(&text) {
                self.causes.push(text);
            }
            current = e.source();
        }
        self
    }

    /// The same failure told at a higher level: a new class and message,
    /// the causes kept, the hint dropped (the new message's caller gives
    /// its own).
    pub fn restate(mut self, kind: Kind, message: impl Into<String>) -> Self {
        self.kind = kind;
        self.message = message.into();
        self.hint = None;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn causes(&self) -> &[String] {
        &self.causes
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Attach a message and a class to any error, keeping it as the cause.
pub trait Context<T> {
    /// Failure of the environment (exit 3), described by `message`.
    fn env_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
    /// Bad input (exit 2), described by `message`.
    fn usage_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: std::error::Error + 'static> Context<T> for std::result::Result<T, E> {
    fn env_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error::env(message()).because_err(&e))
    }

    fn usage_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error::usage(message()).because_err(&e))
    }
}
