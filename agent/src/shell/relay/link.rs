//! The connection to one TURN server: a UDP socket, a TCP stream, or TLS over TCP (for
//! networks that let only TCP 443 out; TLS on 443 looks like HTTPS). The TURN client
//! above it frames the bytes; this only moves them, without blocking the event loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::FutureExt;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use smol::{Async, Timer};

/// How long a TCP or TLS connection to a relay may take before the next transport is
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Udp,
    Tcp,
    Tls,
}

impl Kind {
    /// The word `status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
        }
    }
}

pub enum Link {
    Udp(Async<UdpSocket>),
    Tcp(Async<TcpStream>),
    Tls(Box<TlsStream>),
}

impl Link {
    /// Connects to `server`; `host` is the name the TLS certificate must carry.
    pub async fn connect(
        kind: Kind,
        server: SocketAddr,
        host: &str,
        tls: &Arc<ClientConfig>,
    ) -> io::Result<Link> {
        let attempt = async {
            match kind {
                Kind::Udp => {
                    let any: SocketAddr = if server.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        ([0u16; 8], 0).into()
                    };
                    let socket = Async::<UdpSocket>::bind(any)?;
                    socket.get_ref().connect(server)?;
                    Ok(Link::Udp(socket))
                }
                Kind::Tcp => Ok(Link::Tcp(Async::<TcpStream>::connect(server).await?)),
                Kind::Tls => {
                    let tcp = Async::<TcpStream>::connect(server).await?;
                    let name = ServerName::try_from(host.to_string())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                    Ok(Link::Tls(Box::new(
                        TlsStream::connect(tcp, name, tls.clone()).await?,
                    )))
                }
            }
        };
        attempt
            .or(async {
                Timer::after(CONNECT_TIMEOUT).await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer within 5 s",
                ))
            })
            .await
    }

    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Link::Udp(s) => s.readable().await,
            Link::Tcp(s) => s.readable().await,
            Link::Tls(s) => s.tcp.readable().await,
        }
    }

    /// Whether the connection has something to read, registering `cx` when not.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Link::Udp(s) => s.poll_readable(cx),
            Link::Tcp(s) => s.poll_readable(cx),
            Link::Tls(s) => s.tcp.poll_readable(cx),
        }
    }

    /// Whether a stream can take more bytes, registering `cx` when not.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Link::Udp(s) => s.poll_writable(cx),
            Link::Tcp(s) => s.poll_writable(cx),
            Link::Tls(s) => s.tcp.poll_writable(cx),
        }
    }

    /// One datagram without waiting; dropped when the socket is full, as any UDP send
    /// may be. Only for a UDP link.
    pub fn try_send_datagram(&self, datagram: &[u8]) -> io::Result<()> {
        let Link::Udp(s) = self else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        match s.get_ref().send(datagram) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes from the front of `pending` without waiting, draining what was taken: as
    /// much of the stream as the socket takes over TCP and TLS (a UDP link sends it as
    /// one datagram).
    pub fn try_send(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Link::Udp(_) => {
                let sent = self.try_send_datagram(pending);
                pending.clear();
                sent
            }
            Link::Tcp(s) => {
                while !pending.is_empty() {
                    match s.get_ref().write(pending) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => drop(pending.drain(..n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Link::Tls(s) => s.try_write(pending),
        }
    }

    /// Whether bytes given to a stream still wait inside the TLS layer.
    pub fn tls_backlog(&self) -> bool {
        matches!(self, Link::Tls(s) if s.conn.wants_write())
    }

    /// A datagram, or the next chunk of the stream, without waiting: `WouldBlock` when
    /// there is none, `Ok(0)` when a stream was closed.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Udp(s) => s.get_ref().recv(buf),
            Link::Tcp(s) => s.get_ref().read(buf),
            Link::Tls(s) => s.try_read(buf),
        }
    }

    /// One datagram, or all of `bytes` on a stream.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(s) => s.send(bytes).await.map(drop),
            Link::Tcp(s) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = s.write_with(|s| (&*s).write(rest)).await?;
                    rest = &rest[n..];
                }
                Ok(())
            }
            Link::Tls(s) => s.write_all(bytes).await,
        }
    }
}

/// rustls driven by hand over a non-blocking TCP stream: records are read when the
/// socket is readable and written as soon as rustls has them.
pub struct TlsStream {
    tcp: Async<TcpStream>,
    conn: ClientConnection,
}

impl TlsStream {
    async fn connect(
        tcp: Async<TcpStream>,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = TlsStream { tcp, conn };
        while stream.conn.is_handshaking() {
            stream.flush().await?;
            if stream.conn.wants_read() {
                stream.tcp.readable().await?;
                match stream.read_records() {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        stream.flush().await?;
        Ok(stream)
    }

    async fn write_all(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.conn.writer().write_all(plaintext)?;
        self.flush().await
    }

    /// Pushes out every record rustls has ready.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp.get_ref()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Pushes out the records rustls holds, then hands it `pending` and pushes again,
    /// without waiting. rustls takes the bytes only once its last records are out, so
    /// what waits stays in `pending`, whose size the caller bounds.
    fn try_write(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        loop {
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.tcp.get_ref()) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            let n = self.conn.writer().write(pending)?;
            pending.drain(..n);
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.read_records()? == 0 {
                return Ok(0);
            }
        }
    }

    /// Reads what the socket has and lets rustls decrypt it. `Ok(0)` at end of stream.
    fn read_records(&mut self) -> io::Result<usize> {
        let n = self.conn.read_tls(&mut self.tcp.get_ref())?;
        if n > 0 {
            self.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }
}
