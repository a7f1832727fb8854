//! `dreamplay train-controller`: a thin wrapper over [`crate::train::controller`].

use clap::Args;

use super::{BackendArg, MaxStepsArg, RunDirs};
use crate::train::controller::{ControllerTrainConfig, train_controller};
use crate::train::progress::human_duration;

#[derive(Debug, Args)]
pub struct TrainControllerArgs {
    #[command(flatten)]
    pub config: ControllerTrainConfig,
    /// Episodes per candidate; its fitness is their mean return (default: 4 in the dream, 1 real).
    #[arg(long)]
    pub trials: Option<usize>,
    #[command(flatten)]
    pub max_steps: MaxStepsArg,
    // --run's world-model.bin must hold V and M; --data's first frames start the dreams.
    #[command(flatten)]
    pub dirs: RunDirs,
    #[command(flatten)]
    pub backend: BackendArg,
}

impl TrainControllerArgs {
    pub fn config(&self) -> ControllerTrainConfig {
        let env = self.config.env;
        ControllerTrainConfig {
            run_dir: self.dirs.run_dir(env),
            data_dir: self.dirs.data_dir(env),
            trials: self
                .trials
                .unwrap_or_else(|| self.config.fitness.default_trials()),
            max_steps: self.max_steps.for_env(env),
            ..self.config.clone()
        }
    }
}

pub fn run(args: TrainControllerArgs) -> anyhow::Result<()> {
    let config = args.config();
    config.validate()?;
    let selection = args.backend.select();
    eprintln!(
        "training C for {} in {}: {}, up to {} steps, to generation {}, real re-evaluation of {} episodes every {} on {}",
        config.env,
        config.run_dir.display(),
        config.describe_fitness(),
        config.max_steps,
        config.generations,
        config.eval_episodes,
        config.eval_every,
        selection.backend
    );
    let summary = crate::with_backend!(&selection.backend, |B, device| {
        train_controller::<B>(&config, &device)
    })?;

    if summary.generations_run() == 0 {
        println!(
            "{}: already at generation {} (>= --generations {}); pass a larger --generations to go on",
            summary.csv.display(),
            summary.generation,
            config.generations
        );
        return Ok(());
    }
    let per_gen = summary.seconds_per_generation().unwrap_or(0.0);
    println!(
        "generations {}..{} in {} ({} per generation{})",
        summary.start_generation + 1,
        summary.generation,
        human_duration(summary.elapsed_s),
        human_duration(per_gen),
        if summary.resumed { ", resumed" } else { "" }
    );
    if let Some(best) = summary.best_fitness {
        println!("best training fitness so far: {best:.1}");
    }
    if let Some(re) = &summary.last_reevaluation {
        println!(
            "last real re-evaluation (after generation {}): the {}: {}",
            re.generation, re.source, re.summary
        );
    }
    if let Some(chosen) = &summary.chosen {
        println!("C in {}: {chosen}", summary.bundle.display());
    }
    println!("fitness log: {}", summary.csv.display());
    Ok(())
}
