//! The loss curves of a simulation, drawn with plotters as SVG (no fonts to
//! rasterize, so it works on any machine).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, SimError};

/// One round's numbers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// The round (0: the initial model).
    pub round: u32,
    /// The held-out metric of the model after the round.
    pub held_out: f64,
    /// The held-out loss, as the algorithm's `evaluate` names and reports it.
    pub loss: f64,
    /// The batch's mean training loss before local training (the current
    /// model's loss on the sampled wallets), when the round released a batch.
    pub training_loss: Option<f64>,
}

/// Draws the held-out metric per round, the training loss when it is in the
/// same units, and the centralized baseline as a line.
pub fn draw(
    path: &Path,
    title: &str,
    metric: &str,
    points: &[Point],
    centralized: Option<f64>,
    same_units: bool,
) -> Result<()> {
    let fail = |e: String| SimError::Internal(format!("drawing {}: {e}", path.display()));
    let mut values: Vec<f64> = points.iter().map(|p| p.held_out).collect();
    if same_units {
        values.extend(points.iter().filter_map(|p| p.training_loss));
    }
    values.extend(centralized);
    values.retain(|v| v.is_finite());
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let last = points.iter().map(|p| p.round).max().unwrap_or(1).max(1);

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..last, (lo - pad)..(hi + pad))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc(metric)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.round, p.held_out)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| fail(e.to_string()))?
        .label(format!("federated, held-out {metric}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if same_units {
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .filter_map(|p| p.training_loss.map(|l| (p.round, l))),
                GREEN,
            ))
            .map_err(|e| fail(e.to_string()))?
            .label("batch training loss (before local training)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    }
    if let Some(c) = centralized {
        chart
            .draw_series(LineSeries::new(vec![(0, c), (last, c)], RED))
            .map_err(|e| fail(e.to_string()))?
            .label(format!("centralized linfa fit, held-out {metric}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}
