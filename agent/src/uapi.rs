//! WireGuard's cross-platform userspace API ("UAPI"), read-only: the text `wg show`
//! and `wg showconf` read from `/var/run/wireguard/IFACE.sock`, written as
//! wireguard-go writes it (device/uapi.go), and the request parsing that decides
//! between `get=1`, a refused `set=1`, and garbage.
//!
//! What edgewire leaves out on purpose: `private_key` (the project rule: the private key
//! is never printed; so `wg show` has no "public key" line and `wg showconf` no
//! PrivateKey — `edgewire pubkey` prints the public key), and preshared keys (sent as
//! all zeros, which `wg` reads as "none"). The manifest is the source of truth, so
//! `set=1` is refused with EPERM.
//!
//! No I/O here; the shell's `control_socket.rs` moves the bytes.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::prefix::Prefix;

/// A `get=1` request is 7 bytes; a `set=1` from `wg setconf` with a few hundred peers
/// is tens of KiB. Anything longer is dropped unanswered.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The errno a refused `set=1` answers with, negative as wireguard-go sends it
/// (`wg` prints "Unable to modify interface: Operation not permitted").
pub const SET_REFUSED_ERRNO: i32 = -1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub listen_port: u16,
    pub peers: Vec<Peer>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock time of the last handshake since 1970; `None` before the first.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds; 0 when off.
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<Prefix>,
}

/// What a client asked, once enough of its bytes are in.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Not a whole request yet: read more (up to [`MAX_REQUEST`]).
    Incomplete,
    Get,
    /// A whole `set=1` request (read to its blank line, so answering does not
    /// break the client's write).
    Set,
    /// Not this protocol, or a `get=1` with trailing bytes: dropped.
    Invalid,
}

/// Judges the bytes read so far, as wireguard-go's IpcHandle does: the first line is
/// the operation; `get=1` must be followed by an empty line; `set=1` runs to one.
pub fn parse_request(buf: &[u8]) -> Request {
    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
        // Only the start of "get=1\n" or "set=1\n" is worth waiting for.
        let head = &buf[..buf.len().min(6)];
        let could_be = [&b"get=1\n"[..], b"set=1\n"]
            .iter()
            .any(|op| op.starts_with(head));
        return if could_be {
            Request::Incomplete
        } else {
            Request::Invalid
        };
    };
    match &buf[..eol] {
        b"get=1" => match buf.get(eol + 1) {
            None => Request::Incomplete,
            Some(b'\n') if buf.len() == eol + 2 => Request::Get,
            Some(_) => Request::Invalid,
        },
        b"set=1" => {
            if buf[eol..].windows(2).any(|w| w == b"\n\n") {
                Request::Set
            } else if buf.len() >= MAX_REQUEST {
                Request::Invalid
            } else {
                Request::Incomplete
            }
        }
        _ => Request::Invalid,
    }
}

/// The answer to `get=1`, ending with `errno=0` and the blank line.
pub fn render_get(device: &Device) -> String {
    let mut s = String::new();
    render_head(device, &mut s);
    for p in &device.peers {
        render_peer(p, &mut s);
    }
    render_tail(&mut s);
    s
}

/// What comes before the peers. `render_get` is the head, each peer in order, and the
/// tail: a large answer is rendered and written piece by piece (`control_socket.rs`).
pub fn render_head(device: &Device, s: &mut String) {
    // private_key is never sent (see the module doc).
    if device.listen_port != 0 {
        let _ = writeln!(s, "listen_port={}", device.listen_port);
    }
}

pub fn render_peer(p: &Peer, s: &mut String) {
    s.push_str("public_key=");
    hex(&p.public_key, s);
    s.push_str("\npreshared_key=");
    hex(&[0; 32], s);
    s.push_str("\nprotocol_version=1\n");
    if let Some(endpoint) = p.endpoint {
        let _ = writeln!(s, "endpoint={endpoint}");
    }
    let handshake = p.last_handshake.unwrap_or_default();
    let _ = writeln!(s, "last_handshake_time_sec={}", handshake.as_secs());
    let _ = writeln!(s, "last_handshake_time_nsec={}", handshake.subsec_nanos());
    let _ = writeln!(s, "tx_bytes={}", p.tx_bytes);
    let _ = writeln!(s, "rx_bytes={}", p.rx_bytes);
    let _ = writeln!(
        s,
        "persistent_keepalive_interval={}",
        p.persistent_keepalive
    );
    for ip in &p.allowed_ips {
        let _ = writeln!(s, "allowed_ip={}", ip.network());
    }
}

pub fn render_tail(s: &mut String) {
    s.push_str("errno=0\n\n");
}

pub fn render_set_refused() -> String {
    format!("errno={SET_REFUSED_ERRNO}\n\n")
}

/// Lowercase hex, two digits a byte. By table rather than `write!` per byte: two keys
/// a peer, 10,000 peers, and the formatter's per-call cost was most of the answer's.
fn hex(bytes: &[u8; 32], s: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device {
            listen_port: 51820,
            peers: vec![
                Peer {
                    public_key: [0x11; 32],
                    endpoint: Some("203.0.113.10:51820".parse().unwrap()),
                    last_handshake: Some(Duration::new(1_764_400_000, 250)),
                    rx_bytes: 1536,
                    tx_bytes: 2048,
                    persistent_keepalive: 25,
                    allowed_ips: vec![
                        "10.42.0.1/32".parse().unwrap(),
                        "10.42.0.9/16".parse().unwrap(),
                    ],
                },
                Peer {
                    public_key: [0x22; 32],
                    endpoint: Some("[2001:db8::2]:51820".parse().unwrap()),
                    ..Peer::default()
                },
            ],
        }
    }

    #[test]
    fn get_is_answered_in_wireguard_gos_order_without_the_private_key() {
        let text = render_get(&device());
        let expected = format!(
            "listen_port=51820\n\
             public_key={k1}\npreshared_key={z}\nprotocol_version=1\n\
             endpoint=203.0.113.10:51820\n\
             last_handshake_time_sec=1764400000\nlast_handshake_time_nsec=250\n\
             tx_bytes=2048\nrx_bytes=1536\npersistent_keepalive_interval=25\n\
             allowed_ip=10.42.0.1/32\nallowed_ip=10.42.0.0/16\n\
             public_key={k2}\npreshared_key={z}\nprotocol_version=1\n\
             endpoint=[2001:db8::2]:51820\n\
             last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
             tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n\
             errno=0\n\n",
            k1 = "11".repeat(32),
            k2 = "22".repeat(32),
            z = "00".repeat(32),
        );
        assert_eq!(text, expected);
        assert!(!text.contains("private_key"));
    }

    #[test]
    fn head_peers_and_tail_rendered_apart_are_the_whole_answer() {
        let d = device();
        let mut pieces = String::new();
        render_head(&d, &mut pieces);
        for p in &d.peers {
            render_peer(p, &mut pieces);
        }
        render_tail(&mut pieces);
        assert_eq!(pieces, render_get(&d));
        let mut key = String::new();
        hex(&[0xa5; 32], &mut key);
        assert_eq!(key, "a5".repeat(32));
    }

    #[test]
    fn requests_are_get_set_incomplete_or_dropped() {
        assert_eq!(parse_request(b""), Request::Incomplete);
        assert_eq!(parse_request(b"ge"), Request::Incomplete);
        assert_eq!(parse_request(b"get=1\n"), Request::Incomplete);
        assert_eq!(parse_request(b"get=1\n\n"), Request::Get);
        assert_eq!(parse_request(b"get=1\nx"), Request::Invalid);
        assert_eq!(parse_request(b"get=1\n\nmore"), Request::Invalid);
        assert_eq!(
            parse_request(b"set=1\nlisten_port=1\n"),
            Request::Incomplete
        );
        assert_eq!(parse_request(b"set=1\nlisten_port=1\n\n"), Request::Set);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Request::Invalid);
        assert_eq!(parse_request(b"\x00\x01\x02"), Request::Invalid);
        assert_eq!(parse_request(b"hello\n"), Request::Invalid);
    }

    #[test]
    fn a_huge_line_is_dropped_at_the_limit() {
        let mut set = b"set=1\n".to_vec();
        set.resize(MAX_REQUEST, b'a');
        assert_eq!(parse_request(&set), Request::Invalid);
        set.truncate(MAX_REQUEST - 1);
        assert_eq!(parse_request(&set), Request::Incomplete);
        let no_newline = vec![b's'; 3];
        assert_eq!(parse_request(&no_newline), Request::Invalid);
    }

    #[test]
    fn a_refused_set_reads_as_eperm_to_wg() {
        assert_eq!(render_set_refused(), "errno=-1\n\n");
    }
}
