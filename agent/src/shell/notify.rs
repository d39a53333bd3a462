//! The systemd notify protocol: `READY=1`, `STATUS=…` and `WATCHDOG=1` datagrams to the
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//! Without that variable (not under systemd) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let var = |name| std::env::var(name).ok();
        Notifier::from_vars(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    /// Reads systemd's variables: the socket, and the watchdog timeout, which is ours only
    /// when WATCHDOG_PID is unset or names this process.
    fn from_vars(socket: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> Notifier {
        let socket = socket.and_then(|path| {
            let addr = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let ours = pid.is_none_or(|pid| pid == std::process::id().to_string());
        let watchdog = usec
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| ours)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to send `WATCHDOG=1`: half the watchdog timeout, as systemd advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog.map(|w| w / 2)
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket {
            // A lost notification is systemd's problem to time out on, not ours to die of.
            if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
                log::debug!("systemd notify: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_status_and_watchdog_to_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("ew-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: Some(Duration::from_secs(30)),
        };
        notifier.ready("running: 2 peers");
        assert_eq!(recv(&listener), "READY=1\nSTATUS=running: 2 peers");
        notifier.watchdog();
        assert_eq!(recv(&listener), "WATCHDOG=1");
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(15)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_socket_names_are_understood() {
        let name = format!("ew-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::from_vars(Some(&format!("@{name}")), None, None);
        notifier.status("waiting for a manifest");
        assert_eq!(recv(&listener), "STATUS=waiting for a manifest");
        assert_eq!(notifier.watchdog_interval(), None, "no WATCHDOG_USEC set");
    }

    #[test]
    fn the_watchdog_belongs_to_the_process_systemd_named() {
        let path = "/nonexistent/notify.sock";
        let mine = std::process::id().to_string();
        let n = Notifier::from_vars(Some(path), Some("20000000"), Some(&mine));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(10)));
        let n = Notifier::from_vars(Some(path), Some("20000000"), Some("1"));
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        let notifier = Notifier {
            socket: None,
            watchdog: Some(Duration::from_secs(10)),
        };
        notifier.ready("x");
        assert_eq!(notifier.watchdog_interval(), None);
    }
}
