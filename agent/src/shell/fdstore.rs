//! Descriptors handed over through systemd: the ones passed to us at start
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`, as sd_listen_fds_with_names reads
//! them) and the service's descriptor store (`FDSTORE=1` with the descriptor attached,
//! `FDSTOREREMOVE=1`), over the socket named by `$NOTIFY_SOCKET`.
//!
//! The unit uses them to give the agent its TUN device where `/dev/net/tun` is 0600
//! (see `tun.rs`). Without systemd's variables nothing is passed and nothing is sent.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// systemd passes descriptors from 3 on (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;

/// Takes the descriptor systemd passed under `name`, if any. The others passed with it
/// are left open but marked close-on-exec, as sd_listen_fds does.
pub fn take(name: &str) -> Option<OwnedFd> {
    let var = |n| std::env::var(n).ok();
    let passed = passed(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    let mut found = None;
    for (fd, fd_name) in passed {
        // SAFETY: fcntl on a descriptor number has no memory effects; systemd opened it.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            continue; // not open after all: nothing to take
        }
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        if found.is_none() && fd_name == name {
            // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours)
            // and nothing else in the program owns it; it is taken once.
            found = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    found
}

/// The descriptors systemd says it passed to process `me`, with their names. Names
/// missing from LISTEN_FDNAMES are "unknown", as systemd calls unnamed ones.
fn passed(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Vec<(RawFd, String)> {
    // The variables are inherited: they are ours only when LISTEN_PID names us.
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(me) {
        return Vec::new();
    }
    let Some(count) = count.and_then(|c| c.parse::<RawFd>().ok()) else {
        return Vec::new();
    };
    let mut names = names.unwrap_or("").split(':');
    (0..count.clamp(0, 1024))
        .map(|i| {
            let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown");
            (FIRST_FD + i, name.to_string())
        })
        .collect()
}

/// Puts `fd` in the service's descriptor store under `name` (the unit needs
/// `FileDescriptorStoreMax=` ≥ 1 and a `NotifyAccess=` that admits this process).
pub fn store(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let message = format!("FDSTORE=1\nFDNAME={name}");
    send(&notify_socket()?, message.as_bytes(), Some(fd))
}

/// Asks systemd to close its copy of the descriptor stored under `name`.
pub fn forget(name: &str) -> io::Result<()> {
    let message = format!("FDSTOREREMOVE=1\nFDNAME={name}");
    send(&notify_socket()?, message.as_bytes(), None)
}

/// `$NOTIFY_SOCKET`: a path, or `@name` in the abstract namespace.
fn notify_socket() -> io::Result<SocketAddr> {
    let path = std::env::var("NOTIFY_SOCKET").map_err(|_| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "NOTIFY_SOCKET is not set (not started by systemd, or no NotifyAccess=)",
        )
    })?;
    match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    }
}

/// One datagram to systemd, with `fd` attached as SCM_RIGHTS when given. (std's
/// ancillary-data API is not stable yet, hence sendmsg by hand.)
fn send(addr: &SocketAddr, message: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.connect_addr(addr)?;
    let Some(fd) = fd else {
        socket.send(message)?;
        return Ok(());
    };
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut libc::c_void,
        iov_len: message.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no buffers); the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes, enough for one
    // header and one descriptor, so CMSG_FIRSTHDR is non-null and CMSG_DATA in bounds.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw);
        libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_descriptors_are_numbered_from_3_with_their_names() {
        let got = passed(Some("42"), Some("2"), Some("tun:status"), 42);
        assert_eq!(got, vec![(3, "tun".into()), (4, "status".into())]);
    }

    #[test]
    fn descriptors_meant_for_another_process_are_not_ours() {
        assert!(passed(Some("41"), Some("1"), Some("tun"), 42).is_empty());
        assert!(passed(None, Some("1"), Some("tun"), 42).is_empty());
    }

    #[test]
    fn unnamed_descriptors_are_unknown_and_bad_counts_pass_nothing() {
        let got = passed(Some("7"), Some("2"), None, 7);
        assert_eq!(got, vec![(3, "unknown".into()), (4, "unknown".into())]);
        assert!(passed(Some("7"), Some("x"), None, 7).is_empty());
        assert!(passed(Some("7"), Some("-1"), None, 7).is_empty());
    }

    #[test]
    fn a_descriptor_sent_to_the_notify_socket_arrives_attached_with_its_message() {
        let dir = std::env::temp_dir().join(format!("ew-fdstore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let addr = SocketAddr::from_pathname(&path).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        send(&addr, b"FDSTORE=1\nFDNAME=tun", Some(fd)).unwrap();

        let mut buf = [0u8; 128];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr pointing at live local buffers.
        let (n, fd) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control) as _;
            let n = libc::recvmsg(listener.as_raw_fd(), &mut msg, 0);
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null(), "no descriptor attached");
            assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
            (
                n,
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()),
            )
        };
        assert_eq!(&buf[..n as usize], b"FDSTORE=1\nFDNAME=tun");
        // SAFETY: the kernel just gave this process that descriptor.
        let received = unsafe { OwnedFd::from_raw_fd(fd) };
        let link = std::fs::read_link(format!("/proc/self/fd/{}", received.as_raw_fd())).unwrap();
        assert_eq!(link, std::path::Path::new("/dev/null"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
