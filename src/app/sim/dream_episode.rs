//! The dream's episode as the app sees it, and the operations that fork, step and edit the dream.
//! Each goes through [`with_runner`], so a missing or failing world model is explained once.

use std::time::Instant;

use bevy::prelude::*;

use super::super::world_model::{DreamFamily, DreamRunner, ModelStatus, WorldModelRuntime};
use super::notice::Notice;
use super::reality::Reality;
use super::timings::{Timings, millis};
use crate::dream::DreamStep;
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
    /// The flow dream has been forked (with M's, when the bundle has a flow model) and may step.
    pub flow_forked: bool,
    /// Bumped whenever the flow dream moves, so its view redraws only then.
    pub flow_generation: u64,
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
        self.flow_generation += 1;
    }

    /// The flow dream restarted at its fork: a new dream episode; M's dream is untouched.
    fn restart_flow(&mut self) {
        self.steps = 0;
        self.episode_return = 0.0;
        self.flow_generation += 1;
    }
}

/// Runs `f` on the runner's flow dream. An error is shown and stops the flow dream until the next
/// fork, but leaves the 2018 dream running: a flow model is an extra.
pub(super) fn with_flow<T>(
    runtime: &mut WorldModelRuntime,
    dream: &mut DreamEpisode,
    notice: &mut Notice,
    f: impl FnOnce(&mut dyn DreamRunner) -> anyhow::Result<T>,
) -> Option<T> {
    let runner = runtime.runner.as_deref_mut()?;
    match f(runner) {
        Ok(value) => Some(value),
        Err(err) => {
            let reason = format!("The flow dream stopped: {err:#}");
            error!("{reason}");
            notice.show(reason);
            dream.flow_forked = false;
            None
        }
    }
}

/// Whether the runner has a flow dream to fork.
pub(super) fn flow_ready(runtime: &WorldModelRuntime) -> bool {
    runtime
        .runner
        .as_ref()
        .is_some_and(|runner| runner.flow_status().is_ready())
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
        fork_flow_from_reality(dream, runtime, notice);
    }
}

/// Forks the flow dream from the last real frames, when there is a flow model.
pub(super) fn fork_flow_from_reality(
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if !flow_ready(runtime) {
        dream.flow_forked = false;
        return;
    }
    let forked = with_flow(runtime, dream, notice, |runner| {
        runner.flow_fork_from_reality()
    });
    dream.flow_forked = forked.is_some();
    dream.flow_generation += 1;
}

pub(super) fn fork_from_random(
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if with_runner(runtime, notice, |runner| runner.reset_random()).is_some() {
        dream.start(DreamOrigin::RandomZ);
        // The flow dream starts from real frames only.
        dream.flow_forked = false;
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

/// One flow-dream step with `action`, timed; `None` when there is no flow dream to step.
pub(super) fn step_flow(
    action: &[f32],
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    timings: &mut Timings,
    notice: &mut Notice,
) -> Option<DreamStep> {
    if !dream.flow_forked {
        return None;
    }
    let started = Instant::now();
    let outcome = with_flow(runtime, dream, notice, |runner| runner.flow_step(action))?;
    timings.flow_step.push(millis(started.elapsed()));
    dream.flow_generation += 1;
    Some(outcome)
}

/// One step of `family`'s dream with `action`, timed. With `restart_on_done` (Drive the dream), a
/// predicted death or the time limit restarts the dream where it began, as in the demo.
#[allow(clippy::too_many_arguments)]
pub(super) fn step_dream(
    family: DreamFamily,
    action: &[f32],
    tau: f32,
    restart_on_done: bool,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    timings: &mut Timings,
    notice: &mut Notice,
) {
    let outcome = match family {
        DreamFamily::MdnRnn => {
            let started = Instant::now();
            let outcome = with_runner(runtime, notice, |runner| runner.step(action, tau));
            if outcome.is_some() {
                timings.dream_step.push(millis(started.elapsed()));
            }
            outcome
        }
        DreamFamily::Flow => step_flow(action, dream, runtime, timings, notice),
    };
    let Some(outcome) = outcome else {
        return;
    };
    dream.steps += 1;
    dream.episode_return += f64::from(outcome.reward);
    if family == DreamFamily::MdnRnn {
        // The flow dream's own step has bumped its generation.
        dream.generation += 1;
    }
    let out_of_time = dream.steps >= DREAM_EPISODE_STEPS_MAX;
    if (outcome.done || out_of_time) && restart_on_done {
        dream.restarts += 1;
        let origin = dream.origin.clone().unwrap_or(DreamOrigin::RandomZ);
        let restarted = match family {
            DreamFamily::MdnRnn => with_runner(runtime, notice, |runner| match &origin {
                DreamOrigin::RealFrame(frame) => runner.restart_from_fork(frame),
                DreamOrigin::RandomZ => runner.reset_random(),
            }),
            DreamFamily::Flow => with_flow(runtime, dream, notice, |runner| {
                runner.flow_restart_from_fork()
            }),
        };
        if restarted.is_some() {
            match family {
                DreamFamily::MdnRnn => dream.start(origin),
                DreamFamily::Flow => dream.restart_flow(),
            }
        }
    }
}
