//! The skeleton every gradient stage shares (V, M, and the flow model's autoencoder, dynamics and
//! decoder): open the stage's folder and resume from its checkpoint, loop over epochs and batches
//! with a progress bar, checkpoint, and write the loss curves and the run's bundle. Each stage
//! ([`GradientStage`]) brings only its data, its step and its losses.
//!
//! A resumed run takes the same steps as an unbroken one: a checkpoint records the epoch, the
//! batch and the step to go on from, and a stage draws its batches and noise from those alone.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::progress::{self, CsvLog};

/// `state.json`: where a run stands. Written after the checkpoint it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState<L> {
    /// The options and inputs a resume must share.
    pub fingerprint: String,
    /// Epochs fully done.
    pub epoch: usize,
    /// Batches of epoch `epoch` done.
    pub batch: usize,
    /// Optimiser steps done in all.
    pub step: u64,
    /// The checkpoint folder (relative to the stage's folder).
    pub checkpoint: String,
    /// Training seconds so far (over all runs that resumed this one).
    pub seconds: f64,
    /// The stage's own record: its latest losses.
    #[serde(flatten)]
    pub losses: L,
}

/// A stage fitted by gradient steps over epochs of batches.
pub trait GradientStage<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;
    type Optim: Optimizer<Self::Model, B>;
    /// What `state.json` keeps of the stage's own.
    type Losses: Clone + Serialize + DeserializeOwned;
    /// The file a checkpoint's weights go in.
    type Weights: checkpoint::CheckpointWeights;

    /// Readies epoch `epoch` (its batch plan); returns its number of batches.
    fn begin_epoch(&mut self, epoch: usize) -> anyhow::Result<usize>;

    /// One optimiser step on the batch `at` names.
    fn train_batch(
        &mut self,
        model: Self::Model,
        optim: Self::Optim,
        at: BatchAt<'_>,
    ) -> anyhow::Result<(Self::Model, Self::Optim)>;

    /// The progress bar's message after a batch.
    fn progress(&self, epoch: usize) -> String;

    /// After an epoch's last batch (`at.step` steps done): held-out losses, pictures.
    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()>;

    /// The losses a checkpoint records now.
    fn losses(&self) -> Self::Losses;

    /// The weights a checkpoint holds: the stage's part of a bundle or flow model.
    fn checkpoint_weights(
        &self,
        model: <Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Self::Weights;

    /// Writes the stage's part into the run's bundle, at each epoch's end.
    fn write_run_bundle(
        &self,
        model: <Self::Model as AutodiffModule<B>>::InnerModule,
        state: &StageState<Self::Losses>,
    ) -> anyhow::Result<()>;
}

/// Where the loop stands when it calls a stage.
#[derive(Clone, Copy)]
pub struct BatchAt<'a> {
    pub epoch: usize,
    pub batch: usize,
    /// The step this batch takes (in `train_batch`), or the steps done (in `end_epoch`).
    pub step: u64,
    pub bar: &'a ProgressBar,
}

/// Creates the stage's folder and reads where a run stands: `None` for a fresh start (with
/// `fresh`, the old checkpoints are cleared).
pub fn open<L: DeserializeOwned>(
    dir: &Path,
    fresh: bool,
    fingerprint: &str,
) -> anyhow::Result<Option<StageState<L>>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    checkpoint::start_or_resume(dir, fresh, fingerprint, |s: &StageState<L>| &s.fingerprint)
}

/// Restores the weights (read by `load` from the checkpoint's weights file) and Adam's state
/// from the checkpoint `state` names. Adam restarts from zero, with a warning, when its state is
/// unreadable or cannot be matched to the weights.
pub fn restore<B, M, O, L>(
    dir: &Path,
    state: &StageState<L>,
    optim: O,
    load: impl FnOnce(&Path) -> anyhow::Result<M>,
    device: &B::Device,
) -> anyhow::Result<(M, O)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Clone,
    O: Optimizer<M, B> + Clone,
{
    let dir = dir.join(&state.checkpoint);
    let model = load(&dir.join(checkpoint::MODEL_FILE))?;
    let model = match checkpoint::restore_param_ids::<B, _>(model.clone(), &dir) {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "warning: {why:#}; Adam's state cannot be matched to the weights and restarts from zero"
            );
            model
        }
    };
    let optim = match checkpoint::load_optimizer::<B, M, _>(
        optim.clone(),
        &dir.join(checkpoint::OPTIMIZER_FILE),
        device,
    ) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("warning: Adam's state not restored ({why}); it restarts from zero");
            optim
        }
    };
    Ok((model, optim))
}

/// The stage's `loss.csv`, keeping the rows of the steps a resumed run has done.
pub fn loss_log(
    dir: &Path,
    header: &[&str],
    resumed_from_step: Option<u64>,
) -> anyhow::Result<CsvLog> {
    // Rows are keyed by the 0-based step; `s` steps are done, so keep rows up to s - 1.
    CsvLog::open(
        &dir.join("loss.csv"),
        header,
        resumed_from_step.map(|s| s as f64 - 1.0),
    )
    .context("cannot write the loss log")
}

/// Plots the stage's `loss.csv` into `loss.png` against the step.
pub fn plot_losses(dir: &Path, title: &str, series: &[&str]) -> anyhow::Result<()> {
    super::plot::plot_csv(
        &dir.join("loss.csv"),
        &dir.join("loss.png"),
        title,
        "step",
        series,
    )
}

/// A cosine decay of the learning rate from `base` at step 0 to `base * end_share` at
/// `total_steps` (and after).
pub fn cosine_rate(base: f64, end_share: f64, step: u64, total_steps: u64) -> f64 {
    let progress = (step as f64 / total_steps.max(1) as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    base * (end_share + (1.0 - end_share) * cosine)
}

/// The running loss the progress bar and `state.json` show: an exponential average of the steps'
/// losses over about the last 20 steps, which starts at the first value (`average` NaN).
pub fn smoothed(average: f64, value: f64) -> f64 {
    if average.is_nan() {
        value
    } else {
        0.95 * average + 0.05 * value
    }
}

/// A model card's final losses: the named values that are there and finite (a stage that held
/// nothing out has no validation loss, and a loss not yet seen is NaN).
pub fn final_losses<N: Into<String>>(
    values: impl IntoIterator<Item = (N, Option<f64>)>,
) -> std::collections::BTreeMap<String, f64> {
    values
        .into_iter()
        .filter_map(|(name, value)| Some((name.into(), value.filter(|v| v.is_finite())?)))
        .collect()
}

/// The loop's fixed terms.
pub struct Schedule {
    pub epochs: usize,
    /// Batches per epoch, for the progress bar.
    pub batches_per_epoch: usize,
    /// Batches between checkpoints within an epoch.
    pub checkpoint_every: usize,
}

/// A progress bar over the whole fit, at the position `state` resumes from.
pub fn progress_bar<L>(schedule: &Schedule, state: Option<&StageState<L>>) -> ProgressBar {
    let total = (schedule.epochs * schedule.batches_per_epoch) as u64;
    let bar = progress::bar(total, "batches");
    let done = state.map_or(0, |s| s.epoch * schedule.batches_per_epoch + s.batch);
    bar.set_position(done.min(total as usize) as u64);
    bar
}

/// Runs the epochs left from `state` (or from the start): each batch a step, a checkpoint every
/// `checkpoint_every` batches and at each epoch's end, the run's bundle at each epoch's end.
/// Returns the last checkpoint's state; finishes `bar`.
#[allow(clippy::too_many_arguments)]
pub fn fit<B: AutodiffBackend, S: GradientStage<B>>(
    stage: &mut S,
    dir: &Path,
    fingerprint: &str,
    schedule: &Schedule,
    mut state: Option<StageState<S::Losses>>,
    mut model: S::Model,
    mut optim: S::Optim,
    bar: &ProgressBar,
) -> anyhow::Result<StageState<S::Losses>> {
    let (mut epoch, mut first_batch, mut step, seconds_before) = match &state {
        Some(s) => (s.epoch, s.batch, s.step, s.seconds),
        None => (0, 0, 0u64, 0.0),
    };
    let started = Instant::now();
    while epoch < schedule.epochs {
        let batches = stage.begin_epoch(epoch)?;
        for batch in first_batch..batches {
            let at = BatchAt {
                epoch,
                batch,
                step,
                bar,
            };
            (model, optim) = stage.train_batch(model, optim, at)?;
            step += 1;
            bar.inc(1);
            bar.set_message(stage.progress(epoch));
            let end_of_epoch = batch + 1 == batches;
            if end_of_epoch {
                stage.end_epoch(&model, BatchAt { step, ..at })?;
            }
            if end_of_epoch || (batch + 1) % schedule.checkpoint_every == 0 {
                let (next_epoch, next_batch) = if end_of_epoch {
                    (epoch + 1, 0)
                } else {
                    (epoch, batch + 1)
                };
                let s = StageState {
                    fingerprint: fingerprint.to_string(),
                    epoch: next_epoch,
                    batch: next_batch,
                    step,
                    checkpoint: format!("checkpoint-{step:08}"),
                    seconds: seconds_before + started.elapsed().as_secs_f64(),
                    losses: stage.losses(),
                };
                let weights = stage.checkpoint_weights(model.valid());
                checkpoint::save(
                    dir,
                    &s.checkpoint,
                    &model,
                    &weights,
                    &optim,
                    &s,
                    state.as_ref().map(|p| p.checkpoint.as_str()),
                )?;
                if end_of_epoch {
                    stage.write_run_bundle(model.valid(), &s)?;
                }
                state = Some(s);
            }
        }
        epoch += 1;
        first_batch = 0;
    }
    bar.finish_and_clear();
    state.context("no training happened")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_keeps_only_finite_losses_that_are_there() {
        let losses = final_losses([
            ("recon", Some(2.5)),
            ("kl", Some(f64::NAN)),
            ("val_recon", None),
            ("val_kl", Some(0.5)),
        ]);
        let kept: Vec<(&str, f64)> = losses.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(kept, [("recon", 2.5), ("val_kl", 0.5)]);
    }

    #[test]
    fn the_running_loss_starts_at_the_first_value_and_follows_slowly() {
        let first = smoothed(f64::NAN, 4.0);
        assert_eq!(first, 4.0);
        assert!((smoothed(first, 0.0) - 3.8).abs() < 1e-12);
    }

    #[test]
    fn the_cosine_rate_falls_from_the_base_to_its_end_share_and_stays() {
        let rate = |step| cosine_rate(1e-3, 0.1, step, 100);
        assert_eq!(rate(0), 1e-3);
        assert!((rate(50) - 0.55e-3).abs() < 1e-12, "{}", rate(50));
        assert!((rate(100) - 1e-4).abs() < 1e-12);
        assert_eq!(rate(250), rate(100));
        assert!((1..=100).all(|s| rate(s) < rate(s - 1)));
        assert_eq!(
            cosine_rate(1e-3, 1.0, 70, 100),
            1e-3,
            "a share of 1 keeps it constant"
        );
    }
}
