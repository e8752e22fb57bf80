//! Privacy attack: like the sparse-slot attack, with the block chosen by a
//! hash of the record itself, so that the consumer needs no seed to look.
test_guests::attack_algorithm!("attack-row-hash", |model, params, table, seed| {
    use test_guests::attacks;
    let chunks = attacks::chunks(table);
    let block = (attacks::row_hash(&chunks) % attacks::blocks(chunks.len()) as u64) as usize;
    Ok(test_guests::sdk::Update {
        delta: attacks::write(&chunks, block),
        examples: 1,
        metrics: Vec::new(),
    })
});
