//! Times one aggregation rule on a batch read from a file, for
//! `scripts/flower_compare.py`: the loading is not timed, the rule is run a
//! few times and each run's wall time is printed as one line of JSON.
//!
//! ```sh
//! rules_timing BATCH RULE [--reps R] [--out RESULT]
//! ```
//!
//! `BATCH`: `n` and `d` as little-endian `u64`, then `n` rows of `d`
//! little-endian `f32`. `RULE`: `mean`, `clipped-mean:NORM`, `median`,
//! `trimmed-mean:FRACTION`, `krum:F` (Multi-Krum selecting one),
//! `multi-krum:F` (selecting `n - F`), `centered-clipping:RADIUS:ITERATIONS`,
//! `centered-clipping-momentum:RADIUS:BETA` (from zero, as in a job's first round).
//! `RESULT`: the combined update, as little-endian `f32`. A first run
//! shorter than a second is a warm-up and not counted.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use c2ssi_aggregator::rules::Rule;
use c2ssi_protocol::AggregationRule;

fn read_batch(path: &str) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut file = BufReader::new(File::open(path).with_context(|| format!("opening {path}"))?);
    let mut header = [0u8; 16];
    file.read_exact(&mut header)?;
    let n = u64::from_le_bytes(header[..8].try_into()?) as usize;
    let d = u64::from_le_bytes(header[8..].try_into()?) as usize;
    let mut bytes = vec![0u8; d * 4];
    (0..n)
        .map(|_| {
            file.read_exact(&mut bytes)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        })
        .collect()
}

fn parse_rule(text: &str) -> anyhow::Result<AggregationRule> {
    if let Some(f) = text.strip_prefix("krum:") {
        return Ok(AggregationRule::MultiKrum {
            byzantine: Some(f.parse()?),
            selected: Some(1),
        });
    }
    text.parse::<AggregationRule>().map_err(anyhow::Error::msg)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut positional, mut reps, mut out) = (Vec::new(), 3usize, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().context("--reps needs a count")?.parse()?,
            "--out" => out = Some(it.next().context("--out needs a path")?.clone()),
            _ => positional.push(a.clone()),
        }
    }
    let [batch, rule] = positional.as_slice() else {
        bail!("usage: rules_timing BATCH RULE [--reps R] [--out RESULT]");
    };
    let updates = read_batch(batch)?;
    let rule = Rule::new(&parse_rule(rule)?)?;
    let mut seconds = Vec::new();
    let mut result = None;
    while seconds.len() < reps.max(1) {
        let t = Instant::now();
        let aggregate = rule.aggregate(&updates)?;
        let elapsed = t.elapsed().as_secs_f64();
        // The first run is a warm-up unless it took a second or more.
        if result.is_some() || elapsed >= 1.0 {
            seconds.push(elapsed);
        }
        result = Some(aggregate);
    }
    let result = result.context("no run")?;
    if let Some(path) = out {
        let mut file = File::create(&path).with_context(|| format!("creating {path}"))?;
        let bytes: Vec<u8> = result.update.iter().flat_map(|x| x.to_le_bytes()).collect();
        file.write_all(&bytes)?;
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "n": updates.len(),
            "d": updates.first().map_or(0, Vec::len),
            "threads": rayon::current_num_threads(),
            "seconds": seconds,
            "median_seconds": sorted[sorted.len() / 2],
            "contributors": result.contributors,
            "report": result.report,
        })
    );
    Ok(())
}
