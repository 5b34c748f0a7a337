//! kt: a Key Trustee Server and its operations toolkit, as a library.
//!
//! The command-line layer (`commands/`) parses arguments and prints; this
//! library does the work and reports failures as [`Error`] values that carry
//! their exit-code class. No printing, no `process::exit` here.

pub mod account;
pub mod approval;
pub mod auth;
pub mod backup;
pub mod client;
pub mod clock;
pub mod cert;
pub mod checks;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod error;
pub mod fsutil;
pub mod ha;
pub mod gnupg;
pub mod hostconf;
pub mod hostname;
pub mod hostaddr;
pub mod init;
pub mod init_external;
pub mod jobmetrics;
pub mod journal;
pub mod mail;
pub mod instance;
pub mod org;
pub mod pgp;
pub mod registration;
pub mod progress;
pub mod restore;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod settings;
pub mod storage;
pub mod sync;
pub mod text;
pub mod tls;
pub mod verify;

pub use error::{Error, Kind, Result};
