//! Returns 8 million parameters (32 MB) and 100,000 metrics: refused by the output bounds.
test_guests::hostile_algorithm!("huge-output", |model, table, seed| {
    let mut update = test_guests::zero_update(model);
    update.delta = vec![0.0; 8 << 20];
    update.metrics = (0..100_000)
        .map(|i| test_guests::sdk::Metric::new(format!("metric-{i}"), 0.0))
        .collect();
    Ok(update)
});
