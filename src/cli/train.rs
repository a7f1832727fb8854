//! `dreamplay train-vae`, `encode` and `train-mdrnn`: thin wrappers over [`crate::train`].

use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::Args;

use super::{BackendArg, RunDirs};
use crate::envs::EnvKind;
use crate::model::backend;
use crate::train::export::ExportConfig;
use crate::train::mdrnn::{MdrnnTrainConfig, train_mdrnn};
use crate::train::progress::human_duration;
use crate::train::vae::{VaeTrainConfig, train_vae};

/// The options every stage shares beside its config: where the data and the run live, the
/// backend, and whether to start over.
#[derive(Debug, Args)]
pub struct StageArgs {
    #[command(flatten)]
    pub dirs: RunDirs,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Ignore any checkpoint and start over.
    #[arg(long)]
    pub fresh: bool,
}

impl StageArgs {
    /// Picks the backend and says which one runs.
    pub(super) fn select_backend(&self) -> backend::Selection {
        let selection = self.backend.select();
        eprintln!("backend: {}", selection.backend.describe());
        selection
    }
}

/// The line a gradient stage prints when it is done: what, its steps and epochs, the data it
/// trained on, and this run's wall time.
pub(super) fn print_trained(
    what: &str,
    steps: u64,
    epochs: usize,
    data: &str,
    seconds: f64,
    resumed_from_step: Option<u64>,
) {
    println!(
        "{what}: {steps} steps, {epochs} epoch{}, {data}, in {} (this run{})",
        if epochs == 1 { "" } else { "s" },
        human_duration(seconds),
        resumed_from_step.map_or(String::new(), |s| format!(", resumed at step {s}"))
    );
}

#[derive(Debug, Args)]
pub struct TrainVaeArgs {
    #[command(flatten)]
    pub config: VaeTrainConfig,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub fn train_vae_cmd(args: TrainVaeArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let config = VaeTrainConfig {
        data_dir: stage.dirs.data_dir(args.config.env),
        run_dir: stage.dirs.run_dir(args.config.env),
        ..args.config
    };
    let selection = stage.select_backend();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_vae::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    print_trained(
        "V trained",
        summary.steps,
        summary.epochs,
        &format!("{} training frames", summary.train_frames),
        summary.seconds,
        summary.resumed_from_step,
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
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = super::parse_env)]
    pub env: EnvKind,
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
    let run_dir = stage.dirs.run_dir(args.env);
    let selection = stage.select_backend();
    if stage.fresh {
        // A series is redone whenever its V differs; --fresh redoes the rest too.
        let _ = std::fs::remove_dir_all(run_dir.join("series"));
    }
    let data_dirs: Vec<PathBuf> = std::iter::once(stage.dirs.data_dir(args.env))
        .chain(args.more_data.iter().cloned())
        .collect();
    let started = std::time::Instant::now();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        crate::train::encode::encode_all::<B>(&data_dirs, &run_dir, args.batch.max(1), &device)
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
    pub config: MdrnnTrainConfig,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub fn train_mdrnn_cmd(args: TrainMdrnnArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let config = MdrnnTrainConfig {
        run_dir: stage.dirs.run_dir(args.config.env),
        ..args.config
    };
    let selection = stage.select_backend();
    let s = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_mdrnn::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    print_trained(
        "M trained",
        s.steps,
        s.epochs,
        &format!(
            "{} episodes ({} steps each epoch)",
            s.episodes, s.steps_per_epoch
        ),
        s.seconds,
        s.resumed_from_step,
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
    #[command(flatten)]
    pub config: ExportConfig,
    #[command(flatten)]
    pub dirs: RunDirs,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Instead of exporting: put the C of this run folder into the shipped bundle as an extra C,
    /// beside the default one, leaving V, M and the other Cs as they are, and list the Cs in the
    /// model card.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["run", "data"])]
    pub add_controller: Option<PathBuf>,
    /// The added C's name (default: by its dream, e.g. "C, evolved at tau 0.1").
    #[arg(long, value_name = "NAME", requires = "add_controller")]
    pub controller_name: Option<String>,
    /// Let the added C replace an extra C of the same name.
    #[arg(long, requires = "add_controller")]
    pub replace: bool,
}

pub fn export_cmd(args: ExportArgs) -> anyhow::Result<()> {
    let env = args.config.env;
    if let Some(run) = &args.add_controller {
        return add_controller_cmd(&args, run);
    }
    let config = ExportConfig {
        run_dir: args.dirs.run_dir(env),
        data_dir: Some(args.dirs.data_dir(env)),
        ..args.config
    };
    let selection = args.backend.select();
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
    let latent = crate::train::export::latent_line(env, &s);
    if s.latent == crate::train::export::LatentSource::Missing {
        println!("note: {latent}");
    } else {
        println!("latent statistics: {latent}");
    }
    if !s.dropped_controllers.is_empty() {
        println!(
            "note: the bundle no longer holds the extra Cs {:?}, which the run has not; if they were evolved in this M, add them again with `dreamplay export --env {env} --add-controller RUN`",
            s.dropped_controllers
        );
    }
    println!("model card: {}", s.card.display());
    Ok(())
}

fn add_controller_cmd(args: &ExportArgs, run: &std::path::Path) -> anyhow::Result<()> {
    let env = args.config.env;
    let added = crate::train::export::add_controller_from_run(
        env,
        run,
        &args.config.models_dir,
        args.controller_name.as_deref(),
        args.replace,
    )?;
    let dream = added.dream.as_ref().map_or_else(
        || "no dream recorded".to_string(),
        crate::train::table::describe_dream,
    );
    println!(
        "added {:?} (evolved at {dream}) from {} to {}",
        added.name,
        added.run_bundle.display(),
        added.bundle.display()
    );
    for (i, name) in added.names.iter().enumerate() {
        println!("  C {i}: {name}");
    }
    for part in &added.differing_parts {
        println!(
            "note: the run's {part} differs from the bundle's: this C was evolved with another {part}, and may not do in this model what it did in its run"
        );
    }
    if let Some(card) = &added.card {
        println!("model card: {} (its list of the Cs)", card.display());
    }
    Ok(())
}
