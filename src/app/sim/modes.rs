//! One stepping system per [`Mode`], run at the env's rate in `FixedUpdate`, and what entering a
//! mode does. Per mode, one sim step does:
//! - Drive reality: keep M in step with reality (z = V(frame), h carried), act (human or C), step the
//!   env, then step M with the same action: the dream pane shows M's one-step prediction.
//! - Drive the dream: act from the dream's state, step M only; a predicted done (or the time limit)
//!   restarts the dream from where it was forked.
//! - Lockstep: the same action to reality and to a dream forked from it; the gap is recorded. C,
//!   when it drives, sees reality (V of the real frame, the memory of an M that follows reality).
//! - Latent explorer: nothing, unless single-stepped.
//!
//! Every step first reads the human's input and applies the takeover rule ([`begin_step`]).

use std::time::Instant;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::super::commands::Mode;
use super::super::drive::{Driver, next_driver};
use super::super::input::HumanControls;
use super::super::world_model::{View, WorldModelRuntime};
use super::SimState;
use super::divergence::{Divergence, l2_distance};
use super::dream_episode::{DreamEpisode, fork_from_reality, step_dream, with_runner};
use super::notice::Notice;
use super::reality::Reality;
use super::session::Session;
use super::timings::{Timings, millis};
use crate::agent::human::Human;
use crate::agent::{Agent, Seen};
use crate::dream::pixel_error;

/// The systems that take one sim step; instruments that follow the sim run after it.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct SimStep;

pub(super) fn plugin(app: &mut App) {
    // A fresh dream from what reality shows now: the demo's "dream from here".
    app.add_systems(OnEnter(Mode::DriveDream), dream_from_here);
    app.add_systems(OnEnter(Mode::Lockstep), dream_from_here);
    // The explorer starts from the current real frame's encoding unless a dream is running.
    app.add_systems(
        OnEnter(Mode::LatentExplorer),
        explore_from_here.run_if(|dream: Res<DreamEpisode>| !dream.forked),
    );
    app.add_systems(
        FixedUpdate,
        (
            begin_step,
            (
                step_drive_reality.run_if(in_state(Mode::DriveReality)),
                step_drive_dream.run_if(in_state(Mode::DriveDream)),
                step_lockstep.run_if(in_state(Mode::Lockstep)),
                // Paused by design: only a single step (N) moves the explorer's dream.
                step_latent_explorer
                    .run_if(in_state(Mode::LatentExplorer).and_then(in_state(SimState::Paused))),
            ),
        )
            .chain()
            .in_set(SimStep)
            .run_if(in_state(SimState::Running).or_else(single_step_pending)),
    );
}

/// The state one sim step reads and writes.
#[derive(SystemParam)]
pub(super) struct Sim<'w> {
    pub session: ResMut<'w, Session>,
    pub reality: ResMut<'w, Reality>,
    pub dream: ResMut<'w, DreamEpisode>,
    pub runtime: ResMut<'w, WorldModelRuntime>,
    pub timings: ResMut<'w, Timings>,
    pub notice: ResMut<'w, Notice>,
}

impl Sim<'_> {
    /// The action for this step: the human's axes, or C's action from the state of `view`.
    pub(super) fn choose_action(&self, view: View) -> Vec<f32> {
        if self.session.driver == Driver::Controller
            && let Some(action) = self
                .runtime
                .runner
                .as_ref()
                .and_then(|runner| runner.controller_action(view))
        {
            return action;
        }
        let mut human = Human {
            env: self.session.env,
            axes: self.session.human_axes,
        };
        human.act(&Seen::default())
    }

    /// Forks the dream from the current real frame.
    pub(super) fn fork_from_reality(&mut self) {
        fork_from_reality(
            &self.reality,
            &mut self.dream,
            &mut self.runtime,
            &mut self.notice,
        );
    }

    /// Moves the reality-following M on by the action reality took; forgets it when the episode
    /// ended.
    pub(super) fn follow_reality(&mut self, action: &[f32], episode_ended: bool) {
        with_runner(&mut self.runtime, &mut self.notice, |runner| {
            if episode_ended {
                runner.reset_reality();
                Ok(())
            } else {
                runner.advance_reality(action)
            }
        });
    }

    fn step_dream(&mut self, action: &[f32], restart_on_done: bool) {
        step_dream(
            action,
            self.session.tau,
            restart_on_done,
            &mut self.dream,
            &mut self.runtime,
            &mut self.timings,
            &mut self.notice,
        );
    }

    /// Only the dream steps, with the action for the dream's state.
    fn drive_dream(&mut self, restart_on_done: bool) {
        if !self.dream.forked {
            return;
        }
        let action = self.choose_action(View::Dream);
        self.step_dream(&action, restart_on_done);
        self.session.last_action = action;
    }
}

/// Forks the dream from the real frame and starts the gap's plot afresh.
fn dream_from_here(mut sim: Sim, mut divergence: ResMut<Divergence>) {
    sim.fork_from_reality();
    divergence.clear();
}

fn explore_from_here(mut sim: Sim) {
    sim.fork_from_reality();
}

fn single_step_pending(session: Res<Session>) -> bool {
    session.pending_steps > 0
}

/// Takes the human's input for this step; any input takes the wheel from C.
fn begin_step(
    mut session: ResMut<Session>,
    sim_state: Res<State<SimState>>,
    mut controls: ResMut<HumanControls>,
    runtime: Res<WorldModelRuntime>,
) {
    if *sim_state.get() == SimState::Paused {
        session.pending_steps = session.pending_steps.saturating_sub(1);
    }
    session.steps_taken += 1;
    let env = session.env;
    let input = controls.take_for_step();
    let available = runtime.controller_available();
    session.driver = next_driver(session.driver, input.active(), false, available);
    session.human_axes.advance(env, &input);
}

fn step_drive_reality(mut sim: Sim) {
    // Keep M in step with reality: z from V, h carried over; the dream pane shows its one-step
    // prediction.
    let has_runner = sim.runtime.runner.is_some();
    if has_runner {
        let obs = sim.reality.obs.clone();
        with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
            let z = runner.observe_reality(&obs)?;
            runner.set_z(&z)
        });
    }
    let action = sim.choose_action(View::Reality);
    let Some(episode_ended) = sim.reality.step_or_notice(&action, &mut sim.notice) else {
        return;
    };
    if has_runner {
        let started = Instant::now();
        let tau = sim.session.tau;
        let stepped = with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
            runner.step(&action, tau)
        });
        sim.timings.dream_step.push(millis(started.elapsed()));
        if stepped.is_some() {
            sim.dream.z_changed();
        }
        sim.follow_reality(&action, episode_ended);
    }
    sim.session.last_action = action;
}

fn step_drive_dream(mut sim: Sim) {
    sim.drive_dream(true);
}

fn step_latent_explorer(mut sim: Sim) {
    sim.drive_dream(false);
}

fn step_lockstep(mut sim: Sim, mut divergence: ResMut<Divergence>) {
    // C drives reality here; the dream gets the same actions. The reality-following M has seen the
    // current frame: at the fork, or after the previous step.
    let has_runner = sim.runtime.runner.is_some();
    let action = sim.choose_action(View::Reality);
    let Some(episode_ended) = sim.reality.step_or_notice(&action, &mut sim.notice) else {
        return;
    };
    sim.session.last_action = action.clone();
    if has_runner {
        sim.follow_reality(&action, episode_ended);
    }
    if episode_ended {
        sim.fork_from_reality();
        divergence.clear();
        return;
    }
    // One encoding of the new frame serves C's next action and the gap.
    let obs = sim.reality.obs.clone();
    let real_z = if has_runner {
        with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
            runner.observe_reality(&obs)
        })
    } else {
        None
    };
    if sim.dream.forked {
        sim.step_dream(&action, false);
        if let Some(real_z) = real_z
            && let Some((pixel, z_gap)) = with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
                let dreamed = runner.frame()?;
                Ok((
                    pixel_error(&obs, &dreamed),
                    l2_distance(&real_z, &runner.z()),
                ))
            })
        {
            divergence.push(pixel, z_gap);
        }
        // Re-sync: the dream restarts from V's encoding of this frame and the memory of reality,
        // so the next step is again a prediction from reality (K = 1: one-step predictions).
        if let Some(every) = sim.session.resync_every
            && divergence.steps >= every
        {
            sim.fork_from_reality();
            divergence.resync();
        }
    }
}
