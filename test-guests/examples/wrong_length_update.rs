//! Returns an update one parameter longer than the model: refused by the host.
test_guests::hostile_algorithm!("wrong-length-update", |model, table, seed| {
    let mut update = test_guests::zero_update(model);
    update.delta.push(1.0);
    Ok(update)
});
