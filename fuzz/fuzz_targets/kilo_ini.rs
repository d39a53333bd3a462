//! Kilo's `kgctl showconf peer` INI, fetched over HTTPS and unsigned: any text, parsed and
//! turned into a manifest for a fixed own key and address.
#![no_main]

use edgewire::keys::PublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = edgewire::manifest::wg::parse_wg(text);
    let own: PublicKey = "Y2lsbGV6IGxlcyBwYXJvbGVzIGRlcyBwbHVzIGJlYXU="
        .parse()
        .expect("a valid key");
    let address = "10.4.0.99/16".parse().expect("a valid prefix");
    let _ = edgewire::manifest::from_wg(text, own, address);
});
