//! How faithful M's dream is to reality, measured two ways (`dreamplay eval --open-loop` and
//! `dreamplay eval --futures`; `docs/fidelity.md` has the method and the shipped models' figures).
//!
//! Both play real episodes with the env's data policy (the policy M was trained on: episode i has
//! env seed [`eval_episode_seed`]`(seed, i)` and the actions [`data_policy`] gives, the same
//! episodes `eval` scores), and fork dreams from them every `fork_every` steps. A fork at step t
//! is the memory of reality there ([`RealityMemory`]): z = V's mu of the real frame t, and M's h
//! and c after reading the real (z, a) of steps 0..t. The dream then receives the actions reality
//! received from step t on, so it differs from reality only by what M predicts.
//!
//! - **Open-loop** ([`open_loop`]): one dream per fork, compared after k steps with the real frame
//!   t + k, at each of [`HORIZONS`] the episode reaches.
//! - **Futures** ([`futures_spread`]): N dreams per fork, all with the same actions; how far their
//!   frames at one horizon spread apart, per temperature.
//!
//! Everything random derives from the seed, so a run is deterministic (on one backend).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::eval::{data_policy, eval_episode_seed, load_checked, mix_seed};
use crate::agent::Seen;
use crate::dream::{
    DreamBatch, FlowDreamBatch, RealityMemory, pixel_error, pixel_spread, sharpness,
};
use crate::envs::{EnvKind, Frame};
use crate::model::flow::file as flow_file;
use crate::model::flow::shortcut::Sampling;
use crate::model::mdrnn::{MdnRnn, PAPER_DOOM_TAUS};
use crate::model::vae::{ConvVae, FrameDecoder};
use crate::train::collect::default_max_steps;
use crate::train::progress::bar;

/// The steps after a fork at which the open-loop dream is compared with reality.
pub const HORIZONS: [u32; 5] = [1, 5, 10, 30, 100];
/// A fork every this many real steps: a second of CarRacing (50 forks in a full episode), about
/// 0.6 s of Take Cover (about 10 in a data-policy episode).
pub const DEFAULT_FORK_EVERY: u32 = 20;
/// Real episodes for `--open-loop` unless told.
pub const OPEN_LOOP_EPISODES: usize = 20;
/// Real episodes for `--futures` unless told: a few, as every fork there costs N dreams.
pub const FUTURES_EPISODES: usize = 4;
/// The most futures per fork `--futures` takes.
pub const MAX_FUTURES: usize = 64;
/// The open-loop CSV's `model` column: the world model's family, so that another family's rows
/// can sit beside these.
pub const MODEL_FAMILY: &str = "mdn-rnn";
/// The temperatures `--futures` measures unless told: the paper's presets.
pub const DEFAULT_FUTURES_TAUS: [f32; 5] = PAPER_DOOM_TAUS;

/// Real episodes held at once (the frames of a full CarRacing episode take 12 MB).
const EPISODES_PER_CHUNK: usize = 8;
/// Dreams stepped as one batch by `--futures`.
const FAN_ROWS: usize = 512;
/// Latents decoded as one batch.
const DECODE_ROWS: usize = 256;
/// Stream constants for the dreams' draws (apart from eval's).
const OPEN_LOOP_STREAM: u64 = 0x6f70_656e_2d6c_6f6f;
const FUTURES_STREAM: u64 = 0x6675_7475_7265_7321;

/// What `dreamplay eval --open-loop` measures.
#[derive(Debug, Clone)]
pub struct OpenLoopConfig {
    pub env: EnvKind,
    /// The bundle: V and M are read.
    pub model: PathBuf,
    /// Real episodes of the data policy.
    pub episodes: usize,
    pub seed: u64,
    /// Steps per real episode at most.
    pub max_steps: u32,
    /// A fork every this many real steps (step 0 first).
    pub fork_every: u32,
    /// The dream's temperature.
    pub tau: f32,
    /// Write `model,horizon,pixel_error,z_error,sharpness` here.
    pub csv: Option<PathBuf>,
}

impl OpenLoopConfig {
    pub fn new(env: EnvKind, model: PathBuf) -> Self {
        Self {
            env,
            model,
            episodes: OPEN_LOOP_EPISODES,
            seed: 0,
            max_steps: default_max_steps(env),
            fork_every: DEFAULT_FORK_EVERY,
            tau: 1.0,
            csv: None,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.episodes >= 1,
            "--open-loop needs real episodes: --episodes must be at least 1"
        );
        ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        ensure!(self.fork_every >= 1, "--fork-every must be at least 1");
        check_tau(self.tau)
    }
}

/// What `dreamplay eval --futures` measures.
#[derive(Debug, Clone)]
pub struct FuturesConfig {
    pub env: EnvKind,
    /// The bundle: V and M are read.
    pub model: PathBuf,
    /// Dreams per fork, N.
    pub futures: usize,
    /// Steps from the fork to the frames compared, H.
    pub horizon: u32,
    /// One spread per temperature.
    pub taus: Vec<f32>,
    /// Real episodes of the data policy to fork from.
    pub episodes: usize,
    pub seed: u64,
    /// Steps per real episode at most.
    pub max_steps: u32,
    /// A fork every this many real steps (step 0 first), where H real steps follow.
    pub fork_every: u32,
    /// Write `tau,spread` here.
    pub csv: Option<PathBuf>,
}

impl FuturesConfig {
    pub fn new(env: EnvKind, model: PathBuf, futures: usize, horizon: u32) -> Self {
        Self {
            env,
            model,
            futures,
            horizon,
            taus: DEFAULT_FUTURES_TAUS.to_vec(),
            episodes: FUTURES_EPISODES,
            seed: 0,
            max_steps: default_max_steps(env),
            fork_every: DEFAULT_FORK_EVERY,
            csv: None,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (2..=MAX_FUTURES).contains(&self.futures),
            "--futures must be 2 to {MAX_FUTURES} dreams per fork (a spread needs two), got {}",
            self.futures
        );
        let limit = default_max_steps(self.env);
        ensure!(self.horizon >= 1, "--horizon must be at least 1 step");
        ensure!(
            self.horizon <= limit,
            "--horizon {} is longer than a {} episode lasts ({limit} steps at most)",
            self.horizon,
            self.env
        );
        ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        ensure!(
            self.horizon < self.max_steps,
            "--horizon {} leaves no fork inside --max-steps {}",
            self.horizon,
            self.max_steps
        );
        ensure!(
            self.episodes >= 1,
            "--futures needs real episodes to fork from: --episodes must be at least 1"
        );
        ensure!(self.fork_every >= 1, "--fork-every must be at least 1");
        ensure!(
            !self.taus.is_empty(),
            "--futures needs at least one --dream-tau"
        );
        self.taus.iter().try_for_each(|&tau| check_tau(tau))
    }
}

/// The range `eval` takes: any positive temperature.
fn check_tau(tau: f32) -> anyhow::Result<()> {
    ensure!(
        tau.is_finite() && tau > 0.0,
        "--dream-tau values must be positive numbers, got {tau}"
    );
    Ok(())
}

/// The open-loop figures at one horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HorizonRow {
    /// Steps after the fork; 0 is the fork itself, V's reconstruction of the real frame: the
    /// floor the dream's error starts from.
    pub horizon: u32,
    /// Forks whose real episode lasted this long.
    pub forks: usize,
    /// Mean absolute difference per pixel and channel, in [0,1], between V's decoding of the
    /// dream's z and the real frame.
    pub pixel_error: f64,
    /// Mean Euclidean distance between the dream's z and V's mu of the real frame; `None` for a
    /// world model without V's z (the flow model).
    pub z_error: Option<f64>,
    /// The dream frames' mean image-gradient magnitude over the real frames' (1: as sharp as
    /// reality).
    pub sharpness: f64,
}

/// What `dreamplay eval --open-loop` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoopReport {
    /// The world model's family ([`MODEL_FAMILY`]).
    pub model: &'static str,
    pub episodes: usize,
    /// Real steps played, over all episodes.
    pub real_steps: usize,
    /// Forks, one dream each.
    pub forks: usize,
    /// Horizon 0, then each of [`HORIZONS`] that some episode reached.
    pub rows: Vec<HorizonRow>,
}

/// One temperature's spread of futures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpreadRow {
    pub tau: f32,
    /// The mean over forks of [`pixel_spread`]'s mean at the horizon.
    pub spread: f64,
}

/// What `dreamplay eval --futures` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct FuturesReport {
    pub episodes: usize,
    /// Forks with H real steps after them, each N dreams per tau.
    pub forks: usize,
    pub rows: Vec<SpreadRow>,
}

/// A real episode of the data policy: T actions, the T + 1 frames around them and V's mu of each.
struct RealEpisode {
    frames: Vec<Frame>,
    actions: Vec<f32>,
    mu: Vec<f32>,
    action_size: usize,
    z_size: usize,
}

impl RealEpisode {
    /// T, the steps taken.
    fn steps(&self) -> usize {
        self.frames.len() - 1
    }
    fn action(&self, t: usize) -> &[f32] {
        &self.actions[t * self.action_size..(t + 1) * self.action_size]
    }
    fn mu(&self, t: usize) -> &[f32] {
        &self.mu[t * self.z_size..(t + 1) * self.z_size]
    }
}

/// The memory of reality at step `t` of episode `episode`.
struct Fork {
    episode: usize,
    t: usize,
    z: Vec<f32>,
    hidden: Vec<f32>,
    cell: Vec<f32>,
}

/// Episode `seed` of the data policy until it ends or reaches `max_steps`: the frames (the
/// reset's first) and the actions between them.
fn play_data_policy(
    env: EnvKind,
    seed: u64,
    max_steps: u32,
) -> anyhow::Result<(Vec<Frame>, Vec<f32>)> {
    let mut e = env.make(seed);
    let mut policy = data_policy(env, seed);
    let mut frames = vec![e.observation()];
    let mut actions = Vec::new();
    for _ in 0..max_steps {
        let action = policy.act(&Seen::frame(frames.last().expect("the reset's frame")));
        let step = e
            .step(&action)
            .with_context(|| format!("episode seed {seed}"))?;
        actions.extend_from_slice(&action);
        let done = step.done();
        frames.push(step.obs);
        if done {
            break;
        }
    }
    Ok((frames, actions))
}

/// Plays the episodes of `seeds` in parallel and encodes every frame with V.
fn play_and_encode<B: Backend>(
    env: EnvKind,
    seeds: &[u64],
    max_steps: u32,
    vae: &ConvVae<B>,
    device: &B::Device,
) -> anyhow::Result<Vec<RealEpisode>> {
    let played: Vec<(Vec<Frame>, Vec<f32>)> = seeds
        .par_iter()
        .map(|&seed| play_data_policy(env, seed, max_steps))
        .collect::<anyhow::Result<_>>()?;
    let action_size = env.action_space().len();
    Ok(played
        .into_iter()
        .map(|(frames, actions)| {
            let mut mu = Vec::with_capacity(frames.len() * vae.z_size());
            for chunk in frames.chunks(DECODE_ROWS) {
                let refs: Vec<&Frame> = chunk.iter().collect();
                mu.extend(vae.encode_frames(&refs, device).0);
            }
            RealEpisode {
                frames,
                actions,
                mu,
                action_size,
                z_size: vae.z_size(),
            }
        })
        .collect())
}

/// M follows every episode at once (as in `eval`), and the memory is kept at each step
/// t = 0, every, 2 every, ... that has `ahead` real steps after it.
fn forks_along<B: Backend>(
    episodes: &[RealEpisode],
    rnn: &MdnRnn<B>,
    every: usize,
    ahead: usize,
    device: &B::Device,
) -> anyhow::Result<Vec<Fork>> {
    // A row stays while a later fork of its episode may come.
    let forks_after = |e: usize, t: usize| t.div_ceil(every) * every + ahead <= episodes[e].steps();
    let mut active: Vec<usize> = (0..episodes.len()).filter(|&e| forks_after(e, 0)).collect();
    let mut memory = RealityMemory::for_model(rnn, active.len());
    let mut forks = Vec::new();
    let mut t = 0;
    while !active.is_empty() {
        memory.set_all_z(
            active
                .iter()
                .flat_map(|&e| episodes[e].mu(t))
                .copied()
                .collect(),
        )?;
        if t % every == 0 {
            for (row, &e) in active.iter().enumerate() {
                if t + ahead <= episodes[e].steps() {
                    let latent = memory.latent(row);
                    forks.push(Fork {
                        episode: e,
                        t,
                        z: latent.z.to_vec(),
                        hidden: latent.hidden.to_vec(),
                        cell: latent.cell.to_vec(),
                    });
                }
            }
        }
        let keep: Vec<usize> = (0..active.len())
            .filter(|&row| forks_after(active[row], t + 1))
            .collect();
        memory.retain(&keep);
        active = keep.iter().map(|&row| active[row]).collect();
        let actions: Vec<f32> = active
            .iter()
            .flat_map(|&e| episodes[e].action(t))
            .copied()
            .collect();
        memory.advance(rnn, &actions, device)?;
        t += 1;
    }
    Ok(forks)
}

/// V's decoding of latents (`[n, z_size]`), a batch at a time.
fn decode<B: Backend>(decoder: &FrameDecoder<B>, z: &[f32], device: &B::Device) -> Vec<Frame> {
    z.chunks(DECODE_ROWS * decoder.z_size())
        .flat_map(|chunk| decoder.decode_to_frames(chunk, device))
        .collect()
}

/// The env seeds of `episodes` episodes under `seed`, in chunks held at once.
fn seed_chunks(seed: u64, episodes: usize) -> Vec<Vec<u64>> {
    let seeds: Vec<u64> = (0..episodes as u64)
        .map(|i| eval_episode_seed(seed, i))
        .collect();
    seeds
        .chunks(EPISODES_PER_CHUNK)
        .map(<[u64]>::to_vec)
        .collect()
}

/// Running sums for one horizon.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    forks: usize,
    has_z: bool,
    pixel_error: f64,
    z_error: f64,
    dream_sharpness: f64,
    real_sharpness: f64,
}

impl Sums {
    fn add(&mut self, dream: &Frame, real: &Frame, dream_z: &[f32], real_z: &[f32]) {
        self.add_frames(dream, real);
        self.has_z = true;
        self.z_error += dream_z
            .iter()
            .zip(real_z)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt();
    }

    /// The frames alone, for a world model without V's z.
    fn add_frames(&mut self, dream: &Frame, real: &Frame) {
        self.forks += 1;
        self.pixel_error += pixel_error(dream, real);
        self.dream_sharpness += sharpness(dream);
        self.real_sharpness += sharpness(real);
    }

    fn row(&self, horizon: u32) -> HorizonRow {
        let n = self.forks as f64;
        HorizonRow {
            horizon,
            forks: self.forks,
            pixel_error: self.pixel_error / n,
            z_error: self.has_z.then(|| self.z_error / n),
            sharpness: self.dream_sharpness / self.real_sharpness,
        }
    }
}

/// Runs `dreamplay eval --open-loop`: one dream per fork, stepped with reality's actions at
/// `tau`, compared with reality at horizon 0 (V alone) and at each of [`HORIZONS`].
pub fn open_loop<B: Backend>(
    config: &OpenLoopConfig,
    device: &B::Device,
) -> anyhow::Result<OpenLoopReport> {
    config.validate()?;
    let env = config.env;
    let (vae, rnn, _) = load_checked::<B>(env, &config.model, false, "measure", device)?;
    let decoder = vae.frame_decoder();
    let a = env.action_space().len();
    let last_horizon = *HORIZONS.last().expect("horizons") as usize;
    let mut sums = [Sums::default(); HORIZONS.len() + 1];
    let (mut real_steps, mut total_forks) = (0, 0);
    let progress = bar(config.episodes as u64, "episodes");
    for (chunk, seeds) in seed_chunks(config.seed, config.episodes).iter().enumerate() {
        progress.set_message("reality");
        let episodes = play_and_encode(env, seeds, config.max_steps, &vae, device)?;
        real_steps += episodes.iter().map(RealEpisode::steps).sum::<usize>();
        let forks = forks_along(&episodes, &rnn, config.fork_every as usize, 1, device)?;
        total_forks += forks.len();
        if forks.is_empty() {
            progress.inc(seeds.len() as u64);
            continue;
        }
        progress.set_message("dreams");
        // Horizon 0: V's reconstruction of the fork's own frame.
        let z0: Vec<f32> = forks.iter().flat_map(|f| f.z.iter().copied()).collect();
        for (f, frame) in forks.iter().zip(decode(&decoder, &z0, device)) {
            sums[0].add(&frame, &episodes[f.episode].frames[f.t], &f.z, &f.z);
        }
        let mut dream = DreamBatch::new(vae.clone(), rnn.clone(), forks.len(), device);
        for (i, f) in forks.iter().enumerate() {
            dream.reset_to_state(i, &f.z, &f.hidden, &f.cell)?;
        }
        // Steps left in each fork's real episode.
        let left: Vec<usize> = forks
            .iter()
            .map(|f| episodes[f.episode].steps() - f.t)
            .collect();
        let reach = left.iter().copied().max().unwrap_or(0).min(last_horizon);
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
            config.seed,
            OPEN_LOOP_STREAM,
            chunk as u64,
            u64::from(config.tau.to_bits()),
        ]));
        let mut actions = vec![0.0f32; forks.len() * a];
        for k in 1..=reach {
            // Reality's action; a zero one where the episode has ended (that row is not compared).
            for (i, f) in forks.iter().enumerate() {
                let slot = &mut actions[i * a..(i + 1) * a];
                if k <= left[i] {
                    slot.copy_from_slice(episodes[f.episode].action(f.t + k - 1));
                } else {
                    slot.fill(0.0);
                }
            }
            dream.step(&actions, config.tau, &mut rng)?;
            let Some(h) = HORIZONS.iter().position(|&h| h as usize == k) else {
                continue;
            };
            let rows: Vec<usize> = (0..forks.len()).filter(|&i| k <= left[i]).collect();
            let z: Vec<f32> = rows.iter().flat_map(|&i| dream.z(i)).copied().collect();
            for (&i, frame) in rows.iter().zip(decode(&decoder, &z, device)) {
                let (f, real) = (&forks[i], &episodes[forks[i].episode]);
                sums[h + 1].add(&frame, &real.frames[f.t + k], dream.z(i), real.mu(f.t + k));
            }
        }
        progress.inc(seeds.len() as u64);
    }
    progress.finish_and_clear();
    let rows = std::iter::once(0)
        .chain(HORIZONS)
        .zip(&sums)
        .filter(|(_, s)| s.forks > 0)
        .map(|(h, s)| s.row(h))
        .collect();
    let report = OpenLoopReport {
        model: MODEL_FAMILY,
        episodes: config.episodes,
        real_steps,
        forks: total_forks,
        rows,
    };
    Ok(report)
}

/// The open-loop CSV's `model` column for the flow model.
pub const FLOW_FAMILY: &str = "flow-matching";

/// `dreamplay eval --open-loop` for the flow model at `flow_path`: the same episodes and forks as
/// [`open_loop`] (same seed, same data policy), each fork a flow dream from the last K real
/// frames and the actions between them, stepped with reality's actions under `sampling`. Horizon
/// 0 is the autoencoder's reconstruction of the fork's frame. No z_error: it has no V.
pub fn open_loop_flow<B: Backend>(
    config: &OpenLoopConfig,
    flow_path: &Path,
    sampling: Sampling,
    device: &B::Device,
) -> anyhow::Result<OpenLoopReport> {
    config.validate()?;
    let env = config.env;
    let model = flow_file::load::<B>(flow_path, Some(env), device)?;
    let context = model.spec.context;
    let a = env.action_space().len();
    let every = config.fork_every as usize;
    let last_horizon = *HORIZONS.last().expect("horizons") as usize;
    let mut sums = [Sums::default(); HORIZONS.len() + 1];
    let (mut real_steps, mut total_forks) = (0, 0);
    let progress = bar(config.episodes as u64, "episodes");
    for (chunk, seeds) in seed_chunks(config.seed, config.episodes).iter().enumerate() {
        progress.set_message("reality");
        let episodes: Vec<(Vec<Frame>, Vec<f32>)> = seeds
            .par_iter()
            .map(|&seed| play_data_policy(env, seed, config.max_steps))
            .collect::<anyhow::Result<_>>()?;
        real_steps += episodes.iter().map(|(f, _)| f.len() - 1).sum::<usize>();
        // (episode, t) for t = 0, every, ... with a real step after it, as forks_along picks.
        let forks: Vec<(usize, usize)> = episodes
            .iter()
            .enumerate()
            .flat_map(|(e, (frames, _))| (0..frames.len() - 1).step_by(every).map(move |t| (e, t)))
            .collect();
        total_forks += forks.len();
        if forks.is_empty() {
            progress.inc(seeds.len() as u64);
            continue;
        }
        progress.set_message("dreams");
        let mut dream = FlowDreamBatch::new(model.clone(), forks.len(), device)?;
        dream.set_sampling(sampling)?;
        for (i, &(e, t)) in forks.iter().enumerate() {
            let (frames, actions) = &episodes[e];
            let first = (t + 1).saturating_sub(context);
            let start: Vec<&Frame> = frames[first..=t].iter().collect();
            dream.reset_from_frames(i, &start, &actions[first * a..t * a])?;
        }
        for (&(e, t), frame) in forks.iter().zip(dream.frames()) {
            sums[0].add_frames(&frame, &episodes[e].0[t]);
        }
        let left: Vec<usize> = forks
            .iter()
            .map(|&(e, t)| episodes[e].0.len() - 1 - t)
            .collect();
        let reach = left.iter().copied().max().unwrap_or(0).min(last_horizon);
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
            config.seed,
            OPEN_LOOP_STREAM,
            chunk as u64,
            sampling.steps as u64,
            u64::from(sampling.temperature.to_bits()),
        ]));
        let mut actions = vec![0.0f32; forks.len() * a];
        for k in 1..=reach {
            for (i, &(e, t)) in forks.iter().enumerate() {
                let slot = &mut actions[i * a..(i + 1) * a];
                if k <= left[i] {
                    let at = (t + k - 1) * a;
                    slot.copy_from_slice(&episodes[e].1[at..at + a]);
                } else {
                    slot.fill(0.0);
                }
            }
            dream.step(&actions, &mut rng)?;
            let Some(h) = HORIZONS.iter().position(|&h| h as usize == k) else {
                continue;
            };
            for (i, frame) in dream.frames().iter().enumerate() {
                if k <= left[i] {
                    let (e, t) = forks[i];
                    sums[h + 1].add_frames(frame, &episodes[e].0[t + k]);
                }
            }
        }
        progress.inc(seeds.len() as u64);
    }
    progress.finish_and_clear();
    let rows = std::iter::once(0)
        .chain(HORIZONS)
        .zip(&sums)
        .filter(|(_, s)| s.forks > 0)
        .map(|(h, s)| s.row(h))
        .collect();
    Ok(OpenLoopReport {
        model: FLOW_FAMILY,
        episodes: config.episodes,
        real_steps,
        forks: total_forks,
        rows,
    })
}

/// The horizons [`side_by_side_frames`] shows after each fork's own frame.
pub const SIDE_BY_SIDE_HORIZONS: [u32; 3] = [1, 10, 30];
/// Forks the side-by-side figure of `export-flow` shows.
pub const SIDE_BY_SIDE_FORKS: usize = 3;
const SIDE_BY_SIDE_STREAM: u64 = 0x7369_6465_2d62_7973;

/// One fork seen three ways: reality, M's dream and the flow dream, each at the fork (the dreams'
/// reconstructions of its frame) and at each horizon after it, all driven by reality's actions.
#[derive(Debug, Clone)]
pub struct SideBySideFork {
    /// The episode's index under the config's seed (its env seed is [`eval_episode_seed`]).
    pub episode: usize,
    /// The real step the dreams fork at.
    pub step: usize,
    pub real: Vec<Frame>,
    /// The 2018 dream: V's decoding of M's z.
    pub world_model: Vec<Frame>,
    pub flow: Vec<Frame>,
}

/// What [`side_by_side_frames`] gathered: each fork's frames at horizon 0, then at `horizons`.
#[derive(Debug, Clone)]
pub struct SideBySide {
    pub env: EnvKind,
    pub horizons: Vec<u32>,
    pub forks: Vec<SideBySideFork>,
}

/// A fork picked for the figure, with what both dreams start from and are driven by.
struct PickedFork {
    episode: usize,
    fork: Fork,
    /// Reality at the fork and at each horizon.
    real: Vec<Frame>,
    /// The last K real frames up to the fork and the actions between them: the flow dream's start.
    start: Vec<Frame>,
    start_actions: Vec<f32>,
    /// Reality's actions from the fork on, as many as the last horizon.
    actions: Vec<f32>,
}

/// The frames of the side-by-side figure: up to `forks` forks, one per episode among the first
/// `config.episodes` that last the longest of `horizons` past a fork, taken early, midway and late
/// through their episodes (the forks of [`open_loop`], every `config.fork_every` steps). From each,
/// M's dream (the bundle `config.model`, at `config.tau`) and the flow dream (`flow_path`, under
/// `sampling`) are stepped with reality's actions. Deterministic under `config.seed`.
pub fn side_by_side_frames<B: Backend>(
    config: &OpenLoopConfig,
    flow_path: &Path,
    sampling: Sampling,
    forks: usize,
    horizons: &[u32],
    device: &B::Device,
) -> anyhow::Result<SideBySide> {
    config.validate()?;
    ensure!(
        forks >= 1,
        "the side-by-side figure needs at least one fork"
    );
    let env = config.env;
    ensure!(
        horizons.first().is_some_and(|&h| h >= 1) && horizons.is_sorted_by(|a, b| a < b),
        "the side-by-side figure's horizons must rise from at least one step, got {horizons:?}"
    );
    let last = horizons[horizons.len() - 1] as usize;
    let (vae, rnn, _) = load_checked::<B>(env, &config.model, false, "draw", device)?;
    let flow = flow_file::load::<B>(flow_path, Some(env), device)?;
    let context = flow.spec.context;
    let a = env.action_space().len();
    let at_horizons =
        |t: usize| std::iter::once(t).chain(horizons.iter().map(move |&h| t + h as usize));

    let mut picked: Vec<PickedFork> = Vec::new();
    for (chunk, seeds) in seed_chunks(config.seed, config.episodes).iter().enumerate() {
        let episodes = play_and_encode(env, seeds, config.max_steps, &vae, device)?;
        let every = config.fork_every as usize;
        let mut by_episode: Vec<Vec<Fork>> = (0..episodes.len()).map(|_| Vec::new()).collect();
        for fork in forks_along(&episodes, &rnn, every, last, device)? {
            by_episode[fork.episode].push(fork);
        }
        for (e, mut candidates) in by_episode.into_iter().enumerate() {
            if picked.len() == forks || candidates.is_empty() {
                continue;
            }
            // Early, midway, late: the j-th of n picks lies (j + 1) / (n + 1) of the way through.
            let j = picked.len();
            let at = ((j + 1) * candidates.len() / (forks + 1)).min(candidates.len() - 1);
            let fork = candidates.swap_remove(at);
            let real = &episodes[e];
            let t = fork.t;
            let first = (t + 1).saturating_sub(context);
            picked.push(PickedFork {
                episode: chunk * EPISODES_PER_CHUNK + e,
                real: at_horizons(t).map(|k| real.frames[k].clone()).collect(),
                start: real.frames[first..=t].to_vec(),
                start_actions: real.actions[first * a..t * a].to_vec(),
                actions: real.actions[t * a..(t + last) * a].to_vec(),
                fork,
            });
        }
        if picked.len() == forks {
            break;
        }
    }
    ensure!(
        !picked.is_empty(),
        "no real episode of {env} among the first {} lasted {last} steps past a fork (at most {} steps each): add --episodes or raise --max-steps",
        config.episodes,
        config.max_steps
    );

    let n = picked.len();
    let mut dream = DreamBatch::new(vae, rnn, n, device);
    let mut flow_dream = FlowDreamBatch::new(flow, n, device)?;
    flow_dream.set_sampling(sampling)?;
    for (i, p) in picked.iter().enumerate() {
        dream.reset_to_state(i, &p.fork.z, &p.fork.hidden, &p.fork.cell)?;
        let start: Vec<&Frame> = p.start.iter().collect();
        flow_dream.reset_from_frames(i, &start, &p.start_actions)?;
    }
    let mut world_model: Vec<Vec<Frame>> = dream.frames().into_iter().map(|f| vec![f]).collect();
    let mut flow_frames: Vec<Vec<Frame>> =
        flow_dream.frames().into_iter().map(|f| vec![f]).collect();
    let stream = |family: u64| {
        ChaCha8Rng::seed_from_u64(mix_seed(&[config.seed, SIDE_BY_SIDE_STREAM, family]))
    };
    let (mut rng, mut flow_rng) = (stream(0), stream(1));
    for k in 1..=last {
        let actions: Vec<f32> = picked
            .iter()
            .flat_map(|p| &p.actions[(k - 1) * a..k * a])
            .copied()
            .collect();
        dream.step(&actions, config.tau, &mut rng)?;
        flow_dream.step(&actions, &mut flow_rng)?;
        if horizons.contains(&(k as u32)) {
            for (row, frame) in world_model.iter_mut().zip(dream.frames()) {
                row.push(frame);
            }
            for (row, frame) in flow_frames.iter_mut().zip(flow_dream.frames()) {
                row.push(frame);
            }
        }
    }
    let forks = picked
        .into_iter()
        .zip(world_model.into_iter().zip(flow_frames))
        .map(|(p, (wm, fl))| SideBySideFork {
            episode: p.episode,
            step: p.fork.t,
            real: p.real,
            world_model: wm,
            flow: fl,
        })
        .collect();
    Ok(SideBySide {
        env,
        horizons: horizons.to_vec(),
        forks,
    })
}

/// Writes the open-loop CSV of `reports` where `config` says, if it does.
pub fn write_open_loop_csv(
    config: &OpenLoopConfig,
    reports: &[&OpenLoopReport],
) -> anyhow::Result<()> {
    match &config.csv {
        Some(path) => write_csv(path, &open_loop_csv(reports)),
        None => Ok(()),
    }
}

/// Runs `dreamplay eval --futures`: per fork with H real steps after it, N dreams from its
/// memory of reality with reality's next H actions, at each tau; the spread of their frames at H.
pub fn futures_spread<B: Backend>(
    config: &FuturesConfig,
    device: &B::Device,
) -> anyhow::Result<FuturesReport> {
    config.validate()?;
    let env = config.env;
    let (vae, rnn, _) = load_checked::<B>(env, &config.model, false, "measure", device)?;
    let (n, h, a) = (
        config.futures,
        config.horizon as usize,
        env.action_space().len(),
    );
    let mut spread_sums = vec![0.0f64; config.taus.len()];
    let mut total_forks = 0;
    let progress = bar(config.episodes as u64, "episodes");
    for (chunk, seeds) in seed_chunks(config.seed, config.episodes).iter().enumerate() {
        progress.set_message("reality");
        let episodes = play_and_encode(env, seeds, config.max_steps, &vae, device)?;
        let forks = forks_along(&episodes, &rnn, config.fork_every as usize, h, device)?;
        total_forks += forks.len();
        if forks.is_empty() {
            progress.inc(seeds.len() as u64);
            continue;
        }
        // Fans per batch; a short last group re-forks its last fan into the spare rows.
        let fans = (FAN_ROWS / n).clamp(1, forks.len());
        let mut dream = DreamBatch::new(vae.clone(), rnn.clone(), fans * n, device);
        for (k, &tau) in config.taus.iter().enumerate() {
            progress.set_message(format!("futures at tau {tau}"));
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
                config.seed,
                FUTURES_STREAM,
                chunk as u64,
                u64::from(tau.to_bits()),
            ]));
            for group in forks.chunks(fans) {
                let fan_of = |j: usize| &group[j.min(group.len() - 1)];
                for j in 0..fans {
                    let f = fan_of(j);
                    dream.fork_rows(j * n..(j + 1) * n, &f.z, &f.hidden, &f.cell)?;
                }
                let mut actions = vec![0.0f32; fans * n * a];
                for step in 0..h {
                    for (row, slot) in actions.chunks_mut(a).enumerate() {
                        let f = fan_of(row / n);
                        slot.copy_from_slice(episodes[f.episode].action(f.t + step));
                    }
                    dream.step(&actions, tau, &mut rng)?;
                }
                let frames = dream.frames();
                for fan in frames.chunks(n).take(group.len()) {
                    spread_sums[k] += f64::from(pixel_spread(fan).mean);
                }
            }
        }
        progress.inc(seeds.len() as u64);
    }
    progress.finish_and_clear();
    ensure!(
        total_forks > 0,
        "no real episode of {env} lasted --horizon {} steps past a fork: lower --horizon or add --episodes",
        config.horizon
    );
    let report = FuturesReport {
        episodes: config.episodes,
        forks: total_forks,
        rows: config
            .taus
            .iter()
            .zip(spread_sums)
            .map(|(&tau, sum)| SpreadRow {
                tau,
                spread: sum / total_forks as f64,
            })
            .collect(),
    };
    if let Some(path) = &config.csv {
        write_csv(path, &spread_csv(&report))?;
    }
    Ok(report)
}

/// `model,horizon,pixel_error,z_error,sharpness`, one row per horizon of each report (the flow
/// model's z_error empty).
pub fn open_loop_csv(reports: &[&OpenLoopReport]) -> String {
    let mut text = String::from("model,horizon,pixel_error,z_error,sharpness\n");
    for report in reports {
        for r in &report.rows {
            let z_error = r.z_error.map_or(String::new(), |z| format!("{z:.6}"));
            let _ = writeln!(
                text,
                "{},{},{:.6},{z_error},{:.6}",
                report.model, r.horizon, r.pixel_error, r.sharpness
            );
        }
    }
    text
}

/// `tau,spread`, one row per tau.
pub fn spread_csv(report: &FuturesReport) -> String {
    let mut text = String::from("tau,spread\n");
    for r in &report.rows {
        let _ = writeln!(text, "{},{:.6}", r.tau, r.spread);
    }
    text
}

fn write_csv(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the CSV's folder {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write the CSV {}", path.display()))
}
