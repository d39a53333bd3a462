//! What lies behind a valid signature: the input is a postcard payload, sealed here in
//! an envelope signed with the pinned key, then opened — decode and validation of any
//! bytes a key holder (or a bug in the signing tool) could produce.
#![no_main]

use edgewire::manifest::{FORMAT_VERSION, MAGIC, NetworkKeyPair, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = NetworkKeyPair::from_seed(&[7; 32]);
    let mut bytes = Vec::with_capacity(data.len() + 74);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(data);
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature);
    let _ = open(&bytes, &[key.public_key()]);
});
