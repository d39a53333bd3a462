//! The operator's JSON manifest source (`edgewire manifest build`): any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = edgewire::manifest::from_json(text);
    }
});
