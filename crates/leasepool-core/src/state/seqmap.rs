//! Maps keyed by the state machine's own sequence numbers.
//!
//! Lease keys and waiter ids are counters the state machine hands out, never
//! input from outside, so they need no protection against hash flooding:
//! a multiplicative (Fibonacci) hash spreads them over the table for a
//! fraction of SipHash's cost on the acquire/release path.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes one `u64` by multiplying it with 2^64 / golden ratio.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; fold anything else in byte by byte.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;
pub(crate) type SeqSet = HashSet<u64, BuildHasherDefault<SeqHasher>>;
