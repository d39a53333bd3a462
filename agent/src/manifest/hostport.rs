//! The text forms of where things are: peer endpoints (`HOST:PORT`) and TURN relay URLs
//! (RFC 7065). Parsed here once, so validation, the shell's resolver and the relay code
//! agree on what is well-formed.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A host as written in a manifest: an address, or a DNS name resolved (and re-resolved)
/// by the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// How the agent reaches a TURN server. The allocation itself is always UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS (`turns:`), for networks that only let HTTPS-looking traffic out.
    Tls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayUrl {
    pub host: Host,
    pub port: u16,
    pub transport: Transport,
}

/// Parses `HOST:PORT` where HOST is an IPv4 address, `[IPv6]`, or a DNS name.
pub fn parse_endpoint(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = split_host_port(text)?;
    let port = port.ok_or_else(|| {
        format!("{text:?} has no port: write HOST:PORT such as 203.0.113.10:51820")
    })?;
    Ok((host, port))
}

/// Parses `turn:HOST[:PORT][?transport=udp|tcp]` or `turns:HOST[:PORT][?transport=tcp]`;
/// without a port, 3478 and 5349 (RFC 8656).
pub fn parse_relay_url(text: &str) -> Result<RelayUrl, String> {
    let expected = "expected turn:HOST:PORT?transport=udp|tcp or turns:HOST:PORT";
    let (secure, rest) = if let Some(rest) = text.strip_prefix("turns:") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("turn:") {
        (false, rest)
    } else {
        return Err(format!("{text:?}: {expected}"));
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((hostport, query)) => (hostport, Some(query)),
        None => (rest, None),
    };
    let transport = match (secure, query) {
        (false, None | Some("transport=udp")) => Transport::Udp,
        (false, Some("transport=tcp")) => Transport::Tcp,
        (true, None | Some("transport=tcp")) => Transport::Tls,
        (true, Some("transport=udp")) => {
            return Err(format!(
                "{text:?}: TURN over DTLS is not supported; \
                 use turn: with transport=udp, or turns: over TCP"
            ));
        }
        (_, Some(query)) => {
            return Err(format!("{text:?}: unknown parameter {query:?}; {expected}"));
        }
    };
    let (host, port) = split_host_port(hostport).map_err(|e| format!("{text:?}: {e}"))?;
    let port = port.unwrap_or(if secure { 5349 } else { 3478 });
    Ok(RelayUrl {
        host,
        port,
        transport,
    })
}

fn split_host_port(text: &str) -> Result<(Host, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: missing ']' after the IPv6 address"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{text:?}: {ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{text:?}: expected ':' after ']'"))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        if text.parse::<Ipv6Addr>().is_ok() || text.matches(':').count() > 1 {
            return Err(format!(
                "{text:?}: put an IPv6 address in brackets, as [2001:db8::1]:51820"
            ));
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        (
            parse_host(host).map_err(|e| format!("{text:?}: {e}"))?,
            port,
        )
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                return Err(format!(
                    "{text:?}: port {port:?} is not a number from 1 to 65535"
                ));
            }
        },
    };
    Ok((host, port))
}

/// An IPv4 address or a DNS name (RFC 1123 labels). All-numeric names are refused:
/// they are mistyped addresses (`10.0.0.256`), not hosts.
fn parse_host(host: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) || numeric {
        return Err(format!("{host:?} is not an IP address or a DNS name"));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_may_be_ipv4_bracketed_ipv6_or_dns_names() {
        assert_eq!(parse_endpoint("203.0.113.10:51820").unwrap().1, 51820);
        let (host, port) = parse_endpoint("[2001:db8::1]:51820").unwrap();
        assert_eq!(
            (host.to_string(), port),
            ("[2001:db8::1]".to_string(), 51820)
        );
        assert_eq!(
            parse_endpoint("Hub-1.example.com:443").unwrap().0,
            Host::Name("hub-1.example.com".into())
        );
    }

    #[test]
    fn endpoints_without_a_valid_port_or_host_are_refused() {
        for bad in [
            "203.0.113.10",
            "203.0.113.10:0",
            "203.0.113.10:65536",
            "2001:db8::1:51820",
            "[2001:db8::1]",
            "[2001:db8::1]51820",
            "10.0.0.256:51820",
            "under_score.example:1",
            "-bad.example:1",
            ":51820",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relay_urls_default_their_port_by_scheme() {
        let udp = parse_relay_url("turn:198.51.100.1:3478?transport=udp").unwrap();
        assert_eq!((udp.port, udp.transport), (3478, Transport::Udp));
        let tcp = parse_relay_url("turn:relay.example?transport=tcp").unwrap();
        assert_eq!((tcp.port, tcp.transport), (3478, Transport::Tcp));
        let tls = parse_relay_url("turns:relay.example").unwrap();
        assert_eq!((tls.port, tls.transport), (5349, Transport::Tls));
        assert_eq!(
            parse_relay_url("turns:[2001:db8::2]:443").unwrap().port,
            443
        );
    }

    #[test]
    fn relay_urls_with_other_schemes_or_parameters_are_refused() {
        for bad in [
            "stun:198.51.100.1:3478",
            "turn://198.51.100.1:3478",
            "turn:198.51.100.1:3478?transport=sctp",
            "turns:198.51.100.1?transport=udp",
            "turn:198.51.100.1:99999",
            "198.51.100.1:3478",
        ] {
            assert!(parse_relay_url(bad).is_err(), "{bad}");
        }
    }
}
