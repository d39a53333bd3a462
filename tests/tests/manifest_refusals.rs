//! End-to-end: manifests from the HTTPS server that the device must not put in
//! force — signed by another network, a rollback, the same serial with other content,
//! expired while the clock is known to be right — are refused with a message that says
//! why, once, and the last good manifest stays. An expired manifest on a device whose
//! clock is not synchronised is accepted with a warning (boards boot in 1970).
//!
//! "Synchronised" is systemd-timesyncd's flag file, given to one agent only: it runs in a
//! private mount namespace with a tmpfs over /run (`lifecycle::timesync_wrapper`).

use std::time::Duration;

use edgewire_lab::lifecycle::*;
use edgewire_lab::worlds::*;
use edgewire_lab::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);
const PAST: &str = "2001-01-01T00:00:00Z";
const FUTURE: &str = "2100-01-01T00:00:00Z";

fn serial_of(agent: &Agent) -> Option<u64> {
    agent.status().ok()?.manifest.map(|m| m.serial)
}

/// `src` with a node the device would peer with if it took the manifest.
fn with_intruder(src: ManifestSource) -> ManifestSource {
    let intruder = KeyPair::generate();
    src.node(
        NodeSource::hub("intruder", &intruder.public, "10.42.0.66/32").endpoint("192.0.2.66:51820"),
    )
}

/// Starts dev-a in its own mount namespace, seeing the clock as synchronised or not.
fn start_dev_with_clock(w: &mut OneHub, synchronised: bool) {
    let wrapper = timesync_wrapper(synchronised);
    let flags = https_flags(&w.server, "manifest", Some(&w.key.public), 1);
    w.dev.start_args(&as_strs(&wrapper), &as_strs(&flags));
}

#[test]
fn untrusted_manifests_are_refused_each_with_one_clear_message_and_the_last_good_one_stays() {
    require_root!();
    let lab = Lab::new("refusals");
    let mut w = OneHub::new(&lab, None);
    let good = w.source(5);
    w.publish(&good);
    w.start_hub(&good);
    start_dev_with_clock(&mut w, true);
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    wait_for("serial 5 in force", T, || {
        (serial_of(&w.dev) == Some(5)).then_some(())
    });
    let url = w.server.https_url("manifest");
    let other_key = NetworkKey::generate(lab.dir(), "other-network.key");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "signed by another network",
            signed_manifest(
                &with_intruder(w.source(6)),
                &[],
                &other_key,
                lab.dir(),
                "m-other",
            ),
            "signature is not valid",
        ),
        (
            "a lower serial",
            signed_manifest(
                &with_intruder(w.source(4)),
                &[],
                &w.key,
                lab.dir(),
                "m-lower",
            ),
            "manifest serial 4 is lower than serial 5, already accepted: refusing a rollback",
        ),
        (
            "the same serial with other content",
            signed_manifest(
                &with_intruder(w.source(5)),
                &[],
                &w.key,
                lab.dir(),
                "m-same",
            ),
            "manifest serial 5 was already accepted with other content",
        ),
        (
            "expired, with the clock synchronised",
            signed_manifest(
                &with_intruder(w.source(7)),
                &[("expires", json!(PAST))],
                &w.key,
                lab.dir(),
                "m-expired",
            ),
            "manifest serial 7 expired at 2001-01-01T00:00:00Z and the clock is synchronised",
        ),
    ];
    for (what, bytes, message) in &cases {
        let polls = w.server.access_log().len();
        w.server.publish("manifest", bytes);
        let line = w
            .dev
            .wait_log(message, T)
            .unwrap_or_else(|| panic!("{what}: no {message:?} in the log:\n{}", w.dev.log()));
        assert!(
            line.contains(&format!("refusing the manifest from {url}")),
            "{what}: the refusal should name the URL: {line}"
        );
        // Several more polls of the same bytes (304s): still one line.
        wait_for(&format!("{what}: three more polls"), T, || {
            (w.server.access_log().len() >= polls + 4).then_some(())
        });
        let log = w.dev.log();
        assert_eq!(count_lines(&log, message), 1, "{what}:\n{log}");
        let status = w.dev.status().unwrap();
        assert_eq!(
            status.manifest.as_ref().map(|m| m.serial),
            Some(5),
            "{what}: {status:#?}"
        );
        assert_eq!(status.peer_names(), ["hub-1"], "{what}: {status:#?}");
        w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    }
    // The signature message says what to check.
    assert!(w.dev.log().contains("check --manifest-pubkey"));

    // Still open to a good one: a higher serial that expires in the future.
    let next = signed_manifest(
        &w.source(8),
        &[("expires", json!(FUTURE))],
        &w.key,
        lab.dir(),
        "m-next",
    );
    w.server.publish("manifest", &next);
    wait_for("serial 8 in force", T, || {
        (serial_of(&w.dev) == Some(8)).then_some(())
    });
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
}

#[test]
fn an_expired_manifest_is_accepted_with_a_warning_when_the_clock_is_not_synchronised() {
    require_root!();
    if kernel_clock_synchronised() {
        eprintln!(
            "SKIPPED: this host's kernel reports its clock synchronised (adjtimex), so an \
             agent here always trusts the clock"
        );
        return;
    }
    let lab = Lab::new("expired-unsynced");
    let mut w = OneHub::new(&lab, None);
    let src = w.source(1);
    let bytes = signed_manifest(&src, &[("expires", json!(PAST))], &w.key, lab.dir(), "m-1");
    w.server.publish("manifest", &bytes);
    w.start_hub(&src);
    start_dev_with_clock(&mut w, false);

    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert_eq!(serial_of(&w.dev), Some(1));
    let log = w.dev.log();
    let warning = log
        .lines()
        .find(|l| l.contains("manifest serial 1 expired at 2001-01-01T00:00:00Z"))
        .unwrap_or_else(|| panic!("no expiry warning:\n{log}"));
    assert!(
        warning.starts_with("WARN") && warning.contains("expiry not enforced"),
        "{warning}"
    );
    assert!(
        warning.contains("not synchronised"),
        "the warning should say why: {warning}"
    );
}
