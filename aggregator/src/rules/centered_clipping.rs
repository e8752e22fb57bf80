//! Centered clipping (Karimireddy, He and Jaggi 2021): from a reference
//! point, each update's offset clipped to a radius, averaged, iterated.
//!
//! It starts from the batch's coordinate-wise median. Starting from the last
//! round's aggregate, as the paper does with worker momentum, turns raw
//! per-round deltas (which shrink as training converges) into an integrator
//! that a 30% sign-flip drives to divergence (measured: MSE 10^7 on diabetes).

use super::median::median_of_keys;
use super::{
    Aggregate, AggregationError, check, checked_radius, column_block, combine_block,
    for_block_pairs, parallel, squared_distance_to,
};

/// Centered clipping with a radius and a number of iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenteredClipping {
    radius: f64,
    iterations: u32,
}

impl CenteredClipping {
    /// Centered clipping; the radius must be positive.
    pub fn new(radius: f64, iterations: u32) -> Result<CenteredClipping, AggregationError> {
        Ok(CenteredClipping {
            radius: checked_radius(radius)?,
            iterations,
        })
    }

    /// How far centered clipping of `n` moves when one update moves by
    /// `change`. The median it starts from moves by at most `change` (see
    /// [`super::Median::sensitivity`]); each iteration, `v` plus the mean
    /// of the offsets `x_i - v` clipped, is 1-Lipschitz in `v` (`u -
    /// clip(u)` is a proximal map, so non-expansive) and moves by at most
    /// `min(change, 2 radius) / n` with the one update.
    pub fn sensitivity(&self, n: usize, change: f64) -> f64 {
        let steps = f64::from(self.iterations.max(1));
        change + steps * change.min(2.0 * self.radius) / n.max(1) as f64
    }

    /// Centered clipping of the batch, from its median.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let (update, outside) = clip_around_median(updates, d, self.radius, self.iterations);
        Ok(Aggregate {
            update,
            report: format!(
                "centered clipping of {n}, radius {}, {} iterations; {outside} outside the \
                 radius at the start",
                self.radius, self.iterations
            ),
            contributors: n,
        })
    }
}

/// Starting at the coordinate-wise median `v`, `iterations` times (at least
/// once) move to `v + mean_i clip(x_i - v, radius)`; also how many updates
/// lie farther than `radius` from the median.
///
/// Each pass over the batch handles one block of coordinates at a time, in
/// parallel: the first computes the block's median and each update's
/// squared distance to it within the block; each iteration then adds the
/// block's step to `v` and, while the block is still in cache, computes the
/// distances within it for the next iteration. A distance is the sum of its
/// blocks' parts in order, so the result does not depend on the number of
/// threads.
fn clip_around_median(
    updates: &[Vec<f32>],
    d: usize,
    radius: f64,
    iterations: u32,
) -> (Vec<f32>, usize) {
    let n = updates.len();
    let block = column_block(n);
    let go_parallel = parallel(n, d);
    let mut v = vec![0.0f64; d];
    // Each block's part of each update's squared distance to `v`.
    let mut parts = vec![0.0f64; d.div_ceil(block) * n];
    for_block_pairs(
        &mut v,
        block,
        &mut parts,
        n,
        go_parallel,
        || (vec![0i32; n * block], vec![0.0f32; block]),
        |(columns, center), start, v, parts| {
            let center = &mut center[..v.len()];
            combine_block(updates, start, columns, center, &median_of_keys);
            for (c, &m) in v.iter_mut().zip(center.iter()) {
                *c = f64::from(m);
            }
            for (p, u) in parts.iter_mut().zip(updates) {
                *p = squared_distance_to(&u[start..start + v.len()], v);
            }
        },
    );
    let mut distances = totals(&parts, n);
    let outside = distances.iter().filter(|&&s| s.sqrt() > radius).count();
    let rounds = iterations.max(1);
    for round in 0..rounds {
        let last = round + 1 == rounds;
        // Each update's weight in the step: its clipping scale over n.
        let weights: Vec<f64> = distances
            .iter()
            .map(|&s| {
                let length = s.sqrt();
                let scale = if length > radius {
                    radius / length
                } else {
                    1.0
                };
                scale / n as f64
            })
            .collect();
        for_block_pairs(
            &mut v,
            block,
            &mut parts,
            n,
            go_parallel,
            || vec![0.0f64; block],
            |step, start, v, parts| {
                let w = v.len();
                let step = &mut step[..w];
                step.fill(0.0);
                add_offsets(step, updates, &weights, start, v);
                for (c, s) in v.iter_mut().zip(step.iter()) {
                    *c += s;
                }
                if !last {
                    for (p, u) in parts.iter_mut().zip(updates) {
                        *p = squared_distance_to(&u[start..start + w], v);
                    }
                }
            },
        );
        if !last {
            distances = totals(&parts, n);
        }
    }
    (v.into_iter().map(|x| x as f32).collect(), outside)
}

/// Adds `weights[i] * (x_i - v)` to `step` for each update `x_i` (its values
/// from `start` on), the updates in order, four at a time (fewer loads and
/// stores of `step`, the same sums).
pub(super) fn add_offsets(
    step: &mut [f64],
    updates: &[Vec<f32>],
    weights: &[f64],
    start: usize,
    v: &[f64],
) {
    let end = start + step.len();
    let mut quads = updates.chunks_exact(4);
    let mut quad_weights = weights.chunks_exact(4);
    for (q, w) in (&mut quads).zip(&mut quad_weights) {
        let (a, b) = (&q[0][start..end], &q[1][start..end]);
        let (c, e) = (&q[2][start..end], &q[3][start..end]);
        for (((((s, &center), &x0), &x1), &x2), &x3) in
            step.iter_mut().zip(v).zip(a).zip(b).zip(c).zip(e)
        {
            let mut t = *s;
            t += (f64::from(x0) - center) * w[0];
            t += (f64::from(x1) - center) * w[1];
            t += (f64::from(x2) - center) * w[2];
            t += (f64::from(x3) - center) * w[3];
            *s = t;
        }
    }
    for (u, &weight) in quads.remainder().iter().zip(quad_weights.remainder()) {
        for ((s, &x), &center) in step.iter_mut().zip(&u[start..end]).zip(v) {
            *s += (f64::from(x) - center) * weight;
        }
    }
}

/// Each update's total over the blocks' parts (`parts` holds `n` per
/// block), summed block after block.
pub(super) fn totals(parts: &[f64], n: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; n];
    for row in parts.chunks_exact(n) {
        for (t, p) in total.iter_mut().zip(row) {
            *t += p;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::squared_distance;
    use super::*;

    #[test]
    fn an_outlier_moves_it_at_most_the_radius_per_iteration() {
        let mut updates = vec![vec![1.0f32, 1.0]; 5];
        updates.push(vec![1000.0, 1000.0]);
        let r = CenteredClipping::new(0.5, 3).unwrap();
        let a = r.aggregate(&updates).unwrap();
        let moved = squared_distance(&a.update, &[1.0, 1.0]).sqrt();
        assert!(moved <= 3.0 * 0.5 / 6.0 + 1e-6, "{moved}");
    }
}
