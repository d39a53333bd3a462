//! ChannelData messages (RFC 8656 §12.4): application data to or from a bound peer with
//! a 4-byte header instead of a STUN indication's 36 or more.
//!
//! ```text
//! |         Channel Number        |            Length             |
//! |                    Application Data (padded to 4 on streams)  |
//! ```

/// Channel numbers a client may bind (RFC 8656 §12).
pub const MIN_CHANNEL: u16 = 0x4000;
pub const MAX_CHANNEL: u16 = 0x4fff;
pub const HEADER_LEN: usize = 4;

/// A received ChannelData message whose length has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Reads one ChannelData message from the front of `bytes`. Trailing bytes are
    /// allowed: the padding over UDP is optional (RFC 8656 §12.5) and streams pass the
    /// padded frame. `None` when the channel is outside the valid range or the payload is
    /// cut short.
    pub fn parse(bytes: &'a [u8]) -> Option<ChannelData<'a>> {
        let header = bytes.get(..HEADER_LEN)?;
        let channel = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if !(MIN_CHANNEL..=MAX_CHANNEL).contains(&channel) {
            return None;
        }
        let payload = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
        Some(ChannelData { channel, payload })
    }

    /// Appends a ChannelData message to `out`, padded to 4 bytes when `pad` (streams).
    /// The caller keeps `payload` within 65535 bytes.
    pub fn emit(channel: u16, payload: &[u8], pad: bool, out: &mut Vec<u8>) {
        debug_assert!(payload.len() <= u16::MAX as usize);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        if pad {
            out.resize(out.len() + (4 - payload.len() % 4) % 4, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_and_parses_with_and_without_padding() {
        let mut out = Vec::new();
        ChannelData::emit(0x4001, b"hello", true, &mut out);
        assert_eq!(out, b"\x40\x01\x00\x05hello\0\0\0");
        let cd = ChannelData::parse(&out).unwrap();
        assert_eq!((cd.channel, cd.payload), (0x4001, &b"hello"[..]));
        out.clear();
        ChannelData::emit(0x4fff, b"hello", false, &mut out);
        assert_eq!(out, b"\x4f\xff\x00\x05hello");
        assert_eq!(ChannelData::parse(&out).unwrap().payload, b"hello");
    }

    #[test]
    fn rejects_reserved_channels_and_short_payloads() {
        assert_eq!(ChannelData::parse(b"\x50\x00\x00\x00"), None);
        assert_eq!(ChannelData::parse(b"\x3f\xff\x00\x00"), None);
        assert_eq!(ChannelData::parse(b"\x40\x00\x00\x05abcd"), None);
        assert_eq!(ChannelData::parse(b"\x40\x00\x00"), None);
        assert!(ChannelData::parse(b"\x40\x00\x00\x00").is_some());
    }
}
