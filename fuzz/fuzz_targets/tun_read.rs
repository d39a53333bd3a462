//! A frame as an offloading TUN hands one over (virtio-net header, then an IP packet,
//! maybe a TCP or UDP super-packet): on a hub the kernel forwards what peers sent back
//! into the TUN, so the header and the packet are made from their bytes. The frame goes
//! through the agent's `split_frame` with segment buffers of the MTU's size;
//! `shell::tun_hostile::Reader` panics unless it comes back whole, split into segments
//! whose IP length is their size, or refused; its first packet is read for its TCP
//! timestamp as the agent reads it (sent_wait.rs).
#![no_main]

use std::cell::RefCell;

use edgewire::shell::tun_hostile::Reader;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static READER: RefCell<Reader> = RefCell::new(Reader::new(1420));
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 10 + 65_535 {
        return;
    }
    let mut frame = data.to_vec();
    READER.with(|r| r.borrow_mut().read(&mut frame));
});
