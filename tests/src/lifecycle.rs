//! Helpers for the manifest-lifecycle tests and figures: signed manifests with fields the
//! JSON builder does not model (`expires`), Kilo's `kgctl showconf peer` INI, the flags
//! of an agent that polls an HTTPS server, a clock that looks synchronised (or not) to one
//! agent only, and counting log lines. The topologies are in [`crate::worlds`].

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::agent::edgewire_bin;
use crate::manifest::{ManifestSource, NetworkKey};
use crate::manifest_server::ManifestServer;

/// Builds and signs `src` with `edgewire manifest build`, adding top-level JSON fields
/// (`("expires", "2001-01-01T00:00:00Z")`); returns the signed bytes.
pub fn signed_manifest(
    src: &ManifestSource,
    extra: &[(&str, serde_json::Value)],
    key: &NetworkKey,
    dir: &Path,
    name: &str,
) -> Vec<u8> {
    let mut json = serde_json::to_value(src).expect("a manifest source serialises");
    for (k, v) in extra {
        json[*k] = v.clone();
    }
    let source = dir.join(format!("{name}.json"));
    let out = dir.join(name);
    fs::write(&source, serde_json::to_string_pretty(&json).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", source.display()));
    let bin = edgewire_bin();
    let run = Command::new(&bin)
        .arg("manifest")
        .arg("build")
        .arg(&source)
        .arg("--key")
        .arg(&key.path)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(
        run.status.success(),
        "edgewire manifest build {} failed: {}{}",
        source.display(),
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&run.stdout)
    );
    fs::read(&out).unwrap_or_else(|e| panic!("reading {}: {e}", out.display()))
}

/// Builds, signs and publishes `src` as `/manifest` on `server`; returns the bytes.
pub fn publish_signed(
    server: &ManifestServer,
    src: &ManifestSource,
    key: &NetworkKey,
    dir: &Path,
) -> Vec<u8> {
    let name = format!("manifest-{}", src.serial);
    let bytes = signed_manifest(src, &[], key, dir, &name);
    server.publish("manifest", &bytes);
    bytes
}

/// The flags of an agent that polls `server`'s `/NAME` over HTTPS every `interval_secs`
/// with the server's CA pinned, trusting `pubkey` (none for the wg format).
pub fn https_flags(
    server: &ManifestServer,
    name: &str,
    pubkey: Option<&str>,
    interval_secs: u32,
) -> Vec<String> {
    let mut flags = vec![
        "--manifest-url".to_owned(),
        server.https_url(name),
        "--ca-file".to_owned(),
        server.ca_file(),
        "--manifest-interval".to_owned(),
        interval_secs.to_string(),
    ];
    if let Some(key) = pubkey {
        flags.extend(["--manifest-pubkey".to_owned(), key.to_owned()]);
    }
    flags
}

/// `flags` as the `&[&str]` that [`crate::Agent::start_args`] takes.
pub fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// A command prefix that runs the agent in a private mount namespace with a tmpfs over
/// `/run`, holding systemd-timesyncd's `/run/systemd/timesync/synchronized` when
/// `synchronised` — so one agent sees a synchronised clock and the host is not touched.
/// Without it the kernel's time status (adjtimex) decides.
pub fn timesync_wrapper(synchronised: bool) -> Vec<String> {
    let flag = if synchronised {
        " && touch /run/systemd/timesync/synchronized"
    } else {
        ""
    };
    vec![
        "unshare".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mount -t tmpfs edgewire-lab-run /run && mkdir -p /run/systemd/timesync{flag} \
             && exec \"$@\""
        ),
        "sh".into(),
    ]
}

/// Whether the kernel says the host's clock is synchronised (adjtimex without
/// STA_UNSYNC): then an agent without the timesyncd flag trusts the clock too.
pub fn kernel_clock_synchronised() -> bool {
    // SAFETY: modes == 0 only reads the time status.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

/// How many lines of `log` contain `needle`.
pub fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// One `[Peer]` of Kilo's `kgctl showconf peer NAME` output.
#[derive(Debug, Clone, Default)]
pub struct KiloPeer {
    pub public_key: String,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<String>,
    /// Kilo always writes it, 0 when unset.
    pub persistent_keepalive: u16,
    pub preshared_key: Option<String>,
}

/// The INI exactly as Kilo prints it (pkg/wireguard/conf.go): only `[Peer]` sections;
/// `AllowedIPs` joined by ", ", then `Endpoint` (when known), `PersistentKeepalive`,
/// `PresharedKey` (when set) and `PublicKey` last; a blank line between peers.
pub fn kilo_showconf(peers: &[KiloPeer]) -> String {
    let sections: Vec<String> = peers
        .iter()
        .map(|p| {
            let mut s = String::from("[Peer]\n");
            s += &format!("AllowedIPs = {}\n", p.allowed_ips.join(", "));
            if let Some(e) = &p.endpoint {
                s += &format!("Endpoint = {e}\n");
            }
            s += &format!("PersistentKeepalive = {}\n", p.persistent_keepalive);
            if let Some(psk) = &p.preshared_key {
                s += &format!("PresharedKey = {psk}\n");
            }
            s += &format!("PublicKey = {}\n", p.public_key);
            s
        })
        .collect();
    sections.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kilo_ini_has_peers_only_in_kilos_key_order_with_blank_lines_between() {
        let ini = kilo_showconf(&[
            KiloPeer {
                public_key: "HUB=".into(),
                allowed_ips: vec!["10.4.0.1/32".into(), "10.42.1.0/24".into()],
                endpoint: Some("203.0.113.10:51820".into()),
                persistent_keepalive: 25,
                preshared_key: Some("PSK=".into()),
            },
            KiloPeer {
                public_key: "DEV=".into(),
                allowed_ips: vec!["10.4.0.3/32".into()],
                ..Default::default()
            },
        ]);
        assert_eq!(
            ini,
            "[Peer]\nAllowedIPs = 10.4.0.1/32, 10.42.1.0/24\nEndpoint = 203.0.113.10:51820\n\
             PersistentKeepalive = 25\nPresharedKey = PSK=\nPublicKey = HUB=\n\n\
             [Peer]\nAllowedIPs = 10.4.0.3/32\nPersistentKeepalive = 0\nPublicKey = DEV=\n"
        );
    }

    #[test]
    fn the_timesync_wrapper_adds_the_flag_only_when_asked() {
        assert!(timesync_wrapper(true)[6].contains("synchronized"));
        assert!(!timesync_wrapper(false)[6].contains("synchronized"));
    }
}
