//! Applies the commands that change the sim; presentation commands belong to other plugins.

use bevy::prelude::*;

use super::super::commands::{FLOW_STEP_CHOICES, Mode, PlayCommand, RESYNC_CHOICES};
use super::super::drive::{
    Driver, TAU_PRESETS, clamp_done_odds, clamp_flow_temperature, clamp_tau, done_rule_name,
    next_driver,
};
use super::super::world_model::{DreamFamily, WorldModelRuntime, load_runtime};
use super::SimState;
use super::divergence::Divergence;
use super::dream_episode::{
    DreamEpisode, flow_ready, fork_from_random, jump_to_latent, set_latent_dim,
};
use super::modes::Sim;
use super::notice::Notice;
use super::reality::Reality;
use super::session::{ModelSource, Session};
use crate::envs::EnvKind;

/// The mode and pause states, as read and as requested.
#[derive(bevy::ecs::system::SystemParam)]
pub(super) struct SimStates<'w> {
    mode: Res<'w, State<Mode>>,
    next_mode: ResMut<'w, NextState<Mode>>,
    sim_state: Res<'w, State<SimState>>,
    next_sim_state: ResMut<'w, NextState<SimState>>,
}

impl SimStates<'_> {
    /// Pause as it will be once this frame's requests apply, so two requests in one frame compose.
    fn pause_after_requests(&self) -> SimState {
        match &*self.next_sim_state {
            NextState::Pending(state) | NextState::PendingIfNeq(state) => *state,
            NextState::Unchanged => *self.sim_state.get(),
        }
    }

    pub(super) fn set_pause(&mut self, state: SimState) {
        self.next_sim_state.as_mut().set_if_neq(state);
    }

    pub(super) fn set_mode(&mut self, mode: Mode) {
        self.next_mode.as_mut().set_if_neq(mode);
    }
}

pub(super) fn apply_sim_commands(
    mut commands: MessageReader<PlayCommand>,
    mut sim: Sim,
    mut states: SimStates,
    mut divergence: ResMut<Divergence>,
    mut fixed_time: ResMut<Time<Fixed>>,
    source: Res<ModelSource>,
) {
    for command in commands.read() {
        let session = &mut sim.session;
        match command {
            PlayCommand::SetMode(wanted) => states.set_mode(*wanted),
            PlayCommand::Setup(setup) => super::setup::enter_setup(
                setup,
                &mut sim,
                &mut states,
                &mut divergence,
                &mut fixed_time,
                &source,
            ),
            PlayCommand::NextMode => {
                let next = states.mode.get().next();
                states.next_mode.as_mut().set_if_neq(next);
            }
            PlayCommand::DreamWith(family) => {
                let family = family.unwrap_or(session.family.other());
                if family != sim.session.family && choose_family(family, &mut sim) {
                    divergence.clear();
                    sim.notice.show(format!("Dreaming with {}", family.label()));
                }
            }
            PlayCommand::SetFlowSteps(steps) if FLOW_STEP_CHOICES.contains(steps) => {
                session.flow.steps = *steps;
                session.apply_done(&mut sim.runtime);
            }
            PlayCommand::CycleFlowSteps(direction) => {
                let at = FLOW_STEP_CHOICES
                    .iter()
                    .position(|s| *s == session.flow.steps)
                    .unwrap_or(0);
                let next = (at as isize + isize::from(*direction))
                    .clamp(0, FLOW_STEP_CHOICES.len() as isize - 1);
                session.flow.steps = FLOW_STEP_CHOICES[next as usize];
                session.apply_done(&mut sim.runtime);
                sim.notice.show(format!(
                    "The flow dream samples in {} step{}",
                    sim.session.flow.steps,
                    if sim.session.flow.steps == 1 { "" } else { "s" }
                ));
            }
            PlayCommand::SetFlowTemperature(temperature) => {
                session.flow.temperature =
                    clamp_flow_temperature(*temperature, session.flow.temperature);
                session.apply_done(&mut sim.runtime);
            }
            PlayCommand::SetTau(tau) => session.tau = clamp_tau(session.env, *tau, session.tau),
            PlayCommand::TauPreset(index) => {
                if let Some(&preset) = TAU_PRESETS.get(*index) {
                    session.tau = clamp_tau(session.env, preset, session.tau);
                }
            }
            PlayCommand::SetDoneOdds(odds) => {
                session.done_odds = clamp_done_odds(*odds, session.done_odds);
                session.apply_done(&mut sim.runtime);
            }
            PlayCommand::SetDoneRule(rule) => {
                session.done_rule = *rule;
                session.apply_done(&mut sim.runtime);
            }
            PlayCommand::DreamAsTrained => {
                session.dream_as_trained();
                session.apply_done(&mut sim.runtime);
                sim.notice.show(match session.evolved_dream {
                    Some(_) => format!(
                        "Dreaming as C was evolved: tau {:.2}, done odds x{}, done {}",
                        session.tau,
                        session.done_odds,
                        done_rule_name(session.done_rule)
                    ),
                    None => "The model records no dream for C: default tau, M's own odds, drawn"
                        .to_string(),
                });
            }
            PlayCommand::SelectController(index) => {
                select_controller(*index, session, &mut sim.runtime, &mut sim.notice)
            }
            PlayCommand::SwitchEnv(target) => {
                let next = target.unwrap_or(match session.env {
                    EnvKind::CarRacing => EnvKind::TakeCover,
                    EnvKind::TakeCover => EnvKind::CarRacing,
                });
                if next != session.env {
                    switch_env(
                        next,
                        *states.mode.get(),
                        &mut sim,
                        &mut divergence,
                        &mut fixed_time,
                        &source,
                    );
                    sim.notice.show(format!("Switched to {next}"));
                }
            }
            PlayCommand::TogglePause => {
                let toggled = match states.pause_after_requests() {
                    SimState::Running => SimState::Paused,
                    SimState::Paused => SimState::Running,
                };
                states.set_pause(toggled);
            }
            PlayCommand::StepOnce => {
                states.set_pause(SimState::Paused);
                session.pending_steps = session.pending_steps.saturating_add(1);
            }
            PlayCommand::ResetEpisode => {
                sim.reality.next_episode();
                if let Some(runner) = sim.runtime.runner.as_deref_mut() {
                    runner.reset_reality();
                }
                if matches!(
                    states.mode.get(),
                    Mode::Lockstep | Mode::DriveReality | Mode::SideBySide
                ) {
                    sim.fork_from_reality();
                    divergence.clear();
                }
            }
            PlayCommand::DreamFromReality => {
                sim.fork_from_reality();
                divergence.clear();
            }
            PlayCommand::DreamFromRandom => {
                fork_from_random(&mut sim.dream, &mut sim.runtime, &mut sim.notice)
            }
            PlayCommand::TakeWheel => {
                session.driver = Driver::Human;
                session.hand_back_requested = false;
            }
            PlayCommand::HandToController => {
                if sim.runtime.controller_available() {
                    session.hand_back_requested = true;
                } else {
                    sim.notice.show(format!(
                        "C cannot drive: {}",
                        sim.runtime.status.headline().to_lowercase()
                    ));
                }
            }
            PlayCommand::SetLatentDim { dim, value } => set_latent_dim(
                *dim,
                *value,
                &mut sim.dream,
                &mut sim.runtime,
                &mut sim.notice,
            ),
            PlayCommand::JumpToLatent(z) => {
                let jumped = jump_to_latent(z, &mut sim.dream, &mut sim.runtime, &mut sim.notice);
                if jumped {
                    states.next_mode.as_mut().set_if_neq(Mode::LatentExplorer);
                }
            }
            PlayCommand::SetResync(every) => {
                session.resync_every = every.filter(|k| *k > 0);
            }
            PlayCommand::CycleResync => {
                let at = RESYNC_CHOICES
                    .iter()
                    .position(|k| *k == session.resync_every)
                    .unwrap_or(0);
                session.resync_every = RESYNC_CHOICES[(at + 1) % RESYNC_CHOICES.len()];
                sim.notice.show(match session.resync_every {
                    Some(k) => format!("Lockstep re-syncs the dream to reality every {k} steps"),
                    None => "Lockstep: open loop, the dream is never re-synced".to_string(),
                });
            }
            _ => {}
        }
    }
    // The wheel goes back to C right away when asked (and nobody touches the controls); a human
    // taking over is handled as the input arrives, in the step.
    if sim.session.hand_back_requested {
        let available = sim.runtime.controller_available();
        sim.session.driver = next_driver(sim.session.driver, false, true, available);
        sim.session.hand_back_requested = false;
    }
}

/// Dreams with `family` from now on, the dream forked afresh from the real frame so that it starts
/// where reality is; the flow model without a flow file is refused with the commands that train
/// one. Whether the family changed.
pub(super) fn choose_family(family: DreamFamily, sim: &mut Sim) -> bool {
    if family == DreamFamily::Flow && !flow_ready(&sim.runtime) {
        let why = match sim.runtime.runner.as_ref() {
            Some(runner) => runner.flow_status().explanation(),
            None => format!(
                "{}: the dream needs V and M.",
                sim.runtime.status.headline()
            ),
        };
        sim.notice.show(why.replace('\n', " "));
        return false;
    }
    sim.session.family = family;
    if sim.runtime.runner.is_some() {
        sim.fork_from_reality();
    }
    true
}

/// C number `index` of the bundle drives from now on, and the dream becomes the one it was
/// evolved in (as `DreamAsTrained` does), said in a notice.
fn select_controller(
    index: usize,
    session: &mut Session,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    let Some(runner) = runtime.runner.as_deref_mut() else {
        notice.show(format!(
            "No C to select: {}",
            runtime.status.headline().to_lowercase()
        ));
        return;
    };
    if let Err(err) = runner.select_controller(index) {
        notice.show(format!("{err}"));
        return;
    }
    let name = runner
        .controllers()
        .get(index)
        .map_or_else(|| format!("C {index}"), |c| c.name.clone());
    session.evolved_dream = runner.evolved_dream();
    session.dream_as_trained();
    session.apply_done(runtime);
    notice.show(match session.evolved_dream {
        Some(dream) => format!(
            "{name}: dreaming as it was evolved (tau {:.2}, done odds x{}, done {}{})",
            session.tau,
            session.done_odds,
            done_rule_name(session.done_rule),
            match dream.context_steps {
                0 => String::new(),
                k => format!(", forked after {k} real steps"),
            }
        ),
        None => {
            format!("{name}: the model records no dream for it: default tau, M's own odds, drawn")
        }
    });
}

/// Loads `next`'s env and model in place of the current ones; the mode and pause carry over.
fn switch_env(
    next: EnvKind,
    mode: Mode,
    sim: &mut Sim,
    divergence: &mut Divergence,
    fixed_time: &mut Time<Fixed>,
    source: &ModelSource,
) {
    *sim.runtime = load_runtime(&source.models_dir, next, source.backend.as_deref());
    let previous = sim.session.clone();
    *sim.session = Session::for_model(next, &mut sim.runtime);
    sim.session.resync_every = previous.resync_every;
    // The flow knobs carry over; so does the flow dream, where the new env has a flow model.
    sim.session.flow = previous.flow;
    sim.session.apply_done(&mut sim.runtime);
    if flow_ready(&sim.runtime) {
        sim.session.family = previous.family;
    }
    let generation = sim.reality.generation + 1;
    *sim.reality = Reality::new(next, sim.reality.seed);
    sim.reality.generation = generation;
    let dream_generation = sim.dream.generation + 1;
    *sim.dream = DreamEpisode {
        generation: dream_generation,
        ..DreamEpisode::default()
    };
    divergence.clear();
    fixed_time.set_timestep_hz(f64::from(next.steps_per_second()));
    if matches!(
        mode,
        Mode::DriveDream | Mode::Lockstep | Mode::LatentExplorer | Mode::SideBySide
    ) {
        // The switch's own notice says enough; a missing model is explained by the panes.
        let mut quiet = Notice::default();
        super::dream_episode::fork_from_reality(
            &sim.reality,
            &mut sim.dream,
            &mut sim.runtime,
            &mut quiet,
        );
    }
}
