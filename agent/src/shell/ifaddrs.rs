//! The addresses of this device's own interfaces (not the overlay's TUN, not loopback):
//! the host candidates a punched path may use, and what tells the core that an uplink
//! came or went.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every address on an interface that is up, except `skip` (our TUN device), loopback
/// and link-local ones (a link-local address needs a scope no candidate carries).
pub fn host_addresses(skip: &str) -> Vec<IpAddr> {
    let mut all = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return all;
    }
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() == skip.as_bytes() {
            continue;
        }
        // SAFETY: the family says which sockaddr the pointer holds.
        let ip = match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
        if !ip.is_loopback() && !link_local && !all.contains(&ip) {
            all.push(ip);
        }
    }
    // SAFETY: freed once, after the last use of the list.
    unsafe { libc::freeifaddrs(head) };
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_never_a_candidate() {
        let all = host_addresses("ew-none");
        assert!(all.iter().all(|ip| !ip.is_loopback()), "{all:?}");
    }
}
