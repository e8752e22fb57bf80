//! Multi-Krum (Blanchard et al. 2017): the updates closest to their
//! neighbours, averaged.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder, ShapeError};
use rayon::prelude::*;

use super::{Aggregate, AggregationError, check, mean_of, parallel};

/// Multi-Krum: the `selected` updates with the smallest scores, where an
/// update's score is the sum of squared distances to its `n - byzantine - 2`
/// nearest others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiKrum {
    byzantine: Option<u32>,
    selected: Option<u32>,
}

impl MultiKrum {
    /// Multi-Krum assuming `byzantine` attackers (`None`: 30% of the batch),
    /// averaging `selected` updates (`None`: `n - byzantine`). Selecting no
    /// update is refused. At aggregation the assumed attackers are capped so
    /// that the batch holds `2 * byzantine + 3` updates when it can, and the
    /// selection is capped at the batch.
    pub fn new(
        byzantine: Option<u32>,
        selected: Option<u32>,
    ) -> Result<MultiKrum, AggregationError> {
        if selected == Some(0) {
            return Err(AggregationError::Invalid(
                "Multi-Krum must select at least one update".into(),
            ));
        }
        Ok(MultiKrum {
            byzantine,
            selected,
        })
    }

    /// How far Multi-Krum of `n` updates of norm at most `norm` moves when
    /// one update moves by `change`: one update can change every score and
    /// so the whole selection, and the mean of any selection lies within
    /// `norm` of zero, so the bound is the diameter `2 norm`, unless every
    /// update is selected (then it is the mean's).
    pub fn sensitivity(&self, n: usize, norm: f64, change: f64) -> f64 {
        let (_, m) = self.sizes(n);
        if m >= n {
            change / n.max(1) as f64
        } else {
            2.0 * norm
        }
    }

    /// The attackers assumed and the updates selected, in a batch of `n`.
    fn sizes(&self, n: usize) -> (usize, usize) {
        let f = self.byzantine.map(|b| b as usize).unwrap_or((n * 3) / 10);
        let f = f.min(n.saturating_sub(3) / 2);
        (f, self.selected.map(|s| s as usize).unwrap_or(n - f))
    }

    /// Multi-Krum of the batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let (f, m) = self.sizes(n);
        let chosen = select(updates, f, m)?;
        let picked: Vec<&[f32]> = chosen.iter().map(|&i| updates[i].as_slice()).collect();
        Ok(Aggregate {
            update: mean_of(&picked, d),
            report: format!("Multi-Krum (f = {f}) kept {} of {n}", chosen.len()),
            contributors: chosen.len(),
        })
    }
}

/// Indexes of the `selected` updates with the smallest Krum scores, in the
/// order of their scores.
pub(super) fn select(
    updates: &[Vec<f32>],
    byzantine: usize,
    selected: usize,
) -> Result<Vec<usize>, AggregationError> {
    let n = updates.len();
    let d = check(updates)?;
    if n < 2 * byzantine + 3 {
        return Err(AggregationError::Invalid(format!(
            "Multi-Krum with {byzantine} Byzantine updates needs at least {} updates, got {n}",
            2 * byzantine + 3
        )));
    }
    let neighbours = n - byzantine - 2;
    let distances = squared_distances(updates, d)?;
    let mut scores = scores(&distances, n, neighbours);
    // Ties broken by content, not by position, so the choice does not depend
    // on the order updates arrived in.
    scores.sort_unstable_by(|a, b| {
        a.0.total_cmp(&b.0).then_with(|| {
            updates[a.1]
                .iter()
                .zip(&updates[b.1])
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    Ok(scores
        .into_iter()
        .take(selected.clamp(1, n))
        .map(|(_, i)| i)
        .collect())
}

/// Each update's score and index: the sum, in ascending order, of its
/// `neighbours` smallest squared distances to the others (`distances` is
/// the `n` by `n` matrix, row-major). The nearest are selected, then only
/// they are sorted.
pub(super) fn scores(distances: &[f64], n: usize, neighbours: usize) -> Vec<(f64, usize)> {
    let score = |i: usize| {
        let mut row: Vec<f64> = distances[i * n..(i + 1) * n]
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &x)| x)
            .collect();
        row.select_nth_unstable_by(neighbours - 1, f64::total_cmp);
        let nearest = &mut row[..neighbours];
        nearest.sort_unstable_by(f64::total_cmp);
        (nearest.iter().sum::<f64>(), i)
    };
    if parallel(n, n) {
        (0..n).into_par_iter().map(score).collect()
    } else {
        (0..n).map(score).collect()
    }
}

/// Coordinates per block of the Gram matrix: the block of all `n` updates
/// in `f64` is about 2 MiB.
fn gram_block(n: usize) -> usize {
    (262_144 / n.max(1)).max(16)
}

/// Rows of the Gram matrix per task.
fn gram_band(n: usize) -> usize {
    n.div_ceil(16).next_multiple_of(8).clamp(16, 128)
}

/// The `n` by `n` matrix (row-major) of squared Euclidean distances,
/// `|a|^2 + |b|^2 - 2 a.b` from the Gram matrix of the batch, negatives
/// (rounding) clamped to 0. The Gram matrix is accumulated in `f64` block of
/// coordinates by block, each block converted to `f64` and multiplied by
/// its transpose (`matrixmultiply`'s `dgemm` through `ndarray`); each task
/// computes a fixed band of rows of the upper triangle, so the result does
/// not depend on the number of threads, and the matrix is exactly
/// symmetric.
pub(super) fn squared_distances(
    updates: &[Vec<f32>],
    d: usize,
) -> Result<Vec<f64>, AggregationError> {
    let n = updates.len();
    let width = gram_block(n).min(d.max(1));
    let band = gram_band(n);
    let go_parallel = n > band && parallel(n * n, d);
    let shape = |e: ShapeError| AggregationError::Invalid(format!("Gram matrix: {e}"));
    let mut gram = vec![0.0f64; n * n];
    let mut block = vec![0.0f64; n * width];
    for start in (0..d).step_by(width) {
        let w = width.min(d - start);
        let block = &mut block[..n * w];
        let convert = |(row, u): (&mut [f64], &Vec<f32>)| {
            for (b, &x) in row.iter_mut().zip(&u[start..start + w]) {
                *b = f64::from(x);
            }
        };
        if go_parallel {
            block.par_chunks_mut(w).zip(updates).for_each(convert);
        } else {
            block.chunks_mut(w).zip(updates).for_each(convert);
        }
        let block = &*block;
        let multiply = |(b, rows): (usize, &mut [f64])| -> Result<(), ShapeError> {
            // This band's rows against those from its first row on: its part
            // of the upper triangle.
            let first = b * band;
            let count = rows.len() / n;
            let a = ArrayView2::from_shape((count, w), &block[first * w..(first + count) * w])?;
            let others = ArrayView2::from_shape((n - first, w), &block[first * w..])?;
            let mut upper =
                ArrayViewMut2::from_shape((count, n - first).strides((n, 1)), &mut rows[first..])?;
            general_mat_mul(1.0, &a, &others.t(), 1.0, &mut upper);
            Ok(())
        };
        if go_parallel {
            gram.par_chunks_mut(band * n)
                .enumerate()
                .try_for_each(multiply)
                .map_err(shape)?;
        } else {
            gram.chunks_mut(band * n)
                .enumerate()
                .try_for_each(multiply)
                .map_err(shape)?;
        }
    }
    // The distances replace the Gram matrix in place: its upper triangle
    // becomes theirs, mirrored below, the diagonal 0.
    let norms: Vec<f64> = (0..n).map(|i| gram[i * n + i]).collect();
    for i in 0..n {
        gram[i * n + i] = 0.0;
        for j in i + 1..n {
            let squared = (norms[i] + norms[j] - 2.0 * gram[i * n + j]).max(0.0);
            gram[i * n + j] = squared;
            gram[j * n + i] = squared;
        }
    }
    Ok(gram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn krum_drops_the_far_away_updates() {
        let mut updates: Vec<Vec<f32>> = (0..7).map(|i| vec![i as f32 * 0.1, 1.0]).collect();
        updates.push(vec![100.0, 100.0]);
        updates.push(vec![-100.0, 50.0]);
        let chosen = select(&updates, 2, 7).unwrap();
        assert!(!chosen.contains(&7) && !chosen.contains(&8), "{chosen:?}");
        assert!(select(&updates[..4], 2, 1).is_err());
    }

    #[test]
    fn selecting_no_update_is_refused_when_built() {
        assert!(MultiKrum::new(Some(1), Some(0)).is_err());
        assert!(
            super::super::Rule::new(&c2ssi_protocol::AggregationRule::MultiKrum {
                byzantine: None,
                selected: Some(0),
            })
            .is_err()
        );
        assert!(MultiKrum::new(None, Some(1)).is_ok());
    }
}
