//! End-to-end: what the agent does with manifests it must not act on — one that does not
//! list this node, one whose signature does not verify, one signed by another network.

use std::fs;
use std::path::Path;
use std::time::Duration;

use edgewire_lab::*;

const T: Duration = Duration::from_secs(15);

/// A manifest with a hub that is not `agent`.
fn manifest_without(dir: &Path, key: &NetworkKey, name: &str, extra: Option<&Agent>) -> String {
    let stranger = KeyPair::generate();
    let mut src = ManifestSource::new("lab", 1).node(
        NodeSource::hub("hub-1", &stranger.public, "10.42.0.1/32")
            .endpoint("203.0.113.10:51820")
            .keepalive(25),
    );
    if let Some(agent) = extra {
        src = src.node(NodeSource::edge(
            agent.name(),
            agent.public_key(),
            "site-a",
            "10.42.1.1/32",
        ));
    }
    src.build(key, dir, name).to_string_lossy().into_owned()
}

/// The agent either keeps running with no peers, or has exited with a failure status.
fn assert_no_peers_up(agent: &Agent) {
    if agent.is_running() {
        let status = wait_status_answers(agent, T);
        assert!(
            status.peers.is_empty(),
            "peers came up from a refused manifest: {status:#?}"
        );
    } else {
        let code = agent.proc().exit_status().unwrap();
        assert!(
            !code.success(),
            "agent exited successfully after refusing a manifest"
        );
    }
}

#[test]
fn a_manifest_without_this_node_is_reported_with_its_key_and_the_agent_keeps_running() {
    require_root!();
    let lab = Lab::new("not-listed");
    let host = lab.host("dev");
    let mut agent = Agent::new(&host, "dev-a");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = manifest_without(lab.dir(), &key, "manifest", None);
    agent.start(&manifest, &key.public);

    let line = agent
        .wait_log("not in the manifest", T)
        .unwrap_or_else(|| panic!("no \"not in the manifest\" message; log:\n{}", agent.log()));
    assert!(
        line.contains(agent.public_key()),
        "the message should name this node's public key {}: {line}",
        agent.public_key()
    );
    assert!(agent.is_running(), "the agent exited:\n{}", agent.log());
    let status = wait_status_answers(&agent, T);
    assert!(status.peers.is_empty(), "{status:#?}");
    assert!(agent.is_running());
}

#[test]
fn a_manifest_with_a_tampered_byte_is_refused_naming_the_file_and_the_signature() {
    require_root!();
    let lab = Lab::new("tampered");
    let host = lab.host("dev");
    let mut agent = Agent::new(&host, "dev-a");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let good = manifest_without(lab.dir(), &key, "manifest", Some(&agent));
    let mut bytes = fs::read(&good).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = lab.dir().join("tampered-manifest");
    fs::write(&tampered, bytes).unwrap();
    let tampered = tampered.to_string_lossy().into_owned();
    agent.start(&tampered, &key.public);

    agent
        .wait_log_line(T, |l| l.contains("signature") && l.contains(&tampered))
        .unwrap_or_else(|| {
            panic!(
                "no log line names both the signature and {tampered}; log:
{}",
                agent.log()
            )
        });
    assert_no_peers_up(&agent);
}

#[test]
fn a_manifest_signed_with_another_network_key_is_refused_naming_the_file() {
    require_root!();
    let lab = Lab::new("other-key");
    let host = lab.host("dev");
    let mut agent = Agent::new(&host, "dev-a");
    let pinned = NetworkKey::generate(lab.dir(), "network.key");
    let other = NetworkKey::generate(lab.dir(), "other.key");
    let manifest = manifest_without(lab.dir(), &other, "manifest", Some(&agent));
    agent.start(&manifest, &pinned.public);

    agent
        .wait_log_line(T, |l| l.contains("signature") && l.contains(&manifest))
        .unwrap_or_else(|| {
            panic!(
                "no log line names both the signature and {manifest}; log:
{}",
                agent.log()
            )
        });
    assert_no_peers_up(&agent);
}
