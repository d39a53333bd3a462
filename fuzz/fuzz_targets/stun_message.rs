//! STUN/TURN wire formats from a server or from anyone who can reach the UDP port:
//! a STUN message with every attribute decoded, its FINGERPRINT checked, and ChannelData.
#![no_main]

use edgewire::turn::{Attr, ChannelData, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let id = message.transaction_id();
        let _ = (message.method(), message.class(), message.has_integrity());
        for (typ, value) in message.all_attributes() {
            let _ = Attr::parse(typ, value, &id);
        }
        let _ = message.check_fingerprint();
    }
    let _ = ChannelData::parse(data);
});
