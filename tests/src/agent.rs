//! The edgewire agent under test: finds the binary, creates a node's key, starts
//! `edgewire run` in a host, and reads `edgewire status --json` and the agent's log.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::host::{ExecOutput, Host};
use crate::proc::Proc;
use crate::wait::{poll_until, wait_for};

/// The interface name every agent uses in its own namespace.
pub const AGENT_IFACE: &str = "ew0";
pub const AGENT_PORT: u16 = 51820;

static PROFILE: OnceLock<&'static str> = OnceLock::new();

/// Makes every agent and tool call in this process use the `edgewire` of a cargo
/// profile ("debug" unless set; the benchmark uses "release"). Set it once, early.
pub fn use_edgewire_profile(profile: &'static str) {
    let set = PROFILE.get_or_init(|| profile);
    assert_eq!(
        *set, profile,
        "the edgewire profile was already set to {set}"
    );
}

/// A binary that replaces the profile's until unset (see [`use_edgewire_bin`]).
static BIN: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Makes agents started from now on, and tool calls, run `bin`; `None` goes back to the
/// profile's. The benchmark measures the static build as devices get it this way.
pub fn use_edgewire_bin(bin: Option<PathBuf>) {
    *BIN.lock().unwrap_or_else(|e| e.into_inner()) = bin;
}

/// The `edgewire` binary in use (see [`use_edgewire_bin`] and [`edgewire_bin_for`]).
pub fn edgewire_bin() -> PathBuf {
    if let Some(bin) = BIN.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return bin;
    }
    edgewire_bin_for(PROFILE.get().copied().unwrap_or("debug"))
}

/// `$EDGEWIRE_BIN`, else `<target dir>/<profile>/edgewire`, where the target dir is
/// `$CARGO_TARGET_DIR` (read when the tests run) or the workspace's `target/`.
/// Panics with what to do when the binary is missing.
pub fn edgewire_bin_for(profile: &str) -> PathBuf {
    find_edgewire_bin(profile).unwrap_or_else(|e| panic!("{e}"))
}

/// `$CARGO_TARGET_DIR` (read when the tests run) or the workspace's `target/`: where
/// cargo and `scripts/build-arm` put the binaries.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir), // an absolute dir replaces the base
        None => workspace.join("target"),
    }
}

/// Whether this run asks the agents for no batching and no offload
/// (`EDGEWIRE_OFFLOAD=off`, `scripts/test`'s second pass).
pub fn offload_off() -> bool {
    std::env::var("EDGEWIRE_OFFLOAD").is_ok_and(|v| v == "off")
}

/// Like [`edgewire_bin_for`], returning what to do instead of panicking.
pub fn find_edgewire_bin(profile: &str) -> Result<PathBuf, String> {
    let bin = match std::env::var_os("EDGEWIRE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => target_dir().join(profile).join("edgewire"),
    };
    if bin.is_file() {
        return Ok(bin);
    }
    let flag = if profile == "release" {
        " --release"
    } else {
        ""
    };
    Err(format!(
        "edgewire binary not found at {}: build it first: cargo build{flag} -p edgewire \
         (or point EDGEWIRE_BIN at it)",
        bin.display()
    ))
}

/// Runs an `edgewire` subcommand outside any namespace; stdout on success.
pub(crate) fn run_tool(args: &[&OsStr]) -> Result<String, String> {
    let bin = edgewire_bin();
    let out = Command::new(&bin)
        .args(args)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "edgewire {:?} failed ({}): {}{}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// `edgewire status --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub interface: String,
    #[serde(default)]
    pub manifest: Option<ManifestStatus>,
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// The hub that carries the overlay prefix now (edges only).
    #[serde(default)]
    pub overlay_via: Option<String>,
    /// The NAT in front of the WireGuard socket, as STUN told (`unknown`,
    /// `endpoint-independent`, `endpoint-dependent`, `none`).
    #[serde(default)]
    pub nat_mapping: Option<String>,
    #[serde(default)]
    pub drops: DropStatus,
    /// How packets move now (after any step down the kernel forced).
    #[serde(default)]
    pub data_path: Option<DataPathStatus>,
}

/// `data_path` of the status: `udp_send` `gso`, `sendmmsg` or `single`; `udp_receive`
/// `gro`, `recvmmsg` or `single`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataPathStatus {
    pub udp_send: String,
    pub udp_receive: String,
    pub tun_offload: bool,
    #[serde(default)]
    pub tun_udp_offload: bool,
}

/// The drop counters the lab looks at.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DropStatus {
    /// Frames from the TUN or UDP batches that could not be split.
    #[serde(default)]
    pub bad_batch: u64,
    #[serde(default)]
    pub refused: u64,
    /// Packets applications sent while the TUN's queue was full.
    #[serde(default)]
    pub tun_queue_full: Option<u64>,
    /// Data datagrams dropped because they waited too long in the UDP socket's queue.
    #[serde(default)]
    pub queue_delay: u64,
    /// TCP segments dropped because they waited too long in the TUN's queue.
    #[serde(default)]
    pub sent_queue_delay: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestStatus {
    pub serial: u64,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerStatus {
    #[serde(default)]
    pub name: String,
    pub public_key: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub last_handshake_secs: Option<u64>,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// Completed handshakes with this peer since it was configured.
    #[serde(default)]
    pub handshakes: u64,
    /// `up`, `down` or `unknown`.
    #[serde(default)]
    pub health: String,
    /// On a relayed path: the TURN server (`HOST:PORT`) and how it is reached (`udp`,
    /// `tcp` or `tls`).
    #[serde(default)]
    pub relay: Option<String>,
    #[serde(default)]
    pub relay_transport: Option<String>,
    /// How the peer is reached: `manifest`, `punched`, `lan` on a direct path; `hub` for
    /// a session made on demand that still goes through the hub.
    #[serde(default)]
    pub via: Option<String>,
}

impl Status {
    pub fn peer(&self, name: &str) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.name == name)
    }

    pub fn peer_names(&self) -> Vec<&str> {
        self.peers.iter().map(|p| p.name.as_str()).collect()
    }
}

impl PeerStatus {
    pub fn has_handshake(&self) -> bool {
        self.last_handshake_secs.is_some()
    }
}

/// One edgewire node: its host, state directory and key; running once started.
pub struct Agent {
    host: Host,
    name: String,
    state_dir: PathBuf,
    public_key: String,
    proc: Option<Proc>,
}

impl Agent {
    /// Prepares node `name` on `host`: a state directory in the lab dir and a key made by
    /// `edgewire keygen`.
    pub fn new(host: &Host, name: &str) -> Agent {
        let state_dir = host.lab_dir().join(format!("state-{name}"));
        let public_key = Agent::keygen(&state_dir);
        Agent {
            host: host.clone(),
            name: name.to_owned(),
            state_dir,
            public_key,
            proc: None,
        }
    }

    /// `edgewire keygen --state-dir DIR`: the new node's public key.
    pub fn keygen(state_dir: &Path) -> String {
        let out = run_tool(&[
            "keygen".as_ref(),
            "--state-dir".as_ref(),
            state_dir.as_os_str(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let key = out
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned();
        assert!(!key.is_empty(), "edgewire keygen printed no public key");
        key
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The running process; panics if the agent was not started.
    pub fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("agent not started")
    }

    /// Starts `edgewire run` (with `EDGEWIRE_LOG=debug` unless set) with a manifest path
    /// or URL and the pinned network key.
    pub fn start(&mut self, manifest_url: &str, network_pubkey: &str) {
        self.start_args(
            &[],
            &[
                "--manifest-url",
                manifest_url,
                "--manifest-pubkey",
                network_pubkey,
            ],
        );
    }

    /// Starts `edgewire run` with this node's state directory, interface and port, then
    /// `args` (the manifest flags: URL, keys, interval, CA, format…); the whole command
    /// line goes after `wrapper` (e.g. `unshare -m sh -c … sh`), which may be empty.
    pub fn start_args(&mut self, wrapper: &[&str], args: &[&str]) {
        assert!(self.proc.is_none(), "agent {} already started", self.name);
        let bin = edgewire_bin();
        let bin = bin.to_string_lossy();
        let state_dir = self.state_dir.to_string_lossy();
        let port = AGENT_PORT.to_string();
        // Every agent of a lab names its interface ew0, and the WireGuard control socket
        // lives in a directory shared by the whole machine: each agent gets its own.
        let control_dir = format!("{state_dir}-wg");
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([
            &*bin,
            "run",
            "--config",
            "/dev/null",
            "--state-dir",
            &state_dir,
            "--interface",
            AGENT_IFACE,
            "--listen-port",
            &port,
        ]);
        if !args.contains(&"--control-dir") {
            argv.extend(["--control-dir", &control_dir]);
        }
        argv.extend_from_slice(args);
        let mut cmd = self.host.command(&argv);
        let log_level = std::env::var("EDGEWIRE_LOG").unwrap_or_else(|_| "debug".to_owned());
        cmd.env("EDGEWIRE_LOG", log_level)
            .env("RUST_BACKTRACE", "1");
        self.proc = Some(
            self.host
                .spawn_command(&format!("edgewire-{}", self.name), cmd),
        );
    }

    /// Stops the agent (SIGTERM, then SIGKILL); it can be started again.
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop();
        }
    }

    /// Takes the running process out of this agent without stopping it (a test that
    /// lets an old process exit while a new one starts); the agent can start again.
    pub fn take_proc(&mut self) -> Option<Proc> {
        self.proc.take()
    }

    pub fn is_running(&self) -> bool {
        self.proc.as_ref().is_some_and(Proc::is_running)
    }

    /// Everything the agent has logged so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Polls the log until it contains `needle`; returns the first matching line.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_log_line(timeout, |l| l.contains(needle))
    }

    /// Polls the log until a line satisfies `matches`; returns that line.
    pub fn wait_log_line(
        &self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        poll_until(timeout, || {
            self.log().lines().find(|l| matches(l)).map(str::to_owned)
        })
    }

    /// `edgewire status --json --state-dir DIR`, run in the agent's namespace.
    pub fn status(&self) -> Result<Status, String> {
        let bin = edgewire_bin();
        let bin = bin.to_string_lossy();
        let state_dir = self.state_dir.to_string_lossy();
        let out = self
            .host
            .exec(&[&bin, "status", "--json", "--state-dir", &state_dir]);
        if !out.success() {
            return Err(format!(
                "edgewire status for {} failed ({}): {}{}",
                self.name, out.status, out.stderr, out.stdout
            ));
        }
        serde_json::from_str(&out.stdout).map_err(|e| {
            format!(
                "edgewire status --json for {} is not the expected JSON ({e}): {}",
                self.name, out.stdout
            )
        })
    }

    /// `edgewire status` as a person reads it.
    pub fn status_text(&self) -> Result<String, String> {
        let bin = edgewire_bin();
        let bin = bin.to_string_lossy();
        let state_dir = self.state_dir.to_string_lossy();
        let out = self.host.exec(&[&bin, "status", "--state-dir", &state_dir]);
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(format!("{}{}", out.stderr, out.stdout))
        }
    }

    /// Polls status until `check` accepts it; panics (with the last status and whether
    /// the process still runs) after `timeout`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Status) -> bool,
    ) -> Status {
        let mut last = None;
        let got = poll_until(timeout, || {
            let status = self.status();
            let ok = status.as_ref().is_ok_and(&mut check);
            last = Some(status.clone());
            ok.then(|| status.unwrap())
        });
        got.unwrap_or_else(|| {
            panic!(
                "{}: timed out after {timeout:?} waiting for {what}; running: {}; last status: {:#?}",
                self.name,
                self.is_running(),
                last
            )
        })
    }

    /// Waits until status answers and shows a handshake with every peer named.
    pub fn wait_handshakes(&self, peers: &[&str], timeout: Duration) -> Status {
        self.wait_status(&format!("handshakes with {peers:?}"), timeout, |s| {
            peers
                .iter()
                .all(|p| s.peer(p).is_some_and(PeerStatus::has_handshake))
        })
    }

    /// Peak resident memory (VmHWM, kB) of the running agent.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        self.proc.as_ref().and_then(|p| peak_rss_kb(p.pid()))
    }
}

/// VmHWM of a process in kB, from /proc/PID/status.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    crate::figures::status_kb(pid, "VmHWM")
}

/// Waits for an agent's status to answer at all (the agent is up and listening).
pub fn wait_status_answers(agent: &Agent, timeout: Duration) -> Status {
    wait_for(
        &format!("edgewire status of {} to answer", agent.name),
        timeout,
        || agent.status().ok(),
    )
}

/// `edgewire netcheck` on `host` with `state_dir` and `args` (the manifest flags and any
/// others), as a device's operator runs it: what it printed, and how long it took.
pub fn run_netcheck(host: &Host, state_dir: &Path, args: &[&str]) -> (ExecOutput, Duration) {
    let bin = edgewire_bin().to_string_lossy().into_owned();
    let state_dir = state_dir.to_string_lossy().into_owned();
    let mut argv = vec![bin.as_str(), "netcheck", "--config", "/dev/null"];
    argv.extend(["--state-dir", &state_dir]);
    argv.extend_from_slice(args);
    let start = Instant::now();
    let out = host.exec(&argv);
    (out, start.elapsed())
}
