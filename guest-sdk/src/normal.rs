//! Normal equations for second-order algorithms (feature `linalg`): a
//! symmetric `p x p` matrix packed as its upper triangle, row by row, and
//! solved through linfa-linalg's symmetric eigendecomposition with its
//! eigenvalues floored, so that a matrix made indefinite by noise or
//! singular by too few examples still gives a bounded answer.

use linfa_linalg::cholesky::SolveCInplace;
use linfa_linalg::eigh::Eigh;
use ndarray::{Array1, Array2};

use crate::encode::{FeatureEncoder, select_features};
use crate::glm::Link;
use crate::{ColumnSpec, Error, Params, Result, Table};

/// How many values the upper triangle of a `p x p` matrix takes.
pub fn upper_len(p: usize) -> usize {
    p * (p + 1) / 2
}

/// Adds `weight z z^T` to the packed upper triangle `upper` (of
/// `z.len()` columns).
pub fn add_outer(upper: &mut [f64], z: &[f64], weight: f64) {
    let mut k = 0;
    for (i, &zi) in z.iter().enumerate() {
        let wz = weight * zi;
        for &zj in &z[i..] {
            upper[k] += wz * zj;
            k += 1;
        }
    }
}

/// The `z` of every row: its encoded features then a constant 1, as `f64`,
/// row-major (`d + 1` per row for `d` features).
pub fn with_constant(x: &[f32], d: usize) -> Vec<f64> {
    let mut z = Vec::with_capacity(x.len() / d.max(1) * (d + 1));
    for row in x.chunks_exact(d.max(1)) {
        z.extend(row.iter().map(|&v| f64::from(v)));
        z.push(1.0);
    }
    z
}

/// A table as a second-order algorithm reads it: each row's encoded
/// features and a constant ([`with_constant`]), and the label's link.
#[derive(Debug, Clone)]
pub struct Design<L> {
    /// Row-major, `p` per row, the constant last.
    pub z: Vec<f64>,
    /// Columns per row: the encoded features and the constant.
    pub p: usize,
    /// The label's link (targets, evaluation, predictions).
    pub link: L,
}

impl<L: Link> Design<L> {
    /// `table` (whose columns `schema` declares) under the `label` and
    /// `features` hyper-parameters.
    pub fn new(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Design<L>> {
        let label = params.text("label")?;
        let features = select_features(schema, params.text_list("features")?, Some(label));
        let encoder = FeatureEncoder::new(schema, &features)?;
        let link = L::new(schema, label, params)?;
        let d = encoder.width();
        Ok(Design {
            z: with_constant(&encoder.encode(table)?, d),
            p: d + 1,
            link,
        })
    }

    /// Each row's scores `z . w_k`, row-major: `w` holds one or more
    /// outputs' `p` weights each (the bias last), output by output.
    pub fn scores(&self, w: &[f64]) -> Vec<f32> {
        let p = self.p.max(1);
        let mut out = Vec::with_capacity(self.z.len() / p * (w.len() / p));
        for z in self.z.chunks_exact(p) {
            out.extend(
                w.chunks_exact(p)
                    .map(|wk| z.iter().zip(wk).map(|(a, b)| a * b).sum::<f64>() as f32),
            );
        }
        out
    }
}

/// The symmetric matrix packed in `upper` (`ridge.len()` columns) plus
/// `diag(ridge)`, dense.
fn dense(upper: &[f64], ridge: &[f64]) -> Array2<f64> {
    let p = ridge.len();
    let mut a = Array2::<f64>::zeros((p, p));
    let mut k = 0;
    for i in 0..p {
        for j in i..p {
            a[[i, j]] = upper[k];
            a[[j, i]] = upper[k];
            k += 1;
        }
        a[[i, i]] += ridge[i];
    }
    a
}

/// One wallet's update for a Newton algorithm whose model holds weights
/// then statistics: the weights after the step the model's statistics give
/// (`stepped`, the same for every wallet), then the wallet's own statistics
/// at those weights (`statistics`) times `scale`. The update's metrics are
/// the link's loss before (at the stepped weights) and after (at the step
/// the wallet's own statistics would give), named `LOSS_before` and
/// `LOSS_after`.
pub fn newton_update<L: Link>(
    model: &[f32],
    data: &Design<L>,
    targets: &[f32],
    rows: usize,
    scale: f64,
    stepped: impl Fn(&[f32]) -> Result<Vec<f64>>,
    statistics: impl FnOnce(&[f64]) -> Vec<f64>,
) -> Result<crate::Update> {
    let w = stepped(model)?;
    let before = crate::glm::evaluation(&data.link, &data.scores(&w), targets);
    let mut after: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    after.extend(statistics(&w).iter().map(|&v| (v * scale) as f32));
    let done = crate::glm::evaluation(&data.link, &data.scores(&stepped(&after)?), targets);
    Ok(crate::Update::between(model, &after, rows)
        .metric(&format!("{}_before", L::LOSS), before.loss.value)
        .metric(&format!("{}_after", L::LOSS), done.loss.value))
}

/// Solves `(A + diag(ridge)) x = b` for the symmetric `A` packed in
/// `upper` (`b.len()` columns): eigenvalues below `floor` are raised to
/// it, so the answer is `V diag(1 / max(lambda, floor)) V^T b`.
pub fn solve(upper: &[f64], ridge: &[f64], b: &[f64], floor: f64) -> Result<Vec<f64>> {
    let p = b.len();
    if upper.len() != upper_len(p) || ridge.len() != p {
        return Err(Error::new(format!(
            "normal equations of {p} columns need {} packed values and {p} ridge terms, not \
             {} and {}",
            upper_len(p),
            upper.len(),
            ridge.len()
        )));
    }
    let (values, vectors) = dense(upper, ridge)
        .eigh()
        .map_err(|e| Error::new(format!("the normal equations do not decompose: {e}")))?;
    let floor = floor.max(f64::MIN_POSITIVE);
    // The eigenvectors are the columns of `vectors`.
    let projected: Array1<f64> = vectors
        .t()
        .dot(&Array1::from(b.to_vec()))
        .iter()
        .zip(values.iter())
        .map(|(&c, &l)| c / l.max(floor))
        .collect();
    Ok(vectors.dot(&projected).to_vec())
}

/// The penalized Newton step from `w` (`p` weights, the bias last): `w -
/// rate (H + l2 I)^-1 (g + l2 I' w)`, where `H` is packed in `upper`, `g`
/// is the gradient and `I'` leaves the bias unpenalized.
///
/// The penalty is in the gradient as the objective has it; the matrix
/// adds `l2` to the bias too, which changes only how fast the steps go,
/// not where they stop (a zero of the penalized gradient). It makes the
/// matrix at least `l2 I` whenever `H` is positive semi-definite, so a
/// Cholesky factorization solves it, about ten times cheaper than the
/// eigendecomposition; a matrix made indefinite (by noise) falls back to
/// [`solve`], whose floor at `l2` bounds the step. A zero `H` (no
/// statistics yet) leaves `w` as it is.
pub fn newton_step(w: &[f64], upper: &[f64], g: &[f64], l2: f64, rate: f64) -> Result<Vec<f64>> {
    let p = w.len();
    if upper.len() != upper_len(p) || g.len() != p {
        return Err(Error::new(format!(
            "a Newton step over {p} weights needs {} packed values and {p} gradient terms, not \
             {} and {}",
            upper_len(p),
            upper.len(),
            g.len()
        )));
    }
    if upper.iter().all(|&v| v == 0.0) {
        return Ok(w.to_vec());
    }
    let gradient: Vec<f64> = g
        .iter()
        .zip(w)
        .enumerate()
        .map(|(i, (gi, wi))| if i + 1 < p { gi + l2 * wi } else { *gi })
        .collect();
    let ridge = vec![l2; p];
    let b = Array2::from_shape_vec((p, 1), gradient.clone())
        .map_err(|e| Error::new(format!("the gradient does not shape: {e}")))?;
    let step = match dense(upper, &ridge).solvec_into(b) {
        Ok(x) if x.iter().all(|v| v.is_finite()) => x.into_iter().collect(),
        _ => solve(upper, &ridge, &gradient, l2)?,
    };
    Ok(w.iter().zip(&step).map(|(wi, si)| wi - rate * si).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_posed_system_is_solved_and_a_singular_one_is_bounded() {
        // A = [[4, 1], [1, 3]], b = [1, 2]: x = [1/11, 7/11].
        let x = solve(&[4.0, 1.0, 3.0], &[0.0, 0.0], &[1.0, 2.0], 1e-12).unwrap();
        assert!((x[0] - 1.0 / 11.0).abs() < 1e-12 && (x[1] - 7.0 / 11.0).abs() < 1e-12);
        // A = z z^T for z = [1, 1] is singular; the floor bounds the answer.
        let mut upper = vec![0.0; upper_len(2)];
        add_outer(&mut upper, &[1.0, 1.0], 1.0);
        assert_eq!(upper, vec![1.0, 1.0, 1.0]);
        let x = solve(&upper, &[0.0, 0.0], &[1.0, 1.0], 1e-3).unwrap();
        assert!(x.iter().all(|v| v.is_finite() && v.abs() < 1.0), "{x:?}");
        assert!(solve(&upper, &[0.0], &[1.0, 1.0], 1e-3).is_err());
    }

    #[test]
    fn a_newton_step_solves_the_penalized_system_and_bounds_an_indefinite_one() {
        // H = [[2, 1], [1, 2]], l2 = 0.5 in the matrix, the bias (last)
        // unpenalized in the gradient: (H + l2 I) x = g + l2 I' w.
        let (w, h, g) = ([1.0, -1.0], [2.0, 1.0, 2.0], [0.5, 0.25]);
        let stepped = newton_step(&w, &h, &g, 0.5, 1.0).unwrap();
        let expected = solve(&h, &[0.5, 0.5], &[0.5 + 0.5, 0.25], 0.5).unwrap();
        for ((s, wi), e) in stepped.iter().zip(w).zip(&expected) {
            assert!((s - (wi - e)).abs() < 1e-12, "{stepped:?} vs {expected:?}");
        }
        // Half the rate, half the step.
        let half = newton_step(&w, &h, &g, 0.5, 0.5).unwrap();
        assert!((half[0] - (w[0] - expected[0] / 2.0)).abs() < 1e-12);
        // An indefinite H (eigenvalues 3 and -1, beyond l2): the factorization
        // refuses it and the floor bounds the step by |g| / l2.
        let stepped = newton_step(&[0.0, 0.0], &[1.0, 2.0, 1.0], &[1.0, 1.0], 0.5, 1.0).unwrap();
        assert!(
            stepped
                .iter()
                .all(|v| v.is_finite() && v.abs() <= 2.0 * 2f64.sqrt())
        );
        // No statistics yet: no step; wrong lengths: an error.
        assert_eq!(
            newton_step(&w, &[0.0; 3], &g, 0.5, 1.0).unwrap(),
            w.to_vec()
        );
        assert!(newton_step(&w, &[1.0; 2], &g, 0.5, 1.0).is_err());
    }

    #[test]
    fn rows_get_their_constant() {
        assert_eq!(
            with_constant(&[1.0, 2.0, 3.0, 4.0], 2),
            vec![1.0, 2.0, 1.0, 3.0, 4.0, 1.0]
        );
    }
}
