//! Where a UDP run's datagrams were lost. iperf3 counts only what did not arrive;
//! the kernel counts where it threw datagrams away, per network namespace (read through
//! /proc/PID/net of a tunnel end inside it):
//! - the receiving application's socket (iperf3's, port 5201: its `drops` in
//!   /proc/net/udp, polled while the run lasts, since the socket closes with the run);
//! - the other sockets of the receiving namespace (the tunnel's own: `RcvbufErrors` of
//!   /proc/net/snmp, less the application's);
//! - the sending namespace's interfaces (TX dropped in /proc/net/dev: a TUN whose queue
//!   was full while the tunnel was not reading it) and its sockets (`SndbufErrors`).
//!
//! Measured on this machine at the knee of each tunnel: nearly all of edgewire's loss
//! was at the application's socket (the tunnel kept up; the receiving iperf3 waited too
//! long for a core), about three quarters of wireguard-go's at its own socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// iperf3's port, where the application's socket listens.
const APP_PORT: u16 = 5201;
const POLL: Duration = Duration::from_millis(50);

/// Counters of one namespace that only grow.
#[derive(Clone, Copy, Default)]
struct Counters {
    rcvbuf_errors: u64,
    sndbuf_errors: u64,
    tx_dropped: u64,
}

impl Counters {
    fn read(pid: u32) -> Counters {
        let file = |name: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{name}"));
        let (rcvbuf_errors, sndbuf_errors) = file("snmp")
            .ok()
            .and_then(|s| udp_buffer_errors(&s))
            .unwrap_or_default();
        let tx_dropped = file("dev").map_or(0, |d| tx_dropped(&d));
        Counters {
            rcvbuf_errors,
            sndbuf_errors,
            tx_dropped,
        }
    }
}

/// Watches the two namespaces of one UDP run, from `start` to `finish`.
pub struct LossWatch {
    sender: u32,
    receiver: u32,
    before: [Counters; 2],
    app_drops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    poller: JoinHandle<()>,
}

/// Datagrams thrown away, by place.
#[derive(Default)]
pub struct Losses {
    pub app_socket: u64,
    pub other_receiving_sockets: u64,
    pub sending_interfaces: u64,
    pub sending_sockets: u64,
}

impl Losses {
    pub fn add(&mut self, other: &Losses) {
        self.app_socket += other.app_socket;
        self.other_receiving_sockets += other.other_receiving_sockets;
        self.sending_interfaces += other.sending_interfaces;
        self.sending_sockets += other.sending_sockets;
    }

    /// The per cent of the dropped datagrams that the receiving application's socket
    /// dropped; `None` when nothing was dropped.
    pub fn at_app_percent(&self) -> Option<f64> {
        let all = self.app_socket
            + self.other_receiving_sockets
            + self.sending_interfaces
            + self.sending_sockets;
        (all > 0).then(|| self.app_socket as f64 * 100.0 / all as f64)
    }

    /// "dropped by …": the places, for a line that has said how many were lost.
    pub fn places(&self) -> String {
        format!(
            "dropped by the receiving application's socket {}, by other sockets where it \
             runs {}, by the sending side's interfaces {} and sockets {}",
            self.app_socket,
            self.other_receiving_sockets,
            self.sending_interfaces,
            self.sending_sockets
        )
    }
}

impl LossWatch {
    /// `sender` and `receiver` are processes in the sending and receiving namespaces.
    pub fn start(sender: u32, receiver: u32) -> LossWatch {
        let app_drops = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (app_drops, stop) = (app_drops.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let drops = ["udp", "udp6"]
                        .iter()
                        .filter_map(|f| {
                            std::fs::read_to_string(format!("/proc/{receiver}/net/{f}")).ok()
                        })
                        .map(|table| socket_drops(&table, APP_PORT))
                        .sum();
                    app_drops.fetch_max(drops, Ordering::Relaxed);
                    std::thread::sleep(POLL);
                }
            })
        };
        LossWatch {
            sender,
            receiver,
            before: [Counters::read(sender), Counters::read(receiver)],
            app_drops,
            stop,
            poller,
        }
    }

    /// What was dropped since `start`. The application's socket is read until the last
    /// poll before it closed: a drop in its final 50 ms is counted as elsewhere.
    pub fn finish(self) -> Losses {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.poller.join();
        let [s0, r0] = self.before;
        let (s1, r1) = (Counters::read(self.sender), Counters::read(self.receiver));
        let app_socket = self.app_drops.load(Ordering::Relaxed);
        Losses {
            app_socket,
            // Saturating: a tunnel end that died mid-run reads as zeros.
            other_receiving_sockets: (r1.rcvbuf_errors.saturating_sub(r0.rcvbuf_errors))
                .saturating_sub(app_socket),
            sending_interfaces: s1.tx_dropped.saturating_sub(s0.tx_dropped),
            sending_sockets: s1.sndbuf_errors.saturating_sub(s0.sndbuf_errors),
        }
    }
}

/// The `drops` of the sockets bound to local `port` in a /proc/net/udp table.
fn socket_drops(table: &str, port: u16) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// (RcvbufErrors, SndbufErrors) of the `Udp:` lines of /proc/net/snmp (a header line
/// naming the columns, then a line of values).
fn udp_buffer_errors(snmp: &str) -> Option<(u64, u64)> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next()?, udp.next()?);
    let column = |name: &str| -> Option<u64> {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    Some((column("RcvbufErrors")?, column("SndbufErrors")?))
}

/// TX dropped of every interface in a /proc/net/dev table but loopback.
fn tx_dropped(dev: &str) -> u64 {
    dev.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            // Receive: bytes packets errs drop fifo frame compressed multicast;
            // transmit: bytes packets errs drop …
            counters.split_whitespace().nth(11)?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applications_share_is_of_every_place_added_up() {
        let mut sum = Losses::default();
        assert_eq!(sum.at_app_percent(), None);
        let probe = |app, tunnel, interfaces| Losses {
            app_socket: app,
            other_receiving_sockets: tunnel,
            sending_interfaces: interfaces,
            sending_sockets: 0,
        };
        sum.add(&probe(30, 10, 0));
        sum.add(&probe(50, 0, 10));
        assert_eq!(sum.at_app_percent(), Some(80.0));
    }

    #[test]
    fn the_drops_of_the_sockets_on_the_port_are_summed() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 02002A0A:1451 01002A0A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 24162\n\
            \x20 2: 0264A8C6:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 7\n";
        assert_eq!(socket_drops(table, 5201), 24162);
        assert_eq!(socket_drops(table, 51820), 7);
        assert_eq!(socket_drops(table, 53), 0);
    }

    #[test]
    fn the_buffer_errors_are_read_by_column_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 552489 0 24226 12 24220 3 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            UdpLite: 0 0 0 0 0 0\n";
        assert_eq!(udp_buffer_errors(snmp), Some((24220, 3)));
        assert_eq!(udp_buffer_errors("Ip: Forwarding\nIp: 1\n"), None);
    }

    #[test]
    fn the_transmit_drops_of_every_interface_but_loopback_are_summed() {
        let dev = "Inter-|   Receive                                                |  Transmit\n\
            \x20face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
            \x20   lo:  100 2 0 5 0 0 0 0  100 2 0 9 0 0 0 0\n\
            \x20  ew0: 492 9 0 0 0 0 0 0 767670941 549918 0 167 0 0 0 0\n\
            \x20 veth0: 1 1 0 0 0 0 0 0 1 1 0 2 0 0 0 0\n";
        assert_eq!(tx_dropped(dev), 169);
    }
}
