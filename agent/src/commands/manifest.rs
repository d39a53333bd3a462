//! `edgewire manifest keygen|build|show|import-wg|export-kilo`: the operator's side of
//! manifest trust (import-wg and export-kilo live in their own files).
//! Every error names the file it is about.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::ManifestCommand;
use crate::fsutil::write_atomic;
use crate::manifest::{self, Envelope, ManifestError, NetworkKeyPair, NetworkPublicKey, Role};

pub fn execute(command: ManifestCommand) -> anyhow::Result<()> {
    match command {
        ManifestCommand::Keygen { out } => keygen(&out),
        ManifestCommand::Build {
            source,
            key,
            out,
            turn_secret_file,
            turn_ttl,
        } => {
            let secret = turn_secret_file
                .as_deref()
                .map(read_turn_secret)
                .transpose()?;
            let mint = secret.map(|s| Minter {
                secret: s,
                ttl: turn_ttl,
            });
            build(&source, &key, &out, mint.as_ref())
        }
        ManifestCommand::Show { manifest, pubkey } => show(&manifest, pubkey.as_deref()),
        ManifestCommand::ImportWg {
            file,
            address,
            public_key,
        } => super::import_wg::run(&file, address, public_key),
        ManifestCommand::ExportKilo { source, keepalive } => {
            super::export_kilo::run(&source, keepalive)
        }
    }
}

/// `FILE` gets the private key (0600, never replaced), `FILE.pub` the public key; the
/// public key is also the only line on stdout, for scripts.
fn keygen(out: &Path) -> anyhow::Result<()> {
    let (pair, pkcs8) = NetworkKeyPair::generate()?;
    let pem = manifest::pkcs8_to_pem(&pkcs8);
    write_atomic(out, pem.as_bytes(), 0o600, false).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists: a network key is not replaced by accident (every device pins \
             it); pick another file name, or remove this one first",
            out.display()
        ),
        _ => anyhow::anyhow!("writing the network key {}: {e}", out.display()),
    })?;
    let public = pair.public_key().to_string();
    let pub_path = pub_path(out);
    write_atomic(&pub_path, format!("{public}\n").as_bytes(), 0o644, true)
        .with_context(|| format!("writing the public key {}", pub_path.display()))?;
    println!("{public}");
    Ok(())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

/// Mints coturn REST credentials (`use-auth-secret`): the devices get a username that
/// expires and its HMAC, never the shared secret itself.
struct Minter {
    secret: Vec<u8>,
    ttl: std::time::Duration,
}

impl Minter {
    fn mint(&self, network: &str) -> (String, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::turn::rest_credentials(&self.secret, network, now + self.ttl.as_secs())
    }
}

/// coturn's `static-auth-secret`, as the file holds it (one line; surrounding white
/// space is not part of it).
fn read_turn_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the TURN secret {}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(
        !secret.is_empty(),
        "the TURN secret file {} is empty",
        path.display()
    );
    Ok(secret.as_bytes().to_vec())
}

fn build(source: &Path, key_path: &Path, out: &Path, mint: Option<&Minter>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("reading the manifest source {}", source.display()))?;
    let minting = mint.map(|m| move |network: &str| m.mint(network));
    let minting = minting.as_ref().map(|f| f as manifest::Mint<'_>);
    let manifest = manifest::from_json_minting(&text, minting)
        .with_context(|| format!("{}", source.display()))?;
    let key = load_network_key(key_path)?;
    let bytes =
        manifest::seal(&manifest, &key).with_context(|| format!("signing {}", source.display()))?;
    // Proves the bytes open as a device will open them, before anything is written.
    manifest::open(&bytes, &[key.public_key()])
        .context("the built manifest does not open; this is a bug")?;
    write_atomic(out, &bytes, 0o644, true).with_context(|| format!("writing {}", out.display()))?;
    let hubs = manifest
        .nodes
        .iter()
        .filter(|n| n.role == Role::Hub)
        .count();
    eprintln!(
        "wrote {}: network {:?}, serial {}, {} nodes ({hubs} hubs), {} relays, {} bytes, \
         signed by {}",
        out.display(),
        manifest.network,
        manifest.serial,
        manifest.nodes.len(),
        manifest.relays.len(),
        bytes.len(),
        key.public_key()
    );
    Ok(())
}

fn load_network_key(path: &Path) -> anyhow::Result<NetworkKeyPair> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading the network key {}", path.display()))?;
    let mode = file
        .metadata()
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    let mut text = String::new();
    file.take(64 * 1024)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the network key {}", path.display()))?;
    // The .pub next to the key is the easy slip; say so before anything about modes,
    // which only matter for a private key.
    if text.trim().parse::<NetworkPublicKey>().is_ok() {
        let hint = match path.to_str().and_then(|p| p.strip_suffix(".pub")) {
            Some(private) => format!("; the private key is probably {private}"),
            None => String::new(),
        };
        bail!(
            "{} holds a network public key: --key needs the private key written by              `edgewire manifest keygen`{hint}",
            path.display()
        );
    }
    let pair = NetworkKeyPair::from_pem(&text)
        .with_context(|| format!("the network key {}", path.display()))?;
    if mode & 0o077 != 0 {
        // A warning, not a refusal: this runs on an operator's machine, where the key
        // may sit in a vault-mounted or CI path whose mode the operator does not choose.
        log::warn!(
            "the network key {} is open to other users (mode {mode:04o}); whoever reads \
             it can sign manifests every device trusts: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(pair)
}

fn show(path: &Path, pubkey: Option<&str>) -> anyhow::Result<()> {
    let bytes =
        manifest::read_bounded(path).with_context(|| format!("reading {}", path.display()))?;
    let envelope = Envelope::parse(&bytes).map_err(|e| local_file_error(path, &bytes, e))?;
    let (manifest, signature) = match pubkey {
        Some(text) => {
            let key = parse_pubkey(text)?;
            let verified = envelope.verify(&[key]).map_err(|e| match e {
                ManifestError::BadSignature => anyhow::Error::new(LocalFileError {
                    what: format!(
                        "{}: the signature does not match --pubkey {text}: the manifest \
                         was signed with another network key, or changed after signing",
                        path.display()
                    ),
                    error: e,
                }),
                e => local_file_error(path, &bytes, e),
            })?;
            let manifest = verified
                .decode()
                .with_context(|| format!("{}", path.display()))?;
            (manifest, format!("valid (key {})", verified.key()))
        }
        None => {
            let manifest = envelope
                .decode_unverified()
                .with_context(|| format!("{}", path.display()))?;
            (
                manifest,
                "not checked (pass --pubkey KEY to verify)".to_string(),
            )
        }
    };
    print!("{}", manifest::render(&manifest, bytes.len(), &signature));
    Ok(())
}

/// The manifest errors speak of "the URL" and "--manifest-pubkey", as the agent sees
/// them; for a file the operator named on the command line, say it about the file.
/// The original error stays the source, so callers can still match on it.
fn local_file_error(path: &Path, bytes: &[u8], e: ManifestError) -> anyhow::Error {
    let file = path.display();
    let what = match &e {
        ManifestError::BadMagic if bytes.trim_ascii_start().starts_with(b"{") => format!(
            "{file} is a JSON manifest source, not a built manifest: sign it with \
             `edgewire manifest build {file} --key KEY -o MANIFEST` and show that"
        ),
        ManifestError::BadMagic => format!(
            "{file} is not an edgewire manifest (it does not start with \"EWMF\"): give \
             a file written by `edgewire manifest build`"
        ),
        ManifestError::TooLarge(n) => format!(
            "{file} is {n} bytes, larger than any manifest: give a file written by \
             `edgewire manifest build`"
        ),
        _ => format!("{file}"),
    };
    match &e {
        ManifestError::BadMagic | ManifestError::TooLarge(_) => {
            // The manifest module's wording ("is the URL ...") would only confuse here.
            anyhow::Error::new(LocalFileError { what, error: e })
        }
        _ => anyhow::Error::new(e).context(what),
    }
}

/// A manifest error restated for a local file. `{:#}` prints only the restatement
/// (the error is deliberately not a `source()`); tests match on `error`.
#[derive(Debug)]
struct LocalFileError {
    what: String,
    #[cfg_attr(not(test), allow(dead_code))]
    error: ManifestError,
}

impl std::fmt::Display for LocalFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for LocalFileError {}

/// Base64, or the path of a file holding it (such as the `.pub` from `manifest keygen`).
fn parse_pubkey(text: &str) -> anyhow::Result<NetworkPublicKey> {
    if let Ok(key) = text.parse() {
        return Ok(key);
    }
    if Path::new(text).is_file() {
        let content = std::fs::read_to_string(text).with_context(|| format!("reading {text}"))?;
        return content
            .parse()
            .with_context(|| format!("the public key file {text}"));
    }
    bail!("--pubkey {text:?} is neither a base64 network public key nor a file holding one")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    const LAB_JSON: &str = include_str!("../manifest/testdata/lab.json");

    #[test]
    fn keygen_build_and_show_work_together() {
        let dir = TestDir::new("tools");
        let key = dir.path("net.key");
        keygen(&key).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let public: NetworkPublicKey = std::fs::read_to_string(pub_path(&key))
            .unwrap()
            .parse()
            .unwrap();
        std::fs::write(dir.path("lab.json"), LAB_JSON).unwrap();
        build(&dir.path("lab.json"), &key, &dir.path("lab.ewm"), None).unwrap();
        let bytes = std::fs::read(dir.path("lab.ewm")).unwrap();
        assert_eq!(manifest::open(&bytes, &[public]).unwrap().network, "lab");
        show(&dir.path("lab.ewm"), Some(&public.to_string())).unwrap();
        show(&dir.path("lab.ewm"), Some(pub_path(&key).to_str().unwrap())).unwrap();
        show(&dir.path("lab.ewm"), None).unwrap();
    }

    #[test]
    fn keygen_refuses_to_replace_a_network_key() {
        let dir = TestDir::new("netkey");
        let key = dir.path("net.key");
        keygen(&key).unwrap();
        let before = std::fs::read(&key).unwrap();
        let err = keygen(&key).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), before);
    }

    #[test]
    fn show_with_another_key_is_a_signature_error_naming_the_file() {
        let dir = TestDir::new("showbad");
        keygen(&dir.path("a.key")).unwrap();
        std::fs::write(dir.path("lab.json"), LAB_JSON).unwrap();
        build(
            &dir.path("lab.json"),
            &dir.path("a.key"),
            &dir.path("lab.ewm"),
            None,
        )
        .unwrap();
        let other = NetworkKeyPair::from_seed(&[1; 32]).public_key().to_string();
        let err = show(&dir.path("lab.ewm"), Some(&other)).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LocalFileError>().map(|e| &e.error),
            Some(ManifestError::BadSignature)
        ));
        let text = format!("{err:#}");
        assert!(
            text.contains("lab.ewm: the signature does not match --pubkey"),
            "{text}"
        );
        // The agent's setting is not what the operator typed here.
        assert!(!text.contains("--manifest-pubkey"), "{text}");
    }

    #[test]
    fn show_with_another_keys_pub_file_names_that_file() {
        let dir = TestDir::new("showpubfile");
        keygen(&dir.path("a.key")).unwrap();
        keygen(&dir.path("other.key")).unwrap();
        std::fs::write(dir.path("lab.json"), LAB_JSON).unwrap();
        build(
            &dir.path("lab.json"),
            &dir.path("a.key"),
            &dir.path("lab.ewm"),
            None,
        )
        .unwrap();
        let other = dir.path("other.key.pub");
        let err = format!(
            "{:#}",
            show(&dir.path("lab.ewm"), Some(other.to_str().unwrap())).unwrap_err()
        );
        assert!(
            err.contains(&format!("does not match --pubkey {}", other.display())),
            "{err}"
        );
        assert!(!err.contains("--manifest-pubkey"), "{err}");
    }

    #[test]
    fn show_of_a_json_source_says_to_build_it_and_never_mentions_a_url() {
        let dir = TestDir::new("showjson");
        std::fs::write(dir.path("good.json"), LAB_JSON).unwrap();
        let err = format!("{:#}", show(&dir.path("good.json"), None).unwrap_err());
        assert!(
            err.contains("good.json is a JSON manifest source, not a built manifest")
                && err.contains("edgewire manifest build"),
            "{err}"
        );
        assert!(!err.contains("URL"), "{err}");
        std::fs::write(dir.path("junk.bin"), b"\x00\x01junk").unwrap();
        let err = format!("{:#}", show(&dir.path("junk.bin"), None).unwrap_err());
        assert!(
            err.contains("junk.bin is not an edgewire manifest"),
            "{err}"
        );
        assert!(!err.contains("URL"), "{err}");
    }

    #[test]
    fn build_with_the_public_key_says_so_and_gives_no_chmod_advice() {
        let dir = TestDir::new("buildpub");
        keygen(&dir.path("net.key")).unwrap();
        std::fs::write(dir.path("lab.json"), LAB_JSON).unwrap();
        let public = dir.path("net.key.pub");
        // keygen writes the .pub 0644, the mode the chmod warning was about.
        let mode = std::fs::metadata(&public).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let err = format!(
            "{:#}",
            build(&dir.path("lab.json"), &public, &dir.path("x.ewm"), None).unwrap_err()
        );
        assert!(
            err.contains("holds a network public key")
                && err.contains(&format!(
                    "the private key is probably {}",
                    dir.path("net.key").display()
                )),
            "{err}"
        );
        assert!(!err.contains("chmod"), "{err}");
        assert!(!dir.path("x.ewm").exists());
    }

    #[test]
    fn build_errors_name_the_source_file_node_and_field() {
        let dir = TestDir::new("builderr");
        keygen(&dir.path("a.key")).unwrap();
        let source = dir.path("bad.json");
        std::fs::write(&source, LAB_JSON.replace("10.42.1.1/32", "10.42.1.1/33")).unwrap();
        let err = format!(
            "{:#}",
            build(&source, &dir.path("a.key"), &dir.path("x.ewm"), None).unwrap_err()
        );
        assert!(
            err.contains("bad.json")
                && err.contains("node \"dev-1\" (nodes[1]): field \"addresses\""),
            "{err}"
        );
        assert!(!dir.path("x.ewm").exists());
    }

    /// The lab source with its relay given without credentials.
    fn with_bare_relay() -> String {
        let bare = LAB_JSON.replace(r#", "username": "u", "password": "p""#, "");
        assert_ne!(
            bare, LAB_JSON,
            "the lab source has a relay with credentials"
        );
        bare
    }

    #[test]
    fn build_mints_turn_rest_credentials_and_never_writes_the_secret() {
        let dir = TestDir::new("mint");
        keygen(&dir.path("a.key")).unwrap();
        std::fs::write(dir.path("lab.json"), with_bare_relay()).unwrap();
        std::fs::write(dir.path("turn.secret"), "s3cret-of-coturn\n").unwrap();
        let minter = Minter {
            secret: read_turn_secret(&dir.path("turn.secret")).unwrap(),
            ttl: std::time::Duration::from_secs(3600),
        };
        build(
            &dir.path("lab.json"),
            &dir.path("a.key"),
            &dir.path("lab.ewm"),
            Some(&minter),
        )
        .unwrap();
        let bytes = std::fs::read(dir.path("lab.ewm")).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "the secret stays on the build host"
        );
        let key = load_network_key(&dir.path("a.key")).unwrap();
        let m = manifest::open(&bytes, &[key.public_key()]).unwrap();
        let relay = &m.relays[0];
        let (expiry, network) = relay.username.split_once(':').unwrap();
        assert_eq!(network, m.network);
        let expiry: u64 = expiry.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now + 3590..=now + 3610).contains(&expiry),
            "expires in an hour"
        );
        let expected = crate::turn::rest_credentials(b"s3cret-of-coturn", network, expiry);
        assert_eq!((relay.username.clone(), relay.password.clone()), expected);
    }

    #[test]
    fn a_relay_without_credentials_and_no_secret_is_an_error_that_says_what_to_do() {
        let dir = TestDir::new("nocreds");
        keygen(&dir.path("a.key")).unwrap();
        std::fs::write(dir.path("lab.json"), with_bare_relay()).unwrap();
        let err = build(
            &dir.path("lab.json"),
            &dir.path("a.key"),
            &dir.path("x.ewm"),
            None,
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("\"username\" is missing") && err.contains("--turn-secret-file"),
            "{err}"
        );
    }
}
