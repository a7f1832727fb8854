//! The dream's episode as the app sees it, and the operations that fork, step and edit the dream.
//! Each goes through [`with_runner`], so a missing or failing world model is explained once.

use std::time::Instant;

use bevy::prelude::*;

use super::super::world_model::{DreamRunner, ModelStatus, WorldModelRuntime};
use super::notice::Notice;
use super::reality::Reality;
use super::timings::{Timings, millis};
use crate::envs::Frame;

/// Longest dream episode before it restarts, in steps: the demo's car dream reset after 1,000 frames.
pub const DREAM_EPISODE_STEPS_MAX: u32 = 1000;

/// Where a dream was forked from: its restart point when M predicts the end.
#[derive(Debug, Clone)]
pub enum DreamOrigin {
    RealFrame(Frame),
    RandomZ,
}

/// The dream's episode, as the app sees it.
#[derive(Resource, Debug, Clone, Default)]
pub struct DreamEpisode {
    /// A dream has been forked and may step.
    pub forked: bool,
    pub origin: Option<DreamOrigin>,
    pub steps: u32,
    /// Sum of M's predicted rewards.
    pub episode_return: f64,
    /// Dream episodes ended by a predicted done or the time limit.
    pub restarts: u32,
    /// Bumped whenever z changes, so the dream view re-decodes only then.
    pub generation: u64,
}

impl DreamEpisode {
    /// z changed outside an episode's steps (M following reality, a slider): there is a dream to show.
    pub(super) fn z_changed(&mut self) {
        self.forked = true;
        self.generation += 1;
    }

    fn start(&mut self, origin: DreamOrigin) {
        self.forked = true;
        self.origin = Some(origin);
        self.steps = 0;
        self.episode_return = 0.0;
        self.generation += 1;
    }
}

/// Runs `f` on the runner. No runner: a notice saying why. An error: shown once, and the runner is
/// dropped with the reason, so a broken model cannot flood the log every step.
pub(super) fn with_runner<T>(
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
    f: impl FnOnce(&mut dyn DreamRunner) -> anyhow::Result<T>,
) -> Option<T> {
    let Some(runner) = runtime.runner.as_deref_mut() else {
        if notice.seconds_left <= 0.0 {
            notice.show(format!(
                "{}: the dream needs V and M.",
                runtime.status.headline()
            ));
        }
        return None;
    };
    match f(runner) {
        Ok(value) => Some(value),
        Err(err) => {
            let reason = format!("The world model failed: {err:#}");
            error!("{reason}");
            notice.show(reason.clone());
            runtime.runner = None;
            runtime.status = ModelStatus::Unavailable { reason };
            None
        }
    }
}

/// Forks the dream from the current real frame, which the reality-following M sees too (Lockstep
/// then needs no second encoding of it); the dream keeps the memory M built along the episode.
/// Without a model, says so.
pub(super) fn fork_from_reality(
    reality: &Reality,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    let frame = reality.obs.clone();
    let result = with_runner(runtime, notice, |runner| {
        runner.observe_reality(&frame)?;
        runner.fork_from_reality(&frame)
    });
    if result.is_some() {
        dream.start(DreamOrigin::RealFrame(frame));
    }
}

pub(super) fn fork_from_random(
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if with_runner(runtime, notice, |runner| runner.reset_random()).is_some() {
        dream.start(DreamOrigin::RandomZ);
    }
}

pub(super) fn set_latent_dim(
    dim: usize,
    value: f32,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if !value.is_finite() {
        return;
    }
    let done = with_runner(runtime, notice, |runner| {
        let mut z = runner.z();
        let Some(slot) = z.get_mut(dim) else {
            anyhow::bail!("latent dimension {dim} does not exist (z has {})", z.len());
        };
        *slot = value;
        runner.set_z(&z)
    });
    if done.is_some() {
        dream.z_changed();
    }
}

/// Puts the dream at `z`, keeping M's memory: a point picked on the latent map. Returns whether
/// the dream took it.
pub(super) fn jump_to_latent(
    z: &[f32],
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) -> bool {
    if z.iter().any(|v| !v.is_finite()) {
        return false;
    }
    let done = with_runner(runtime, notice, |runner| runner.set_z(z)).is_some();
    if done {
        dream.z_changed();
    }
    done
}

/// One M step with `action`, timed. With `restart_on_done` (Drive the dream), a predicted death or
/// the time limit restarts the dream where it began, as in the demo.
pub(super) fn step_dream(
    action: &[f32],
    tau: f32,
    restart_on_done: bool,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    timings: &mut Timings,
    notice: &mut Notice,
) {
    let started = Instant::now();
    let Some(outcome) = with_runner(runtime, notice, |runner| runner.step(action, tau)) else {
        return;
    };
    timings.dream_step.push(millis(started.elapsed()));
    dream.steps += 1;
    dream.episode_return += f64::from(outcome.reward);
    dream.generation += 1;
    let out_of_time = dream.steps >= DREAM_EPISODE_STEPS_MAX;
    if (outcome.done || out_of_time) && restart_on_done {
        dream.restarts += 1;
        let origin = dream.origin.clone().unwrap_or(DreamOrigin::RandomZ);
        let restarted = with_runner(runtime, notice, |runner| match &origin {
            DreamOrigin::RealFrame(frame) => runner.restart_from_fork(frame),
            DreamOrigin::RandomZ => runner.reset_random(),
        });
        if restarted.is_some() {
            dream.start(origin);
        }
    }
}
