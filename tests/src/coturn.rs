//! coturn in the lab: Debian's `turnserver` as a non-daemon with its own config file in
//! the lab directory (long-term users or a TURN REST shared secret, optional TLS on 443
//! with a certificate from a CA made for the test), `turnutils_peer` as a UDP echo peer,
//! and [`crate::netns::in_netns`] to open sockets inside a host's namespace from the test process.

use std::fs;
use std::time::Duration;

use crate::fileserver::TestCa;
use crate::host::Host;
use crate::proc::Proc;
use crate::wait::wait_for;

/// How coturn checks credentials.
#[derive(Debug, Clone)]
pub enum CoturnAuth {
    /// `lt-cred-mech` with one static `user=NAME:PASSWORD`.
    LongTerm { user: String, password: String },
    /// `use-auth-secret` + `static-auth-secret`: the TURN REST scheme.
    Secret(String),
}

#[derive(Debug, Clone)]
pub struct CoturnConfig {
    pub auth: CoturnAuth,
    pub realm: String,
    /// TLS on port 443 with a certificate for the listening address.
    pub tls: bool,
    /// Caps the allocation lifetime, to exercise refreshes in seconds.
    pub max_allocate_lifetime: Option<u32>,
    /// Non-standard permission and channel lifetimes (coturn options), likewise.
    pub permission_lifetime: Option<u32>,
    pub channel_lifetime: Option<u32>,
    /// Allocations per user at a time (`user-quota`), to provoke 486.
    pub user_quota: Option<u32>,
}

impl CoturnConfig {
    pub fn long_term(user: &str, password: &str, realm: &str) -> CoturnConfig {
        CoturnConfig {
            auth: CoturnAuth::LongTerm {
                user: user.into(),
                password: password.into(),
            },
            realm: realm.into(),
            tls: false,
            max_allocate_lifetime: None,
            permission_lifetime: None,
            channel_lifetime: None,
            user_quota: None,
        }
    }

    pub fn secret(secret: &str, realm: &str) -> CoturnConfig {
        CoturnConfig {
            auth: CoturnAuth::Secret(secret.into()),
            ..CoturnConfig::long_term("", "", realm)
        }
    }
}

/// A running coturn: UDP and TCP on 3478, TLS on 443 when configured.
pub struct Coturn {
    addr: String,
    ca: Option<TestCa>,
    proc: Proc,
}

impl Coturn {
    /// Starts coturn in `host` on `addr` (an address of that host) and waits until it
    /// listens on every configured port.
    pub fn start(host: &Host, addr: &str, config: &CoturnConfig) -> Coturn {
        let dir = host.lab_dir().join(format!("coturn-{}", host.name()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut conf = format!(
            "listening-ip={addr}\nrelay-ip={addr}\nexternal-ip={addr}\n\
             listening-port=3478\nmin-port=49152\nmax-port=49407\n\
             realm={realm}\nno-cli\nno-dtls\nlog-file=stdout\nsimple-log\nverbose\n\
             pidfile={pid}\n",
            realm = config.realm,
            pid = dir.join("turnserver.pid").display(),
        );
        match &config.auth {
            CoturnAuth::LongTerm { user, password } => {
                conf += &format!("lt-cred-mech\nuser={user}:{password}\n");
            }
            CoturnAuth::Secret(secret) => {
                conf += &format!("use-auth-secret\nstatic-auth-secret={secret}\n");
            }
        }
        let ca = config.tls.then(|| TestCa::create(&dir.join("pki"), addr));
        match &ca {
            Some(ca) => {
                conf += &format!(
                    "tls-listening-port=443\ncert={}\npkey={}\n",
                    ca.server_cert.display(),
                    ca.server_key.display()
                );
            }
            None => conf += "no-tls\n",
        }
        let options = [
            ("max-allocate-lifetime", config.max_allocate_lifetime),
            ("permission-lifetime", config.permission_lifetime),
            ("channel-lifetime", config.channel_lifetime),
            ("user-quota", config.user_quota),
        ];
        for (key, value) in options {
            if let Some(v) = value {
                conf += &format!("{key}={v}\n");
            }
        }
        let conf_path = dir.join("turnserver.conf");
        fs::write(&conf_path, conf).expect("writing turnserver.conf");
        let proc = host.spawn(
            "coturn",
            &["turnserver", "-c", &conf_path.to_string_lossy()],
        );
        let mut ports = vec![("-Hlun", "3478"), ("-Hltn", "3478")];
        if config.tls {
            ports.push(("-Hltn", "443"));
        }
        wait_for("coturn to listen", Duration::from_secs(10), || {
            assert!(proc.is_running(), "coturn exited:\n{}", proc.log());
            ports
                .iter()
                .all(|(flags, port)| listening(host, flags, port))
                .then_some(())
        });
        Coturn {
            addr: addr.to_owned(),
            ca,
            proc,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The CA that signed the TLS certificate (with TLS configured).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// `turnutils_peer`: echoes every UDP datagram back to its sender, on `addr:port`.
pub fn udp_echo_peer(host: &Host, addr: &str, port: u16) -> Proc {
    let port_s = port.to_string();
    let proc = host.spawn("udp-echo", &["turnutils_peer", "-L", addr, "-p", &port_s]);
    wait_for(
        "the UDP echo peer to listen",
        Duration::from_secs(10),
        || {
            assert!(proc.is_running(), "turnutils_peer exited:\n{}", proc.log());
            listening(host, "-Hlun", &port_s).then_some(())
        },
    );
    proc
}

fn listening(host: &Host, flags: &str, port: &str) -> bool {
    let sport = format!(":{port}");
    let out = host.exec(&["ss", flags, "sport", "=", &sport]);
    !out.stdout.trim().is_empty()
}
