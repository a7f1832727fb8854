//! `dreamplay train-controller`: a thin wrapper over [`crate::train::controller`].

use std::path::PathBuf;

use clap::Args;

use super::parse_env;
use crate::envs::EnvKind;
use crate::model::backend;
use crate::train::controller::{ControllerTrainConfig, FitnessMode, train_controller};
use crate::train::progress::human_duration;

#[derive(Debug, Args)]
pub struct TrainControllerArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// The run folder: world-model.bin must hold V and M (default: runs/<env>).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Where a candidate's fitness comes from: M's dream or the real env.
    #[arg(long, value_enum, default_value_t = FitnessMode::Dream)]
    pub fitness: FitnessMode,
    /// The dream's temperature (the paper's Take Cover: 1.15).
    #[arg(long, default_value_t = 1.15)]
    pub tau: f32,
    /// How M's done ends a dream: sample (with M's probability; our default, see DoneRule) or threshold (the paper's logit > 0).
    #[arg(long, value_enum, default_value = "sample")]
    pub dream_done: crate::model::mdrnn::DoneRule,
    /// Multiply M's done odds in the dream by this (1: as trained). Above 1 the dream kills more
    /// often; compare `eval --random --dream-tau T --done-odds K` with the real random score.
    #[arg(long, default_value_t = 1.0)]
    pub done_odds: f32,
    /// Fork each dream after the first N steps of a rollout in --data, M having read them,
    /// instead of from its first frame and a zero state (the paper's start). The N real steps
    /// count towards the dream's return.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dream_context: usize,
    /// Candidates per generation (the paper: 64).
    #[arg(long, default_value_t = 32)]
    pub population: usize,
    /// Episodes per candidate; its fitness is their mean return (default: 4 in the dream, 1 real).
    #[arg(long)]
    pub trials: Option<usize>,
    /// CMA-ES's initial step size.
    #[arg(long, default_value_t = 0.1)]
    pub sigma0: f64,
    /// CMA-ES's L2 weight decay on the ranking (the paper: 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Run until this many generations are complete (a resumed run counts the earlier ones).
    #[arg(long, default_value_t = 40)]
    pub generations: u64,
    /// Steps per episode at most (default: 1000 for car-racing, 2100 for take-cover).
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Rollouts whose first frames start the dreams (default: data/<env>).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Master seed: every episode's seed derives from (seed, generation, candidate, trial).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Re-evaluate the best so far (and CMA-ES's mean) in the real env every N generations,
    /// and at the end (0: only at the end).
    #[arg(long, default_value_t = 10)]
    pub eval_every: u64,
    /// Real episodes per re-evaluation (0: none).
    #[arg(long, default_value_t = 8)]
    pub eval_episodes: usize,
    /// Ignore the checkpoint in <run>/controller and start over.
    #[arg(long)]
    pub fresh: bool,
    /// On a fresh start, begin the search at the C already in the bundle instead of at zero.
    #[arg(long)]
    pub warm_start: bool,
    /// Every candidate of a generation meets the same episodes: the same start latents and random
    /// draws in the dream, the same env seeds in reality (common random numbers). Candidates are
    /// then ranked on how they play more than on their luck. Off: the paper's independent draws.
    #[arg(long)]
    pub common_seeds: bool,
    /// auto (wgpu on a hardware GPU, else flex), wgpu or flex; DREAMPLAY_BACKEND works too.
    #[arg(long)]
    pub backend: Option<String>,
}

impl TrainControllerArgs {
    pub fn config(&self) -> ControllerTrainConfig {
        let env = self.env;
        let run = self
            .run
            .clone()
            .unwrap_or_else(|| super::train::default_run_dir(env));
        let data = self
            .data
            .clone()
            .unwrap_or_else(|| super::train::default_data_dir(env));
        let defaults = ControllerTrainConfig::new(env, run, data);
        ControllerTrainConfig {
            fitness: self.fitness,
            tau: self.tau,
            done_rule: self.dream_done,
            done_odds: self.done_odds,
            dream_context: self.dream_context,
            population: self.population,
            trials: self.trials.unwrap_or_else(|| self.fitness.default_trials()),
            sigma0: self.sigma0,
            weight_decay: self.weight_decay,
            generations: self.generations,
            max_steps: self.max_steps.unwrap_or(defaults.max_steps),
            seed: self.seed,
            eval_every: self.eval_every,
            eval_episodes: self.eval_episodes,
            fresh: self.fresh,
            warm_start: self.warm_start,
            common_seeds: self.common_seeds,
            ..defaults
        }
    }
}

pub fn run(args: TrainControllerArgs) -> anyhow::Result<()> {
    let config = args.config();
    config.validate()?;
    let selection = backend::select(args.backend.as_deref());
    if let Some(note) = &selection.note {
        eprintln!("note: {note}");
    }
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
