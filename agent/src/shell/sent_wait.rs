//! How long a TCP segment an application sent waited in the TUN's queue before the agent
//! read it, told by the segment itself: its timestamp option (RFC 7323).
//!
//! The TUN's queue (a ring of `txqueuelen` packets, 2,000 here) holds no time stamps the
//! agent can read, and it is not bounded in bytes: the kernel hands a TCP flow's
//! super-packets of up to 64 KiB to it one per entry, and detaches them from their
//! socket as it queues them, so TCP Small Queues does not hold the sender back either.
//! When the agent encrypts slower than a CUBIC flow sends, the flow's window stands in
//! that queue and every other packet the device sends waits behind it. Measured with the
//! sending agent at a small board's pace (the aarch64 build under qemu-user, the
//! receiving one native, in the benchmark's namespaces, CUBIC for 10 s): 2,400 segments
//! in flight, pings 52-57 ms on average (at most 73-99) against 0.5 idle, and no loss
//! at all to make CUBIC stop. With this, 11-13 ms (at most 18-27) after 6-14 drops, at
//! 440 Mbit/s against 447 (medians of four rounds each).
//!
//! Linux stamps each segment with its TCP clock in milliseconds as it hands it to the
//! device (plus an offset fixed per connection). So for one flow, the time the agent
//! reads a segment less its stamp is a constant plus the wait; the least of it over the
//! last half minute or more (`WINDOW`) is the constant, and the rest is the wait. That
//! wait feeds the same CoDel as the UDP side (codel.rs).
//!
//! A flow is trusted only after its stamps have kept pace with the agent's clock for
//! `PROVE` (a millisecond clock, as Linux since 4.13, the BSDs and macOS use): a sender
//! whose clock ticks every 4 or 10 ms (older Linux, with jiffies) or in microseconds
//! would otherwise read as a wait that grows for ever. A host's connections all stamp
//! from its one TCP clock (each with its own offset), so once a flow from an address has
//! proven it, the next flows from that address are trusted from their first segment,
//! their slow start included; each still proves itself, and one that fails disowns its
//! address. In the lab test (tests/tests/queue_control.rs, three rounds alternating with
//! the build before), pings in a second CUBIC upload's first 2 s took 18.8-21.3 ms on
//! average (at most 34-41) against 32.4-43.9 (58-93), at the same throughput.
//!
//! Segments without the option (TCP from hosts that do not use it, UDP, ICMP) say
//! nothing here; for bulk data among them, and for flows not yet proven, the agent
//! times the queue with probes of its own (ring_probe.rs).

use std::time::{Duration, Instant};

/// How long the least offset is kept: the wait is measured against the least offset of
/// this window and the one before, so a queue that has stood a whole window starts to
/// read as no wait. Long, so CoDel has drained a standing queue long before; short
/// enough that a forwarding host's clock drifting 100 ppm from ours moves the offset
/// by only a few milliseconds.
const WINDOW: Duration = Duration::from_secs(30);
/// How long a flow's stamps must keep pace with the agent's clock before its waits are
/// believed: long enough that a queue changing by 100 ms meanwhile misjudges the pace by
/// a tenth at most; short, because a new flow's slow start fills the queue unchecked
/// until then.
const PROVE: Duration = Duration::from_secs(1);
/// Flows followed at once; the one seen least lately gives way to a new one. As many
/// proven source addresses are kept, the one proven longest ago giving way.
const FLOWS: usize = 32;

/// The flows the agent has lately read segments of, with their clocks' offsets.
#[derive(Debug)]
pub struct SentWaits {
    /// Where the agent's millisecond clock starts.
    epoch: Instant,
    flows: Vec<Flow>,
    /// Source addresses a flow of which proved a millisecond clock, oldest first.
    proven_sources: Vec<[u8; 16]>,
}

#[derive(Debug)]
struct Flow {
    key: FlowKey,
    seen: Instant,
    /// The first stamp, and when it was read: to prove the sender's clock.
    first: (Instant, u32),
    /// Whether the stamps kept pace with the agent's clock over `PROVE`; `None` until
    /// then.
    millisecond_clock: Option<bool>,
    /// Whether its source had proven its clock when the flow began: then its waits are
    /// believed before its own proof.
    vouched: bool,
    /// The least offset (read time less stamp, in ms) in this window and the last.
    least: u32,
    least_before: u32,
    window_start: Instant,
}

/// Addresses and ports, an IPv4 address in the first four bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct FlowKey {
    source: [u8; 16],
    destination: [u8; 16],
    ports: u32,
}

/// What the agent needs of a TCP segment.
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    key: FlowKey,
    stamp: u32,
    has_payload: bool,
}

impl SentWaits {
    pub fn new(now: Instant) -> SentWaits {
        SentWaits {
            epoch: now,
            flows: Vec::new(),
            proven_sources: Vec::new(),
        }
    }

    /// How long `packet`, read from the TUN at `now`, waited there: `Some` for a TCP
    /// segment with a payload and a timestamp, of a flow whose clock is proven. Every
    /// stamped segment, with a payload or not, teaches the flow's offset.
    pub fn wait(&mut self, packet: &[u8], now: Instant) -> Option<Duration> {
        let segment = parse(packet)?;
        let millis = now.saturating_duration_since(self.epoch).as_millis() as u32;
        let offset = millis.wrapping_sub(segment.stamp);
        let flow = self.flow(segment.key, now, segment.stamp, offset);
        flow.seen = now;
        if now.saturating_duration_since(flow.window_start) >= WINDOW {
            flow.least_before = flow.least;
            flow.least = offset;
            flow.window_start = now;
        } else if before(offset, flow.least) {
            flow.least = offset;
        }
        let proof = flow.prove(segment.stamp, now);
        let believed = flow.millisecond_clock.unwrap_or(flow.vouched);
        let least = if before(flow.least_before, flow.least) {
            flow.least_before
        } else {
            flow.least
        };
        if let Some(proven) = proof {
            self.proven(segment.key.source, proven);
        }
        if !believed || !segment.has_payload {
            return None;
        }
        let wait = offset.wrapping_sub(least) as i32;
        Some(Duration::from_millis(wait.max(0) as u64))
    }

    /// Marks `source` as having (or not having) a proven millisecond clock.
    fn proven(&mut self, source: [u8; 16], proven: bool) {
        self.proven_sources.retain(|s| *s != source);
        if proven {
            if self.proven_sources.len() == FLOWS {
                self.proven_sources.remove(0);
            }
            self.proven_sources.push(source);
        }
    }

    /// The flow `key`, new if it was not followed (in place of the one seen least lately
    /// when `FLOWS` are).
    fn flow(&mut self, key: FlowKey, now: Instant, stamp: u32, offset: u32) -> &mut Flow {
        if let Some(i) = self.flows.iter().position(|f| f.key == key) {
            return &mut self.flows[i];
        }
        let fresh = Flow {
            key,
            seen: now,
            first: (now, stamp),
            millisecond_clock: None,
            vouched: self.proven_sources.contains(&key.source),
            least: offset,
            least_before: offset,
            window_start: now,
        };
        if self.flows.len() < FLOWS {
            self.flows.push(fresh);
            return self.flows.last_mut().expect("just pushed");
        }
        let stalest = (self.flows.iter_mut())
            .min_by_key(|f| f.seen)
            .expect("FLOWS is not zero");
        *stalest = fresh;
        stalest
    }
}

impl Flow {
    /// Once `PROVE` has passed since the flow's first segment, judges whether its stamps
    /// kept pace with the agent's clock; the verdict, the once it is reached.
    fn prove(&mut self, stamp: u32, now: Instant) -> Option<bool> {
        if self.millisecond_clock.is_some() {
            return None;
        }
        let (then, first) = self.first;
        let span = now.saturating_duration_since(then);
        if span < PROVE {
            return None;
        }
        let ticks = f64::from(stamp.wrapping_sub(first));
        let pace = ticks / span.as_secs_f64() / 1000.0;
        let proven = (0.8..1.25).contains(&pace);
        self.millisecond_clock = Some(proven);
        log::debug!(
            "TCP from port {} to port {}: its timestamps tick {pace:.3} times a \
             millisecond, so its waits are {}",
            self.key.ports >> 16,
            self.key.ports & 0xffff,
            if proven { "measured" } else { "not measured" }
        );
        Some(proven)
    }
}

/// Whether offset `a` is less than `b`, on a clock that wraps.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The flow, timestamp and whether there is a payload, of an IPv4 or IPv6 TCP segment
/// with a timestamp option; `None` for anything else, or for a packet too short for what
/// its headers say.
fn parse(packet: &[u8]) -> Option<Segment> {
    let mut key = FlowKey {
        source: [0; 16],
        destination: [0; 16],
        ports: 0,
    };
    let (tcp, ip_payload) = match packet.first()? >> 4 {
        4 => {
            let header = usize::from(packet.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            let fragment = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            if header < 20 || *packet.get(9)? != 6 || fragment != 0 {
                return None;
            }
            key.source[..4].copy_from_slice(packet.get(12..16)?);
            key.destination[..4].copy_from_slice(packet.get(16..20)?);
            (packet.get(header..total)?, total.checked_sub(header)?)
        }
        6 => {
            // A segment behind extension headers is rare from a host's own stack, and
            // is left unmeasured rather than parsed.
            if *packet.get(6)? != 6 {
                return None;
            }
            let length = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
            key.source.copy_from_slice(packet.get(8..24)?);
            key.destination.copy_from_slice(packet.get(24..40)?);
            (packet.get(40..40 + length)?, length)
        }
        _ => return None,
    };
    key.ports = u32::from_be_bytes(tcp.get(..4)?.try_into().ok()?);
    let header = usize::from(tcp.get(12)? >> 4) * 4;
    let mut options = tcp.get(20..header)?;
    while let Some(&kind) = options.first() {
        match kind {
            0 => break,
            1 => options = &options[1..],
            _ => {
                let length = usize::from(*options.get(1)?);
                if length < 2 {
                    return None;
                }
                if kind == 8 && length == 10 {
                    let stamp = u32::from_be_bytes(options.get(2..6)?.try_into().ok()?);
                    return Some(Segment {
                        key,
                        stamp,
                        has_payload: ip_payload > header,
                    });
                }
                options = options.get(length..)?;
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "sent_wait_tests.rs"]
mod tests;
