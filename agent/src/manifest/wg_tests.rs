//! Kilo's INI, golden: `testdata/kilo-peer.conf` is laid out exactly as
//! `kgctl showconf peer` prints it (two location leaders with endpoints and the shown
//! peer's preshared key, one other Peer without an endpoint).

use super::*;
use crate::core::topology;

const KILO: &str = include_str!("testdata/kilo-peer.conf");
const OWN: &str = "+9FR5rcSXnU3aLEDWGm0KQK5fpRQcPlorzYLaoGr7CQ=";
const LEADER_A: &str = "AumYZhwBILIU9U9agpELCZLxuRfjVKNuozOJ9V7xlJc=";
const LEADER_B: &str = "UfEWPIOrAwdFUwPb9hGZ7Ae9NLP+Vv0eVPvPdRWV1Uk=";
const OTHER: &str = "YBbJDIbwRK/z12Y5uaGZEg8S9dvDCmZ5sV5nYVe2x/s=";

fn key(text: &str) -> PublicKey {
    text.parse().unwrap()
}

fn prefixes(list: &[&str]) -> Vec<Prefix> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

fn kilo() -> Manifest {
    from_wg(KILO, key(OWN), "10.4.0.99/16".parse().unwrap()).unwrap()
}

fn error_of(text: &str) -> String {
    from_wg(text, key(OWN), "10.4.0.99/16".parse().unwrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn kilo_showconf_output_reads_as_three_peers_in_order() {
    let peers = parse_wg(KILO).unwrap();
    let psk = BASE64
        .decode("YBfS2HylAphyc4XrMGXNN5G3IRl5/901nKXMeHyVYEY=")
        .unwrap();
    assert_eq!(
        peers[0],
        WgPeer {
            line: 1,
            public_key: key(LEADER_A),
            allowed_ips: prefixes(&["10.2.0.0/24", "10.4.0.1/32", "192.168.0.10/32"]),
            endpoint: Some("203.0.113.10:51820".into()),
            keepalive: 25,
            preshared_key: Some(psk.try_into().unwrap()),
        }
    );
    assert_eq!(
        peers[1].endpoint.as_deref(),
        Some("kilo-b.example.com:51820")
    );
    assert_eq!((peers[2].line, peers[2].endpoint.clone()), (15, None));
    assert_eq!(peers[2].preshared_key, None);
}

#[test]
fn leaders_become_hubs_other_peers_edges_and_this_device_an_edge_at_its_address() {
    let m = kilo();
    assert_eq!((m.network.as_str(), m.serial), (NETWORK, NO_SERIAL));
    assert_eq!(m.overlay, "10.4.0.0/16".parse().unwrap());
    let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hub-AumYZhwB",
            "hub-UfEWPIOr",
            "peer-YBbJDIbw",
            "edge-+9FR5rcS"
        ]
    );
    let a = &m.nodes[0];
    assert_eq!(a.role, Role::Hub);
    assert_eq!(a.site, None);
    assert_eq!(a.addresses, prefixes(&["10.4.0.1/32"]));
    assert_eq!(a.allowed_ips, prefixes(&["10.2.0.0/24", "192.168.0.10/32"]));
    assert_eq!(a.keepalive, Some(25));
    assert!(a.preshared_key.is_some());
    let other = &m.nodes[2];
    assert_eq!(
        (other.role, other.site.as_deref()),
        (Role::Edge, Some(SITE))
    );
    assert_eq!(other.addresses, prefixes(&["10.4.0.100/32"]));
    assert!(other.endpoints.is_empty() && other.preshared_key.is_none());
    let me = m.node(&key(OWN)).unwrap();
    assert_eq!((me.role, me.site.as_deref()), (Role::Edge, Some(SITE)));
    assert_eq!(me.addresses, prefixes(&["10.4.0.99/32"]));
}

#[test]
fn this_device_peers_with_every_kilo_peer_as_kilo_configures_it() {
    let t = topology::plan(&kilo(), &key(OWN)).unwrap();
    assert_eq!(t.addresses, prefixes(&["10.4.0.99/32"]));
    let peers: Vec<PublicKey> = t.peers.keys().copied().collect();
    for k in [LEADER_A, LEADER_B, OTHER] {
        assert!(peers.contains(&key(k)), "{k}");
    }
    // The overlay goes through the leaders, in the order Kilo lists them.
    let overlay = t.overlay.unwrap();
    assert_eq!(overlay.prefix, "10.4.0.0/16".parse().unwrap());
    assert_eq!(overlay.via, vec![key(LEADER_A), key(LEADER_B)]);
    let a = &t.peers[&key(LEADER_A)];
    assert_eq!(
        t.peers[&key(LEADER_B)].allowed_ips,
        prefixes(&["10.4.0.2/32", "10.2.1.0/24"])
    );
    assert_eq!(a.preshared_key, t.peers[&key(LEADER_B)].preshared_key);
    assert_eq!(t.peers[&key(OTHER)].preshared_key, None);
}

#[test]
fn keepalive_zero_means_unset_so_edges_keep_their_default_toward_hubs() {
    let text = KILO.replace("PersistentKeepalive = 25", "PersistentKeepalive = 0");
    let m = from_wg(&text, key(OWN), "10.4.0.99/16".parse().unwrap()).unwrap();
    assert!(m.nodes.iter().all(|n| n.keepalive.is_none()));
    let t = topology::plan(&m, &key(OWN)).unwrap();
    assert_eq!(
        t.peers[&key(LEADER_A)].keepalive,
        Some(topology::DEFAULT_EDGE_TO_HUB_KEEPALIVE)
    );
    assert_eq!(t.peers[&key(OTHER)].keepalive, None);
}

#[test]
fn comments_case_spacing_and_ipv6_endpoints_are_accepted() {
    let text = format!(
        "# from kgctl\n[ peer ]\n  publickey=  {LEADER_A}   # leader\nALLOWEDIPS = 10.4.0.1/32,10.2.0.0/24\n\
         endpoint = [2001:db8::1]:51820\n\n\n[PEER]\nPublicKey = {OTHER}\nAllowedIPs = fd00::5/128\n\
         AllowedIPs = 10.4.0.100/32\n"
    );
    let peers = parse_wg(&text).unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].endpoint.as_deref(), Some("[2001:db8::1]:51820"));
    assert_eq!(peers[0].keepalive, 0);
    assert_eq!(
        peers[1].allowed_ips,
        prefixes(&["fd00::5/128", "10.4.0.100/32"])
    );
    assert!(from_wg(&text, key(OWN), "10.4.0.99/16".parse().unwrap()).is_ok());
}

#[test]
fn an_interface_section_is_refused_saying_the_key_stays_on_the_device() {
    let err = error_of(&format!("[Interface]\nPrivateKey = {OTHER}\n\n{KILO}"));
    assert!(err.starts_with("line 1: an [Interface] section"), "{err}");
    assert!(err.contains("private key stays on the device"), "{err}");
    assert!(!err.contains(OTHER), "{err}");
}

#[test]
fn broken_lines_are_named_by_number() {
    let err = error_of(&KILO.replace("Endpoint = 203.0.113.10:51820", "Endpoint = 203.0.113.10"));
    assert!(
        err.starts_with("line 3: Endpoint: \"203.0.113.10\" has no port"),
        "{err}"
    );
    let err = error_of(&KILO.replace("10.2.1.0/24", "10.2.1.0/33"));
    assert!(
        err.starts_with("line 9: AllowedIPs: \"10.2.1.0/33\""),
        "{err}"
    );
    let err = error_of(&KILO.replace("PersistentKeepalive = 25", "PersistentKeepalive = soon"));
    assert!(err.starts_with("line 4: PersistentKeepalive"), "{err}");
    let err = error_of(&KILO.replace("Endpoint =", "Endpoitn ="));
    assert!(err.starts_with("line 3: unknown key \"Endpoitn\""), "{err}");
    let err = error_of(&format!("PublicKey = {OTHER}\n{KILO}"));
    assert!(
        err.starts_with("line 1: a setting before the first [Peer]"),
        "{err}"
    );
    let err = error_of(&KILO.replace(&format!("PublicKey = {OTHER}"), "AllowedIPs = 10.9.0.0/24"));
    assert!(
        err.starts_with("line 15: this [Peer] has no PublicKey"),
        "{err}"
    );
    assert!(error_of("").contains("no [Peer] section"));
}

#[test]
fn a_bad_preshared_key_is_refused_without_echoing_it() {
    let err = error_of(&KILO.replace("YBfS2HylAphyc4XrMGXNN5G3IRl5/901nKXMeHyVYEY=", "c2VjcmV0"));
    assert!(err.starts_with("line 5: PresharedKey"), "{err}");
    assert!(!err.contains("c2VjcmV0"), "{err}");
}

#[test]
fn the_configuration_of_another_peer_is_recognised_by_its_own_key() {
    let err = from_wg(KILO, key(OTHER), "10.4.0.99/16".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("line 15: this [Peer] has this device's own public key"),
        "{err}"
    );
}

#[test]
fn an_address_claimed_by_a_peer_is_refused_by_validation() {
    let err = from_wg(KILO, key(OWN), "10.4.0.100/16".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"10.4.0.100/32\" is also claimed"), "{err}");
}
