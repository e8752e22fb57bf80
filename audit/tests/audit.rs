//! The privacy audit on real components, under the example collective's
//! terms (k = 5, updates clipped to 0.1, epsilon 2 over 10 rounds): a
//! learner passes; an attack that spends the whole norm on every record is
//! flagged; every audit stays below the accountant's epsilon, and the
//! attacks that spend more of the norm come closer to it. Audits are seeded,
//! so these results repeat exactly.

use c2ssi_audit::{AuditOptions, audit};
use c2ssi_guest_sdk::{ColumnSpec, ColumnType, Param, ParamValue};
use c2ssi_protocol::{DataRequirements, MetricBound, PrivacyTerms, TableRequirement};
use c2ssi_sandbox::{Sandbox, SandboxLimits};

fn requirement() -> TableRequirement {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/diabetes-collective.json"))
            .expect("the example manifest");
    let requirements: DataRequirements =
        serde_json::from_value(file["requirements"].clone()).expect("its requirements");
    requirements.tables[0].clone()
}

fn terms() -> PrivacyTerms {
    PrivacyTerms::with_epsilon(
        5,
        0.1,
        1e-5,
        10,
        2.0,
        vec![MetricBound {
            name: "mse_before".into(),
            min: 0.0,
            max: 40_000.0,
        }],
    )
    .expect("terms")
}

fn run(path: &str) -> c2ssi_audit::Audit {
    run_with(
        path,
        &requirement(),
        &[Param::new("label", ParamValue::Text("progression".into()))],
    )
}

fn run_with(path: &str, requirement: &TableRequirement, params: &[Param]) -> c2ssi_audit::Audit {
    let sandbox = Sandbox::new(SandboxLimits::default()).expect("a sandbox");
    let component = sandbox
        .load(&std::fs::read(path).expect("the component"))
        .expect("it loads");
    audit(
        &sandbox,
        &component,
        requirement,
        &terms(),
        params,
        &AuditOptions::default(),
    )
    .expect("the audit runs")
}

#[test]
fn a_learner_passes_and_an_encoder_is_flagged() {
    let per_release = terms().epsilon_after(1);
    let learner = run(test_guest_artifacts::LINEAR_REGRESSION);
    assert!(!learner.summary.flagged_encoding, "{:#?}", learner.lines());
    assert!(learner.summary.at_clip_bound < 1.0);
    assert_eq!(learner.summary.accountant_epsilon, Some(per_release));
    assert!(
        learner.summary.empirical_epsilon <= per_release,
        "{:#?}",
        learner.lines()
    );

    let encoder = run(test_guest_artifacts::ATTACK_ATTRIBUTE);
    assert!(encoder.summary.flagged_encoding, "{:#?}", encoder.lines());
    assert_eq!(encoder.summary.at_clip_bound, 1.0);
    assert!(
        encoder.summary.empirical_epsilon <= per_release,
        "{:#?}",
        encoder.lines()
    );

    let stealthy = run(test_guest_artifacts::ATTACK_ATTRIBUTE_STEALTHY);
    assert!(
        !stealthy.summary.flagged_encoding,
        "{:#?}",
        stealthy.lines()
    );
    assert!(stealthy.summary.empirical_epsilon <= per_release);

    // The sparse-slot attack spends almost nothing of the norm: against
    // the noise, it is weaker than the learner.
    let sparse = run(test_guest_artifacts::ATTACK_SPARSE_SLOT);
    assert!(!sparse.summary.flagged_encoding);
    assert!(sparse.influence.2 < 1e-3, "{:?}", sparse.influence);
}

#[test]
fn a_learner_whose_step_exceeds_the_clip_is_not_flagged() {
    // Logistic regression at its default learning rate on a binary label:
    // every record's update reaches the clip, as an encoder's does, but it
    // answers the model it starts from.
    let mut binary = requirement();
    binary.columns.push(ColumnSpec {
        name: "high".into(),
        ty: ColumnType::Boolean,
    });
    let learner = run_with(
        test_guest_artifacts::LOGISTIC_REGRESSION,
        &binary,
        &[
            Param::new("label", ParamValue::Text("high".into())),
            Param::new(
                "features",
                ParamValue::TextList(vec!["age".into(), "bmi".into(), "bp".into()]),
            ),
        ],
    );
    assert_eq!(learner.summary.at_clip_bound, 1.0, "{:#?}", learner.lines());
    assert!(!learner.summary.flagged_encoding, "{:#?}", learner.lines());
    assert!(
        learner.model_response.is_some_and(|r| r > 0.01),
        "{:#?}",
        learner.lines()
    );

    // The encoder's updates do not move with the model.
    let encoder = run(test_guest_artifacts::ATTACK_ATTRIBUTE);
    assert!(
        encoder.model_response.is_some_and(|r| r < 1e-3),
        "{:#?}",
        encoder.lines()
    );
}

#[test]
fn failures_count_as_zero_updates() {
    let failing = run(test_guest_artifacts::ATTACK_FAILURE);
    assert!(failing.failures > 0, "{:#?}", failing.lines());
    assert!(!failing.summary.flagged_encoding);
}
