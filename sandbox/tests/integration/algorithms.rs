//! Every algorithm in `algorithms/` loads, describes itself, initializes a
//! model, trains (lowering the local loss), evaluates (naming its loss) and
//! predicts (on rows without the label) in the sandbox, and gives the same
//! update, evaluation and predictions in the sandbox as natively: the same
//! code runs the same way in both.

use c2ssi_guest_sdk::{Algorithm, Metric, Param, ParamValue, Table};

use crate::support::*;

fn metric(metrics: &[Metric], name: &str) -> f64 {
    metrics
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.value)
        .unwrap_or_else(|| panic!("no metric {name} in {metrics:?}"))
}

/// Trains `A` in the sandbox and natively from the same model, checks that
/// the loss falls, and that both updates agree within `tolerance`.
fn check_algorithm<A: Algorithm>(
    path: &str,
    params: Vec<Param>,
    table: &Table,
    feature_count: usize,
    loss: (&str, &str),
    tolerance: f32,
) -> Vec<f32> {
    let sandbox = sandbox();
    let component = load(&sandbox, path);
    let info = sandbox
        .describe(&component)
        .into_result()
        .expect("describe");
    assert_eq!(info, A::info(), "describe matches the native declaration");

    let model = sandbox
        .init_model(&component, &params, feature_count)
        .into_result()
        .expect("init-model");
    let native_model = c2ssi_guest_sdk::init_model::<A>(params.clone(), feature_count as u32)
        .expect("native init");
    assert_eq!(model, native_model);

    let checked = sandbox
        .train(&component, &model, &params, table, 11, None)
        .into_result()
        .expect("train");
    let native =
        c2ssi_guest_sdk::train::<A>(&model, params.clone(), table, 11).expect("native train");
    assert_eq!(checked.update.examples, native.examples);
    assert_eq!(checked.update.delta.len(), native.delta.len());
    for (i, (s, n)) in checked.update.delta.iter().zip(&native.delta).enumerate() {
        assert!(
            (s - n).abs() <= tolerance * (1.0 + n.abs()),
            "parameter {i}: sandbox {s} vs native {n}"
        );
    }
    let (before, after) = loss;
    let m = &checked.update.metrics;
    assert!(metric(m, after) < metric(m, before), "{m:?}");

    let trained: Vec<f32> = model
        .iter()
        .zip(&checked.update.delta)
        .map(|(w, d)| w + d)
        .collect();
    let evaluated = sandbox
        .evaluate(&component, &trained, &params, table)
        .into_result()
        .expect("evaluate");
    assert_eq!(
        format!("{}_before", evaluated.loss.name),
        before,
        "the loss evaluate names is the one training reports"
    );
    let native_evaluated =
        c2ssi_guest_sdk::evaluate::<A>(&trained, params.clone(), table).expect("native evaluate");
    for (s, n) in evaluated.all().zip(native_evaluated.all()) {
        assert_eq!(s.name, n.name);
        assert!(
            (s.value - n.value).abs() <= 1e-3 * (1.0 + n.value.abs()),
            "{s:?} vs {n:?}"
        );
    }

    // Predictions for rows without the label, in the label's own type.
    let label_name = params
        .iter()
        .find_map(|p| match (&*p.name, &p.value) {
            ("label", ParamValue::Text(l)) => Some(l.clone()),
            _ => None,
        })
        .expect("a label parameter");
    let label = table.column(&label_name).expect("label column").spec();
    let features: Vec<String> = table
        .columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| *n != label_name)
        .collect();
    let unlabelled = table.project(&features).expect("project");
    let predicted = sandbox
        .predict(&component, &trained, &params, &unlabelled, &label)
        .into_result()
        .expect("predict");
    let native_predicted =
        c2ssi_guest_sdk::predict::<A>(&trained, params.clone(), &unlabelled, &label)
            .expect("native predict");
    assert_eq!(predicted[0].name, label_name);
    assert_eq!(predicted.len(), native_predicted.len());
    for (s, n) in predicted.iter().zip(&native_predicted) {
        assert_eq!((&s.name, &s.ty), (&n.name, &n.ty));
        for row in 0..table.row_count {
            let value = |c: &c2ssi_guest_sdk::Column| c.value_f64(row).expect("a value per row");
            let (a, b) = (value(s), value(n));
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "{}: row {row}",
                s.name
            );
        }
    }
    trained
}

#[test]
fn linear_regression() {
    let params = vec![
        text("label", "y"),
        integer("epochs", 5),
        real("learning_rate", 0.2),
    ];
    let table = linear_table(200, 4);
    check_algorithm::<linear_regression::LinearRegression>(
        test_guest_artifacts::LINEAR_REGRESSION,
        params,
        &table,
        4,
        ("mse_before", "mse_after"),
        0.0,
    );
}

#[test]
fn logistic_regression() {
    let params = vec![text("label", "class"), integer("epochs", 5)];
    let table = class_table(300, 3, 2);
    check_algorithm::<logistic_regression::LogisticRegression>(
        test_guest_artifacts::LOGISTIC_REGRESSION,
        params,
        &table,
        3,
        ("log_loss_before", "log_loss_after"),
        1e-4,
    );
}

#[test]
fn softmax_regression() {
    let params = vec![
        text("label", "class"),
        integer("classes", 4),
        integer("epochs", 5),
    ];
    let table = class_table(300, 3, 4);
    check_algorithm::<softmax_regression::SoftmaxRegression>(
        test_guest_artifacts::SOFTMAX_REGRESSION,
        params,
        &table,
        3,
        ("cross_entropy_before", "cross_entropy_after"),
        1e-4,
    );
}

#[test]
fn elm_ridge_uses_linfa_inside_the_sandbox() {
    let params = vec![
        text("label", "y"),
        integer("hidden_units", 16),
        real("penalty", 0.01),
    ];
    let table = linear_table(120, 4);
    check_algorithm::<elm_ridge::ElmRidge>(
        test_guest_artifacts::ELM_RIDGE,
        params,
        &table,
        4,
        ("mse_before", "mse_after"),
        1e-3,
    );
}

/// One wallet with every row: the model after its update is the least-
/// squares fit of those rows, as the normal equations give it.
#[test]
fn least_squares_solves_the_normal_equations_inside_the_sandbox() {
    let params = vec![text("label", "y"), real("penalty", 0.0)];
    let table = linear_table(150, 4);
    let trained = check_algorithm::<least_squares::LeastSquares>(
        test_guest_artifacts::LEAST_SQUARES,
        params.clone(),
        &table,
        4,
        ("mse_before", "mse_after"),
        1e-6,
    );
    let evaluated =
        c2ssi_guest_sdk::evaluate::<least_squares::LeastSquares>(&trained, params, &table)
            .expect("evaluate");
    let r2 = evaluated.score.value;
    assert!(r2 > 0.9, "the exact fit explains the linear table: r2 {r2}");
}

#[test]
fn logistic_newton_steps_by_the_hessian_inside_the_sandbox() {
    let params = vec![text("label", "class"), real("l2", 0.01)];
    let table = class_table(300, 3, 2);
    check_algorithm::<logistic_newton::LogisticNewton>(
        test_guest_artifacts::LOGISTIC_NEWTON,
        params,
        &table,
        3,
        ("log_loss_before", "log_loss_after"),
        1e-5,
    );
}

#[test]
fn softmax_newton_steps_by_the_class_blocks_inside_the_sandbox() {
    let params = vec![
        text("label", "class"),
        integer("classes", 4),
        real("l2", 0.01),
    ];
    let table = class_table(300, 3, 4);
    check_algorithm::<softmax_newton::SoftmaxNewton>(
        test_guest_artifacts::SOFTMAX_NEWTON,
        params,
        &table,
        3,
        ("cross_entropy_before", "cross_entropy_after"),
        1e-5,
    );
}

#[test]
fn algorithm_errors_are_reported_as_the_algorithm_s_own() {
    let sandbox = sandbox();
    let component = load(&sandbox, test_guest_artifacts::SOFTMAX_REGRESSION);
    let params = vec![text("label", "class"), integer("classes", 3)];
    let err = sandbox
        .train(
            &component,
            &[0.0; 16],
            &params,
            &class_table(10, 3, 4),
            0,
            None,
        )
        .into_result()
        .expect_err("wrong class count");
    assert_eq!(
        err.to_string(),
        "the algorithm reported an error: hyper-parameter 'classes' is 3 but the label declares 4 classes"
    );
    let err = sandbox
        .init_model(&component, &[text("label", "class")], 3)
        .into_result()
        .expect_err("classes is required");
    assert!(
        err.to_string()
            .contains("missing required hyper-parameter 'classes'"),
        "{err}"
    );
}

#[test]
fn a_core_module_and_garbage_are_refused_before_anything_runs() {
    let sandbox = sandbox();
    let err = sandbox.load(b"not wasm at all").expect_err("garbage");
    assert!(
        err.to_string()
            .contains("does not start with the WebAssembly magic number")
    );
    let core_module = b"\0asm\x01\0\0\0";
    let err = sandbox.load(core_module).expect_err("core module");
    assert!(
        err.to_string()
            .contains("a core WebAssembly module, not a component"),
        "{err}"
    );
    let bytes = std::fs::read(test_guest_artifacts::LINEAR_REGRESSION).expect("built");
    let err = sandbox
        .load(&bytes[..bytes.len() / 2])
        .expect_err("truncated");
    assert!(
        err.to_string()
            .starts_with("not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn components_are_compiled_once_and_cached_by_hash() {
    let sandbox = sandbox();
    let bytes = std::fs::read(test_guest_artifacts::LINEAR_REGRESSION).expect("built");
    let first = sandbox.load(&bytes).expect("load");
    let second = sandbox.load(&bytes).expect("load");
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(first.sha256(), c2ssi_sandbox::sha256(&bytes));
}
