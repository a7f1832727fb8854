//! `train-vae`: fits V on the collected frames, streaming them from disk.
//!
//! - **Streaming.** An epoch visits the training rollouts in a seeded random order, `chunk` files
//!   at a time; frames are shuffled within a chunk (plus what is left over from the last one), so
//!   RAM holds a few rollouts, never the data set. Consecutive frames are near-duplicates, so the
//!   chunk shuffle loses little against a global one.
//! - **Validation.** Every `1 / val_fraction`-th rollout (by file name) is held out; the held-out
//!   loss is V's reconstruction error at z = mu and its KL, on up to [`VAL_FRAMES`] frames.
//! - **Checkpoints.** Every `checkpoint_every` steps and at each epoch's end: the weights (our
//!   bundle format, f32), Adam's state (burn's record) and `state.json`, which is written last and
//!   names the checkpoint, so a kill at any moment resumes from a complete one. The batch plan of
//!   an epoch depends only on (seed, epoch), and each step's noise on (seed, step), so a resumed
//!   run takes the same batches as an unbroken one.
//! - **Departure from the paper:** Adam at 1e-3 (the paper: 1e-4 over 10M frames). We train on a
//!   hundred times fewer frames; the larger step reaches a lower loss in that budget.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
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

use super::collect::splitmix64;
use super::progress::{self, CsvLog};
use super::rollout::{FRAME_SIDE, Rollout, RolloutInfo, list_rollouts};
use super::stage::{self, BatchAt, GradientStage, StageState};
use crate::envs::EnvKind;
use crate::model::adam::{FusedAdam, adam};
use crate::model::bundle::{self, Expect, ModelSpec, Precision, TrainingInfo, WorldModel};
use crate::model::vae::{ConvVae, KL_TOLERANCE, vae_loss, vae_loss_with_sprites};

/// Held-out frames scored at each epoch's end (spread evenly over the validation rollouts).
pub const VAL_FRAMES: usize = 512;

/// How to fit V. The flags of `dreamplay train-vae`: their defaults are [`VaeTrainConfig::new`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct VaeTrainConfig {
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
    /// Adam's learning rate (the paper: 1e-4 over 100x more data).
    #[arg(long = "lr", default_value_t = 1e-3)]
    pub learning_rate: f64,
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
    /// whatever the stride; 0 treats them like any frame. May change when resuming.
    #[arg(long, default_value_t = 0)]
    pub hazard_repeats: usize,
    /// Count the squared error of the pixels the renderer marked as sprites (Take Cover's imps,
    /// stored in each rollout's `sprite_mask`) 1 + this many times; 0 is the paper's loss. May
    /// change when resuming.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub sprite_weight: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl VaeTrainConfig {
    /// The flags' defaults for `env`.
    pub fn new(env: EnvKind, data_dir: PathBuf, run_dir: PathBuf) -> Self {
        Self {
            data_dir,
            run_dir,
            ..super::flag_defaults(&["--env", env.name()])
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch must be at least 1");
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
        if !(self.sprite_weight.is_finite() && self.sprite_weight >= 0.0) {
            bail!(
                "--sprite-weight must be a number >= 0, got {}",
                self.sprite_weight
            );
        }
        if self.frame_stride == 0 || self.chunk == 0 || self.checkpoint_every == 0 {
            bail!("--frame-stride, --chunk and --checkpoint-every must be at least 1");
        }
        Ok(())
    }

    fn vae_dir(&self) -> PathBuf {
        self.run_dir.join("vae")
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
            "env {} data {} batch {} lr {} val {} stride {} chunk {} seed {}",
            self.env,
            self.data_dir.display(),
            self.batch_size,
            self.learning_rate,
            self.val_fraction,
            self.frame_stride,
            self.chunk,
            self.seed
        )
    }
}

/// V's part of `state.json`: its smoothed training losses and its last held-out ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VaeLosses {
    last_recon: f64,
    last_kl: f64,
    val_recon: Option<f64>,
    val_kl: Option<f64>,
}

type TrainState = StageState<VaeLosses>;

/// What a finished fit reports.
#[derive(Debug, Clone)]
pub struct VaeTrainSummary {
    pub train_frames: usize,
    pub val_frames: usize,
    pub steps: u64,
    pub epochs: usize,
    pub recon: f64,
    pub kl: f64,
    pub val_recon: Option<f64>,
    pub val_kl: Option<f64>,
    pub seconds: f64,
    pub resumed_from_step: Option<u64>,
    pub skipped_files: Vec<String>,
    pub model_path: PathBuf,
}

/// The rollouts split into training and held-out files, and the files that failed to read.
pub struct DataSplit {
    pub train: Vec<RolloutInfo>,
    pub val: Vec<RolloutInfo>,
    pub corrupt: Vec<String>,
}

/// Lists `dir` and holds out every `round(1 / val_fraction)`-th rollout (by file name).
pub fn split_rollouts(dir: &Path, val_fraction: f64) -> anyhow::Result<DataSplit> {
    let listing = list_rollouts(dir)
        .with_context(|| format!("cannot read the rollout folder {}", dir.display()))?;
    let corrupt: Vec<String> = listing.corrupt.iter().map(|e| e.to_string()).collect();
    if listing.valid.is_empty() {
        bail!(
            "no valid rollouts in {} ({} corrupt); run `dreamplay collect --out {}` first",
            dir.display(),
            corrupt.len(),
            dir.display()
        );
    }
    let every = if val_fraction > 0.0 && listing.valid.len() >= 2 {
        Some(((1.0 / val_fraction).round() as usize).max(2))
    } else {
        None
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, info) in listing.valid.into_iter().enumerate() {
        match every {
            Some(k) if i % k == k - 1 => val.push(info),
            _ => train.push(info),
        }
    }
    if every.is_some() && val.is_empty() {
        // Fewer files than one period: hold out the last one.
        val.push(train.pop().expect("at least two rollouts"));
    }
    Ok(DataSplit {
        train,
        val,
        corrupt,
    })
}

/// One frame of the plan: (index into the training files, step).
type FrameRef = (usize, usize);

/// A batch's frames as HWC bytes and their sprite masks, one each.
pub(crate) type FrameBatch = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// How an epoch's batches of frames are drawn: the options V and the flow model's autoencoder
/// share (see their flags).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FramePlan {
    pub env: EnvKind,
    pub batch_size: usize,
    pub frame_stride: usize,
    pub chunk: usize,
    pub hazard_repeats: usize,
    pub seed: u64,
}

/// Per training file, the steps whose frame shows a hazard; all empty when `hazard_repeats` is 0
/// (no file is read then). An unreadable file gets none: the frame cache reports it later.
fn hazard_steps(files: &[RolloutInfo], config: &FramePlan) -> Vec<Vec<usize>> {
    if config.hazard_repeats == 0 {
        return vec![Vec::new(); files.len()];
    }
    files
        .iter()
        .map(|info| match Rollout::read(&info.path) {
            Ok(r) => (0..r.len())
                .filter(|&t| {
                    r.frame(t)
                        .and_then(|f| f.as_slice().map(|px| config.env.shows_hazard(px)))
                        .unwrap_or(false)
                })
                .collect(),
            Err(_) => Vec::new(),
        })
        .collect()
}

/// An epoch's batches, in order; depends only on (files, hazards, config, epoch). Hazard frames
/// (see [`hazard_steps`]) leave the strided selection and join `hazard_repeats` times each.
fn epoch_plan(
    files: &[RolloutInfo],
    hazards: &[Vec<usize>],
    config: &FramePlan,
    epoch: usize,
) -> Vec<Vec<FrameRef>> {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(config.seed ^ splitmix64(epoch as u64 + 1)));
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    let mut pool: Vec<FrameRef> = Vec::new();
    for chunk in order.chunks(config.chunk) {
        for &f in chunk {
            let offset = if config.frame_stride > 1 {
                rand::Rng::random_range(&mut rng, 0..config.frame_stride)
            } else {
                0
            };
            let hazard = &hazards[f];
            pool.extend(
                (offset..files[f].len)
                    .step_by(config.frame_stride)
                    .filter(|t| hazard.binary_search(t).is_err())
                    .map(|t| (f, t)),
            );
            for _ in 0..config.hazard_repeats {
                pool.extend(hazard.iter().map(|&t| (f, t)));
            }
        }
        pool.shuffle(&mut rng);
        let whole = pool.len() / config.batch_size * config.batch_size;
        for batch in pool[..whole].chunks(config.batch_size) {
            batches.push(batch.to_vec());
        }
        // The remainder joins the next chunk's frames; the last epoch remainder is dropped.
        pool.drain(..whole);
    }
    batches
}

/// Frames in an epoch's batches.
fn plan_frames(plan: &[Vec<FrameRef>]) -> usize {
    plan.iter().map(Vec::len).sum()
}

/// u8 HWC frames (each [`FRAME_BYTES`]) to a `[n, 3, 64, 64]` tensor in [0, 1].
pub fn frames_u8_to_tensor<B: Backend>(frames: &[&[u8]], device: &B::Device) -> Tensor<B, 4> {
    let plane = FRAME_SIDE * FRAME_SIDE;
    let mut data = vec![0.0f32; frames.len() * 3 * plane];
    for (n, frame) in frames.iter().enumerate() {
        let base = n * 3 * plane;
        for (i, px) in frame.chunks_exact(3).enumerate() {
            data[base + i] = f32::from(px[0]) / 255.0;
            data[base + plane + i] = f32::from(px[1]) / 255.0;
            data[base + 2 * plane + i] = f32::from(px[2]) / 255.0;
        }
    }
    Tensor::from_data(
        TensorData::new(data, [frames.len(), 3, FRAME_SIDE, FRAME_SIDE]),
        device,
    )
}

/// 64x64 masks (row-major bytes, 0 or 1) to a `[n, 1, 64, 64]` tensor.
pub fn masks_u8_to_tensor<B: Backend>(masks: &[&[u8]], device: &B::Device) -> Tensor<B, 4> {
    let data: Vec<f32> = masks
        .iter()
        .flat_map(|mask| mask.iter().map(|&m| f32::from(m.min(1))))
        .collect();
    Tensor::from_data(
        TensorData::new(data, [masks.len(), 1, FRAME_SIDE, FRAME_SIDE]),
        device,
    )
}

/// The rollouts a plan needs, loaded on first use and dropped after their last batch.
struct FrameCache<'a> {
    files: &'a [RolloutInfo],
    loaded: HashMap<usize, Rollout>,
    last_use: HashMap<usize, usize>,
    /// Files that failed to read (skipped from then on), and their errors in order.
    unreadable: HashSet<usize>,
    failed: Vec<String>,
}

impl<'a> FrameCache<'a> {
    fn new(files: &'a [RolloutInfo], plan: &[Vec<FrameRef>]) -> Self {
        let mut last_use = HashMap::new();
        for (b, batch) in plan.iter().enumerate() {
            for &(f, _) in batch {
                last_use.insert(f, b);
            }
        }
        Self {
            files,
            loaded: HashMap::new(),
            last_use,
            unreadable: HashSet::new(),
            failed: Vec::new(),
        }
    }

    /// The batch's frames as HWC bytes, and their sprite masks (all zero where a file has none);
    /// frames of a file that fails to read are left out (and the failure reported once).
    fn batch(&mut self, b: usize, batch: &[FrameRef]) -> FrameBatch {
        let mut out = Vec::with_capacity(batch.len());
        let mut masks = Vec::with_capacity(batch.len());
        for &(f, t) in batch {
            if !self.loaded.contains_key(&f) {
                if self.unreadable.contains(&f) {
                    continue;
                }
                match Rollout::read(&self.files[f].path) {
                    Ok(r) => {
                        self.loaded.insert(f, r);
                    }
                    Err(e) => {
                        self.unreadable.insert(f);
                        self.failed.push(e.to_string());
                        continue;
                    }
                }
            }
            let rollout = &self.loaded[&f];
            if let Some(frame) = rollout.frame(t) {
                out.push(frame.iter().copied().collect());
                masks.push(mask_bytes(rollout, t));
            }
        }
        for &(f, _) in batch {
            if self.last_use.get(&f) == Some(&b) {
                self.loaded.remove(&f);
            }
        }
        (out, masks)
    }
}

/// The training frames, streamed epoch by epoch: each epoch's batch plan, the rollouts it needs
/// in memory, and the files that fail to read, each reported once. What V and the flow model's
/// autoencoder train on.
pub(crate) struct FrameStream<'a> {
    files: &'a [RolloutInfo],
    options: FramePlan,
    /// Per file, the steps whose frame shows a hazard (all empty without hazard repeats).
    hazards: Vec<Vec<usize>>,
    /// Epoch 0's plan, made up front to size the fit.
    plan0: Option<Vec<Vec<FrameRef>>>,
    plan: Vec<Vec<FrameRef>>,
    cache: Option<FrameCache<'a>>,
    /// The cache's failures already reported.
    reported_failures: usize,
    batches_per_epoch: usize,
    frames_per_epoch: usize,
}

impl<'a> FrameStream<'a> {
    /// Plans epoch 0 over `files`; an error when not one batch fits in them.
    pub(crate) fn new(files: &'a [RolloutInfo], options: FramePlan) -> anyhow::Result<Self> {
        let hazards = hazard_steps(files, &options);
        let plan0 = epoch_plan(files, &hazards, &options, 0);
        if plan0.is_empty() {
            bail!(
                "a batch of {} is larger than the training data ({} frames in {} rollouts at stride {}); lower --batch or collect more",
                options.batch_size,
                files.iter().map(|f| f.len).sum::<usize>(),
                files.len(),
                options.frame_stride
            );
        }
        Ok(Self {
            files,
            options,
            batches_per_epoch: plan0.len(),
            frames_per_epoch: plan_frames(&plan0),
            hazards,
            plan0: Some(plan0),
            plan: Vec::new(),
            cache: None,
            reported_failures: 0,
        })
    }

    /// Batches in an epoch (as in epoch 0; later epochs differ by a batch at most).
    pub(crate) fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// Frames in epoch 0's batches.
    pub(crate) fn frames_per_epoch(&self) -> usize {
        self.frames_per_epoch
    }

    /// Frames that show a hazard, over all files.
    pub(crate) fn hazard_frames(&self) -> usize {
        self.hazards.iter().map(Vec::len).sum()
    }

    /// Readies epoch `epoch`; returns its number of batches.
    pub(crate) fn begin_epoch(&mut self, epoch: usize) -> usize {
        self.plan = match self.plan0.take() {
            Some(plan) if epoch == 0 => plan,
            _ => epoch_plan(self.files, &self.hazards, &self.options, epoch),
        };
        self.cache = Some(FrameCache::new(self.files, &self.plan));
        self.reported_failures = 0;
        self.plan.len()
    }

    /// The frames of the batch `at` names and their sprite masks, as [`FrameCache::batch`]; a file
    /// that fails to read is said on the progress bar once.
    pub(crate) fn batch(&mut self, at: BatchAt<'_>) -> anyhow::Result<FrameBatch> {
        let cache = self
            .cache
            .as_mut()
            .context("an epoch begins before its batches")?;
        let batch = cache.batch(at.batch, &self.plan[at.batch]);
        for f in &cache.failed[self.reported_failures..] {
            progress::say(at.bar, format!("skipping: {f}"));
        }
        self.reported_failures = cache.failed.len();
        Ok(batch)
    }
}

/// Frame `t`'s sprite mask as 64x64 bytes, all zero when the rollout has none.
fn mask_bytes(rollout: &Rollout, t: usize) -> Vec<u8> {
    rollout.sprite_mask(t).map_or_else(
        || vec![0; FRAME_SIDE * FRAME_SIDE],
        |mask| mask.iter().copied().collect(),
    )
}

/// Held-out frames and their sprite masks.
pub(crate) struct Validation {
    pub frames: Vec<Vec<u8>>,
    pub masks: Vec<Vec<u8>>,
}

/// Up to [`VAL_FRAMES`] frames spread evenly over the held-out rollouts.
pub(crate) fn validation_frames(val: &[RolloutInfo]) -> (Validation, Vec<String>) {
    let mut frames = Vec::new();
    let mut masks = Vec::new();
    let mut failed = Vec::new();
    if val.is_empty() {
        return (Validation { frames, masks }, failed);
    }
    let per_file = VAL_FRAMES.div_ceil(val.len()).max(1);
    for info in val {
        match Rollout::read(&info.path) {
            Ok(r) => {
                let stride = (r.len() / per_file).max(1);
                for t in (0..r.len()).step_by(stride).take(per_file) {
                    if let Some(frame) = r.frame(t) {
                        frames.push(frame.iter().copied().collect());
                        masks.push(mask_bytes(&r, t));
                    }
                }
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    frames.truncate(VAL_FRAMES);
    masks.truncate(VAL_FRAMES);
    (Validation { frames, masks }, failed)
}

/// Mean squared error per frame over the pixels in the sprite masks (z = mu): how much of the
/// imps V misses. `None` when no mask marks anything.
pub fn sprite_error<B: Backend>(
    vae: &ConvVae<B>,
    frames: &[Vec<u8>],
    masks: &[Vec<u8>],
    device: &B::Device,
) -> Option<f64> {
    if masks.iter().all(|m| m.iter().all(|&v| v == 0)) {
        return None;
    }
    let mut sum = 0.0;
    for (chunk, mask_chunk) in frames.chunks(64).zip(masks.chunks(64)) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let mask_refs: Vec<&[u8]> = mask_chunk.iter().map(Vec::as_slice).collect();
        let x = frames_u8_to_tensor::<B>(&refs, device);
        let recon = vae.decode(vae.encode(x.clone()).0);
        let mask = masks_u8_to_tensor::<B>(&mask_refs, device);
        let error = ((recon - x).powi_scalar(2) * mask).sum();
        sum += f64::from(error.into_scalar().elem::<f32>());
    }
    Some(sum / frames.len().max(1) as f64)
}

/// Mean (reconstruction, KL) per frame over `frames`, with z = mu.
pub fn evaluate<B: Backend>(
    vae: &ConvVae<B>,
    frames: &[Vec<u8>],
    device: &B::Device,
) -> (f64, f64) {
    let mut recon_sum = 0.0;
    let mut kl_sum = 0.0;
    for chunk in frames.chunks(64) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let x = frames_u8_to_tensor::<B>(&refs, device);
        let (mu, logvar) = vae.encode(x.clone());
        let recon = vae.decode(mu.clone());
        let (_, r, kl) = vae_loss(recon, x, mu, logvar, KL_TOLERANCE);
        let n = chunk.len() as f64;
        recon_sum += f64::from(r.into_scalar().elem::<f32>()) * n;
        kl_sum += f64::from(kl.into_scalar().elem::<f32>()) * n;
    }
    let n = frames.len().max(1) as f64;
    (recon_sum / n, kl_sum / n)
}

/// `n` frames spread evenly over `frames` (which run in file order), or all of them if fewer.
pub(crate) fn spread(frames: &[Vec<u8>], n: usize) -> Vec<&[u8]> {
    let n = n.min(frames.len());
    (0..n)
        .map(|i| frames[i * frames.len() / n].as_slice())
        .collect()
}

/// A PNG grid of `picks`, `columns` to a row: originals on odd rows, their reconstructions
/// (`reconstruct`: V's at z = mu, or the flow model's autoencoder's) below them, 4x nearest.
pub fn save_reconstruction_grid<B: Backend>(
    reconstruct: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    picks: &[&[u8]],
    columns: usize,
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<()> {
    const SCALE: u32 = 4;
    let n = picks.len();
    if n == 0 {
        return Ok(());
    }
    let recon = reconstruct(frames_u8_to_tensor::<B>(picks, device));
    let recon = crate::model::vae::tensor_to_frames(recon);
    let side = FRAME_SIDE as u32 * SCALE;
    let rows = n.div_ceil(columns) as u32 * 2;
    let mut grid = RgbImage::from_pixel(side * columns as u32, side * rows, Rgb([0, 0, 0]));
    for (i, (orig, rec)) in picks.iter().zip(&recon).enumerate() {
        let (col, row) = ((i % columns) as u32, (i / columns) as u32 * 2);
        for y in 0..side {
            for x in 0..side {
                let (sx, sy) = ((x / SCALE) as usize, (y / SCALE) as usize);
                let k = (sy * FRAME_SIDE + sx) * 3;
                grid.put_pixel(
                    col * side + x,
                    row * side + y,
                    Rgb([orig[k], orig[k + 1], orig[k + 2]]),
                );
                grid.put_pixel(
                    col * side + x,
                    (row + 1) * side + y,
                    *rec.get_pixel(sx as u32, sy as u32),
                );
            }
        }
    }
    grid.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Fits V; resumes from `run_dir/vae/state.json` unless `fresh`.
pub fn train_vae<B: AutodiffBackend>(
    config: &VaeTrainConfig,
    fresh: bool,
    device: &B::Device,
) -> anyhow::Result<VaeTrainSummary> {
    config.validate()?;
    let split = split_rollouts(&config.data_dir, config.val_fraction)?;
    if config.sprite_weight > 0.0
        && let Some(plain) = split.train.iter().find(|f| !f.has_sprite_mask)
    {
        bail!(
            "--sprite-weight needs rollouts with a sprite_mask (Take Cover's, from collect's format 2), \
             but {} has none: collect again, or leave --sprite-weight at 0",
            plain.path.display()
        );
    }
    let vae_dir = config.vae_dir();
    std::fs::create_dir_all(&vae_dir)
        .with_context(|| format!("cannot create {}", vae_dir.display()))?;

    let frames = FrameStream::new(&split.train, config.frame_plan())?;
    let frames_per_epoch = frames.frames_per_epoch();
    let train_frames: usize = split.train.iter().map(|f| f.len).sum();
    let schedule = stage::Schedule {
        epochs: config.epochs,
        batches_per_epoch: frames.batches_per_epoch(),
        checkpoint_every: config.checkpoint_every,
    };

    let fingerprint = config.fingerprint();
    let state: Option<TrainState> = stage::open(&vae_dir, fresh, &fingerprint)?;
    let spec = ModelSpec::paper(config.env);
    // burn's initialisers draw from the backend's generator: seed it, so a run is the same bytes.
    B::seed(device, splitmix64(config.seed ^ 0x7661_6569_6e69_7400));
    let mut model: ConvVae<B> = spec.vae_config().init(device);
    let mut optim = adam::<B, ConvVae<B>>(None);
    if let Some(s) = &state {
        let load = |path: &Path| Ok(bundle::load_vae::<B>(path, &Expect::spec(&spec), device)?);
        (model, optim) = stage::restore(&vae_dir, s, optim, load, device)?;
    }
    let resumed_from_step = state.as_ref().map(|s| s.step);
    let (validation, val_failed) = validation_frames(&split.val);
    // The held-out frames that show a hazard: scored apart, since they are few and the point.
    let val_hazards: Vec<Vec<u8>> = validation
        .frames
        .iter()
        .filter(|f| config.env.shows_hazard(f))
        .cloned()
        .collect();

    let log = stage::loss_log(
        &vae_dir,
        &["step", "epoch", "recon", "kl", "val_recon", "val_kl"],
        resumed_from_step,
    )?;

    let bar = stage::progress_bar(&schedule, state.as_ref());
    progress::say(
        &bar,
        format!(
            "train-vae {}: {} training rollouts ({} frames, {} per epoch at stride {}{}), {} held out; {} batches of {} per epoch{}",
            config.env,
            split.train.len(),
            train_frames,
            frames_per_epoch,
            config.frame_stride,
            if config.hazard_repeats > 0 {
                format!(
                    ", {} hazard frames x {}",
                    frames.hazard_frames(),
                    config.hazard_repeats
                )
            } else {
                String::new()
            },
            split.val.len(),
            schedule.batches_per_epoch,
            config.batch_size,
            match &state {
                Some(s) => format!(
                    "; resuming at step {} (epoch {}, batch {})",
                    s.step,
                    s.epoch + 1,
                    s.batch
                ),
                None => String::new(),
            }
        ),
    );
    for c in split.corrupt.iter().chain(&val_failed) {
        progress::say(&bar, format!("skipping: {c}"));
    }

    let losses = state.as_ref().map_or(
        VaeLosses {
            last_recon: f64::NAN,
            last_kl: f64::NAN,
            val_recon: None,
            val_kl: None,
        },
        |s| s.losses.clone(),
    );
    let mut fit = VaeFit {
        config,
        spec,
        dir: &vae_dir,
        frames,
        validation: &validation,
        val_hazards: &val_hazards,
        log,
        losses,
        last_frames: Vec::new(),
        frames_per_epoch,
        device,
    };
    let s = stage::fit(
        &mut fit,
        &vae_dir,
        &fingerprint,
        &schedule,
        state,
        model,
        optim,
        &bar,
    )?;
    stage::plot_losses(
        &vae_dir,
        &format!("V ({}) loss per frame", config.env),
        &["recon", "val_recon", "kl", "val_kl"],
    )?;
    Ok(VaeTrainSummary {
        train_frames,
        val_frames: validation.frames.len(),
        steps: s.step,
        epochs: s.epoch,
        recon: s.losses.last_recon,
        kl: s.losses.last_kl,
        val_recon: s.losses.val_recon,
        val_kl: s.losses.val_kl,
        seconds: s.seconds,
        resumed_from_step,
        skipped_files: split.corrupt.into_iter().chain(val_failed).collect(),
        model_path: super::run_model_path(&config.run_dir),
    })
}

/// V's own part of the fit: the streamed frames, its step, its held-out scores and pictures.
struct VaeFit<'a, B: AutodiffBackend> {
    config: &'a VaeTrainConfig,
    spec: ModelSpec,
    dir: &'a Path,
    frames: FrameStream<'a>,
    validation: &'a Validation,
    val_hazards: &'a [Vec<u8>],
    log: CsvLog,
    losses: VaeLosses,
    /// The last batch's frames, shown when there are no held-out ones.
    last_frames: Vec<Vec<u8>>,
    frames_per_epoch: usize,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> GradientStage<B> for VaeFit<'_, B> {
    type Model = ConvVae<B>;
    type Optim = OptimizerAdaptor<FusedAdam, ConvVae<B>, B>;
    type Losses = VaeLosses;
    type Weights = WorldModel<B::InnerBackend>;

    fn begin_epoch(&mut self, epoch: usize) -> anyhow::Result<usize> {
        Ok(self.frames.begin_epoch(epoch))
    }

    fn train_batch(
        &mut self,
        model: Self::Model,
        optim: Self::Optim,
        at: BatchAt<'_>,
    ) -> anyhow::Result<(Self::Model, Self::Optim)> {
        let (frames, masks) = self.frames.batch(at)?;
        if frames.is_empty() {
            self.last_frames = frames;
            return Ok((model, optim));
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mask_refs: Vec<&[u8]> = masks.iter().map(Vec::as_slice).collect();
        let (model, optim, recon, kl) = train_step(
            model,
            optim,
            &refs,
            &mask_refs,
            self.config,
            at.step,
            self.device,
        );
        self.losses.last_recon = stage::smoothed(self.losses.last_recon, recon);
        self.losses.last_kl = stage::smoothed(self.losses.last_kl, kl);
        self.log.row(&[
            at.step as f64,
            at.epoch as f64,
            recon,
            kl,
            f64::NAN,
            f64::NAN,
        ])?;
        self.last_frames = frames;
        Ok((model, optim))
    }

    fn progress(&self, epoch: usize) -> String {
        format!(
            "epoch {} recon {:.1} kl {:.1}",
            epoch + 1,
            self.losses.last_recon,
            self.losses.last_kl
        )
    }

    fn end_epoch(&mut self, model: &Self::Model, at: BatchAt<'_>) -> anyhow::Result<()> {
        let (inner, device) = (model.valid(), self.device);
        let val_frames = &self.validation.frames;
        let val_hazards = self.val_hazards;
        let val = (!val_frames.is_empty()).then(|| evaluate(&inner, val_frames, device));
        self.losses.val_recon = val.map(|v| v.0);
        self.losses.val_kl = val.map(|v| v.1);
        if let Some((vr, vk)) = val {
            let row = [
                at.step as f64 - 1.0,
                at.epoch as f64,
                f64::NAN,
                f64::NAN,
                vr,
                vk,
            ];
            self.log.row(&row)?;
            let mut hazard_note = if val_hazards.is_empty() {
                String::new()
            } else {
                let (hr, _) = evaluate(&inner, val_hazards, device);
                format!(", {hr:.2} on the {} that show a hazard", val_hazards.len())
            };
            if let Some(se) = sprite_error(&inner, val_frames, &self.validation.masks, device) {
                hazard_note += &format!(", {se:.2} of it on sprite pixels");
            }
            progress::say(
                at.bar,
                format!(
                    "epoch {}: held-out recon {vr:.2} per frame{hazard_note}",
                    at.epoch + 1
                ),
            );
        }
        let shown = if val_frames.is_empty() {
            &self.last_frames
        } else {
            val_frames
        };
        // The second row shows hazards where there are any, so the PNG answers "does V see them?".
        let picks = if val_hazards.len() >= 8 && shown.len() >= 8 {
            let mut picks = spread(shown, 8);
            picks.extend(spread(val_hazards, 8));
            picks
        } else {
            spread(shown, 16)
        };
        save_reconstruction_grid(
            |x| inner.decode(inner.encode(x).0),
            &picks,
            8,
            &self.dir.join("reconstructions.png"),
            device,
        )
    }

    fn losses(&self) -> VaeLosses {
        self.losses.clone()
    }

    fn checkpoint_weights(&self, vae: ConvVae<B::InnerBackend>) -> WorldModel<B::InnerBackend> {
        let mut bundle = WorldModel::empty(self.spec);
        bundle.vae = Some(vae);
        bundle
    }

    fn write_run_bundle(
        &self,
        vae: ConvVae<B::InnerBackend>,
        state: &TrainState,
    ) -> anyhow::Result<()> {
        write_run_bundle(self.config, &self.spec, &vae, state, self.frames_per_epoch)
    }
}

/// One Adam step on a batch; returns the model, the optimiser and the batch's (recon, kl).
fn train_step<B: AutodiffBackend, O: Optimizer<ConvVae<B>, B>>(
    model: ConvVae<B>,
    mut optim: O,
    frames: &[&[u8]],
    sprite_masks: &[&[u8]],
    config: &VaeTrainConfig,
    step: u64,
    device: &B::Device,
) -> (ConvVae<B>, O, f64, f64) {
    let (lr, seed) = (config.learning_rate, config.seed);
    let x = frames_u8_to_tensor::<B>(frames, device);
    let (mu, logvar) = model.encode(x.clone());
    // The noise comes from our own seeded stream, so a step is the same on any backend and resume.
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(seed ^ 0x5641_4500) ^ splitmix64(step));
    let [n, zs] = mu.dims();
    let eps: Vec<f32> = (0..n * zs)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let eps = Tensor::from_data(TensorData::new(eps, [n, zs]), device);
    let z = ConvVae::reparameterize_with(mu.clone(), logvar.clone(), eps);
    let recon = model.decode(z);
    let (loss, r, kl) = if config.sprite_weight > 0.0 {
        vae_loss_with_sprites(
            recon,
            x,
            masks_u8_to_tensor::<B>(sprite_masks, device),
            mu,
            logvar,
            KL_TOLERANCE,
            config.sprite_weight,
        )
    } else {
        vae_loss(recon, x, mu, logvar, KL_TOLERANCE)
    };
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    let r = f64::from(r.into_scalar().elem::<f32>());
    let kl = f64::from(kl.into_scalar().elem::<f32>());
    (model, optim, r, kl)
}

/// Writes V into the run's bundle. A new V invalidates any M and C trained on the old one's z, so
/// the bundle then holds V alone.
fn write_run_bundle<B: Backend>(
    config: &VaeTrainConfig,
    spec: &ModelSpec,
    vae: &ConvVae<B>,
    state: &TrainState,
    frames_per_epoch: usize,
) -> anyhow::Result<()> {
    let mut bundle = WorldModel::<B>::empty(*spec);
    bundle.vae = Some(vae.clone());
    let losses = stage::final_losses([
        ("recon", Some(state.losses.last_recon)),
        ("kl", Some(state.losses.last_kl)),
        ("val_recon", state.losses.val_recon),
        ("val_kl", state.losses.val_kl),
    ]);
    bundle.provenance.vae = Some(TrainingInfo {
        data_size: Some(frames_per_epoch as u64),
        epochs: Some(state.epoch as u64),
        final_losses: losses,
        date: Some(now_rfc3339()),
        notes: Some(format!(
            "Adam lr {}, batch {}, frame stride {}{}{}, {} steps, {:.0} s on {}",
            config.learning_rate,
            config.batch_size,
            config.frame_stride,
            if config.hazard_repeats > 0 {
                format!(", hazard frames x {} (last epoch)", config.hazard_repeats)
            } else {
                String::new()
            },
            if config.sprite_weight > 0.0 {
                format!(
                    ", sprite pixels x {} (last epoch)",
                    1.0 + config.sprite_weight
                )
            } else {
                String::new()
            },
            state.step,
            state.seconds,
            std::any::type_name::<B>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
        )),
        dream: None,
    });
    let path = super::run_model_path(&config.run_dir);
    bundle::save(&bundle, &path, Precision::F32)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_files(lens: &[usize]) -> Vec<RolloutInfo> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| RolloutInfo {
                path: PathBuf::from(format!("rollout-{i}.npz")),
                len,
                action_dim: 1,
                total_reward: 0.0,
                terminated: true,
                env_seed: None,
                has_sprite_mask: false,
                bytes: 0,
            })
            .collect()
    }

    #[test]
    fn a_negative_or_nan_sprite_weight_is_refused() {
        let mut config = VaeTrainConfig::new(EnvKind::TakeCover, "d".into(), "r".into());
        config.sprite_weight = 30.0;
        assert!(config.validate().is_ok());
        for bad in [-1.0, f32::NAN, f32::INFINITY] {
            config.sprite_weight = bad;
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("--sprite-weight"), "{err}");
        }
    }

    #[test]
    fn hazard_frames_skip_the_stride_and_repeat() {
        let files = fake_files(&[40, 33, 57]);
        let hazards = vec![vec![1, 2, 3, 30], vec![], vec![0, 56]];
        let mut config = VaeTrainConfig::new(EnvKind::TakeCover, "d".into(), "r".into());
        config.batch_size = 1;
        config.frame_stride = 4;
        config.hazard_repeats = 3;
        for epoch in 0..3 {
            let plan = epoch_plan(&files, &hazards, &config.frame_plan(), epoch);
            let mut uses = std::collections::HashMap::<FrameRef, usize>::new();
            for frame in plan.iter().flatten() {
                *uses.entry(*frame).or_default() += 1;
            }
            for (f, steps) in hazards.iter().enumerate() {
                for &t in steps {
                    assert_eq!(uses.get(&(f, t)), Some(&3), "hazard frame ({f}, {t})");
                }
                let ordinary: Vec<usize> = uses
                    .iter()
                    .filter(|((file, t), _)| *file == f && !steps.contains(t))
                    .map(|(&(_, t), &n)| {
                        assert_eq!(n, 1, "an ordinary frame is used once");
                        t
                    })
                    .collect();
                // One stride phase per file per epoch.
                let phase = ordinary[0] % 4;
                assert!(
                    ordinary.iter().all(|t| t % 4 == phase),
                    "file {f}: {ordinary:?}"
                );
                let expected = (phase..files[f].len)
                    .step_by(4)
                    .filter(|t| !steps.contains(t))
                    .count();
                assert_eq!(ordinary.len(), expected, "file {f}");
            }
        }
        // Without repeats the plan is the strided one, as before hazards existed.
        config.hazard_repeats = 0;
        let none = vec![Vec::new(); files.len()];
        let plan = epoch_plan(&files, &none, &config.frame_plan(), 0);
        for (f, info) in files.iter().enumerate() {
            let n = plan.iter().flatten().filter(|(file, _)| *file == f).count();
            assert!(
                (info.len / 4..=info.len.div_ceil(4)).contains(&n),
                "file {f}: {n}"
            );
        }
    }
}
