//! The lab: unique names, the temporary directory, and the cleanup of everything a test
//! created — processes, namespaces (with their interfaces), wireguard control sockets —
//! also when the test panics.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::host::Host;
use crate::net::Wan;
use crate::wait::poll_until;

/// Namespaces the lab creates are named `ewlab-<pid>-<lab>-<host>`.
const NETNS_PREFIX: &str = "ewlab-";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's world. Create hosts, links and processes through it; drop it to remove them.
pub struct Lab {
    inner: Arc<LabInner>,
}

pub(crate) struct LabInner {
    pub(crate) test: String,
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    procs: Mutex<Vec<(u32, String)>>,
    logs: Mutex<Vec<(String, PathBuf)>>,
    wg_ifaces: Mutex<Vec<String>>,
    iface_counters: Mutex<HashMap<(String, String), u32>>,
}

impl Lab {
    /// A new lab for the test `name`, with its own directory under the system temp dir.
    pub fn new(name: &str) -> Lab {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(remove_stale_namespaces);
        let id = format!(
            "{}-{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("edgewire-lab-{name}-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Lab {
            inner: Arc::new(LabInner {
                test: name.to_owned(),
                id,
                dir,
                namespaces: Mutex::new(Vec::new()),
                procs: Mutex::new(Vec::new()),
                logs: Mutex::new(Vec::new()),
                wg_ifaces: Mutex::new(Vec::new()),
                iface_counters: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The lab's temporary directory (removed on drop unless `EDGEWIRE_KEEP_LAB=1`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A new host: a network namespace with `lo` up.
    pub fn host(&self, name: &str) -> Host {
        Host::create(self.inner.clone(), name)
    }

    /// A host that forwards IPv4 between its interfaces.
    pub fn router(&self, name: &str) -> Host {
        let host = self.host(name);
        host.enable_forwarding();
        host
    }

    /// The "internet": a router whose bridge holds the gateways of the documentation
    /// ranges (192.0.2.1, 198.51.100.1, 203.0.113.1, all /24). Attach public hosts to it.
    pub fn wan(&self) -> Wan {
        Wan::create(self)
    }

    /// Joins two hosts with a veth pair, addresses both ends (CIDR notation) and brings
    /// them up.
    pub fn link(&self, a: &Host, b: &Host, a_cidr: &str, b_cidr: &str) -> crate::net::Link {
        crate::net::Link::create(a, b, a_cidr, b_cidr)
    }

    /// Prints the tail of every process log, e.g. after a failed assertion.
    pub fn dump_logs(&self) {
        self.inner.dump_logs();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let inner = &self.inner;
        if std::thread::panicking() {
            inner.dump_logs();
        }
        inner.kill_remaining_procs();
        for ns in inner.namespaces.lock().unwrap().drain(..).rev() {
            delete_netns(&ns);
        }
        for iface in inner.wg_ifaces.lock().unwrap().drain(..) {
            // A device that was killed hard leaves its control socket behind.
            let _ = fs::remove_file(format!("/var/run/wireguard/{iface}.sock"));
        }
        if std::env::var("EDGEWIRE_KEEP_LAB").as_deref() == Ok("1") {
            eprintln!("lab {}: kept {}", inner.test, inner.dir.display());
        } else {
            let _ = fs::remove_dir_all(&inner.dir);
        }
    }
}

impl LabInner {
    /// A namespace name unique to this lab; registered for deletion.
    pub(crate) fn register_netns(&self, host: &str) -> String {
        let ns = format!("{NETNS_PREFIX}{}-{host}", self.id);
        self.namespaces.lock().unwrap().push(ns.clone());
        ns
    }

    /// The next interface name `{stem}{n}` inside the namespace `ns`.
    pub(crate) fn next_iface(&self, ns: &str, stem: &str) -> String {
        let mut counters = self.iface_counters.lock().unwrap();
        let n = counters
            .entry((ns.to_owned(), stem.to_owned()))
            .or_default();
        let name = format!("{stem}{n}");
        *n += 1;
        name
    }

    /// A globally unique interface name (≤ 15 characters) for devices whose control
    /// socket lives in the shared `/var/run/wireguard`.
    pub(crate) fn unique_wg_iface(&self) -> String {
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("wg{}x{n}", std::process::id());
        assert!(name.len() <= 15, "interface name {name} is too long");
        self.wg_ifaces.lock().unwrap().push(name.clone());
        name
    }

    /// A log path for a process labelled `label` on `host`, unique within the lab.
    pub(crate) fn log_path(&self, host: &str, label: &str) -> PathBuf {
        let logs = self.logs.lock().unwrap();
        let base = format!("{host}-{label}").replace(['/', ' '], "_");
        let mut path = self.dir.join(format!("{base}.log"));
        let mut n = 1;
        while logs.iter().any(|(_, p)| p == &path) {
            n += 1;
            path = self.dir.join(format!("{base}.{n}.log"));
        }
        path
    }

    pub(crate) fn register_proc(&self, pid: u32, label: &str, log: &Path) {
        self.procs.lock().unwrap().push((pid, label.to_owned()));
        self.logs
            .lock()
            .unwrap()
            .push((label.to_owned(), log.to_path_buf()));
    }

    pub(crate) fn unregister_proc(&self, pid: u32) {
        self.procs.lock().unwrap().retain(|(p, _)| *p != pid);
    }

    fn dump_logs(&self) {
        for (label, path) in self.logs.lock().unwrap().iter() {
            let text = read_tail(path, 8 * 1024);
            eprintln!(
                "----- {} [{}] {} -----\n{}",
                self.test,
                label,
                path.display(),
                text.trim_end()
            );
        }
    }

    /// Processes whose guard outlives the lab: they are still our unreaped children, so
    /// their PIDs are safe to signal.
    fn kill_remaining_procs(&self) {
        let procs: Vec<u32> = self.procs.lock().unwrap().iter().map(|p| p.0).collect();
        for &pid in &procs {
            // SAFETY: plain syscall; the PID belongs to an unreaped child of ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let all_gone = poll_until(Duration::from_secs(3), || {
            procs.iter().all(|&pid| !alive(pid)).then_some(())
        });
        if all_gone.is_none() {
            for &pid in &procs {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn read_tail(path: &Path, max: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn delete_netns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "delete", ns]).status();
}

/// Namespaces left by lab processes that died without cleaning up (SIGKILL, abort).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let ns = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = ns.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(ns);
        }
    }
}
