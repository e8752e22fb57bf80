//! Every algorithm in `algorithms/` loads, describes itself, initializes a
//! model, trains (the update lowers the local loss) and evaluates, in the
//! sandbox.

use crate::support::*;
use c2ssi_guest_sdk::Param;

#[test]
fn linear_regression_trains_in_the_sandbox_and_lowers_the_loss() {
    let sandbox = sandbox();
    let component = load(&sandbox, test_guest_artifacts::LINEAR_REGRESSION);
    let info = sandbox
        .describe(&component)
        .into_result()
        .expect("describe");
    assert_eq!(info.name, "linear-regression");
    let params: Vec<Param> = vec![
        text("label", "y"),
        integer("epochs", 5),
        real("learning_rate", 0.2),
    ];
    let table = linear_table(200, 4);
    let model = sandbox
        .init_model(&component, &params, 4)
        .into_result()
        .expect("init");
    assert_eq!(model, vec![0.0; 5]);
    let report = sandbox.train(&component, &model, &params, &table, 1, None);
    println!("{:?}", report.stats);
    let checked = report.result.expect("train");
    let metric = |name: &str| {
        checked
            .update
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
            .expect("metric")
    };
    assert!(metric("mse_after") < metric("mse_before") / 4.0);
    assert_eq!(checked.update.examples, 200);
}
