//! The owner's privacy: the limits it sets ([`Policy`], `wallet policy`),
//! and what it has spent ([`Participation`]s, `wallet privacy`).
//!
//! Each round this wallet's update may enter costs it `rho = 1 / (2 z^2)`
//! (zCDP) under the manifest's noise multiplier `z`, whatever the algorithm
//! does, because the wallet clips the update itself and the aggregator adds
//! the noise. Costs add up; the accountant shared with the broker and the
//! aggregator (`c2ssi_protocol::privacy`) turns a sum into epsilon at the
//! policy's delta. A round is counted when its task is accepted, before the
//! algorithm runs: a budget is reserved, never overdrawn.

use c2ssi_protocol::{Manifest, privacy};
use serde::{Deserialize, Serialize};

use super::AccessLog;

/// A year, in milliseconds (365 days).
pub const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// The owner's limits on what runs in the wallet. The defaults protect an
/// owner who never changes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The most epsilon one job may cost (at `delta`).
    pub max_epsilon_per_job: f64,
    /// The most epsilon all jobs of the last 365 days may cost together.
    pub max_epsilon_per_year: f64,
    /// The smallest k a collective may state.
    pub min_k: u32,
    /// Whether collectives must add noise (no noise: no guarantee).
    pub require_noise: bool,
    /// The most model parameters a task may carry.
    pub max_model_params: usize,
    /// The delta every epsilon is computed at; a manifest may not state a
    /// larger one.
    pub delta: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_epsilon_per_job: 2.0,
            max_epsilon_per_year: 10.0,
            min_k: 5,
            require_noise: true,
            max_model_params: 4 << 20,
            delta: 1e-5,
        }
    }
}

impl Policy {
    /// Checks the limits' domains.
    pub fn check(&self) -> Result<(), String> {
        let positive = |x: f64, what: &str| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a positive number, not {x}"))
            }
        };
        positive(self.max_epsilon_per_job, "max-epsilon-per-job")?;
        positive(self.max_epsilon_per_year, "max-epsilon-per-year")?;
        if !(self.delta > 0.0 && self.delta < 1e-2) {
            return Err(format!(
                "delta must be within (0, 0.01), not {}",
                self.delta
            ));
        }
        if self.min_k < 2 {
            return Err("min-k must be at least 2".into());
        }
        if self.max_model_params == 0 {
            return Err("max-model-params must be at least 1".into());
        }
        Ok(())
    }

    /// What in `manifest`'s terms this policy refuses, each in words; empty
    /// when it accepts them.
    pub fn refuses(&self, manifest: &Manifest) -> Vec<String> {
        let t = &manifest.privacy;
        let mut out = Vec::new();
        if !t.has_noise() {
            if self.require_noise {
                out.push(
                    "it adds no noise (no privacy guarantee), and your policy requires noise"
                        .to_string(),
                );
            }
        } else {
            let per_job = t.epsilon_after(t.rounds_per_wallet);
            let at_policy_delta = privacy::epsilon_of_rho(
                f64::from(t.rounds_per_wallet) * t.rho_per_round(),
                self.delta,
            );
            let cost = per_job.max(at_policy_delta);
            if cost > self.max_epsilon_per_job * (1.0 + 1e-9) {
                out.push(format!(
                    "one job may cost you epsilon {cost:.3}; your limit is {} per job",
                    self.max_epsilon_per_job
                ));
            }
            if t.delta > self.delta {
                out.push(format!(
                    "its delta {:e} is above your limit {:e}",
                    t.delta, self.delta
                ));
            }
        }
        if t.min_batch < self.min_k {
            out.push(format!(
                "it releases batches of {} wallets; your limit is at least {}",
                t.min_batch, self.min_k
            ));
        }
        out
    }

    /// Sets one limit from its name (as `wallet policy` takes it) and a value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{name}: '{value}' is not a number"))
        };
        match name {
            "max-epsilon-per-job" => self.max_epsilon_per_job = number()?,
            "max-epsilon-per-year" => self.max_epsilon_per_year = number()?,
            "delta" => self.delta = number()?,
            "min-k" => {
                self.min_k = value
                    .parse()
                    .map_err(|_| format!("min-k: '{value}' is not a count"))?
            }
            "max-model-params" => {
                self.max_model_params = value
                    .parse()
                    .map_err(|_| format!("max-model-params: '{value}' is not a count"))?
            }
            "require-noise" => {
                self.require_noise = match value {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => return Err(format!("require-noise: '{value}' is not true or false")),
                }
            }
            other => {
                return Err(format!(
                    "no limit '{other}' (limits: max-epsilon-per-job, max-epsilon-per-year, \
                     min-k, require-noise, max-model-params, delta)"
                ));
            }
        }
        self.check()
    }
}

/// One round this wallet's data may enter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participation {
    /// When the task was accepted.
    pub time_ms: u64,
    /// The collective.
    pub collective_id: String,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// Its zCDP cost; `None` without noise (no bound at all).
    pub rho: Option<f64>,
}

/// What a set of participations cost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spent {
    /// Rounds taken part in.
    pub rounds: usize,
    /// Their summed zCDP cost, over the rounds with noise.
    pub rho: f64,
    /// Rounds without noise among them: no bound at all. Only an owner who
    /// set `require-noise=false` takes them; they stand apart from the
    /// epsilon budget (which would otherwise be spent for good by one of
    /// them) and `wallet privacy` counts them apart.
    pub without_noise: usize,
}

impl Spent {
    /// The cost of the participations `keep` selects.
    pub fn of<'a>(
        participations: impl IntoIterator<Item = &'a Participation>,
        mut keep: impl FnMut(&Participation) -> bool,
    ) -> Spent {
        let mut spent = Spent::default();
        for p in participations.into_iter().filter(|p| keep(p)) {
            spent.rounds += 1;
            match p.rho {
                Some(rho) => spent.rho += rho,
                None => spent.without_noise += 1,
            }
        }
        spent
    }

    /// Epsilon at `delta` of the rounds with noise.
    pub fn epsilon(&self, delta: f64) -> f64 {
        privacy::epsilon_of_rho(self.rho, delta)
    }
}

/// Why a task is past the owner's limits, if it is: the rounds of this job
/// the manifest allows, the policy's terms, the epsilon per job and per
/// year with this round counted.
pub fn over_budget(
    log: &AccessLog,
    policy: &Policy,
    manifest: &Manifest,
    collective_id: &str,
    job_id: &str,
    now_ms: u64,
) -> Option<String> {
    let terms = &manifest.privacy;
    let in_job = Spent::of(&log.participations, |p| {
        p.collective_id == collective_id && p.job_id == job_id
    });
    if in_job.rounds >= terms.rounds_per_wallet as usize {
        return Some(format!(
            "this wallet took part in {} round(s) of job {job_id}, the most the manifest allows",
            in_job.rounds
        ));
    }
    let rho = terms.rho_per_round();
    if !terms.has_noise() {
        // The owner's policy let a collective without noise run (the check
        // of the terms refuses it otherwise): there is no epsilon to limit.
        // Such rounds stand apart from the budget of the rounds with noise.
        return policy
            .require_noise
            .then(|| "the collective adds no noise, and your policy requires noise".into());
    }
    let job_epsilon = Spent {
        rounds: in_job.rounds + 1,
        rho: in_job.rho + rho,
        without_noise: in_job.without_noise,
    }
    .epsilon(policy.delta);
    if job_epsilon > policy.max_epsilon_per_job * (1.0 + 1e-9) {
        return Some(format!(
            "this round would bring job {job_id} to epsilon {job_epsilon:.3}; your limit is {} \
             per job",
            policy.max_epsilon_per_job
        ));
    }
    let year = Spent::of(&log.participations, |p| p.time_ms + YEAR_MS >= now_ms);
    let year_epsilon = Spent {
        rounds: year.rounds + 1,
        rho: year.rho + rho,
        without_noise: year.without_noise,
    }
    .epsilon(policy.delta);
    if year_epsilon > policy.max_epsilon_per_year * (1.0 + 1e-9) {
        return Some(format!(
            "this round would bring the last 365 days to epsilon {year_epsilon:.3}; your limit \
             is {} per year",
            policy.max_epsilon_per_year
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::PrivacyTerms;

    use super::*;

    fn participation(job: &str, rho: Option<f64>, time_ms: u64) -> Participation {
        Participation {
            time_ms,
            collective_id: "c".into(),
            job_id: job.into(),
            round: 1,
            rho,
        }
    }

    #[test]
    fn the_default_policy_takes_the_default_terms_and_refuses_weaker_ones() {
        let policy = Policy::default();
        policy.check().unwrap();
        let terms = privacy::default_terms();
        let refuses = |t: PrivacyTerms| {
            let mut m = test_manifest();
            m.privacy = t;
            policy.refuses(&m)
        };
        assert!(refuses(terms.clone()).is_empty());
        let loose = PrivacyTerms::with_epsilon(10, 1.0, 1e-5, 10, 8.0, Vec::new()).unwrap();
        assert_eq!(refuses(loose).len(), 1);
        let none = PrivacyTerms::with_noise(10, 1.0, 1e-5, 10, 0.0, Vec::new()).unwrap();
        assert_eq!(refuses(none).len(), 1);
        let small_k = PrivacyTerms::with_epsilon(3, 1.0, 1e-5, 10, 2.0, Vec::new()).unwrap();
        assert_eq!(refuses(small_k).len(), 1);
    }

    #[test]
    fn rounds_per_job_and_yearly_epsilon_are_enforced() {
        let policy = Policy::default();
        let mut m = test_manifest();
        m.privacy = PrivacyTerms::with_epsilon(5, 1.0, 1e-5, 2, 2.0, Vec::new()).unwrap();
        let rho = Some(m.privacy.rho_per_round());
        let now = 10 * YEAR_MS;
        let mut log = AccessLog::default();
        assert!(over_budget(&log, &policy, &m, "c", "j", now).is_none());
        log.participations.push(participation("j", rho, now));
        assert!(over_budget(&log, &policy, &m, "c", "j", now).is_none());
        log.participations.push(participation("j", rho, now));
        let why = over_budget(&log, &policy, &m, "c", "j", now).unwrap();
        assert!(why.contains("most the manifest allows"), "{why}");
        // Other jobs add up over the year until the yearly limit.
        let mut jobs = 0;
        while over_budget(&log, &policy, &m, "c", &format!("k{jobs}"), now).is_none() {
            log.participations
                .push(participation(&format!("k{jobs}"), rho, now));
            jobs += 1;
            assert!(jobs < 1000);
        }
        let why = over_budget(&log, &policy, &m, "c", "next", now).unwrap();
        assert!(why.contains("per year"), "{why}");
        // A year later, the old rounds no longer count.
        assert!(over_budget(&log, &policy, &m, "c", "next", now + YEAR_MS + 1).is_none());
    }

    #[test]
    fn a_round_without_noise_stands_apart_from_the_budget() {
        // An owner who allows collectives without noise took part in one:
        // it is counted apart, and does not spend the budget of the rounds
        // with noise for a year.
        let policy = Policy::default();
        let mut m = test_manifest();
        m.privacy = PrivacyTerms::with_epsilon(5, 1.0, 1e-5, 2, 2.0, Vec::new()).unwrap();
        let now = 10 * YEAR_MS;
        let mut log = AccessLog::default();
        log.participations.push(participation("plain", None, now));
        let spent = Spent::of(&log.participations, |_| true);
        assert_eq!((spent.rounds, spent.without_noise), (1, 1));
        assert_eq!(spent.epsilon(1e-5), 0.0);
        assert!(over_budget(&log, &policy, &m, "c", "j", now).is_none());
        log.participations
            .push(participation("j", Some(m.privacy.rho_per_round()), now));
        let spent = Spent::of(&log.participations, |_| true);
        assert!(spent.epsilon(1e-5).is_finite() && spent.epsilon(1e-5) > 0.0);
        assert_eq!(spent.without_noise, 1);
    }

    #[test]
    fn limits_are_set_by_name_and_checked() {
        let mut p = Policy::default();
        p.set("max-epsilon-per-job", "1").unwrap();
        p.set("require-noise", "false").unwrap();
        assert_eq!((p.max_epsilon_per_job, p.require_noise), (1.0, false));
        assert!(p.set("max-epsilon-per-job", "-1").is_err());
        assert!(p.set("min-k", "1").is_err());
        assert!(p.set("colour", "blue").unwrap_err().contains("no limit"));
    }

    fn test_manifest() -> Manifest {
        use c2ssi_protocol::{
            Amount, DataRequirements, Header, Purpose, Signer, SigningKey, collective_id,
        };
        let key = SigningKey::generate().unwrap().public_key();
        Manifest {
            header: Header::new(Purpose::Manifest, &collective_id(&key), 60_000),
            version: 1,
            name: "n".into(),
            description: "d".into(),
            requirements: DataRequirements { tables: Vec::new() },
            allowed_algorithms: Vec::new(),
            rate: Amount(1),
            privacy: privacy::default_terms(),
            collective_key: key,
            broker_key: key,
            aggregator_key: key,
            aggregator_recipient: String::new(),
            credential: None,
        }
    }
}

/// What one collective has cost this wallet.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectiveSpent {
    /// The collective.
    pub collective_id: String,
    /// The jobs its rounds belonged to.
    pub jobs: usize,
    /// Every round.
    pub all: Spent,
    /// The rounds of the last 365 days.
    pub last_year: Spent,
}

/// The privacy spent, per collective (in the order of their ids), in total
/// and over the last 365 days, as `wallet privacy` and `wallet ui` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyReport {
    /// Per collective.
    pub collectives: Vec<CollectiveSpent>,
    /// Every round.
    pub total: Spent,
    /// The rounds of the last 365 days.
    pub last_year: Spent,
}

/// The report of `log` at time `now`.
pub fn report(log: &AccessLog, now: u64) -> PrivacyReport {
    let recent = |p: &Participation| p.time_ms + YEAR_MS >= now;
    let mut jobs: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for p in &log.participations {
        let list = jobs.entry(p.collective_id.as_str()).or_default();
        if !list.contains(&p.job_id.as_str()) {
            list.push(p.job_id.as_str());
        }
    }
    PrivacyReport {
        collectives: jobs
            .iter()
            .map(|(id, list)| CollectiveSpent {
                collective_id: id.to_string(),
                jobs: list.len(),
                all: Spent::of(&log.participations, |p| p.collective_id == *id),
                last_year: Spent::of(&log.participations, |p| p.collective_id == *id && recent(p)),
            })
            .collect(),
        total: Spent::of(&log.participations, |_| true),
        last_year: Spent::of(&log.participations, recent),
    }
}
