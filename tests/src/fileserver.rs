//! HTTPS file serving for manifests: a certificate authority made for the test (openssl)
//! and nginx as a non-daemon in a host, with its config, pid, logs and temp files in the
//! lab directory. nginx sends ETags and answers `If-None-Match` with 304.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::host::Host;
use crate::proc::Proc;
use crate::wait::wait_for;

/// A CA and one ECDSA P-256 server certificate for an IP address (in subjectAltName).
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM): what clients pin.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Makes `DIR/ca.pem` and a server certificate for `ip`, valid for two days.
    pub fn create(dir: &Path, ip: &str) -> TestCa {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (ca_key, ca_cert, key, csr, cert, ext) = (
            p("ca.key"),
            p("ca.pem"),
            p("server.key"),
            p("server.csr"),
            p("server.pem"),
            p("server.ext"),
        );
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca_cert, "-days", "2"],
            &["-subj", "/CN=edgewire lab CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]);
        openssl(&[
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={ip}")],
        ]);
        fs::write(
            &ext,
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("writing the certificate extensions");
        openssl(&[
            &[
                "x509", "-req", "-in", &csr, "-CA", &ca_cert, "-CAkey", &ca_key,
            ][..],
            &[
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        ]);
        TestCa {
            ca_cert: ca_cert.into(),
            server_cert: cert.into(),
            server_key: key.into(),
        }
    }
}

fn openssl(parts: &[&[&str]]) {
    let args: Vec<&str> = parts.concat();
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .expect("running openssl (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nginx serving a directory over HTTPS (port 443) and HTTP (port 80) on one address.
pub struct FileServer {
    addr: String,
    root: PathBuf,
    ca: TestCa,
    proc: Proc,
}

impl FileServer {
    /// Starts nginx in `host`, listening on `addr` (an address of that host), and waits
    /// until it accepts connections.
    pub fn start(host: &Host, addr: &str) -> FileServer {
        let dir = host.lab_dir().join(format!("nginx-{}", host.name()));
        let root = dir.join("www");
        let tmp = dir.join("tmp");
        for d in [&root, &tmp] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        let ca = TestCa::create(&dir.join("pki"), addr);
        let d = |p: &Path| p.to_string_lossy().into_owned();
        let (dir_s, root_s, tmp_s) = (d(&dir), d(&root), d(&tmp));
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {dir_s}/nginx.pid;\n\
             error_log stderr info;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {dir_s}/access.log;\n  default_type application/octet-stream;\n\
             \x20 client_body_temp_path {tmp_s}/body;\n  proxy_temp_path {tmp_s}/proxy;\n\
             \x20 fastcgi_temp_path {tmp_s}/fastcgi;\n  uwsgi_temp_path {tmp_s}/uwsgi;\n\
             \x20 scgi_temp_path {tmp_s}/scgi;\n\
             \x20 server {{\n    listen {addr}:443 ssl;\n    listen {addr}:80;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   root {root_s};\n    etag on;\n  }}\n}}\n",
            cert = ca.server_cert.display(),
            key = ca.server_key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("writing nginx.conf");
        let conf_s = d(&conf_path);
        let proc = host.spawn(
            "nginx",
            &["nginx", "-e", "stderr", "-p", &dir_s, "-c", &conf_s],
        );
        wait_for("nginx to listen on 443", Duration::from_secs(10), || {
            assert!(proc.is_running(), "nginx exited:\n{}", proc.log());
            let out = host.exec(&["ss", "-Hltn", "sport", "=", ":443"]);
            (!out.stdout.trim().is_empty()).then_some(())
        });
        FileServer {
            addr: addr.to_owned(),
            root,
            ca,
            proc,
        }
    }

    /// Publishes `contents` as `/name`, atomically (write, then rename).
    pub fn publish(&self, name: &str, contents: &[u8]) {
        let tmp = self.root.join(format!(".{name}.tmp"));
        fs::write(&tmp, contents).expect("writing a published file");
        fs::rename(&tmp, self.root.join(name)).expect("renaming a published file");
    }

    pub fn https_url(&self, name: &str) -> String {
        format!("https://{}/{name}", self.addr)
    }

    pub fn http_url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}
