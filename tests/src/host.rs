//! A host: one network namespace. Runs commands in it, spawns guarded processes, sets
//! addresses, routes and sysctls, pings, and acts as a NAT router or firewall.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::lab::LabInner;
use crate::net::NatKind;
use crate::proc::Proc;
use crate::wait::poll_until;

/// A network namespace. Cheap to clone; the [`crate::Lab`] deletes it.
#[derive(Clone)]
pub struct Host {
    pub(crate) lab: Arc<LabInner>,
    name: String,
    ns: String,
    /// The one CPU everything this host runs is kept on (`on_cpu`), if any.
    cpu: Option<usize>,
}

/// The result of a command that ran to completion.
#[derive(Debug)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// One answered ping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReply {
    pub ttl: u8,
    pub rtt_ms: f64,
}

impl Host {
    pub(crate) fn create(lab: Arc<LabInner>, name: &str) -> Host {
        let ns = lab.register_netns(name);
        let out = Command::new("ip")
            .args(["netns", "add", &ns])
            .output()
            .expect("running ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {ns} failed (are you root?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = Host {
            lab,
            name: name.to_owned(),
            ns,
            cpu: None,
        };
        host.run(&["ip", "link", "set", "lo", "up"]);
        // Strict reverse-path filtering drops legitimate asymmetric lab traffic.
        host.sysctl("net.ipv4.conf.all.rp_filter", "0");
        host.sysctl("net.ipv4.conf.default.rp_filter", "0");
        host
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name, for `ip netns exec`.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The lab's temporary directory.
    pub fn lab_dir(&self) -> &Path {
        &self.lab.dir
    }

    /// This host as a one-core device: every command it runs from now on, with every
    /// thread that command starts, runs on CPU `cpu` alone, as do the threads of this
    /// process that call `keep_thread_on_cpu`.
    pub fn on_cpu(mut self, cpu: usize) -> Host {
        self.cpu = Some(cpu);
        self
    }

    /// Keeps the calling thread on this host's CPU, if it has one (`on_cpu`).
    pub fn keep_thread_on_cpu(&self) -> io::Result<()> {
        self.cpu.map_or(Ok(()), keep_on_cpu)
    }

    /// A command that runs `argv` inside this namespace (`ip netns exec` execs, so the
    /// spawned PID is the command's own).
    pub fn command(&self, argv: &[&str]) -> Command {
        assert!(!argv.is_empty(), "empty command");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).args(argv);
        if let Some(cpu) = self.cpu {
            // SAFETY: between fork and exec the closure only calls sched_setaffinity (a
            // system call, async-signal-safe) on a set built on its own stack.
            unsafe { cmd.pre_exec(move || keep_on_cpu(cpu)) };
        }
        cmd
    }

    /// Runs `argv` to completion in this namespace.
    pub fn exec(&self, argv: &[&str]) -> ExecOutput {
        let out = self
            .command(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: running {argv:?}: {e}", self.name));
        ExecOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `argv` and panics, with its output, unless it succeeds. Returns stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.success(),
            "{}: {argv:?} failed ({}): {}{}",
            self.name,
            out.status,
            out.stderr,
            out.stdout
        );
        out.stdout
    }

    /// Starts `argv` in the background; stdout and stderr go to a log in the lab dir.
    pub fn spawn(&self, label: &str, argv: &[&str]) -> Proc {
        self.spawn_command(label, self.command(argv))
    }

    /// Starts a command built with [`Host::command`] (to add environment variables).
    pub fn spawn_command(&self, label: &str, mut cmd: Command) -> Proc {
        let log = self.lab.log_path(&self.name, label);
        let file = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = file.try_clone().expect("cloning a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: starting {label}: {e}", self.name));
        Proc::new(
            format!("{}/{label}", self.name),
            child,
            log,
            self.lab.clone(),
        )
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Turns this host into a router (IPv4 forwarding).
    pub fn enable_forwarding(&self) {
        self.sysctl("net.ipv4.ip_forward", "1");
        // A router on a shared segment must not redirect its clients to each other.
        self.sysctl("net.ipv4.conf.all.send_redirects", "0");
        self.sysctl("net.ipv4.conf.default.send_redirects", "0");
    }

    pub fn add_addr(&self, iface: &str, cidr: &str) {
        self.run(&["ip", "addr", "add", cidr, "dev", iface]);
    }

    pub fn link_up(&self, iface: &str) {
        self.run(&["ip", "link", "set", iface, "up"]);
    }

    pub fn default_route(&self, via: &str) {
        self.run(&["ip", "route", "replace", "default", "via", via]);
    }

    pub fn route(&self, prefix: &str, via: &str) {
        self.run(&["ip", "route", "replace", prefix, "via", via]);
    }

    pub fn route_dev(&self, prefix: &str, iface: &str) {
        self.run(&["ip", "route", "replace", prefix, "dev", iface]);
    }

    /// The IPv4 addresses on `iface` in CIDR notation.
    pub fn addrs(&self, iface: &str) -> Vec<String> {
        let out = self.exec(&["ip", "-4", "-o", "addr", "show", "dev", iface]);
        out.stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words.next().map(str::to_owned)
            })
            .collect()
    }

    /// Whether an interface of that name exists in this namespace.
    pub fn has_iface(&self, iface: &str) -> bool {
        self.exec(&["ip", "link", "show", "dev", iface]).success()
    }

    /// One ping with a one-second timeout.
    pub fn ping_once(&self, addr: &str) -> Option<PingReply> {
        let out = self.exec(&["ping", "-n", "-c1", "-W1", addr]);
        if !out.success() {
            return None;
        }
        parse_ping(&out.stdout)
    }

    /// Pings `addr` until it answers or `timeout` passes.
    pub fn ping(&self, addr: &str, timeout: Duration) -> Result<PingReply, String> {
        poll_until(timeout, || self.ping_once(addr))
            .ok_or_else(|| format!("{} could not ping {addr} within {timeout:?}", self.name))
    }

    /// Runs iptables (nft backend) in this namespace.
    pub fn iptables(&self, args: &[&str]) {
        let mut argv = vec!["iptables", "-w"];
        argv.extend_from_slice(args);
        self.run(&argv);
    }

    /// Makes this host a site router of `kind` toward `uplink` (also turns forwarding
    /// on): source-NATs what leaves through it, or, for the kinds that do not translate,
    /// routes a public LAN (and filters, for [`NatKind::Firewall`]).
    pub fn nat(&self, uplink: &str, kind: NatKind) {
        self.enable_forwarding();
        if !kind.translates() {
            self.answer_arp_for_lan(uplink);
            if kind == NatKind::Firewall {
                self.drop_unsolicited_udp(uplink);
            }
            return;
        }
        let mut rule = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            uplink,
            "-j",
            "MASQUERADE",
        ];
        if kind == NatKind::RandomFully {
            rule.push("--random-fully");
        }
        self.iptables(&rule);
    }

    /// A public LAN carved from the uplink's subnet is reached without a route on every
    /// wan host: the router answers ARP on `uplink` for the addresses it routes elsewhere
    /// (proxy ARP), at once (the default delays each answer by up to 0.8 s).
    fn answer_arp_for_lan(&self, uplink: &str) {
        self.sysctl(&format!("net.ipv4.conf.{uplink}.proxy_arp"), "1");
        self.sysctl(&format!("net.ipv4.neigh.{uplink}.proxy_delay"), "0");
    }

    /// A stateful firewall on `uplink`: UDP coming in is forwarded only when conntrack
    /// knows it as the answer to something that left (ESTABLISHED). Nothing is
    /// translated; ICMP passes (the lab pings through it).
    fn drop_unsolicited_udp(&self, uplink: &str) {
        self.iptables(&[
            "-A",
            "FORWARD",
            "-i",
            uplink,
            "-p",
            "udp",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "DROP",
        ]);
    }

    /// Starts counting the IPv4 packets this router forwards between addresses `a` and
    /// `b`, both ways: two FORWARD rules without a target, so nothing changes but their
    /// counters, which [`Host::forwarded_bytes`] reads.
    pub fn count_forwarded(&self, a: &str, b: &str) {
        for (src, dst) in [(a, b), (b, a)] {
            self.iptables(&["-A", "FORWARD", "-s", src, "-d", dst]);
        }
    }

    /// The bytes (IP packets, headers included) forwarded between `a` and `b` since
    /// [`Host::count_forwarded`].
    pub fn forwarded_bytes(&self, a: &str, b: &str) -> u64 {
        // `-v -S` prints each rule with `-c PACKETS BYTES` after its matches.
        let rules = self.run(&["iptables", "-w", "-v", "-S", "FORWARD"]);
        let counters = |src: &str, dst: &str| {
            let rule = format!("-A FORWARD -s {src}/32 -d {dst}/32 -c ");
            rules
                .lines()
                .find_map(|l| l.strip_prefix(&rule))
                .and_then(|c| c.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{}: no counter for {src} → {dst}:\n{rules}", self.name))
        };
        counters(a, b) + counters(b, a)
    }

    /// Drops UDP arriving from `src` (an address or prefix), forwarded or local.
    pub fn drop_udp_from(&self, src: &str) {
        for chain in ["INPUT", "FORWARD"] {
            self.iptables(&["-I", chain, "-s", src, "-p", "udp", "-j", "DROP"]);
        }
    }

    /// A corporate firewall: of the traffic forwarded from the LAN side out through
    /// `uplink`, only TCP to `port` passes (plus the answers to it); the rest is dropped.
    pub fn allow_only_tcp_out(&self, uplink: &str, port: u16) {
        let port = port.to_string();
        self.iptables(&[
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
        self.iptables(&[
            "-A", "FORWARD", "-o", uplink, "-p", "tcp", "--dport", &port, "-j", "ACCEPT",
        ]);
        self.iptables(&["-A", "FORWARD", "-j", "DROP"]);
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({} in {})", self.name, self.ns)
    }
}

/// Keeps the calling thread (and what it starts from now on) on CPU `cpu`.
fn keep_on_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero cpu_set_t is an empty set, and `cpu` is within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn parse_ping(stdout: &str) -> Option<PingReply> {
    let line = stdout.lines().find(|l| l.contains(" bytes from "))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
    };
    Some(PingReply {
        ttl: field("ttl=")?.parse().ok()?,
        rtt_ms: field("time=")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ttl_and_round_trip_time_from_ping_output() {
        let out = "PING 10.42.0.1 (10.42.0.1) 56(84) bytes of data.\n\
                   64 bytes from 10.42.0.1: icmp_seq=1 ttl=63 time=0.571 ms\n\n\
                   --- 10.42.0.1 ping statistics ---\n";
        assert_eq!(
            parse_ping(out),
            Some(PingReply {
                ttl: 63,
                rtt_ms: 0.571
            })
        );
    }

    #[test]
    fn unanswered_ping_output_has_no_reply() {
        assert_eq!(
            parse_ping("PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n"),
            None
        );
    }
}
