//! The lab: unique names, the temporary directory, and the cleanup of everything a test
//! created — processes, namespaces (with their interfaces), wireguard control sockets —
//! also when the test panics.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
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
        let inner = Arc::new(LabInner {
            test: name.to_owned(),
            id,
            dir,
            namespaces: Mutex::new(Vec::new()),
            procs: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            wg_ifaces: Mutex::new(Vec::new()),
            iface_counters: Mutex::new(HashMap::new()),
        });
        let mut live = LIVE_LABS.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|l| l.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
        drop(live);
        Lab { inner }
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
        if std::thread::panicking() {
            self.inner.dump_logs();
        }
        self.inner.cleanup();
    }
}

/// Every lab alive in this process, for [`Lab::install_panic_cleanup`].
static LIVE_LABS: Mutex<Vec<Weak<LabInner>>> = Mutex::new(Vec::new());

impl Lab {
    /// For binaries built with `panic = "abort"` (the workspace's release profile), where
    /// no `Drop` runs on a panic: a panic hook that shows the logs and removes every live
    /// lab's processes and namespaces before the process aborts.
    pub fn install_panic_cleanup() {
        if cfg!(panic = "unwind") {
            return; // the guards' Drop does it
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            // try_lock: the panic may have happened while a lock was held.
            let labs: Vec<Arc<LabInner>> = match LIVE_LABS.try_lock() {
                Ok(labs) => labs.iter().filter_map(Weak::upgrade).collect(),
                Err(_) => return,
            };
            for lab in labs {
                lab.dump_logs();
                lab.cleanup();
            }
        }));
    }
}

impl LabInner {
    /// Removes everything the lab made. Idempotent.
    fn cleanup(&self) {
        self.kill_remaining_procs();
        let namespaces: Vec<String> = match self.namespaces.try_lock() {
            Ok(mut ns) => ns.drain(..).rev().collect(),
            Err(_) => Vec::new(),
        };
        for ns in namespaces {
            delete_netns(&ns);
        }
        if let Ok(mut ifaces) = self.wg_ifaces.try_lock() {
            for iface in ifaces.drain(..) {
                // A device that was killed hard leaves its control socket behind.
                let _ = fs::remove_file(format!("/var/run/wireguard/{iface}.sock"));
            }
        }
        if std::env::var("EDGEWIRE_KEEP_LAB").as_deref() == Ok("1") {
            if self.dir.exists() {
                eprintln!("lab {}: kept {}", self.test, self.dir.display());
            }
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

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
        let Ok(logs) = self.logs.try_lock() else {
            return;
        };
        for (label, path) in logs.iter() {
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
        let procs: Vec<u32> = match self.procs.try_lock() {
            Ok(procs) => procs.iter().map(|p| p.0).collect(),
            Err(_) => return,
        };
        if procs.is_empty() {
            return;
        }
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
