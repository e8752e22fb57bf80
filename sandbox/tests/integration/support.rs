//! Shared helpers: components by path, small typed tables.

use std::sync::Arc;

use c2ssi_guest_sdk::{Column, ColumnData, ColumnType, Param, ParamValue, Table};
use c2ssi_sandbox::{Compiler, LoadedComponent, Sandbox, SandboxLimits};

/// A sandbox with the default limits that compiles as the binaries do: in a
/// compile child under the compile budget.
pub(crate) fn sandbox() -> Sandbox {
    sandbox_with(SandboxLimits::default())
}

/// A sandbox with `limits`, compiling in a compile child.
pub(crate) fn sandbox_with(limits: SandboxLimits) -> Sandbox {
    Sandbox::with_compiler(limits, compile_child()).expect("sandbox starts")
}

/// The sandbox's own compile-child binary.
pub(crate) fn compile_child() -> Compiler {
    Compiler::Subprocess(env!("CARGO_BIN_EXE_c2ssi-compile-child").into())
}

pub(crate) fn load(sandbox: &Sandbox, path: &str) -> Arc<LoadedComponent> {
    let bytes = std::fs::read(path).expect("component was built");
    sandbox.load(&bytes).expect("component loads")
}

pub(crate) fn text(name: &str, value: &str) -> Param {
    Param::new(name, ParamValue::Text(value.into()))
}

pub(crate) fn real(name: &str, value: f64) -> Param {
    Param::new(name, ParamValue::Real(value))
}

pub(crate) fn integer(name: &str, value: i64) -> Param {
    Param::new(name, ParamValue::Integer(value))
}

/// `rows` rows of `features` real features in [-1, 1] and a label
/// `y = sum_j (j + 1) x_j / features + 0.5`, deterministic.
pub(crate) fn linear_table(rows: usize, features: usize) -> Table {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let xs: Vec<Vec<f64>> = (0..features)
        .map(|_| (0..rows).map(|_| next()).collect())
        .collect();
    let y: Vec<f64> = (0..rows)
        .map(|i| {
            xs.iter()
                .enumerate()
                .map(|(j, col)| (j + 1) as f64 * col[i])
                .sum::<f64>()
                / features as f64
                + 0.5
        })
        .collect();
    let mut columns: Vec<Column> = xs
        .into_iter()
        .enumerate()
        .map(|(j, values)| Column {
            name: format!("x{j}"),
            ty: ColumnType::Real {
                min: Some(-1.0),
                max: Some(1.0),
            },
            data: ColumnData::Real(values),
        })
        .collect();
    columns.push(Column {
        name: "y".into(),
        ty: ColumnType::Real {
            min: None,
            max: None,
        },
        data: ColumnData::Real(y),
    });
    Table::new("synthetic", rows, columns).expect("valid table")
}

/// `linear_table` with its label replaced by a category of `classes` levels:
/// the class is the bucket of the linear score.
pub(crate) fn class_table(rows: usize, features: usize, classes: usize) -> Table {
    let mut table = linear_table(rows, features);
    let Some(label) = table.columns.pop() else {
        unreachable!("linear_table has a label column")
    };
    let ColumnData::Real(scores) = label.data else {
        unreachable!("the label is real")
    };
    let (lo, hi) = scores
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &s| (a.min(s), b.max(s)));
    let codes = scores
        .iter()
        .map(|s| (((s - lo) / (hi - lo + 1e-9)) * classes as f64) as u32)
        .collect();
    table.columns.push(Column {
        name: "class".into(),
        ty: ColumnType::Category {
            levels: (0..classes).map(|c| format!("c{c}")).collect(),
        },
        data: ColumnData::Category(codes),
    });
    Table::new("classes", rows, table.columns).expect("valid table")
}
