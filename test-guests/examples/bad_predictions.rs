//! `predict` returns predictions that no host should pass on, chosen by the
//! label's name: a column one value too long (`long`), a NaN (`nan`), a first
//! column not named like the label (`misnamed`), more columns than any label
//! has classes (`many`). Written against the WIT bindings directly, as a
//! hand-made component would be, so that the SDK's own check of predictions
//! does not stand in for the host's. Each is refused by the host.
#[cfg(target_arch = "wasm32")]
mod hostile {
    test_guests::sdk::export::wit_bindgen::generate!({
        path: "../wit",
        world: "c2ssi:algorithm/algorithm",
        runtime_path: "test_guests::sdk::export::wit_bindgen::rt",
    });

    use c2ssi::algorithm::types::{ColumnValues, Metric, RealColumn};

    struct Hostile;

    fn real(name: &str, values: Vec<f64>) -> Column {
        Column {
            name: name.into(),
            values: ColumnValues::Real(RealColumn {
                values,
                min: None,
                max: None,
            }),
        }
    }

    impl Guest for Hostile {
        fn describe() -> AlgorithmInfo {
            AlgorithmInfo {
                name: "bad-predictions".into(),
                version: "0.0.0".into(),
                description: "a hostile test component".into(),
                params: Vec::new(),
            }
        }

        fn init_model(_params: Vec<Param>, feature_count: u32) -> Result<Vec<f32>, String> {
            Ok(vec![0.0; feature_count as usize + 1])
        }

        fn train(
            model: Vec<f32>,
            _params: Vec<Param>,
            _data: Table,
            _seed: u64,
        ) -> Result<Update, String> {
            Ok(Update {
                delta: vec![0.0; model.len()],
                examples: 1,
                metrics: Vec::new(),
            })
        }

        fn evaluate(
            _model: Vec<f32>,
            _params: Vec<Param>,
            _data: Table,
        ) -> Result<Evaluation, String> {
            let zero = |name: &str| Metric {
                name: name.into(),
                value: 0.0,
            };
            Ok(Evaluation {
                loss: zero("loss"),
                score: zero("score"),
                metrics: Vec::new(),
            })
        }

        fn predict(
            _model: Vec<f32>,
            _params: Vec<Param>,
            data: Table,
            label: ColumnSpec,
        ) -> Result<Vec<Column>, String> {
            let n = data.row_count as usize;
            let name = label.name.as_str();
            match name {
                "long" => Ok(vec![real(name, vec![0.0; n + 1])]),
                "nan" => Ok(vec![real(name, vec![f64::NAN; n])]),
                "misnamed" => Ok(vec![real("not-the-label", vec![0.0; n])]),
                "many" => Ok((0..2000)
                    .map(|k| match k {
                        0 => real(name, vec![0.0; n]),
                        k => real(&format!("p{k}"), vec![0.0; n]),
                    })
                    .collect()),
                other => Err(format!("unknown mode {other}")),
            }
        }
    }

    export!(Hostile);
}
