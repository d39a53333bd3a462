//! A local demo overlay in network namespaces: an edgewire hub on a public address, two
//! devices on site lab-a behind one NAT router, one on site lab-b behind another, and one
//! on site lab-c behind a firewall that lets only TCP 443 out, which reaches the overlay
//! through a coturn relay over TLS. One signed manifest, served over HTTPS by nginx.
//! Waits for the overlay, prints every agent's `edgewire status`, pings across, prints a
//! summary and cleans up.
//!
//! Run as root: `scripts/demo [--hold]` (`--hold` keeps it running until Ctrl-C).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edgewire_lab::worlds::HubSites;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(30);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Stops the demo (cleaning up through the lab's guards) once Ctrl-C was pressed.
fn check_interrupt() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        panic!("interrupted");
    }
}

struct Node {
    agent: Agent,
    overlay: &'static str,
    site: &'static str,
}

fn main() {
    if !is_root() {
        eprintln!("demo: needs root to create network namespaces (run scripts/demo)");
        std::process::exit(2);
    }
    let hold = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--hold") => true,
        Some(_) => {
            eprintln!("usage: demo [--hold]");
            std::process::exit(2);
        }
    };
    Lab::install_panic_cleanup();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();

    let lab = Lab::new("demo");
    // The catalogue's hub and three sites; site c lets only TCP 443 out.
    let HubSites {
        wan,
        hub_host,
        sites,
        devs,
    } = HubSites::new(&lab, 3);
    sites[2].router.allow_only_tcp_out(&sites[2].uplink, 443);

    // The manifest server (nginx over HTTPS) and the relay (coturn, TLS on 443), each with
    // a CA made for the demo; the devices trust both.
    let server_host = lab.host("manifests");
    wan.attach(&server_host, "203.0.113.20/24");
    let server = FileServer::start(&server_host, "203.0.113.20");
    let relay_host = lab.host("relay");
    wan.attach(&relay_host, "203.0.113.30/24");
    let relay_config = CoturnConfig {
        tls: true,
        ..CoturnConfig::long_term("demo", "demo-relay-pass", "demo")
    };
    let relay = Coturn::start(&relay_host, "203.0.113.30", &relay_config);
    let ca_file = lab.dir().join("cas.pem");
    let mut cas = std::fs::read_to_string(&server.ca().ca_cert).expect("server CA");
    cas += &std::fs::read_to_string(&relay.ca().expect("TLS relay").ca_cert).expect("relay CA");
    std::fs::write(&ca_file, cas).expect("writing the CA bundle");
    let mut nodes = vec![
        Node {
            agent: Agent::new(&hub_host, "hub-1"),
            overlay: "10.42.0.1",
            site: "public 203.0.113.10",
        },
        Node {
            agent: Agent::new(&devs[0], "dev-a1"),
            overlay: "10.42.1.1",
            site: "lab-a, NAT 198.51.100.2",
        },
        Node {
            agent: Agent::new(&sites[0].host("dev-a2", "192.168.10.3/24"), "dev-a2"),
            overlay: "10.42.1.2",
            site: "lab-a, NAT 198.51.100.2",
        },
        Node {
            agent: Agent::new(&devs[1], "dev-b1"),
            overlay: "10.42.2.1",
            site: "lab-b, NAT 192.0.2.2",
        },
        Node {
            agent: Agent::new(&devs[2], "dev-c1"),
            overlay: "10.42.3.1",
            site: "lab-c, only TCP 443 out, NAT 192.0.2.3",
        },
    ];
    check_interrupt();

    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = ManifestSource::new("demo", 1)
        .node(
            NodeSource::hub("hub-1", nodes[0].agent.public_key(), "10.42.0.1/32")
                .endpoint("203.0.113.10:51820")
                .keepalive(25),
        )
        .node(
            NodeSource::edge(
                "dev-a1",
                nodes[1].agent.public_key(),
                "lab-a",
                "10.42.1.1/32",
            )
            .endpoint("192.168.10.2:51820"),
        )
        .node(
            NodeSource::edge(
                "dev-a2",
                nodes[2].agent.public_key(),
                "lab-a",
                "10.42.1.2/32",
            )
            .endpoint("192.168.10.3:51820"),
        )
        .node(NodeSource::edge(
            "dev-b1",
            nodes[3].agent.public_key(),
            "lab-b",
            "10.42.2.1/32",
        ))
        .node(NodeSource::edge(
            "dev-c1",
            nodes[4].agent.public_key(),
            "lab-c",
            "10.42.3.1/32",
        ))
        .relay(
            "turn:203.0.113.30:3478?transport=udp",
            "demo",
            "demo-relay-pass",
        )
        .relay("turns:203.0.113.30:443", "demo", "demo-relay-pass")
        .build(&key, lab.dir(), "manifest");
    server.publish(
        "overlay.ewm",
        &std::fs::read(&manifest).expect("the built manifest"),
    );
    let url = server.https_url("overlay.ewm");
    println!(
        "manifest: {url} (signed by {}), relay: coturn at 203.0.113.30",
        key.public
    );
    let ca = ca_file.to_string_lossy().into_owned();
    for node in &mut nodes {
        let args = [
            "--manifest-url",
            &url,
            "--manifest-pubkey",
            &key.public,
            "--ca-file",
            &ca,
        ];
        node.agent.start_args(&[], &args);
    }

    // Devices first: the hub learns their NATed addresses from their handshakes.
    for node in &nodes[1..] {
        let up = poll_until(T, || {
            check_interrupt();
            if let Some(dead) = nodes.iter().find(|n| !n.agent.is_running()) {
                panic!("{} exited:\n{}", dead.agent.name(), dead.agent.log());
            }
            node.agent.host().ping_once("10.42.0.1")
        });
        assert!(
            up.is_some(),
            "{} cannot reach hub-1 over the overlay",
            node.agent.name()
        );
    }
    println!(
        "overlay up after {:.1} s\n",
        started.elapsed().as_secs_f64()
    );

    let mut summary = Vec::new();
    // A first round: the first packet toward an edge of another site goes through the
    // hub and starts the exchange of candidates for a direct path.
    for from in &nodes {
        for to in nodes
            .iter()
            .filter(|to| to.agent.name() != from.agent.name())
        {
            check_interrupt();
            let _ = from.agent.host().ping(to.overlay, T);
        }
    }
    // Punching takes a fraction of a second; a relayed candidate (the other side's TURN
    // allocation, for pairs no NAT lets through) is tried a second in. Wait for both.
    let _ = poll_until(Duration::from_secs(4), || {
        let punching = nodes.iter().any(|n| {
            n.agent
                .status()
                .is_ok_and(|s| s.peers.iter().any(|p| p.via.as_deref() == Some("hub")))
        });
        (!punching).then_some(())
    });
    for from in &nodes {
        for to in &nodes {
            if from.agent.name() == to.agent.name() {
                continue;
            }
            check_interrupt();
            let reply = from.agent.host().ping(to.overlay, T);
            let peer = from
                .agent
                .status()
                .ok()
                .and_then(|s| s.peer(to.agent.name()).cloned());
            let route = match peer {
                Some(p) => match (p.path, p.via.as_deref()) {
                    (Some(path), Some(via @ ("punched" | "lan" | "relayed"))) => {
                        format!("peer, {path} ({via})")
                    }
                    (Some(path), _) => format!("peer, {path}"),
                    (None, _) => "via hub-1 (punching)".to_owned(),
                },
                None => "via hub-1".to_owned(),
            };
            summary.push((from.agent.name(), to.agent.name(), reply, route));
        }
    }

    for node in &nodes {
        println!("== {} ({}) — edgewire status", node.agent.name(), node.site);
        match node.agent.status_text() {
            Ok(text) => println!("{}", text.trim_end()),
            Err(e) => println!("status failed: {}", e.trim_end()),
        }
        println!();
    }

    println!("== pings over the overlay");
    let mut failed = 0;
    for (from, to, reply, route) in &summary {
        match reply {
            Ok(r) => println!(
                "  {from:>7} -> {to:<7} {:>7.2} ms  ttl {:>3}  {route}",
                r.rtt_ms, r.ttl
            ),
            Err(e) => {
                failed += 1;
                println!("  {from:>7} -> {to:<7} FAILED: {e}");
            }
        }
    }
    println!(
        "\n{} of {} pairs answered; edges on one site talk directly; edges of different sites\n\
         go direct where their NATs allow it (punched), the others through a relay when\n\
         one side has one (relayed), else through the hub; dev-c1 reaches the hub through\n\
         the relay over TLS.",
        summary.len() - failed,
        summary.len()
    );

    if hold {
        println!("\nholding; Ctrl-C to stop and clean up. Try:");
        for node in &nodes {
            println!(
                "  ip netns exec {} ping {}    # from {}",
                node.agent.host().netns(),
                nodes[0].overlay,
                node.agent.name()
            );
        }
        println!(
            "  {} status --state-dir {}",
            edgewire_bin().display(),
            nodes[1].agent.state_dir().display()
        );
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(node) = nodes.iter().find(|n| !n.agent.is_running()) {
                println!("{} exited:\n{}", node.agent.name(), node.agent.log());
                break;
            }
        }
        println!("stopping");
    }
    drop(nodes);
    drop(lab);
    if failed > 0 {
        std::process::exit(1);
    }
}
