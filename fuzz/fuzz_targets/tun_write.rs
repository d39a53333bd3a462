//! Decrypted packets a peer chose, on their way to the TUN: each goes through boringtun's
//! one check (cut to the IP length it claims; refused when that is more than it has) and
//! the core's (dropped when shorter than an IPv4 header), then the batch through the agent's write path (`Room`'s plan, tun-rs's GRO trusting
//! checksums), without a device; `shell::tun_hostile::Writer` panics if anything that
//! would reach the device is wrong. The input is cut into packets by 2-byte length
//! prefixes, at most 128 (a write's batch). The writer's buffers and tables carry over
//! from one input to the next, as they do in a running agent.
#![no_main]

use std::cell::RefCell;

use edgewire::shell::tun_hostile::{Writer, decrypted};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static WRITER: RefCell<Writer> = RefCell::new(Writer::default());
}

fuzz_target!(|data: &[u8]| {
    let mut bufs = Vec::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest
        && bufs.len() < 128
    {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, after) = tail.split_at(len);
        bufs.extend(decrypted(packet));
        rest = after;
    }
    WRITER.with(|w| w.borrow_mut().write(&mut bufs));
});
