//! The contact key registration page (the documented "Notification Email
//! and GPG Keys"): a contact of an organization follows the single-use
//! link `https://<host>:11371/?q=<token>` from the registration mail and
//! pastes their armored OpenPGP public key; the server checks the token
//! and the key and stores the key as that contact's.
//!
//! This module is the page's logic, free of HTTP plumbing:
//!
//! - [`token`]: the token itself (`LinkToken`, which the mail side
//!   issues), its form, its hash (only the SHA-256 is stored), the lookup, and the single-use consumption that stores the key in the
//!   same statement (one transaction, the token row locked);
//! - [`key`]: the checks of an uploaded key (armored, whole, one primary
//!   key, self-signatures, not expired, not revoked) and its user IDs;
//! - [`form`]: the form body, the anti-forgery field bound to the token,
//!   the cross-site check (`Origin`, `Sec-Fetch-Site`) and the per-token
//!   limit on failed posts;
//! - [`page`]: the HTML pages and the headers every one of them carries.
//!
//! `server::contact_page` wires it to HTTP; the mail that carries the link
//! is `mail`'s. This module imports neither (nor hyper): `mail` and
//! `server` import it.

pub mod form;
pub mod key;
pub mod page;
pub mod token;
