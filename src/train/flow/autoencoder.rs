//! `train-autoencoder`: fits the flow model's autoencoder on the frames V trains on, streamed the
//! same way (the shared frame plan of [`crate::train::vae`]), on the shared stage skeleton:
//! progress bar, `loss.csv` and `loss.png`, checkpoints and exact resume.
//!
//! Each step decodes the latent with a little Gaussian noise added (`--latent-noise`), so the
//! decoder learns to draw clean frames from the slightly wrong latents a dream makes, and adds a
//! small penalty on the latent's mean square (`--latent-penalty`), so the encoder cannot simply
//! outgrow the noise.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dynamics::normal;
use super::{autoencoder_dir, flow_model_path};
use crate::envs::EnvKind;
use crate::model::adam::{FusedAdam, adam};
use crate::model::bundle::{Precision, TrainingInfo};
use crate::model::flow::autoencoder::reconstruction_loss;
use crate::model::flow::{Autoencoder, FlowModel, FlowSpec, file as flow_file};
use crate::train::collect::splitmix64;
use crate::train::progress::{self, CsvLog};
use crate::train::stage::{self, BatchAt, GradientStage, StageState};
use crate::train::vae::{
    FramePlan, FrameStream, Validation, frames_u8_to_tensor, now_rfc3339, save_reconstruction_grid,
    split_rollouts, spread, validation_frames,
};

/// How to fit the autoencoder. The flags of `dreamplay train-autoencoder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct AutoencoderTrainConfig {
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
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long = "lr", default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// The learning rate at the last step, as a share of --lr, on a cosine over --epochs. 1 keeps
    /// it constant, as the shipped models trained; a decay guards against the late blow-ups a
    /// constant 1e-3 can have, at a cost in a short run (docs/flow.md has both figures).
    #[arg(long, default_value_t = 1.0)]
    pub lr_end: f64,
    /// Share of the rollouts held out for validation (0 holds none out).
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Train on every n-th frame (consecutive frames are near-duplicates).
    #[arg(long, default_value_t = 1)]
    pub frame_stride: usize,
    /// Rollouts held in memory at once (frames are shuffled within them).
    #[arg(long, default_value_t = 16)]
    pub chunk: usize,
    /// Batches between checkpoints within an epoch.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// Use each frame that shows a hazard (Take Cover's fireballs) this many times per epoch,
    /// whatever the stride; 0 treats them like any frame.
    #[arg(long, default_value_t = 0)]
    pub hazard_repeats: usize,
    /// The standard deviation of the noise added to the latent before decoding.
    #[arg(long, default_value_t = 0.05)]
    pub latent_noise: f32,
    /// The weight of the latent's mean square in the loss (per frame, as the reconstruction).
    #[arg(long, default_value_t = 1.0)]
    pub latent_penalty: f32,
    /// Channels of the 16x16 latent: more keep finer texture (Take Cover's walls) and cost the
    /// dynamics more to predict.
    #[arg(long, default_value_t = 4)]
    pub latent_channels: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl AutoencoderTrainConfig {
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
        if !(self.lr_end > 0.0 && self.lr_end <= 1.0) {
            bail!("--lr-end must be in (0, 1], got {}", self.lr_end);
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
        if !(self.latent_penalty.is_finite() && self.latent_penalty >= 0.0) {
            bail!(
                "--latent-penalty must be a number >= 0, got {}",
                self.latent_penalty
            );
        }
        if self.frame_stride == 0 || self.chunk == 0 || self.checkpoint_every == 0 {
            bail!("--frame-stride, --chunk and --checkpoint-every must be at least 1");
        }
        self.spec()
            .check()
            .map_err(|e| anyhow::anyhow!("--latent-channels: {e}"))?;
        Ok(())
    }

    /// The flow model's sizes: the shipped ones, with this run's latent channels.
    pub fn spec(&self) -> FlowSpec {
        FlowSpec {
            latent_channels: self.latent_channels,
            ..FlowSpec::default_for(self.env)
        }
    }

    fn frame_plan(&self) -> FramePlan {
        FramePlan {
            env: self.env,
            batch_size: self.batch_size,
            frame_stride: self.frame_stride,
            chunk: self.chunk,
            hazard_repeats: self.hazard_repeats,
            seed: self.seed,
        }
    }

    /// The fields a resumed run must share with the one that started it.
    fn fingerprint(&self) -> String {
        format!(
            "env {} data {} batch {} lr {} lr_end {} val {} stride {} chunk {} noise {} penalty {} channels {} seed {}",
            self.env,
            self.data_dir.display(),
            self.batch_size,
            self.learning_rate,
            self.lr_end,
            self.val_fraction,
            self.frame_stride,
            self.chunk,
            self.latent_noise,
            self.latent_penalty,
            self.latent_channels,
            self.seed
        )
    }
}

/// The autoencoder's part of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoencoderLosses {
    /// Smoothed training reconstruction error per frame.
    pub recon: f64,
    /// The last held-out reconstruction error per frame (no latent noise).
    pub val_recon: Option<f64>,
    /// The last held-out sharpness: decoded frames' image gradient over the real ones'.
    #[serde(default)]
    pub val_sharpness: Option<f64>,
}

/// What a finished fit reports.
#[derive(Debug, Clone)]
pub struct AutoencoderTrainSummary {
    pub train_frames: usize,
    pub val_frames: usize,
    pub steps: u64,
    pub epochs: usize,
    pub recon: f64,
    pub val_recon: Option<f64>,
    pub val_sharpness: Option<f64>,
    pub seconds: f64,
    pub resumed_from_step: Option<u64>,
    pub skipped_files: Vec<String>,
    pub model_path: PathBuf,
}

/// The held-out frames as the decoder draws them: reconstruction error per frame and sharpness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    pub recon: f64,
    pub sharpness: f64,
}

/// The held-out frames' reconstruction error and sharpness through `ae`; `None` without frames.
pub fn held_out<B: Backend>(
    ae: &Autoencoder<B>,
    frames: &[Vec<u8>],
    device: &B::Device,
) -> Option<HeldOut> {
    if frames.is_empty() {
        return None;
    }
    // One pass: each chunk is drawn once, for both measures.
    let (mut recon, mut drawn, mut real) = (0.0, 0.0, 0.0);
    for chunk in frames.chunks(64) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let x = frames_u8_to_tensor::<B>(&refs, device);
        let decoded = ae.decode(ae.encode(x.clone()));
        let loss = reconstruction_loss(decoded.clone(), x.clone());
        recon += f64::from(loss.into_scalar().elem::<f32>()) * chunk.len() as f64;
        let decoded = crate::model::vae::tensor_to_frames(decoded);
        let originals = crate::model::vae::tensor_to_frames(x);
        drawn += decoded.iter().map(crate::dream::sharpness).sum::<f64>();
        real += originals.iter().map(crate::dream::sharpness).sum::<f64>();
    }
    Some(HeldOut {
        recon: recon / frames.len() as f64,
        sharpness: if real > 0.0 { drawn / real } else { 0.0 },
    })
}

/// Fits the autoencoder; resumes from `run_dir/flow/autoencoder/state.json` unless `fresh`.
pub fn train_autoencoder<B: AutodiffBackend>(
    config: &AutoencoderTrainConfig,
    fresh: bool,
    device: &B::Device,
) -> anyhow::Result<AutoencoderTrainSummary> {
    config.validate()?;
    let split = split_rollouts(&config.data_dir, config.val_fraction)?;
    let dir = autoencoder_dir(&config.run_dir);
    let frames = FrameStream::new(&split.train, config.frame_plan())?;
    let train_frames: usize = split.train.iter().map(|f| f.len).sum();
    let frames_per_epoch = frames.frames_per_epoch();
    let schedule = stage::Schedule {
        epochs: config.epochs,
        batches_per_epoch: frames.batches_per_epoch(),
        checkpoint_every: config.checkpoint_every,
    };
    let fingerprint = config.fingerprint();
    let state: Option<StageState<AutoencoderLosses>> = stage::open(&dir, fresh, &fingerprint)?;
    let spec = config.spec();
    B::seed(device, splitmix64(config.seed ^ 0x6175_746f_656e_6300));
    let mut model: Autoencoder<B> = spec.autoencoder_config().init(device);
    let mut optim = adam::<B, Autoencoder<B>>(None);
    if let Some(s) = &state {
        let load = |path: &Path| {
            flow_file::load::<B>(path, Some(config.env), device)?
                .autoencoder
                .with_context(|| format!("{} holds no autoencoder", path.display()))
        };
        (model, optim) = stage::restore(&dir, s, optim, load, device)?;
    }
    let resumed_from_step = state.as_ref().map(|s| s.step);
    let (validation, val_failed) = validation_frames(&split.val);
    let log = stage::loss_log(
        &dir,
        &["step", "epoch", "recon", "val_recon", "val_sharpness"],
        resumed_from_step,
    )?;
    let bar = stage::progress_bar(&schedule, state.as_ref());
    progress::say(
        &bar,
        format!(
            "train-autoencoder {}: {} training rollouts ({train_frames} frames, {frames_per_epoch} per epoch), {} held out; {} batches of {} per epoch{}",
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
    for c in split.corrupt.iter().chain(&val_failed) {
        progress::say(&bar, format!("skipping: {c}"));
    }
    let losses = state.as_ref().map_or(
        AutoencoderLosses {
            recon: f64::NAN,
            val_recon: None,
            val_sharpness: None,
        },
        |s| s.losses.clone(),
    );
    let mut fit = AutoencoderFit {
        config,
        spec,
        dir: &dir,
        frames,
        validation: &validation,
        log,
        losses,
        last_frames: Vec::new(),
        frames_per_epoch,
        total_steps: (schedule.epochs * schedule.batches_per_epoch) as u64,
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
    stage::plot_losses(
        &dir,
        &format!("autoencoder ({}) loss per frame", config.env),
        &["recon", "val_recon"],
    )?;
    Ok(AutoencoderTrainSummary {
        train_frames,
        val_frames: validation.frames.len(),
        steps: s.step,
        epochs: s.epoch,
        recon: s.losses.recon,
        val_recon: s.losses.val_recon,
        val_sharpness: s.losses.val_sharpness,
        seconds: s.seconds,
        resumed_from_step,
        skipped_files: split.corrupt.into_iter().chain(val_failed).collect(),
        model_path: flow_model_path(&config.run_dir),
    })
}

/// A batch of frames as a tensor, and the standard normal noise its latents get before decoding,
/// drawn from our own stream seeded by `stream_seed` and `step`: the same on any backend and on
/// resume.
pub(super) fn frames_and_latent_noise<B: Backend>(
    frames: &[Vec<u8>],
    spec: FlowSpec,
    stream_seed: u64,
    step: u64,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let x = frames_u8_to_tensor::<B>(&refs, device);
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(stream_seed) ^ splitmix64(step));
    let (c, s) = (spec.latent_channels, spec.latent_side);
    let eps = normal(&mut rng, [frames.len(), c, s, s], device);
    (x, eps)
}

/// What the autoencoder's stages (`train-autoencoder`, `train-decoder`) show at an epoch's end.
pub(super) struct EpochEnd<'a> {
    pub validation: &'a Validation,
    /// The last batch, drawn when nothing is held out.
    pub last_frames: &'a [Vec<u8>],
    /// The stage folder, where `reconstructions.png` goes.
    pub dir: &'a Path,
}

impl EpochEnd<'_> {
    /// Measures the held-out frames through `ae` (a row of `log` whose last two values are the
    /// reconstruction error and sharpness, and a line on the bar), and draws the reconstructions.
    pub fn report<B: Backend>(
        &self,
        ae: &Autoencoder<B>,
        log: &mut CsvLog,
        at: BatchAt<'_>,
        device: &B::Device,
    ) -> anyhow::Result<Option<HeldOut>> {
        let val_frames = &self.validation.frames;
        let measured = held_out(ae, val_frames, device);
        if let Some(h) = measured {
            let mut row = vec![f64::NAN; log.columns()];
            let n = row.len();
            row[0] = at.step as f64 - 1.0;
            row[1] = at.epoch as f64;
            row[n - 2] = h.recon;
            row[n - 1] = h.sharpness;
            log.row(&row)?;
            progress::say(
                at.bar,
                format!(
                    "epoch {}: held-out recon {:.2} per frame, sharpness {:.3}",
                    at.epoch + 1,
                    h.recon,
                    h.sharpness
                ),
            );
        }
        let shown = if val_frames.is_empty() {
            self.last_frames
        } else {
            val_frames
        };
        save_reconstruction_grid(
            |x| ae.decode(ae.encode(x)),
            &spread(shown, 16),
            8,
            &self.dir.join("reconstructions.png"),
            device,
        )?;
        Ok(measured)
    }
}

struct AutoencoderFit<'a, B: AutodiffBackend> {
    config: &'a AutoencoderTrainConfig,
    spec: FlowSpec,
    dir: &'a Path,
    frames: FrameStream<'a>,
    validation: &'a Validation,
    log: CsvLog,
    losses: AutoencoderLosses,
    last_frames: Vec<Vec<u8>>,
    frames_per_epoch: usize,
    /// The steps the learning rate's decay spans: this invocation's --epochs.
    total_steps: u64,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> GradientStage<B> for AutoencoderFit<'_, B> {
    type Model = Autoencoder<B>;
    type Optim = OptimizerAdaptor<FusedAdam, Autoencoder<B>, B>;
    type Losses = AutoencoderLosses;
    type Weights = FlowModel<B::InnerBackend>;

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
            self.config.seed ^ 0x4145_4e00,
            at.step,
            self.device,
        );
        let (loss, recon) =
            model.training_loss(x, eps, self.config.latent_noise, self.config.latent_penalty);
        let value = f64::from(recon.into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let rate = stage::cosine_rate(
            self.config.learning_rate,
            self.config.lr_end,
            at.step,
            self.total_steps,
        );
        let model = optim.step(rate, model, grads);
        self.losses.recon = stage::smoothed(self.losses.recon, value);
        self.log
            .row(&[at.step as f64, at.epoch as f64, value, f64::NAN, f64::NAN])?;
        self.last_frames = frames;
        Ok((model, optim))
    }

    fn progress(&self, epoch: usize) -> String {
        format!("epoch {} recon {:.2}", epoch + 1, self.losses.recon)
    }

    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()> {
        let end = EpochEnd {
            validation: self.validation,
            last_frames: &self.last_frames,
            dir: self.dir,
        };
        if let Some(h) = end.report(&model.valid(), &mut self.log, at, self.device)? {
            self.losses.val_recon = Some(h.recon);
            self.losses.val_sharpness = Some(h.sharpness);
        }
        Ok(())
    }

    fn losses(&self) -> AutoencoderLosses {
        self.losses.clone()
    }

    fn checkpoint_weights(&self, ae: Autoencoder<B::InnerBackend>) -> Self::Weights {
        let mut model = FlowModel::empty(self.spec);
        model.autoencoder = Some(ae);
        model
    }

    fn write_run_bundle(
        &self,
        ae: Autoencoder<B::InnerBackend>,
        state: &StageState<AutoencoderLosses>,
    ) -> anyhow::Result<()> {
        // A new autoencoder changes the latents: the run's dynamics and statistics go with it.
        let mut model = self.checkpoint_weights(ae);
        let losses = stage::final_losses([
            ("recon", Some(state.losses.recon)),
            ("val_recon", state.losses.val_recon),
            ("val_sharpness", state.losses.val_sharpness),
        ]);
        model.provenance.autoencoder = Some(TrainingInfo {
            data_size: Some(self.frames_per_epoch as u64),
            epochs: Some(state.epoch as u64),
            final_losses: losses,
            date: Some(now_rfc3339()),
            notes: Some(format!(
                "Adam lr {} (cosine to {}x), batch {}, frame stride {}, latent noise {}, latent penalty {}, {} steps, {:.0} s",
                self.config.learning_rate,
                self.config.lr_end,
                self.config.batch_size,
                self.config.frame_stride,
                self.config.latent_noise,
                self.config.latent_penalty,
                state.step,
                state.seconds
            )),
            dream: None,
        });
        let path = flow_model_path(&self.config.run_dir);
        flow_file::save(&model, &path, Precision::F32)?;
        Ok(())
    }
}
