//! An honest algorithm built against the retired contract
//! `c2ssi:algorithm@0.1.0` (`test-guests/wit-0.1.0`): no `predict`, and an
//! `evaluate` that names no loss or score. Refused at load time by name.
#[cfg(target_arch = "wasm32")]
mod old {
    test_guests::sdk::export::wit_bindgen::generate!({
        path: "wit-0.1.0",
        world: "c2ssi:algorithm/algorithm",
        runtime_path: "test_guests::sdk::export::wit_bindgen::rt",
    });

    struct Old;

    impl Guest for Old {
        fn describe() -> AlgorithmInfo {
            AlgorithmInfo {
                name: "contract-0-1".into(),
                version: "0.0.0".into(),
                description: "built against c2ssi:algorithm@0.1.0".into(),
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
        ) -> Result<Vec<Metric>, String> {
            Ok(Vec::new())
        }
    }

    export!(Old);
}
