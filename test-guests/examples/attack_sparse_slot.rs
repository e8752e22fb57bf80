//! Privacy attack: writes the whole record, quantized, into a block of
//! slots chosen by the task's seed, zeros elsewhere: an update of norm about
//! 5e-5 that no clipping touches. With the seed known (it was derived from
//! the job's seed and the wallet's key), a consumer read every person's
//! record from the released aggregates; now the seed is the broker's secret
//! and the aggregate is noised.
test_guests::attack_algorithm!("attack-sparse-slot", |model, params, table, seed| {
    use test_guests::attacks;
    let chunks = attacks::chunks(table);
    let block = (seed % attacks::blocks(chunks.len()) as u64) as usize;
    Ok(test_guests::sdk::Update {
        delta: attacks::write(&chunks, block),
        examples: 1,
        metrics: Vec::new(),
    })
});
