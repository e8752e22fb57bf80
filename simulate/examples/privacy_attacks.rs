//! The consumer's attacks at the scale of the diabetes data (353 wallets),
//! with and without noise, as a Markdown table for `docs/PRIVACY.md`:
//!
//! ```sh
//! cargo run --release -p simulate --example privacy_attacks
//! ```
//!
//! Each attack is a component of `test-guests/examples/`, run over the same
//! code paths as the real processes; the consumer reads only the released
//! aggregates (server learning rate 1, no momentum: consecutive model
//! versions differ by exactly the release).

use c2ssi_guest_sdk::Table;
use c2ssi_protocol::privacy;
use simulate::data::{self, DataSource};
use simulate::{AlgorithmSource, PrivacySetting, SimulateOptions, Summary, run};
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
    match run(&options, &|_| {}) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}

fn records(summary: &Summary) -> Vec<Table> {
    let people = data::load(&DataSource::Diabetes).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    summary.owner_records(&people)
}

fn main() {
    let on = PrivacySetting::On {
        epsilon: privacy::DEFAULT_EPSILON,
        clip_norm: 0.1,
        delta: 1e-5,
        rounds_per_wallet: None,
    };
    println!(
        "| attack | what the consumer gets without noise | with the default terms (epsilon 2 per job) |"
    );
    println!("|---|---|---|");
    for (name, path) in [
        (
            "sparse slots by seed",
            test_guest_artifacts::ATTACK_SPARSE_SLOT,
        ),
        (
            "slots by a hash of the record",
            test_guest_artifacts::ATTACK_ROW_HASH,
        ),
    ] {
        let cell = |setting: PrivacySetting| {
            let s = attack(path, setting, 3);
            let chunks: Vec<Vec<u16>> = records(&s).iter().map(attacks::chunks).collect();
            format!(
                "{} of {} records read whole, 3 rounds",
                attacks::recovered(&s.released_sums(), &chunks),
                chunks.len()
            )
        };
        println!(
            "| {name} | {} | {} |",
            cell(PrivacySetting::Off),
            cell(on.clone())
        );
    }
    let labels_cell = |setting: PrivacySetting| {
        let s = attack(test_guest_artifacts::ATTACK_EXAMPLES, setting, 3);
        let labels: Vec<f64> = records(&s)
            .iter()
            .map(|t| attacks::value(t, "progression"))
            .collect();
        // The attack wins a release that is one wallet's label; the mean of
        // all labels, which rounds to some label too, is not a win.
        let mean = labels.iter().sum::<f64>() / labels.len().max(1) as f64;
        let read = s
            .releases
            .iter()
            .filter(|r| {
                let v = f64::from(r.aggregate[0]) / 1e-6;
                labels.contains(&v.round()) && (v - mean).abs() > 0.5
            })
            .count();
        format!(
            "{read} of {} releases one wallet's label (each wallet weighs one)",
            s.releases.len()
        )
    };
    println!(
        "| u32::MAX examples when sex > 0 | {} | {} |",
        labels_cell(PrivacySetting::Off),
        labels_cell(on.clone())
    );
    let attribute = |setting: PrivacySetting, rounds: u32| {
        let s = attack(
            test_guest_artifacts::ATTACK_ATTRIBUTE_STEALTHY,
            setting,
            rounds,
        );
        let truth: Vec<bool> = records(&s)
            .iter()
            .map(|t| attacks::value(t, "sex") > 0.0)
            .collect();
        let slot: Vec<f64> = s
            .released_sums()
            .iter()
            .map(|sum| f64::from(sum[0]))
            .collect();
        let guesses = attacks::guess_bits(&slot, &truth, &vec![0.098; truth.len()]);
        let right = guesses.iter().zip(&truth).filter(|(g, t)| g == t).count();
        (right, truth.len(), s.epsilon)
    };
    let (exact, n, _) = attribute(PrivacySetting::Off, 1);
    let (noised, m, eps) = attribute(on, 10);
    let eps = eps.unwrap_or(f64::INFINITY);
    println!(
        "| one attribute (sex), 0.098 of the norm, strong adversary | {exact} of {n} right, 1 round | {noised} of {m} right ({:.1}%), 10 rounds, epsilon {eps:.3}: the bound allows {:.1}% |",
        100.0 * noised as f64 / m as f64,
        100.0 * privacy::attribute_inference_bound(eps, 1e-5)
    );
}
