//! A hash map for the lookups the packet path makes on every packet: the route of a
//! destination, the peer of a receiver index, a peer's filed deadline.
//!
//! std's SipHash is keyed so that keys an attacker chooses cannot pile into one bucket;
//! that costs about 1.7 % of both cores at 2 Gbit/s (perf, TCP one stream). These maps
//! need no key: what goes *into* them is ours — prefixes and keys from the signed
//! manifest, receiver indexes we allocated — and a lookup with a key from the network
//! only walks chains those entries made. The hash is FxHash's multiply-and-rotate (as in
//! rustc) per word, and SplitMix64's finaliser once at the end, so sequential indexes and
//! neighbouring addresses spread like random ones.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hashed with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// FxHash's odd multiplier (from the golden ratio's digits).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Clone, Copy, Default, Debug)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The product's low bits depend only on the low input bits, and hashbrown picks
        // the bucket from the low bits: mix every bit into every other first.
        mix(self.0)
    }
}

/// SplitMix64's finaliser: neighbouring inputs give unrelated outputs.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::hash::BuildHasher;
    use std::net::{IpAddr, Ipv4Addr};

    fn hash<T: std::hash::Hash>(value: T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    /// Receiver indexes are allocated in sequence and addresses differ in a few bits:
    /// their hashes must still spread over the low bits a table of 4,096 uses.
    #[test]
    fn sequential_keys_spread_over_the_low_bits() {
        let buckets = |hashes: Vec<u64>| -> usize {
            hashes
                .iter()
                .map(|h| h & 0xfff)
                .collect::<BTreeSet<_>>()
                .len()
        };
        let indexes = buckets((0..4096u32).map(hash).collect());
        let addrs = buckets(
            (0..4096u32)
                .map(|i| hash(IpAddr::V4(Ipv4Addr::from(0x0a2a_0000 + (i << 8)))))
                .collect(),
        );
        // A uniform hash fills about 63 % of the buckets (1 - 1/e).
        assert!(indexes > 2400, "indexes fill {indexes} of 4096 buckets");
        assert!(addrs > 2400, "addresses fill {addrs} of 4096 buckets");
    }

    #[test]
    fn equal_keys_hash_equal_and_a_byte_more_changes_it() {
        assert_eq!(hash([7u8; 32]), hash([7u8; 32]));
        assert_ne!(hash(&[7u8; 32][..]), hash(&[7u8; 33][..]));
        let mut key = [7u8; 32];
        key[31] = 8;
        assert_ne!(hash([7u8; 32]), hash(key));
    }

    #[test]
    fn the_map_finds_what_it_holds() {
        let mut map = FastMap::default();
        for i in 0..10_000u32 {
            map.insert(i, i * 2);
        }
        assert!((0..10_000u32).all(|i| map.get(&i) == Some(&(i * 2))));
        assert_eq!(map.get(&10_000), None);
    }
}
