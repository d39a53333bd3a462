//! Endpoint and relay names resolved off the event loop. `getaddrinfo` blocks (for
//! seconds when a DNS server is slow), so names go to a thread of their own, started on
//! the first name and then asleep in a channel receive without a timeout: an idle agent
//! never wakes it. Literal addresses never leave the loop.
//!
//! Not smol's `blocking` pool: its last thread never exits and wakes every 500 ms for
//! the life of the process, most of an idle edge's wakeups. Not the manifest thread
//! either: a lookup there would wait behind a fetch that may take the whole HTTP
//! timeout (30 s), at boot from the cache exactly when the manifest server is down.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;

/// What a name resolved to, or why it did not.
pub type Lookup = Result<Vec<SocketAddr>, String>;

/// Names (`host:port`) to resolve, and where the answers go.
type Job = (Vec<String>, smol::channel::Sender<BTreeMap<String, Lookup>>);

/// A handle to the resolver thread; clones share it.
#[derive(Clone, Default)]
pub struct Resolver {
    jobs: Rc<OnceCell<Result<mpsc::Sender<Job>, String>>>,
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver::default()
    }

    /// Resolves each `host:port` in `names`; literal addresses are answered at once.
    pub async fn lookup(&self, names: Vec<String>) -> BTreeMap<String, Lookup> {
        let (literal, names): (Vec<String>, Vec<String>) = names
            .into_iter()
            .partition(|n| n.parse::<SocketAddr>().is_ok());
        let mut answers: BTreeMap<String, Lookup> = literal
            .into_iter()
            .map(|n| {
                let addr = n.parse::<SocketAddr>().map_err(|e| e.to_string());
                (n, addr.map(|a| vec![a]))
            })
            .collect();
        if names.is_empty() {
            return answers;
        }
        let (reply, replies) = smol::channel::bounded(1);
        let sent = match self.thread() {
            Ok(jobs) => jobs
                .send((names.clone(), reply))
                .map_err(|_| "the resolver thread stopped".to_string()),
            Err(e) => Err(e),
        };
        let resolved = match sent {
            Ok(()) => replies
                .recv()
                .await
                .map_err(|_| "the resolver thread stopped".to_string()),
            Err(e) => Err(e),
        };
        match resolved {
            Ok(resolved) => answers.extend(resolved),
            Err(e) => answers.extend(names.into_iter().map(|n| (n, Err(e.clone())))),
        }
        answers
    }

    /// The thread's queue, starting the thread on first use.
    fn thread(&self) -> Result<&mpsc::Sender<Job>, String> {
        self.jobs.get_or_init(start).as_ref().map_err(Clone::clone)
    }
}

fn start() -> Result<mpsc::Sender<Job>, String> {
    let (jobs, queue) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            // Ends when the agent drops its last handle.
            while let Ok((names, reply)) = queue.recv() {
                let answers = names
                    .into_iter()
                    .map(|n| {
                        let addrs = n
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| e.to_string());
                        (n, addrs)
                    })
                    .collect();
                let _ = reply.send_blocking(answers);
            }
        })
        .map_err(|e| format!("cannot start the resolver thread: {e}"))?;
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_are_answered_without_starting_the_thread() {
        let resolver = Resolver::new();
        let answers = smol::block_on(
            resolver.lookup(vec!["192.0.2.1:51820".into(), "[2001:db8::1]:443".into()]),
        );
        assert_eq!(
            answers["192.0.2.1:51820"],
            Ok(vec!["192.0.2.1:51820".parse().unwrap()])
        );
        assert_eq!(answers.len(), 2);
        assert!(resolver.jobs.get().is_none(), "no thread for literals");
    }

    #[test]
    fn names_are_resolved_on_the_thread_and_failures_say_why() {
        let resolver = Resolver::new();
        let answers = smol::block_on(resolver.lookup(vec![
            "localhost:51820".into(),
            // No port: refused before any DNS query, so the test needs no network.
            "localhost".into(),
        ]));
        let local = answers["localhost:51820"].as_ref().unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 51820)
        );
        assert!(answers["localhost"].is_err());
        assert!(resolver.jobs.get().is_some());
    }
}
