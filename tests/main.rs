//! kt's integration tests: the real `kt` binary against real PostgreSQL,
//! with GnuPG, openssl and psql as outside witnesses of what it writes.
//!
//! One test binary (fast to build and link); each area has its module.

mod harness;

mod approval;
mod assets;
mod backup;
mod cert_generate;
mod cert_replace;
mod cert_show;
mod cli;
mod compat;
mod db;
mod external_db;
mod forged;
mod ha;
mod ha_dr;
mod ha_peer;
mod ha_write;
mod init;
mod load;
mod mail;
mod nodes;
mod org;
mod progress;
mod registration;
mod restore;
mod schedule;
mod server;
mod sync;
mod verify;
