//! Loops forever in `train`: stopped by fuel or by the wall-clock deadline.
test_guests::hostile_algorithm!("infinite-loop", |model, table, seed| {
    let mut x = seed;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
});
