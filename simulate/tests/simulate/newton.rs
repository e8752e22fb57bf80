//! The Newton algorithms through the real broker, aggregator and sandbox:
//! run as they must be (the mean applied as it is) they reach the
//! centralized fit, and a run that would repeat their steps by momentum is
//! refused before it starts, naming the algorithm.

use c2ssi_guest_sdk::{Param, ParamValue};
use c2ssi_protocol::LrSchedule;
use simulate::data::DataSource;
use simulate::error::SimError;
use simulate::{AlgorithmSource, PrivacySetting, SimulateOptions, Summary, run};

fn newton(algorithm: &str, momentum: f64, schedule: LrSchedule) -> Result<Summary, SimError> {
    let mut params = vec![Param::new("l2", ParamValue::Real(0.005))];
    if algorithm == "softmax-newton" {
        params.push(Param::new("rate", ParamValue::Real(0.7)));
    }
    let options = SimulateOptions {
        data: DataSource::SyntheticLogistic { people: 300 },
        algorithm: AlgorithmSource::Embedded(algorithm.into()),
        params,
        rounds: 8,
        seed: 5,
        momentum,
        schedule,
        privacy: PrivacySetting::Off,
        ..SimulateOptions::default()
    };
    run(&options, &|_| {})
}

#[test]
fn newton_steps_applied_as_they_are_reach_the_centralized_fit() {
    for algorithm in ["logistic-newton", "softmax-newton"] {
        let summary = newton(algorithm, 0.0, LrSchedule::Constant).expect("the simulation runs");
        let centralized = summary.centralized.expect("a centralized fit");
        assert_eq!(summary.metric, "accuracy");
        assert!(
            (summary.federated - centralized).abs() <= 0.02,
            "{algorithm}: federated {} against centralized {centralized}",
            summary.federated
        );
    }
}

#[test]
fn momentum_that_would_repeat_a_newton_step_is_refused_by_name() {
    for algorithm in ["logistic-newton", "softmax-newton"] {
        for (momentum, schedule) in [
            (0.9, LrSchedule::Constant),
            (0.0, LrSchedule::Cosine { floor: 0.1 }),
        ] {
            match newton(algorithm, momentum, schedule) {
                Err(SimError::Invalid(message)) => assert!(
                    message.starts_with(algorithm) && message.contains("--momentum 0"),
                    "{message}"
                ),
                other => panic!("{algorithm} at momentum {momentum}: {other:?}"),
            }
        }
    }
}
