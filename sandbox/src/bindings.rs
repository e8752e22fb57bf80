//! The host side of the `c2ssi:algorithm` world: the one `bindgen!` for it,
//! and conversions between its generated types and the SDK's typed table,
//! hyper-parameters and updates.

use c2ssi_guest_sdk as sdk;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "c2ssi:algorithm/algorithm",
});

pub(crate) use c2ssi::algorithm::types as wit;

pub(crate) fn table_to_wit(t: &sdk::Table) -> wit::Table {
    wit::Table {
        name: t.name.clone(),
        // Tables are built by the host and bounded far below u32::MAX rows.
        row_count: u32::try_from(t.row_count).unwrap_or(u32::MAX),
        columns: t.columns.iter().map(column_to_wit).collect(),
    }
}

fn column_to_wit(c: &sdk::Column) -> wit::Column {
    wit::Column {
        name: c.name.clone(),
        values: match (&c.ty, &c.data) {
            (sdk::ColumnType::Integer { min, max }, sdk::ColumnData::Integer(v)) => {
                wit::ColumnValues::Integer(wit::IntegerColumn {
                    values: v.clone(),
                    min: *min,
                    max: *max,
                })
            }
            (sdk::ColumnType::Real { min, max }, sdk::ColumnData::Real(v)) => {
                wit::ColumnValues::Real(wit::RealColumn {
                    values: v.clone(),
                    min: *min,
                    max: *max,
                })
            }
            (sdk::ColumnType::Category { levels }, sdk::ColumnData::Category(codes)) => {
                wit::ColumnValues::Category(wit::CategoryColumn {
                    levels: levels.clone(),
                    codes: codes.clone(),
                })
            }
            (_, sdk::ColumnData::Boolean(v)) => wit::ColumnValues::Boolean(v.clone()),
            // A checked table never mixes types; pass the values with
            // an open range so the guest still sees consistent data.
            (_, sdk::ColumnData::Integer(v)) => wit::ColumnValues::Integer(wit::IntegerColumn {
                values: v.clone(),
                min: None,
                max: None,
            }),
            (_, sdk::ColumnData::Real(v)) => wit::ColumnValues::Real(wit::RealColumn {
                values: v.clone(),
                min: None,
                max: None,
            }),
            (_, sdk::ColumnData::Category(codes)) => {
                wit::ColumnValues::Category(wit::CategoryColumn {
                    levels: Vec::new(),
                    codes: codes.clone(),
                })
            }
        },
    }
}

/// A column the guest returned, with the type its values declare; the
/// caller checks the values against it.
pub(crate) fn column_from_wit(c: wit::Column) -> sdk::Column {
    let (ty, data) = match c.values {
        wit::ColumnValues::Integer(v) => (
            sdk::ColumnType::Integer {
                min: v.min,
                max: v.max,
            },
            sdk::ColumnData::Integer(v.values),
        ),
        wit::ColumnValues::Real(v) => (
            sdk::ColumnType::Real {
                min: v.min,
                max: v.max,
            },
            sdk::ColumnData::Real(v.values),
        ),
        wit::ColumnValues::Boolean(v) => (sdk::ColumnType::Boolean, sdk::ColumnData::Boolean(v)),
        wit::ColumnValues::Category(v) => (
            sdk::ColumnType::Category { levels: v.levels },
            sdk::ColumnData::Category(v.codes),
        ),
    };
    sdk::Column {
        name: c.name,
        ty,
        data,
    }
}

pub(crate) fn column_spec_to_wit(spec: &sdk::ColumnSpec) -> wit::ColumnSpec {
    wit::ColumnSpec {
        name: spec.name.clone(),
        kind: match &spec.ty {
            sdk::ColumnType::Integer { min, max } => wit::ColumnKind::Integer((*min, *max)),
            sdk::ColumnType::Real { min, max } => wit::ColumnKind::Real((*min, *max)),
            sdk::ColumnType::Boolean => wit::ColumnKind::Boolean,
            sdk::ColumnType::Category { levels } => wit::ColumnKind::Category(levels.clone()),
        },
    }
}

pub(crate) fn evaluation_from_wit(e: wit::Evaluation) -> sdk::Evaluation {
    sdk::Evaluation {
        loss: metric_from_wit(e.loss),
        score: metric_from_wit(e.score),
        metrics: e.metrics.into_iter().map(metric_from_wit).collect(),
    }
}

fn value_to_wit(v: &sdk::ParamValue) -> wit::ParamValue {
    match v {
        sdk::ParamValue::Integer(i) => wit::ParamValue::Integer(*i),
        sdk::ParamValue::Real(x) => wit::ParamValue::Real(*x),
        sdk::ParamValue::Boolean(b) => wit::ParamValue::Boolean(*b),
        sdk::ParamValue::Text(s) => wit::ParamValue::Text(s.clone()),
        sdk::ParamValue::TextList(l) => wit::ParamValue::TextList(l.clone()),
    }
}

fn value_from_wit(v: wit::ParamValue) -> sdk::ParamValue {
    match v {
        wit::ParamValue::Integer(i) => sdk::ParamValue::Integer(i),
        wit::ParamValue::Real(x) => sdk::ParamValue::Real(x),
        wit::ParamValue::Boolean(b) => sdk::ParamValue::Boolean(b),
        wit::ParamValue::Text(s) => sdk::ParamValue::Text(s),
        wit::ParamValue::TextList(l) => sdk::ParamValue::TextList(l),
    }
}

pub(crate) fn params_to_wit(params: &[sdk::Param]) -> Vec<wit::Param> {
    params
        .iter()
        .map(|p| wit::Param {
            name: p.name.clone(),
            value: value_to_wit(&p.value),
        })
        .collect()
}

pub(crate) fn info_from_wit(info: wit::AlgorithmInfo) -> sdk::AlgorithmInfo {
    sdk::AlgorithmInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        params: info
            .params
            .into_iter()
            .map(|p| sdk::ParamSpec {
                name: p.name,
                kind: match p.kind {
                    wit::ParamKind::Integer => sdk::ParamKind::Integer,
                    wit::ParamKind::Real => sdk::ParamKind::Real,
                    wit::ParamKind::Boolean => sdk::ParamKind::Boolean,
                    wit::ParamKind::Text => sdk::ParamKind::Text,
                    wit::ParamKind::TextList => sdk::ParamKind::TextList,
                },
                description: p.description,
                default: p.default_value.map(value_from_wit),
            })
            .collect(),
    }
}

pub(crate) fn metric_from_wit(m: wit::Metric) -> sdk::Metric {
    sdk::Metric {
        name: m.name,
        value: m.value,
    }
}

pub(crate) fn update_from_wit(u: wit::Update) -> sdk::Update {
    sdk::Update {
        delta: u.delta,
        examples: u.examples,
        metrics: u.metrics.into_iter().map(metric_from_wit).collect(),
    }
}
