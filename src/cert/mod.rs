//! The server's TLS certificate: keys (`key`), what a certificate says
//! (`info`), certificate files, PKCS#12 bundles and chains (`chain`), and
//! making certificates and requests (`issue`). `kt init` makes the first
//! self-signed one; `kt cert` generates, replaces, shows and checks them.
//!
//! Nothing here knows the server or its process: putting a certificate in
//! place under the undo journal is `cert::replace`'s job, which talks to a
//! running server only through `daemon`.

pub mod chain;
pub mod check;
pub mod info;
pub mod issue;
pub mod key;
pub mod material;
pub mod replace;

pub use issue::{self_signed, SelfSigned};
