//! The consumer's attacks at the scale of the diabetes data (353 wallets, one
//! person each), in one process over the same code paths as the real
//! processes: without noise (research mode) they read what they were written
//! for, under the default terms (epsilon 2 per job) they do not.
//!
//! - sparse slots: every record read back out of the exact releases; none
//!   out of the noised ones;
//! - one attribute, a shade under the clipping norm, against the strong
//!   adversary who knows every record but the target's bit: every bit right
//!   without noise; under noise, a fraction whose 99.9% upper confidence
//!   bound stays under the bound epsilon allows, `e^eps / (1 + e^eps) + delta`.

use c2ssi_guest_sdk::Table;
use c2ssi_protocol::privacy;
use simulate::data::{self, DataSource};
use simulate::{AlgorithmSource, PrivacySetting, SimulateOptions, Summary, run};
use statrs::distribution::{Beta, ContinuousCDF};
use test_guests::attacks;

fn attack(path: &str, privacy: PrivacySetting, rounds: u32) -> Summary {
    let options = SimulateOptions {
        algorithm: AlgorithmSource::File(path.into()),
        rounds,
        momentum: 0.0,
        optimizer: c2ssi_protocol::ServerOptimizer::FedAvgM,
        schedule: c2ssi_protocol::LrSchedule::Constant,
        server_lr: 1.0,
        privacy,
        keep_releases: true,
        ..SimulateOptions::default()
    };
    run(&options, &|_| {}).expect("the simulation runs")
}

fn default_terms() -> PrivacySetting {
    PrivacySetting::On {
        epsilon: privacy::DEFAULT_EPSILON,
        clip_norm: 0.1,
        delta: 1e-5,
        rounds_per_wallet: None,
    }
}

/// Each wallet's record, as the algorithm saw it.
fn records(summary: &Summary) -> Vec<Table> {
    summary.owner_records(&data::load(&DataSource::Diabetes).expect("diabetes"))
}

#[test]
fn records_in_slots_come_back_without_noise_and_not_with_it() {
    let exact = attack(
        test_guest_artifacts::ATTACK_SPARSE_SLOT,
        PrivacySetting::Off,
        3,
    );
    let chunks: Vec<Vec<u16>> = records(&exact).iter().map(attacks::chunks).collect();
    let read = attacks::recovered(&exact.released_sums(), &chunks);
    assert!(
        read > chunks.len() * 3 / 4,
        "the attack read only {read} of {} records out of exact sums",
        chunks.len()
    );

    let noised = attack(test_guest_artifacts::ATTACK_SPARSE_SLOT, default_terms(), 3);
    let chunks: Vec<Vec<u16>> = records(&noised).iter().map(attacks::chunks).collect();
    assert_eq!(noised.releases.len(), 3);
    assert_eq!(attacks::recovered(&noised.released_sums(), &chunks), 0);
}

#[test]
fn attribute_inference_stays_under_the_bound_of_the_epsilon_spent() {
    let bits = |s: &Summary| -> Vec<bool> {
        records(s)
            .iter()
            .map(|t| attacks::value(t, "sex") > 0.0)
            .collect()
    };
    let accuracy = |s: &Summary| -> (usize, usize) {
        let slot: Vec<f64> = s
            .released_sums()
            .iter()
            .map(|sum| f64::from(sum[0]))
            .collect();
        let truth = bits(s);
        let guesses = attacks::guess_bits(&slot, &truth, &vec![0.098; truth.len()]);
        let right = guesses.iter().zip(&truth).filter(|(g, t)| g == t).count();
        (right, truth.len())
    };

    let exact = attack(
        test_guest_artifacts::ATTACK_ATTRIBUTE_STEALTHY,
        PrivacySetting::Off,
        1,
    );
    let (right, n) = accuracy(&exact);
    assert_eq!(right, n, "without noise every bit is read");

    let rounds = 10;
    let noised = attack(
        test_guest_artifacts::ATTACK_ATTRIBUTE_STEALTHY,
        default_terms(),
        rounds,
    );
    assert_eq!(noised.releases.len(), rounds as usize);
    let epsilon = noised.epsilon.expect("an epsilon");
    assert!(epsilon <= privacy::DEFAULT_EPSILON + 1e-9, "{epsilon}");
    let (right, n) = accuracy(&noised);
    let bound = privacy::attribute_inference_bound(epsilon, 1e-5);
    let upper = Beta::new(right as f64 + 1.0, (n - right) as f64)
        .expect("a beta")
        .inverse_cdf(0.999);
    assert!(
        upper < bound,
        "{right} of {n} right (99.9% upper bound {upper:.3}); epsilon {epsilon:.3} allows {bound:.3}"
    );
}
