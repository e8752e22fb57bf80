//! The WIT glue: the `c2ssi:algorithm` world's bindings, conversions between
//! its types and the SDK's, and the adapter that [`export_algorithm!`]
//! exports. Only built with the `export` feature.
//!
//! [`export_algorithm!`]: crate::export_algorithm

use std::marker::PhantomData;

use crate::PANIC_MARKER;
use crate::algorithm::{self, Algorithm};
use crate::params::{AlgorithmInfo, Param, ParamKind, ParamSpec, ParamValue};
use crate::table::{Column, ColumnData, ColumnSpec, ColumnType, Table};

/// Bindings generated from `wit/algorithm.wit`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "c2ssi:algorithm/algorithm",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "::c2ssi_guest_sdk::export::bindings",
        runtime_path: "::c2ssi_guest_sdk::export::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen;

use bindings::c2ssi::algorithm::types as wit;

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "panic with a non-string payload".to_string()
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("{PANIC_MARKER}{}{location}", message.replace('\n', " "));
        }));
    });
}

/// Exports `A` as the world; named by [`export_algorithm!`](crate::export_algorithm).
#[derive(Debug)]
pub struct Exported<A>(PhantomData<A>);

impl<A: Algorithm> bindings::Guest for Exported<A> {
    fn describe() -> wit::AlgorithmInfo {
        install_panic_hook();
        info_to_wit(algorithm::describe::<A>())
    }

    fn init_model(params: Vec<wit::Param>, feature_count: u32) -> Result<Vec<f32>, String> {
        install_panic_hook();
        algorithm::init_model::<A>(params_from_wit(params), feature_count)
            .map_err(|e| e.to_string())
    }

    fn train(
        model: Vec<f32>,
        params: Vec<wit::Param>,
        data: wit::Table,
        seed: u64,
    ) -> Result<wit::Update, String> {
        install_panic_hook();
        let data = table_from_wit(data);
        algorithm::train::<A>(&model, params_from_wit(params), &data, seed)
            .map(|u| wit::Update {
                delta: u.delta,
                examples: u.examples,
                metrics: u.metrics.into_iter().map(metric_to_wit).collect(),
            })
            .map_err(|e| e.to_string())
    }

    fn evaluate(
        model: Vec<f32>,
        params: Vec<wit::Param>,
        data: wit::Table,
    ) -> Result<wit::Evaluation, String> {
        install_panic_hook();
        let data = table_from_wit(data);
        algorithm::evaluate::<A>(&model, params_from_wit(params), &data)
            .map(|e| wit::Evaluation {
                loss: metric_to_wit(e.loss),
                score: metric_to_wit(e.score),
                metrics: e.metrics.into_iter().map(metric_to_wit).collect(),
            })
            .map_err(|e| e.to_string())
    }

    fn predict(
        model: Vec<f32>,
        params: Vec<wit::Param>,
        data: wit::Table,
        label: wit::ColumnSpec,
    ) -> Result<Vec<wit::Column>, String> {
        install_panic_hook();
        let data = table_from_wit(data);
        let label = ColumnSpec {
            name: label.name,
            ty: kind_from_wit(label.kind),
        };
        algorithm::predict::<A>(&model, params_from_wit(params), &data, &label)
            .map(|columns| columns.into_iter().map(column_to_wit).collect())
            .map_err(|e| e.to_string())
    }
}

fn kind_from_wit(kind: wit::ColumnKind) -> ColumnType {
    match kind {
        wit::ColumnKind::Integer((min, max)) => ColumnType::Integer { min, max },
        wit::ColumnKind::Real((min, max)) => ColumnType::Real { min, max },
        wit::ColumnKind::Boolean => ColumnType::Boolean,
        wit::ColumnKind::Category(levels) => ColumnType::Category { levels },
    }
}

fn column_to_wit(c: Column) -> wit::Column {
    let values = match (c.ty, c.data) {
        (ColumnType::Integer { min, max }, ColumnData::Integer(values)) => {
            wit::ColumnValues::Integer(wit::IntegerColumn { values, min, max })
        }
        (ColumnType::Real { min, max }, ColumnData::Real(values)) => {
            wit::ColumnValues::Real(wit::RealColumn { values, min, max })
        }
        (ColumnType::Category { levels }, ColumnData::Category(codes)) => {
            wit::ColumnValues::Category(wit::CategoryColumn { levels, codes })
        }
        // `algorithm::predict` checked every column against its type, so
        // only a boolean is left; its declared type adds nothing.
        (_, ColumnData::Boolean(v)) => wit::ColumnValues::Boolean(v),
        (_, ColumnData::Integer(values)) => wit::ColumnValues::Integer(wit::IntegerColumn {
            values,
            min: None,
            max: None,
        }),
        (_, ColumnData::Real(values)) => wit::ColumnValues::Real(wit::RealColumn {
            values,
            min: None,
            max: None,
        }),
        (_, ColumnData::Category(codes)) => wit::ColumnValues::Category(wit::CategoryColumn {
            levels: Vec::new(),
            codes,
        }),
    };
    wit::Column {
        name: c.name,
        values,
    }
}

fn metric_to_wit(m: crate::Metric) -> wit::Metric {
    wit::Metric {
        name: m.name,
        value: m.value,
    }
}

fn table_from_wit(t: wit::Table) -> Table {
    Table {
        name: t.name,
        row_count: t.row_count as usize,
        columns: t
            .columns
            .into_iter()
            .map(|c| {
                let (ty, data) = match c.values {
                    wit::ColumnValues::Integer(v) => (
                        ColumnType::Integer {
                            min: v.min,
                            max: v.max,
                        },
                        ColumnData::Integer(v.values),
                    ),
                    wit::ColumnValues::Real(v) => (
                        ColumnType::Real {
                            min: v.min,
                            max: v.max,
                        },
                        ColumnData::Real(v.values),
                    ),
                    wit::ColumnValues::Boolean(v) => (ColumnType::Boolean, ColumnData::Boolean(v)),
                    wit::ColumnValues::Category(v) => (
                        ColumnType::Category { levels: v.levels },
                        ColumnData::Category(v.codes),
                    ),
                };
                Column {
                    name: c.name,
                    ty,
                    data,
                }
            })
            .collect(),
    }
}

fn value_from_wit(v: wit::ParamValue) -> ParamValue {
    match v {
        wit::ParamValue::Integer(i) => ParamValue::Integer(i),
        wit::ParamValue::Real(x) => ParamValue::Real(x),
        wit::ParamValue::Boolean(b) => ParamValue::Boolean(b),
        wit::ParamValue::Text(s) => ParamValue::Text(s),
        wit::ParamValue::TextList(l) => ParamValue::TextList(l),
    }
}

fn value_to_wit(v: ParamValue) -> wit::ParamValue {
    match v {
        ParamValue::Integer(i) => wit::ParamValue::Integer(i),
        ParamValue::Real(x) => wit::ParamValue::Real(x),
        ParamValue::Boolean(b) => wit::ParamValue::Boolean(b),
        ParamValue::Text(s) => wit::ParamValue::Text(s),
        ParamValue::TextList(l) => wit::ParamValue::TextList(l),
    }
}

fn params_from_wit(params: Vec<wit::Param>) -> Vec<Param> {
    params
        .into_iter()
        .map(|p| Param {
            name: p.name,
            value: value_from_wit(p.value),
        })
        .collect()
}

fn kind_to_wit(k: ParamKind) -> wit::ParamKind {
    match k {
        ParamKind::Integer => wit::ParamKind::Integer,
        ParamKind::Real => wit::ParamKind::Real,
        ParamKind::Boolean => wit::ParamKind::Boolean,
        ParamKind::Text => wit::ParamKind::Text,
        ParamKind::TextList => wit::ParamKind::TextList,
    }
}

fn info_to_wit(info: AlgorithmInfo) -> wit::AlgorithmInfo {
    wit::AlgorithmInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        params: info
            .params
            .into_iter()
            .map(|p: ParamSpec| wit::ParamSpec {
                name: p.name,
                kind: kind_to_wit(p.kind),
                description: p.description,
                default_value: p.default.map(value_to_wit),
            })
            .collect(),
    }
}

/// Exports a type that implements [`Algorithm`] as the `c2ssi:algorithm`
/// world. Put it once in the algorithm crate's `lib.rs`; it expands to nothing
/// on targets other than WebAssembly, so the crate also builds natively.
#[macro_export]
macro_rules! export_algorithm {
    ($algorithm:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type C2ssiExportedAlgorithm = $crate::export::Exported<$algorithm>;
            $crate::export::bindings::export_world!(
                C2ssiExportedAlgorithm with_types_in $crate::export::bindings
            );
        };
    };
}
