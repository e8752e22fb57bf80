//! The distributor: which wallets get a task in a round. It samples, per
//! round, uniformly without replacement from the subscribed wallets that
//! checked in recently. The sample is reproducible from the job's seed and
//! the round, and is never exposed by the collective's API.

use c2ssi_protocol::{PublicKey, sha256};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// `m` of `wallets`, chosen by a partial Fisher-Yates shuffle seeded with
/// (`seed`, `round`); the input order does not matter.
pub fn sample(wallets: &[PublicKey], m: usize, seed: u64, round: u32) -> Vec<PublicKey> {
    let mut pool: Vec<PublicKey> = wallets.to_vec();
    pool.sort();
    pool.dedup();
    let m = m.min(pool.len());
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(seed ^ (u64::from(round) << 32 | u64::from(round)));
    for i in 0..m {
        let j = rng.random_range(i as u64..pool.len() as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(m);
    pool
}

/// The seed of one wallet's local training in one round.
pub fn task_seed(job_seed: u64, round: u32, wallet: &PublicKey) -> u64 {
    let mut input = job_seed.to_le_bytes().to_vec();
    input.extend_from_slice(&round.to_le_bytes());
    input.extend_from_slice(&wallet.0);
    let digest = sha256(&input);
    u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wallets(n: usize) -> Vec<PublicKey> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                PublicKey(k)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn samples_are_distinct_members_of_the_right_size(n in 0usize..60, m in 0usize..80, seed in any::<u64>(), round in 0u32..100) {
            let pool = wallets(n);
            let s = sample(&pool, m, seed, round);
            prop_assert_eq!(s.len(), m.min(n));
            let mut sorted = s.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), s.len());
            prop_assert!(s.iter().all(|w| pool.contains(w)));
            let mut reversed = pool.clone();
            reversed.reverse();
            prop_assert_eq!(sample(&reversed, m, seed, round), s);
        }
    }

    #[test]
    fn every_wallet_is_sampled_about_equally_often() {
        let pool = wallets(20);
        let mut hits = vec![0usize; 20];
        for round in 0..4000 {
            for w in sample(&pool, 5, 42, round) {
                hits[pool.iter().position(|p| *p == w).unwrap()] += 1;
            }
        }
        // Expected 1000 each.
        assert!(hits.iter().all(|&h| (850..1150).contains(&h)), "{hits:?}");
    }
}
