//! Self-test of the lab's link emulator: UDP probes with sequence numbers and send times
//! cross an impaired link (both ends are threads of this process, so one clock times
//! them), and what arrives must match the settings within tolerance.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use edgewire_lab::netns::spawn_in_netns;
use edgewire_lab::*;

/// What came out of the far end for each probe sent.
struct Probe {
    sent: usize,
    /// For each sequence number: how many copies arrived and the delay of the first.
    arrivals: Vec<(u32, Option<Duration>)>,
    /// Sequence numbers in arrival order (duplicates included).
    order: Vec<usize>,
    /// Bytes of payload received and the span from first to last arrival.
    bytes: usize,
    span: Duration,
}

impl Probe {
    fn loss(&self) -> f64 {
        let lost = self.arrivals.iter().filter(|(n, _)| *n == 0).count();
        lost as f64 / self.sent as f64
    }

    fn delays(&self) -> Vec<Duration> {
        self.arrivals.iter().filter_map(|(_, d)| *d).collect()
    }

    fn mean_delay(&self) -> Duration {
        let d = self.delays();
        d.iter().sum::<Duration>() / d.len().max(1) as u32
    }

    fn duplicates(&self) -> f64 {
        let extra: u32 = self.arrivals.iter().map(|(n, _)| n.saturating_sub(1)).sum();
        extra as f64 / self.sent as f64
    }

    /// Packets that overtook others: arrivals followed at once by a lower sequence
    /// number (a packet that skips the delay lands among older ones, and the next
    /// arrival is one of those it passed).
    fn overtakers(&self) -> f64 {
        let descents = self.order.windows(2).filter(|w| w[0] > w[1]).count();
        descents as f64 / self.sent as f64
    }

    fn throughput_bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.span.as_secs_f64()
    }
}

/// Sends `count` datagrams of `size` bytes from `from` to `to` (`IP:PORT`, bound in
/// `to_host`), one every `interval`, and collects what arrives until a second after the
/// last send.
fn probe(
    from: &Host,
    to_host: &Host,
    to: &str,
    count: usize,
    interval: Duration,
    size: usize,
) -> Probe {
    let base = Instant::now();
    let addr = to.to_owned();
    let receiver = spawn_in_netns(to_host, "probe-rx", move || {
        let socket = UdpSocket::bind(&addr).expect("binding the probe receiver");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut arrivals = vec![(0u32, None); count];
        let mut order = Vec::new();
        let (mut bytes, mut first, mut last) = (0, None, base);
        let mut buf = [0u8; 2048];
        let mut quiet_since = Instant::now();
        // Ends a second after the sender's last packet could have left.
        let end = base + interval * count as u32 + Duration::from_secs(3);
        while Instant::now() < end {
            let Ok(n) = socket.recv(&mut buf) else {
                if Instant::now() - quiet_since > Duration::from_secs(2)
                    && arrivals.iter().any(|(n, _)| *n > 0)
                    && Instant::now() > base + interval * count as u32
                {
                    break;
                }
                continue;
            };
            quiet_since = Instant::now();
            let now = Instant::now();
            let seq = u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize;
            let sent =
                base + Duration::from_nanos(u64::from_be_bytes(buf[8..16].try_into().unwrap()));
            if seq < count {
                let a = &mut arrivals[seq];
                a.0 += 1;
                a.1.get_or_insert(now - sent);
                order.push(seq);
                bytes += n;
                first.get_or_insert(now);
                last = now;
            }
        }
        (arrivals, order, bytes, last - first.unwrap_or(last))
    });
    let dst = to.to_owned();
    let sender = spawn_in_netns(from, "probe-tx", move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut packet = vec![0u8; size.max(16)];
        let mut next = Instant::now();
        for seq in 0..count as u64 {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += interval;
            packet[..8].copy_from_slice(&seq.to_be_bytes());
            let at = base.elapsed().as_nanos() as u64;
            packet[8..16].copy_from_slice(&at.to_be_bytes());
            let _ = socket.send_to(&packet, &dst);
        }
    });
    sender.join().unwrap();
    let (arrivals, order, bytes, span) = receiver.join().unwrap();
    Probe {
        sent: count,
        arrivals,
        order,
        bytes,
        span,
    }
}

// Fields drop in order: the emulator stops before the lab removes its namespace.
struct World {
    link: LinkEmulator,
    near: Host,
    far: Host,
    _lab: Lab,
}

const NEAR: &str = "198.51.100.5";
const FAR: &str = "203.0.113.10";

fn world(name: &str, seed: u64) -> World {
    let lab = Lab::new(name);
    let wan = lab.wan();
    let near = lab.host("near");
    let far = lab.host("far");
    wan.attach(&far, &format!("{FAR}/24"));
    let (_, link) = wan.attach_impaired(&near, &format!("{NEAR}/24"), seed);
    // ARP and the route through the wan work before any impairment.
    near.ping(FAR, Duration::from_secs(10)).unwrap();
    World {
        _lab: lab,
        near,
        far,
        link,
    }
}

fn within(what: &str, got: f64, want: f64, tolerance: f64) {
    eprintln!("{what}: measured {got:.4}, set {want:.4} (± {tolerance})");
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: measured {got:.4}, set {want:.4}, tolerance {tolerance}"
    );
}

#[test]
fn measured_loss_and_delay_match_the_settings_in_each_direction() {
    require_root!();
    let w = world("linkemu-loss-delay", 1);
    w.link.set(
        Direction::Up,
        Impairment::none()
            .loss(0.2)
            .delay(Duration::from_millis(50))
            .jitter(Duration::from_millis(10)),
    );
    w.link.set(
        Direction::Down,
        Impairment::none()
            .loss(0.05)
            .delay(Duration::from_millis(20)),
    );
    let n = 2000;
    let every = Duration::from_millis(2);
    let up = probe(&w.near, &w.far, &format!("{FAR}:9000"), n, every, 200);
    let down = probe(&w.far, &w.near, &format!("{NEAR}:9001"), n, every, 200);

    // 2000 draws at p = 0.2 have a standard deviation of 0.9 percentage points: 3 points
    // is more than 3 sigma.
    within("up loss", up.loss(), 0.2, 0.03);
    within("down loss", down.loss(), 0.05, 0.02);
    within(
        "up mean delay (ms)",
        up.mean_delay().as_secs_f64() * 1e3,
        50.0,
        3.0,
    );
    within(
        "down mean delay (ms)",
        down.mean_delay().as_secs_f64() * 1e3,
        20.0,
        3.0,
    );
    let mut delays = up.delays();
    delays.sort();
    let (min, p95, max) = (
        delays[0],
        delays[delays.len() * 95 / 100],
        delays[delays.len() - 1],
    );
    eprintln!("up delay: min {min:?}, p95 {p95:?}, max {max:?}");
    // The emulator never sends early; late only by the scheduling of a shared machine,
    // which the 95th percentile leaves out.
    assert!(
        min >= Duration::from_millis(40),
        "jitter ±10 ms: min {min:?}"
    );
    assert!(
        p95 <= Duration::from_millis(62),
        "jitter ±10 ms: p95 {p95:?}"
    );
    let st = w.link.stats(Direction::Up);
    assert!(st.lost > 0 && st.received >= n as u64, "{st:?}");
}

#[test]
fn duplication_reordering_and_a_rate_limit_are_measured_as_set() {
    require_root!();
    let w = world("linkemu-dup-rate", 2);
    w.link.set(
        Direction::Up,
        Impairment::none()
            .delay(Duration::from_millis(20))
            .duplicate(0.1)
            .reorder(0.1),
    );
    let p = probe(
        &w.near,
        &w.far,
        &format!("{FAR}:9000"),
        2000,
        Duration::from_millis(1),
        200,
    );
    within("duplicates", p.duplicates(), 0.1, 0.025);
    within("loss with no loss set", p.loss(), 0.0, 0.001);
    // A packet that skips 20 ms of delay overtakes the ~20 sent in the last 20 ms. Each
    // copy draws its own reordering (10 % duplicates add a little) and two skips in a
    // row count once (which takes a little): about the 10 % set.
    within("overtakers", p.overtakers(), 0.1, 0.03);

    // 2 Mbit/s, offered 1000-byte datagrams at ~8 Mbit/s: the excess is queued, then
    // tail-dropped; what arrives comes at the link's rate (payload is 1000 of the
    // 1042 bytes of each frame).
    w.link.set(
        Direction::Up,
        Impairment::none().rate_kbit(2000).queue_limit(50),
    );
    let p = probe(
        &w.near,
        &w.far,
        &format!("{FAR}:9002"),
        3000,
        Duration::from_millis(1),
        1000,
    );
    let want = 2_000_000.0 * 1000.0 / 1042.0;
    within(
        "rate (Mbit/s)",
        p.throughput_bps() / 1e6,
        want / 1e6,
        want * 0.1 / 1e6,
    );
    let st = w.link.stats(Direction::Up);
    assert!(
        st.queue_drops > 0,
        "an 8 Mbit/s offer on 2 Mbit/s drops: {st:?}"
    );
}
