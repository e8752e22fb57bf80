//! Local mini-batch stochastic gradient descent, shared by the gradient-based
//! algorithms: hyper-parameters, a seeded shuffle, and the epoch loop.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wide::f32x4;

use crate::error::Result;
use crate::params::{ParamSpec, ParamValue, Params};

/// Hyper-parameters of local SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Step size.
    pub learning_rate: f32,
    /// Passes over the local data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
}

impl SgdConfig {
    /// The declarations of `learning_rate`, `epochs`, `batch_size` and `l2`.
    pub fn specs(learning_rate: f64) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "learning_rate",
                "local SGD step size",
                ParamValue::Real(learning_rate),
            ),
            ParamSpec::optional(
                "epochs",
                "passes over the local data",
                ParamValue::Integer(1),
            ),
            ParamSpec::optional(
                "batch_size",
                "examples per local step",
                ParamValue::Integer(32),
            ),
            ParamSpec::optional("l2", "L2 penalty on the weights", ParamValue::Real(0.0)),
        ]
    }

    /// Reads the four parameters, checking their ranges.
    pub fn from_params(params: &Params) -> Result<SgdConfig> {
        Ok(SgdConfig {
            learning_rate: params.real_in("learning_rate", 0.0, 1e3)? as f32,
            epochs: params.integer_in("epochs", 1, 10_000)? as usize,
            batch_size: params.integer_in("batch_size", 1, 1 << 20)? as usize,
            l2: params.real_in("l2", 0.0, 1e3)? as f32,
        })
    }
}

/// Runs `config.epochs` epochs over `n` examples in a seeded random order.
///
/// For each mini-batch, `gradient(weights, batch, grad)` must *add* the summed
/// gradient of the loss over `batch` to `grad` (zeroed before each call); the
/// loop divides by the batch size, adds the L2 term for indexes where
/// `penalized(i)` holds, and steps.
pub fn run_epochs(
    weights: &mut [f32],
    n: usize,
    config: &SgdConfig,
    seed: u64,
    penalized: impl Fn(usize) -> bool,
    mut gradient: impl FnMut(&[f32], &[usize], &mut [f32]),
) {
    let mut rng = seeded_rng(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut grad = vec![0.0f32; weights.len()];
    // 1.0 where the weight is penalized: the step below runs four weights per
    // iteration and selects the decay lane by lane.
    let penalty: Vec<f32> = (0..weights.len())
        .map(|i| if penalized(i) { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..config.epochs {
        shuffle(&mut order, &mut rng);
        for batch in order.chunks(config.batch_size) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            gradient(weights, batch, &mut grad);
            let scale = config.learning_rate / batch.len() as f32;
            step(weights, &grad, &penalty, scale, config);
        }
    }
}

/// `w -= scale * g + learning_rate * decay`, where `decay` is `l2 * w` for
/// penalized weights and `0.0` for the others: the same operations, in the
/// same order, for every weight, four weights per iteration.
fn step(weights: &mut [f32], grad: &[f32], penalty: &[f32], scale: f32, config: &SgdConfig) {
    let (sv, lv, l2v) = (
        f32x4::splat(scale),
        f32x4::splat(config.learning_rate),
        f32x4::splat(config.l2),
    );
    let chunks = weights
        .chunks_exact_mut(LANES)
        .zip(grad.chunks_exact(LANES))
        .zip(penalty.chunks_exact(LANES));
    for ((wc, gc), pc) in chunks {
        let w = vector(wc);
        let decay = (l2v * w) & vector(pc).simd_eq(f32x4::ONE);
        let v = w - (sv * vector(gc) + lv * decay);
        wc.copy_from_slice(&v.to_array());
    }
    let k = weights.len() - weights.len() % LANES;
    for ((w, g), p) in weights[k..].iter_mut().zip(&grad[k..]).zip(&penalty[k..]) {
        let decay = if *p == 1.0 { config.l2 * *w } else { 0.0 };
        *w -= scale * g + config.learning_rate * decay;
    }
}

/// A random generator that gives the same sequence for the same seed on every
/// platform (32-bit WebAssembly and 64-bit native alike), unlike `SmallRng`.
pub fn seeded_rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Fisher-Yates shuffle that draws fixed-width integers (`u32` where the
/// slice is short enough, which WebAssembly multiplies natively, else
/// `u64`), so the permutation for a seed is the same on every platform.
pub fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = match u32::try_from(i) {
            Ok(i) => rng.random_range(0..=i) as usize,
            Err(_) => rng.random_range(0..=i as u64) as usize,
        };
        items.swap(i, j);
    }
}

/// Kernels are written with explicit 4-lane vectors (the `wide` crate), which
/// compile to SSE natively and to WebAssembly simd128 in the sandbox, so the
/// vectorization runs along the contiguous features on both and the order of
/// additions, hence the result, is the same on every platform. Wider loop
/// steps also mean fewer of the sandbox's fuel and deadline checks, which sit
/// on loop back-edges.
const LANES: usize = 4;

#[inline(always)]
fn load(s: &[f32], at: usize) -> f32x4 {
    // One bounds check and one 16-byte load.
    let lanes: [f32; LANES] = s[at..at + LANES].try_into().unwrap_or([0.0; LANES]);
    f32x4::from(lanes)
}

/// A chunk of exactly [`LANES`] values as a vector.
#[inline(always)]
fn vector(chunk: &[f32]) -> f32x4 {
    let lanes: [f32; LANES] = chunk.try_into().unwrap_or([0.0; LANES]);
    f32x4::from(lanes)
}

#[inline(always)]
fn hsum(v: f32x4) -> f32 {
    let a = v.to_array();
    (a[0] + a[2]) + (a[1] + a[3])
}

/// The dot product of two slices (over the shorter length).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = f32x4::ZERO;
    let mut k = 0;
    while k + LANES <= n {
        acc += load(a, k) * load(b, k);
        k += LANES;
    }
    let mut sum = hsum(acc);
    while k < n {
        sum += a[k] * b[k];
        k += 1;
    }
    sum
}

/// `y += a * x`, elementwise over the shorter length.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let av = f32x4::splat(a);
    let mut k = 0;
    while k + LANES <= n {
        let v = load(y, k) + av * load(x, k);
        y[k..k + LANES].copy_from_slice(&v.to_array());
        k += LANES;
    }
    while k < n {
        y[k] += a * x[k];
        k += 1;
    }
}

/// Rows handled together by [`glm_gradient`] and [`glm_scores`]: each pass
/// over the weights serves four rows, which quarters the loop iterations (and
/// the sandbox's checks on them) and the loads of the weights.
const ROW_BLOCK: usize = 4;

/// `w[..d] . x_i + w[d]` for four rows at once.
#[inline]
fn scores4(x: &[f32], d: usize, w: &[f32], rows: [usize; ROW_BLOCK]) -> [f32; ROW_BLOCK] {
    let r = [
        &x[rows[0] * d..(rows[0] + 1) * d],
        &x[rows[1] * d..(rows[1] + 1) * d],
        &x[rows[2] * d..(rows[2] + 1) * d],
        &x[rows[3] * d..(rows[3] + 1) * d],
    ];
    let (mut a0, mut a1, mut a2, mut a3) = (f32x4::ZERO, f32x4::ZERO, f32x4::ZERO, f32x4::ZERO);
    // Zipped exact chunks: no index, so no bounds checks (and no branches to
    // panics) inside the loop.
    let chunks = w[..d]
        .chunks_exact(LANES)
        .zip(r[0].chunks_exact(LANES))
        .zip(r[1].chunks_exact(LANES))
        .zip(r[2].chunks_exact(LANES))
        .zip(r[3].chunks_exact(LANES));
    for ((((wc, c0), c1), c2), c3) in chunks {
        let wk = vector(wc);
        a0 += wk * vector(c0);
        a1 += wk * vector(c1);
        a2 += wk * vector(c2);
        a3 += wk * vector(c3);
    }
    let k = d - d % LANES;
    let mut out = [0.0f32; ROW_BLOCK];
    for ((o, a), row) in out.iter_mut().zip([a0, a1, a2, a3]).zip(r) {
        let mut sum = hsum(a);
        for j in k..d {
            sum += w[j] * row[j];
        }
        *o = sum + w[d];
    }
    out
}

/// The linear score `w[..d] . x_i + w[d]` of every row of the row-major
/// `x` (`d` columns), four rows at a time.
pub fn glm_scores(x: &[f32], d: usize, w: &[f32]) -> Vec<f32> {
    let n = x.len().checked_div(d).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i + ROW_BLOCK <= n {
        out.extend_from_slice(&scores4(x, d, w, [i, i + 1, i + 2, i + 3]));
        i += ROW_BLOCK;
    }
    for i in i..n {
        out.push(dot(&w[..d], &x[i * d..(i + 1) * d]) + w[d]);
    }
    out
}

/// Adds the gradient of a generalized linear model over `batch` to `g`: for
/// each row `i`, `err = error(i, score_i)` where `score_i = w[..d] . x_i + w[d]`,
/// then `g[..d] += err * x_i` and `g[d] += err`. Linear regression's error is
/// `score - y`, logistic regression's `sigmoid(score) - y`.
///
/// Tables of up to `4 * MAX_HELD + 3` features take a kernel specialized to
/// their width (the loop over features unrolled, so the only loops are over
/// rows); wider ones a kernel that passes over the weights four rows at a
/// time. Both add in the same order for a given width on every platform.
#[inline]
pub fn glm_gradient(
    x: &[f32],
    d: usize,
    w: &[f32],
    batch: &[usize],
    g: &mut [f32],
    error: impl Fn(usize, f32) -> f32,
) {
    match d / LANES {
        0 => glm_gradient_held::<0>(x, d, w, batch, g, error),
        1 => glm_gradient_held::<1>(x, d, w, batch, g, error),
        2 => glm_gradient_held::<2>(x, d, w, batch, g, error),
        3 => glm_gradient_held::<3>(x, d, w, batch, g, error),
        4 => glm_gradient_held::<4>(x, d, w, batch, g, error),
        5 => glm_gradient_held::<5>(x, d, w, batch, g, error),
        MAX_HELD => glm_gradient_held::<MAX_HELD>(x, d, w, batch, g, error),
        _ => glm_gradient_blocks(x, d, w, batch, g, error),
    }
}

/// The most vectors of weights (four features each) for which
/// [`glm_gradient`] takes the width-specialized kernel.
const MAX_HELD: usize = 6;

/// Rows whose scores are computed before their errors, and their errors
/// before the gradient: no call to `error` (which may call `exp`) sits in a
/// loop that holds vectors in registers.
const SCORE_CHUNK: usize = 32;

/// [`glm_gradient`] for `d` in `4 * N..4 * N + 4`, in chunks of up to
/// [`SCORE_CHUNK`] rows: the scores, then the errors, then the gradient, each
/// a small loop over rows in a function of its own, with the features of a
/// row in straight-line code. The sandbox's compiler keeps no vector in a
/// register across a loop back-edge (the fuel and deadline checks there may
/// call into the host, and a call clobbers every vector register), so what
/// matters is how much work each back-edge serves and how few values each
/// loop holds (the 1,000 x 20 training tasks ran 4% to 5% faster in the
/// sandbox than with the four-rows-per-pass kernel).
#[inline(never)]
fn glm_gradient_held<const N: usize>(
    x: &[f32],
    d: usize,
    w: &[f32],
    batch: &[usize],
    g: &mut [f32],
    error: impl Fn(usize, f32) -> f32,
) {
    let body = N * LANES;
    let mut e = [0.0f32; SCORE_CHUNK];
    for rows in batch.chunks(SCORE_CHUNK) {
        let e = &mut e[..rows.len()];
        scores_held::<N>(x, d, w, rows, e);
        if body < d {
            scores_tail(x, d, body, w, rows, e);
        }
        errors(w[d], rows, e, &mut g[d], &error);
        accumulate_held::<N>(x, d, rows, e, g);
        if body < d {
            accumulate_tail(x, d, body, rows, e, g);
        }
    }
}

/// Rows per iteration of the held kernels' loops, in straight-line code: one
/// back-edge (and one reload of what the sandbox's compiler spilled) per
/// four rows. Eight rows measured the same.
const ROWS: usize = 4;

/// `e[r] = error(i, e[r] + bias)` for each row `i = rows[r]`, and the errors
/// added to `g_bias` in order, [`ROWS`] rows per iteration.
#[inline(always)]
fn errors(
    bias: f32,
    rows: &[usize],
    e: &mut [f32],
    g_bias: &mut f32,
    error: &impl Fn(usize, f32) -> f32,
) {
    let mut sum = *g_bias;
    let mut blocks = rows.chunks_exact(ROWS);
    let mut outs = e.chunks_exact_mut(ROWS);
    for (block, o) in (&mut blocks).zip(&mut outs) {
        for (s, &i) in o.iter_mut().zip(block) {
            *s = error(i, *s + bias);
            sum += *s;
        }
    }
    for (s, &i) in outs.into_remainder().iter_mut().zip(blocks.remainder()) {
        *s = error(i, *s + bias);
        sum += *s;
    }
    *g_bias = sum;
}

/// `out[r] = sum of w[..4 * N] * x_i[..4 * N]` for each row `i = rows[r]`,
/// summed in four lanes and then across them as in [`scores4`].
#[inline(never)]
fn scores_held<const N: usize>(x: &[f32], d: usize, w: &[f32], rows: &[usize], out: &mut [f32]) {
    let wv: [f32x4; N] = core::array::from_fn(|k| load(w, k * LANES));
    let score = |i: usize| {
        let r = &x[i * d..i * d + N * LANES];
        let mut acc = f32x4::ZERO;
        for (k, wk) in wv.iter().enumerate() {
            acc += *wk * vector(&r[k * LANES..(k + 1) * LANES]);
        }
        hsum(acc)
    };
    let mut blocks = rows.chunks_exact(ROWS);
    let mut outs = out.chunks_exact_mut(ROWS);
    for (block, o) in (&mut blocks).zip(&mut outs) {
        for (o, &i) in o.iter_mut().zip(block) {
            *o = score(i);
        }
    }
    for (o, &i) in outs.into_remainder().iter_mut().zip(blocks.remainder()) {
        *o = score(i);
    }
}

/// Adds the features past the held vectors to the scores, in order.
#[inline(never)]
fn scores_tail(x: &[f32], d: usize, body: usize, w: &[f32], rows: &[usize], out: &mut [f32]) {
    for (o, &i) in out.iter_mut().zip(rows) {
        for (wj, xj) in w[body..d].iter().zip(&x[i * d + body..(i + 1) * d]) {
            *o += wj * xj;
        }
    }
}

/// `g[..4 * N] += e[r] * x_i[..4 * N]` for each row `i = rows[r]`, in order.
#[inline(never)]
fn accumulate_held<const N: usize>(x: &[f32], d: usize, rows: &[usize], e: &[f32], g: &mut [f32]) {
    let mut gv: [f32x4; N] = core::array::from_fn(|k| load(g, k * LANES));
    let add = |gv: &mut [f32x4; N], err: f32, i: usize| {
        let r = &x[i * d..i * d + N * LANES];
        let ev = f32x4::splat(err);
        for (k, gk) in gv.iter_mut().enumerate() {
            *gk += ev * vector(&r[k * LANES..(k + 1) * LANES]);
        }
    };
    let mut blocks = rows.chunks_exact(ROWS).zip(e.chunks_exact(ROWS));
    for (block, eb) in &mut blocks {
        for (&err, &i) in eb.iter().zip(block) {
            add(&mut gv, err, i);
        }
    }
    let done = rows.len() - rows.len() % ROWS;
    for (&err, &i) in e[done..].iter().zip(&rows[done..]) {
        add(&mut gv, err, i);
    }
    for (gc, v) in g[..N * LANES].chunks_exact_mut(LANES).zip(gv) {
        gc.copy_from_slice(&v.to_array());
    }
}

/// Adds the gradient of the features past the held vectors, in order.
#[inline(never)]
fn accumulate_tail(x: &[f32], d: usize, body: usize, rows: &[usize], e: &[f32], g: &mut [f32]) {
    for (&err, &i) in e.iter().zip(rows) {
        for (gj, xj) in g[body..d].iter_mut().zip(&x[i * d + body..(i + 1) * d]) {
            *gj += err * xj;
        }
    }
}

/// [`glm_gradient`] for wide tables (more than [`MAX_HELD`] vectors of
/// weights): four rows per pass over the weights, the gradient in memory.
#[inline(never)]
fn glm_gradient_blocks(
    x: &[f32],
    d: usize,
    w: &[f32],
    batch: &[usize],
    g: &mut [f32],
    error: impl Fn(usize, f32) -> f32,
) {
    let mut blocks = batch.chunks_exact(ROW_BLOCK);
    for block in &mut blocks {
        let rows = [block[0], block[1], block[2], block[3]];
        let scores = scores4(x, d, w, rows);
        let e = [
            error(rows[0], scores[0]),
            error(rows[1], scores[1]),
            error(rows[2], scores[2]),
            error(rows[3], scores[3]),
        ];
        let r = [
            &x[rows[0] * d..(rows[0] + 1) * d],
            &x[rows[1] * d..(rows[1] + 1) * d],
            &x[rows[2] * d..(rows[2] + 1) * d],
            &x[rows[3] * d..(rows[3] + 1) * d],
        ];
        let ev = e.map(f32x4::splat);
        let chunks = g[..d]
            .chunks_exact_mut(LANES)
            .zip(r[0].chunks_exact(LANES))
            .zip(r[1].chunks_exact(LANES))
            .zip(r[2].chunks_exact(LANES))
            .zip(r[3].chunks_exact(LANES));
        for ((((gc, c0), c1), c2), c3) in chunks {
            let v = vector(gc)
                + (((ev[0] * vector(c0) + ev[1] * vector(c1)) + ev[2] * vector(c2))
                    + ev[3] * vector(c3));
            gc.copy_from_slice(&v.to_array());
        }
        let mut k = d - d % LANES;
        while k < d {
            g[k] += ((e[0] * r[0][k] + e[1] * r[1][k]) + e[2] * r[2][k]) + e[3] * r[3][k];
            k += 1;
        }
        g[d] += ((e[0] + e[1]) + e[2]) + e[3];
    }
    for &i in blocks.remainder() {
        let row = &x[i * d..(i + 1) * d];
        let err = error(i, dot(&w[..d], row) + w[d]);
        axpy(&mut g[..d], err, row);
        g[d] += err;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glm_helpers_match_the_plain_loops() {
        for (n, d) in [
            (1, 3),
            (4, 8),
            (9, 20),
            (13, 9),
            (70, 1),
            (67, 4),
            (33, 7),
            (65, 12),
            (5, 23),
            (40, 27),
            (31, 28),
            (3, 41),
        ] {
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let w: Vec<f32> = (0..=d).map(|j| (j as f32 - 2.0) / 3.0).collect();
            let plain: Vec<f32> = (0..n)
                .map(|i| (0..d).map(|j| w[j] * x[i * d + j]).sum::<f32>() + w[d])
                .collect();
            let scores = glm_scores(&x, d, &w);
            for (a, b) in scores.iter().zip(&plain) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            let batch: Vec<usize> = (0..n).rev().collect();
            let mut g = vec![0.0f32; d + 1];
            glm_gradient(&x, d, &w, &batch, &mut g, |i, s| s - i as f32);
            let mut expect = vec![0.0f32; d + 1];
            for &i in &batch {
                let err = plain[i] - i as f32;
                for j in 0..d {
                    expect[j] += err * x[i * d + j];
                }
                expect[d] += err;
            }
            for (a, b) in g.iter().zip(&expect) {
                assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn dot_and_axpy_match_the_plain_loops() {
        for n in [0, 1, 7, 8, 9, 20, 33] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
            let mut y = b.clone();
            axpy(&mut y, 2.0, &a);
            for i in 0..n {
                assert_eq!(y[i], b[i] + 2.0 * a[i]);
            }
        }
    }

    #[test]
    fn step_matches_the_scalar_update_bit_for_bit() {
        let config = SgdConfig {
            learning_rate: 0.3,
            epochs: 1,
            batch_size: 4,
            l2: 0.01,
        };
        for n in [1, 3, 4, 9, 21] {
            let w: Vec<f32> = (0..n).map(|i| (i as f32 - 4.0) / 7.0).collect();
            let g: Vec<f32> = (0..n).map(|i| (i as f32 * 3.0 - 5.0) / 11.0).collect();
            let penalty: Vec<f32> = (0..n).map(|i| f32::from(u8::from(i % 3 != 2))).collect();
            let mut fast = w.clone();
            step(&mut fast, &g, &penalty, 0.25, &config);
            for i in 0..n {
                let decay = if i % 3 != 2 { config.l2 * w[i] } else { 0.0 };
                let plain = w[i] - (0.25 * g[i] + config.learning_rate * decay);
                assert_eq!(fast[i].to_bits(), plain.to_bits(), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn sgd_fits_a_line_and_is_reproducible() {
        // y = 2x - 1 on x in [-1, 1]
        let xs: Vec<f32> = (0..50).map(|i| i as f32 / 25.0 - 1.0).collect();
        let ys: Vec<f32> = xs.iter().map(|x| 2.0 * x - 1.0).collect();
        let config = SgdConfig {
            learning_rate: 0.5,
            epochs: 200,
            batch_size: 8,
            l2: 0.0,
        };
        let fit = |seed| {
            let mut w = vec![0.0f32; 2];
            run_epochs(
                &mut w,
                xs.len(),
                &config,
                seed,
                |i| i == 0,
                |w, batch, g| {
                    for &i in batch {
                        let err = w[0] * xs[i] + w[1] - ys[i];
                        g[0] += err * xs[i];
                        g[1] += err;
                    }
                },
            );
            w
        };
        let w = fit(7);
        assert!(
            (w[0] - 2.0).abs() < 1e-3 && (w[1] + 1.0).abs() < 1e-3,
            "{w:?}"
        );
        assert_eq!(w, fit(7));
    }
}
