//! Sandbox benchmarks, with results in `docs/PERFORMANCE.md`:
//!
//! - `fixed_cost`: one task on a one-row table: fresh store and instance,
//!   the call, and the update's checks. Target: under 100 µs.
//! - `train_1000x20_10_epochs/<algorithm>/{native,sandbox}`: the same
//!   algorithm core on 1,000 rows x 20 features for 10 local epochs, natively
//!   and in the sandbox. Target: sandbox at most 1.5x native for linear and
//!   logistic regression.
//!
//! Run with `cargo bench -p c2ssi-sandbox --bench sandbox`.

use std::hint::black_box;
use std::time::Duration;

use c2ssi_guest_sdk::{Algorithm, Column, ColumnData, ColumnType, Param, ParamValue, Table};
use c2ssi_sandbox::{Sandbox, SandboxLimits};
use criterion::{Criterion, criterion_group, criterion_main};

/// `rows` x `features` reals in [-1, 1], a real label `y`, a 4-level category
/// `class` and a boolean `flag`, all from a fixed xorshift sequence.
fn table(rows: usize, features: usize) -> Table {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let xs: Vec<Vec<f64>> = (0..features)
        .map(|_| (0..rows).map(|_| next()).collect())
        .collect();
    let score: Vec<f64> = (0..rows)
        .map(|i| {
            xs.iter()
                .enumerate()
                .map(|(j, c)| c[i] * ((j % 5) as f64 - 2.0))
                .sum::<f64>()
                / features as f64
        })
        .collect();
    let mut columns: Vec<Column> = xs
        .into_iter()
        .enumerate()
        .map(|(j, v)| Column {
            name: format!("x{j}"),
            ty: ColumnType::Real {
                min: Some(-1.0),
                max: Some(1.0),
            },
            data: ColumnData::Real(v),
        })
        .collect();
    columns.push(Column {
        name: "y".into(),
        ty: ColumnType::Real {
            min: None,
            max: None,
        },
        data: ColumnData::Real(score.iter().map(|s| s + 0.1 * next()).collect()),
    });
    columns.push(Column {
        name: "class".into(),
        ty: ColumnType::Category {
            levels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        },
        data: ColumnData::Category(
            score
                .iter()
                .map(|s| ((s + 1.0) * 2.0).clamp(0.0, 3.0) as u32)
                .collect(),
        ),
    });
    columns.push(Column {
        name: "flag".into(),
        ty: ColumnType::Boolean,
        data: ColumnData::Boolean(score.iter().map(|s| *s > 0.0).collect()),
    });
    Table::new("bench", rows, columns).expect("valid table")
}

fn p(name: &str, value: ParamValue) -> Param {
    Param::new(name, value)
}

fn features(n: usize) -> ParamValue {
    ParamValue::TextList((0..n).map(|j| format!("x{j}")).collect())
}

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxLimits::default()).expect("sandbox")
}

fn fixed_cost(c: &mut Criterion) {
    let sandbox = sandbox();
    let bytes = std::fs::read(test_guest_artifacts::LINEAR_REGRESSION).expect("built");
    let component = sandbox.load(&bytes).expect("load");
    let tiny = table(1, 2);
    let params = vec![
        p("label", ParamValue::Text("y".into())),
        p("features", features(2)),
    ];
    let model = vec![0.0f32; 3];
    c.bench_function("fixed_cost/train_one_row", |b| {
        b.iter(|| {
            let report = sandbox.train(&component, &model, &params, &tiny, 1, Some(1.0));
            black_box(report.result.expect("train"))
        })
    });
    c.bench_function("fixed_cost/describe", |b| {
        b.iter(|| black_box(sandbox.describe(&component).result.expect("describe")))
    });
}

fn compare<A: Algorithm>(c: &mut Criterion, name: &str, path: &str, params: Vec<Param>) {
    let sandbox = sandbox();
    let bytes = std::fs::read(path).expect("built");
    let component = sandbox.load(&bytes).expect("load");
    let data = table(1000, 20);
    let model = sandbox
        .init_model(&component, &params, 20)
        .into_result()
        .expect("init");
    let mut group = c.benchmark_group(format!("train_1000x20_10_epochs/{name}"));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("native", |b| {
        b.iter(|| {
            black_box(
                c2ssi_guest_sdk::train::<A>(&model, params.clone(), &data, 3).expect("native"),
            )
        })
    });
    group.bench_function("sandbox", |b| {
        b.iter(|| {
            black_box(
                sandbox
                    .train(&component, &model, &params, &data, 3, None)
                    .result
                    .expect("sandbox"),
            )
        })
    });
    group.finish();
}

fn sandbox_vs_native(c: &mut Criterion) {
    let sgd = |label: &str| {
        vec![
            p("label", ParamValue::Text(label.into())),
            p("features", features(20)),
            p("epochs", ParamValue::Integer(10)),
            p("batch_size", ParamValue::Integer(32)),
            p("learning_rate", ParamValue::Real(0.05)),
        ]
    };
    compare::<linear_regression::LinearRegression>(
        c,
        "linear-regression",
        test_guest_artifacts::LINEAR_REGRESSION,
        sgd("y"),
    );
    compare::<logistic_regression::LogisticRegression>(
        c,
        "logistic-regression",
        test_guest_artifacts::LOGISTIC_REGRESSION,
        sgd("flag"),
    );
    let mut softmax = sgd("class");
    softmax.push(p("classes", ParamValue::Integer(4)));
    compare::<softmax_regression::SoftmaxRegression>(
        c,
        "softmax-regression",
        test_guest_artifacts::SOFTMAX_REGRESSION,
        softmax,
    );
    // The ELM has no epochs: one closed-form ridge fit with linfa.
    compare::<elm_ridge::ElmRidge>(
        c,
        "elm-ridge",
        test_guest_artifacts::ELM_RIDGE,
        vec![
            p("label", ParamValue::Text("y".into())),
            p("features", features(20)),
            p("hidden_units", ParamValue::Integer(64)),
        ],
    );
}

criterion_group!(benches, fixed_cost, sandbox_vs_native);
criterion_main!(benches);
