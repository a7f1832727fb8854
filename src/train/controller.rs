//! `dreamplay train-controller`: C evolved by CMA-ES, in M's dream (the paper's Doom experiment)
//! or in the real env (the paper's CarRacing experiment).
//!
//! # A generation
//! CMA-ES asks for `population` candidates. Each is scored over `trials` episodes and its
//! fitness is the mean return:
//! - **dream**: all population x trials dreams step together as ONE [`DreamBatch`] at
//!   temperature `tau`, each from a start latent sampled from V's posterior of the first frame of
//!   a real rollout in `--data` (with `dream_context` K, forked after the rollout's first K steps
//!   with the memory M built along them: [`DreamStart`]). See [`dream_returns`] for the return
//!   (Take Cover: steps survived until M's done; CarRacing: the sum of M's reward head), capped
//!   at `max_steps`.
//! - **real**: all population x trials real episodes step together ([`run_real_episodes`]).
//!
//! Every `eval_every` generations, and once more at the end of the call, the best candidate so
//! far and the CMA-ES mean are re-evaluated in the REAL env over `eval_episodes` episodes (the
//! same episodes every time, so the scores compare). The paper re-evaluated "the best"; its code
//! (estool's `current_param`) re-evaluates the mean, which noise favours; doing both costs one
//! batch. The higher of the two is that evaluation's result.
//!
//! # Which C goes into the bundle
//! The paper code's rule: the candidate that won a real re-evaluation (the highest real mean so
//! far, kept in `controller/best.json`), because the dream's best is the luckiest score of a
//! noisy, exploitable dream. Before the first re-evaluation (or with `eval_episodes` 0), it is
//! the best candidate so far by training fitness. The bundle's provenance says which.
//!
//! # Files (in `run/controller/`)
//! - `cmaes.json`: [`CmaEs::save`]'s checkpoint (a binary file with a JSON header, named as the
//!   pipeline's layout names it);
//! - `fitness.csv`: one row per generation: `generation,best,mean,worst,sigma,best_so_far,real_mean`
//!   (`real_mean` only on the scheduled re-evaluations, generation % eval_every == 0, so that a
//!   resumed run's CSV equals an uninterrupted one byte for byte);
//! - `best.json`: the real re-evaluation winner.
//!
//! Each generation writes the CSV row, `best.json`, the bundle, then the checkpoint, each
//! atomically: a kill at any time loses at most the generation in flight, and a resume redoes it
//! exactly.
//!
//! # Determinism
//! Episode (generation g, candidate k, trial t) gets env seed / dream generator seed
//! `mix_seed([seed, g, k, t])`; the dream's per-step sampling uses a `ChaCha8Rng` seeded from
//! `mix_seed([seed, g, DREAM_STEP_STREAM])`. CMA-ES is seeded with `seed`. Same seed, same CSV.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::dream::{DreamBatch, DreamStart};
use crate::envs::{EnvKind, Frame, OBS_SIZE};
use crate::model::bundle::{self, EvolvedDream, Expect, ModelSpec, TrainingInfo, WorldModel};
use crate::model::controller::Controller;
use crate::model::mdrnn::{DoneRule, MdnRnn, PAPER_DOOM_TAU};
use crate::model::vae::{ConvVae, sample_posterior};
use crate::train::cmaes::{CmaEs, CmaEsConfig};
use crate::train::eval::{
    AgentModel, DreamDraws, EpisodeResult, ScoreSummary, dream_returns, mix_seed, run_real_episodes,
};
use crate::train::progress::{CsvLog, bar, human_duration, say, write_atomic};
use crate::train::rollout::{Rollout, list_rollouts};
use crate::train::run_model_path;

/// The stage's folder inside the run folder.
pub const CONTROLLER_DIR: &str = "controller";
/// The CMA-ES checkpoint ([`CmaEs::save`]).
pub const CMAES_FILE: &str = "cmaes.json";
/// One row per generation.
pub const FITNESS_CSV: &str = "fitness.csv";
/// The real re-evaluation winner.
pub const WINNER_FILE: &str = "best.json";
/// The CSV's columns.
pub const FITNESS_HEADER: [&str; 7] = [
    "generation",
    "best",
    "mean",
    "worst",
    "sigma",
    "best_so_far",
    "real_mean",
];
/// At most this many rollouts (spread evenly over `--data`) give the dream's start frames: a
/// rollout file is read whole to get its first frame.
pub const MAX_START_ROLLOUTS: usize = 64;

/// Stream constants keep the seeds of different uses apart.
const DREAM_STEP_STREAM: u64 = 0x6472_6561_6d2d_7374;
const REEVAL_STREAM: u64 = 0x7265_6576_616c_2121;

/// Where a candidate's fitness comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitnessMode {
    /// M's dream, all candidates' dreams as one batch (the paper's Take Cover).
    Dream,
    /// The real env, all candidates' episodes as one batch (the paper's CarRacing).
    Real,
}

impl FitnessMode {
    /// Trials per candidate by default: 4 in the dream, 1 in the real env.
    pub fn default_trials(self) -> usize {
        match self {
            FitnessMode::Dream => 4,
            FitnessMode::Real => 1,
        }
    }
}

/// What `train-controller` runs. Its flags: their defaults are [`ControllerTrainConfig::new`]'s.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ControllerTrainConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    /// The run folder: `world-model.bin` (with V and M) and `controller/`.
    #[arg(skip)]
    pub run_dir: PathBuf,
    /// The rollouts whose first frames start the dreams (dream fitness only).
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// Where a candidate's fitness comes from: M's dream or the real env.
    #[arg(long, value_enum, default_value_t = FitnessMode::Dream)]
    pub fitness: FitnessMode,
    /// The dream's temperature (the paper's Take Cover: 1.15).
    #[arg(long, default_value_t = PAPER_DOOM_TAU)]
    pub tau: f32,
    /// How M's done ends a dream: sample (with M's probability; our default, see DoneRule) or
    /// threshold (the paper's logit > 0).
    #[arg(long = "dream-done", value_enum, default_value_t = DoneRule::Sample)]
    pub done_rule: DoneRule,
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
    /// Episodes per candidate; its fitness is their mean return. The flag is
    /// `TrainControllerArgs`'s, as its default depends on --fitness.
    #[arg(skip)]
    pub trials: usize,
    /// CMA-ES's initial step size.
    #[arg(long, default_value_t = 0.1)]
    pub sigma0: f64,
    /// CMA-ES's L2 weight decay on the ranking (the paper: 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Run until this many generations are complete (a resumed run counts the earlier ones).
    #[arg(long, default_value_t = 40)]
    pub generations: u64,
    /// Steps per episode at most, dreamt or real. The flag is `TrainControllerArgs`'s, as its
    /// default depends on --env.
    #[arg(skip)]
    pub max_steps: u32,
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
}

impl ControllerTrainConfig {
    /// The flags' defaults: dream fitness at tau 1.15, population 32, 4 trials, sigma0 0.1,
    /// weight decay 0.01, 40 generations, the env's step limit, a real re-evaluation of 8 episodes
    /// every 10.
    pub fn new(env: EnvKind, run_dir: PathBuf, data_dir: PathBuf) -> Self {
        let defaults: Self = super::flag_defaults(&["--env", env.name()]);
        Self {
            run_dir,
            data_dir,
            trials: defaults.fitness.default_trials(),
            max_steps: crate::train::collect::default_max_steps(env),
            ..defaults
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.population >= 2,
            "--population must be at least 2 (CMA-ES ranks candidates), got {}",
            self.population
        );
        ensure!(self.trials >= 1, "--trials must be at least 1, got 0");
        ensure!(
            self.tau.is_finite() && self.tau > 0.0,
            "--tau must be a positive number, got {}",
            self.tau
        );
        ensure!(
            self.done_odds.is_finite() && self.done_odds > 0.0,
            "--done-odds must be a positive number, got {}",
            self.done_odds
        );
        ensure!(
            self.sigma0.is_finite() && self.sigma0 > 0.0,
            "--sigma0 must be a positive number, got {}",
            self.sigma0
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "--weight-decay must be a number >= 0, got {}",
            self.weight_decay
        );
        ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        ensure!(
            (self.dream_context as u64) < u64::from(self.max_steps),
            "--dream-context {} leaves no dream steps under --max-steps {}",
            self.dream_context,
            self.max_steps
        );
        Ok(())
    }

    pub fn controller_dir(&self) -> PathBuf {
        self.run_dir.join(CONTROLLER_DIR)
    }

    /// The dream C is evolved in, as the bundle records it; `None` for real fitness.
    pub fn evolved_dream(&self) -> Option<EvolvedDream> {
        (self.fitness == FitnessMode::Dream).then(|| EvolvedDream {
            tau: self.tau,
            done_odds: self.done_odds,
            done_rule: self.done_rule,
            context_steps: u32::try_from(self.dream_context).unwrap_or(u32::MAX),
        })
    }

    /// One line for logs: where the fitness comes from.
    pub fn describe_fitness(&self) -> String {
        let shared = if self.common_seeds {
            ", the same episodes for every candidate"
        } else {
            ""
        };
        let fitness = match self.fitness {
            FitnessMode::Dream => format!(
                "cma-es in the dream at tau {} (done: {:?}{}{}), pop {}, trials {}",
                self.tau,
                self.done_rule,
                if self.done_odds == 1.0 {
                    String::new()
                } else {
                    format!(", odds x{}", self.done_odds)
                },
                match self.dream_context {
                    0 => String::new(),
                    k => format!(", forked after {k} real steps"),
                },
                self.population,
                self.trials
            ),
            FitnessMode::Real => format!(
                "cma-es in the real env, pop {}, trials {}",
                self.population, self.trials
            ),
        };
        format!("{fitness}{shared}")
    }
}

/// The env seed (real fitness) or dream generator seed (dream fitness) of one training episode.
pub fn episode_seed(seed: u64, generation: u64, candidate: u64, trial: u64) -> u64 {
    mix_seed(&[seed, generation, candidate, trial])
}

/// The candidate index that seeds a candidate's episodes: its own, or 0 for all of them when
/// they share their episodes (common random numbers).
fn seeding_candidate(candidate: usize, common_seeds: bool) -> u64 {
    if common_seeds { 0 } else { candidate as u64 }
}

/// The env seed of re-evaluation episode `episode` (the same episodes at every re-evaluation).
pub fn reeval_seed(seed: u64, episode: u64) -> u64 {
    mix_seed(&[seed, REEVAL_STREAM, episode])
}

/// Where the dreams start: V's posteriors (mu, logvar) of the first frames of real rollouts, and
/// with K steps of context, of their first K + 1 frames with the K actions between them.
#[derive(Debug, Clone, PartialEq)]
pub struct StartLatents {
    z_size: usize,
    action_size: usize,
    /// K: real steps before the dream forks.
    context: usize,
    /// `[count, K + 1, z_size]` each.
    mu: Vec<f32>,
    logvar: Vec<f32>,
    /// `[count, K, action_size]`.
    actions: Vec<f32>,
    /// `[count]`: the real return of each start's K steps.
    prefix_returns: Vec<f64>,
}

impl StartLatents {
    /// From the first K + 1 frames (K = `context`) of up to `max_rollouts` rollouts in `dir`
    /// (spread evenly over the sorted file list), encoded by V in one batch.
    pub fn from_rollouts<B: Backend>(
        vae: &ConvVae<B>,
        dir: &Path,
        env: EnvKind,
        context: usize,
        max_rollouts: usize,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let collect_hint = format!(
            "run `dreamplay collect --env {env} --rollouts N --out {}` first, or pass --data",
            dir.display()
        );
        let listing = list_rollouts(dir).with_context(|| {
            format!(
                "cannot read the rollouts folder {} (the dream starts from real first frames): {collect_hint}",
                dir.display()
            )
        })?;
        let count = listing.valid.len();
        if count == 0 {
            bail!(
                "no rollouts in {} ({} unreadable .npz files); the dream starts from real first frames: {collect_hint}",
                dir.display(),
                listing.corrupt.len()
            );
        }
        let action_size = env.action_space().low.len();
        let take = count.min(max_rollouts.max(1));
        let paths: Vec<&Path> = (0..take)
            .map(|k| listing.valid[k * count / take].path.as_path())
            .collect();
        let prefixes: Vec<(Vec<Frame>, Vec<f32>, f64)> = paths
            .par_iter()
            .map(|path| -> anyhow::Result<_> {
                let rollout = Rollout::read(path)?;
                ensure!(
                    rollout.len() > context && rollout.action_dim() == action_size,
                    "{} holds {} steps of {} action values; a dream forked after {context} real steps of {env} needs {} of {action_size}",
                    path.display(),
                    rollout.len(),
                    rollout.action_dim(),
                    context + 1
                );
                let frames = (0..=context)
                    .map(|t| {
                        let raw: Vec<u8> = rollout.frame(t).into_iter().flatten().copied().collect();
                        Frame::from_raw(OBS_SIZE, OBS_SIZE, raw).with_context(|| {
                            format!("{}: frame {t} is not 64x64 RGB", path.display())
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let actions = rollout.actions().rows().into_iter().take(context);
                let actions: Vec<f32> = actions.flat_map(|r| r.to_vec()).collect();
                let ret = rollout.rewards().iter().take(context).map(|&r| f64::from(r)).sum();
                Ok((frames, actions, ret))
            })
            .collect::<anyhow::Result<_>>()?;
        let refs: Vec<&Frame> = prefixes.iter().flat_map(|(f, _, _)| f).collect();
        let (mu, logvar) = vae.encode_frames(&refs, device);
        Ok(Self {
            z_size: vae.z_size(),
            action_size,
            context,
            mu,
            logvar,
            actions: prefixes.iter().flat_map(|(_, a, _)| a).copied().collect(),
            prefix_returns: prefixes.iter().map(|(_, _, r)| *r).collect(),
        })
    }

    /// Start latents given directly, row-major `[count, z_size]` each, without context (tests,
    /// other sources).
    pub fn from_posteriors(z_size: usize, mu: Vec<f32>, logvar: Vec<f32>) -> anyhow::Result<Self> {
        ensure!(
            z_size > 0
                && !mu.is_empty()
                && mu.len().is_multiple_of(z_size)
                && mu.len() == logvar.len(),
            "start latents need whole [count, {z_size}] mu and logvar of equal size"
        );
        let count = mu.len() / z_size;
        Ok(Self {
            z_size,
            action_size: 0,
            context: 0,
            mu,
            logvar,
            actions: Vec::new(),
            prefix_returns: vec![0.0; count],
        })
    }

    pub fn len(&self) -> usize {
        self.prefix_returns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefix_returns.is_empty()
    }

    /// K, the real steps before each dream forks.
    pub fn context(&self) -> usize {
        self.context
    }

    /// A start chosen uniformly, each of its latents sampled from its frame's posterior (with
    /// K = 0, the same draws as a single start latent).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> DreamStart {
        let i = rng.random_range(0..self.len());
        let per_start = (self.context + 1) * self.z_size;
        let rows = i * per_start..(i + 1) * per_start;
        let per_actions = self.context * self.action_size;
        DreamStart {
            z: sample_posterior(&self.mu[rows.clone()], &self.logvar[rows], rng),
            actions: self.actions[i * per_actions..(i + 1) * per_actions].to_vec(),
            prefix_return: self.prefix_returns[i],
        }
    }
}

/// The dream fitness of `controllers` (one per candidate) in generation `generation`: the mean
/// over `trials` dreams of [`dream_returns`], all candidates' dreams in `dream` (a batch of
/// `controllers.len() * trials`, dream `k * trials + t` for candidate k, trial t).
#[allow(clippy::too_many_arguments)]
pub fn dream_fitness<B: Backend>(
    dream: &mut DreamBatch<B>,
    env: EnvKind,
    controllers: &[Controller],
    trials: usize,
    starts: &StartLatents,
    tau: f32,
    max_steps: u32,
    seed: u64,
    generation: u64,
    common_seeds: bool,
) -> anyhow::Result<Vec<f64>> {
    let n = controllers.len() * trials;
    ensure!(
        dream.batch_size() == n,
        "the dream batch holds {} dreams, {} candidates x {trials} trials need {n}",
        dream.batch_size(),
        controllers.len()
    );
    let mut dream_starts = Vec::with_capacity(n);
    let mut agents: Vec<Box<dyn Agent + '_>> = Vec::with_capacity(n);
    for (k, c) in controllers.iter().enumerate() {
        for t in 0..trials {
            let mut rng = ChaCha8Rng::seed_from_u64(episode_seed(
                seed,
                generation,
                seeding_candidate(k, common_seeds),
                t as u64,
            ));
            dream_starts.push(starts.sample(&mut rng));
            agents.push(Box::new(c));
        }
    }
    let (mut per_dream, mut shared);
    let draws = if common_seeds {
        // Trial t's dream draws the same stream for every candidate.
        per_dream = (0..n)
            .map(|i| {
                let trial = (i % trials) as u64;
                ChaCha8Rng::seed_from_u64(mix_seed(&[seed, generation, DREAM_STEP_STREAM, trial]))
            })
            .collect::<Vec<_>>();
        DreamDraws::PerDream(&mut per_dream)
    } else {
        shared = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, generation, DREAM_STEP_STREAM]));
        DreamDraws::Shared(&mut shared)
    };
    let results = dream_returns(
        dream,
        env,
        &mut agents,
        &dream_starts,
        tau,
        max_steps,
        draws,
    )?;
    Ok(mean_per_candidate(&results, trials))
}

fn mean_per_candidate(results: &[EpisodeResult], trials: usize) -> Vec<f64> {
    results
        .chunks(trials)
        .map(|chunk| chunk.iter().map(|r| r.ret).sum::<f64>() / chunk.len() as f64)
        .collect()
}

/// The real re-evaluation winner, kept across resumes in `controller/best.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Winner {
    /// The generation after which it was evaluated.
    pub generation: u64,
    /// "best" (the best candidate so far by training fitness) or "mean" (CMA-ES's mean).
    pub source: String,
    pub real_mean: f64,
    pub real_sd: f64,
    pub episodes: usize,
    pub params: Vec<f32>,
}

impl Winner {
    fn read(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!(
                    "{} is unreadable; delete it or pass --fresh to start over",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("serialising the winner")?;
        write_atomic(path, &json).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// One real re-evaluation's outcome.
#[derive(Debug, Clone)]
pub struct Reevaluation {
    pub generation: u64,
    /// "best" or "mean": which of the two scored higher.
    pub source: &'static str,
    pub summary: ScoreSummary,
    /// The other candidate's score.
    pub other: ScoreSummary,
    pub params: Vec<f32>,
}

/// What a `train-controller` call did.
#[derive(Debug, Clone)]
pub struct ControllerTrainSummary {
    /// Generations complete when the call started (0 on a fresh start).
    pub start_generation: u64,
    /// Generations complete now.
    pub generation: u64,
    pub resumed: bool,
    pub elapsed_s: f64,
    /// The best training fitness so far (dream or real, by `fitness`).
    pub best_fitness: Option<f64>,
    /// The last real re-evaluation of this call.
    pub last_reevaluation: Option<Reevaluation>,
    /// The C in the bundle now, and where it came from.
    pub chosen: Option<String>,
    pub winner: Option<Winner>,
    pub bundle: PathBuf,
    pub csv: PathBuf,
    /// Things the user should know (settings that differ from the checkpoint's, ...).
    pub notes: Vec<String>,
}

impl ControllerTrainSummary {
    pub fn generations_run(&self) -> u64 {
        self.generation - self.start_generation
    }

    /// Wall seconds per generation in this call.
    pub fn seconds_per_generation(&self) -> Option<f64> {
        let n = self.generations_run();
        (n > 0).then(|| self.elapsed_s / n as f64)
    }
}

/// Loads the run's bundle and checks V and M are there, naming the file and the command to run.
fn load_run_model<B: Backend>(
    config: &ControllerTrainConfig,
    device: &B::Device,
) -> anyhow::Result<(WorldModel<B>, ConvVae<B>, MdnRnn<B>)> {
    let path = run_model_path(&config.run_dir);
    let env = config.env;
    let run = config.run_dir.display();
    let model: WorldModel<B> = bundle::load(&path, &Expect::env(env), device).with_context(|| {
        format!(
            "train-controller needs V and M in {}: run `dreamplay train-vae --env {env} --run {run}`, \
             `dreamplay encode --env {env} --run {run}` and `dreamplay train-mdrnn --env {env} --run {run}` first",
            path.display()
        )
    })?;
    let vae = model.vae.clone().with_context(|| {
        format!(
            "{} has no V (the VAE) yet: run `dreamplay train-vae --env {env} --run {run}` first",
            path.display()
        )
    })?;
    let rnn = model.mdrnn.clone().with_context(|| {
        format!(
            "{} has no M (the MDN-RNN) yet: run `dreamplay encode --env {env} --run {run}` and \
             `dreamplay train-mdrnn --env {env} --run {run}` first",
            path.display()
        )
    })?;
    ensure!(
        vae.z_size() == rnn.z_size(),
        "{}: V's z has {} values but M's has {}",
        path.display(),
        vae.z_size(),
        rnn.z_size()
    );
    Ok((model, vae, rnn))
}

fn controller_from(spec: &ModelSpec, params: &[f64]) -> anyhow::Result<Controller> {
    let mut c = spec.controller();
    let values: Vec<f32> = params.iter().map(|&v| v as f32).collect();
    c.set_params(&values)?;
    Ok(c)
}

/// Runs CMA-ES until `config.generations` generations are complete, resuming from the run's
/// checkpoint unless `config.fresh`. See the module doc.
pub fn train_controller<B: Backend>(
    config: &ControllerTrainConfig,
    device: &B::Device,
) -> anyhow::Result<ControllerTrainSummary> {
    config.validate()?;
    let started = Instant::now();
    let env = config.env;
    let bundle_path = run_model_path(&config.run_dir);
    let (mut model, vae, rnn) = load_run_model::<B>(config, device)?;
    let spec = model.spec;
    let dim = spec.controller().param_count();
    let dir = config.controller_dir();
    let cmaes_path = dir.join(CMAES_FILE);
    let winner_path = dir.join(WINNER_FILE);
    let csv_path = dir.join(FITNESS_CSV);
    let mut notes = Vec::new();

    // The dream's start latents first: a missing data folder is an error before any work.
    let starts = match config.fitness {
        FitnessMode::Dream => Some(StartLatents::from_rollouts(
            &vae,
            &config.data_dir,
            env,
            config.dream_context,
            MAX_START_ROLLOUTS,
            device,
        )?),
        FitnessMode::Real => None,
    };

    // CMA-ES: resume, or start fresh.
    let resume = !config.fresh && cmaes_path.exists();
    let mut es = if resume {
        let es = CmaEs::load(&cmaes_path, dim).with_context(|| {
            format!(
                "cannot resume from {}; pass --fresh to start over",
                cmaes_path.display()
            )
        })?;
        let saved = es.config();
        if saved.population != config.population {
            bail!(
                "{} was run with population {}, not {}: pass --population {} to resume, or --fresh to start over",
                cmaes_path.display(),
                saved.population,
                config.population,
                saved.population
            );
        }
        if saved.seed != config.seed {
            bail!(
                "{} was run with seed {}, not {}: pass --seed {} to resume, or --fresh to start over",
                cmaes_path.display(),
                saved.seed,
                config.seed,
                saved.seed
            );
        }
        if saved.weight_decay != config.weight_decay {
            notes.push(format!(
                "the checkpoint's weight decay {} applies, not {}",
                saved.weight_decay, config.weight_decay
            ));
        }
        es
    } else {
        // A fresh start forgets the previous run's winner.
        match std::fs::remove_file(&winner_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", winner_path.display()));
            }
        }
        let mean: Vec<f64> = match (&model.controller, config.warm_start) {
            (Some(c), true) => {
                notes.push(format!(
                    "warm start from the C in {}",
                    bundle_path.display()
                ));
                c.params().iter().map(|&v| f64::from(v)).collect()
            }
            (None, true) => {
                notes.push(format!(
                    "--warm-start: {} has no C yet, starting from zero",
                    bundle_path.display()
                ));
                vec![0.0; dim]
            }
            _ => vec![0.0; dim],
        };
        let cma_config = CmaEsConfig::new(dim, config.sigma0, config.seed)
            .with_population(config.population)
            .with_weight_decay(config.weight_decay);
        CmaEs::new(cma_config, &mean).context("cannot start CMA-ES")?
    };
    let start_generation = es.generation();
    let episodes_per_generation = (config.population * config.trials) as u64;
    let episodes_before = if resume {
        episodes_before(
            model.provenance.controller.as_ref(),
            start_generation,
            episodes_per_generation,
        )
    } else {
        0
    };
    let episodes_at = |generation: u64| {
        episodes_before + (generation - start_generation) * episodes_per_generation
    };
    // The bundle holds the winner so far, with the episodes spent to find it.
    let write = |model: &mut WorldModel<B>, es: &CmaEs, winner: Option<&Winner>| {
        write_bundle(
            model,
            es,
            winner,
            config,
            episodes_at(es.generation()),
            &bundle_path,
        )
    };
    let mut winner = if resume {
        Winner::read(&winner_path)?
    } else {
        None
    };
    let mut log = CsvLog::open(
        &csv_path,
        &FITNESS_HEADER,
        resume.then_some(start_generation as f64),
    )
    .with_context(|| format!("cannot open {}", csv_path.display()))?;

    let agent = AgentModel {
        env,
        vae: &vae,
        rnn: &rnn,
        device,
    };
    let mut dream = match config.fitness {
        FitnessMode::Dream => {
            let mut batch = DreamBatch::new(
                vae.clone(),
                rnn.clone(),
                config.population * config.trials,
                device,
            );
            batch.set_done_rule(config.done_rule);
            batch.set_done_odds(config.done_odds);
            Some(batch)
        }
        FitnessMode::Real => None,
    };

    let progress = bar(config.generations, "generations");
    progress.set_position(start_generation.min(config.generations));
    if resume {
        say(
            &progress,
            format!(
                "resuming {} at generation {start_generation}",
                cmaes_path.display()
            ),
        );
    }
    for note in &notes {
        say(&progress, format!("note: {note}"));
    }

    let mut last_reevaluation = None;
    let mut chosen = None;
    while es.generation() < config.generations {
        let g = es.generation(); // this generation's index; it is number g + 1 once told
        let candidates = es.ask();
        let controllers: Vec<Controller> = candidates
            .iter()
            .map(|x| controller_from(&spec, x))
            .collect::<anyhow::Result<_>>()?;
        let fitness = match (&mut dream, &starts) {
            (Some(dream), Some(starts)) => dream_fitness(
                dream,
                env,
                &controllers,
                config.trials,
                starts,
                config.tau,
                config.max_steps,
                config.seed,
                g,
                config.common_seeds,
            )?,
            _ => {
                let mut refs = Vec::with_capacity(controllers.len() * config.trials);
                let mut seeds = Vec::with_capacity(refs.capacity());
                for (k, c) in controllers.iter().enumerate() {
                    for t in 0..config.trials {
                        refs.push(c);
                        let candidate = seeding_candidate(k, config.common_seeds);
                        seeds.push(episode_seed(config.seed, g, candidate, t as u64));
                    }
                }
                let results =
                    run_real_episodes(&agent, &refs, &seeds, config.max_steps, &mut |_, _| {})?;
                mean_per_candidate(&results, config.trials)
            }
        };
        let told = es
            .tell(&fitness)
            .with_context(|| format!("CMA-ES generation {}", g + 1))?;
        let number = told.generation;
        let best_so_far = es.best().map_or(f64::NAN, |(_, f)| f);

        let scheduled = config.eval_every > 0
            && config.eval_episodes > 0
            && number.is_multiple_of(config.eval_every);
        let mut real_mean = f64::NAN;
        if scheduled {
            let re = reevaluate(&agent, &es, &spec, config, number)?;
            real_mean = re.summary.mean;
            say(&progress, describe_reevaluation(&re));
            winner = update_winner(winner, &re, &winner_path, &progress)?;
            last_reevaluation = Some(re);
        }

        // Order: CSV row, winner (above), bundle, checkpoint. A kill between them makes the
        // resume redo this generation, which rewrites the same values.
        log.row(&[
            number as f64,
            told.fitness_best,
            told.fitness_mean,
            told.fitness_worst,
            told.sigma,
            best_so_far,
            real_mean,
        ])
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
        super::plot::plot_csv(
            &csv_path,
            &dir.join("fitness.png"),
            &format!("C ({env}): {}", config.describe_fitness()),
            "generation",
            &["best", "mean", "best_so_far", "real_mean"],
        )?;
        chosen = Some(write(&mut model, &es, winner.as_ref())?);
        es.save(&cmaes_path)
            .with_context(|| format!("cannot save {}", cmaes_path.display()))?;

        progress.set_position(number);
        progress.set_message(format!(
            "best {:.1}  mean {:.1}  so far {:.1}",
            told.fitness_best, told.fitness_mean, best_so_far
        ));
        if progress.is_hidden() {
            say(
                &progress,
                format!(
                    "generation {number}/{}: best {:.1}, mean {:.1}, worst {:.1}, best so far {:.1}, sigma {:.4} ({} elapsed)",
                    config.generations,
                    told.fitness_best,
                    told.fitness_mean,
                    told.fitness_worst,
                    best_so_far,
                    told.sigma,
                    human_duration(started.elapsed().as_secs_f64())
                ),
            );
        }
    }

    // The end of the call: re-evaluate once more unless the last generation just was.
    let generation = es.generation();
    let ran = generation > start_generation;
    let last_was_scheduled = config.eval_every > 0 && generation.is_multiple_of(config.eval_every);
    if ran && config.eval_episodes > 0 && !last_was_scheduled {
        let re = reevaluate(&agent, &es, &spec, config, generation)?;
        say(&progress, format!("final {}", describe_reevaluation(&re)));
        winner = update_winner(winner, &re, &winner_path, &progress)?;
        chosen = Some(write(&mut model, &es, winner.as_ref())?);
        last_reevaluation = Some(re);
    }
    progress.finish_and_clear();

    Ok(ControllerTrainSummary {
        start_generation,
        generation,
        resumed: resume,
        elapsed_s: started.elapsed().as_secs_f64(),
        best_fitness: es.best().map(|(_, f)| f),
        last_reevaluation,
        chosen,
        winner,
        bundle: bundle_path,
        csv: csv_path,
        notes,
    })
}

/// Re-evaluates the best candidate so far and the CMA-ES mean in the real env, on the same
/// `eval_episodes` episodes each, as one batch; the higher real mean is the result.
fn reevaluate<B: Backend>(
    agent: &AgentModel<'_, B>,
    es: &CmaEs,
    spec: &ModelSpec,
    config: &ControllerTrainConfig,
    generation: u64,
) -> anyhow::Result<Reevaluation> {
    let best = es
        .best()
        .map_or_else(|| es.mean().to_vec(), |(x, _)| x.to_vec());
    let best = controller_from(spec, &best)?;
    let mean = controller_from(spec, es.mean())?;
    let n = config.eval_episodes;
    let seeds: Vec<u64> = (0..n as u64).map(|i| reeval_seed(config.seed, i)).collect();
    let mut all_seeds = seeds.clone();
    all_seeds.extend_from_slice(&seeds);
    let mut refs = vec![&best; n];
    refs.extend(std::iter::repeat_n(&mean, n));
    let results = run_real_episodes(agent, &refs, &all_seeds, config.max_steps, &mut |_, _| {})?;
    let of_best = ScoreSummary::of(&results[..n]);
    let of_mean = ScoreSummary::of(&results[n..]);
    // Ties go to the best candidate (the paper's "best").
    Ok(if of_mean.mean > of_best.mean {
        Reevaluation {
            generation,
            source: "mean",
            summary: of_mean,
            other: of_best,
            params: mean.params().to_vec(),
        }
    } else {
        Reevaluation {
            generation,
            source: "best",
            summary: of_best,
            other: of_mean,
            params: best.params().to_vec(),
        }
    })
}

fn describe_reevaluation(re: &Reevaluation) -> String {
    let other = if re.source == "best" { "mean" } else { "best" };
    format!(
        "real re-evaluation after generation {}: {} {} (the {other}: {:.1})",
        re.generation, re.source, re.summary, re.other.mean
    )
}

/// Keeps the higher of the old winner and this re-evaluation, writing `best.json` on a change.
fn update_winner(
    winner: Option<Winner>,
    re: &Reevaluation,
    path: &Path,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Option<Winner>> {
    if winner
        .as_ref()
        .is_some_and(|w| w.real_mean >= re.summary.mean)
    {
        return Ok(winner);
    }
    let new = Winner {
        generation: re.generation,
        source: re.source.to_string(),
        real_mean: re.summary.mean,
        real_sd: re.summary.sd,
        episodes: re.summary.n,
        params: re.params.clone(),
    };
    new.write(path)?;
    if winner.is_some() {
        say(
            progress,
            format!(
                "new real winner: {:.1} (C in the bundle updated)",
                new.real_mean
            ),
        );
    }
    Ok(Some(new))
}

/// Training episodes behind a resumed run's `generation` complete generations, from the bundle's
/// record: a resume may change `--trials`, so generations times this call's trials can be wrong.
/// The bundle is written just before the checkpoint, so after a kill between the two it is one
/// generation ahead; that generation is redone, and is taken to have run this call's trials.
/// With no record, every generation counts at this call's trials.
fn episodes_before(
    recorded: Option<&TrainingInfo>,
    generation: u64,
    episodes_per_generation: u64,
) -> u64 {
    match recorded.and_then(|info| info.epochs.zip(info.data_size)) {
        Some((g, episodes)) if g == generation => episodes,
        Some((g, episodes)) if g == generation + 1 => {
            episodes.saturating_sub(episodes_per_generation)
        }
        _ => generation * episodes_per_generation,
    }
}

/// Writes C into the bundle with its provenance (`episodes`: training episodes so far); returns a
/// description of the chosen C.
fn write_bundle<B: Backend>(
    model: &mut WorldModel<B>,
    es: &CmaEs,
    winner: Option<&Winner>,
    config: &ControllerTrainConfig,
    episodes: u64,
    path: &Path,
) -> anyhow::Result<String> {
    let spec = model.spec;
    // The real re-evaluation winner if there is one (the paper code's rule), else the best
    // candidate so far by training fitness.
    let (controller, description, real_mean) = match (winner, es.best()) {
        (Some(w), _) => {
            let mut c = spec.controller();
            c.set_params(&w.params)
                .with_context(|| format!("the winner in {WINNER_FILE} does not fit this model"))?;
            (
                c,
                format!(
                    "the real re-evaluation winner (the {} after generation {}, real {:.1} +- {:.1} over {})",
                    w.source, w.generation, w.real_mean, w.real_sd, w.episodes
                ),
                Some(w.real_mean),
            )
        }
        (None, Some((best, fitness))) => (
            controller_from(&spec, best)?,
            format!("the best candidate so far by training fitness ({fitness:.1})"),
            None,
        ),
        (None, None) => bail!("no generation is complete yet"),
    };
    let final_losses = super::stage::final_losses([
        ("fitness", es.best().map(|(_, fitness)| fitness)),
        ("real_mean", real_mean),
    ]);
    model.controller = Some(controller);
    model.provenance.controller = Some(TrainingInfo {
        data_size: Some(episodes),
        epochs: Some(es.generation()),
        final_losses,
        date: Some(super::vae::now_rfc3339()),
        notes: Some(format!("{}; C is {description}", config.describe_fitness())),
        dream: config.evolved_dream(),
    });
    bundle::save_over_run(model, path)?;
    Ok(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_before_trusts_the_record_at_the_checkpoint_and_one_generation_ahead() {
        let record = |generation, episodes| TrainingInfo {
            epochs: Some(generation),
            data_size: Some(episodes),
            ..TrainingInfo::default()
        };
        // 70 generations of 16 x 1, resumed at 16 x 4 = 64 a generation.
        assert_eq!(episodes_before(Some(&record(70, 1120)), 70, 64), 1120);
        // Killed after writing generation 71's bundle, before its checkpoint: 71 is redone.
        assert_eq!(episodes_before(Some(&record(71, 1184)), 70, 64), 1120);
        // No usable record: every generation at this call's trials.
        assert_eq!(episodes_before(None, 70, 64), 70 * 64);
        assert_eq!(episodes_before(Some(&record(50, 800)), 70, 64), 70 * 64);
    }

    #[test]
    fn episode_seeds_differ_by_every_part() {
        let base = episode_seed(1, 2, 3, 4);
        assert_ne!(base, episode_seed(0, 2, 3, 4));
        assert_ne!(base, episode_seed(1, 3, 3, 4));
        assert_ne!(base, episode_seed(1, 2, 4, 4));
        assert_ne!(base, episode_seed(1, 2, 3, 5));
        assert_ne!(episode_seed(1, 2, 3, 4), episode_seed(1, 2, 4, 3));
    }
}
