//! `--seed` fixes everything a run draws (wallet keys, the sample of each
//! round, the task seeds, the noise), so that two runs print the same numbers
//! bit for bit; another seed gives other numbers.

use simulate::{SimulateOptions, run};

fn curve(seed: u64) -> (Vec<u64>, Vec<String>) {
    let options = SimulateOptions {
        rounds: 4,
        wallets_per_round: Some(40),
        seed,
        keep_releases: true,
        ..SimulateOptions::default()
    };
    let summary = run(&options, &|_| {}).expect("the simulation runs");
    assert!(summary.noise, "the default terms add noise");
    (
        summary
            .points
            .iter()
            .map(|p| p.held_out.to_bits())
            .collect(),
        summary
            .releases
            .iter()
            .map(|r| format!("{:?}", r.aggregate))
            .collect(),
    )
}

#[test]
fn the_same_seed_repeats_bit_for_bit_sampling_and_noise_included() {
    let a = curve(11);
    assert_eq!(a, curve(11));
    assert_ne!(a.0, curve(12).0);
}
