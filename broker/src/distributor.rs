//! The distributor: which wallets get a task in a round, and the tasks
//! themselves (table `assignments`). Each round it samples uniformly without
//! replacement from the wallets that consented to the current manifest,
//! checked in recently and have not yet taken part in as many rounds of the
//! job as the manifest allows. The sample and each task's seed come from
//! the operating system's generator: nobody can predict them, and they
//! leave the broker only inside the task, which it forgets once delivered.
//! Only the simulation seeds the generator, to repeat a run.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{PublicKey, Signed, Task, now_ms};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{BrokerError, Result};

/// Where the distributor's randomness comes from.
#[derive(Debug)]
pub struct Randomness {
    seeded: Option<Mutex<ChaCha20Rng>>,
}

impl Randomness {
    /// The operating system's generator: the only source a deployed broker uses.
    pub fn os() -> Randomness {
        Randomness { seeded: None }
    }

    /// A generator seeded with `seed`: the simulation's, so that a run repeats.
    pub fn seeded_for_simulation(seed: u64) -> Randomness {
        Randomness {
            seeded: Some(Mutex::new(ChaCha20Rng::seed_from_u64(seed))),
        }
    }

    fn with_rng<R>(&self, f: impl FnOnce(&mut ChaCha20Rng) -> R) -> Result<R> {
        match &self.seeded {
            Some(rng) => Ok(f(&mut rng.lock().unwrap_or_else(|e| e.into_inner()))),
            None => {
                let mut key = [0u8; 32];
                SystemRandom::new().fill(&mut key).map_err(|_| {
                    BrokerError::Internal("the operating system's random generator failed".into())
                })?;
                Ok(f(&mut ChaCha20Rng::from_seed(key)))
            }
        }
    }

    /// A fresh 64-bit seed for one task.
    pub fn task_seed(&self) -> Result<u64> {
        self.with_rng(|rng| rng.next_u64())
    }

    /// `m` of `wallets`, uniformly without replacement (a partial
    /// Fisher-Yates shuffle of the wallets in key order, so that the input
    /// order does not matter).
    pub fn sample(&self, wallets: &[PublicKey], m: usize) -> Result<Vec<PublicKey>> {
        let mut pool: Vec<PublicKey> = wallets.to_vec();
        pool.sort();
        pool.dedup();
        let m = m.min(pool.len());
        self.with_rng(|rng| {
            for i in 0..m {
                let j = rng.random_range(i..pool.len());
                pool.swap(i, j);
            }
        })?;
        pool.truncate(m);
        Ok(pool)
    }
}

/// One wallet's task in a round, before it is stored.
#[derive(Debug, Clone)]
pub struct NewAssignment {
    /// The wallet.
    pub wallet: PublicKey,
    /// The signed task, as JSON.
    pub task: String,
    /// Its digest, hex.
    pub digest: String,
}

/// Stores a round's tasks.
pub fn insert_in(
    tx: &Sql<'_>,
    job_id: &str,
    round: u32,
    assignments: &[NewAssignment],
) -> Result<()> {
    for a in assignments {
        tx.execute(
            "INSERT INTO assignments (job_id, round, wallet, task, task_digest) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job_id, round, a.wallet.to_hex(), a.task, a.digest],
        )?;
    }
    Ok(())
}

/// The wallet's undelivered task in an open, unexpired round of a job of
/// collective `id`, marked delivered; the broker keeps only its digest.
pub fn take_task_in(
    tx: &Sql<'_>,
    collective_id: &str,
    wallet: &PublicKey,
) -> Result<Option<Signed<Task>>> {
    let Some((job, round, task)) = next_task(tx, collective_id, wallet)? else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE assignments SET delivered = 1, task = NULL WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
        params![job, round, wallet.to_hex()],
    )?;
    Ok(Some(serde_json::from_str(&task)?))
}

/// Whether the wallet has a task waiting (a read: most check-ins find none
/// and need no write).
pub fn has_task(c: &Sql<'_>, collective_id: &str, wallet: &PublicKey) -> Result<bool> {
    Ok(next_task(c, collective_id, wallet)?.is_some())
}

/// The wallet's first undelivered task in an open round: its job, round
/// and signed text.
fn next_task(
    tx: &Sql<'_>,
    collective_id: &str,
    wallet: &PublicKey,
) -> Result<Option<(String, i64, String)>> {
    tx.query_opt(
        "SELECT a.job_id, a.round, a.task FROM assignments a
             JOIN rounds r ON r.job_id = a.job_id AND r.round = a.round
             JOIN jobs j ON j.id = a.job_id
             WHERE j.collective_id = ?1 AND a.wallet = ?2 AND a.delivered = 0
               AND a.task IS NOT NULL AND r.status = 'open' AND r.deadline_ms > ?3
             ORDER BY r.opened_ms LIMIT 1",
        params![collective_id, wallet.to_hex(), now_ms() as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Every undelivered task of a round, marked delivered: the distributor
/// handing tasks to wallets in this process (the simulation).
pub fn push_in(tx: &Sql<'_>, job_id: &str, round: u32) -> Result<Vec<(PublicKey, Signed<Task>)>> {
    let rows: Vec<(String, String)> = {
        tx.query_map(
            "SELECT wallet, task FROM assignments
             WHERE job_id = ?1 AND round = ?2 AND delivered = 0 AND task IS NOT NULL",
            params![job_id, round],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    };
    tx.execute(
        "UPDATE assignments SET delivered = 1, task = NULL WHERE job_id = ?1 AND round = ?2",
        params![job_id, round],
    )?;
    rows.into_iter()
        .map(|(w, t)| Ok((PublicKey::from_hex(&w)?, serde_json::from_str(&t)?)))
        .collect()
}

/// Every wallet a round assigned, with the digest of its task.
pub fn assigned(c: &Sql<'_>, job_id: &str, round: u32) -> Result<Vec<(PublicKey, String)>> {
    let rows: Vec<(String, String)> = c.query_map(
        "SELECT wallet, task_digest FROM assignments WHERE job_id = ?1 AND round = ?2
         ORDER BY wallet",
        params![job_id, round],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.into_iter()
        .map(|(w, d)| Ok((PublicKey::from_hex(&w)?, d)))
        .collect()
}

/// The digest of the task `wallet` was assigned in a round, if any.
pub fn task_digest(
    c: &Sql<'_>,
    job_id: &str,
    round: u32,
    wallet: &PublicKey,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT task_digest FROM assignments WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
        params![job_id, round, wallet.to_hex()],
        |r| r.get(0),
    )
}

/// Wallets that were handed tasks in at least `limit` rounds of the job.
pub fn saturated(c: &Sql<'_>, job_id: &str, limit: u32) -> Result<HashSet<PublicKey>> {
    let rows = c.query_map(
        "SELECT wallet FROM assignments WHERE job_id = ?1 AND delivered = 1
         GROUP BY wallet HAVING COUNT(*) >= ?2",
        params![job_id, limit],
        |r| r.get::<String>(0),
    )?;
    let mut out = HashSet::new();
    for row in rows {
        out.insert(PublicKey::from_hex(&row)?);
    }
    Ok(out)
}

/// Forgets the undelivered tasks of a closed round (their seeds included).
pub fn forget_in(tx: &Sql<'_>, job_id: &str, round: u32) -> Result<()> {
    tx.execute(
        "UPDATE assignments SET task = NULL WHERE job_id = ?1 AND round = ?2",
        params![job_id, round],
    )?;
    Ok(())
}

/// Withdraws a wallet's undelivered tasks (it unsubscribed).
pub fn withdraw_in(tx: &Sql<'_>, wallet: &PublicKey) -> Result<()> {
    tx.execute(
        "DELETE FROM assignments WHERE wallet = ?1 AND delivered = 0",
        params![wallet.to_hex()],
    )?;
    Ok(())
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
        fn samples_are_distinct_members_of_the_right_size(n in 0usize..60, m in 0usize..80, seed in any::<u64>()) {
            let pool = wallets(n);
            let s = Randomness::seeded_for_simulation(seed).sample(&pool, m).unwrap();
            prop_assert_eq!(s.len(), m.min(n));
            let mut sorted = s.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), s.len());
            prop_assert!(s.iter().all(|w| pool.contains(w)));
            let mut reversed = pool.clone();
            reversed.reverse();
            prop_assert_eq!(Randomness::seeded_for_simulation(seed).sample(&reversed, m).unwrap(), s);
        }
    }

    #[test]
    fn every_wallet_is_sampled_about_equally_often() {
        let pool = wallets(20);
        let mut hits = vec![0usize; 20];
        let randomness = Randomness::os();
        for _ in 0..4000 {
            for w in randomness.sample(&pool, 5).unwrap() {
                hits[pool.iter().position(|p| *p == w).unwrap()] += 1;
            }
        }
        // Expected 1000 each.
        assert!(hits.iter().all(|&h| (850..1150).contains(&h)), "{hits:?}");
    }

    #[test]
    fn task_seeds_are_unpredictable_unless_simulated() {
        let os = Randomness::os();
        assert_ne!(os.task_seed().unwrap(), os.task_seed().unwrap());
        let a = Randomness::seeded_for_simulation(3);
        let b = Randomness::seeded_for_simulation(3);
        assert_eq!(a.task_seed().unwrap(), b.task_seed().unwrap());
    }
}
