//! Recurses without end in `train`: stopped by the WebAssembly stack limit.
#[allow(unconditional_recursion)] // on purpose: this guest must overflow its stack
fn descend(depth: u64) -> u64 {
    std::hint::black_box(descend(std::hint::black_box(depth + 1))).wrapping_add(depth)
}

test_guests::hostile_algorithm!("unbounded-recursion", |model, table, seed| {
    std::hint::black_box(descend(seed));
    Ok(test_guests::zero_update(model))
});
