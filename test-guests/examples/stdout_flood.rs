//! Writes 100 MB to stdout, then returns an honest update: the capture is
//! truncated, the task completes.
use std::io::Write;

test_guests::hostile_algorithm!("stdout-flood", |model, table, seed| {
    let chunk = vec![b'x'; 1 << 20];
    let mut out = std::io::stdout().lock();
    for _ in 0..100 {
        out.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(test_guests::zero_update(model))
});
