//! One stepping system per [`Mode`], run at the env's rate in `FixedUpdate`, and what entering a
//! mode does. Per mode, one sim step does:
//! - Drive reality: keep M in step with reality (z = V(frame), h carried), act (human or C), step the
//!   env, then step M with the same action: the dream pane shows M's one-step prediction.
//! - Drive the dream: act from the dream's state, step M only; a predicted done (or the time limit)
//!   restarts the dream from where it was forked.
//! - Lockstep: the same action to reality and to a dream forked from it; the gap is recorded. C,
//!   when it drives, sees reality (V of the real frame, the memory of an M that follows reality).
//! - Latent explorer: nothing, unless single-stepped.
//! - Side by side: Lockstep with both dreams, the 2018 one and the flow one, forked together from
//!   reality and given reality's actions; the gap is recorded for each.
//!
//! Outside the side-by-side mode, the session's [`DreamFamily`] says which dream the first three
//! modes step; the latent explorer edits V's z, so it is the 2018 dream's.
//!
//! Every step first reads the human's input and applies the takeover rule ([`begin_step`]).

use std::time::Instant;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::super::commands::Mode;
use super::super::drive::{Driver, next_driver};
use super::super::input::HumanControls;
use super::super::world_model::{DreamFamily, View, WorldModelRuntime};
use super::SimState;
use super::divergence::{Divergence, l2_distance};
use super::dream_episode::{
    DreamEpisode, fork_flow_from_reality, fork_from_reality, step_dream, step_flow, with_runner,
};
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
    app.add_systems(OnEnter(Mode::SideBySide), side_by_side_from_here);
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
                step_side_by_side.run_if(in_state(Mode::SideBySide)),
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

    fn step_dream(&mut self, family: DreamFamily, action: &[f32], restart_on_done: bool) {
        step_dream(
            family,
            action,
            self.session.tau,
            restart_on_done,
            &mut self.dream,
            &mut self.runtime,
            &mut self.timings,
            &mut self.notice,
        );
    }

    /// Only `family`'s dream steps, with the action for its state.
    fn drive_dream(&mut self, family: DreamFamily, restart_on_done: bool) {
        let (forked, view) = match family {
            DreamFamily::MdnRnn => (self.dream.forked, View::Dream),
            DreamFamily::Flow => (self.dream.flow_forked, View::FlowDream),
        };
        if !forked {
            return;
        }
        let action = self.choose_action(view);
        self.step_dream(family, &action, restart_on_done);
        self.session.last_action = action;
    }

    /// One step of the flow dream with reality's action, and its gap to the new real frame:
    /// (pixel error, distance between V's encodings of the two frames).
    fn step_flow_beside_reality(
        &mut self,
        action: &[f32],
        real_z: Option<&[f32]>,
    ) -> Option<(f64, f64)> {
        self.step_flow(action)?;
        let real_z = real_z?;
        let obs = &self.reality.obs;
        with_runner(&mut self.runtime, &mut self.notice, |runner| {
            let dreamed = runner.flow_frame()?;
            // The flow step has had V encode this frame already, for C.
            let dreamed_z = runner
                .flow_encoding()
                .ok_or_else(|| anyhow::anyhow!("the flow dream has no encoding"))?;
            Ok((pixel_error(obs, &dreamed), l2_distance(real_z, &dreamed_z)))
        })
    }

    /// One flow-dream step, timed, when it is forked.
    fn step_flow(&mut self, action: &[f32]) -> Option<crate::dream::DreamStep> {
        step_flow(
            action,
            &mut self.dream,
            &mut self.runtime,
            &mut self.timings,
            &mut self.notice,
        )
    }

    /// M's dream steps with reality's action; its gap to the new real frame.
    fn step_mdn_beside_reality(
        &mut self,
        action: &[f32],
        real_z: Option<&[f32]>,
    ) -> Option<(f64, f64)> {
        if !self.dream.forked {
            return None;
        }
        self.step_dream(DreamFamily::MdnRnn, action, false);
        let real_z = real_z?;
        let obs = &self.reality.obs;
        with_runner(&mut self.runtime, &mut self.notice, |runner| {
            let dreamed = runner.frame()?;
            Ok((pixel_error(obs, &dreamed), l2_distance(real_z, &runner.z())))
        })
    }

    /// Reality steps with the driver's action (C reading reality) and the reality-following M
    /// moves on; `Some(V's z of the new frame)` while the episode goes on, `None` when the step
    /// failed or the episode ended (the dreams are then forked again).
    fn step_reality_for_dreams(
        &mut self,
        divergence: &mut Divergence,
    ) -> Option<(Vec<f32>, Option<Vec<f32>>)> {
        let has_runner = self.runtime.runner.is_some();
        let action = self.choose_action(View::Reality);
        let episode_ended = self.reality.step_or_notice(&action, &mut self.notice)?;
        self.session.last_action = action.clone();
        if has_runner {
            self.follow_reality(&action, episode_ended);
        }
        if episode_ended {
            self.fork_from_reality();
            divergence.clear();
            return None;
        }
        // One encoding of the new frame serves C's next action and the gaps.
        let obs = self.reality.obs.clone();
        let real_z = if has_runner {
            with_runner(&mut self.runtime, &mut self.notice, |runner| {
                runner.observe_reality(&obs)
            })
        } else {
            None
        };
        Some((action, real_z))
    }

    /// Lockstep's re-sync: every K steps the dreams restart from reality.
    fn resync_if_due(&mut self, divergence: &mut Divergence) {
        if let Some(every) = self.session.resync_every
            && divergence.steps >= every
        {
            self.fork_from_reality();
            divergence.resync();
        }
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

/// Both dreams from the real frame; without a flow model, the 2018 one alone, and a notice why.
fn side_by_side_from_here(mut sim: Sim, divergence: ResMut<Divergence>) {
    let explanation = sim
        .runtime
        .runner
        .as_ref()
        .map(|runner| runner.flow_status())
        .filter(|status| !status.is_ready())
        .map(|status| status.explanation());
    if let Some(explanation) = explanation {
        sim.notice.show(explanation.replace('\n', " "));
    }
    dream_from_here(sim, divergence);
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
    // Keep the dream in step with reality: M's z from V, h carried over, or the flow dream forked
    // from the last real frames; the dream pane shows its one-step prediction.
    let has_runner = sim.runtime.runner.is_some();
    let family = sim.session.family;
    if has_runner {
        let obs = sim.reality.obs.clone();
        with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
            let z = runner.observe_reality(&obs)?;
            match family {
                DreamFamily::MdnRnn => runner.set_z(&z),
                DreamFamily::Flow => Ok(()),
            }
        });
        if family == DreamFamily::Flow {
            fork_flow_from_reality(&mut sim.dream, &mut sim.runtime, &mut sim.notice);
        }
    }
    let action = sim.choose_action(View::Reality);
    let Some(episode_ended) = sim.reality.step_or_notice(&action, &mut sim.notice) else {
        return;
    };
    if has_runner {
        match family {
            DreamFamily::MdnRnn => {
                let started = Instant::now();
                let tau = sim.session.tau;
                let stepped = with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
                    runner.step(&action, tau)
                });
                sim.timings.dream_step.push(millis(started.elapsed()));
                if stepped.is_some() {
                    sim.dream.z_changed();
                }
            }
            DreamFamily::Flow => {
                sim.step_flow(&action);
            }
        }
        sim.follow_reality(&action, episode_ended);
    }
    sim.session.last_action = action;
}

fn step_drive_dream(mut sim: Sim) {
    let family = sim.session.family_in(Mode::DriveDream);
    sim.drive_dream(family, true);
}

fn step_latent_explorer(mut sim: Sim) {
    sim.drive_dream(DreamFamily::MdnRnn, false);
}

fn step_side_by_side(mut sim: Sim, mut divergence: ResMut<Divergence>) {
    let Some((action, real_z)) = sim.step_reality_for_dreams(&mut divergence) else {
        return;
    };
    let mdn_gap = sim.step_mdn_beside_reality(&action, real_z.as_deref());
    let flow_gap = sim.step_flow_beside_reality(&action, real_z.as_deref());
    if let Some((pixel, z_gap)) = mdn_gap {
        divergence.push(pixel, z_gap);
        if let Some((pixel, z_gap)) = flow_gap {
            divergence.push_flow(pixel, z_gap);
        }
    }
    sim.resync_if_due(&mut divergence);
}

fn step_lockstep(mut sim: Sim, mut divergence: ResMut<Divergence>) {
    // C drives reality here; the dream gets the same actions. The reality-following M has seen the
    // current frame: at the fork, or after the previous step.
    let Some((action, real_z)) = sim.step_reality_for_dreams(&mut divergence) else {
        return;
    };
    let (forked, gap) = match sim.session.family_in(Mode::Lockstep) {
        DreamFamily::MdnRnn => (
            sim.dream.forked,
            sim.step_mdn_beside_reality(&action, real_z.as_deref()),
        ),
        DreamFamily::Flow => (
            sim.dream.flow_forked,
            sim.step_flow_beside_reality(&action, real_z.as_deref()),
        ),
    };
    if let Some((pixel, z_gap)) = gap {
        divergence.push(pixel, z_gap);
    }
    // Re-sync: the dream restarts from V's encoding of this frame and the memory of reality, so
    // the next step is again a prediction from reality (K = 1: one-step predictions).
    if forked {
        sim.resync_if_due(&mut divergence);
    }
}
