//! The manifest file an operator writes (JSON), and the manifest built from
//! it: the broker's and the aggregator's keys from `GET /keys`, the
//! privacy terms with the accountant's epsilon, signed by the collective.
//!
//! ```json
//! {
//!   "name": "diabetes-progression",
//!   "description": "what it trains and why, for the people asked",
//!   "rate": "0.005",
//!   "requirements": {"tables": [{"table": "diabetes", "columns": [...], "min_rows": 1}]},
//!   "privacy": {"k": 10, "clip_norm": 1.0, "epsilon": 2.0, "rounds_per_wallet": 10,
//!               "delta": 1e-5, "metrics": [{"name": "mse_before", "min": 0, "max": 40000}]},
//!   "credential": {"credential_type": "UniquePersonCredential", "issuers": ["did:key:z6Mk..."]}
//! }
//! ```
//!
//! Every privacy term left out takes its default (k 10, clipping 1, epsilon
//! 2 per job, 10 rounds per wallet, delta 1e-5, no metrics), and the
//! defaults used are named. `"noise_multiplier"` may be given instead of
//! `"epsilon"`; `0` means no noise, which no default wallet accepts.

use std::path::Path;

use anyhow::{Context, bail};
use c2ssi_protocol::{
    AllowedAlgorithm, Amount, BrokerKeys, CredentialRequirement, DataRequirements, Header,
    Manifest, MetricBound, PrivacyTerms, Purpose, Signer, SigningKey, collective_id, privacy,
};
use serde::Deserialize;

/// How long a manifest's signature is valid: subscribers keep it as a record.
const MANIFEST_VALIDITY_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// The privacy terms as an operator writes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsFile {
    /// The smallest batch released.
    pub k: Option<u32>,
    /// The norm every wallet clips its update to.
    pub clip_norm: Option<f64>,
    /// The epsilon one job may cost a wallet (the noise is computed from it).
    pub epsilon: Option<f64>,
    /// The noise multiplier (the epsilon is computed from it).
    pub noise_multiplier: Option<f64>,
    /// The most rounds of a job one wallet takes part in.
    pub rounds_per_wallet: Option<u32>,
    /// The delta.
    pub delta: Option<f64>,
    /// The metrics that may leave wallets, with their ranges.
    #[serde(default)]
    pub metrics: Vec<MetricBound>,
}

impl TermsFile {
    /// The terms, and the names of the terms that took their default.
    pub fn terms(&self) -> anyhow::Result<(PrivacyTerms, Vec<&'static str>)> {
        let d = privacy::default_terms();
        let mut defaults = Vec::new();
        let mut pick = |given: Option<f64>, default: f64, name: &'static str| {
            given.unwrap_or_else(|| {
                defaults.push(name);
                default
            })
        };
        let clip_norm = pick(self.clip_norm, d.clip_norm, "clip_norm");
        let delta = pick(self.delta, d.delta, "delta");
        let k = self.k.unwrap_or_else(|| {
            defaults.push("k");
            d.min_batch
        });
        let rounds = self.rounds_per_wallet.unwrap_or_else(|| {
            defaults.push("rounds_per_wallet");
            d.rounds_per_wallet
        });
        let terms = match (self.epsilon, self.noise_multiplier) {
            (Some(_), Some(_)) => bail!(
                "privacy: give 'epsilon' or 'noise_multiplier', not both (each follows from the other)"
            ),
            (Some(eps), None) => {
                PrivacyTerms::with_epsilon(k, clip_norm, delta, rounds, eps, self.metrics.clone())?
            }
            (None, Some(z)) => {
                PrivacyTerms::with_noise(k, clip_norm, delta, rounds, z, self.metrics.clone())?
            }
            (None, None) => {
                defaults.push("epsilon");
                PrivacyTerms::with_epsilon(
                    k,
                    clip_norm,
                    delta,
                    rounds,
                    privacy::DEFAULT_EPSILON,
                    self.metrics.clone(),
                )?
            }
        };
        Ok((terms, defaults))
    }
}

/// The manifest file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// A short name.
    pub name: String,
    /// What the collective trains and why, for the people asked to subscribe.
    pub description: String,
    /// What each access pays, as a decimal ("0.005").
    pub rate: String,
    /// The data it needs.
    pub requirements: DataRequirements,
    /// The privacy terms; defaults for what is left out.
    #[serde(default)]
    pub privacy: TermsFile,
    /// The credential every subscriber must present (against Sybils):
    /// `{"credential_type": "UniquePersonCredential", "issuers": ["did:key:..."]}`.
    /// Without it, anyone may subscribe with any number of keys.
    #[serde(default)]
    pub credential: Option<CredentialRequirement>,
}

impl ManifestFile {
    /// Reads and parses `path`; an error names the file, and the line and
    /// column of a syntax or field error.
    pub fn read(path: &Path) -> anyhow::Result<ManifestFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the manifest {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected {{\"name\", \"description\", \"rate\": \"0.005\", \"requirements\": \
                 {{\"tables\": [...]}}, \"privacy\": {{\"k\", \"clip_norm\", \"epsilon\", \
                 \"rounds_per_wallet\", \"delta\", \"metrics\"}}, \"credential\": \
                 {{\"credential_type\", \"issuers\": [\"did:key:...\"]}}}}",
                path.display()
            )
        })
    }

    /// The rate, parsed.
    pub fn rate(&self) -> anyhow::Result<Amount> {
        self.rate.parse().context("field 'rate'")
    }
}

/// A manifest: `file`'s content at `version`, allowing `algorithms`, naming
/// the broker's and aggregator's `keys`, for the collective whose key is
/// `key`. Checked before it is returned.
pub fn build(
    file: &ManifestFile,
    terms: PrivacyTerms,
    key: &SigningKey,
    keys: &BrokerKeys,
    version: u64,
    algorithms: Vec<AllowedAlgorithm>,
) -> anyhow::Result<Manifest> {
    let id = collective_id(&key.public_key());
    let manifest = Manifest {
        header: Header::new(Purpose::Manifest, &id, MANIFEST_VALIDITY_MS),
        version,
        name: file.name.clone(),
        description: file.description.clone(),
        requirements: file.requirements.clone(),
        allowed_algorithms: algorithms,
        rate: file.rate()?,
        privacy: terms,
        collective_key: key.public_key(),
        broker_key: keys.broker_key,
        aggregator_key: keys.aggregator.public_key,
        aggregator_recipient: keys.aggregator.recipient.clone(),
        credential: file.credential.clone(),
    };
    manifest.check().map_err(anyhow::Error::msg)?;
    Ok(manifest)
}

/// The same manifest, one version later, with a fresh header.
pub fn next_version(current: &Manifest) -> Manifest {
    let mut next = current.clone();
    next.version += 1;
    next.header = Header::new(
        Purpose::Manifest,
        &current.header.collective_id,
        MANIFEST_VALIDITY_MS,
    );
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_terms_take_named_defaults() {
        let (terms, defaults) = TermsFile::default().terms().unwrap();
        assert_eq!(terms, privacy::default_terms());
        assert_eq!(
            defaults,
            vec!["clip_norm", "delta", "k", "rounds_per_wallet", "epsilon"]
        );
        let given = TermsFile {
            k: Some(5),
            noise_multiplier: Some(0.0),
            ..TermsFile::default()
        };
        let (terms, _) = given.terms().unwrap();
        assert!(!terms.has_noise() && terms.min_batch == 5);
        let both = TermsFile {
            epsilon: Some(1.0),
            noise_multiplier: Some(1.0),
            ..TermsFile::default()
        };
        assert!(both.terms().is_err());
    }

    #[test]
    fn a_misnamed_field_is_named_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(
            &path,
            r#"{"name": "n", "description": "d", "rate": "1",
                "requirements": {"tables": []}, "min_batch": 5}"#,
        )
        .unwrap();
        let err = format!("{:#}", ManifestFile::read(&path).unwrap_err());
        assert!(err.contains("min_batch") && err.contains("line 2"), "{err}");
    }
}
