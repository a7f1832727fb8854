//! The pipeline: collect rollouts, fit V and M, evolve C, evaluate.
//!
//! Every stage after `collect` works in one run folder (`runs/<env>` by default):
//!
//! ```text
//! runs/take-cover/
//!   world-model.bin      the bundle, f32: train-vae writes V, train-mdrnn adds M, train-controller adds C
//!   vae/                 checkpoint, optimizer state, loss.csv, loss.png, reconstructions.png
//!   series/              encode's mu/logvar series, one .npz per rollout
//!   mdrnn/               checkpoint, optimizer state, loss.csv, loss.png
//!   controller/          CMA-ES state, fitness.csv, fitness.png
//! ```
//! `dreamplay export` then writes the bundle in f16 to `models/<env>/` with its model card.

pub mod checkpoint;
pub mod cmaes;
pub mod collect;
pub mod controller;
pub mod encode;
pub mod eval;
pub mod export;
pub mod mdrnn;
pub mod plot;
pub mod progress;
pub mod rollout;
pub mod vae;

use std::path::{Path, PathBuf};

/// The run's bundle (f32), which each stage adds its part to.
pub fn run_model_path(run: &Path) -> PathBuf {
    run.join("world-model.bin")
}
