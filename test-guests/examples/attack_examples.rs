//! Privacy attack through the example count: a wallet whose record has
//! `sex > 0` claims u32::MAX examples (others claim one), and every update
//! carries the label, scaled, in slot 0; a mean weighted by examples was
//! that one wallet's update, exactly. Each wallet now weighs one.
test_guests::attack_algorithm!("attack-examples", |model, params, table, seed| {
    use test_guests::attacks;
    let label = params.text("label")?;
    let mut delta = vec![0.0f32; model.len()];
    delta[0] = attacks::value(table, label) as f32 * 1e-6;
    Ok(test_guests::sdk::Update {
        delta,
        examples: if attacks::value(table, "sex") > 0.0 {
            u32::MAX
        } else {
            1
        },
        metrics: Vec::new(),
    })
});
