//! TLS to the relays (`turns:`): rustls with ring, checked against the same CAs as the
//! manifest server (`--ca-file`, else the system bundle). No roots are compiled in.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::fetch::roots;

/// The TLS settings for every relay. Without any CA, TLS relays cannot be trusted: that
/// is logged once here, and their connections then fail with a certificate error while
/// UDP and TCP relays still work.
pub fn client_config(ca_file: Option<&Path>) -> Arc<ClientConfig> {
    let certs = match ca_file {
        Some(path) => roots::from_file(path),
        None => roots::system("the TURN relays (turns:)"),
    };
    let mut store = RootCertStore::empty();
    match certs {
        Ok(certs) => {
            for cert in certs {
                if let Err(e) = store.add(CertificateDer::from(cert.der().to_vec())) {
                    log::warn!("skipping a CA certificate for the relays: {e}");
                }
            }
        }
        Err(e) => log::warn!("{e}; TLS relays will fail"),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}
