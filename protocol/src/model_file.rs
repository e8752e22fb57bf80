//! A model's weights as a file the ML tools read: safetensors, one F32
//! tensor `weights`, with the model hash in its metadata. The consumer's
//! `collective model export` writes it beside a JSON card; the wallet's
//! `wallet run --model` reads it.

use std::collections::HashMap;

/// The card's format name, which every reader checks.
pub const CARD_FORMAT: &str = "c2ssi-model-card/1";
/// The weights file's name in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The card's name in a model directory.
pub const CARD_FILE: &str = "card.json";
/// The one tensor in the weights file.
pub const WEIGHTS_TENSOR: &str = "weights";

/// What is wrong with a weights file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WeightsError(String);

/// The safetensors bytes of `weights`, with their model hash in the metadata.
pub fn weights_bytes(weights: &[f32]) -> Result<Vec<u8>, WeightsError> {
    let model_hash = crate::model_hash(weights);
    let bytes: Vec<u8> = weights.iter().flat_map(|w| w.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![weights.len()], &bytes)
            .map_err(|e| WeightsError(e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), CARD_FORMAT.to_string()),
        ("model_hash".to_string(), model_hash),
    ]);
    safetensors::serialize([(WEIGHTS_TENSOR, view)], Some(metadata))
        .map_err(|e| WeightsError(e.to_string()))
}

/// Reads the weights from safetensors bytes: the F32 tensor `weights`. When
/// the metadata names a model hash (ours always do), the weights must have it:
/// a damaged or edited file is refused.
pub fn read_weights(bytes: &[u8]) -> Result<Vec<f32>, WeightsError> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| WeightsError(format!("not a safetensors file: {e}")))?;
    let named_hash = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("model_hash").cloned());
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError(format!("not a safetensors file: {e}")))?;
    let tensor = tensors
        .tensor(WEIGHTS_TENSOR)
        .map_err(|e| WeightsError(format!("no tensor '{WEIGHTS_TENSOR}': {e}")))?;
    if tensor.dtype() != safetensors::Dtype::F32 || tensor.shape().len() != 1 {
        return Err(WeightsError(format!(
            "the tensor '{WEIGHTS_TENSOR}' is {:?} of shape {:?}; a model's is F32 of one dimension",
            tensor.dtype(),
            tensor.shape()
        )));
    }
    let weights: Vec<f32> = tensor
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(named) = named_hash
        && crate::model_hash(&weights) != named
    {
        return Err(WeightsError(format!(
            "the weights do not match the model hash their file names ({named}): \
             the file is damaged or was edited"
        )));
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_through_safetensors_bit_for_bit() {
        let weights = [0.5f32, -1.25, f32::MIN_POSITIVE, 3.0e7];
        let bytes = weights_bytes(&weights).expect("serialized");
        let back = read_weights(&bytes).expect("read");
        assert_eq!(
            back.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
            weights.iter().map(|w| w.to_bits()).collect::<Vec<_>>()
        );
        assert!(read_weights(b"not safetensors").is_err());
        // One weight edited in place: refused by the hash in the metadata.
        let mut edited = bytes.clone();
        let last = edited.len() - 1;
        edited[last] ^= 0x01;
        let err = read_weights(&edited).unwrap_err().to_string();
        assert!(err.contains("damaged or was edited"), "{err}");
    }
}
