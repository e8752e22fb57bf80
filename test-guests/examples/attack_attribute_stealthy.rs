//! Privacy attack on one attribute that slips past the audit's flag: slot 0
//! is `+attack_scale` when the record's `sex > 0` and `-attack_scale`
//! otherwise, with `attack_scale` a shade under the clipping norm the
//! consumer wrote into its own manifest (0.098 of 0.1), so that no record
//! reaches the clipping bound. What it can learn is what the noise allows:
//! the attribute-inference bound of the epsilon spent.
test_guests::attack_algorithm!("attack-attribute-stealthy", |model, params, table, seed| {
    use test_guests::attacks;
    let scale = params.real("attack_scale")? as f32;
    let mut delta = vec![0.0f32; model.len()];
    delta[0] = if attacks::value(table, "sex") > 0.0 {
        scale
    } else {
        -scale
    };
    Ok(test_guests::sdk::Update {
        delta,
        examples: 1,
        metrics: Vec::new(),
    })
});
