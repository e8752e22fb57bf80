//! `describe` returns a 1 MiB name and 100,000 parameters: refused by the
//! bounds on what `describe` says, before anyone prints or stores it.
use test_guests::sdk::{
    Algorithm, AlgorithmInfo, Evaluation, ParamKind, ParamSpec, Params, Result, Table, Update,
};

/// The hostile algorithm.
#[derive(Debug)]
pub struct Hostile;

impl Algorithm for Hostile {
    fn info() -> AlgorithmInfo {
        let mut info =
            AlgorithmInfo::new(&"n".repeat(1 << 20), "0.0.0", "a hostile test component");
        for i in 0..100_000 {
            info = info.param(ParamSpec::required(
                &format!("p{i}"),
                ParamKind::Integer,
                "a parameter",
            ));
        }
        info
    }

    fn init_model(_params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; feature_count + 1])
    }

    fn train(model: &[f32], _params: &Params, _table: &Table, _seed: u64) -> Result<Update> {
        Ok(test_guests::zero_update(model))
    }

    fn evaluate(_model: &[f32], _params: &Params, _table: &Table) -> Result<Evaluation> {
        Ok(test_guests::zero_evaluation())
    }
}

test_guests::sdk::export_algorithm!(Hostile);
