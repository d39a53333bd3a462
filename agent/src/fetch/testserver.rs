//! A tiny HTTP(S) server on 127.0.0.1 for the fetcher's tests: it answers each
//! connection with the next scripted reply and records the requests it saw.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Reply {
    /// Written as is, then the connection is closed.
    Raw(Vec<u8>),
    /// The bytes, then silence for the duration.
    Stall(Vec<u8>, Duration),
}

/// `200 OK` with the body, and an ETag when given.
pub fn ok(body: &[u8], etag: Option<&str>) -> Reply {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(etag) = etag {
        head.push_str(&format!("ETag: {etag}\r\n"));
    }
    head.push_str("\r\n");
    Reply::Raw([head.as_bytes(), body].concat())
}

pub fn status(code: u16) -> Reply {
    Reply::Raw(
        format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

pub struct TestServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start(replies: Vec<Reply>) -> TestServer {
        Self::start_with(replies, None)
    }

    /// With `tls`, every connection is TLS with that server config.
    pub fn start_with(replies: Vec<Reply>, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((tcp, _)) = listener.accept() else {
                    return;
                };
                match &tls {
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, tcp), reply, &seen);
                    }
                    None => serve(tcp, reply, &seen),
                }
            }
        });
        TestServer { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The request heads seen so far, header names lowercased.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(mut stream: S, reply: Reply, seen: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head)
        .lines()
        .map(|l| match l.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    seen.lock().unwrap().push(text);
    match reply {
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
        }
        Reply::Stall(bytes, pause) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
            std::thread::sleep(pause);
        }
    }
}

/// Connects and drops: for a port that is sure to refuse.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    // Nothing listens now; a connect is refused.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    port
}
