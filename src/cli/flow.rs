//! `dreamplay train-autoencoder`, `train-decoder`, `encode-latents`, `train-flow` and
//! `export-flow`: the flow model's stages, thin wrappers over [`crate::train::flow`].

use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::Args;

use super::BackendArg;
use super::train::{StageArgs, print_trained};
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
    print_trained(
        "autoencoder trained",
        summary.steps,
        summary.epochs,
        &format!("{} training frames", summary.train_frames),
        summary.seconds,
        summary.resumed_from_step,
    );
    println!("train loss per frame: recon {:.2}", summary.recon);
    if let (Some(recon), Some(sharpness)) = (summary.val_recon, summary.val_sharpness) {
        println!(
            "held-out ({} frames): recon {recon:.2}, sharpness {sharpness:.3} (1 is reality's edges)",
            summary.val_frames
        );
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
pub struct TrainDecoderArgs {
    #[command(flatten)]
    pub config: crate::train::flow::decoder::DecoderTrainConfig,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub fn train_decoder_cmd(args: TrainDecoderArgs) -> anyhow::Result<()> {
    use crate::train::flow::decoder::{DecoderTrainConfig, train_decoder};
    let stage = &args.stage;
    let config = DecoderTrainConfig {
        data_dir: stage.dirs.data_dir(args.config.env),
        run_dir: stage.dirs.run_dir(args.config.env),
        ..args.config
    };
    let selection = stage.select_backend();
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        backend::on_cpu_workers(|| train_decoder::<Autodiff<B>>(&config, stage.fresh, &device))
    })?;
    print_trained(
        "decoder fine-tuned",
        summary.steps,
        summary.epochs,
        &format!("{} training frames", summary.train_frames),
        summary.seconds,
        summary.resumed_from_step,
    );
    println!(
        "train loss per frame: recon {:.2}, gradient difference {:.1}",
        summary.recon, summary.gradient
    );
    if let (Some(adversarial), Some(critic)) = (summary.adversarial, summary.critic) {
        println!(
            "adversarial loss {adversarial:.3}, critic loss {critic:.3} (ln 4 = 1.386: it cannot tell drawn from real)"
        );
    }
    let held_out = |h: crate::train::flow::autoencoder::HeldOut| {
        format!("recon {:.2}, sharpness {:.3}", h.recon, h.sharpness)
    };
    match (summary.before, summary.after) {
        (Some(before), Some(after)) => println!(
            "held-out ({} frames): {} (the autoencoder before: {})",
            summary.val_frames,
            held_out(after),
            held_out(before)
        ),
        (None, Some(after)) => {
            println!(
                "held-out ({} frames): {}",
                summary.val_frames,
                held_out(after)
            )
        }
        _ => {}
    }
    for f in &summary.skipped_files {
        println!("skipped: {f}");
    }
    println!(
        "wrote the decoder into {} (the encoder, latents and dynamics are unchanged), {}/flow/decoder/loss.csv, loss.png, reconstructions.png",
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
    print_trained(
        "flow dynamics trained",
        summary.steps,
        summary.epochs,
        &format!("{} training transitions", summary.train_rows),
        summary.seconds,
        summary.resumed_from_step,
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

#[derive(Debug, Args)]
pub struct ExportFlowArgs {
    #[command(flatten)]
    pub config: crate::train::flow::export::ExportFlowConfig,
    /// The run folder whose flow model is shipped (default: runs/<env>).
    #[arg(long)]
    pub run: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArg,
}

pub fn export_flow_cmd(args: ExportFlowArgs) -> anyhow::Result<()> {
    use crate::train::flow::export::{ExportFlowConfig, describe_sampling, export_flow};
    let env = args.config.env;
    let config = ExportFlowConfig {
        run_dir: args
            .run
            .unwrap_or_else(|| PathBuf::from("runs").join(env.name())),
        ..args.config
    };
    let selection = args.backend.select();
    let s = crate::with_backend!(&selection.backend, |B, device| {
        export_flow::<B>(&config, &device)
    })?;
    println!(
        "wrote {} ({:.1} MB, f16)",
        s.model.display(),
        s.bytes as f64 / 1e6
    );
    for p in &s.copied {
        println!("copied {}", p.display());
    }
    match &s.comparison {
        Some(c) => {
            let sampling =
                crate::dream::FlowDreamBatch::<crate::model::FlexBackend>::DEFAULT_SAMPLING;
            println!(
                "open-loop against {}: {} episodes, {} forks; the flow dream at {}",
                s.bundle.display(),
                c.world_model.episodes,
                c.world_model.forks,
                describe_sampling(sampling)
            );
            println!(
                "{:>13} {:>7} {:>11} {:>9}",
                "model", "horizon", "pixel_error", "sharpness"
            );
            for report in [&c.world_model, &c.flow] {
                for r in &report.rows {
                    println!(
                        "{:>13} {:>7} {:>11.4} {:>9.3}",
                        report.model, r.horizon, r.pixel_error, r.sharpness
                    );
                }
            }
            let say = |goal: Option<bool>| match goal {
                Some(true) => "holds",
                Some(false) => "does not hold",
                None => "not measured",
            };
            println!(
                "flow pixel error at horizon 1 below the 2018 dream's: {}",
                say(c.goals.closer_at_1)
            );
            println!(
                "flow sharpness at horizon 10 at least {} and nearer reality's (1) than the 2018 dream's: {}",
                crate::train::flow::export::SHARPNESS_GOAL,
                say(c.goals.sharper_at_10)
            );
            println!("wrote {} and {}", c.csv.display(), c.side_by_side.display());
        }
        None => println!(
            "note: no bundle at {}, so the flow model was not measured against the 2018 model; `dreamplay export --env {env}` ships one",
            s.bundle.display()
        ),
    }
    println!(
        "model card: {} (its section on the flow model)",
        s.card.display()
    );
    Ok(())
}
