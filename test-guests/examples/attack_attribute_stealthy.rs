//! Privacy attack on one attribute that slips past the audit's flag: slot 0
//! is `+attack_scale` when the record's `sex > 0` and `-attack_scale` on
//! nine records of ten otherwise (a small fraction stays under the norm, so
//! not every record reaches the clipping bound). What it can learn is what
//! the noise allows: the attribute-inference bound of the epsilon spent.
test_guests::attack_algorithm!("attack-attribute-stealthy", |model, params, table, seed| {
    use test_guests::attacks;
    let scale = params.real("attack_scale")? as f32;
    let mut delta = vec![0.0f32; model.len()];
    let positive = attacks::value(table, "sex") > 0.0;
    // One record in ten (by the seed) spends a tenth of the norm.
    let quiet = seed.is_multiple_of(10);
    delta[0] = if positive { scale } else { -scale } * if quiet { 0.1 } else { 1.0 };
    Ok(test_guests::sdk::Update {
        delta,
        examples: 1,
        metrics: Vec::new(),
    })
});
