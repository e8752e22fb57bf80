//! Reads a file in `train`, so the component imports wasi:filesystem: refused
//! before instantiation.
test_guests::hostile_algorithm!("import-filesystem", |model, table, seed| {
    let secret = std::fs::read("/etc/passwd");
    std::hint::black_box(&secret);
    Ok(test_guests::zero_update(model))
});
