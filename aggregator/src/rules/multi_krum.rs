//! Multi-Krum (Blanchard et al. 2017): the updates closest to their
//! neighbours, averaged.

use super::{Aggregate, AggregationError, check, mean_of, squared_distance};

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
    /// averaging `selected` updates (`None`: `n - byzantine`).
    pub fn new(byzantine: Option<u32>, selected: Option<u32>) -> MultiKrum {
        MultiKrum {
            byzantine,
            selected,
        }
    }

    /// Multi-Krum of the batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let f = self.byzantine.map(|b| b as usize).unwrap_or((n * 3) / 10);
        let f = f.min(n.saturating_sub(3) / 2);
        let m = self.selected.map(|s| s as usize).unwrap_or(n - f);
        let chosen = select(updates, f, m)?;
        let picked: Vec<Vec<f32>> = chosen.iter().map(|&i| updates[i].clone()).collect();
        Ok(Aggregate {
            update: mean_of(&picked, d),
            report: format!("Multi-Krum (f = {f}) kept {} of {n}", chosen.len()),
            contributors: chosen.len(),
        })
    }
}

/// Indexes of the `selected` updates with the smallest Krum scores.
pub(super) fn select(
    updates: &[Vec<f32>],
    byzantine: usize,
    selected: usize,
) -> Result<Vec<usize>, AggregationError> {
    let n = updates.len();
    check(updates)?;
    if n < 2 * byzantine + 3 {
        return Err(AggregationError::Invalid(format!(
            "Multi-Krum with {byzantine} Byzantine updates needs at least {} updates, got {n}",
            2 * byzantine + 3
        )));
    }
    let neighbours = n - byzantine - 2;
    let mut distances = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = squared_distance(&updates[i], &updates[j]);
            distances[i][j] = d;
            distances[j][i] = d;
        }
    }
    let mut scores: Vec<(f64, usize)> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| distances[i][j])
                .collect();
            row.sort_unstable_by(f64::total_cmp);
            (row[..neighbours].iter().sum(), i)
        })
        .collect();
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
}
