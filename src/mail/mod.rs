//! Contact mail (issue 16): what kt tells an organization's contacts, and
//! how it gets there.
//!
//! - [`messages`] holds the texts (contact registration with its link, a client
//!   registered or waiting for approval), plain functions of their facts.
//! - the registration link's token is
//!   [`crate::registration::token::LinkToken`]: the page that checks it
//!   owns its form and hash, so issuing and checking cannot disagree.
//! - [`outbox`] owns the `mail_outbox` table: messages are queued in the same
//!   transaction as the change that causes them, listed by `kt mail
//!   queue`, delivered by [`worker`] with retries and backoff.
//! - [`budget`] bounds the client notices an organization's contacts get
//!   (anyone can ask to register a client).
//! - [`compose`] turns a queued text into a PGP/MIME message (RFC 3156),
//!   signed with the server's OpenPGP key, and encrypted as well to the
//!   contact's registered key when there is one.
//! - [`transport`] sends through SMTP (STARTTLS when offered, optional
//!   authentication)
//!   or the local sendmail, through lettre, per the `MAIL_*` settings.
//!
//! This module never prints and never decides exit codes: `kt mail`
//! (commands/mail.rs) does. It must not import the server (src/server/),
//! which calls into it.

pub mod budget;
pub mod compose;
pub mod messages;
pub mod outbox;
pub mod transport;
pub mod worker;
