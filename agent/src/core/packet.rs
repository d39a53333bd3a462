//! The few fields of an IP packet the core routes by: version, source and destination.
//! Checked for length up front, so nothing here can panic on what a peer sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an IPv4 or IPv6 packet, or `None` when the bytes are too
/// short or not IP at all.
pub fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet[12..16].try_into().ok()?;
            let dst: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet[8..24].try_into().ok()?;
            let dst: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

/// A minimal IPv4 packet for tests: header only, with the given addresses.
#[cfg(test)]
pub fn ipv4_for_test(src: [u8; 4], dst: [u8; 4], payload_len: usize) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ipv4_addresses() {
        let p = ipv4_for_test([10, 42, 1, 1], [10, 42, 0, 1], 8);
        assert_eq!(
            addresses(&p),
            Some(("10.42.1.1".parse().unwrap(), "10.42.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn refuses_short_and_non_ip_bytes() {
        assert_eq!(addresses(&[]), None);
        assert_eq!(addresses(&[0x45; 19]), None);
        assert_eq!(addresses(&[0x60; 39]), None);
        assert_eq!(addresses(&[0x10; 60]), None);
    }
}
