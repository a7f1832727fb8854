//! The flow model's stages, beside V's and M's in the same run folder:
//!
//! ```text
//! runs/take-cover/
//!   flow-model.bin       the flow model, f32: train-autoencoder writes the autoencoder,
//!                        encode-latents its latent statistics, train-flow the dynamics and heads,
//!                        train-decoder a sharper decoder (any time after train-autoencoder)
//!   flow/autoencoder/    checkpoint, optimizer state, loss.csv, loss.png, reconstructions.png
//!   flow/decoder/        train-decoder's fine-tune of the decoder alone: the same files
//!   flow/latents/        encode-latents' latents, one .npz per rollout
//!   flow/dynamics/       checkpoint, optimizer state, loss.csv, loss.png, samples.png
//! ```
//!
//! `export-flow` ([`export`]) then writes the flow model in f16 to `models/<env>/`, beside the
//! bundle, with its pictures, both families measured open-loop, and its section of the model card.

pub mod autoencoder;
pub mod decoder;
pub mod dynamics;
pub mod export;
pub mod latents;

use std::path::{Path, PathBuf};

/// The run's flow model.
pub fn flow_model_path(run: &Path) -> PathBuf {
    run.join(crate::model::flow::file::FILE_NAME)
}

/// The autoencoder stage's folder.
pub fn autoencoder_dir(run: &Path) -> PathBuf {
    run.join("flow").join("autoencoder")
}
