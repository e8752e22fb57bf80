//! Privacy attack through failures: fails on every record with `sex > 0`,
//! trains (a zero update) on the others. A released count of failures was
//! one bit per chosen wallet; now a failure is a zero update like any other
//! and no failure is counted in any release.
test_guests::attack_algorithm!("attack-failure", |model, params, table, seed| {
    use test_guests::attacks;
    if attacks::value(table, "sex") > 0.0 {
        return Err(test_guests::sdk::Error::new("failing on purpose"));
    }
    Ok(test_guests::zero_update(model))
});
