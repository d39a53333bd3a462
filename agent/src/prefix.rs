//! IP prefixes (`10.42.0.0/16`, `fd00::1/128`): the unit of allowed IPs, routes and
//! interface addresses. Parsed once from text; the host bits are kept as written so an
//! interface address (`10.42.1.1/24`) survives, and `network()` masks them for routing.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with a prefix length. `len` is at most 32 for IPv4 and 128 for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IP prefix: expected ADDRESS/LENGTH such as 10.42.0.0/16")]
    Syntax(String),
    #[error("{0:?}: prefix length {1} is longer than the address ({2} bits)")]
    Length(String, u8, u8),
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::Length(addr.to_string(), len, max));
        }
        Ok(Prefix { addr, len })
    }

    /// The prefix that holds exactly one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Prefix {
            addr,
            len: max_len(addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits (not a collection length, so no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same prefix with the host bits cleared.
    pub fn network(&self) -> Prefix {
        Prefix {
            addr: mask(self.addr, self.len),
            len: self.len,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == mask(self.addr, self.len)
    }

    /// True when every address of `other` is inside `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::from(std::net::Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::from(std::net::Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `ADDRESS/LENGTH`; a bare address is taken as a host prefix.
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_string());
        match s.split_once('/') {
            Some((addr, len)) => {
                let addr: IpAddr = addr.trim().parse().map_err(|_| syntax())?;
                let len: u8 = len.trim().parse().map_err(|_| syntax())?;
                Prefix::new(addr, len)
                    .map_err(|_| PrefixError::Length(s.to_string(), len, max_len(addr)))
            }
            None => s.trim().parse().map(Prefix::host).map_err(|_| syntax()),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Text (`"10.42.0.0/16"`) in JSON; address and length in postcard.
impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            (self.addr, self.len).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (addr, len) = <(IpAddr, u8)>::deserialize(d)?;
            Prefix::new(addr, len).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_v4_and_v6() {
        assert_eq!(
            "10.42.0.0/16".parse::<Prefix>().unwrap().to_string(),
            "10.42.0.0/16"
        );
        assert_eq!(
            "fd00::1/128".parse::<Prefix>().unwrap().to_string(),
            "fd00::1/128"
        );
        assert_eq!("10.42.1.1".parse::<Prefix>().unwrap().len(), 32);
    }

    #[test]
    fn rejects_lengths_past_the_address_and_junk() {
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length(..))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<Prefix>(),
            Err(PrefixError::Syntax(..))
        ));
        assert!("fd00::/129".parse::<Prefix>().is_err());
    }

    #[test]
    fn contains_masks_host_bits_and_keeps_families_apart() {
        let p: Prefix = "10.42.1.7/16".parse().unwrap();
        assert!(p.contains("10.42.200.1".parse().unwrap()));
        assert!(!p.contains("10.43.0.1".parse().unwrap()));
        assert!(!p.contains("::ffff:10.42.0.1".parse().unwrap()));
        assert_eq!(p.network().to_string(), "10.42.0.0/16");
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert!(all.covers(&p));
        assert!(!p.covers(&all));
    }
}
