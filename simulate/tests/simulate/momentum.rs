//! Centered clipping with server momentum starts each round from the last
//! aggregate the job released, which the broker hands the aggregator: with
//! a radius that clips nothing it is FedAvgM exactly (up to rounding), and
//! a broker that forgot the center would release a tenth of the update.

use c2ssi_protocol::{AggregationRule, LrSchedule};
use simulate::{PrivacySetting, SimulateOptions, Summary, run};

fn releases(rule: AggregationRule, server_lr: f64, momentum: f64) -> Summary {
    let options = SimulateOptions {
        rounds: 5,
        wallets_per_round: Some(30),
        seed: 3,
        rule,
        server_lr,
        momentum,
        schedule: LrSchedule::Constant,
        privacy: PrivacySetting::Off,
        ..SimulateOptions::default()
    };
    run(&options, &|_| {}).expect("the simulation runs")
}

#[test]
fn a_radius_that_clips_nothing_is_fedavgm_and_each_round_starts_from_the_last() {
    let beta = 0.9;
    let fedavgm = releases(AggregationRule::Mean, 0.5, beta);
    let rule = AggregationRule::CenteredClippingMomentum { radius: 1e9, beta };
    // `v = beta v + (1 - beta) mean`, `w += lr v`: FedAvgM's velocity times
    // (1 - beta), so the same steps at lr / (1 - beta).
    let momentum = releases(rule, 0.5 / (1.0 - beta), 0.0);
    assert_eq!(momentum.rounds_released, 5);
    for (a, b) in fedavgm.points.iter().zip(&momentum.points) {
        assert!(
            (a.held_out - b.held_out).abs() <= 1e-4 * a.held_out.abs(),
            "round {}: FedAvgM {} against {}",
            a.round,
            a.held_out,
            b.held_out
        );
    }
    // Without the center each round would start from zero: the memoryless
    // step, which this run tells apart.
    let memoryless = releases(AggregationRule::Mean, 0.5, 0.0);
    let (last, forgetful) = (
        fedavgm.points.last().unwrap().held_out,
        memoryless.points.last().unwrap().held_out,
    );
    assert!(
        (last - forgetful).abs() > 1e-2 * last.abs(),
        "{last} against {forgetful}"
    );
}
