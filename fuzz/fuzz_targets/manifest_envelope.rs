//! The manifest as it arrives from a server or the cache: `manifest::open` over any
//! bytes, against a pinned key. Must never panic; only a signed envelope gets past the
//! header (see `manifest_payload` for what lies behind the signature).
#![no_main]

use edgewire::manifest::{NetworkKeyPair, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = NetworkKeyPair::from_seed(&[7; 32]).public_key();
    let _ = open(data, &[key]);
});
