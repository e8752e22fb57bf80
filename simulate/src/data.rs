//! The people of a simulation: a real dataset (linfa-datasets' diabetes or
//! wine quality, or a CSV the user brings) as one typed table, one row per
//! person, with declared ranges, and the split into wallets and held-out people.

use std::path::Path;

use c2ssi_guest_sdk::{Column, ColumnData, ColumnSpec, ColumnType, Table};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Result, SimError};

/// Where the people come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// linfa-datasets' diabetes data (441 people; the loader reads the
    /// file's first line as a header).
    Diabetes,
    /// linfa-datasets' red wine quality data (1,599 wines).
    WineQuality,
    /// A population drawn from a known logistic model of 20 features
    /// (each uniform in [-1, 1]) with a boolean label, the same for every
    /// simulation: a utility benchmark at any scale.
    SyntheticLogistic {
        /// How many people.
        people: usize,
    },
    /// A CSV file with a header, and the column to predict.
    Csv {
        /// The file.
        path: std::path::PathBuf,
        /// The label column.
        label: String,
    },
}

impl DataSource {
    /// A short name.
    pub fn name(&self) -> String {
        match self {
            DataSource::Diabetes => "diabetes".into(),
            DataSource::WineQuality => "winequality".into(),
            DataSource::SyntheticLogistic { people } => format!("synthetic-logistic-{people}"),
            DataSource::Csv { path, .. } => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "data".into()),
        }
    }
}

/// The people and what to predict.
#[derive(Debug, Clone)]
pub struct People {
    /// Everyone's data, one row each, typed with declared ranges.
    pub table: Table,
    /// The label column.
    pub label: String,
}

/// Bounds that contain `lo..=hi`, rounded outward to a tenth of the span's
/// order of magnitude: the range a collective would declare for the column
/// without publishing anyone's exact extreme value.
pub fn declared_range(lo: f64, hi: f64) -> (f64, f64) {
    // One value only: a range around it, on the scale of the value.
    let span = if hi > lo { hi - lo } else { lo.abs().max(1e-6) };
    let step = 10f64.powf(span.log10().floor() - 1.0);
    let round = |x: f64, f: fn(f64) -> f64| {
        let v = f(x / step) * step;
        // Keep short decimals short.
        (v / step).round() * step
    };
    let (a, b) = (round(lo, f64::floor), round(hi, f64::ceil));
    if a < b { (a, b) } else { (a - step, b + step) }
}

fn real_column(name: &str, values: Vec<f64>) -> Column {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (min, max) = declared_range(lo, hi);
    Column {
        name: name.to_string(),
        ty: ColumnType::Real {
            min: Some(min),
            max: Some(max),
        },
        data: ColumnData::Real(values),
    }
}

fn integer_column(name: &str, values: Vec<i64>) -> Column {
    let lo = values.iter().copied().min().unwrap_or(0);
    let hi = values.iter().copied().max().unwrap_or(0);
    Column {
        name: name.to_string(),
        ty: ColumnType::Integer {
            min: Some(lo),
            max: Some(hi.max(lo + 1)),
        },
        data: ColumnData::Integer(values),
    }
}

/// Loads the people.
pub fn load(source: &DataSource) -> Result<People> {
    match source {
        DataSource::Diabetes => {
            let data = linfa_datasets::diabetes();
            let names = [
                "age", "sex", "bmi", "bp", "s1_tc", "s2_ldl", "s3_hdl", "s4_tch", "s5_ltg",
                "s6_glu",
            ];
            let records = data.records();
            let mut columns: Vec<Column> = names
                .iter()
                .enumerate()
                .map(|(j, n)| real_column(n, records.column(j).to_vec()))
                .collect();
            let progression: Vec<i64> = data.targets().iter().map(|&y| y.round() as i64).collect();
            let mut label = integer_column("progression", progression);
            label.ty = ColumnType::Integer {
                min: Some(0),
                max: Some(400),
            };
            columns.push(label);
            let rows = records.nrows();
            Ok(People {
                table: Table::new("diabetes", rows, columns)
                    .map_err(|e| SimError::Internal(e.to_string()))?,
                label: "progression".into(),
            })
        }
        DataSource::WineQuality => {
            let data = linfa_datasets::winequality();
            let names = data.feature_names();
            let records = data.records();
            let mut columns: Vec<Column> = names
                .iter()
                .enumerate()
                .map(|(j, n)| real_column(&n.replace(' ', "_"), records.column(j).to_vec()))
                .collect();
            columns.push(integer_column(
                "quality",
                data.targets().iter().map(|&q| q as i64).collect(),
            ));
            let rows = records.nrows();
            Ok(People {
                table: Table::new("winequality", rows, columns)
                    .map_err(|e| SimError::Internal(e.to_string()))?,
                label: "quality".into(),
            })
        }
        DataSource::SyntheticLogistic { people } => Ok(synthetic_logistic(*people)),
        DataSource::Csv { path, label } => load_csv(path, label),
    }
}

/// The known model of [`DataSource::SyntheticLogistic`]: 20 weights and a
/// bias, fixed.
pub fn synthetic_logistic_model() -> (Vec<f64>, f64) {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x1091_571c);
    let raw: Vec<f64> = (0..20).map(|_| StandardNormal.sample(&mut rng)).collect();
    let norm = raw.iter().map(|w| w * w).sum::<f64>().sqrt();
    // A norm of 4: the true model classifies about 85% of people right.
    (raw.iter().map(|w| 4.0 * w / norm).collect(), 0.25)
}

fn synthetic_logistic(people: usize) -> People {
    use rand::Rng;
    let (w, b) = synthetic_logistic_model();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed_1091);
    let mut xs = vec![Vec::with_capacity(people); w.len()];
    let mut y = Vec::with_capacity(people);
    for _ in 0..people {
        let mut z = b;
        for (j, col) in xs.iter_mut().enumerate() {
            let x: f64 = rng.random_range(-1.0..=1.0);
            z += w[j] * x;
            col.push(x);
        }
        let p = 1.0 / (1.0 + (-z).exp());
        y.push(rng.random::<f64>() < p);
    }
    let mut columns: Vec<Column> = xs
        .into_iter()
        .enumerate()
        .map(|(j, values)| Column {
            name: format!("x{j:02}"),
            ty: ColumnType::Real {
                min: Some(-1.0),
                max: Some(1.0),
            },
            data: ColumnData::Real(values),
        })
        .collect();
    columns.push(Column {
        name: "outcome".into(),
        ty: ColumnType::Boolean,
        data: ColumnData::Boolean(y),
    });
    People {
        table: Table::new("population", people, columns)
            .unwrap_or_else(|_| unreachable!("the synthetic columns are valid")),
        label: "outcome".into(),
    }
}

fn load_csv(path: &Path, label: &str) -> Result<People> {
    let name = DataSource::Csv {
        path: path.to_path_buf(),
        label: label.to_string(),
    }
    .name()
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    })
    .collect::<String>();
    let imported = wallet_host::import::import_file(
        path,
        &wallet_host::import::ReadOptions::default(),
        &name,
        None,
    )
    .map_err(|e| SimError::Invalid(e.to_string()))?;
    let mut table = imported.table;
    if table.column(label).is_err() {
        return Err(SimError::Invalid(format!(
            "{}: no label column '{label}' (it has: {})",
            path.display(),
            table
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if table.row_count < 10 {
        return Err(SimError::Invalid(format!(
            "{}: {} rows is too few to split into wallets and held-out people",
            path.display(),
            table.row_count
        )));
    }
    // Declare ranges from the data, rounded outward.
    for c in &mut table.columns {
        c.ty = match (&c.ty, &c.data) {
            (ColumnType::Real { .. }, ColumnData::Real(v)) => {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (min, max) = declared_range(lo, hi);
                ColumnType::Real {
                    min: Some(min),
                    max: Some(max),
                }
            }
            (ColumnType::Integer { .. }, ColumnData::Integer(v)) => {
                let lo = v.iter().copied().min().unwrap_or(0);
                let hi = v.iter().copied().max().unwrap_or(0);
                ColumnType::Integer {
                    min: Some(lo),
                    max: Some(hi.max(lo + 1)),
                }
            }
            (ty, _) => ty.clone(),
        };
    }
    Ok(People {
        table,
        label: label.to_string(),
    })
}

/// The rows at `indices`, as a table of their own.
pub fn rows(table: &Table, indices: &[usize]) -> Table {
    let columns = table
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: c.ty.clone(),
            data: match &c.data {
                ColumnData::Integer(v) => {
                    ColumnData::Integer(indices.iter().map(|&i| v[i]).collect())
                }
                ColumnData::Real(v) => ColumnData::Real(indices.iter().map(|&i| v[i]).collect()),
                ColumnData::Boolean(v) => {
                    ColumnData::Boolean(indices.iter().map(|&i| v[i]).collect())
                }
                ColumnData::Category(v) => {
                    ColumnData::Category(indices.iter().map(|&i| v[i]).collect())
                }
            },
        })
        .collect();
    Table {
        name: table.name.clone(),
        row_count: indices.len(),
        columns,
    }
}

/// Splits people into wallet owners and held-out people, seeded.
pub fn split(rows: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_5eed);
    c2ssi_guest_sdk::sgd::shuffle(&mut order, &mut rng);
    let test = ((rows as f64 * test_fraction).round() as usize).clamp(1, rows - 1);
    let held_out = order.split_off(rows - test);
    (order, held_out)
}

/// The schema a collective declares for these people.
pub fn schema(table: &Table) -> Vec<ColumnSpec> {
    table.schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_ranges_contain_the_data_and_are_round() {
        assert_eq!(declared_range(-0.1072, 0.1107), (-0.11, 0.12));
        assert_eq!(declared_range(25.0, 346.0), (20.0, 350.0));
        let (lo, hi) = declared_range(3.0, 3.0);
        assert!(lo < 3.0 && hi > 3.0);
    }

    #[test]
    fn diabetes_and_wine_load_with_valid_declared_ranges() {
        let d = load(&DataSource::Diabetes).unwrap();
        assert_eq!(d.table.row_count, 441);
        d.table.validate().unwrap();
        let w = load(&DataSource::WineQuality).unwrap();
        assert_eq!(w.table.row_count, 1599);
        w.table.validate().unwrap();
        let (train, test) = split(441, 0.2, 1);
        assert_eq!((train.len(), test.len()), (353, 88));
    }
}
