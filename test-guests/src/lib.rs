//! Hostile algorithm components for the sandbox's tests, and privacy attacks
//! for the privacy tests.
//!
//! Each file in `examples/` is one component (a `cdylib`). A hostile one
//! implements the algorithm world honestly except for one thing: it loops
//! forever, allocates 3 GiB, recurses without end, panics, imports sockets,
//! the filesystem or HTTP, returns an update of the wrong length or with a
//! NaN, or floods stdout ([`hostile_algorithm!`] writes the honest parts).
//! An `attack_*` one is what a consumer who wants the data writes: it encodes
//! records or attributes into the update, the metrics, the example count or
//! its failures ([`attack_algorithm!`], with the encoding in [`attacks`]).
#![deny(missing_docs)]

pub use c2ssi_guest_sdk as sdk;

/// Declares an algorithm named `$name` whose `train` runs `$body` with
/// `$model: &[f32]`, `$table: &Table` and `$seed: u64` in scope, and exports
/// it. Everything else behaves: no parameters, a zero model of
/// `feature_count + 1` parameters, a zero evaluation, and no `predict`.
#[macro_export]
macro_rules! hostile_algorithm {
    ($name:literal, |$model:ident, $table:ident, $seed:ident| $body:block) => {
        /// The hostile algorithm.
        #[derive(Debug)]
        pub struct Hostile;

        impl $crate::sdk::Algorithm for Hostile {
            fn info() -> $crate::sdk::AlgorithmInfo {
                $crate::sdk::AlgorithmInfo::new($name, "0.0.0", "a hostile test component")
            }

            fn init_model(
                _params: &$crate::sdk::Params,
                feature_count: usize,
            ) -> $crate::sdk::Result<Vec<f32>> {
                Ok(vec![0.0; feature_count + 1])
            }

            #[allow(unused_variables, unreachable_code)]
            fn train(
                $model: &[f32],
                _params: &$crate::sdk::Params,
                $table: &$crate::sdk::Table,
                $seed: u64,
            ) -> $crate::sdk::Result<$crate::sdk::Update> {
                $body
            }

            fn evaluate(
                _model: &[f32],
                _params: &$crate::sdk::Params,
                _table: &$crate::sdk::Table,
            ) -> $crate::sdk::Result<$crate::sdk::Evaluation> {
                Ok($crate::zero_evaluation())
            }
        }

        $crate::sdk::export_algorithm!(Hostile);
    };
}

/// The evaluation a hostile or attacking component reports: zero loss and
/// zero score.
pub fn zero_evaluation() -> sdk::Evaluation {
    sdk::Evaluation::new(
        sdk::Metric::new("loss", 0.0),
        sdk::Metric::new("score", 0.0),
    )
}

/// The honest update for `model`: all zeros, one example.
pub fn zero_update(model: &[f32]) -> sdk::Update {
    sdk::Update {
        delta: vec![0.0; model.len()],
        examples: 1,
        metrics: Vec::new(),
    }
}

/// What the privacy attacks share: how a record is written into an update,
/// and how the consumer reads it back out of a released aggregate. Plain
/// Rust, so that the tests decode with the very code the guests encode with.
pub mod attacks {
    use crate::sdk::{ColumnData, Table};

    /// The model the attacks ask for: room for hundreds of records.
    pub const MODEL_LEN: usize = 4096;
    /// A chunk `q` is written as `q * SCALE`: the update's norm stays far
    /// below any clipping norm (about 5e-5 for 11 fields).
    pub const SCALE: f32 = 1.0 / 4_294_967_296.0;

    /// The record's fields (its first row), each quantized to 16 bits within
    /// its declared range (booleans and categories by their codes).
    pub fn chunks(table: &Table) -> Vec<u16> {
        table
            .columns
            .iter()
            .map(|c| {
                let (lo, hi) = c.ty.numeric_range().unwrap_or((0.0, 65_535.0));
                let v = match &c.data {
                    ColumnData::Integer(v) => v.first().map_or(0.0, |&x| x as f64),
                    ColumnData::Real(v) => v.first().copied().unwrap_or(0.0),
                    ColumnData::Boolean(v) => {
                        f64::from(u8::from(v.first().copied().unwrap_or(false)))
                    }
                    ColumnData::Category(v) => f64::from(v.first().copied().unwrap_or(0)),
                };
                let q = ((v - lo) / (hi - lo) * 65_535.0).round();
                q.clamp(0.0, 65_535.0) as u16
            })
            .collect()
    }

    /// How many blocks of `fields` slots fit in the model.
    pub fn blocks(fields: usize) -> usize {
        MODEL_LEN / fields.max(1)
    }

    /// An update of zeros with `chunks` written into block `block`.
    pub fn write(chunks: &[u16], block: usize) -> Vec<f32> {
        let mut delta = vec![0.0f32; MODEL_LEN];
        let start = block * chunks.len();
        for (slot, &q) in delta[start..start + chunks.len()].iter_mut().zip(chunks) {
            *slot = f32::from(q) * SCALE;
        }
        delta
    }

    /// Every block of a released sum of updates (the aggregate times the
    /// batch size), read back as chunks; `None` where a value is not a
    /// whole chunk.
    pub fn read(sum: &[f32], fields: usize) -> Vec<Option<Vec<u16>>> {
        (0..blocks(fields))
            .map(|b| {
                sum[b * fields..(b + 1) * fields]
                    .iter()
                    .map(|&v| {
                        let q = (f64::from(v) / f64::from(SCALE)).round();
                        (0.0..=65_535.0).contains(&q).then_some(q as u16)
                    })
                    .collect()
            })
            .collect()
    }

    /// A hash of the record's chunks (FNV-1a): the row-hash attack's block.
    pub fn row_hash(chunks: &[u16]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for q in chunks {
            for b in q.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// The value of the column `name` in the first row, as a real.
    pub fn value(table: &Table, name: &str) -> f64 {
        table
            .column(name)
            .ok()
            .and_then(|c| c.value_f64(0))
            .unwrap_or(0.0)
    }

    /// What the consumer reads out of released sums: how many of `records`
    /// (each its chunks) appear whole in some block of some sum.
    pub fn recovered(sums: &[Vec<f32>], records: &[Vec<u16>]) -> usize {
        let fields = records.first().map_or(1, Vec::len);
        let mut found = vec![false; records.len()];
        for sum in sums {
            for block in read(sum, fields).into_iter().flatten() {
                for (i, r) in records.iter().enumerate() {
                    if *r == block {
                        found[i] = true;
                    }
                }
            }
        }
        found.iter().filter(|f| **f).count()
    }

    /// The strong adversary of the attribute attack, who knows every
    /// record but the target's bit: from the sum over rounds of slot 0 of
    /// the released sums, minus everyone else's known share, each target's
    /// bit guessed by its sign. `shares[i]` is wallet `i`'s share per round
    /// when its bit is set (minus that when not); returns the guesses.
    pub fn guess_bits(slot_sums: &[f64], bits: &[bool], shares: &[f64]) -> Vec<bool> {
        let total: f64 = slot_sums.iter().sum();
        let rounds = slot_sums.len() as f64;
        let signed: f64 = bits
            .iter()
            .zip(shares)
            .map(|(&b, &s)| if b { s } else { -s })
            .sum();
        bits.iter()
            .zip(shares)
            .map(|(&b, &s)| {
                let mine = if b { s } else { -s };
                let others = (signed - mine) * rounds;
                total - others > 0.0
            })
            .collect()
    }

    /// The attacks' hyper-parameters: those of a regression, so that they
    /// pass for one, and `attack_scale`.
    pub fn info(name: &str) -> crate::sdk::AlgorithmInfo {
        use crate::sdk::{AlgorithmInfo, ParamSpec, ParamValue};
        let mut info = AlgorithmInfo::new(name, "0.0.0", "a privacy attack, for the tests")
            .param(ParamSpec::label())
            .param(ParamSpec::features())
            .param(ParamSpec::optional(
                "attack_scale",
                "the norm the attack spends per record",
                ParamValue::Real(0.098),
            ));
        info.params.extend(crate::sdk::sgd::SgdConfig::specs(0.1));
        info
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_record_written_into_a_sum_reads_back_exactly() {
            let record: Vec<u16> = vec![0, 1, 40_000, 65_535, 7, 8, 9, 10, 11, 12, 400];
            let mut sum = write(&record, 17);
            // Other wallets' records in other blocks.
            for (i, v) in write(&[3u16; 11], 2).iter().enumerate() {
                sum[i] += v;
            }
            let read = read(&sum, record.len());
            assert_eq!(read[17].as_deref(), Some(&record[..]));
            assert_eq!(read[2].as_deref(), Some(&[3u16; 11][..]));
            assert_eq!(read[0].as_deref(), Some(&[0u16; 11][..]));
        }
    }
}

/// Declares a privacy attack named `$name`: an algorithm with a model of
/// [`attacks::MODEL_LEN`] parameters whose `train` runs `$body` with
/// `$model`, `$params` and `$table` and `$seed` in scope, and exports it.
#[macro_export]
macro_rules! attack_algorithm {
    ($name:literal, |$model:ident, $params:ident, $table:ident, $seed:ident| $body:block) => {
        /// The attack.
        #[derive(Debug)]
        pub struct Attack;

        impl $crate::sdk::Algorithm for Attack {
            fn info() -> $crate::sdk::AlgorithmInfo {
                $crate::attacks::info($name)
            }

            fn init_model(
                _params: &$crate::sdk::Params,
                _feature_count: usize,
            ) -> $crate::sdk::Result<Vec<f32>> {
                Ok(vec![0.0; $crate::attacks::MODEL_LEN])
            }

            #[allow(unused_variables, reason = "each attack uses what it needs")]
            fn train(
                $model: &[f32],
                $params: &$crate::sdk::Params,
                $table: &$crate::sdk::Table,
                $seed: u64,
            ) -> $crate::sdk::Result<$crate::sdk::Update> {
                $body
            }

            fn evaluate(
                _model: &[f32],
                _params: &$crate::sdk::Params,
                _table: &$crate::sdk::Table,
            ) -> $crate::sdk::Result<$crate::sdk::Evaluation> {
                Ok($crate::zero_evaluation())
            }
        }

        $crate::sdk::export_algorithm!(Attack);
    };
}
