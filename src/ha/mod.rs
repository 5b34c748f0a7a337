//! High availability: an active Key Trustee Server whose PostgreSQL
//! streams to a passive one (a hot standby), as the documented HA setup
//! has it. Bootstrap, in order:
//!
//! 1. `kt ha enable --peer PASSIVE` on the active ([`enable`]): a
//!    replication role with its own password (a SCRAM verifier in SQL, the
//!    password in the confdir for the passive), a `hostssl` rule in
//!    `pg_hba.conf` for the peer's addresses only, TLS on the database port
//!    with the instance's certificate, `listen_addresses` the address the
//!    peer reaches plus 127.0.0.1. `kt ha disable` removes all of it.
//! 2. `kt ha sync` of the confdir to the passive (`.ssl` excluded).
//! 3. `kt ha init-passive --active ACTIVE` on the passive ([`passive`]):
//!    `pg_basebackup -R` over TLS (the active's certificate verified with
//!    the copy `enable` put in the confdir), the passive's own host name
//!    and certificate, the standby started and streaming, the server
//!    started (a read-only server: PostgreSQL refuses its writes).
//! 4. `kt ha enable-sync` on the active ([`syncrep`]).
//!
//! `kt ha status` and `kt verify` read the state through [`status`].
//! After `kt restore` on the active, [`reinit`] has status ask for the
//! passive to be re-initialised (`kt ha init-passive --force`); status
//! only reads, `kt ha enable-sync` and `kt ha status --clear-reinit` clear
//! the marker once a standby has caught up.
//!
//! This module knows instances, clusters and the journal; it never
//! imports the server's internals.

pub mod drift;
pub mod enable;
pub mod passive;
pub mod pgconf;
pub mod reinit;
pub mod status;
pub mod syncrep;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::instance::{Instance, DB_USER};
use crate::storage::cluster::Cluster;
use crate::storage::pgpass::Password;

/// The database role the passive replicates as: REPLICATION and LOGIN,
/// nothing else.
pub const REPLICATION_ROLE: &str = "kt_replication";
/// Its password, as a libpq password file in the confdir (0600): synced to
/// the passive with the rest of the confdir, read there by pg_basebackup
/// and by the standby's WAL receiver, never on a command line.
pub const REPLICATION_PGPASS: &str = ".pgpass-replication";
/// The active's TLS trust anchor (its CA file, or its certificate), copied
/// into the confdir by `kt ha enable` so that the passive, which gets the
/// confdir but not `.ssl`, verifies the database it replicates from.
pub const ACTIVE_CA: &str = "ha-active-ca.pem";
/// The standby's `application_name`: what `synchronous_standby_names`
/// names and `pg_stat_replication` shows.
pub const STANDBY_NAME: &str = "kt_passive";

/// The other host of the pair: its name or address and database port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Peer {
    /// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`; `default_port` when none.
    pub fn parse(text: &str, default_port: u16) -> Result<Peer> {
        let bad = |why: &str| {
            Error::usage(format!("invalid peer {text:?}: {why}")).with_hint("give HOST or HOST:DBPORT, e.g. kts02.example.com:11381")
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(|| bad("text after ]"))?)),
            }
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| bad("the port is not 1-65535"))?,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.parse::<IpAddr>().is_err() {
            crate::hostname::validate(host).map_err(|e| bad("not a host name or address").because(e))?;
        }
        Ok(Peer { host: host.to_string(), port })
    }

    /// The peer's addresses, as the resolver gives them now.
    pub fn addresses(&self) -> Result<Vec<IpAddr>> {
        let mut ips: Vec<IpAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::env(format!("cannot resolve the peer {}", self.host))
                    .because_err(&e)
                    .with_hint("give the peer's address, or fix its name in DNS or /etc/hosts")
            })?
            .map(|a| a.ip())
            .collect();
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            return Err(Error::env(format!("the peer {} has no address", self.host)));
        }
        Ok(ips)
    }
}

/// The local address this host uses to reach `peer` (the route's source
/// address; nothing is sent).
pub fn local_address_towards(peer: IpAddr) -> Result<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let socket = UdpSocket::bind(bind).map_err(|e| Error::env("cannot open a socket").because_err(&e))?;
    socket
        .connect(SocketAddr::new(peer, 9))
        .map_err(|e| Error::env(format!("no route to the peer {peer}")).because_err(&e))?;
    Ok(socket.local_addr().map_err(|e| Error::env("cannot read a socket's address").because_err(&e))?.ip())
}

/// Paths of the HA files in an instance's confdir.
pub fn replication_pgpass(instance: &Instance) -> PathBuf {
    instance.layout.confdir.join(REPLICATION_PGPASS)
}

pub fn active_ca(instance: &Instance) -> PathBuf {
    instance.layout.confdir.join(ACTIVE_CA)
}

/// The instance's superuser connection to the `postgres` database.
pub fn admin(instance: &Instance, cluster: &Cluster) -> Result<postgres::Client> {
    let password = Password::read(&instance.layout.pgpass(), DB_USER)?;
    cluster.connect(&password, "postgres")
}

/// Polls `check` every 200 ms until it says yes or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A SQL error as PostgreSQL put it.
pub(crate) fn sql_failed(what: &str, e: &postgres::Error) -> Error {
    Error::env(what.to_string()).because(crate::storage::db_error_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        assert_eq!(Peer::parse("kts02.example.com", 11381).unwrap(), Peer { host: "kts02.example.com".into(), port: 11381 });
        assert_eq!(Peer::parse("10.0.0.2:5432", 11381).unwrap(), Peer { host: "10.0.0.2".into(), port: 5432 });
        assert_eq!(Peer::parse("[::1]:5432", 1).unwrap(), Peer { host: "::1".into(), port: 5432 });
        assert_eq!(Peer::parse("::1", 7).unwrap(), Peer { host: "::1".into(), port: 7 });
        assert_eq!(Peer::parse("[::1]:5432", 1).unwrap().to_string(), "[::1]:5432");
        for bad in ["", ":5432", "host:0", "host:x", "bad_host!", "[::1", "[::1]x"] {
            assert!(Peer::parse(bad, 1).is_err(), "{bad}");
        }
    }
}
