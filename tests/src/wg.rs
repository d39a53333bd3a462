//! Standard WireGuard peers: wireguard-go or boringtun-cli in a host, configured with
//! `wg` exactly as an operator (or Kilo) would configure a kernel interface.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host::Host;
use crate::proc::Proc;
use crate::wait::wait_for;

/// A WireGuard key pair, base64 as `wg` prints it.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

impl KeyPair {
    /// `wg genkey` and `wg pubkey` (no namespace needed).
    pub fn generate() -> KeyPair {
        let private = wg_tool(&["genkey"], None);
        let public = wg_tool(&["pubkey"], Some(&private));
        KeyPair { private, public }
    }

    /// Writes the private key to a 0600 file (what `wg set … private-key` reads).
    pub fn write_private(&self, path: &Path) {
        fs::write(path, format!("{}\n", self.private))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod key file");
    }
}

fn wg_tool(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running wg (install wireguard-tools: scripts/install-deps)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("waiting for wg");
    assert!(out.status.success(), "wg {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Which userspace WireGuard implementation runs the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgImpl {
    WireguardGo,
    BoringtunCli,
}

impl WgImpl {
    pub fn name(self) -> &'static str {
        match self {
            WgImpl::WireguardGo => "wireguard-go",
            WgImpl::BoringtunCli => "boringtun-cli",
        }
    }

    /// The executable, found on PATH or (for boringtun-cli) in cargo's bin directory.
    pub fn binary(self) -> Option<PathBuf> {
        let name = self.name();
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        if let Some(home) = std::env::var_os("CARGO_HOME") {
            dirs.push(PathBuf::from(home).join("bin"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(".cargo/bin"));
        }
        dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
    }
}

/// A peer as `wg set IFACE peer …` takes it.
#[derive(Debug, Clone, Default)]
pub struct WgPeerConfig {
    pub public_key: String,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<String>,
    pub keepalive: Option<u16>,
}

/// One peer line of `wg show IFACE dump`.
#[derive(Debug, Clone, PartialEq)]
pub struct WgPeerStat {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Unix seconds of the latest handshake; 0 if none yet.
    pub latest_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A running userspace WireGuard interface with a fresh key pair.
pub struct WgDevice {
    host: Host,
    iface: String,
    keys: KeyPair,
    port: u16,
    proc: Proc,
}

impl WgDevice {
    pub fn wireguard_go(host: &Host, listen_port: u16) -> WgDevice {
        WgDevice::start(host, WgImpl::WireguardGo, listen_port)
    }

    pub fn boringtun(host: &Host, listen_port: u16) -> WgDevice {
        WgDevice::start(host, WgImpl::BoringtunCli, listen_port)
    }

    /// Starts the implementation in the foreground under a unique interface name, waits
    /// for its control socket, and sets a new private key and the listen port.
    pub fn start(host: &Host, implementation: WgImpl, listen_port: u16) -> WgDevice {
        let bin = implementation.binary().unwrap_or_else(|| {
            panic!(
                "{} not found: run scripts/install-deps{}",
                implementation.name(),
                if implementation == WgImpl::BoringtunCli {
                    " with EDGEWIRE_INSTALL_BORINGTUN=1 (or cargo install boringtun-cli --locked)"
                } else {
                    ""
                }
            )
        });
        let bin = bin.to_string_lossy().into_owned();
        let iface = host.lab.unique_wg_iface();
        let mut cmd = match implementation {
            WgImpl::WireguardGo => host.command(&[&bin, "-f", &iface]),
            WgImpl::BoringtunCli => host.command(&[
                &bin,
                "-f",
                "--disable-drop-privileges",
                "-l",
                "/dev/null",
                &iface,
            ]),
        };
        cmd.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
        let proc = host.spawn_command(&format!("{}-{iface}", implementation.name()), cmd);
        let socket = PathBuf::from(format!("/var/run/wireguard/{iface}.sock"));
        wait_for(
            &format!("{} to create {}", implementation.name(), socket.display()),
            Duration::from_secs(10),
            || {
                assert!(
                    proc.is_running(),
                    "{} exited early:\n{}",
                    implementation.name(),
                    proc.log()
                );
                (socket.exists() && host.has_iface(&iface)).then_some(())
            },
        );
        let keys = KeyPair::generate();
        let key_file = host.lab_dir().join(format!("{iface}.key"));
        keys.write_private(&key_file);
        let key_file = key_file.to_string_lossy().into_owned();
        let port = listen_port.to_string();
        host.run(&[
            "wg",
            "set",
            &iface,
            "private-key",
            &key_file,
            "listen-port",
            &port,
        ]);
        WgDevice {
            host: host.clone(),
            iface,
            keys,
            port: listen_port,
            proc,
        }
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn public_key(&self) -> &str {
        &self.keys.public
    }

    pub fn listen_port(&self) -> u16 {
        self.port
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Adds the overlay address and brings the interface up.
    pub fn address(&self, cidr: &str) {
        self.host.add_addr(&self.iface, cidr);
        self.host.link_up(&self.iface);
    }

    /// Routes `prefix` into the tunnel.
    pub fn route(&self, prefix: &str) {
        self.host.route_dev(prefix, &self.iface);
    }

    pub fn add_peer(&self, peer: &WgPeerConfig) {
        let allowed = peer.allowed_ips.join(",");
        let mut argv = vec!["wg", "set", &self.iface, "peer", &peer.public_key];
        if !allowed.is_empty() {
            argv.extend(["allowed-ips", &allowed]);
        }
        if let Some(endpoint) = &peer.endpoint {
            argv.extend(["endpoint", endpoint]);
        }
        let keepalive = peer.keepalive.map(|k| k.to_string());
        if let Some(k) = &keepalive {
            argv.extend(["persistent-keepalive", k]);
        }
        self.host.run(&argv);
    }

    /// `wg show IFACE dump`, one entry per peer.
    pub fn dump(&self) -> Vec<WgPeerStat> {
        let out = self.host.run(&["wg", "show", &self.iface, "dump"]);
        parse_dump(&out)
    }

    pub fn peer_stat(&self, public_key: &str) -> Option<WgPeerStat> {
        self.dump().into_iter().find(|p| p.public_key == public_key)
    }

    /// Waits until the peer has completed a handshake.
    pub fn wait_handshake(&self, public_key: &str, timeout: Duration) -> WgPeerStat {
        wait_for(
            &format!("a handshake on {} with {public_key}", self.iface),
            timeout,
            || {
                self.peer_stat(public_key)
                    .filter(|p| p.latest_handshake > 0)
            },
        )
    }
}

fn parse_dump(dump: &str) -> Vec<WgPeerStat> {
    // The first line is the interface itself (4 fields); peers have 8.
    dump.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == 8)
        .map(|f| WgPeerStat {
            public_key: f[0].to_owned(),
            endpoint: (f[2] != "(none)").then(|| f[2].to_owned()),
            allowed_ips: if f[3] == "(none)" {
                Vec::new()
            } else {
                f[3].split(',').map(str::to_owned).collect()
            },
            latest_handshake: f[4].parse().unwrap_or(0),
            rx_bytes: f[5].parse().unwrap_or(0),
            tx_bytes: f[6].parse().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_from_wg_show_dump_and_skips_the_interface_line() {
        let dump = "cHJpdg==\tcHViCg==\t51820\toff\n\
                    QUJD\t(none)\t198.51.100.2:40001\t10.42.1.1/32,10.42.2.0/24\t1700000000\t1234\t5678\t25\n\
                    REVG\t(none)\t(none)\t(none)\t0\t0\t0\toff\n";
        let peers = parse_dump(dump);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].endpoint.as_deref(), Some("198.51.100.2:40001"));
        assert_eq!(peers[0].allowed_ips, ["10.42.1.1/32", "10.42.2.0/24"]);
        assert_eq!(
            (
                peers[0].latest_handshake,
                peers[0].rx_bytes,
                peers[0].tx_bytes
            ),
            (1700000000, 1234, 5678)
        );
        assert_eq!(
            (peers[1].endpoint.clone(), peers[1].allowed_ips.len()),
            (None, 0)
        );
    }
}
