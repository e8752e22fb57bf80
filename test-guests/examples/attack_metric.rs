//! Privacy attack through the metrics: reports 32 metrics `m00`..`m31` with
//! the label in metric `seed % 32` and zeros elsewhere, and the label as the
//! declared metric `mse_before`. Undeclared metrics never leave the wallet;
//! the declared one leaves clamped and is released noised over the batch.
test_guests::attack_algorithm!("attack-metric", |model, params, table, seed| {
    use test_guests::attacks;
    let label = params.text("label")?;
    let y = attacks::value(table, label);
    let mut update = test_guests::zero_update(model);
    for i in 0..32u64 {
        let value = if i == seed % 32 { y } else { 0.0 };
        update = update.metric(&format!("m{i:02}"), value);
    }
    Ok(update.metric("mse_before", y))
});
