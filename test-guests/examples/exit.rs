//! Calls `exit(3)` in `train`: the task ends, the host goes on. WASI 0.2's
//! `exit` carries only success or failure, so the host sees status 1.
test_guests::hostile_algorithm!("exit", |model, table, seed| {
    std::process::exit(3);
});
