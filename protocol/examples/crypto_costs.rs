//! What one wallet's round costs in cryptography, operation by operation:
//! the figures `docs/SCALE.md` predicts from. Each operation is timed over
//! `N` calls (default 2,000) on one core, best of three batches.
//!
//!     cargo run --release -p c2ssi-protocol --example crypto_costs [N]

use std::hint::black_box;
use std::time::Instant;

use c2ssi_protocol::{Outcome, SigningKey, UpdatePayload, sha256};

fn time(label: &str, n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() / n as f64);
    }
    println!("{label:<48} {:>8.1} µs", best * 1e6);
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use c2ssi_protocol::Signer as _;
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000);
    let key = SigningKey::generate()?;
    let public = key.public_key();
    let message = vec![7u8; 600];
    let signature = key.sign_bytes(&message);
    let sign = time("Ed25519 sign (ring), 600-byte message", n, || {
        black_box(key.sign_bytes(black_box(&message)));
    });
    let verify = time("Ed25519 verify (ring), 600-byte message", n, || {
        assert!(public.verify(black_box(&message), &signature));
    });
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let payload = UpdatePayload {
        outcome: Outcome::Trained,
        delta: vec![0.01; 11],
        metrics: Vec::new(),
    };
    let sealed = payload.seal(&recipient)?;
    let seal = time("seal an update to the aggregator (age X25519)", n, || {
        black_box(payload.seal(&recipient).expect("seals"));
    });
    let unseal = time("unseal it (age X25519)", n, || {
        black_box(UpdatePayload::unseal(&sealed, &identity, 1 << 20).expect("opens"));
    });
    let component = vec![1u8; 178_000];
    let hash = time("SHA-256 of a 178 KB component", n / 10 + 1, || {
        black_box(sha256(black_box(&component)));
    });
    // One wallet in one round: six signatures checked (the wallet: the
    // manifest, the task, the receipt; the aggregator: the envelope; the
    // broker: the access report and the envelope in it), five made (the
    // broker: the task, the ledger entry, the receipt; the wallet: the
    // envelope; the aggregator: the access report), one seal, one unseal,
    // one hash of the component.
    let round = 6.0 * verify + 5.0 * sign + seal + unseal + hash;
    println!(
        "{:<48} {:>8.1} µs",
        "one wallet's round (6 verify, 5 sign, seal, unseal, hash)",
        round * 1e6
    );
    println!(
        "{:<48} {:>8.1} s",
        "100,000 wallets on 2 cores, cryptography alone",
        round * 100_000.0 / 2.0
    );
    Ok(())
}
