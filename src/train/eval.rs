//! Scoring C: in the real env (many episodes stepped as one batch), in M's dream, and
//! `dreamplay eval`'s report of both (the paper's table: dream score vs real score).
//!
//! # The agent in the real env
//! At step t the agent sees the frame `obs_t`, V encodes it to z_t = mu (no sampling), C acts
//! from `[z_t, c_t, h_t]` (CarRacing's C reads `[z_t, h_t]`), the env steps, and then M's LSTM
//! steps on `[z_t, a_t]` to give h_{t+1}, c_{t+1} (the paper: "action from z_t and h_t"). h and c
//! start at zero. The dream ([`dream_returns`]) follows the same order, with M's sampled
//! z_{t+1} in place of V's encoding of a real frame.
//!
//! [`run_real_episodes`] steps every episode of a call together: the envs in parallel (rayon), V
//! on all the step's frames in ONE batch, M's `lstm_step` on all of them in ONE batch. Episodes
//! that end leave the batch. An episode's result depends only on its seed and its controller,
//! not on which other episodes share the batch (up to the backend's float differences).
//!
//! # Seeds
//! Everything random derives from a `u64` seed through [`mix_seed`] (SplitMix64), so every
//! episode is reproducible on its own.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail, ensure};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::agent::{Agent, AgentKind, Seen};
use crate::dream::{DreamBatch, DreamStart, RealityMemory};
use crate::envs::{Env, EnvKind, Frame, Step};
use crate::model::bundle::{self, Expect, NamedController, WorldModel};
use crate::model::controller::{Controller, ControllerKind};
use crate::model::mdrnn::MdnRnn;
use crate::model::vae::{ConvVae, sample_posterior};
use crate::train::progress::{CsvLog, bar};

/// Stream constant for `dreamplay eval`'s episodes (kept apart from training's episodes).
const EVAL_STREAM: u64 = 0x6576_616c_2d65_7069;
/// Stream constant for the dream's per-step sampling in `dreamplay eval`.
const EVAL_DREAM_STREAM: u64 = 0x6576_616c_2d64_7265;
/// Stream constant for the random baseline's actions (apart from the env's own seed use).
const RANDOM_POLICY_STREAM: u64 = 0x7261_6e64_6f6d_2121;
/// Stream constant for the data policy that plays a dream's real context ([`RealPrefix`]).
const PREFIX_STREAM: u64 = 0x7072_6566_6978_2121;

/// The error a run stopped by its cancel flag ends with; `err.is::<Cancelled>()` tells it from a
/// failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

fn check_cancel(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::Relaxed) {
        return Err(Cancelled.into());
    }
    Ok(())
}

/// How one episode (real or dreamt) went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeResult {
    /// The return: the sum of rewards (real env), or the dream's fitness (see [`dream_returns`]).
    pub ret: f64,
    /// Steps taken.
    pub steps: u32,
    /// The episode ended on its own (the env terminated, or M predicted done), not on the step
    /// cap or the env's time limit.
    pub done: bool,
}

/// Mean, standard deviation (population, as numpy's `std`), min and max of some returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl ScoreSummary {
    /// The summary of `results`' returns; all NaN when there are none.
    pub fn of(results: &[EpisodeResult]) -> Self {
        let returns: Vec<f64> = results.iter().map(|r| r.ret).collect();
        Self::of_values(&returns)
    }

    pub fn of_values(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self {
                n,
                mean: f64::NAN,
                sd: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        Self {
            n,
            mean,
            sd: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// `mean +- sd over N <unit> (min, max)`, the paper's form.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "{:.1} +- {:.1} over {} {unit} ({:.1}, {:.1})",
            self.mean, self.sd, self.n, self.min, self.max
        )
    }
}

impl fmt::Display for ScoreSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe("episodes"))
    }
}

pub use super::collect::splitmix64;

/// One seed from several parts, order-sensitive: `splitmix64` chained over the parts.
pub fn mix_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix64(0x6472_6561_6d70_6c61), |acc, &p| {
            splitmix64(acc ^ p)
        })
}

/// The env seed of `dreamplay eval`'s episode `episode` under `seed`.
pub fn eval_episode_seed(seed: u64, episode: u64) -> u64 {
    mix_seed(&[seed, EVAL_STREAM, episode])
}

/// What the agent needs besides C: V to see, M's LSTM to remember, on one device.
#[derive(Debug, Clone, Copy)]
pub struct AgentModel<'a, B: Backend> {
    pub env: EnvKind,
    pub vae: &'a ConvVae<B>,
    pub rnn: &'a MdnRnn<B>,
    pub device: &'a B::Device,
}

impl<B: Backend> AgentModel<'_, B> {
    fn check(&self, controllers: &[&Controller]) -> anyhow::Result<()> {
        let (zs, hs) = (self.rnn.z_size(), self.rnn.hidden_size());
        ensure!(
            self.vae.z_size() == zs,
            "V's z has {} values but M's has {zs}",
            self.vae.z_size()
        );
        let action_size = self.env.action_space().len();
        ensure!(
            self.rnn.action_size() == action_size,
            "M takes {} action values but {} has {action_size}",
            self.rnn.action_size(),
            self.env
        );
        for (k, c) in controllers.iter().enumerate() {
            ensure!(
                c.z_size() == zs && c.hidden_size() == hs,
                "controller {k} is for z {} / hidden {}, the model has z {zs} / hidden {hs}",
                c.z_size(),
                c.hidden_size()
            );
            ensure!(
                c.kind() == ControllerKind::from(self.env),
                "controller {k} is a {:?} controller, not one for {}",
                c.kind(),
                self.env
            );
        }
        Ok(())
    }
}

/// One episode in flight.
struct Running {
    index: usize,
    env: Box<dyn Env>,
    obs: Frame,
    ret: f64,
    steps: u32,
}

/// Runs `controllers[i]` in the real env from seed `seeds[i]`, for every i at once, until each
/// episode ends (terminated or truncated) or reaches `max_steps`. `on_finished(i, result)` is
/// called as episode i ends. Returns the results in the order of `seeds`.
pub fn run_real_episodes<B: Backend>(
    model: &AgentModel<'_, B>,
    controllers: &[&Controller],
    seeds: &[u64],
    max_steps: u32,
    on_finished: &mut dyn FnMut(usize, &EpisodeResult),
) -> anyhow::Result<Vec<EpisodeResult>> {
    let never = AtomicBool::new(false);
    run_real_episodes_until(model, controllers, seeds, max_steps, on_finished, &never)
}

/// As [`run_real_episodes`], stopping with [`Cancelled`] at the first step after `stop` is set.
pub fn run_real_episodes_until<B: Backend>(
    model: &AgentModel<'_, B>,
    controllers: &[&Controller],
    seeds: &[u64],
    max_steps: u32,
    on_finished: &mut dyn FnMut(usize, &EpisodeResult),
    stop: &AtomicBool,
) -> anyhow::Result<Vec<EpisodeResult>> {
    ensure!(
        controllers.len() == seeds.len(),
        "{} controllers for {} episodes",
        controllers.len(),
        seeds.len()
    );
    ensure!(max_steps >= 1, "max_steps must be at least 1");
    model.check(controllers)?;
    let env_kind = model.env;
    // make() resets the env with the seed (a CarRacing track takes a moment: in parallel).
    let mut running: Vec<Running> = seeds
        .par_iter()
        .enumerate()
        .map(|(index, &seed)| {
            let env = env_kind.make(seed);
            let obs = env.observation();
            Running {
                index,
                env,
                obs,
                ret: 0.0,
                steps: 0,
            }
        })
        .collect();
    let mut results: Vec<Option<EpisodeResult>> = vec![None; seeds.len()];
    let mut memory = RealityMemory::for_model(model.rnn, running.len());

    while !running.is_empty() {
        check_cancel(stop)?;
        let m = running.len();
        let frames: Vec<&Frame> = running.iter().map(|r| &r.obs).collect();
        memory.observe(model.vae, &frames, model.device)?;
        let actions: Vec<Vec<f32>> = running
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let seen = Seen {
                    frame: Some(&r.obs),
                    latent: Some(memory.latent(k)),
                };
                Agent::act(&mut { controllers[r.index] }, &seen)
            })
            .collect();
        // The envs, in parallel.
        let outcomes: Vec<Result<Step, crate::envs::ActionError>> = running
            .par_iter_mut()
            .zip(actions.par_iter())
            .map(|(r, a)| r.env.step(a))
            .collect();
        let mut keep = Vec::with_capacity(m);
        for (k, (r, outcome)) in running.iter_mut().zip(outcomes).enumerate() {
            let step = outcome
                .with_context(|| format!("episode {} (seed {})", r.index, seeds[r.index]))?;
            r.ret += f64::from(step.reward);
            r.steps += 1;
            let ended = step.done() || r.steps >= max_steps;
            r.obs = step.obs;
            if ended {
                let result = EpisodeResult {
                    ret: r.ret,
                    steps: r.steps,
                    done: step.terminated,
                };
                results[r.index] = Some(result);
                on_finished(r.index, &result);
            } else {
                keep.push(k);
            }
        }
        if keep.is_empty() {
            break;
        }
        // M's LSTM on [z_t, a_t] for the episodes that go on, one batch.
        memory.retain(&keep);
        let kept_actions: Vec<f32> = keep.iter().flat_map(|&k| &actions[k]).copied().collect();
        memory.advance(model.rnn, &kept_actions, model.device)?;
        let mut keep_iter = keep.iter().peekable();
        running = running
            .into_iter()
            .enumerate()
            .filter_map(|(k, r)| (keep_iter.next_if_eq(&&k).is_some()).then_some(r))
            .collect();
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("episode {i} never finished")))
        .collect()
}

/// A model-free baseline in the real env: episode i from seed `seeds[i]`; the random policy's
/// actions come from a generator seeded by the same seed. Episodes run in parallel.
pub fn run_baseline_episodes(
    env: EnvKind,
    baseline: AgentKind,
    seeds: &[u64],
    max_steps: u32,
) -> anyhow::Result<Vec<EpisodeResult>> {
    ensure!(max_steps >= 1, "max_steps must be at least 1");
    seeds
        .par_iter()
        .map(|&seed| play_baseline(env, baseline, seed, max_steps, &mut |_, _| ()))
        .collect()
}

/// One episode of `baseline` from env seed `seed`, handing `visit` the observation before each
/// action (by value, so a caller that keeps the frames need not copy them) and the action.
fn play_baseline(
    env: EnvKind,
    baseline: AgentKind,
    seed: u64,
    max_steps: u32,
    visit: &mut dyn FnMut(Frame, &[f32]),
) -> anyhow::Result<EpisodeResult> {
    let mut e = env.make(seed);
    let mut agent = baseline_agent(baseline, env, seed);
    let mut obs = e.observation();
    let (mut ret, mut steps) = (0.0, 0u32);
    loop {
        let action = agent.act(&Seen::frame(&obs));
        visit(obs, &action);
        let step = e.step(&action)?;
        ret += f64::from(step.reward);
        steps += 1;
        if step.done() || steps >= max_steps {
            return Ok(EpisodeResult {
                ret,
                steps,
                done: step.terminated,
            });
        }
        obs = step.obs;
    }
}

/// `baseline` for the episode with env seed `seed`; its random draws come from a stream of their
/// own, apart from the env's.
pub fn baseline_agent(baseline: AgentKind, env: EnvKind, seed: u64) -> Box<dyn Agent> {
    baseline.build(env, mix_seed(&[seed, RANDOM_POLICY_STREAM]))
}

/// Where a batch of dreams draws its samples.
pub enum DreamDraws<'a> {
    /// One generator for the whole batch, drawn dream after dream.
    Shared(&'a mut ChaCha8Rng),
    /// Dream i draws from generator i alone (common random numbers across dreams).
    PerDream(&'a mut [ChaCha8Rng]),
}

/// Runs dream i from `starts[i]` with `agents[i]` acting, all dreams of `dream` as one batch at
/// temperature `tau`, until every dream is done or `max_steps` steps. A start with K steps of
/// real context ([`DreamStart`]) counts them: the dream's steps and return begin at K and the
/// prefix's real return, and `max_steps` caps the whole episode.
///
/// The return of a dream:
/// - Take Cover: the steps survived, +1 per step up to and including the step M predicts done
///   (the paper's +1 per tic alive), so at most `max_steps`;
/// - CarRacing: the sum of M's predicted rewards, up to and including the done step.
///
/// A finished dream keeps stepping in the batch with a zero action (the batch has a fixed size);
/// its return is frozen. `draws` draws every sample, so the returns are deterministic under it.
pub fn dream_returns<B: Backend>(
    dream: &mut DreamBatch<B>,
    env: EnvKind,
    agents: &mut [Box<dyn Agent + '_>],
    starts: &[DreamStart],
    tau: f32,
    max_steps: u32,
    draws: DreamDraws<'_>,
) -> anyhow::Result<Vec<EpisodeResult>> {
    let never = AtomicBool::new(false);
    dream_returns_until(dream, env, agents, starts, tau, max_steps, draws, &never)
}

/// As [`dream_returns`], stopping with [`Cancelled`] at the first step after `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn dream_returns_until<B: Backend>(
    dream: &mut DreamBatch<B>,
    env: EnvKind,
    agents: &mut [Box<dyn Agent + '_>],
    starts: &[DreamStart],
    tau: f32,
    max_steps: u32,
    mut draws: DreamDraws<'_>,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<EpisodeResult>> {
    let n = dream.batch_size();
    ensure!(
        agents.len() == n && starts.len() == n,
        "a dream batch of {n} needs {n} agents and {n} starts, got {} and {}",
        agents.len(),
        starts.len()
    );
    ensure!(max_steps >= 1, "max_steps must be at least 1");
    ensure!(
        tau.is_finite() && tau > 0.0,
        "tau must be a positive number, got {tau}"
    );
    dream.reset_from_starts(starts)?;
    let a = dream.action_size();
    let context = starts.first().map_or(0, |s| s.context_steps(a));
    ensure!(
        (context as u64) < u64::from(max_steps),
        "{context} steps of real context leave no dream steps under a cap of {max_steps}"
    );
    let mut results: Vec<EpisodeResult> = starts
        .iter()
        .map(|s| EpisodeResult {
            ret: s.prefix_return,
            steps: context as u32,
            done: false,
        })
        .collect();
    let mut alive = vec![true; n];
    let mut actions = vec![0.0f32; n * a];
    for _ in context as u32..max_steps {
        if !alive.iter().any(|&x| x) {
            break;
        }
        check_cancel(stop)?;
        for i in 0..n {
            let slot = &mut actions[i * a..(i + 1) * a];
            if alive[i] {
                let act = agents[i].act(&Seen::latent(dream.latent(i)));
                ensure!(
                    act.len() == a,
                    "agent {i} gave {} action values, M takes {a}",
                    act.len()
                );
                slot.copy_from_slice(&act);
            } else {
                slot.fill(0.0);
            }
        }
        match &mut draws {
            DreamDraws::Shared(rng) => dream.step(&actions, tau, &mut **rng)?,
            DreamDraws::PerDream(rngs) => dream.step_each(&actions, tau, rngs)?,
        }
        let (rewards, dones) = (dream.rewards(), dream.dones());
        for i in 0..n {
            if !alive[i] {
                continue;
            }
            let r = &mut results[i];
            r.steps += 1;
            r.ret += match env {
                EnvKind::TakeCover => 1.0,
                EnvKind::CarRacing => f64::from(rewards[i]),
            };
            if dones[i] {
                r.done = true;
                alive[i] = false;
            }
        }
    }
    Ok(results)
}

/// Step ranges before an episode's death, for [`DoneAlongReality`]: the killing step, then
/// further and further back.
pub const DONE_BUCKETS: [(u32, u32); 5] = [(0, 0), (1, 3), (4, 10), (11, 30), (31, u32::MAX)];

/// M's done probability along real episodes, M reading V's mu of each real frame and the action
/// taken (teacher-forced, from a zero state at the episode's start, as the controller's M runs in
/// reality). It tells whether M, shown reality, sees a death coming, and how much hazard it puts
/// on steps far from any death: the part of a dream's deaths that no dodging can avoid.
#[derive(Debug, Clone, PartialEq)]
pub struct DoneAlongReality {
    /// Per [`DONE_BUCKETS`] range, over the episodes that ended in a death: (mean probability,
    /// steps counted).
    pub before_death: Vec<(f64, usize)>,
    /// Over the episodes that reached the step cap: (mean probability, steps counted).
    pub survived: (f64, usize),
}

impl DoneAlongReality {
    /// One line per range, for the report.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for (&(lo, hi), &(p, n)) in DONE_BUCKETS.iter().zip(&self.before_death) {
            let range = match (lo, hi) {
                (0, 0) => "the killing step".to_string(),
                (lo, u32::MAX) => format!("{lo} or more steps before a death"),
                (lo, hi) => format!("{lo}-{hi} steps before a death"),
            };
            lines.push(format!("  {range}: {p:.4} over {n} steps"));
        }
        let (p, n) = self.survived;
        lines.push(format!(
            "  episodes that were not killed: {p:.4} over {n} steps"
        ));
        lines.join("\n")
    }
}

/// [`DoneAlongReality`] for a model-free baseline's real episodes (seeds and actions as in
/// [`run_baseline_episodes`]).
pub fn done_along_reality<B: Backend>(
    env: EnvKind,
    baseline: AgentKind,
    seeds: &[u64],
    max_steps: u32,
    vae: &ConvVae<B>,
    rnn: &MdnRnn<B>,
    device: &B::Device,
) -> anyhow::Result<DoneAlongReality> {
    ensure!(max_steps >= 1, "max_steps must be at least 1");
    // Frames before each action, the actions, and whether the episode ended in a death.
    let episodes: Vec<(Vec<Frame>, Vec<f32>, bool)> = seeds
        .par_iter()
        .map(|&seed| -> anyhow::Result<_> {
            let (mut frames, mut actions) = (Vec::new(), Vec::new());
            let result = play_baseline(env, baseline, seed, max_steps, &mut |obs, action| {
                frames.push(obs);
                actions.extend_from_slice(action);
            })?;
            Ok((frames, actions, result.done))
        })
        .collect::<anyhow::Result<_>>()?;
    let (zs, a) = (vae.z_size(), rnn.action_size());
    let mut sums = vec![(0.0f64, 0usize); DONE_BUCKETS.len()];
    let mut survived = (0.0f64, 0usize);
    for (frames, actions, killed) in episodes {
        let t_len = frames.len();
        let mut mu = Vec::with_capacity(t_len * zs);
        for chunk in frames.chunks(256) {
            let refs: Vec<&Frame> = chunk.iter().collect();
            mu.extend(vae.encode_frames(&refs, device).0);
        }
        let z = Tensor::<B, 3>::from_data(TensorData::new(mu, [1, t_len, zs]), device);
        let act = Tensor::<B, 3>::from_data(TensorData::new(actions, [1, t_len, a]), device);
        let logits = read_f32(rnn.forward(z, act, None).done_logit)?;
        for (t, &logit) in logits.iter().enumerate() {
            let p = 1.0 / (1.0 + (-f64::from(logit)).exp());
            let slot = if killed {
                let before = (t_len - 1 - t) as u32;
                let k = DONE_BUCKETS
                    .iter()
                    .position(|&(lo, hi)| (lo..=hi).contains(&before))
                    .expect("the buckets cover every distance");
                &mut sums[k]
            } else {
                &mut survived
            };
            slot.0 += p;
            slot.1 += 1;
        }
    }
    let mean = |(sum, n): (f64, usize)| (if n == 0 { f64::NAN } else { sum / n as f64 }, n);
    Ok(DoneAlongReality {
        before_death: sums.into_iter().map(mean).collect(),
        survived: mean(survived),
    })
}

/// The env's data-collection policy (the policy M was trained on) for the episode with env seed
/// `seed`: the same actions wherever a dream forks from that episode.
pub fn data_policy(env: EnvKind, seed: u64) -> Box<dyn Agent> {
    AgentKind::default_for(env).build(env, mix_seed(&[seed, PREFIX_STREAM]))
}

/// The first steps of a real episode under the env's data-collection policy (the policy M was
/// trained on), for a dream to fork from ([`DreamStart`]).
#[derive(Debug, Clone)]
pub struct RealPrefix {
    /// The K + 1 observations, the first of them the reset's.
    pub frames: Vec<Frame>,
    /// `[K, action_size]`: the data policy's actions, as M was trained on them (unsnapped).
    pub actions: Vec<f32>,
    /// The real return of the K steps.
    pub ret: f64,
}

impl RealPrefix {
    /// K = `steps` steps of episode `seed` (0: just the first frame). An episode that ends within
    /// them is an error: a dream cannot fork from it.
    pub fn run(env: EnvKind, seed: u64, steps: usize) -> anyhow::Result<Self> {
        let mut e = env.make(seed);
        let mut policy = data_policy(env, seed);
        let mut frames = vec![e.observation()];
        let (mut actions, mut ret) = (Vec::new(), 0.0);
        for t in 0..steps {
            let action = policy.act(&Seen::frame(&frames[t]));
            let step = e.step(&action)?;
            ensure!(
                !step.done(),
                "episode {seed} of {env} ended on step {} of the {steps} steps of real context a dream forks from",
                t + 1
            );
            actions.extend_from_slice(&action);
            ret += f64::from(step.reward);
            frames.push(step.obs);
        }
        Ok(Self {
            frames,
            actions,
            ret,
        })
    }
}

/// What `dreamplay eval` runs. Its flags: their defaults are [`EvalConfig::new`]'s.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    /// The bundle (not read with `random` and no `dream_taus`).
    #[arg(skip)]
    pub model: PathBuf,
    /// Real episodes (and dreams per tau). The flag is the CLI's, as its default depends on the
    /// measurement.
    #[arg(skip = 100usize)]
    pub episodes: usize,
    /// Episode i's env seed derives from (seed, i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps per episode at most. The flag is the CLI's, as its default depends on --env.
    #[arg(skip)]
    pub max_steps: u32,
    /// Also score in the dream at these temperatures, e.g. 0.1,1.0,1.15.
    #[arg(long = "dream-tau", value_delimiter = ',')]
    pub dream_taus: Vec<f32>,
    /// How M's done ends a dream: sample (with M's probability) or threshold (the paper's logit > 0).
    #[arg(long = "dream-done", value_enum, default_value_t = crate::model::mdrnn::DoneRule::Sample)]
    pub done_rule: crate::model::mdrnn::DoneRule,
    /// Multiply M's done odds in those dreams by this (1: as trained).
    #[arg(long, default_value_t = 1.0)]
    pub done_odds: f32,
    /// Fork each dream from its real episode after N steps of the data policy, M having read
    /// them, instead of from the first frame and a zero state (the paper's start). The N steps
    /// count towards the dream's return.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dream_context: usize,
    /// Also print M's done probability along the baseline's real episodes (M reading the real
    /// frames and actions), by how far each step is from the death: whether M sees deaths coming,
    /// and the hazard it puts on steps far from any.
    #[arg(long)]
    pub done_along_reality: bool,
    /// A model-free baseline instead of C. The flags are the CLI's (--random, --still, --sweep).
    #[arg(skip)]
    pub baseline: Option<AgentKind>,
    /// Which of the bundle's Cs acts: its name, or its number (0: the default C; `dreamplay
    /// inspect` lists them). Default: the default C.
    #[arg(long = "controller", value_name = "NAME")]
    pub controller: Option<String>,
    /// Write per-episode returns here: episode,tau,return,steps,done (tau empty for the real env).
    /// With --open-loop: model,horizon,pixel_error,z_error,sharpness; with --futures: tau,spread.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

impl EvalConfig {
    /// The flags' defaults for `env`, scoring C from `model`.
    pub fn new(env: EnvKind, model: PathBuf) -> Self {
        Self {
            model,
            max_steps: crate::train::collect::default_max_steps(env),
            ..super::flag_defaults(&["--env", env.name()])
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.episodes >= 1, "--episodes must be at least 1");
        ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        for &tau in &self.dream_taus {
            ensure!(
                tau.is_finite() && tau > 0.0,
                "--dream-tau values must be positive numbers, got {tau}"
            );
        }
        ensure!(
            self.done_odds.is_finite() && self.done_odds > 0.0,
            "--done-odds must be a positive number, got {}",
            self.done_odds
        );
        ensure!(
            self.baseline != Some(AgentKind::Sweep(0)),
            "--sweep must be at least 1 step per side"
        );
        ensure!(
            (self.dream_context as u64) < u64::from(self.max_steps),
            "--dream-context {} leaves no dream steps under --max-steps {}",
            self.dream_context,
            self.max_steps
        );
        ensure!(
            !self.done_along_reality || self.baseline.is_some(),
            "--done-along-reality reads a baseline's episodes: add --still, --random or --sweep N"
        );
        ensure!(
            self.controller.is_none() || self.baseline.is_none(),
            "--controller picks a C to score; a baseline (--random, --still, --sweep) acts instead of C"
        );
        Ok(())
    }
}

/// What `dreamplay eval` measured.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Who acted: "C from <file>" or "the uniform-random policy".
    pub agent: String,
    pub real: Vec<EpisodeResult>,
    /// Per tau, the dreams' returns.
    pub dream: Vec<(f32, Vec<EpisodeResult>)>,
    /// M's done probability along the real episodes (a baseline's, when asked for).
    pub done_along_reality: Option<DoneAlongReality>,
}

/// The commands that make each part, for error messages.
pub(crate) fn train_hint(env: EnvKind) -> String {
    let commands: Vec<String> = crate::train::pipeline_commands(env)
        .iter()
        .map(|c| format!("`{c}`"))
        .collect();
    commands.join(", ")
}

/// Loads the bundle for eval and checks it has what is needed: V and M always, C unless a
/// baseline acts (the one `--controller` names, else the default C).
fn load_for_eval<B: Backend>(
    config: &EvalConfig,
    device: &B::Device,
) -> anyhow::Result<(ConvVae<B>, MdnRnn<B>, Option<Controller>)> {
    let Some(which) = &config.controller else {
        return load_checked(
            config.env,
            &config.model,
            config.baseline.is_none(),
            "evaluate",
            device,
        );
    };
    let (vae, rnn, controllers) =
        load_with_controllers(config.env, &config.model, "evaluate", device)?;
    let picked = pick_controller(controllers, which, &config.model)?;
    Ok((vae, rnn, Some(picked.controller)))
}

/// The C of `controllers` named `which`, or numbered so (0: the default C); an error lists them.
pub fn pick_controller(
    controllers: Vec<NamedController>,
    which: &str,
    path: &Path,
) -> anyhow::Result<NamedController> {
    let names: Vec<String> = controllers
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}: {:?}", c.name))
        .collect();
    let at = controllers
        .iter()
        .position(|c| c.name == which)
        .or_else(|| which.trim().parse::<usize>().ok());
    match at {
        Some(i) if i < controllers.len() => Ok(controllers.into_iter().nth(i).expect("in range")),
        _ if controllers.is_empty() => bail!("{} has no C to pick {which:?} from", path.display()),
        _ => bail!(
            "{} has no C named or numbered {which:?}; it holds {}",
            path.display(),
            names.join(", ")
        ),
    }
}

/// Loads V, M and every C of the bundle at `path` for `env` (the default C first, then the extra
/// ones; see [`WorldModel::named_controllers`]), checking V and M as [`load_checked`] does.
pub(crate) fn load_with_controllers<B: Backend>(
    env: EnvKind,
    path: &Path,
    purpose: &str,
    device: &B::Device,
) -> anyhow::Result<(ConvVae<B>, MdnRnn<B>, Vec<NamedController>)> {
    let mut model = load_model_checked::<B>(env, path, purpose, device)?;
    let controllers = model.named_controllers();
    let missing = |part: &str, command: &str| missing_part(env, path, purpose, part, command);
    let vae = model
        .vae
        .take()
        .ok_or_else(|| missing("V (the VAE)", "train-vae"))?;
    let rnn = model
        .mdrnn
        .take()
        .ok_or_else(|| missing("M (the MDN-RNN)", "train-mdrnn"))?;
    Ok((vae, rnn, controllers))
}

fn missing_part(
    env: EnvKind,
    path: &Path,
    purpose: &str,
    part: &str,
    command: &str,
) -> anyhow::Error {
    anyhow::anyhow!(
        "{} has no {part}: train it with `dreamplay {command} --env {env}` \
         (it writes the run's bundle, runs/{env}/world-model.bin by default; pass --model to \
         {purpose} that file)",
        path.display()
    )
}

/// The bundle at `path`, checked against `env` and its action size.
fn load_model_checked<B: Backend>(
    env: EnvKind,
    path: &Path,
    purpose: &str,
    device: &B::Device,
) -> anyhow::Result<WorldModel<B>> {
    // V and M are built from the file's one spec, so their z sizes always agree; the env's action
    // size is checked against that spec here, before any weight is decoded.
    let expect = Expect {
        action_size: Some(env.action_space().len()),
        ..Expect::env(env)
    };
    bundle::load(path, &expect, device).with_context(|| {
        format!(
            "cannot {purpose} {env} without a model; the pipeline that makes one: {}",
            train_hint(env)
        )
    })
}

/// Loads V, M and (when `with_controller`) C from the bundle at `path` for `env`, checking that
/// they fit each other and the env. Each missing part is named with the command that trains it;
/// `purpose` says what the model was needed for ("evaluate", "measure").
pub(super) fn load_checked<B: Backend>(
    env: EnvKind,
    path: &Path,
    with_controller: bool,
    purpose: &str,
    device: &B::Device,
) -> anyhow::Result<(ConvVae<B>, MdnRnn<B>, Option<Controller>)> {
    let model = load_model_checked::<B>(env, path, purpose, device)?;
    let missing = |part: &str, command: &str| missing_part(env, path, purpose, part, command);
    let vae = model
        .vae
        .ok_or_else(|| missing("V (the VAE)", "train-vae"))?;
    let rnn = model
        .mdrnn
        .ok_or_else(|| missing("M (the MDN-RNN)", "train-mdrnn"))?;
    let controller = if with_controller {
        Some(
            model
                .controller
                .ok_or_else(|| missing("C (the controller)", "train-controller"))?,
        )
    } else {
        None
    };
    Ok((vae, rnn, controller))
}

/// Runs `dreamplay eval`: C (or the random policy) over `episodes` real episodes, and over as
/// many dreams at each `dream_taus`. Episode i uses env seed [`eval_episode_seed`]`(seed, i)`;
/// dream i starts from V's posterior of that episode's first frame, or with `dream_context` K,
/// after its first K steps under the data policy ([`RealPrefix`]).
pub fn evaluate<B: Backend>(config: &EvalConfig, device: &B::Device) -> anyhow::Result<EvalReport> {
    config.validate()?;
    let env = config.env;
    let seeds: Vec<u64> = (0..config.episodes as u64)
        .map(|i| eval_episode_seed(config.seed, i))
        .collect();
    let needs_model =
        config.baseline.is_none() || !config.dream_taus.is_empty() || config.done_along_reality;
    // Who acts when C does not (only a baseline run leaves C out).
    let baseline = config.baseline.unwrap_or(AgentKind::Uniform);
    let loaded = if needs_model {
        Some(load_for_eval::<B>(config, device)?)
    } else {
        None
    };
    let progress = bar(
        (config.episodes * (1 + config.dream_taus.len())) as u64,
        "episodes",
    );
    progress.set_message("real env");
    let real = match &loaded {
        Some((vae, rnn, Some(c))) => {
            let agent = AgentModel {
                env,
                vae,
                rnn,
                device,
            };
            let controllers = vec![c; seeds.len()];
            run_real_episodes(
                &agent,
                &controllers,
                &seeds,
                config.max_steps,
                &mut |_, _| progress.inc(1),
            )?
        }
        _ => {
            let r = run_baseline_episodes(env, baseline, &seeds, config.max_steps)?;
            progress.inc(r.len() as u64);
            r
        }
    };
    let mut dream = Vec::new();
    if let Some((vae, rnn, controller)) = &loaded
        && !config.dream_taus.is_empty()
    {
        let starts = eval_dream_starts(env, vae, &seeds, config.dream_context, device)?;
        let mut batch = DreamBatch::new(vae.clone(), rnn.clone(), seeds.len(), device);
        batch.set_done_rule(config.done_rule);
        batch.set_done_odds(config.done_odds);
        for &tau in &config.dream_taus {
            progress.set_message(format!("dream at tau {tau}"));
            let mut agents: Vec<Box<dyn Agent + '_>> = seeds
                .iter()
                .map(|&s| match controller {
                    Some(c) => Box::new(c) as Box<dyn Agent>,
                    None => baseline_agent(baseline, env, s),
                })
                .collect();
            let mut rng = eval_dream_rng(config.seed, tau);
            let results = dream_returns(
                &mut batch,
                env,
                &mut agents,
                &starts,
                tau,
                config.max_steps,
                DreamDraws::Shared(&mut rng),
            )?;
            progress.inc(results.len() as u64);
            dream.push((tau, results));
        }
    }
    let done_along_reality = match &loaded {
        Some((vae, rnn, _)) if config.done_along_reality => {
            progress.set_message("M along reality");
            Some(done_along_reality(
                env,
                baseline,
                &seeds,
                config.max_steps,
                vae,
                rnn,
                device,
            )?)
        }
        _ => None,
    };
    progress.finish_and_clear();
    let report = EvalReport {
        agent: match (config.baseline, &config.controller) {
            (Some(b), _) => b.describe(),
            (None, Some(which)) => format!("C {which:?} from {}", config.model.display()),
            (None, None) => format!("C from {}", config.model.display()),
        },
        real,
        dream,
        done_along_reality,
    };
    if let Some(path) = &config.csv {
        write_eval_csv(path, &report)
            .with_context(|| format!("cannot write the per-episode CSV {}", path.display()))?;
    }
    Ok(report)
}

/// The starts of `eval`'s dreams, one per seed: each from its real episode, the first frame or
/// (with `context` K) the first K + 1 frames under the data policy, encoded by V in one batch.
pub fn eval_dream_starts<B: Backend>(
    env: EnvKind,
    vae: &ConvVae<B>,
    seeds: &[u64],
    context: usize,
    device: &B::Device,
) -> anyhow::Result<Vec<DreamStart>> {
    let prefixes: Vec<RealPrefix> = seeds
        .par_iter()
        .map(|&s| RealPrefix::run(env, s, context))
        .collect::<anyhow::Result<_>>()?;
    let refs: Vec<&Frame> = prefixes.iter().flat_map(|p| &p.frames).collect();
    let (mu, logvar) = vae.encode_frames(&refs, device);
    let per_start = (context + 1) * vae.z_size();
    Ok(prefixes
        .into_iter()
        .zip(seeds)
        .enumerate()
        .map(|(i, (prefix, &s))| {
            // K = 0 draws exactly what the paper's start drew before context existed.
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            let rows = i * per_start..(i + 1) * per_start;
            DreamStart {
                z: sample_posterior(&mu[rows.clone()], &logvar[rows], &mut rng),
                actions: prefix.actions,
                prefix_return: prefix.ret,
            }
        })
        .collect())
}

/// The generator of `eval`'s dreams at `tau` under `seed`.
pub fn eval_dream_rng(seed: u64, tau: f32) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_seed(&[
        seed,
        EVAL_DREAM_STREAM,
        u64::from(tau.to_bits()),
    ]))
}

/// `episode,tau,return,steps,done`: the real episodes first (tau empty), then each tau's dreams.
pub fn write_eval_csv(path: &Path, report: &EvalReport) -> std::io::Result<()> {
    let mut log = CsvLog::open(path, &["episode", "tau", "return", "steps", "done"], None)?;
    let mut rows = |tau: f64, results: &[EpisodeResult]| -> std::io::Result<()> {
        for (i, r) in results.iter().enumerate() {
            log.row(&[
                i as f64,
                tau,
                r.ret,
                f64::from(r.steps),
                f64::from(u8::from(r.done)),
            ])?;
        }
        Ok(())
    };
    rows(f64::NAN, &report.real)?;
    for (tau, results) in &report.dream {
        rows(f64::from(*tau), results)?;
    }
    Ok(())
}

fn read_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> anyhow::Result<Vec<f32>> {
    match t.into_data().convert::<f32>().to_vec::<f32>() {
        Ok(v) => Ok(v),
        Err(e) => bail!("reading a tensor back: {e:?}"),
    }
}
