//! Profiling harness: one 1,000 x 20 x 10-epoch training task, repeated, in
//! the sandbox or natively, and timed in interleaved batches.
//!
//! `cargo run --release -p c2ssi-sandbox --example profile_train -- <linear|logistic> <sandbox|native|both> [tasks]`

use std::time::Instant;

use c2ssi_guest_sdk::{Column, ColumnData, ColumnType, Param, ParamValue, Table};
use c2ssi_sandbox::{Sandbox, SandboxLimits};

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
        name: "flag".into(),
        ty: ColumnType::Boolean,
        data: ColumnData::Boolean(score.iter().map(|s| *s > 0.0).collect()),
    });
    Table::new("bench", rows, columns).expect("valid table")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let algo = args.first().map_or("linear", String::as_str);
    let mode = args.get(1).map_or("both", String::as_str);
    let tasks: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let (path, label) = match algo {
        "logistic" => (test_guest_artifacts::LOGISTIC_REGRESSION, "flag"),
        _ => (test_guest_artifacts::LINEAR_REGRESSION, "y"),
    };
    let params = vec![
        Param::new("label", ParamValue::Text(label.into())),
        Param::new(
            "features",
            ParamValue::TextList((0..20).map(|j| format!("x{j}")).collect()),
        ),
        Param::new("epochs", ParamValue::Integer(10)),
        Param::new("batch_size", ParamValue::Integer(32)),
        Param::new("learning_rate", ParamValue::Real(0.05)),
    ];
    let data = table(1000, 20);
    // `C2SSI_GUEST_DIR` runs the components of another build (copied aside),
    // for comparing builds of the SDK.
    let path = match std::env::var_os("C2SSI_GUEST_DIR") {
        Some(dir) => std::path::Path::new(&dir)
            .join(std::path::Path::new(path).file_name().expect("a file name")),
        None => path.into(),
    };
    let sandbox = Sandbox::new(SandboxLimits::default()).expect("sandbox");
    let component = sandbox
        .load(&std::fs::read(&path).expect("built"))
        .expect("load");
    let model = vec![0.0f32; 21];
    let native = || {
        match algo {
            "logistic" => c2ssi_guest_sdk::train::<logistic_regression::LogisticRegression>(
                &model,
                params.clone(),
                &data,
                3,
            ),
            _ => c2ssi_guest_sdk::train::<linear_regression::LinearRegression>(
                &model,
                params.clone(),
                &data,
                3,
            ),
        }
        .expect("native")
    };
    let boxed = || {
        sandbox
            .train(&component, &model, &params, &data, 3, None)
            .result
            .expect("sandbox")
    };
    let (mut best_native, mut best_sandbox) = (f64::MAX, f64::MAX);
    let batch = 100;
    for _ in 0..tasks.div_ceil(batch) {
        if mode != "sandbox" {
            let t = Instant::now();
            for _ in 0..batch {
                std::hint::black_box(native());
            }
            best_native = best_native.min(t.elapsed().as_secs_f64() / batch as f64);
        }
        if mode != "native" {
            let t = Instant::now();
            for _ in 0..batch {
                std::hint::black_box(boxed());
            }
            best_sandbox = best_sandbox.min(t.elapsed().as_secs_f64() / batch as f64);
        }
    }
    println!(
        "{algo}: native {:.1} µs, sandbox {:.1} µs, ratio {:.2}",
        best_native * 1e6,
        best_sandbox * 1e6,
        best_sandbox / best_native
    );
}
