//! `train-flow`: fits the flow model's dynamics (flow matching plus the shortcut objective) and
//! its done and reward heads on the latent series, on the shared stage skeleton: progress bar,
//! `loss.csv` and `loss.png`, checkpoints and exact resume.
//!
//! - **Rows.** A row is a transition `(file, t)` with `t + 1` in the series: the context is the
//!   latents `t - K + 1 ..= t` (the first one repeated before the episode starts) and their
//!   actions (zero before the start); the target is latent `t + 1`. The same row trains the
//!   heads on the step after it, `(z_t, z_{t+1}, a_{t+1}) -> (done_{t+1}, reward_{t+1})`, so that
//!   every episode's last step, where the done is, is seen.
//! - **Randomness.** An epoch's order depends only on (seed, epoch), a step's draws only on
//!   (seed, step): a resumed run takes the same steps as an unbroken one.
//! - **Held out.** Every `1 / val_fraction`-th series is held out; at each epoch's end the
//!   held-out flow loss (fixed draws) and the error of 1-, 2- and 4-step samples against the true
//!   next latent are logged, and `samples.png` shows real next frames beside the dream's.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};

use super::flow_model_path;
use super::latents::{LatentSeries, latents_dir};
use crate::envs::EnvKind;
use crate::model::adam::{FusedAdam, adam};
use crate::model::bundle::{Precision, TrainingInfo};
use crate::model::flow::shortcut::{self, RowDraws, Sampling, TrainBatch};
use crate::model::flow::{
    Autoencoder, Dynamics, EndHeads, FlowModel, FlowSpec, LatentStats, file as flow_file,
};
use crate::model::mdrnn::{done_loss, reward_loss};
use crate::train::collect::splitmix64;
use crate::train::encode::list_series;
use crate::train::progress::{self, CsvLog};
use crate::train::stage::{self, BatchAt, GradientStage, StageState};
use crate::train::vae::now_rfc3339;

/// Held-out rows scored at each epoch's end.
pub const VAL_ROWS: usize = 256;

/// The paper's weight on a done in M's loss, used for the heads too: dones are rare.
const DONE_POS_WEIGHT: f64 = 10.0;

/// How to fit the dynamics and heads. The flags of `dreamplay train-flow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct FlowTrainConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    /// The run folder (see [`crate::train`]).
    #[arg(skip)]
    pub run_dir: PathBuf,
    /// Passes over the training transitions.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    #[arg(long = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long = "lr", default_value_t = 3e-4)]
    pub learning_rate: f64,
    /// Share of the series held out for validation (0 holds none out).
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Share of each batch that trains the shortcut's self-consistency (the rest: flow matching).
    #[arg(long, default_value_t = 0.25)]
    pub shortcut_fraction: f64,
    /// The most noise a row's context gets (each row draws its level in [0, this)).
    #[arg(long, default_value_t = 0.3)]
    pub max_context_noise: f32,
    /// Batches between checkpoints within an epoch.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl FlowTrainConfig {
    /// The flags' defaults for `env`.
    pub fn new(env: EnvKind, run_dir: PathBuf) -> Self {
        Self {
            run_dir,
            ..crate::train::flag_defaults(&["--env", env.name()])
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.checkpoint_every == 0 {
            bail!("--epochs, --batch and --checkpoint-every must be at least 1");
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
        if !(0.0..=1.0).contains(&self.shortcut_fraction) {
            bail!(
                "--shortcut-fraction must be in [0, 1], got {}",
                self.shortcut_fraction
            );
        }
        if !(0.0..=1.0).contains(&self.max_context_noise) {
            bail!(
                "--max-context-noise must be in [0, 1], got {}",
                self.max_context_noise
            );
        }
        Ok(())
    }

    fn shortcut_rows(&self) -> usize {
        (self.batch_size as f64 * self.shortcut_fraction).round() as usize
    }

    fn fingerprint(&self) -> String {
        format!(
            "env {} batch {} lr {} val {} shortcut {} context noise {} seed {}",
            self.env,
            self.batch_size,
            self.learning_rate,
            self.val_fraction,
            self.shortcut_fraction,
            self.max_context_noise,
            self.seed
        )
    }
}

/// The dynamics and its heads, trained together by one optimiser.
#[derive(Module, Debug)]
pub struct DynamicsAndHeads<B: Backend> {
    pub dynamics: Dynamics<B>,
    pub heads: EndHeads<B>,
}

/// The stage's part of `state.json`: smoothed training losses and the last held-out ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowLosses {
    pub flow: f64,
    pub shortcut: f64,
    pub done: f64,
    pub reward: f64,
    /// Held-out flow loss (fixed draws).
    pub val_flow: Option<f64>,
    /// Held-out mean squared error of a sampled next latent (normalised units) at 1, 2, 4 steps.
    pub val_sample: Option<[f64; 3]>,
}

/// What a finished fit reports.
#[derive(Debug, Clone)]
pub struct FlowTrainSummary {
    pub train_rows: usize,
    pub val_rows: usize,
    pub steps: u64,
    pub epochs: usize,
    pub losses: FlowLosses,
    pub seconds: f64,
    pub resumed_from_step: Option<u64>,
    pub skipped_files: Vec<String>,
    pub model_path: PathBuf,
}

/// The latent series in memory, normalised, with the rows they offer.
pub struct LatentData {
    series: Vec<LatentSeries>,
    /// `(series, t)` with `t + 1` in the series.
    rows: Vec<(usize, usize)>,
    latent_len: usize,
    action_size: usize,
}

impl LatentData {
    /// Reads `paths`, normalising each latent by `stats`; unreadable files are returned apart.
    pub fn read(paths: &[PathBuf], spec: &FlowSpec, stats: &LatentStats) -> (Self, Vec<String>) {
        let latent_len = spec.latent_len();
        let mut series = Vec::new();
        let mut failed = Vec::new();
        for path in paths {
            match LatentSeries::read(path, Some(latent_len)) {
                Ok(mut s) if s.actions.ncols() == spec.action_size => {
                    let values = s.latents.as_slice_mut().expect("a standard array");
                    stats.normalise(values, latent_len);
                    series.push(s);
                }
                Ok(s) => failed.push(format!(
                    "{}: actions of {} numbers, the env has {}",
                    path.display(),
                    s.actions.ncols(),
                    spec.action_size
                )),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        let rows = series
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..s.len().saturating_sub(1)).map(move |t| (i, t)))
            .collect();
        let data = Self {
            series,
            rows,
            latent_len,
            action_size: spec.action_size,
        };
        (data, failed)
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    fn latent(&self, series: usize, t: usize) -> &[f32] {
        let row = self.series[series].latents.row(t);
        row.to_slice().expect("rows of a standard array")
    }

    fn action(&self, series: usize, t: usize) -> &[f32] {
        let row = self.series[series].actions.row(t);
        row.to_slice().expect("rows of a standard array")
    }

    /// The tensors of `rows` (indices into [`rows`](Self::rows)).
    fn batch<B: Backend>(
        &self,
        picks: &[usize],
        spec: &FlowSpec,
        device: &B::Device,
    ) -> RowTensors<B> {
        let (n, k, a) = (picks.len(), spec.context, self.action_size);
        let (c, s) = (spec.latent_channels, spec.latent_side);
        let mut context = Vec::with_capacity(n * k * self.latent_len);
        let mut actions = Vec::with_capacity(n * k * a);
        let mut target = Vec::with_capacity(n * self.latent_len);
        let mut next_action = Vec::with_capacity(n * a);
        let (mut done, mut reward) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for &pick in picks {
            let (f, t) = self.rows[pick];
            for back in (0..k).rev() {
                context.extend_from_slice(self.latent(f, t.saturating_sub(back)));
                match t.checked_sub(back) {
                    Some(u) => actions.extend_from_slice(self.action(f, u)),
                    None => actions.extend(std::iter::repeat_n(0.0, a)),
                }
            }
            target.extend_from_slice(self.latent(f, t + 1));
            next_action.extend_from_slice(self.action(f, t + 1));
            done.push(f32::from(self.series[f].dones[t + 1].min(1)));
            reward.push(self.series[f].rewards[t + 1]);
        }
        let t4 =
            |v: Vec<f32>, ch: usize| Tensor::from_data(TensorData::new(v, [n, ch, s, s]), device);
        let t2 = |v: Vec<f32>, w: usize| Tensor::from_data(TensorData::new(v, [n, w]), device);
        let context = t4(context, k * c);
        // The newest context latent is the heads' "previous".
        let previous = context.clone().narrow(1, (k - 1) * c, c);
        RowTensors {
            context,
            actions: t2(actions, k * a),
            target: t4(target, c),
            previous,
            next_action: t2(next_action, a),
            done: t2(done, 1),
            reward: t2(reward, 1),
        }
    }
}

/// One batch's data as tensors (`n` rows).
pub struct RowTensors<B: Backend> {
    /// `[n, K*C, S, S]`, normalised latents, oldest first.
    pub context: Tensor<B, 4>,
    /// `[n, K*A]`.
    pub actions: Tensor<B, 2>,
    /// The next latent, `[n, C, S, S]`.
    pub target: Tensor<B, 4>,
    /// The newest context latent, `[n, C, S, S]`: the heads' earlier latent.
    pub previous: Tensor<B, 4>,
    /// The action taken at the target latent, `[n, A]`.
    pub next_action: Tensor<B, 2>,
    /// Whether that action ended the episode, and its reward, `[n, 1]` each.
    pub done: Tensor<B, 2>,
    pub reward: Tensor<B, 2>,
}

impl<B: Backend> RowTensors<B> {
    /// Random rows of `spec`'s shapes: what the benchmark trains on.
    pub fn random(spec: &FlowSpec, n: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let (k, c, s, a) = (
            spec.context,
            spec.latent_channels,
            spec.latent_side,
            spec.action_size,
        );
        let context: Tensor<B, 4> = normal(rng, [n, k * c, s, s], device);
        Self {
            previous: context.clone().narrow(1, (k - 1) * c, c),
            context,
            actions: normal(rng, [n, k * a], device),
            target: normal(rng, [n, c, s, s], device),
            next_action: normal(rng, [n, a], device),
            done: Tensor::zeros([n, 1], device),
            reward: Tensor::ones([n, 1], device),
        }
    }
}

/// One step's losses.
#[derive(Debug, Clone, Copy)]
pub struct StepLosses {
    pub flow: f64,
    /// `None` when the batch had no shortcut rows.
    pub shortcut: Option<f64>,
    pub done: f64,
    pub reward: f64,
}

/// One Adam step of the dynamics (flow matching with `shortcut_rows` shortcut rows, context
/// noise up to `max_context_noise`) and the heads, on `rows`, with every draw from `rng`.
pub fn train_step<B: AutodiffBackend, O: Optimizer<DynamicsAndHeads<B>, B>>(
    model: DynamicsAndHeads<B>,
    optim: &mut O,
    rows: RowTensors<B>,
    (shortcut_rows, max_context_noise): (usize, f32),
    learning_rate: f64,
    rng: &mut ChaCha8Rng,
) -> (DynamicsAndHeads<B>, StepLosses) {
    let n = rows.target.dims()[0];
    let device = rows.target.device();
    let draws: RowDraws = shortcut::draw_rows(rng, n, shortcut_rows, max_context_noise);
    let noise = normal(rng, rows.target.dims(), &device);
    let context_eps = normal(rng, rows.context.dims(), &device);
    let flow = shortcut::shortcut_loss(
        &model.dynamics,
        TrainBatch {
            target: rows.target.clone(),
            context: rows.context,
            actions: rows.actions,
            noise,
            context_eps,
            rows: draws,
        },
    );
    let (done_logit, reward) = model
        .heads
        .forward(rows.previous, rows.target, rows.next_action);
    let done = done_loss(done_logit.reshape([n, 1]), rows.done, DONE_POS_WEIGHT);
    let reward = reward_loss(reward.reshape([n, 1]), rows.reward);
    let losses = StepLosses {
        flow: flow.flow,
        shortcut: flow.shortcut,
        done: scalar(done.clone()),
        reward: scalar(reward.clone()),
    };
    let loss = flow.loss + done + reward;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(learning_rate, model, grads), losses)
}

/// Standard normal draws from `rng` as a tensor of `dims`.
pub(crate) fn normal<B: Backend, const D: usize>(
    rng: &mut ChaCha8Rng,
    dims: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| StandardNormal.sample(rng))
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// Mean of a scalar tensor as f64.
fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    f64::from(t.into_scalar().elem::<f32>())
}

/// Splits the series into training and held-out files: every `round(1 / val_fraction)`-th.
fn split_series(paths: Vec<PathBuf>, val_fraction: f64) -> (Vec<PathBuf>, Vec<PathBuf>) {
    if val_fraction <= 0.0 || paths.len() < 2 {
        return (paths, Vec::new());
    }
    let every = ((1.0 / val_fraction).round() as usize).max(2);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, p) in paths.into_iter().enumerate() {
        if i % every == every - 1 {
            val.push(p);
        } else {
            train.push(p);
        }
    }
    if val.is_empty() {
        val.push(train.pop().expect("at least two series"));
    }
    (train, val)
}

/// Fits the dynamics and heads; resumes from `run_dir/flow/dynamics/state.json` unless `fresh`.
pub fn train_flow<B: AutodiffBackend>(
    config: &FlowTrainConfig,
    fresh: bool,
    device: &B::Device,
) -> anyhow::Result<FlowTrainSummary> {
    config.validate()?;
    let flow_path = flow_model_path(&config.run_dir);
    let run_model: FlowModel<B::InnerBackend> =
        flow_file::load(&flow_path, Some(config.env), device).with_context(|| {
            "the run has no flow model; run `dreamplay train-autoencoder` and `dreamplay encode-latents` first"
        })?;
    let spec = run_model.spec;
    let stats = run_model.latent_stats.clone().with_context(|| {
        format!(
            "{} has no latent statistics; run `dreamplay encode-latents --env {}` first",
            flow_path.display(),
            config.env
        )
    })?;
    let autoencoder = run_model
        .autoencoder
        .clone()
        .with_context(|| format!("{} holds no autoencoder", flow_path.display()))?;
    let paths = list_series(&latents_dir(&config.run_dir)).with_context(|| {
        format!(
            "no latent series; run `dreamplay encode-latents --env {}` first",
            config.env
        )
    })?;
    let (train_paths, val_paths) = split_series(paths, config.val_fraction);
    let (train, mut skipped) = LatentData::read(&train_paths, &spec, &stats);
    let (val, val_failed) = LatentData::read(&val_paths, &spec, &stats);
    skipped.extend(val_failed);
    if train.rows() < config.batch_size {
        bail!(
            "a batch of {} is larger than the {} training transitions in {}; lower --batch or collect more",
            config.batch_size,
            train.rows(),
            latents_dir(&config.run_dir).display()
        );
    }
    let dir = config.run_dir.join("flow").join("dynamics");
    let schedule = stage::Schedule {
        epochs: config.epochs,
        batches_per_epoch: train.rows() / config.batch_size,
        checkpoint_every: config.checkpoint_every,
    };
    let fingerprint = config.fingerprint();
    let state: Option<StageState<FlowLosses>> = stage::open(&dir, fresh, &fingerprint)?;
    B::seed(device, splitmix64(config.seed ^ 0x666c_6f77_6479_6e00));
    let mut model = DynamicsAndHeads {
        dynamics: spec.dynamics_config().init(device),
        heads: spec.end_heads_config().init(device),
    };
    let mut optim = adam::<B, DynamicsAndHeads<B>>(None);
    if let Some(s) = &state {
        let load = |path: &Path| {
            let saved = flow_file::load::<B>(path, Some(config.env), device)?;
            match (saved.dynamics, saved.end_heads) {
                (Some(dynamics), Some(heads)) => Ok(DynamicsAndHeads { dynamics, heads }),
                _ => bail!("{} lacks the dynamics or the heads", path.display()),
            }
        };
        (model, optim) = stage::restore(&dir, s, optim, load, device)?;
    }
    let resumed_from_step = state.as_ref().map(|s| s.step);
    let log = stage::loss_log(
        &dir,
        &[
            "step",
            "epoch",
            "flow",
            "shortcut",
            "done",
            "reward",
            "val_flow",
            "val_1_step",
            "val_2_steps",
            "val_4_steps",
        ],
        resumed_from_step,
    )?;
    let bar = stage::progress_bar(&schedule, state.as_ref());
    progress::say(
        &bar,
        format!(
            "train-flow {}: {} training transitions in {} series, {} held out; {} batches of {} per epoch ({} shortcut rows each){}",
            config.env,
            train.rows(),
            train.series.len(),
            val.rows(),
            schedule.batches_per_epoch,
            config.batch_size,
            config.shortcut_rows(),
            state.as_ref().map_or(String::new(), |s| format!(
                "; resuming at step {} (epoch {}, batch {})",
                s.step,
                s.epoch + 1,
                s.batch
            ))
        ),
    );
    for f in &skipped {
        progress::say(&bar, format!("skipping: {f}"));
    }
    let losses = state.as_ref().map_or(
        FlowLosses {
            flow: f64::NAN,
            shortcut: f64::NAN,
            done: f64::NAN,
            reward: f64::NAN,
            val_flow: None,
            val_sample: None,
        },
        |s| s.losses.clone(),
    );
    let mut fit = FlowFit {
        config,
        spec,
        stats,
        autoencoder,
        dir: &dir,
        train: &train,
        val: &val,
        order: Vec::new(),
        log,
        losses,
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
        &format!("flow dynamics ({}) loss", config.env),
        &["flow", "shortcut", "val_flow", "val_2_steps"],
    )?;
    Ok(FlowTrainSummary {
        train_rows: train.rows(),
        val_rows: val.rows(),
        steps: s.step,
        epochs: s.epoch,
        losses: s.losses,
        seconds: s.seconds,
        resumed_from_step,
        skipped_files: skipped,
        model_path: flow_path,
    })
}

struct FlowFit<'a, B: AutodiffBackend> {
    config: &'a FlowTrainConfig,
    spec: FlowSpec,
    stats: LatentStats,
    autoencoder: Autoencoder<B::InnerBackend>,
    dir: &'a Path,
    train: &'a LatentData,
    val: &'a LatentData,
    /// This epoch's row order.
    order: Vec<usize>,
    log: CsvLog,
    losses: FlowLosses,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> FlowFit<'_, B> {
    /// The held-out flow loss and 1/2/4-step sample errors, on fixed rows and draws.
    fn validate(&self, model: &DynamicsAndHeads<B::InnerBackend>) -> Option<(f64, [f64; 3])> {
        if self.val.rows() == 0 {
            return None;
        }
        let n = self.val.rows().min(VAL_ROWS);
        let picks: Vec<usize> = (0..n).map(|i| i * self.val.rows() / n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(self.config.seed ^ 0x7661_6c00));
        let rows = self
            .val
            .batch::<B::InnerBackend>(&picks, &self.spec, self.device);
        let noise = normal(&mut rng, rows.target.dims(), self.device);
        let eps = normal(&mut rng, rows.context.dims(), self.device);
        let draws = shortcut::draw_rows(&mut rng, n, 0, 0.0);
        let time: Tensor<B::InnerBackend, 1> =
            Tensor::from_data(TensorData::new(draws.time, [n]), self.device);
        let t4 = time.clone().reshape([n, 1, 1, 1]);
        let x_t = noise.clone() * (t4.clone().neg() + 1.0) + rows.target.clone() * t4;
        let velocity = model
            .dynamics
            .forward(crate::model::flow::dynamics::DynamicsInput {
                noisy: x_t,
                context: rows.context.clone(),
                actions: rows.actions.clone(),
                time,
                step_level: Tensor::full([n], shortcut::FLOW_LEVEL as i64, self.device),
                context_noise: Tensor::zeros([n], self.device),
            });
        let flow = scalar(
            (velocity - (rows.target.clone() - noise.clone()))
                .powi_scalar(2)
                .mean(),
        );
        let mut sample_errors = [0.0; 3];
        for (slot, steps) in sample_errors.iter_mut().zip([1, 2, 4]) {
            let sampling = Sampling {
                steps,
                temperature: 1.0,
                context_noise: 0.0,
            };
            let next = shortcut::sample(
                &model.dynamics,
                rows.context.clone(),
                rows.actions.clone(),
                noise.clone(),
                eps.clone(),
                &sampling,
            )
            .ok()?;
            *slot = scalar((next - rows.target.clone()).powi_scalar(2).mean());
        }
        Some((flow, sample_errors))
    }

    /// `samples.png`: for a few held-out rows, the real next frame (through the autoencoder)
    /// beside the dream's at 1, 2 and 4 steps, one row each.
    fn save_samples(&self, model: &DynamicsAndHeads<B::InnerBackend>) -> anyhow::Result<()> {
        const SHOWN: usize = 8;
        let data = if self.val.rows() > 0 {
            self.val
        } else {
            self.train
        };
        let n = data.rows().min(SHOWN);
        if n == 0 {
            return Ok(());
        }
        let picks: Vec<usize> = (0..n).map(|i| i * data.rows() / n).collect();
        let rows = data.batch::<B::InnerBackend>(&picks, &self.spec, self.device);
        let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(self.config.seed ^ 0x706e_6700));
        let noise = normal(&mut rng, rows.target.dims(), self.device);
        let eps = normal(&mut rng, rows.context.dims(), self.device);
        let mut latents = vec![rows.target.clone()];
        for steps in [1, 2, 4] {
            let sampling = Sampling {
                steps,
                temperature: 1.0,
                context_noise: 0.0,
            };
            latents.push(shortcut::sample(
                &model.dynamics,
                rows.context.clone(),
                rows.actions.clone(),
                noise.clone(),
                eps.clone(),
                &sampling,
            )?);
        }
        let side = self.spec.latent_side;
        let channels = self.spec.latent_channels;
        let mut grid = RgbImage::new((64 * n) as u32, (64 * latents.len()) as u32);
        for (r, latent) in latents.into_iter().enumerate() {
            let mut values = latent
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            self.stats.denormalise(&mut values, self.spec.latent_len());
            let latent = Tensor::<B::InnerBackend, 4>::from_data(
                TensorData::new(values, [n, channels, side, side]),
                self.device,
            );
            let frames = crate::model::vae::tensor_to_frames(self.autoencoder.decode(latent));
            for (c, frame) in frames.iter().enumerate() {
                for (x, y, px) in frame.enumerate_pixels() {
                    grid.put_pixel(c as u32 * 64 + x, r as u32 * 64 + y, Rgb(px.0));
                }
            }
        }
        let path = self.dir.join("samples.png");
        grid.save(&path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl<B: AutodiffBackend> GradientStage<B> for FlowFit<'_, B> {
    type Model = DynamicsAndHeads<B>;
    type Optim = OptimizerAdaptor<FusedAdam, DynamicsAndHeads<B>, B>;
    type Losses = FlowLosses;
    type Weights = FlowModel<B::InnerBackend>;

    fn begin_epoch(&mut self, epoch: usize) -> anyhow::Result<usize> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(splitmix64(self.config.seed ^ splitmix64(epoch as u64 + 1)));
        self.order = (0..self.train.rows()).collect();
        self.order.shuffle(&mut rng);
        Ok(self.train.rows() / self.config.batch_size)
    }

    fn train_batch(
        &mut self,
        model: Self::Model,
        mut optim: Self::Optim,
        at: BatchAt<'_>,
    ) -> anyhow::Result<(Self::Model, Self::Optim)> {
        let n = self.config.batch_size;
        let picks = &self.order[at.batch * n..(at.batch + 1) * n];
        let rows = self.train.batch::<B>(picks, &self.spec, self.device);
        let mut rng = ChaCha8Rng::seed_from_u64(
            splitmix64(self.config.seed ^ 0x666c_6f77_0000) ^ splitmix64(at.step),
        );
        let shortcut = (self.config.shortcut_rows(), self.config.max_context_noise);
        let (model, step) = train_step(
            model,
            &mut optim,
            rows,
            shortcut,
            self.config.learning_rate,
            &mut rng,
        );
        let (done_value, reward_value) = (step.done, step.reward);
        let shortcut_value = step.shortcut.unwrap_or(f64::NAN);
        self.losses.flow = stage::smoothed(self.losses.flow, step.flow);
        if step.shortcut.is_some() {
            self.losses.shortcut = stage::smoothed(self.losses.shortcut, shortcut_value);
        }
        self.losses.done = stage::smoothed(self.losses.done, done_value);
        self.losses.reward = stage::smoothed(self.losses.reward, reward_value);
        let nan = f64::NAN;
        self.log.row(&[
            at.step as f64,
            at.epoch as f64,
            step.flow,
            shortcut_value,
            done_value,
            reward_value,
            nan,
            nan,
            nan,
            nan,
        ])?;
        Ok((model, optim))
    }

    fn progress(&self, epoch: usize) -> String {
        format!(
            "epoch {} flow {:.3} shortcut {:.3} done {:.3}",
            epoch + 1,
            self.losses.flow,
            self.losses.shortcut,
            self.losses.done
        )
    }

    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()> {
        let inner = model.valid();
        if let Some((flow, samples)) = self.validate(&inner) {
            self.losses.val_flow = Some(flow);
            self.losses.val_sample = Some(samples);
            let nan = f64::NAN;
            self.log.row(&[
                at.step as f64 - 1.0,
                at.epoch as f64,
                nan,
                nan,
                nan,
                nan,
                flow,
                samples[0],
                samples[1],
                samples[2],
            ])?;
            progress::say(
                at.bar,
                format!(
                    "epoch {}: held-out flow {flow:.3}; next-latent error at 1/2/4 steps {:.3} / {:.3} / {:.3}",
                    at.epoch + 1,
                    samples[0],
                    samples[1],
                    samples[2]
                ),
            );
        }
        self.save_samples(&inner)
    }

    fn losses(&self) -> FlowLosses {
        self.losses.clone()
    }

    fn checkpoint_weights(&self, model: DynamicsAndHeads<B::InnerBackend>) -> Self::Weights {
        let mut flow = FlowModel::empty(self.spec);
        flow.dynamics = Some(model.dynamics);
        flow.end_heads = Some(model.heads);
        flow
    }

    fn write_run_bundle(
        &self,
        model: DynamicsAndHeads<B::InnerBackend>,
        state: &StageState<FlowLosses>,
    ) -> anyhow::Result<()> {
        let path = flow_model_path(&self.config.run_dir);
        let mut flow: FlowModel<B::InnerBackend> =
            flow_file::load(&path, Some(self.config.env), self.device)?;
        flow.dynamics = Some(model.dynamics);
        flow.end_heads = Some(model.heads);
        let l = &state.losses;
        let losses = stage::final_losses([
            ("flow", Some(l.flow)),
            ("shortcut", Some(l.shortcut)),
            ("done", Some(l.done)),
            ("reward", Some(l.reward)),
            ("val_flow", l.val_flow),
            ("val_1_step", l.val_sample.map(|s| s[0])),
            ("val_2_steps", l.val_sample.map(|s| s[1])),
            ("val_4_steps", l.val_sample.map(|s| s[2])),
        ]);
        flow.provenance.dynamics = Some(TrainingInfo {
            data_size: Some(self.train.rows() as u64),
            epochs: Some(state.epoch as u64),
            final_losses: losses,
            date: Some(now_rfc3339()),
            notes: Some(format!(
                "Adam lr {}, batch {} ({} shortcut rows), context noise up to {}, {} steps, {:.0} s",
                self.config.learning_rate,
                self.config.batch_size,
                self.config.shortcut_rows(),
                self.config.max_context_noise,
                state.step,
                state.seconds
            )),
            dream: None,
        });
        flow_file::save(&flow, &path, Precision::F32)?;
        Ok(())
    }
}
