//! The rules as they were written before they were made fast: straight loops,
//! a full sort per coordinate, pairwise distances; the tests compare the
//! fast rules against them.

use super::trimmed_mean::trimmed_count;
use super::{check, clip, norm, squared_distance};

/// The plain mean, coordinate by coordinate, updates in order.
pub(super) fn mean_of(updates: &[Vec<f32>], d: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; d];
    for u in updates {
        for (a, &x) in acc.iter_mut().zip(u) {
            *a += f64::from(x);
        }
    }
    let n = updates.len() as f64;
    acc.into_iter().map(|a| (a / n) as f32).collect()
}

/// Each update clipped (a copy), then the mean; and how many were clipped.
pub(super) fn clipped_mean(updates: &[Vec<f32>], clip_norm: f64) -> (Vec<f32>, usize) {
    let d = updates[0].len();
    let clipped: Vec<Vec<f32>> = updates.iter().map(|u| clip(u, clip_norm)).collect();
    let count = updates.iter().filter(|u| norm(u) > clip_norm).count();
    (mean_of(&clipped, d), count)
}

/// `combine` applied to each coordinate's sorted values.
fn coordinate_wise(updates: &[Vec<f32>], combine: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    let d = updates[0].len();
    let mut column = vec![0.0f32; updates.len()];
    (0..d)
        .map(|j| {
            for (c, u) in column.iter_mut().zip(updates) {
                *c = u[j];
            }
            column.sort_unstable_by(f32::total_cmp);
            combine(&column)
        })
        .collect()
}

/// The coordinate-wise median.
pub(super) fn median(updates: &[Vec<f32>]) -> Vec<f32> {
    coordinate_wise(updates, |sorted| {
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            ((f64::from(sorted[n / 2 - 1]) + f64::from(sorted[n / 2])) / 2.0) as f32
        }
    })
}

/// The coordinate-wise trimmed mean, the kept values summed in sorted order.
pub(super) fn trimmed_mean(updates: &[Vec<f32>], trim: f64) -> Vec<f32> {
    let k = trimmed_count(updates.len(), trim);
    coordinate_wise(updates, |sorted| {
        let kept = &sorted[k..sorted.len() - k];
        (kept.iter().map(|&x| f64::from(x)).sum::<f64>() / kept.len() as f64) as f32
    })
}

/// Krum scores from pairwise distances (each summed in order), with the
/// indexes, in index order.
pub(super) fn krum_scores(updates: &[Vec<f32>], byzantine: usize) -> Vec<(f64, usize)> {
    let n = updates.len();
    let neighbours = n - byzantine - 2;
    let mut distances = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = squared_distance(&updates[i], &updates[j]);
            distances[i][j] = d;
            distances[j][i] = d;
        }
    }
    (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| distances[i][j])
                .collect();
            row.sort_unstable_by(f64::total_cmp);
            (row[..neighbours].iter().sum(), i)
        })
        .collect()
}

/// The indexes Multi-Krum selects, in the order of their scores (ties by
/// content).
pub(super) fn krum_select(updates: &[Vec<f32>], byzantine: usize, selected: usize) -> Vec<usize> {
    let mut scores = krum_scores(updates, byzantine);
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
    scores
        .into_iter()
        .take(selected.clamp(1, updates.len()))
        .map(|(_, i)| i)
        .collect()
}

/// Centered clipping from the median, one update at a time; and how many
/// updates lie outside the radius at the start.
pub(super) fn centered_clipping(
    updates: &[Vec<f32>],
    radius: f64,
    iterations: u32,
) -> (Vec<f32>, usize) {
    let center = median(updates);
    let outside = updates
        .iter()
        .filter(|u| squared_distance(u, &center).sqrt() > radius)
        .count();
    let d = check(updates).expect("a batch");
    let mut v: Vec<f64> = center.iter().map(|&x| f64::from(x)).collect();
    let n = updates.len() as f64;
    let mut offset = vec![0.0f64; d];
    for _ in 0..iterations.max(1) {
        let mut step = vec![0.0f64; d];
        for u in updates {
            for ((o, &x), &c) in offset.iter_mut().zip(u).zip(&v) {
                *o = f64::from(x) - c;
            }
            let len = offset.iter().map(|o| o * o).sum::<f64>().sqrt();
            let scale = if len > radius { radius / len } else { 1.0 };
            for (s, o) in step.iter_mut().zip(&offset) {
                *s += o * scale / n;
            }
        }
        for (c, s) in v.iter_mut().zip(&step) {
            *c += s;
        }
    }
    (v.into_iter().map(|x| x as f32).collect(), outside)
}
