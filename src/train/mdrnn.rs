//! `train-mdrnn`: fits M on the encoded series.
//!
//! - **Windows.** An epoch is `steps / seq_len` windows of up to `seq_len` steps, each from an
//!   episode drawn in proportion to its length, starting uniformly in `[0, T - 1]` and cut at the
//!   episode's end. So every step from `seq_len - 1` on, the final (done) step included, is in a
//!   window equally often. The LSTM starts each window from zeros, as in the paper.
//!   Starting in `[0, T - seq_len]`, as this did before, put Take Cover's death step in about 1
//!   window in 270: M saw ~5 deaths an epoch, and its done head learnt only the base rate (the
//!   same ~0.001 a step whether a fireball was about to hit or not), so the dream's deaths were
//!   luck that no C could dodge.
//! - **Burn-in** (`burn_in`, off by default). A window that starts mid-episode from a zero state
//!   teaches M that a zero state may be any step, near a death too, while a dream always starts
//!   from one at an episode's first frame. With burn-in each row first runs through up to
//!   `burn_in` earlier steps with no loss on them (never before the episode's start), so the
//!   losses see a zero state only at an episode's first step.
//! - **z is re-sampled** from each frame's mu/logvar every time a window is drawn (the paper's
//!   augmentation); the same draw is step t's input and step t-1's target.
//! - **Losses**: the mixture's negative log-likelihood per z dim, the done cross-entropy with done
//!   weighted x10 (the paper), and the reward's squared error (our addition, so CarRacing can train
//!   in the dream). The last step of an episode has no next z; it still teaches done and reward.
//! - **CarRacing**: an episode is cut at its first `done` (leaving the playfield, -100): the data
//!   was collected with done suppressed, and what follows is the car on an empty field.
//! - Checkpoints and resume as in [`super::vae`]; Adam at 1e-3 with gradient norm clipped at 1
//!   (the paper's M settings).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};

use super::collect::splitmix64;
use super::encode::{Series, list_series, vae_id};
use super::progress::{self, CsvLog};
use super::stage::{self, BatchAt, GradientStage, StageState};
use crate::envs::EnvKind;
use crate::model::adam::{FusedAdam, adam};
use crate::model::bundle::{self, Expect, ModelSpec, TrainingInfo, WorldModel};
use crate::model::mdrnn::{DONE_POS_WEIGHT, MdnRnn, done_reward_loss_masked, mdn_loss_masked};

/// Validation windows scored at each epoch's end.
pub const VAL_WINDOWS: usize = 64;

/// How to fit M. The flags of `dreamplay train-mdrnn`: their defaults are [`MdrnnTrainConfig::new`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct MdrnnTrainConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    #[arg(skip)]
    pub run_dir: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Windows per batch.
    #[arg(long = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Steps per window (backpropagation through time).
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
    #[arg(long = "lr", default_value_t = 1e-3)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps of context run before each window, with no loss on them (0: the paper's windows).
    /// Windows start anywhere in an episode; without context their zero state also means "some
    /// step in mid-episode", while a dream starts from a zero state at the episode's first frame.
    #[arg(long, default_value_t = 0)]
    pub burn_in: usize,
    /// On a fresh start, begin from the M already in the run's bundle instead of new weights
    /// (e.g. to go on under another --burn-in).
    #[arg(long)]
    pub warm_start: bool,
}

impl MdrnnTrainConfig {
    /// The flags' defaults for `env`.
    pub fn new(env: EnvKind, run_dir: PathBuf) -> Self {
        Self {
            run_dir,
            ..super::flag_defaults(&["--env", env.name()])
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0
            || self.batch_size == 0
            || self.seq_len == 0
            || self.checkpoint_every == 0
        {
            bail!("--epochs, --batch, --seq-len and --checkpoint-every must be at least 1");
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
        Ok(())
    }

    fn fingerprint(&self, vae_id: u64) -> String {
        format!(
            "env {} vae {vae_id:016x} batch {} seq {} lr {} val {} seed {}",
            self.env,
            self.batch_size,
            self.seq_len,
            self.learning_rate,
            self.val_fraction,
            self.seed
        ) + &if self.burn_in > 0 {
            // Only when set, so that runs from before the option still resume.
            format!(" burn-in {}", self.burn_in)
        } else {
            String::new()
        }
    }
}

/// One episode's series, flattened, cut where M should stop learning from it.
struct Episode {
    len: usize,
    mu: Vec<f32>,
    sigma: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
}

impl Episode {
    fn from_series(s: &Series, env: EnvKind) -> Self {
        let mut len = s.len();
        if env == EnvKind::CarRacing
            && let Some(first) = s.dones.iter().position(|&d| d == 1)
        {
            len = first + 1;
        }
        let zs = s.z_size();
        let a = s.actions.ncols();
        let flat = |v: &ndarray::Array2<f32>, width: usize| {
            v.iter().take(len * width).copied().collect::<Vec<_>>()
        };
        Self {
            len,
            mu: flat(&s.mu, zs),
            sigma: flat(&s.logvar, zs)
                .into_iter()
                .map(|lv| (0.5 * lv).exp())
                .collect(),
            actions: flat(&s.actions, a),
            rewards: s.rewards.iter().take(len).copied().collect(),
            dones: s.dones.iter().take(len).map(|&d| f32::from(d)).collect(),
        }
    }
}

/// A window: (episode, start step).
type Window = (usize, usize);

/// The tensors of one batch of windows, on the host.
#[derive(Clone)]
struct Batch {
    z: Vec<f32>,
    actions: Vec<f32>,
    target: Vec<f32>,
    next_mask: Vec<f32>,
    step_mask: Vec<f32>,
    dones: Vec<f32>,
    rewards: Vec<f32>,
}

/// One batch of windows, each row `burn_in + l` steps: up to `burn_in` steps of context before
/// the window's start (clipped at the episode's start), on which no loss is taken, then the `l`
/// steps that are learnt from.
fn make_batch(
    episodes: &[Episode],
    windows: &[Window],
    l: usize,
    burn_in: usize,
    zs: usize,
    a: usize,
    rng: &mut ChaCha8Rng,
) -> Batch {
    let b = windows.len();
    let rl = burn_in + l;
    let mut out = Batch {
        z: vec![0.0; b * rl * zs],
        actions: vec![0.0; b * rl * a],
        target: vec![0.0; b * rl * zs],
        next_mask: vec![0.0; b * rl],
        step_mask: vec![0.0; b * rl],
        dones: vec![0.0; b * rl],
        rewards: vec![0.0; b * rl],
    };
    let mut sampled = vec![0.0f32; (rl + 1) * zs];
    for (w, &(e, start)) in windows.iter().enumerate() {
        let ep = &episodes[e];
        let first = start.saturating_sub(burn_in);
        let lead = start - first;
        let steps = (ep.len - first).min(lead + l + 1);
        for j in 0..steps {
            let t = first + j;
            for d in 0..zs {
                let eps: f32 = StandardNormal.sample(rng);
                sampled[j * zs + d] = ep.mu[t * zs + d] + ep.sigma[t * zs + d] * eps;
            }
        }
        for j in 0..(lead + l).min(ep.len - first) {
            let t = first + j;
            let row = w * rl + j;
            out.z[row * zs..(row + 1) * zs].copy_from_slice(&sampled[j * zs..(j + 1) * zs]);
            out.actions[row * a..(row + 1) * a].copy_from_slice(&ep.actions[t * a..(t + 1) * a]);
            if j < lead {
                // Context only: M runs through it, but no loss is taken.
                continue;
            }
            out.step_mask[row] = 1.0;
            out.dones[row] = ep.dones[t];
            out.rewards[row] = ep.rewards[t];
            if j + 1 < steps {
                out.target[row * zs..(row + 1) * zs]
                    .copy_from_slice(&sampled[(j + 1) * zs..(j + 2) * zs]);
                out.next_mask[row] = 1.0;
            }
        }
    }
    out
}

/// The windows of an epoch (depends only on the episodes, the config and the epoch).
fn epoch_windows(
    episodes: &[Episode],
    config: &MdrnnTrainConfig,
    epoch: u64,
    salt: u64,
) -> Vec<Window> {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(config.seed ^ salt) ^ splitmix64(epoch + 1));
    let total: usize = episodes.iter().map(|e| e.len).sum();
    let count = total.div_ceil(config.seq_len).max(1);
    let mut cumulative = Vec::with_capacity(episodes.len());
    let mut acc = 0usize;
    for e in episodes {
        acc += e.len;
        cumulative.push(acc);
    }
    (0..count)
        .map(|_| {
            let pick = rng.random_range(0..total);
            let e = cumulative.partition_point(|&c| c <= pick);
            // Any start, so the last steps are in as many windows as the middle ones; a window
            // that runs past the end is cut there (masked in the batch).
            (e, rng.random_range(0..episodes[e].len.max(1)))
        })
        .collect()
}

/// M's part of `state.json`: its smoothed (mdn, done, reward) losses and its last held-out ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MdrnnLosses {
    losses: [f64; 3],
    val: Option<[f64; 3]>,
}

type TrainState = StageState<MdrnnLosses>;

/// What a finished fit reports.
#[derive(Debug, Clone)]
pub struct MdrnnTrainSummary {
    pub episodes: usize,
    pub steps_per_epoch: usize,
    pub val_episodes: usize,
    pub steps: u64,
    pub epochs: usize,
    /// Smoothed training (mdn, done, reward).
    pub losses: [f64; 3],
    pub val: Option<[f64; 3]>,
    pub seconds: f64,
    pub resumed_from_step: Option<u64>,
    pub skipped_files: Vec<String>,
    pub model_path: PathBuf,
}

struct Tensors<B: Backend> {
    z: Tensor<B, 3>,
    actions: Tensor<B, 3>,
    target: Tensor<B, 3>,
    next_mask: Tensor<B, 2>,
    step_mask: Tensor<B, 2>,
    dones: Tensor<B, 2>,
    rewards: Tensor<B, 2>,
}

fn to_tensors<B: Backend>(
    batch: Batch,
    b: usize,
    l: usize,
    zs: usize,
    a: usize,
    device: &B::Device,
) -> Tensors<B> {
    let t3 =
        |v: Vec<f32>, w: usize| Tensor::<B, 3>::from_data(TensorData::new(v, [b, l, w]), device);
    let t2 = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [b, l]), device);
    Tensors {
        z: t3(batch.z, zs),
        actions: t3(batch.actions, a),
        target: t3(batch.target, zs),
        next_mask: t2(batch.next_mask),
        step_mask: t2(batch.step_mask),
        dones: t2(batch.dones),
        rewards: t2(batch.rewards),
    }
}

/// (total, [mdn, done, reward]) of M on a batch.
fn losses<B: Backend>(model: &MdnRnn<B>, t: Tensors<B>) -> (Tensor<B, 1>, [Tensor<B, 1>; 3]) {
    let out = model.forward(t.z, t.actions, None);
    let mdn = mdn_loss_masked(&out.mixture, t.target, t.next_mask);
    let (done, reward) = done_reward_loss_masked(
        out.done_logit,
        t.dones,
        out.reward,
        t.rewards,
        t.step_mask,
        DONE_POS_WEIGHT,
    );
    (
        mdn.clone() + done.clone() + reward.clone(),
        [mdn, done, reward],
    )
}

fn scalars<B: Backend>(parts: [Tensor<B, 1>; 3]) -> [f64; 3] {
    parts.map(|p| f64::from(p.into_scalar().elem::<f32>()))
}

/// Loads every series in `run_dir/series` made by the run's V, split into (train, val) episodes.
fn load_episodes(
    config: &MdrnnTrainConfig,
    spec: &ModelSpec,
    vae_id: u64,
) -> anyhow::Result<(Vec<Episode>, Vec<Episode>, Vec<String>)> {
    let dir = config.run_dir.join("series");
    let paths = list_series(&dir)?;
    let mut skipped = Vec::new();
    let mut all = Vec::new();
    for path in paths {
        match Series::read(&path) {
            Ok(s) if s.vae_id != vae_id => skipped.push(format!(
                "{}: encoded by another V; run `dreamplay encode` again",
                path.display()
            )),
            Ok(s) if s.z_size() != spec.z_size || s.actions.ncols() != spec.action_size => skipped
                .push(format!(
                    "{}: z size {} and action size {}, expected {} and {}",
                    path.display(),
                    s.z_size(),
                    s.actions.ncols(),
                    spec.z_size,
                    spec.action_size
                )),
            Ok(s) => all.push(Episode::from_series(&s, config.env)),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    if all.is_empty() {
        bail!(
            "no usable series in {} ({} skipped); run `dreamplay encode --env {}` first",
            dir.display(),
            skipped.len(),
            config.env
        );
    }
    let every = (config.val_fraction > 0.0 && all.len() >= 2)
        .then(|| ((1.0 / config.val_fraction).round() as usize).max(2));
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, e) in all.into_iter().enumerate() {
        match every {
            Some(k) if i % k == k - 1 => val.push(e),
            _ => train.push(e),
        }
    }
    if every.is_some() && val.is_empty() {
        val.push(train.pop().expect("two episodes"));
    }
    Ok((train, val, skipped))
}

/// Fits M on the run's series; resumes from `run_dir/mdrnn/state.json` unless `fresh`.
pub fn train_mdrnn<B: AutodiffBackend>(
    config: &MdrnnTrainConfig,
    fresh: bool,
    device: &B::Device,
) -> anyhow::Result<MdrnnTrainSummary> {
    config.validate()?;
    let spec = ModelSpec::paper(config.env);
    let bundle_path = super::run_model_path(&config.run_dir);
    let vae_id = vae_id(&bundle_path)?;
    let (train, val, skipped) = load_episodes(config, &spec, vae_id)?;
    let (zs, a, l, bs) = (
        spec.z_size,
        spec.action_size,
        config.seq_len,
        config.batch_size,
    );
    let burn_in = config.burn_in;
    let steps_per_epoch: usize = train.iter().map(|e| e.len).sum();
    let windows0 = epoch_windows(&train, config, 0, 0);
    if windows0.len() < bs {
        bail!(
            "a batch of {bs} windows is more than an epoch holds ({} windows of {l} steps in {steps_per_epoch} steps); lower --batch or --seq-len",
            windows0.len()
        );
    }
    let batches_per_epoch = windows0.len() / bs;

    let dir = config.run_dir.join("mdrnn");
    let fingerprint = config.fingerprint(vae_id);
    let state: Option<TrainState> = stage::open(&dir, fresh, &fingerprint)?;
    // burn's initialisers draw from the backend's generator: seed it, so a run is the same bytes.
    B::seed(device, splitmix64(config.seed ^ 0x6d64_6e69_6e69_7400));
    let mut model: MdnRnn<B> = spec.mdrnn_config().init(device);
    if state.is_none() && config.warm_start {
        model = bundle::load::<B>(&bundle_path, &Expect::spec(&spec), device)?
            .mdrnn
            .with_context(|| {
                format!(
                    "--warm-start: {} holds no M to start from",
                    bundle_path.display()
                )
            })?;
    }
    let mut optim = adam::<B, MdnRnn<B>>(Some(GradientClippingConfig::Norm(1.0)));
    if let Some(s) = &state {
        let load = |path: &Path| Ok(bundle::load_mdrnn::<B>(path, &Expect::spec(&spec), device)?);
        (model, optim) = stage::restore(&dir, s, optim, load, device)?;
    }
    let resumed_from_step = state.as_ref().map(|s| s.step);

    // A fixed validation set: windows and z draws from a constant seed.
    let val_batches: Vec<Batch> = if val.is_empty() {
        Vec::new()
    } else {
        let mut windows = epoch_windows(&val, config, 0, 0x7661_6c00);
        windows.truncate(VAL_WINDOWS);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7661_6c01);
        windows
            .chunks(bs)
            .map(|w| make_batch(&val, w, l, burn_in, zs, a, &mut rng))
            .collect()
    };

    let log = stage::loss_log(
        &dir,
        &[
            "step",
            "epoch",
            "mdn",
            "done",
            "reward",
            "val_mdn",
            "val_done",
            "val_reward",
        ],
        resumed_from_step,
    )?;
    let schedule = stage::Schedule {
        epochs: config.epochs,
        batches_per_epoch,
        checkpoint_every: config.checkpoint_every,
    };
    let bar = stage::progress_bar(&schedule, state.as_ref());
    progress::say(
        &bar,
        format!(
            "train-mdrnn {}: {} episodes ({steps_per_epoch} steps), {} held out; {batches_per_epoch} batches of {bs} x {l} steps per epoch{}",
            config.env,
            train.len(),
            val.len(),
            match resumed_from_step {
                Some(s) => format!("; resuming at step {s}"),
                None => String::new(),
            }
        ),
    );
    for s in &skipped {
        progress::say(&bar, format!("skipping: {s}"));
    }
    let losses = state.as_ref().map_or(
        MdrnnLosses {
            losses: [f64::NAN; 3],
            val: None,
        },
        |s| s.losses.clone(),
    );
    let mut fit = MdrnnFit {
        config,
        spec,
        bundle_path: &bundle_path,
        train: &train,
        windows0: Some(windows0),
        windows: Vec::new(),
        batches_per_epoch,
        val_batches: &val_batches,
        log,
        losses,
        steps_per_epoch,
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
        &format!("M ({}) losses", config.env),
        &["mdn", "val_mdn", "done", "val_done", "reward", "val_reward"],
    )?;
    Ok(MdrnnTrainSummary {
        episodes: train.len(),
        steps_per_epoch,
        val_episodes: val.len(),
        steps: s.step,
        epochs: s.epoch,
        losses: s.losses.losses,
        val: s.losses.val,
        seconds: s.seconds,
        resumed_from_step,
        skipped_files: skipped,
        model_path: bundle_path,
    })
}

/// M's own part of the fit: the windows of the series, its step and its held-out losses.
struct MdrnnFit<'a, B: AutodiffBackend> {
    config: &'a MdrnnTrainConfig,
    spec: ModelSpec,
    bundle_path: &'a Path,
    train: &'a [Episode],
    /// Epoch 0's windows, made up front to size the fit.
    windows0: Option<Vec<Window>>,
    windows: Vec<Window>,
    batches_per_epoch: usize,
    val_batches: &'a [Batch],
    log: CsvLog,
    losses: MdrnnLosses,
    steps_per_epoch: usize,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> MdrnnFit<'_, B> {
    /// (z size, action size, window length with its burn-in).
    fn dims(&self) -> (usize, usize, usize) {
        let c = self.config;
        (
            self.spec.z_size,
            self.spec.action_size,
            c.seq_len + c.burn_in,
        )
    }
}

impl<B: AutodiffBackend> GradientStage<B> for MdrnnFit<'_, B> {
    type Model = MdnRnn<B>;
    type Optim = OptimizerAdaptor<FusedAdam, MdnRnn<B>, B>;
    type Losses = MdrnnLosses;
    type Weights = WorldModel<B::InnerBackend>;

    fn begin_epoch(&mut self, epoch: usize) -> anyhow::Result<usize> {
        self.windows = match self.windows0.take() {
            Some(windows) if epoch == 0 => windows,
            _ => epoch_windows(self.train, self.config, epoch as u64, 0),
        };
        Ok(self.batches_per_epoch)
    }

    fn train_batch(
        &mut self,
        model: Self::Model,
        mut optim: Self::Optim,
        at: BatchAt<'_>,
    ) -> anyhow::Result<(Self::Model, Self::Optim)> {
        let config = self.config;
        let (zs, a, rl) = self.dims();
        let bs = config.batch_size;
        let mut rng =
            ChaCha8Rng::seed_from_u64(splitmix64(config.seed ^ 0x4d00) ^ splitmix64(at.step));
        let batch = make_batch(
            self.train,
            &self.windows[at.batch * bs..(at.batch + 1) * bs],
            config.seq_len,
            config.burn_in,
            zs,
            a,
            &mut rng,
        );
        let (loss, parts) = losses(&model, to_tensors::<B>(batch, bs, rl, zs, a, self.device));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(config.learning_rate, model, grads);
        let values = scalars(parts);
        for (e, v) in self.losses.losses.iter_mut().zip(values) {
            *e = stage::smoothed(*e, v);
        }
        self.log.row(&[
            at.step as f64,
            at.epoch as f64,
            values[0],
            values[1],
            values[2],
            f64::NAN,
            f64::NAN,
            f64::NAN,
        ])?;
        Ok((model, optim))
    }

    fn progress(&self, epoch: usize) -> String {
        let ema = self.losses.losses;
        format!(
            "epoch {} mdn {:.3} done {:.3} reward {:.3}",
            epoch + 1,
            ema[0],
            ema[1],
            ema[2]
        )
    }

    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()> {
        if self.val_batches.is_empty() {
            return Ok(());
        }
        let (zs, a, rl) = self.dims();
        let inner = model.valid();
        let mut sum = [0.0; 3];
        for vb in self.val_batches {
            let n = vb.step_mask.len() / rl;
            let t = to_tensors::<B::InnerBackend>(vb.clone(), n, rl, zs, a, self.device);
            let v = scalars(losses(&inner, t).1);
            for k in 0..3 {
                sum[k] += v[k] / self.val_batches.len() as f64;
            }
        }
        self.losses.val = Some(sum);
        self.log.row(&[
            at.step as f64 - 1.0,
            at.epoch as f64,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            sum[0],
            sum[1],
            sum[2],
        ])?;
        Ok(())
    }

    fn losses(&self) -> MdrnnLosses {
        self.losses.clone()
    }

    fn checkpoint_weights(&self, mdrnn: MdnRnn<B::InnerBackend>) -> WorldModel<B::InnerBackend> {
        let mut weights = WorldModel::empty(self.spec);
        weights.mdrnn = Some(mdrnn);
        weights
    }

    fn write_run_bundle(
        &self,
        mdrnn: MdnRnn<B::InnerBackend>,
        state: &TrainState,
    ) -> anyhow::Result<()> {
        write_run_bundle::<B::InnerBackend>(
            self.config,
            self.bundle_path,
            &mdrnn,
            state,
            self.steps_per_epoch,
            self.device,
        )
    }
}

/// Adds M to the run's bundle (keeping V). A new M invalidates a C evolved on the old one, so any
/// C is dropped.
fn write_run_bundle<B: Backend>(
    config: &MdrnnTrainConfig,
    bundle_path: &Path,
    mdrnn: &MdnRnn<B>,
    state: &TrainState,
    steps_per_epoch: usize,
    device: &B::Device,
) -> anyhow::Result<()> {
    let mut bundle = bundle::load::<B>(bundle_path, &Expect::env(config.env), device)?;
    bundle.mdrnn = Some(mdrnn.clone());
    bundle.controller = None;
    bundle.provenance.controller = None;
    let losses = stage::final_losses(["mdn", "done", "reward"].iter().enumerate().flat_map(
        |(k, name)| {
            [
                (name.to_string(), Some(state.losses.losses[k])),
                (format!("val_{name}"), state.losses.val.map(|v| v[k])),
            ]
        },
    ));
    bundle.provenance.mdrnn = Some(TrainingInfo {
        data_size: Some(steps_per_epoch as u64),
        epochs: Some(state.epoch as u64),
        final_losses: losses,
        date: Some(super::vae::now_rfc3339()),
        notes: Some(format!(
            "Adam lr {}, grad norm clip 1, batch {} x {} steps{}, {} steps, {:.0} s",
            config.learning_rate,
            config.batch_size,
            config.seq_len,
            if config.burn_in > 0 {
                format!(" after up to {} of context", config.burn_in)
            } else {
                String::new()
            },
            state.step,
            state.seconds
        )),
        dream: None,
    });
    bundle::save_over_run(&bundle, bundle_path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(len: usize) -> Episode {
        Episode {
            len,
            mu: vec![0.0; len],
            sigma: vec![1.0; len],
            actions: vec![0.0; len],
            rewards: vec![0.0; len],
            dones: (0..len)
                .map(|t| f32::from(u8::from(t + 1 == len)))
                .collect(),
        }
    }

    /// The done step must be seen about as often as any other step: windows that start
    /// only in [0, T - seq_len] reach it once in T - seq_len + 1, and M never learns death.
    #[test]
    fn windows_reach_the_done_step_as_often_as_the_middle() {
        let episodes: Vec<Episode> = [300, 350, 420, 500].map(episode).into();
        let mut config = MdrnnTrainConfig::new(EnvKind::TakeCover, PathBuf::from("unused"));
        config.seq_len = 100;
        let windows: Vec<Window> = (0..20)
            .flat_map(|epoch| epoch_windows(&episodes, &config, epoch, 0))
            .collect();
        let covers = |(_, start): &Window, t: usize| *start <= t && t < start + config.seq_len;
        let count = |step_of: &dyn Fn(usize) -> usize| {
            windows
                .iter()
                .filter(|w| covers(w, step_of(episodes[w.0].len)))
                .count() as f64
        };
        let last = count(&|len| len - 1);
        let middle = count(&|len| len / 2);
        assert!(
            last > 0.7 * middle && last < 1.3 * middle,
            "windows with the last step {last}, with the middle step {middle}"
        );
        // Each window is in its episode.
        assert!(windows.iter().all(|&(e, start)| start < episodes[e].len));
    }

    /// With burn-in, a window's row runs from up to `burn_in` steps before its start (never
    /// before the episode's first step) and takes losses only from its start on, so a zero state
    /// is trained on only at an episode's first step.
    #[test]
    fn burn_in_rows_carry_context_without_loss() {
        let mut ep = episode(30);
        // z_t = t and action_t = t, so each row's position can be read back.
        ep.mu = (0..30).map(|t| t as f32).collect();
        ep.sigma = vec![0.0; 30];
        ep.actions = (0..30).map(|t| t as f32).collect();
        let (l, burn_in) = (8, 5);
        let windows = [(0, 12), (0, 3), (0, 0), (0, 27)];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let b = make_batch(&[ep], &windows, l, burn_in, 1, 1, &mut rng);
        let rl = l + burn_in;
        let row = |w: usize| w * rl..(w + 1) * rl;
        // Mid-episode: 5 steps of context (7..12), losses on 12..20.
        assert_eq!(b.actions[row(0)][..6], [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        assert_eq!(
            b.step_mask[row(0)],
            [vec![0.0; 5], vec![1.0; 8]].concat()[..]
        );
        assert_eq!(b.target[5], 13.0, "step 12's target is z_13");
        // Near the start the context is clipped at step 0: 3 steps (0..3), losses on 3..11.
        assert_eq!(b.actions[row(1)][..4], [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            b.step_mask[row(1)],
            [vec![0.0; 3], vec![1.0; 8], vec![0.0; 2]].concat()[..]
        );
        // A window at the start has no context: a zero state meets the first frame.
        assert_eq!(b.step_mask[row(2)][0], 1.0);
        // At the end: context 22..27, losses on 27..30, the death at 29 with no next z.
        let end = &b.step_mask[row(3)];
        assert_eq!(end.iter().sum::<f32>(), 3.0);
        assert_eq!(b.dones[3 * rl + 7], 1.0);
        assert_eq!(b.next_mask[3 * rl + 7], 0.0);
        assert_eq!(b.next_mask[3 * rl + 6], 1.0);
    }
}
