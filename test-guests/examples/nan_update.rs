//! Returns an update with a NaN in it: refused by the host.
test_guests::hostile_algorithm!("nan-update", |model, table, seed| {
    let mut update = test_guests::zero_update(model);
    if let Some(first) = update.delta.first_mut() {
        *first = f32::NAN;
    }
    Ok(update)
});
