//! `collect`: random-policy rollouts of a real env, one `.npz` per rollout (see [`super::rollout`]).
//!
//! # Data rules (the paper's)
//! - CarRacing: every rollout drives [`CAR_RACING_MAX_STEPS`] = 1,000 frames with "done" suppressed, as
//!   WorldModelsExperiments did (`full_episode=True`). Our env keeps simulating after it terminates
//!   (see `envs::car_racing`, Episode Termination): after a finished lap the car drives on; off the
//!   playfield the frame shows black beyond the field and every step there scores -100, as in Gym.
//!   The data keeps the truth: `dones[t]` is the env's `terminated` flag at each step, so it can be 1 on
//!   several steps, not only the last, and the rollout goes on after it.
//! - Take Cover: up to [`TAKE_COVER_MAX_STEPS`] = 2,100 frames, stopping when the player dies (`dones`
//!   is 1 on that last step only) or at the time limit; only episodes longer than `min_length` frames
//!   (default [`TAKE_COVER_MIN_LENGTH`] = 100) are kept. A shorter one is rejected and the rollout is
//!   re-drawn with the next attempt's seeds.
//!
//! # Seeds and determinism
//! Rollout `i`, attempt `k` resets the env with `rollout_seeds(seed, i, k).env` and builds its policy
//! from `rollout_seeds(seed, i, k).policy`: a SplitMix64 hash of (seed, i, k) and nothing else. Rollouts
//! share no state, so the same config writes byte-identical files whatever the thread count or order
//! (the zip entries carry the fixed 1980-01-01 timestamp, not the clock).
//!
//! # Resume
//! Rollout `i` is `rollout_{i:05}.npz` in the output folder. A run skips every file that reads back
//! fully valid and fits the config, and redoes a missing, truncated or corrupt one. `collect.json` in
//! the folder records the config that made the files; resuming with a different env, policy, seed or
//! step limits is an error rather than a mixed data set.
//!
//! # Default policies
//! CarRacing: brownian, chosen for varied frames. Measured on 16 rollouts of 1,000 frames (seed 0):
//!
//! | policy            | distance driven | heading change | frames off the road | frames with kerbs |
//! |-------------------|-----------------|----------------|---------------------|-------------------|
//! | brownian          | 85 units        | 2.6 rad        | 486                 | 256               |
//! | random-controller | 278 units       | 62 rad         | 672                 | 84                |
//! | uniform           | 62 units        | 0.1 rad        | 6                   | 515               |
//!
//! Brownian turns both ways, brakes, crosses kerbs, and leaves the road for the grass and comes back in
//! every rollout. The random controller holds a nearly constant action per rollout: most of its
//! rollouts spin in circles on the grass, 2 of 16 stand still and 1 left the playfield. Uniform noise
//! averages out: the car creeps straight ahead along the start of the track.
//! Take Cover: the paper's held random action.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::rollout::{FormatError, Rollout, RolloutError, RolloutRecorder};
use crate::agent::{AgentKind, Seen};
use crate::envs::{ActionError, EnvKind};

/// CarRacing frames per rollout: the paper's 1,000 (Gym's time limit).
pub const CAR_RACING_MAX_STEPS: u32 = 1_000;
/// Take Cover frames per rollout at most: the paper's 2,100 (the env's 60 s time limit).
pub const TAKE_COVER_MAX_STEPS: u32 = 2_100;
/// Take Cover keeps episodes longer than this many frames (the paper's `MIN_LENGTH = 100`).
pub const TAKE_COVER_MIN_LENGTH: u32 = 100;
/// Tries per rollout before a too-short episode is an error, not a re-draw. Random Take Cover episodes
/// last 210 +- 125 frames, so reaching this means `min_length` is out of reach, not bad luck.
pub const MAX_ATTEMPTS_PER_ROLLOUT: u32 = 100;
/// Name of the file recording the config that made a folder's rollouts.
pub const MANIFEST_FILE: &str = "collect.json";
/// Version of the rollout layout written into the manifest; bump it when the format changes.
// 2: Take Cover rollouts carry `sprite_mask`.
// 3: Take Cover v1 (slower fireballs, recalibrated imps): v0 rollouts are not resumed into.
pub const FORMAT_VERSION: u32 = 3;

/// What to collect and where.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    pub env: EnvKind,
    /// Rollouts in the data set (files `rollout_00000.npz` ..); at least 1.
    pub rollouts: usize,
    pub policy: AgentKind,
    /// Master seed: every rollout's env and policy seeds derive from it and the rollout's index.
    pub seed: u64,
    pub out_dir: PathBuf,
    /// Frames per rollout at most (CarRacing: exactly, since done is suppressed).
    pub max_steps: u32,
    /// Keep only episodes longer than this many frames; 0 keeps everything.
    pub min_length: u32,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
}

impl CollectConfig {
    /// The paper's settings for `env`: its default policy, step limit and minimum length, seed 0, all cores.
    pub fn new(env: EnvKind, rollouts: usize, out_dir: impl Into<PathBuf>) -> Self {
        CollectConfig {
            env,
            rollouts,
            policy: AgentKind::default_for(env),
            seed: 0,
            out_dir: out_dir.into(),
            max_steps: default_max_steps(env),
            min_length: default_min_length(env),
            threads: 0,
        }
    }

    /// Checks that the config can produce a data set at all.
    pub fn validate(&self) -> Result<(), CollectError> {
        if self.rollouts == 0 {
            return Err(CollectError::NoRollouts);
        }
        if self.max_steps == 0 {
            return Err(CollectError::NoSteps);
        }
        if self.min_length >= self.max_steps {
            return Err(CollectError::MinLengthUnreachable {
                min_length: self.min_length,
                max_steps: self.max_steps,
            });
        }
        Ok(())
    }

    /// The file of rollout `index`.
    pub fn rollout_path(&self, index: usize) -> PathBuf {
        self.out_dir.join(rollout_file_name(index))
    }
}

/// The paper's frames per rollout for `env`.
pub fn default_max_steps(env: EnvKind) -> u32 {
    match env {
        EnvKind::CarRacing => CAR_RACING_MAX_STEPS,
        EnvKind::TakeCover => TAKE_COVER_MAX_STEPS,
    }
}

/// The paper's minimum episode length for `env` (CarRacing rollouts always run to the end).
pub fn default_min_length(env: EnvKind) -> u32 {
    match env {
        EnvKind::CarRacing => 0,
        EnvKind::TakeCover => TAKE_COVER_MIN_LENGTH,
    }
}

/// Whether a rollout of `env` ends when the env terminates. CarRacing: no, the paper suppressed done.
pub fn stops_at_termination(env: EnvKind) -> bool {
    match env {
        EnvKind::CarRacing => false,
        EnvKind::TakeCover => true,
    }
}

/// `rollout_00042.npz`: zero-padded so the files sort in rollout order.
pub fn rollout_file_name(index: usize) -> String {
    format!("rollout_{index:05}.npz")
}

/// The env and policy seeds of one attempt at one rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSeeds {
    pub env: u64,
    pub policy: u64,
}

/// Seeds for rollout `index`, attempt `attempt` (0 first; a rejected too-short episode moves to the next):
/// a SplitMix64 hash of (seed, index, attempt), so every rollout is reproducible on its own.
pub fn rollout_seeds(seed: u64, index: u64, attempt: u32) -> RolloutSeeds {
    // Distinct constants keep the env and policy streams apart even though they share the state.
    const ENV_STREAM: u64 = 0x656e_7673_6565_6421;
    const POLICY_STREAM: u64 = 0x706f_6c69_6379_2121;
    let state = splitmix64(splitmix64(splitmix64(seed) ^ index) ^ u64::from(attempt));
    RolloutSeeds {
        env: splitmix64(state ^ ENV_STREAM),
        policy: splitmix64(state ^ POLICY_STREAM),
    }
}

/// SplitMix64's output function: a bijective 64-bit mix with good avalanche.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a collection cannot run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("nothing to collect: the number of rollouts is 0")]
    NoRollouts,
    #[error("the step limit per rollout is 0: a rollout needs at least one step")]
    NoSteps,
    #[error(
        "min length {min_length} is unreachable: episodes last at most {max_steps} steps and must be longer than the min length"
    )]
    MinLengthUnreachable { min_length: u32, max_steps: u32 },
    #[error("cannot create the output folder {}: {source}", path.display())]
    OutputDir { path: PathBuf, source: io::Error },
    #[error("{}: cannot read or write the collection manifest: {source}", path.display())]
    Manifest { path: PathBuf, source: io::Error },
    #[error(
        "{} was made by a different collection ({existing}); this run asks for {requested}. Use another output folder, or delete it to start over",
        path.display()
    )]
    ConfigMismatch {
        path: PathBuf,
        existing: String,
        requested: String,
    },
    #[error("cannot start {threads} worker threads: {source}")]
    ThreadPool {
        threads: usize,
        source: rayon::ThreadPoolBuildError,
    },
    #[error("rollout {index}: {source}")]
    Rollout { index: usize, source: RolloutError },
    #[error("rollout {index}: the env rejected the policy's action: {source}")]
    Action { index: usize, source: ActionError },
    #[error("rollout {index}: the recorded steps do not form a rollout: {source}")]
    Format { index: usize, source: FormatError },
    #[error(
        "rollout {index}: no episode longer than {min_length} steps in {attempts} tries; lower the min length"
    )]
    TooShort {
        index: usize,
        min_length: u32,
        attempts: u32,
    },
}

/// How one rollout ended up.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutOutcome {
    pub index: usize,
    pub path: PathBuf,
    /// Written now, or a valid file found and kept.
    pub status: RolloutStatus,
    pub frames: usize,
    pub bytes: u64,
    pub total_reward: f64,
    /// Too-short episodes discarded before this one.
    pub rejected: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutStatus {
    Written,
    /// A valid file from an earlier run.
    Skipped,
    /// An existing file was invalid and has been rewritten.
    Replaced,
}

/// Progress reports, sent from the worker threads as rollouts finish.
#[derive(Debug)]
pub enum CollectEvent<'a> {
    /// Before the first rollout.
    Started { rollouts: usize },
    /// An existing file is invalid or does not fit the config (`reason` names the file); it is being redone.
    Redoing { index: usize, reason: &'a str },
    /// A rollout is done (written or skipped).
    Finished(&'a RolloutOutcome),
}

/// Totals of one collection run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectStats {
    /// Rollouts written by this run, replacements included.
    pub written: usize,
    /// Valid rollouts from an earlier run, kept.
    pub skipped: usize,
    /// Of `written`: existing files that were invalid and were redone.
    pub replaced: usize,
    /// Too-short episodes discarded (Take Cover's min length).
    pub rejected: usize,
    /// Frames in the rollouts written by this run.
    pub frames_written: usize,
    /// Frames in the whole data set (written and skipped).
    pub frames_total: usize,
    /// Bytes of the files written by this run.
    pub bytes_written: u64,
    /// Bytes of the whole data set.
    pub bytes_total: u64,
    /// Mean return over the whole data set.
    pub mean_return: f64,
    /// Population standard deviation of the return over the whole data set.
    pub sd_return: f64,
    pub elapsed: Duration,
}

impl CollectStats {
    fn from_outcomes(outcomes: &[RolloutOutcome], elapsed: Duration) -> Self {
        let mut stats = CollectStats {
            elapsed,
            ..CollectStats::default()
        };
        for outcome in outcomes {
            match outcome.status {
                RolloutStatus::Skipped => stats.skipped += 1,
                RolloutStatus::Written | RolloutStatus::Replaced => {
                    stats.written += 1;
                    stats.frames_written += outcome.frames;
                    stats.bytes_written += outcome.bytes;
                }
            }
            stats.replaced += usize::from(outcome.status == RolloutStatus::Replaced);
            stats.rejected += outcome.rejected as usize;
            stats.frames_total += outcome.frames;
            stats.bytes_total += outcome.bytes;
        }
        let returns: Vec<f64> = outcomes.iter().map(|o| o.total_reward).collect();
        let count = returns.len().max(1) as f64;
        stats.mean_return = returns.iter().sum::<f64>() / count;
        stats.sd_return = (returns
            .iter()
            .map(|r| (r - stats.mean_return).powi(2))
            .sum::<f64>()
            / count)
            .sqrt();
        stats
    }
}

/// Runs the collection: every missing or invalid rollout is generated and written, in parallel.
/// Stops at the first error (a write error, such as a full disk, included); files already written stay
/// valid, and running again resumes.
pub fn collect(
    config: &CollectConfig,
    progress: &(dyn Fn(CollectEvent<'_>) + Sync),
) -> Result<CollectStats, CollectError> {
    config.validate()?;
    let start = Instant::now();
    std::fs::create_dir_all(&config.out_dir).map_err(|source| CollectError::OutputDir {
        path: config.out_dir.clone(),
        source,
    })?;
    check_or_write_manifest(config)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|source| CollectError::ThreadPool {
            threads: config.threads,
            source,
        })?;
    progress(CollectEvent::Started {
        rollouts: config.rollouts,
    });
    let outcomes: Vec<RolloutOutcome> = pool.install(|| {
        (0..config.rollouts)
            .into_par_iter()
            .map(|index| {
                let outcome = ensure_rollout(config, index, progress)?;
                progress(CollectEvent::Finished(&outcome));
                Ok(outcome)
            })
            .collect::<Result<_, CollectError>>()
    })?;
    Ok(CollectStats::from_outcomes(&outcomes, start.elapsed()))
}

/// Keeps rollout `index` if its file is valid, otherwise generates and writes it.
fn ensure_rollout(
    config: &CollectConfig,
    index: usize,
    progress: &(dyn Fn(CollectEvent<'_>) + Sync),
) -> Result<RolloutOutcome, CollectError> {
    let path = config.rollout_path(index);
    let mut status = RolloutStatus::Written;
    if path.exists() {
        match read_existing(config, &path) {
            Ok(rollout) => {
                let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                return Ok(RolloutOutcome {
                    index,
                    path,
                    status: RolloutStatus::Skipped,
                    frames: rollout.len(),
                    bytes,
                    total_reward: rollout.total_reward(),
                    rejected: 0,
                });
            }
            Err(reason) => {
                progress(CollectEvent::Redoing {
                    index,
                    reason: &reason,
                });
                status = RolloutStatus::Replaced;
            }
        }
    }
    let (rollout, rejected) = generate_rollout(config, index)?;
    let bytes = rollout
        .write(&path)
        .map_err(|source| CollectError::Rollout { index, source })?;
    Ok(RolloutOutcome {
        index,
        path,
        status,
        frames: rollout.len(),
        bytes,
        total_reward: rollout.total_reward(),
        rejected,
    })
}

/// An existing file counts as done if it reads back fully valid and fits the config's limits; otherwise
/// the reason, naming the file.
fn read_existing(config: &CollectConfig, path: &Path) -> Result<Rollout, String> {
    let rollout = Rollout::read(path).map_err(|err| err.to_string())?;
    let action_dim = config.env.action_space().len();
    if rollout.action_dim() != action_dim {
        return Err(format!(
            "{}: actions have {} values, but {} has {action_dim}",
            path.display(),
            rollout.action_dim(),
            config.env
        ));
    }
    if rollout.len() > config.max_steps as usize || rollout.len() <= config.min_length as usize {
        return Err(format!(
            "{}: {} steps, outside this collection's range ({}, {}]",
            path.display(),
            rollout.len(),
            config.min_length,
            config.max_steps
        ));
    }
    Ok(rollout)
}

/// Plays rollout `index`: attempt 0, 1, .. until an episode is long enough. Returns the rollout and
/// the number of rejected attempts.
pub fn generate_rollout(
    config: &CollectConfig,
    index: usize,
) -> Result<(Rollout, u32), CollectError> {
    let space = config.env.action_space();
    let mut env = config.env.make(0);
    for attempt in 0..MAX_ATTEMPTS_PER_ROLLOUT {
        let seeds = rollout_seeds(config.seed, index as u64, attempt);
        let mut policy = config.policy.build(config.env, seeds.policy);
        let mut obs = env.reset(seeds.env);
        let mut recorder =
            RolloutRecorder::new(space.len(), Some(seeds.env), config.max_steps as usize);
        for _ in 0..config.max_steps {
            let action = policy.act(&Seen::frame(&obs));
            let sprite_mask = env.sprite_mask();
            let step = env
                .step(&action)
                .map_err(|source| CollectError::Action { index, source })?;
            recorder
                .push(
                    &obs,
                    sprite_mask.as_deref(),
                    &action,
                    step.reward,
                    step.terminated,
                )
                .map_err(|source| CollectError::Format { index, source })?;
            let ended = stops_at_termination(config.env) && step.done();
            obs = step.obs;
            if ended {
                break;
            }
        }
        if recorder.len() > config.min_length as usize {
            let rollout = recorder
                .finish()
                .map_err(|source| CollectError::Format { index, source })?;
            return Ok((rollout, attempt));
        }
    }
    Err(CollectError::TooShort {
        index,
        min_length: config.min_length,
        attempts: MAX_ATTEMPTS_PER_ROLLOUT,
    })
}

/// The part of a config that decides the files' contents (not how many, nor the threads).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    env: EnvKind,
    policy: AgentKind,
    seed: u64,
    max_steps: u32,
    min_length: u32,
}

impl Manifest {
    fn of(config: &CollectConfig) -> Self {
        Manifest {
            format: FORMAT_VERSION,
            env: config.env,
            policy: config.policy,
            seed: config.seed,
            max_steps: config.max_steps,
            min_length: config.min_length,
        }
    }

    fn describe(&self) -> String {
        format!(
            "env {}, policy {}, seed {}, max steps {}, min length {}, format {}",
            self.env, self.policy, self.seed, self.max_steps, self.min_length, self.format
        )
    }
}

fn check_or_write_manifest(config: &CollectConfig) -> Result<(), CollectError> {
    let path = config.out_dir.join(MANIFEST_FILE);
    let requested = Manifest::of(config);
    let manifest_error = |source| CollectError::Manifest {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let existing: Manifest = serde_json::from_str(&text)
                .map_err(|e| manifest_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            if existing != requested {
                return Err(CollectError::ConfigMismatch {
                    path: config.out_dir.clone(),
                    existing: existing.describe(),
                    requested: requested.describe(),
                });
            }
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(&requested)
                .map_err(|e| manifest_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            std::fs::write(&path, text + "\n").map_err(manifest_error)
        }
        Err(err) => Err(manifest_error(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_depend_on_every_input_and_nothing_else() {
        let base = rollout_seeds(0, 0, 0);
        assert_eq!(base, rollout_seeds(0, 0, 0));
        for other in [
            rollout_seeds(1, 0, 0),
            rollout_seeds(0, 1, 0),
            rollout_seeds(0, 0, 1),
        ] {
            assert_ne!(other.env, base.env);
            assert_ne!(other.policy, base.policy);
        }
        assert_ne!(base.env, base.policy);
    }

    #[test]
    fn impossible_configs_are_errors() {
        let config = CollectConfig::new(EnvKind::TakeCover, 0, "unused");
        assert!(matches!(config.validate(), Err(CollectError::NoRollouts)));
        let config = CollectConfig {
            rollouts: 1,
            max_steps: 0,
            ..config
        };
        assert!(matches!(config.validate(), Err(CollectError::NoSteps)));
        let config = CollectConfig {
            max_steps: 100,
            min_length: 100,
            ..config
        };
        assert!(matches!(
            config.validate(),
            Err(CollectError::MinLengthUnreachable { .. })
        ));
    }

    #[test]
    fn take_cover_rollouts_are_longer_than_the_min_length_and_end_at_death() {
        let config = CollectConfig {
            max_steps: 400,
            min_length: 150,
            ..CollectConfig::new(EnvKind::TakeCover, 1, "x")
        };
        for index in 0..4 {
            let (rollout, _rejected) =
                generate_rollout(&config, index).expect("reachable min length");
            assert!(
                rollout.len() > 150 && rollout.len() <= 400,
                "{}",
                rollout.len()
            );
            let dones = rollout.dones();
            assert!(dones.iter().take(rollout.len() - 1).all(|&d| d == 0));
            if rollout.len() < 400 {
                assert_eq!(dones[rollout.len() - 1], 1, "an early end is a death");
            }
        }
    }

    #[test]
    fn car_racing_rollouts_run_the_full_length() {
        let config = CollectConfig {
            max_steps: 60,
            ..CollectConfig::new(EnvKind::CarRacing, 1, "x")
        };
        let (rollout, rejected) = generate_rollout(&config, 0).expect("no min length");
        assert_eq!((rollout.len(), rejected), (60, 0));
        assert_eq!(rollout.action_dim(), 3);
    }
}
