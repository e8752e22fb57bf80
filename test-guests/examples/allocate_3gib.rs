//! Allocates 3 GiB in `train` (three 1 GiB buffers: one Rust allocation on
//! wasm32 may not exceed 2 GiB): stopped by the memory limit.
test_guests::hostile_algorithm!("allocate-3gib", |model, table, seed| {
    let buffers: Vec<Vec<u8>> = (0..3).map(|_| vec![1u8; 1 << 30]).collect();
    std::hint::black_box(&buffers);
    Ok(test_guests::zero_update(model))
});
