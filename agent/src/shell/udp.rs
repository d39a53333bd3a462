//! The agent's one UDP socket: dual-stack where the kernel allows it, with IPv4 peers'
//! addresses kept in their plain form inside the core.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};

use smol::Async;

pub struct Udp {
    socket: Async<UdpSocket>,
    dual_stack: bool,
}

impl Udp {
    /// Binds `[::]:port` (IPv4 and IPv6); falls back to `0.0.0.0:port` on kernels built
    /// without IPv6, which small boards sometimes are.
    pub fn bind(port: u16) -> io::Result<Udp> {
        match Async::<UdpSocket>::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(socket) => Ok(Udp {
                socket,
                dual_stack: true,
            }),
            Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
                let socket = Async::<UdpSocket>::bind(([0, 0, 0, 0], port))?;
                Ok(Udp {
                    socket,
                    dual_stack: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads one datagram without waiting; `WouldBlock` when there is none.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.get_ref().recv_from(buf)?;
        Ok((n, canonical(from)))
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        self.socket.send_to(buf, to).await
    }
}

/// `::ffff:a.b.c.d` back to `a.b.c.d`, so an IPv4 peer has one address everywhere.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
