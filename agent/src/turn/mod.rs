//! A sans-IO TURN client (RFC 8656 over RFC 8489 STUN): the wire formats first.

mod attr;
mod auth;
mod channel;
mod framing;
mod md5;
mod stun;

pub use attr::Attr;
pub use auth::{LongTermKey, rest_credentials};
pub use channel::ChannelData;
pub use framing::MAX_FRAME;
pub use stun::{Class, Message, Method, Writer};
