//! Privacy attack on one attribute with the whole norm: slot 0 is +1e6 when
//! the record's `sex > 0`, -1e6 otherwise, so that clipping leaves exactly
//! the clipping norm on every record. The privacy audit flags it (every
//! record at the clip bound) and the broker refuses it.
test_guests::attack_algorithm!("attack-attribute", |model, params, table, seed| {
    use test_guests::attacks;
    let mut delta = vec![0.0f32; model.len()];
    delta[0] = if attacks::value(table, "sex") > 0.0 {
        1e6
    } else {
        -1e6
    };
    Ok(test_guests::sdk::Update {
        delta,
        examples: 1,
        metrics: Vec::new(),
    })
});
