//! The manifest server's certificate as `netcheck` reads it (`fetch/x509.rs`): DER bytes
//! from whatever answers on the manifest URL's port. No input may panic or allocate
//! without bound; a summary, when one comes out, must render.
#![no_main]

use edgewire::fetch::x509::CertSummary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(summary) = CertSummary::parse(data) {
        let _ = summary.not_after_rfc3339();
        let _ = summary.judge(1_700_000_000);
    }
});
