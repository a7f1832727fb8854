//! `dreamplay train-autoencoder`, `encode-latents` and `train-flow`: the flow model's stages,
//! thin wrappers over [`crate::train::flow`].

use burn::backend::Autodiff;
use clap::Args;

use super::train::StageArgs;
use crate::model::backend;
use crate::train::flow::autoencoder::{AutoencoderTrainConfig, train_autoencoder};
use crate::train::progress::human_duration;

#[derive(Debug, Args)]
pub struct TrainAutoencoderArgs {
    #[command(flatten)]
    pub config: AutoencoderTrainConfig,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub fn train_autoencoder_cmd(args: TrainAutoencoderArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let config = AutoencoderTrainConfig {
        data_dir: stage.dirs.data_dir(args.config.env),
        run_dir: stage.dirs.run_dir(args.config.env),
        ..args.config
    };
    let selection = stage.select_backend();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_autoencoder::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    println!(
        "autoencoder trained: {} steps, {} epochs, {} training frames, in {} (this run{})",
        summary.steps,
        summary.epochs,
        summary.train_frames,
        human_duration(summary.seconds),
        summary
            .resumed_from_step
            .map_or(String::new(), |s| format!(", resumed at step {s}"))
    );
    println!("train loss per frame: recon {:.2}", summary.recon);
    if let Some(r) = summary.val_recon {
        println!("held-out ({} frames): recon {r:.2}", summary.val_frames);
    }
    for f in &summary.skipped_files {
        println!("skipped: {f}");
    }
    println!(
        "wrote {} (the autoencoder), {}/flow/autoencoder/loss.csv, loss.png, reconstructions.png",
        summary.model_path.display(),
        config.run_dir.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct EncodeLatentsArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = super::parse_env)]
    pub env: crate::envs::EnvKind,
    #[command(flatten)]
    pub stage: StageArgs,
    /// Frames encoded per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
}

pub fn encode_latents_cmd(args: EncodeLatentsArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let run_dir = stage.dirs.run_dir(args.env);
    let data_dir = stage.dirs.data_dir(args.env);
    let selection = stage.select_backend();
    if stage.fresh {
        let _ = std::fs::remove_dir_all(crate::train::flow::latents::latents_dir(&run_dir));
    }
    let started = std::time::Instant::now();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        crate::train::flow::latents::encode_latents::<B>(
            &data_dir,
            &run_dir,
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
    if let Some(stats) = &summary.stats {
        println!(
            "latent statistics per channel: mean {:?}, sd {:?} (in {})",
            stats.mean,
            stats.std,
            crate::train::flow::flow_model_path(&run_dir).display()
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TrainFlowArgs {
    #[command(flatten)]
    pub config: crate::train::flow::dynamics::FlowTrainConfig,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub fn train_flow_cmd(args: TrainFlowArgs) -> anyhow::Result<()> {
    use crate::train::flow::dynamics::{FlowTrainConfig, train_flow};
    let stage = &args.stage;
    let config = FlowTrainConfig {
        run_dir: stage.dirs.run_dir(args.config.env),
        ..args.config
    };
    let selection = stage.select_backend();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_flow::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    let l = &summary.losses;
    println!(
        "flow dynamics trained: {} steps, {} epochs, {} training transitions, in {} (this run{})",
        summary.steps,
        summary.epochs,
        summary.train_rows,
        human_duration(summary.seconds),
        summary
            .resumed_from_step
            .map_or(String::new(), |s| format!(", resumed at step {s}"))
    );
    println!(
        "train losses: flow {:.4}, shortcut {:.4}, done {:.4}, reward {:.4}",
        l.flow, l.shortcut, l.done, l.reward
    );
    if let (Some(flow), Some([one, two, four])) = (l.val_flow, l.val_sample) {
        println!(
            "held-out ({} transitions): flow {flow:.4}; next-latent error {one:.4} / {two:.4} / {four:.4} at 1 / 2 / 4 steps",
            summary.val_rows
        );
    }
    for f in &summary.skipped_files {
        println!("skipped: {f}");
    }
    println!(
        "wrote {} (dynamics and heads), {}/flow/dynamics/loss.csv, loss.png, samples.png",
        summary.model_path.display(),
        config.run_dir.display()
    );
    Ok(())
}
