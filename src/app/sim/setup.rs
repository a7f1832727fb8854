//! Going to a whole state at once ([`Setup`]): what a tour scene does on entering.

use bevy::prelude::*;

use super::super::commands::{FLOW_STEP_CHOICES, Mode, Setup};
use super::super::drive::{Driver, clamp_done_odds, clamp_flow_temperature, clamp_tau};
use super::super::world_model::{View, load_runtime};
use super::SimState;
use super::apply::{SimStates, choose_family};
use super::divergence::Divergence;
use super::dream_episode::{DreamEpisode, fork_from_random, with_runner};
use super::modes::Sim;
use super::reality::Reality;
use super::session::{ModelSource, Session};

/// Puts the sim in `setup`'s state: its env (loading the model when it changes), a fresh real
/// episode from its seed, the dream's draws reseeded, the settings it names over the defaults, the
/// real steps before the fork, then the dream forked and the mode and pause it asks for.
pub(super) fn enter_setup(
    setup: &Setup,
    sim: &mut Sim,
    states: &mut SimStates,
    divergence: &mut Divergence,
    fixed_time: &mut Time<Fixed>,
    source: &ModelSource,
) {
    if setup.env != sim.session.env {
        *sim.runtime = load_runtime(&source.models_dir, setup.env, source.backend.as_deref());
        fixed_time.set_timestep_hz(f64::from(setup.env.steps_per_second()));
    }
    let generation = sim.reality.generation + 1;
    *sim.reality = Reality::new(setup.env, setup.seed);
    sim.reality.generation = generation;
    if let Some(runner) = sim.runtime.runner.as_deref_mut() {
        runner.reset_reality();
        runner.reseed(setup.seed);
    }
    select_controller(setup.controller.as_deref(), sim);
    // The session starts from the chosen C's dream: the settings the scene names go over it.
    let steps_taken = sim.session.steps_taken;
    *sim.session = Session::for_model(setup.env, &mut sim.runtime);
    sim.session.steps_taken = steps_taken;
    let session = &mut sim.session;
    if let Some(tau) = setup.tau {
        session.tau = clamp_tau(setup.env, tau, session.tau);
    }
    if let Some(odds) = setup.done_odds {
        session.done_odds = clamp_done_odds(odds, session.done_odds);
    }
    if let Some(rule) = setup.done_rule {
        session.done_rule = rule;
    }
    session.resync_every = setup.resync;
    if let Some(steps) = setup.flow_steps.filter(|s| FLOW_STEP_CHOICES.contains(s)) {
        session.flow.steps = steps;
    }
    if let Some(temperature) = setup.flow_temperature {
        session.flow.temperature = clamp_flow_temperature(temperature, session.flow.temperature);
    }
    session.apply_done(&mut sim.runtime);
    if let Some(family) = setup.dream_with {
        choose_family(family, sim);
    }
    if setup.driver == Driver::Controller {
        if sim.runtime.controller_available() {
            sim.session.driver = Driver::Controller;
        } else {
            sim.notice.show(format!(
                "this scene has C drive, but {}",
                sim.runtime.status.headline().to_lowercase()
            ));
        }
    }
    run_before_fork(setup.fork_after, sim);

    let dream_generation = sim.dream.generation + 1;
    *sim.dream = DreamEpisode {
        generation: dream_generation,
        ..DreamEpisode::default()
    };
    divergence.clear();
    if setup.random_z {
        fork_from_random(&mut sim.dream, &mut sim.runtime, &mut sim.notice);
    } else if setup.mode != Mode::DriveReality && sim.runtime.runner.is_some() {
        // Entering the mode forks too, but only when the mode changes.
        sim.fork_from_reality();
    }
    states.set_mode(setup.mode);
    states.set_pause(if setup.paused {
        SimState::Paused
    } else {
        SimState::Running
    });
}

/// Reality runs `steps` steps with the setup's driver (C reading the reality-following M, or no
/// input), M following it, as `train-controller --dream-context` does before a dream forks.
fn run_before_fork(steps: u32, sim: &mut Sim) {
    for _ in 0..steps {
        let has_runner = sim.runtime.runner.is_some();
        if has_runner {
            let obs = sim.reality.obs.clone();
            with_runner(&mut sim.runtime, &mut sim.notice, |runner| {
                runner.observe_reality(&obs)
            });
        }
        let action = sim.choose_action(View::Reality);
        let Some(ended) = sim.reality.step_or_notice(&action, &mut sim.notice) else {
            return;
        };
        if has_runner {
            sim.follow_reality(&action, ended);
        }
        sim.session.last_action = action;
    }
}

/// Selects the bundle's C named `name`, or its own C; a name the bundle lacks is said in a notice.
fn select_controller(name: Option<&str>, sim: &mut Sim) {
    let Some(runner) = sim.runtime.runner.as_deref_mut() else {
        return;
    };
    let choices = runner.controllers();
    let index = match name {
        None => 0,
        Some(name) => match choices.iter().position(|choice| choice.name == name) {
            Some(index) => index,
            None => {
                let known: Vec<&str> = choices.iter().map(|choice| choice.name.as_str()).collect();
                sim.notice.show(format!(
                    "this model has no C named \"{name}\" (it has: {}); its own C drives",
                    known.join(", ")
                ));
                0
            }
        },
    };
    if !choices.is_empty()
        && let Err(err) = runner.select_controller(index)
    {
        sim.notice.show(format!("{err:#}"));
    }
}
