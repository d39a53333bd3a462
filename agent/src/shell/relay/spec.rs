//! The relays of the manifest as the agent runs them: one per TURN server host, with the
//! transports listed for it in the manifest's order (`turn:H:3478?transport=udp`,
//! `turn:H:3478?transport=tcp`, `turns:H:443` become one relay that tries UDP, then TCP,
//! then TLS).

use crate::core::RelayId;
use crate::manifest::{RelaySpec as ManifestRelay, Transport, parse_relay_url};

use super::link::Kind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySpec {
    pub id: RelayId,
    /// The server's name or address, as the manifest gives it (and TLS checks).
    pub host: String,
    pub candidates: Vec<Candidate>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub kind: Kind,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl RelaySpec {
    /// `HOST:PORT` of a candidate, for logs and `status`.
    pub fn describe(&self, candidate: &Candidate) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, candidate.port)
        } else {
            format!("{}:{}", self.host, candidate.port)
        }
    }
}

/// Groups the manifest's relay URLs by host, in order of first appearance. A URL that
/// does not parse was refused when the manifest was validated; it is skipped here.
pub fn group(relays: &[ManifestRelay]) -> Vec<RelaySpec> {
    let mut specs: Vec<RelaySpec> = Vec::new();
    for relay in relays {
        let Ok(url) = parse_relay_url(&relay.url) else {
            continue;
        };
        let candidate = Candidate {
            kind: match url.transport {
                Transport::Udp => Kind::Udp,
                Transport::Tcp => Kind::Tcp,
                Transport::Tls => Kind::Tls,
            },
            port: url.port,
            username: relay.username.clone(),
            password: relay.password.clone(),
        };
        let host = url.host.to_string();
        match specs.iter_mut().find(|s| s.host == host) {
            Some(spec) => spec.candidates.push(candidate),
            None => specs.push(RelaySpec {
                id: specs.len() as RelayId,
                host,
                candidates: vec![candidate],
            }),
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(url: &str) -> ManifestRelay {
        ManifestRelay {
            url: url.into(),
            username: "u".into(),
            password: "p".into(),
        }
    }

    #[test]
    fn urls_of_one_host_become_one_relay_with_its_transports_in_order() {
        let specs = group(&[
            relay("turn:198.51.100.1:3478?transport=udp"),
            relay("turn:relay-2.example:3478?transport=udp"),
            relay("turn:198.51.100.1:3478?transport=tcp"),
            relay("turns:198.51.100.1:443"),
        ]);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id, 0);
        assert_eq!(specs[0].host, "198.51.100.1");
        let kinds: Vec<(Kind, u16)> = specs[0]
            .candidates
            .iter()
            .map(|c| (c.kind, c.port))
            .collect();
        assert_eq!(
            kinds,
            [(Kind::Udp, 3478), (Kind::Tcp, 3478), (Kind::Tls, 443)]
        );
        assert_eq!(specs[1].host, "relay-2.example");
        assert_eq!(
            specs[0].describe(&specs[0].candidates[2]),
            "198.51.100.1:443"
        );
    }
}
