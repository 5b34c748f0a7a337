//! Whether a host name names this host: its addresses (from the resolver,
//! through `std::net::ToSocketAddrs`) against the addresses of this host's
//! interfaces (`getifaddrs`). The documented restore asks for a host with
//! "the same hostname and IP address": a name that resolves elsewhere, or
//! not at all, means clients that use the name will not reach this host.

use std::net::{IpAddr, ToSocketAddrs};

/// What resolving a host name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// At least one of its addresses is this host's (a loopback address
    /// counts: `localhost`, and the `127.0.1.1` some systems give their
    /// own name).
    Here,
    /// It resolves, to none of this host's addresses.
    Elsewhere(Vec<IpAddr>),
    /// It does not resolve (the resolver's message).
    Unresolved(String),
}

/// Resolves `name` and compares with this host's interface addresses.
pub fn resolve_here(name: &str) -> Resolution {
    let resolved = match (name, 0u16).to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.ip()).collect::<Vec<_>>(),
        Err(e) => return Resolution::Unresolved(e.to_string()),
    };
    if resolved.is_empty() {
        return Resolution::Unresolved("no address".into());
    }
    let local = local_addresses().unwrap_or_default();
    judge(resolved, &local)
}

/// The pure comparison behind [`resolve_here`].
pub fn judge(mut resolved: Vec<IpAddr>, local: &[IpAddr]) -> Resolution {
    if resolved.iter().any(|a| a.is_loopback() || local.contains(a)) {
        Resolution::Here
    } else {
        resolved.sort();
        resolved.dedup();
        Resolution::Elsewhere(resolved)
    }
}

/// The IPv4 and IPv6 addresses of this host's interfaces.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list, which is walked read-only and
    // freed once below.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
        Ok(out)
    }
}

/// The warning a restore prints for `name`, when there is one.
pub fn warning(name: &str) -> Option<String> {
    match resolve_here(name) {
        Resolution::Here => None,
        Resolution::Unresolved(why) => Some(format!(
            "the host name {name} does not resolve ({why}): the documented restore needs the same host name and IP address, or clients will not find this server"
        )),
        Resolution::Elsewhere(addrs) => Some(format!(
            "the host name {name} resolves to {}, none of which is an address of this host: the documented restore needs the same host name and IP address, or clients will reach another host",
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_local_addresses_are_here() {
        let local: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()];
        assert_eq!(judge(vec!["127.0.1.1".parse().unwrap()], &local), Resolution::Here);
        assert_eq!(judge(vec!["::1".parse().unwrap()], &local), Resolution::Here);
        assert_eq!(judge(vec!["198.51.100.1".parse().unwrap(), "2001:db8::10".parse().unwrap()], &local), Resolution::Here);
        let far: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(judge(vec![far, far], &local), Resolution::Elsewhere(vec![far]));
    }

    #[test]
    fn this_hosts_interfaces_and_names() {
        let local = local_addresses().unwrap();
        assert!(local.iter().any(|a| a.is_loopback()), "no loopback interface among {local:?}");
        assert_eq!(resolve_here("localhost"), Resolution::Here);
        // RFC 6761: .invalid never resolves.
        assert!(matches!(resolve_here("kt-no-such-host.invalid"), Resolution::Unresolved(_)));
        assert!(warning("kt-no-such-host.invalid").unwrap().contains("does not resolve"));
        // An address literal of another network resolves to itself.
        assert!(matches!(resolve_here("192.0.2.77"), Resolution::Elsewhere(_)));
    }
}
