//! Host names: this host's FQDN, validation, and the `<host>` form used in
//! backup file names (`kts01.example.com` -> `kts01_example_com`).

use std::ffi::{CStr, CString};

use crate::error::{Error, Result};

/// This host's fully qualified name: the canonical name of `gethostname()`
/// as the resolver knows it, or the bare host name when it cannot resolve.
pub fn fqdn() -> Result<String> {
    let short = short_hostname()?;
    Ok(canonical_name(&short).unwrap_or(short))
}

fn short_hostname() -> Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(Error::env("cannot read this host's name").because(std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn canonical_name(host: &str) -> Option<String> {
    let chost = CString::new(host).ok()?;
    // SAFETY: hints is zeroed POD; getaddrinfo allocates the result list,
    // which we free before returning.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(chost.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 || res.is_null() {
            return None;
        }
        let name = if (*res).ai_canonname.is_null() {
            None
        } else {
            Some(CStr::from_ptr((*res).ai_canonname).to_string_lossy().into_owned())
        };
        libc::freeaddrinfo(res);
        name.filter(|n| validate(n).is_ok())
    }
}

/// Checks that `name` is a valid DNS host name (RFC 1123): dot-separated
/// labels of letters, digits and hyphens, 1-63 characters each, no label
/// starting or ending with a hyphen, 253 characters at most.
pub fn validate(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::usage(format!("invalid hostname {name:?}"))
            .because(why)
            .with_hint("give a DNS name such as kts01.example.com with --hostname"))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("it has an empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// The host part of backup names: the FQDN with `.` replaced by `_`.
pub fn slug(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_hostnames() {
        for ok in ["localhost", "kts01.example.com", "a-b.c", "x1"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "bad host", "-x.com", "x-.com", "a..b", "a_b", "kts!", &"a".repeat(64)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slug_replaces_dots() {
        assert_eq!(slug("kts01.example.com"), "kts01_example_com");
    }
}
