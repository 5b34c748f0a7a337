//! rsync-style file synchronisation (`kt ha sync`); knows no instance.
pub mod filter;
pub mod list;
pub mod wire;
