//! `dreamplay train-vae`, `encode` and `train-mdrnn`: thin wrappers over [`crate::train`].

use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::Args;

use super::parse_env;
use crate::envs::EnvKind;
use crate::model::backend;
use crate::train::progress::human_duration;
use crate::train::vae::{VaeTrainConfig, train_vae};

/// Where `collect` puts an env's rollouts unless told: `data/<env>`.
pub(crate) fn default_data_dir(env: EnvKind) -> PathBuf {
    PathBuf::from("data").join(env.name())
}

/// The run folder the stages share unless told: `runs/<env>`.
pub(crate) fn default_run_dir(env: EnvKind) -> PathBuf {
    PathBuf::from("runs").join(env.name())
}

/// Picks the backend (printing why, when it fell back) and says which one runs.
fn select_backend(flag: Option<&str>) -> backend::Selection {
    let selection = backend::select(flag);
    if let Some(note) = &selection.note {
        eprintln!("{note}");
    }
    eprintln!("backend: {}", selection.backend.describe());
    selection
}

/// The options every stage shares: which env, where the data and the run live, the backend.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// The rollouts from `dreamplay collect` (default: data/<env>).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The run folder the stages share (default: runs/<env>).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// auto (wgpu on a hardware GPU, else flex), wgpu or flex; DREAMPLAY_BACKEND works too.
    #[arg(long)]
    pub backend: Option<String>,
    /// Ignore any checkpoint and start over.
    #[arg(long)]
    pub fresh: bool,
}

impl StageArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| default_data_dir(self.env))
    }
    pub fn run_dir(&self) -> PathBuf {
        self.run
            .clone()
            .unwrap_or_else(|| default_run_dir(self.env))
    }
}

#[derive(Debug, Args)]
pub struct TrainVaeArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Passes over the training frames.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam's learning rate (the paper: 1e-4 over 100x more data).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Share of the rollouts held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Train on every n-th frame (consecutive frames are near-duplicates).
    #[arg(long, default_value_t = 1)]
    pub frame_stride: usize,
    /// Use each frame that shows a hazard (Take Cover's fireballs) this many times per epoch,
    /// whatever the stride; 0 treats them like any frame. May change when resuming.
    #[arg(long, default_value_t = 0)]
    pub hazard_repeats: usize,
    /// Count the squared error of the pixels the renderer marked as sprites (Take Cover's imps,
    /// stored in each rollout's `sprite_mask`) 1 + this many times; 0 is the paper's loss. May
    /// change when resuming.
    #[arg(long, default_value_t = 0.0)]
    pub sprite_weight: f32,
    /// Rollouts held in memory at once (frames are shuffled within them).
    #[arg(long, default_value_t = 16)]
    pub chunk: usize,
    /// Batches between checkpoints within an epoch.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn train_vae_cmd(args: TrainVaeArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let mut config = VaeTrainConfig::new(stage.env, stage.data_dir(), stage.run_dir());
    config.epochs = args.epochs;
    config.batch_size = args.batch;
    config.learning_rate = args.lr;
    config.val_fraction = args.val_fraction;
    config.frame_stride = args.frame_stride;
    config.chunk = args.chunk;
    config.hazard_repeats = args.hazard_repeats;
    config.sprite_weight = args.sprite_weight;
    config.checkpoint_every = args.checkpoint_every;
    config.seed = args.seed;
    let selection = select_backend(stage.backend.as_deref());
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_vae::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    println!(
        "V trained: {} steps, {} epochs, {} training frames, in {} (this session{})",
        summary.steps,
        summary.epochs,
        summary.train_frames,
        human_duration(summary.seconds),
        summary
            .resumed_from_step
            .map_or(String::new(), |s| format!(", resumed at step {s}"))
    );
    println!(
        "train loss per frame: recon {:.2}, kl {:.2}",
        summary.recon, summary.kl
    );
    if let (Some(r), Some(k)) = (summary.val_recon, summary.val_kl) {
        println!(
            "held-out ({} frames, z = mu): recon {:.2}, kl {:.2}",
            summary.val_frames, r, k
        );
    }
    for f in &summary.skipped_files {
        println!("skipped: {f}");
    }
    println!(
        "wrote {} (V), {}/vae/loss.csv, loss.png, reconstructions.png",
        summary.model_path.display(),
        config.run_dir.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Frames encoded per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// More rollout folders to encode into the same run (repeatable), e.g. rollouts of another
    /// data policy; their series are named `<folder name>_rollout_NNNNN.npz`, and M trains on all.
    #[arg(long, value_name = "DIR")]
    pub more_data: Vec<PathBuf>,
}

pub fn encode_cmd(args: EncodeArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let selection = select_backend(stage.backend.as_deref());
    if stage.fresh {
        // A series is redone whenever its V differs; --fresh redoes the rest too.
        let _ = std::fs::remove_dir_all(stage.run_dir().join("series"));
    }
    let data_dirs: Vec<PathBuf> = std::iter::once(stage.data_dir())
        .chain(args.more_data.iter().cloned())
        .collect();
    let started = std::time::Instant::now();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        crate::train::encode::encode_all::<B>(
            &data_dirs,
            &stage.run_dir(),
            args.batch.max(1),
            &device,
        )
    })?;
    println!(
        "{}: {} rollouts encoded ({} frames) in {}, {} already done, {} skipped",
        summary.out_dir.display(),
        summary.encoded,
        summary.frames,
        human_duration(started.elapsed().as_secs_f64()),
        summary.skipped,
        summary.failed.len()
    );
    for f in &summary.failed {
        println!("skipped: {f}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TrainMdrnnArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Steps per window (backpropagation through time).
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
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

pub fn train_mdrnn_cmd(args: TrainMdrnnArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let mut config = crate::train::mdrnn::MdrnnTrainConfig::new(stage.env, stage.run_dir());
    config.epochs = args.epochs;
    config.batch_size = args.batch;
    config.seq_len = args.seq_len;
    config.learning_rate = args.lr;
    config.val_fraction = args.val_fraction;
    config.checkpoint_every = args.checkpoint_every;
    config.seed = args.seed;
    config.burn_in = args.burn_in;
    config.warm_start = args.warm_start;
    let selection = select_backend(stage.backend.as_deref());
    let s = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| {
            crate::train::mdrnn::train_mdrnn::<Autodiff<B>>(&config, stage.fresh, &device)
        })
    })?;
    println!(
        "M trained: {} steps, {} epochs over {} episodes ({} steps each epoch), in {}{}",
        s.steps,
        s.epochs,
        s.episodes,
        s.steps_per_epoch,
        human_duration(s.seconds),
        s.resumed_from_step
            .map_or(String::new(), |r| format!(", resumed at step {r}"))
    );
    println!(
        "train loss: mdn {:.3}, done {:.3}, reward {:.4}",
        s.losses[0], s.losses[1], s.losses[2]
    );
    if let Some(v) = s.val {
        println!(
            "held-out ({} episodes): mdn {:.3}, done {:.3}, reward {:.4}",
            s.val_episodes, v[0], v[1], v[2]
        );
    }
    for f in &s.skipped_files {
        println!("skipped: {f}");
    }
    println!(
        "wrote {} (V + M), {}/mdrnn/loss.csv, loss.png",
        s.model_path.display(),
        config.run_dir.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// The run folder (default: runs/<env>).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The rollouts the run was trained on (default: data/<env>), for the model card.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The models folder the app loads from.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Real episodes to score C and the random policy on, for the model card (0: skip).
    #[arg(long, default_value_t = 100)]
    pub eval_episodes: usize,
    /// Dream temperatures to score C at, for the model card.
    #[arg(long, value_delimiter = ',', default_value = "1.0,1.15")]
    pub dream_tau: Vec<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto (wgpu on a hardware GPU, else flex), wgpu or flex; DREAMPLAY_BACKEND works too.
    #[arg(long)]
    pub backend: Option<String>,
}

pub fn export_cmd(args: ExportArgs) -> anyhow::Result<()> {
    let config = crate::train::export::ExportConfig {
        env: args.env,
        run_dir: args
            .run
            .clone()
            .unwrap_or_else(|| default_run_dir(args.env)),
        data_dir: Some(
            args.data
                .clone()
                .unwrap_or_else(|| default_data_dir(args.env)),
        ),
        models_dir: args.out.clone(),
        eval_episodes: args.eval_episodes,
        dream_taus: args.dream_tau.clone(),
        seed: args.seed,
    };
    let selection = select_backend(args.backend.as_deref());
    let s = crate::with_backend!(&selection.backend, |B, device| {
        crate::train::export::export::<B>(&config, &device)
    })?;
    println!(
        "wrote {} ({:.1} MB, f16)",
        s.bundle.display(),
        s.bytes as f64 / 1e6
    );
    if let (Some(real), Some(random)) = (&s.real, &s.random) {
        println!("C, real env: {}", real.describe("episodes"));
        println!("random policy: {}", random.describe("episodes"));
        for (tau, d) in &s.dream {
            println!("C in the dream at tau {tau}: {}", d.describe("dreams"));
        }
    }
    println!("model card: {}", s.card.display());
    Ok(())
}
