//! End-to-end: a device pulling its manifest from a real HTTPS server (nginx,
//! with a CA made for the test and pinned with --ca-file) — booting from its cache when
//! the server is down, keeping the last good manifest while the server misbehaves (and
//! saying so once per change, not once per poll), and a bearer token.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use edgewire_lab::lifecycle::*;
use edgewire_lab::netns::stalled_tcp_server;
use edgewire_lab::worlds::*;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

/// The manifest in force on `agent` has `serial`.
fn assert_serial(agent: &Agent, serial: u64) {
    let status = agent.status().unwrap_or_else(|e| panic!("{e}"));
    let got = status.manifest.as_ref().map(|m| m.serial);
    assert_eq!(got, Some(serial), "{}: {status:#?}", agent.name());
}

fn wait_serial(agent: &Agent, serial: u64) -> Status {
    agent.wait_status(&format!("manifest serial {serial}"), T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == serial)
    })
}

/// dev-a and hub-1 up on serial 1, the overlay answering.
fn running(lab: &Lab, token: Option<&str>, dev_flags: &[&str]) -> OneHub {
    let mut w = OneHub::new(lab, token);
    let src = w.source(1);
    w.publish(&src);
    w.start_hub(&src);
    w.start_dev(dev_flags);
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    wait_serial(&w.dev, 1);
    w
}

#[test]
fn with_the_server_down_at_boot_the_device_comes_up_from_its_cached_manifest() {
    require_root!();
    let lab = Lab::new("cache-boot");
    let mut w = running(&lab, None, &[]);
    let cache = w.dev.state_dir().join("manifest.cache");
    wait_for("the manifest cache to be written", T, || {
        cache.is_file().then_some(())
    });
    w.dev.stop();
    w.server.stop();
    // Really down: nothing listens on 443 any more.
    let refused = edgewire_lab::netns::in_netns(&w.dev_host, || {
        TcpStream::connect_timeout(
            &format!("{SERVER_ADDR}:443").parse().unwrap(),
            Duration::from_secs(2),
        )
        .is_err()
    });
    assert!(refused, "the manifest server still accepts connections");

    w.start_dev(&[]);
    let line = w
        .dev
        .wait_log("starting from the cached manifest", T)
        .unwrap_or_else(|| panic!("no start from the cache logged:\n{}", w.dev.log()));
    assert!(
        line.contains(&cache.display().to_string()) && line.contains("serial 1"),
        "the line should name the cache file and its serial: {line}"
    );
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    w.hub.wait_handshakes(&["dev-a"], T);
    assert_serial(&w.dev, 1);
    let url = w.server.https_url("manifest");
    let error = w
        .dev
        .wait_log_line(T, |l| l.contains("cannot reach the manifest server"))
        .unwrap_or_else(|| panic!("the unreachable server is not logged:\n{}", w.dev.log()));
    assert!(
        error.contains(&url) && error.contains("keeping the manifest in force"),
        "{error}"
    );
}

#[test]
fn while_the_server_answers_500_garbage_or_too_much_the_manifest_stays_and_each_error_is_logged_once()
 {
    require_root!();
    let lab = Lab::new("server-errors");
    let w = running(&lab, None, &[]);
    let url = w.server.https_url("manifest");
    let requests = |w: &OneHub| w.server.access_log().len();

    // HTTP 500: retried with backoff, logged once.
    w.server.answer_500(true);
    wait_for("three polls answered 500", T, || {
        (w.server.count("manifest", 500) >= 3).then_some(())
    });
    let log = w.dev.log();
    assert_eq!(
        count_lines(&log, "answered HTTP 500"),
        1,
        "one line for three polls answered 500:\n{log}"
    );
    assert!(log.contains(&format!("the manifest server {url} answered HTTP 500")));
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert_serial(&w.dev, 1);

    // Garbage with 200: refused once; nginx then answers the agent's ETag with 304.
    let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    w.server.publish("manifest", &garbage);
    w.server.answer_500(false);
    w.dev
        .wait_log("not an edgewire manifest", T)
        .unwrap_or_else(|| panic!("garbage not refused:\n{}", w.dev.log()));
    let seen = requests(&w);
    wait_for("three more polls of the garbage", T, || {
        (requests(&w) >= seen + 3).then_some(())
    });
    let log = w.dev.log();
    assert_eq!(count_lines(&log, "not an edgewire manifest"), 1, "{log}");
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert_serial(&w.dev, 1);

    // Over the 4 MiB cap: refused from the Content-Length, logged once.
    w.server
        .publish("manifest", &vec![0x45u8; 4 * 1024 * 1024 + 1]);
    w.dev
        .wait_log("larger than 4194304 bytes", T)
        .unwrap_or_else(|| panic!("the oversized body is not logged:\n{}", w.dev.log()));
    let seen = requests(&w);
    wait_for("three more polls of the oversized body", T, || {
        (requests(&w) >= seen + 3).then_some(())
    });
    let log = w.dev.log();
    assert_eq!(count_lines(&log, "larger than 4194304 bytes"), 1, "{log}");
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert_serial(&w.dev, 1);

    // A good manifest again: taken, and the recovery said once.
    let src = w.source(2);
    w.publish(&src);
    wait_serial(&w.dev, 2);
    let log = w.dev.log();
    let story: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["HTTP 500", "fine again", "not an edgewire", "larger than"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    assert!(
        story.last().is_some_and(|l| l.contains("is fine again")),
        "the last word on the source should be that it is fine again: {story:#?}"
    );
    assert!(
        story.len() <= 5,
        "one line per change of state (error, error, error, two recoveries at most): {story:#?}"
    );
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out_once_logged_and_the_manifest_stays() {
    require_root!();
    let lab = Lab::new("server-stall");
    let mut w = running(&lab, None, &[]);
    w.server.stop();
    let staller = stalled_tcp_server(w.server.host(), &format!("{SERVER_ADDR}:443"));
    staller.set_nonblocking(true).unwrap();
    let stalled_at = Instant::now();
    // Accepted and held open, never written to.
    let mut held = Vec::new();
    let accept = |held: &mut Vec<TcpStream>| {
        while let Ok((s, _)) = staller.accept() {
            held.push(s);
        }
        held.len()
    };
    wait_for("the agent to connect to the stalled server", T, || {
        (accept(&mut held) >= 1).then_some(())
    });
    // The data plane does not wait for the puller.
    w.dev_host
        .ping(HUB_OVERLAY, Duration::from_secs(3))
        .unwrap();

    let line = w
        .dev
        .wait_log_line(Duration::from_secs(45), |l| {
            l.contains("did not") && l.contains(SERVER_ADDR)
        })
        .unwrap_or_else(|| panic!("no timeout logged:\n{}", w.dev.log()));
    let timed_out_after = stalled_at.elapsed();
    eprintln!("stalled server: timeout logged after {timed_out_after:?}: {line}");
    // A third connection means the second attempt has failed too (and been judged).
    wait_for(
        "two more attempts on the stalled server",
        Duration::from_secs(45),
        || (accept(&mut held) >= 3).then_some(()),
    );
    let log = w.dev.log();
    assert_eq!(
        count_lines(&log, "did not"),
        1,
        "two stalled polls, one line:\n{log}"
    );
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert_serial(&w.dev, 1);

    drop(held);
    drop(staller);
    w.server.restart();
    let src = w.source(2);
    w.publish(&src);
    wait_serial(&w.dev, 2);
    w.dev
        .wait_log("is fine again", T)
        .unwrap_or_else(|| panic!("no recovery logged:\n{}", w.dev.log()));
}

#[test]
fn with_the_bearer_token_the_device_gets_its_manifest_and_without_it_the_401_is_logged_once() {
    require_root!();
    const TOKEN: &str = "lab-token-4f1c9e";
    let lab = Lab::new("bearer");
    let token_file = lab.dir().join("manifest.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_arg = token_file.to_string_lossy().into_owned();
    let w = running(&lab, Some(TOKEN), &["--manifest-token-file", &token_arg]);
    assert!(w.server.count("manifest", 200) >= 1);

    let other_host = lab.host("dev-x");
    w.wan.attach(&other_host, "198.51.100.50/24");
    let mut other = Agent::new(&other_host, "dev-x");
    let flags = https_flags(&w.server, "manifest", Some(&w.key.public), 1);
    other.start_args(&[], &as_strs(&flags));
    let line = other
        .wait_log("answered HTTP 401", T)
        .unwrap_or_else(|| panic!("no 401 logged:\n{}", other.log()));
    assert!(line.contains("--manifest-token-file"), "{line}");
    wait_for("three polls refused with 401", T, || {
        (w.server.count("manifest", 401) >= 3).then_some(())
    });
    assert_eq!(count_lines(&other.log(), "HTTP 401"), 1, "{}", other.log());
    let status = wait_status_answers(&other, T);
    assert!(
        status.manifest.is_none() && status.peers.is_empty(),
        "{status:#?}"
    );
    for agent in [&w.dev, &other] {
        assert!(
            !agent.log().contains(TOKEN),
            "{} logged the token",
            agent.name()
        );
    }
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();
}
