//! A process the lab started: killed by its own PID when dropped, its output kept in a log
//! file in the lab's directory so a failing test can show it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lab::LabInner;
use crate::wait::poll_until;

/// How long a process gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A running process. Dropping it sends SIGTERM, waits up to 3 s, then SIGKILL, and reaps
/// it. Only this PID is ever signalled.
pub struct Proc {
    label: String,
    pid: u32,
    child: Mutex<Child>,
    log: PathBuf,
    lab: Arc<LabInner>,
}

impl Proc {
    pub(crate) fn new(label: String, child: Child, log: PathBuf, lab: Arc<LabInner>) -> Proc {
        let pid = child.id();
        lab.register_proc(pid, &label, &log);
        Proc {
            label,
            pid,
            child: Mutex::new(child),
            log,
            lab,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The file that receives the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if the process has ended (it is reaped), `None` while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap();
        child.try_wait().ok().flatten()
    }

    /// The scheduling policy of the process's main thread (`SCHED_OTHER`, `SCHED_BATCH`,
    /// …: field 41 of /proc/PID/stat); `None` once it is gone.
    pub fn sched_policy(&self) -> Option<i32> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // After the command name, which may hold spaces, the fields from the third on.
        let fields = stat.rsplit_once(')')?.1;
        fields.split_whitespace().nth(41 - 3)?.parse().ok()
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.exit_status())
    }

    /// Sends a signal to this process (by its PID).
    pub fn signal(&self, signal: i32) {
        if self.is_running() {
            // SAFETY: kill has no memory preconditions; the PID is our unreaped child, so
            // it cannot have been reused by another process.
            unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after a grace period. Returns its status.
    pub fn stop(&self) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_exit(TERM_GRACE) {
            return Some(status);
        }
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        self.lab.unregister_proc(self.pid);
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proc({} pid {})", self.label, self.pid)
    }
}
