//! `train-decoder`: fine-tunes the flow model's decoder alone, after `train-autoencoder`, so that
//! the frames it draws are as sharp as the real ones. Trained on squared error alone, the
//! autoencoder draws the mean of the frames a latent could mean, which is blurred; this stage adds
//! the gradient difference loss
//! ([`gradient_difference_loss`](crate::model::flow::autoencoder::gradient_difference_loss))
//! and, with `--adversarial-weight`, a patch critic's score
//! ([`PatchCritic`](crate::model::flow::critic::PatchCritic)), trained beside the decoder on the
//! same batches.
//!
//! The encoder is frozen: the latents `encode-latents` made, their statistics, and a dynamics
//! already trained on them all stay valid, so the stage may run before or after `train-flow`. It
//! writes only the decoder into the run's flow model, on the shared stage skeleton (progress bar,
//! `flow/decoder/loss.csv` and `loss.png`, checkpoints and exact resume). At each epoch's end it
//! measures the held-out frames' sharpness: the decoded frames' image gradient over the real ones'
//! (1: as sharp), the measure `export-flow` reports for the dream.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::autoencoder::{EpochEnd, HeldOut, frames_and_latent_noise, held_out};
use super::flow_model_path;
use crate::envs::EnvKind;
use crate::model::adam::{FusedAdam, adam};
use crate::model::bundle::{Precision, TrainingInfo};
use crate::model::flow::critic::{PatchCritic, critic_loss, looks_real_loss};
use crate::model::flow::{Autoencoder, FlowModel, FlowSpec, file as flow_file};
use crate::train::checkpoint::{self, CheckpointWeights};
use crate::train::collect::splitmix64;
use crate::train::progress::{self, CsvLog};
use crate::train::stage::{self, BatchAt, GradientStage, StageState};
use crate::train::vae::{
    FramePlan, FrameStream, Validation, now_rfc3339, split_rollouts, validation_frames,
};

/// How to fine-tune the decoder. The flags of `dreamplay train-decoder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct DecoderTrainConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    /// The rollouts (`dreamplay collect --out`).
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// The run folder (see [`crate::train`]).
    #[arg(skip)]
    pub run_dir: PathBuf,
    /// Passes over the training frames.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Adam's learning rate: lower than the autoencoder's, as the decoder starts trained.
    #[arg(long = "lr", default_value_t = 3e-4)]
    pub learning_rate: f64,
    /// Share of the rollouts held out for validation: keep the autoencoder's, so the held-out
    /// frames are ones neither stage saw.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Train on every n-th frame.
    #[arg(long, default_value_t = 4)]
    pub frame_stride: usize,
    /// Rollouts held in memory at once (frames are shuffled within them).
    #[arg(long, default_value_t = 16)]
    pub chunk: usize,
    /// Batches between checkpoints within an epoch.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// The standard deviation of the noise added to the latent before decoding (as in
    /// `train-autoencoder`: the dream's latents are slightly wrong).
    #[arg(long, default_value_t = 0.05)]
    pub latent_noise: f32,
    /// The weight of the gradient difference loss against the reconstruction's squared error,
    /// both summed per frame.
    #[arg(long, default_value_t = 0.01)]
    pub gradient_weight: f32,
    /// The weight of a patch critic's adversarial loss (the mean over patches) against the
    /// per-frame squared error; 0 trains no critic.
    #[arg(long, default_value_t = 0.0)]
    pub adversarial_weight: f32,
    /// The critic's Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub critic_lr: f64,
    /// Use each frame that shows a hazard (Take Cover's fireballs) this many times per epoch,
    /// whatever the stride, as `train-autoencoder` does; 0 treats them like any frame.
    #[arg(long, default_value_t = 0)]
    pub hazard_repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DecoderTrainConfig {
    /// The flags' defaults for `env`.
    pub fn new(env: EnvKind, data_dir: PathBuf, run_dir: PathBuf) -> Self {
        Self {
            data_dir,
            run_dir,
            ..crate::train::flag_defaults(&["--env", env.name()])
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            bail!("--epochs and --batch must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            bail!("--lr must be a positive number, got {}", self.learning_rate);
        }
        if !(0.0..0.5).contains(&self.val_fraction) {
            bail!(
                "--val-fraction must be in [0, 0.5), got {}",
                self.val_fraction
            );
        }
        if !(self.latent_noise.is_finite() && (0.0..1.0).contains(&self.latent_noise)) {
            bail!(
                "--latent-noise must be in [0, 1), got {}",
                self.latent_noise
            );
        }
        if !(self.gradient_weight.is_finite() && self.gradient_weight >= 0.0) {
            bail!(
                "--gradient-weight must be a number >= 0, got {}",
                self.gradient_weight
            );
        }
        if !(self.adversarial_weight.is_finite() && self.adversarial_weight >= 0.0) {
            bail!(
                "--adversarial-weight must be a number >= 0, got {}",
                self.adversarial_weight
            );
        }
        if !(self.critic_lr.is_finite() && self.critic_lr > 0.0) {
            bail!(
                "--critic-lr must be a positive number, got {}",
                self.critic_lr
            );
        }
        if self.frame_stride == 0 || self.chunk == 0 || self.checkpoint_every == 0 {
            bail!("--frame-stride, --chunk and --checkpoint-every must be at least 1");
        }
        Ok(())
    }

    /// The fields a resumed run must share with the one that started it, and the encoder it
    /// started from.
    fn fingerprint(&self, encoder: u64) -> String {
        format!(
            "env {} data {} batch {} lr {} val {} stride {} hazard {} chunk {} noise {} gradient {} adversarial {} critic lr {} seed {} encoder {encoder:016x}",
            self.env,
            self.data_dir.display(),
            self.batch_size,
            self.learning_rate,
            self.val_fraction,
            self.frame_stride,
            self.hazard_repeats,
            self.chunk,
            self.latent_noise,
            self.gradient_weight,
            self.adversarial_weight,
            self.critic_lr,
            self.seed
        )
    }

    fn trains_critic(&self) -> bool {
        self.adversarial_weight > 0.0
    }
}

/// What the stage trains: the autoencoder, of which only the decoder learns, and the critic when
/// there is an adversarial weight.
#[derive(Module, Debug)]
pub struct DecoderTuning<B: Backend> {
    autoencoder: Autoencoder<B>,
    critic: Option<PatchCritic<B>>,
}

/// The critic beside a checkpoint's `weights.bin`.
pub const CRITIC_FILE: &str = "critic.bin";

/// A checkpoint's weights: the autoencoder in a flow-model file, the critic in
/// [`CRITIC_FILE`] beside it.
pub struct DecoderCheckpoint<B: Backend> {
    flow: FlowModel<B>,
    critic: Option<PatchCritic<B>>,
}

impl<B: Backend> CheckpointWeights for DecoderCheckpoint<B> {
    fn save_f32(&self, path: &Path) -> anyhow::Result<()> {
        flow_file::save(&self.flow, path, Precision::F32)?;
        match &self.critic {
            Some(critic) => checkpoint::save_record::<B, _>(
                critic.clone().into_record(),
                &path.with_file_name(CRITIC_FILE),
            ),
            None => Ok(()),
        }
    }
}

/// The critic a checkpoint holds.
fn load_critic<B: Backend>(path: &Path, device: &B::Device) -> anyhow::Result<PatchCritic<B>> {
    let record = checkpoint::load_record::<B, _>(path, device)?;
    Ok(PatchCritic::new(device).load_record(record))
}

/// The stage's folder.
pub fn decoder_dir(run: &Path) -> PathBuf {
    run.join("flow").join("decoder")
}

/// The decoder's part of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecoderLosses {
    /// Smoothed training reconstruction error per frame.
    pub recon: f64,
    /// Smoothed training gradient difference per frame.
    pub gradient: f64,
    /// Smoothed adversarial loss of the drawn frames (with a critic).
    #[serde(default)]
    pub adversarial: Option<f64>,
    /// The critic's smoothed loss: ln 4 (1.386) when it cannot tell drawn patches from real.
    #[serde(default)]
    pub critic: Option<f64>,
    /// The last held-out reconstruction error per frame (no latent noise).
    pub val_recon: Option<f64>,
    /// The last held-out sharpness: decoded frames' image gradient over the real ones'.
    pub val_sharpness: Option<f64>,
}

/// What a finished fine-tune reports.
#[derive(Debug, Clone)]
pub struct DecoderTrainSummary {
    pub train_frames: usize,
    pub val_frames: usize,
    pub steps: u64,
    pub epochs: usize,
    pub recon: f64,
    pub gradient: f64,
    pub adversarial: Option<f64>,
    pub critic: Option<f64>,
    /// The held-out frames through the autoencoder this run started from (`None` on a resumed run
    /// or with nothing held out).
    pub before: Option<HeldOut>,
    pub after: Option<HeldOut>,
    pub seconds: f64,
    pub resumed_from_step: Option<u64>,
    pub skipped_files: Vec<String>,
    pub model_path: PathBuf,
}

/// Fine-tunes the run's decoder; resumes from `run_dir/flow/decoder/state.json` unless `fresh`.
pub fn train_decoder<B: AutodiffBackend>(
    config: &DecoderTrainConfig,
    fresh: bool,
    device: &B::Device,
) -> anyhow::Result<DecoderTrainSummary> {
    config.validate()?;
    let flow_path = flow_model_path(&config.run_dir);
    if !flow_path.is_file() {
        bail!(
            "the run has no flow model ({} is missing); run `dreamplay train-autoencoder --env {}` first",
            flow_path.display(),
            config.env
        );
    }
    let run_model = flow_file::load::<B>(&flow_path, Some(config.env), device)?;
    let start = run_model.autoencoder.with_context(|| {
        format!(
            "{} holds no autoencoder; run `dreamplay train-autoencoder --env {}` first",
            flow_path.display(),
            config.env
        )
    })?;
    let encoder = start.encoder_checksum();
    let split = split_rollouts(&config.data_dir, config.val_fraction)?;
    let dir = decoder_dir(&config.run_dir);
    let plan = FramePlan {
        env: config.env,
        batch_size: config.batch_size,
        frame_stride: config.frame_stride,
        chunk: config.chunk,
        hazard_repeats: config.hazard_repeats,
        seed: config.seed,
    };
    let frames = FrameStream::new(&split.train, plan)?;
    let train_frames: usize = split.train.iter().map(|f| f.len).sum();
    let frames_per_epoch = frames.frames_per_epoch();
    let schedule = stage::Schedule {
        epochs: config.epochs,
        batches_per_epoch: frames.batches_per_epoch(),
        checkpoint_every: config.checkpoint_every,
    };
    let fingerprint = config.fingerprint(encoder);
    let state: Option<StageState<DecoderLosses>> = stage::open(&dir, fresh, &fingerprint)?;
    let critic = config.trains_critic().then(|| {
        B::seed(device, splitmix64(config.seed ^ 0x6372_6974_6963));
        PatchCritic::new(device)
    });
    let mut model = DecoderTuning {
        autoencoder: start,
        critic,
    };
    let mut optim = adam::<B, DecoderTuning<B>>(None);
    if let Some(s) = &state {
        let load = |path: &Path| {
            let autoencoder = flow_file::load::<B>(path, Some(config.env), device)?
                .autoencoder
                .with_context(|| format!("{} holds no autoencoder", path.display()))?;
            let critic = match config.trains_critic() {
                true => Some(load_critic::<B>(&path.with_file_name(CRITIC_FILE), device)?),
                false => None,
            };
            Ok(DecoderTuning {
                autoencoder,
                critic,
            })
        };
        (model, optim) = stage::restore(&dir, s, optim, load, device)?;
    }
    let resumed_from_step = state.as_ref().map(|s| s.step);
    let (validation, val_failed) = validation_frames(&split.val);
    let before = match state {
        None => held_out(&model.autoencoder.valid(), &validation.frames, device),
        Some(_) => None,
    };
    let log = stage::loss_log(
        &dir,
        &[
            "step",
            "epoch",
            "recon",
            "gradient",
            "adversarial",
            "critic",
            "val_recon",
            "val_sharpness",
        ],
        resumed_from_step,
    )?;
    let bar = stage::progress_bar(&schedule, state.as_ref());
    progress::say(
        &bar,
        format!(
            "train-decoder {}: {} training rollouts ({train_frames} frames, {frames_per_epoch} per epoch), {} held out; {} batches of {} per epoch{}",
            config.env,
            split.train.len(),
            split.val.len(),
            schedule.batches_per_epoch,
            config.batch_size,
            state.as_ref().map_or(String::new(), |s| format!(
                "; resuming at step {} (epoch {}, batch {})",
                s.step,
                s.epoch + 1,
                s.batch
            ))
        ),
    );
    if let Some(b) = before {
        progress::say(
            &bar,
            format!(
                "before: held-out recon {:.2} per frame, sharpness {:.3}",
                b.recon, b.sharpness
            ),
        );
    }
    for c in split.corrupt.iter().chain(&val_failed) {
        progress::say(&bar, format!("skipping: {c}"));
    }
    let losses = state.as_ref().map_or(
        DecoderLosses {
            recon: f64::NAN,
            gradient: f64::NAN,
            adversarial: None,
            critic: None,
            val_recon: None,
            val_sharpness: None,
        },
        |s| s.losses.clone(),
    );
    let mut fit = DecoderFit {
        config,
        spec: run_model.spec,
        encoder,
        dir: &dir,
        frames,
        validation: &validation,
        log,
        losses,
        last_frames: Vec::new(),
        frames_per_epoch,
        device,
    };
    let s = stage::fit(
        &mut fit,
        &dir,
        &fingerprint,
        &schedule,
        state,
        model,
        optim,
        &bar,
    )?;
    let plotted: &[&str] = match config.trains_critic() {
        true => &["recon", "val_recon", "adversarial", "critic"],
        false => &["recon", "val_recon"],
    };
    stage::plot_losses(
        &dir,
        &format!("decoder fine-tune ({}) losses", config.env),
        plotted,
    )?;
    let after = s
        .losses
        .val_recon
        .zip(s.losses.val_sharpness)
        .map(|(recon, sharpness)| HeldOut { recon, sharpness });
    Ok(DecoderTrainSummary {
        train_frames,
        val_frames: validation.frames.len(),
        steps: s.step,
        epochs: s.epoch,
        recon: s.losses.recon,
        gradient: s.losses.gradient,
        adversarial: s.losses.adversarial,
        critic: s.losses.critic,
        before,
        after,
        seconds: s.seconds,
        resumed_from_step,
        skipped_files: split.corrupt.into_iter().chain(val_failed).collect(),
        model_path: flow_path,
    })
}

struct DecoderFit<'a, B: AutodiffBackend> {
    config: &'a DecoderTrainConfig,
    spec: FlowSpec,
    /// The frozen encoder's checksum, checked against the run's before its file is rewritten.
    encoder: u64,
    dir: &'a Path,
    frames: FrameStream<'a>,
    validation: &'a Validation,
    log: CsvLog,
    losses: DecoderLosses,
    last_frames: Vec<Vec<u8>>,
    frames_per_epoch: usize,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> GradientStage<B> for DecoderFit<'_, B> {
    type Model = DecoderTuning<B>;
    type Optim = OptimizerAdaptor<FusedAdam, DecoderTuning<B>, B>;
    type Losses = DecoderLosses;
    type Weights = DecoderCheckpoint<B::InnerBackend>;

    fn begin_epoch(&mut self, epoch: usize) -> anyhow::Result<usize> {
        Ok(self.frames.begin_epoch(epoch))
    }

    fn train_batch(
        &mut self,
        model: Self::Model,
        mut optim: Self::Optim,
        at: BatchAt<'_>,
    ) -> anyhow::Result<(Self::Model, Self::Optim)> {
        let (frames, _) = self.frames.batch(at)?;
        if frames.is_empty() {
            return Ok((model, optim));
        }
        let (x, eps) = frames_and_latent_noise::<B>(
            &frames,
            self.spec,
            self.config.seed ^ 0x4445_4300,
            at.step,
            self.device,
        );
        let loss = model.autoencoder.decoder_loss(
            x.clone(),
            eps,
            self.config.latent_noise,
            self.config.gradient_weight,
        );
        let scalar = |t: Tensor<B, 1>| f64::from(t.into_scalar().elem::<f32>());
        let (recon, gradient) = (scalar(loss.recon), scalar(loss.gradient));
        let mut total = loss.total;
        let mut adversarial = f64::NAN;
        if let Some(critic) = &model.critic {
            let looks_real = looks_real_loss(critic.forward(loss.drawn.clone()));
            adversarial = scalar(looks_real.clone());
            total = total + looks_real * self.config.adversarial_weight;
        }
        // Only the autoencoder's gradients: the critic is in this graph too, and must not learn
        // to call drawn frames real. The encoder gets none, so Adam leaves it as it is.
        let mut grads = total.backward();
        let grads = GradientsParams::from_module(&mut grads, &model.autoencoder);
        let mut model = optim.step(self.config.learning_rate, model, grads);
        let mut critic_value = f64::NAN;
        if let Some(critic) = &model.critic {
            // The frames drawn before this step, cut from the decoder's graph.
            let drawn = Tensor::from_inner(loss.drawn.inner());
            let critic_step = critic_loss(critic.forward(x), critic.forward(drawn));
            critic_value = scalar(critic_step.clone());
            let mut grads = critic_step.backward();
            let grads = GradientsParams::from_module(&mut grads, critic);
            model = optim.step(self.config.critic_lr, model, grads);
        }
        self.losses.recon = stage::smoothed(self.losses.recon, recon);
        self.losses.gradient = stage::smoothed(self.losses.gradient, gradient);
        if model.critic.is_some() {
            let smooth = |average: Option<f64>, value| {
                Some(stage::smoothed(average.unwrap_or(f64::NAN), value))
            };
            self.losses.adversarial = smooth(self.losses.adversarial, adversarial);
            self.losses.critic = smooth(self.losses.critic, critic_value);
        }
        self.log.row(&[
            at.step as f64,
            at.epoch as f64,
            recon,
            gradient,
            adversarial,
            critic_value,
            f64::NAN,
            f64::NAN,
        ])?;
        self.last_frames = frames;
        Ok((model, optim))
    }

    fn progress(&self, epoch: usize) -> String {
        let critic = match (self.losses.adversarial, self.losses.critic) {
            (Some(a), Some(c)) => format!(" adversarial {a:.3} critic {c:.3}"),
            _ => String::new(),
        };
        format!(
            "epoch {} recon {:.2} gradient {:.1}{critic}",
            epoch + 1,
            self.losses.recon,
            self.losses.gradient
        )
    }

    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()> {
        let end = EpochEnd {
            validation: self.validation,
            last_frames: &self.last_frames,
            dir: self.dir,
        };
        if let Some(h) = end.report(&model.autoencoder.valid(), &mut self.log, at, self.device)? {
            self.losses.val_recon = Some(h.recon);
            self.losses.val_sharpness = Some(h.sharpness);
        }
        Ok(())
    }

    fn losses(&self) -> DecoderLosses {
        self.losses.clone()
    }

    fn checkpoint_weights(&self, tuning: DecoderTuning<B::InnerBackend>) -> Self::Weights {
        let mut flow = FlowModel::empty(self.spec);
        flow.autoencoder = Some(tuning.autoencoder);
        DecoderCheckpoint {
            flow,
            critic: tuning.critic,
        }
    }

    /// Swaps the decoder into the run's flow model, keeping its latent statistics, dynamics and
    /// heads, which the frozen encoder leaves valid. The critic stays in the checkpoints.
    fn write_run_bundle(
        &self,
        tuning: DecoderTuning<B::InnerBackend>,
        state: &StageState<DecoderLosses>,
    ) -> anyhow::Result<()> {
        let path = flow_model_path(&self.config.run_dir);
        let mut flow: FlowModel<B::InnerBackend> =
            flow_file::load(&path, Some(self.config.env), self.device)?;
        let run_encoder = flow.autoencoder.as_ref().map(Autoencoder::encoder_checksum);
        if run_encoder != Some(self.encoder) {
            bail!(
                "{} holds another autoencoder than the one this fine-tune started from (was train-autoencoder run meanwhile?); run `dreamplay train-decoder --env {} --fresh`",
                path.display(),
                self.config.env
            );
        }
        flow.autoencoder = Some(tuning.autoencoder);
        let l = &state.losses;
        let losses = stage::final_losses([
            ("recon", Some(l.recon)),
            ("gradient", Some(l.gradient)),
            ("adversarial", l.adversarial),
            ("critic", l.critic),
            ("val_recon", l.val_recon),
            ("val_sharpness", l.val_sharpness),
        ]);
        flow.provenance.decoder = Some(TrainingInfo {
            data_size: Some(self.frames_per_epoch as u64),
            epochs: Some(state.epoch as u64),
            final_losses: losses,
            date: Some(now_rfc3339()),
            notes: Some(self.card_notes(state)),
            dream: None,
        });
        flow_file::save(&flow, &path, Precision::F32)?;
        Ok(())
    }
}

impl<B: AutodiffBackend> DecoderFit<'_, B> {
    /// The model card's line on how the decoder was fine-tuned.
    fn card_notes(&self, state: &StageState<DecoderLosses>) -> String {
        let c = self.config;
        let hazard = match c.hazard_repeats {
            0 => String::new(),
            n => format!(", hazard frames {n}x"),
        };
        let critic = match c.trains_critic() {
            true => format!(
                ", adversarial weight {} (patch critic, Adam lr {})",
                c.adversarial_weight, c.critic_lr
            ),
            false => String::new(),
        };
        format!(
            "decoder only, encoder frozen; Adam lr {}, batch {}, frame stride {}{hazard}, latent noise {}, gradient difference weight {}{critic}, {} steps, {:.0} s",
            c.learning_rate,
            c.batch_size,
            c.frame_stride,
            c.latent_noise,
            c.gradient_weight,
            state.step,
            state.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn a_checkpointed_critic_round_trips_and_a_corrupt_one_is_named() {
        let device = Default::default();
        let critic = PatchCritic::<Flex>::new(&device);
        let real = Tensor::<Flex, 4>::full([1, 3, 64, 64], 0.25, &device);
        // burn draws a parameter on its first use, and a clone taken before would draw its own.
        let expected = critic.forward(real.clone()).into_data();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CRITIC_FILE);
        checkpoint::save_record::<Flex, _>(critic.clone().into_record(), &path).unwrap();
        let back = load_critic::<Flex>(&path, &device).unwrap();
        assert_eq!(back.forward(real).into_data(), expected);
        std::fs::write(&path, b"not a critic").unwrap();
        let err = load_critic::<Flex>(&path, &device).unwrap_err();
        assert!(format!("{err:#}").contains(CRITIC_FILE), "{err:#}");
    }
}
