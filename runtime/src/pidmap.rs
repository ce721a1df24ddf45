//! Maps keyed by pids (and other numbers the runtime hands out itself).
//!
//! The std map hashes with SipHash (~140 instructions per lookup here), a defence against
//! keys an attacker chooses. Pids are sequential numbers the node makes, so a multiply and a
//! shift do: every message send, call and upgrade step looks a pid up.

use relup_module::Pid;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from pid numbers (or monitor references) to `V`.
pub(crate) type PidMap<V> = HashMap<u64, V, BuildHasherDefault<PidHasher>>;

/// A map from pids to `V`.
pub(crate) type ByPid<V> = HashMap<Pid, V, BuildHasherDefault<PidHasher>>;

/// A set of pids.
pub(crate) type PidSet = HashSet<Pid, BuildHasherDefault<PidHasher>>;

/// A few multiplies and shifts (splitmix64's finalizer) for u64 keys: a shard holds pids
/// that agree in their low bits, and the map picks buckets by the low bits of the hash, so
/// every input bit must reach them.
#[derive(Default, Clone, Copy)]
pub(crate) struct PidHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.wrapping_mul(K) ^ n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn pids_of_one_shard_spread_over_the_low_bits() {
        let build = BuildHasherDefault::<PidHasher>::default();
        // Pids 7, 71, 135, ... (one shard of 64) must land in about as many of 1024 buckets
        // as random keys would (~650); hashing them by their low bits alone gives 16.
        let low: HashSet<u64> = (0..1024u64)
            .map(|i| build.hash_one(7 + 64 * i) & 1023)
            .collect();
        assert!(
            low.len() > 550,
            "only {} distinct buckets of 1024",
            low.len()
        );
        let mut map: PidMap<u64> = PidMap::default();
        for pid in 0..10_000u64 {
            map.insert(pid * 64 + 3, pid);
        }
        assert!((0..10_000u64).all(|pid| map.get(&(pid * 64 + 3)) == Some(&pid)));
    }
}
