//! Panics in `train`: the task's error carries the panic's message.
test_guests::hostile_algorithm!("panic", |model, table, seed| {
    panic!("this algorithm panics on purpose (seed {seed})");
});
