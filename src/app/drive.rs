//! Who drives, and the dream's knobs, as plain Rust (no bevy): the takeover rule, tau and done odds
//! clamped to their sliders' ranges. The human's input logic is an agent (`crate::agent::human`).
//! Any human input takes the wheel from C at once; only an explicit hand-back returns it.

use crate::envs::EnvKind;
use crate::model::mdrnn::{DoneRule, PAPER_DOOM_TAU, PAPER_DOOM_TAUS};

/// The temperature presets, one key each: the paper's Doom table (0.1 .. 1.3).
pub const TAU_PRESETS: [f32; 5] = PAPER_DOOM_TAUS;

/// The tau slider's range for `env`: the demo's spans, widened to hold every preset.
pub fn tau_range(env: EnvKind) -> (f32, f32) {
    match env {
        EnvKind::CarRacing => (0.1, 1.5),
        EnvKind::TakeCover => (0.1, 3.0),
    }
}

/// The tau a fresh session starts with: 1.0 (M's own distribution) for the car, the demo's
/// fairer-than-training 1.15 for Take Cover.
pub fn default_tau(env: EnvKind) -> f32 {
    match env {
        EnvKind::CarRacing => 1.0,
        EnvKind::TakeCover => PAPER_DOOM_TAU,
    }
}

/// Clamps a requested tau into `env`'s range; a non-finite request keeps `current`.
pub fn clamp_tau(env: EnvKind, requested: f32, current: f32) -> f32 {
    if !requested.is_finite() {
        return current;
    }
    let (low, high) = tau_range(env);
    requested.clamp(low, high)
}

/// The done-odds slider's range: from a dream that almost never kills to one ten times as deadly
/// as M predicts.
pub const DONE_ODDS_RANGE: (f32, f32) = (0.01, 10.0);

/// Clamps a requested factor on M's done odds into [`DONE_ODDS_RANGE`]; a non-finite request keeps
/// `current`.
pub fn clamp_done_odds(requested: f32, current: f32) -> f32 {
    if !requested.is_finite() {
        return current;
    }
    requested.clamp(DONE_ODDS_RANGE.0, DONE_ODDS_RANGE.1)
}

/// The flow dream's temperature: 0 starts every sample from the noise's mean; past 1.5 the
/// frames dissolve into noise.
pub const FLOW_TEMPERATURE_RANGE: (f32, f32) = (0.0, 1.5);

/// `requested` clamped to [`FLOW_TEMPERATURE_RANGE`]; `current` if it is not a number.
pub fn clamp_flow_temperature(requested: f32, current: f32) -> f32 {
    if requested.is_finite() {
        requested.clamp(FLOW_TEMPERATURE_RANGE.0, FLOW_TEMPERATURE_RANGE.1)
    } else {
        current
    }
}

/// The done rule's name on the UI and HUD.
pub fn done_rule_name(rule: DoneRule) -> &'static str {
    match rule {
        DoneRule::Sample => "drawn",
        DoneRule::Threshold => "threshold",
    }
}

/// Who produces the actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    #[default]
    Human,
    /// C, the controller, acting from the world model's state.
    Controller,
}

impl Driver {
    pub fn label(self) -> &'static str {
        match self {
            Driver::Human => "HUMAN",
            Driver::Controller => "C (controller)",
        }
    }
}

/// The takeover rule: any human input wins at once; a hand-back request gives the wheel to C only
/// when a controller exists and nobody is touching the controls that step.
pub fn next_driver(
    current: Driver,
    human_active: bool,
    hand_back_requested: bool,
    controller_available: bool,
) -> Driver {
    if human_active {
        Driver::Human
    } else if hand_back_requested && controller_available {
        Driver::Controller
    } else if !controller_available {
        // C vanished (env switched to one without a model): the human has the wheel.
        Driver::Human
    } else {
        current
    }
}

/// A zero action of the right length: what the dream steps with while nobody drives.
pub fn idle_action(env: EnvKind) -> Vec<f32> {
    vec![0.0; env.action_space().len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_input_takes_over_and_only_a_request_hands_back() {
        use Driver::*;
        assert_eq!(next_driver(Controller, true, false, true), Human);
        assert_eq!(
            next_driver(Controller, true, true, true),
            Human,
            "touching the keys beats the hand-back"
        );
        assert_eq!(next_driver(Human, false, false, true), Human);
        assert_eq!(next_driver(Human, false, true, true), Controller);
        assert_eq!(
            next_driver(Human, false, true, false),
            Human,
            "no controller, no hand-back"
        );
        assert_eq!(next_driver(Controller, false, false, false), Human);
    }

    #[test]
    fn done_odds_are_clamped_and_ignore_nonsense() {
        assert_eq!(clamp_done_odds(0.1, 1.0), 0.1);
        assert_eq!(clamp_done_odds(0.0, 1.0), DONE_ODDS_RANGE.0);
        assert_eq!(clamp_done_odds(-3.0, 1.0), DONE_ODDS_RANGE.0);
        assert_eq!(clamp_done_odds(1e6, 1.0), DONE_ODDS_RANGE.1);
        assert_eq!(clamp_done_odds(f32::NAN, 0.5), 0.5);
        assert_eq!(clamp_done_odds(f32::INFINITY, 0.5), 0.5);
    }

    #[test]
    fn tau_is_clamped_per_env_and_ignores_nonsense() {
        assert_eq!(clamp_tau(EnvKind::CarRacing, 2.0, 1.0), 1.5);
        assert_eq!(clamp_tau(EnvKind::TakeCover, 2.0, 1.0), 2.0);
        assert_eq!(clamp_tau(EnvKind::CarRacing, f32::NAN, 0.7), 0.7);
        for preset in TAU_PRESETS {
            assert_eq!(clamp_tau(EnvKind::CarRacing, preset, 1.0), preset);
        }
    }

    #[test]
    fn the_idle_action_has_the_env_s_length() {
        assert_eq!(idle_action(EnvKind::CarRacing), vec![0.0; 3]);
        assert_eq!(idle_action(EnvKind::TakeCover), vec![0.0]);
    }
}
