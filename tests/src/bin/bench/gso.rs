//! UDP as QUIC stacks move it on Linux (quinn, quiche, msquic): the sender hands the
//! kernel a run of datagrams in one `sendmsg` (`UDP_SEGMENT`), the receiver takes trains
//! of them in one `recvmsg` (`UDP_GRO`). Through a TUN with UDP offload (Linux 6.2+) the
//! kernel hands each run to the tunnel whole, and a tunnel that writes runs back
//! coalesced hands the receiving socket whole trains. iperf3 sends and reads a datagram
//! a call, so its UDP rows never take that path.
//!
//! Sender and receiver are threads of this process, each with a socket made in its
//! namespace (and on its host's CPU with `--pin`). The rate is found as for iperf3
//! (`suite::search`): under 1 % lost, with default socket buffers.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edgewire_lab::*;

use crate::suite::{HostSteal, MAX_LOSS_PERCENT, UDP_LEN as LEN, search, unstolen};

/// Datagrams a send carries: quinn's most (`MAX_TRANSMIT_SEGMENTS`).
const RUN: usize = 10;
const PORT: u16 = 5202;
/// How long the receiver waits for stragglers once the sender stops.
const DRAIN: Duration = Duration::from_millis(300);

/// The highest rate (Mbit/s received) of UDP sent with GSO from `left` to `dst` on
/// `right` that loses under 1 %, each probe lasting half of `seconds` (at least 2).
pub fn highest(left: &Host, right: &Host, dst: &str, seconds: u32) -> Option<f64> {
    let probe = Duration::from_secs(u64::from((seconds / 2).max(2)));
    search(|rate| {
        unstolen(|| {
            let steal = HostSteal::start();
            let (got, lost) = match run(left, right, dst, rate, probe) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("bench: UDP with GSO: {e}");
                    return None;
                }
            };
            let stolen = steal.percent();
            eprintln!(
                "bench: UDP with GSO at {}: {got:.0} Mbit/s, {lost:.2} % lost; host CPU \
                 stolen {:.1} %",
                rate.map_or("full speed".to_owned(), |r| format!("{r:.0}M")),
                stolen.unwrap_or(f64::NAN)
            );
            Some(((got, lost < MAX_LOSS_PERCENT), stolen))
        })
    })
}

/// One probe: `rate` Mbit/s of payload (as fast as the sender can without one) for
/// `time`; (Mbit/s received, per cent lost).
fn run(
    left: &Host,
    right: &Host,
    dst: &str,
    rate: Option<f64>,
    time: Duration,
) -> Result<(f64, f64), String> {
    let to = format!("{dst}:{PORT}");
    let receiver = in_netns(right, || UdpSocket::bind(&to))
        .map_err(|e| format!("binding the receiver at {to}: {e}"))?;
    set_udp_option(&receiver, libc::UDP_GRO, 1).map_err(|e| format!("UDP_GRO: {e}"))?;
    receiver
        .set_read_timeout(Some(DRAIN))
        .map_err(|e| e.to_string())?;
    let sender = in_netns(left, || UdpSocket::bind("0.0.0.0:0"))
        .map_err(|e| format!("binding the sender: {e}"))?;
    sender
        .connect(&to)
        .map_err(|e| format!("connecting to {to}: {e}"))?;
    set_udp_option(&sender, libc::UDP_SEGMENT, LEN as libc::c_int)
        .map_err(|e| format!("UDP_SEGMENT: {e}"))?;

    let sending = AtomicBool::new(true);
    let (sent, received) = std::thread::scope(|s| {
        let receiving = s.spawn(|| {
            right
                .keep_thread_on_cpu()
                .expect("keeping the receiver on its CPU");
            receive(&receiver, &sending)
        });
        let sent = s.spawn(|| {
            left.keep_thread_on_cpu()
                .expect("keeping the sender on its CPU");
            send(&sender, rate, time)
        });
        let sent = sent.join().map_err(|_| "the sender panicked".to_owned());
        sending.store(false, Ordering::Relaxed);
        (sent, receiving.join().map_err(|_| "the receiver panicked"))
    });
    let received = received?;
    let sent = sent??;
    if sent == 0 {
        return Err("nothing was sent".into());
    }
    let got = (received * LEN) as f64 * 8.0 / time.as_secs_f64() / 1e6;
    let lost = 100.0 * sent.saturating_sub(received) as f64 / sent as f64;
    Ok((got, lost))
}

/// Sends runs of `RUN` datagrams for `time`, paced to `rate` Mbit/s each millisecond
/// (as iperf3 paces); the datagrams sent.
fn send(socket: &UdpSocket, rate: Option<f64>, time: Duration) -> Result<usize, String> {
    let run = vec![0x5a_u8; LEN * RUN];
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < time {
        if let Some(mbps) = rate {
            let due = mbps * 1e6 / 8.0 * start.elapsed().as_secs_f64() / LEN as f64;
            if (sent as f64) >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        match socket.send(&run) {
            Ok(_) => sent += RUN,
            // A queue on the way out was full (the kernel says so rather than block): the
            // run is lost, and counted so, as iperf3 counts its own.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => sent += RUN,
            Err(e) => return Err(format!("sending: {e}")),
        }
    }
    Ok(sent)
}

/// Counts datagrams until the sender has stopped and `DRAIN` passes without one.
fn receive(socket: &UdpSocket, sending: &AtomicBool) -> usize {
    let mut buf = vec![0u8; 65_536];
    let mut bytes = 0;
    loop {
        match socket.recv(&mut buf) {
            // A train of whole datagrams, all of `LEN` bytes.
            Ok(n) => bytes += n,
            Err(_) if !sending.load(Ordering::Relaxed) => return bytes / LEN,
            Err(_) => {}
        }
    }
}
