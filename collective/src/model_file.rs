//! A model you can use outside compute-to-ssi: the weights in safetensors
//! (`model.safetensors`, one F32 tensor `weights`) beside a JSON card
//! (`card.json`) that says what they mean: the algorithm and its hash, the
//! hyper-parameters and the label, how each feature column is encoded (from
//! the manifest's declared types and ranges), the metrics of the round that
//! made it, and its provenance.

use std::path::{Path, PathBuf};

use anyhow::Context;
use c2ssi_guest_sdk::encode::feature_count;
use c2ssi_guest_sdk::{ColumnSpec, ColumnType, ParamValue};
use c2ssi_protocol::{JobStatus, Manifest, ModelVersion};
use serde::{Deserialize, Serialize};

pub use c2ssi_protocol::model_file::{
    CARD_FILE, CARD_FORMAT, WEIGHTS_FILE, read_weights, weights_bytes,
};

/// How one feature column becomes numbers (the guest SDK's encoding, which
/// depends only on the declared schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureColumn {
    /// The column.
    pub column: String,
    /// Its declared type, as the manifest states it.
    pub declared: ColumnSpec,
    /// How it is encoded, in words a reader can implement.
    pub encoding: String,
    /// Where its numbers sit in an encoded row: `[start, end)`.
    pub positions: [usize; 2],
}

/// The card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// [`CARD_FORMAT`].
    pub format: String,
    /// The model version's hash (SHA-256 of its parameters).
    pub model_hash: String,
    /// The number of weights in the weights file.
    pub parameters: usize,
    /// The algorithm: `name`, `version`, `sha256` of its component.
    pub algorithm: serde_json::Value,
    /// The job's hyper-parameters, as given.
    pub hyper_parameters: serde_json::Map<String, serde_json::Value>,
    /// The table it was trained on.
    pub table: String,
    /// The label column and its declared type (and scale), if there is one.
    pub label: Option<ColumnSpec>,
    /// The feature columns in encoded order.
    pub features: Vec<FeatureColumn>,
    /// Width of an encoded row (the sum of the columns' widths).
    pub encoded_width: usize,
    /// What the weights are, given the encoding.
    pub layout: String,
    /// The released metrics of the round that made this version (noised batch means).
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Who made it, when, from what: collective, manifest, job, round, parent, rule, noise.
    pub provenance: serde_json::Value,
}

fn encoding_of(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Boolean => "0 for false, 1 for true".into(),
        ColumnType::Category { levels } => {
            format!(
                "one-hot over the declared levels, in order: {}",
                levels.join(", ")
            )
        }
        other => match other.numeric_range() {
            Some((lo, hi)) => format!(
                "scaled to [-1, 1]: (x - {}) / {}",
                (lo + hi) / 2.0,
                (hi - lo) / 2.0
            ),
            None => "as it is (no declared range)".into(),
        },
    }
}

fn param_json(value: &ParamValue) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The card for `version`, made by `job` under `manifest`.
pub fn card(
    collective: &str,
    version: &ModelVersion,
    job: &JobStatus,
    manifest: &Manifest,
) -> anyhow::Result<ModelCard> {
    let p = &version.provenance;
    let allowed = manifest
        .allowed_algorithms
        .iter()
        .find(|a| a.sha256 == p.algorithm_sha256);
    let schema: Vec<ColumnSpec> = manifest
        .requirements
        .table(&job.spec.table)
        .map(|t| t.columns.clone())
        .with_context(|| format!("the manifest requires no table '{}'", job.spec.table))?;
    let text = |name: &str| {
        job.spec
            .params
            .iter()
            .find(|q| q.name == name)
            .and_then(|q| match &q.value {
                ParamValue::Text(t) => Some(t.clone()),
                _ => None,
            })
    };
    let label = text("label");
    let requested: Vec<String> = job
        .spec
        .params
        .iter()
        .find(|q| q.name == "features")
        .and_then(|q| match &q.value {
            ParamValue::TextList(v) => Some(v.clone()),
            ParamValue::Text(t) => Some(t.split(',').map(str::to_string).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let names = c2ssi_guest_sdk::encode::select_features(&schema, &requested, label.as_deref());
    let mut features = Vec::with_capacity(names.len());
    let mut start = 0;
    for name in &names {
        let declared = schema
            .iter()
            .find(|c| &c.name == name)
            .with_context(|| format!("the feature '{name}' is not a column of the table"))?
            .clone();
        let width = feature_count(&schema, std::slice::from_ref(name))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        features.push(FeatureColumn {
            column: name.clone(),
            encoding: encoding_of(&declared.ty),
            declared,
            positions: [start, start + width],
        });
        start += width;
    }
    let label = label.and_then(|l| schema.iter().find(|c| c.name == l).cloned());
    let layout = format!(
        "{} weights for encoded rows of width {start}; for the linear models \
         (linear-regression, logistic-regression) one weight per encoded position, then the \
         bias; for softmax-regression one such block per class; predictions of a regression \
         label are in scaled units: undo with the label's declared range",
        version.params.len()
    );
    Ok(ModelCard {
        format: CARD_FORMAT.into(),
        model_hash: version.hash.clone(),
        parameters: version.params.len(),
        algorithm: serde_json::json!({
            "name": allowed.map(|a| a.name.clone()),
            "version": allowed.map(|a| a.version.clone()),
            "sha256": p.algorithm_sha256,
        }),
        hyper_parameters: job
            .spec
            .params
            .iter()
            .map(|q| (q.name.clone(), param_json(&q.value)))
            .collect(),
        table: job.spec.table.clone(),
        label,
        features,
        encoded_width: start,
        layout,
        metrics: p
            .metrics
            .iter()
            .map(|m| (m.name.clone(), serde_json::json!(m.value)))
            .collect(),
        provenance: serde_json::json!({
            "collective": collective,
            "manifest_version": manifest.version,
            "manifest_digest": p.manifest_digest,
            "job": p.job_id,
            "round": p.round,
            "parent": p.parent,
            "updates": p.updates,
            "rule": p.rule,
            "noise": p.noise,
            "server_lr": p.server_lr,
            "momentum": p.momentum,
            "created": c2ssi_cli::date(version.created_ms),
        }),
    })
}

/// Writes `model.safetensors` and `card.json` into `dir` (created; files
/// written whole, then renamed into place). Returns the two paths.
pub fn write(dir: &Path, card: &ModelCard, weights: &[f32]) -> anyhow::Result<[PathBuf; 2]> {
    // Another model's files are never overwritten, nor half replaced.
    for name in [WEIGHTS_FILE, CARD_FILE] {
        let path = dir.join(name);
        if path.exists() {
            anyhow::bail!(
                "{} exists; give a new or empty directory (--out)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, bytes: &[u8]| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        let partial = dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, bytes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let weights = put(WEIGHTS_FILE, &weights_bytes(weights)?)?;
    let card = put(CARD_FILE, serde_json::to_string_pretty(card)?.as_bytes())?;
    Ok([weights, card])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_never_overwrites_another_model() {
        let card = ModelCard {
            format: CARD_FORMAT.into(),
            model_hash: c2ssi_protocol::model_hash(&[1.0, 2.0]),
            parameters: 2,
            algorithm: serde_json::json!({}),
            hyper_parameters: serde_json::Map::new(),
            table: "t".into(),
            label: None,
            features: Vec::new(),
            encoded_width: 1,
            layout: String::new(),
            metrics: serde_json::Map::new(),
            provenance: serde_json::json!({}),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("model");
        let [weights, card_path] = write(&out, &card, &[1.0, 2.0]).expect("written");
        assert_eq!(
            read_weights(&std::fs::read(&weights).expect("read")).expect("weights"),
            vec![1.0, 2.0]
        );
        let before = std::fs::read(&card_path).expect("card");
        let err = write(&out, &card, &[3.0, 4.0]).unwrap_err().to_string();
        assert!(err.contains("model.safetensors exists"), "{err}");
        assert_eq!(std::fs::read(&card_path).expect("card"), before);
        assert_eq!(
            read_weights(&std::fs::read(&weights).expect("read")).expect("weights"),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn encodings_are_described_from_the_declared_type() {
        assert_eq!(
            encoding_of(&ColumnType::Integer {
                min: Some(0),
                max: Some(400)
            }),
            "scaled to [-1, 1]: (x - 200) / 200"
        );
        assert!(
            encoding_of(&ColumnType::Category {
                levels: vec!["f".into(), "m".into()]
            })
            .contains("f, m")
        );
    }
}
