//! A NETLINK_ROUTE socket: send a request, wait for its answer. The kernel
//! answers these at once, so the calls block the loop for microseconds; a receive
//! timeout bounds the rare case where it does not. The only `unsafe` of the netlink
//! code lives here: the libc calls.

use super::wire::{self, Answer, Request};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct RouteSocket {
    fd: OwnedFd,
    /// A cell, so that reading a counter (`&self`, from the status report) can ask too.
    seq: Cell<u32>,
}

impl RouteSocket {
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: the option value is a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteSocket {
            fd,
            seq: Cell::new(0),
        })
    }

    /// Sends `request` and returns the kernel's verdict: `Err` carries its errno.
    pub fn execute(&self, request: Request) -> io::Result<()> {
        self.ask(request, |answer| match answer {
            Answer::Ack(Ok(())) => Ok(()),
            Answer::Ack(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Answer::Message(kind, _) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel answered a change with a message of type {kind}"),
            )),
        })
    }

    /// Sends `request` and gives the kernel's answer to `read`.
    pub fn ask<T>(
        &self,
        request: Request,
        read: impl FnOnce(Answer<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let message = request.encode(seq);
        // SAFETY: an all-zero sockaddr_nl is valid; family set below; pid 0 is the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        // A link's message is one to two kilobytes.
        let mut buf = [0u8; 8192];
        // Each receive waits at most the socket's 2 s timeout; a few stray messages are
        // skipped, more than that means something is wrong.
        for _ in 0..16 {
            // SAFETY: the buffer is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match wire::answer(&buf[..n as usize], seq) {
                Some(answer) => return read(answer),
                // Another message (a late answer to an older request): keep reading.
                None => continue,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the kernel did not answer a netlink request",
        ))
    }
}
