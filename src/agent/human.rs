//! The human at the keyboard or gamepad, as an agent.
//!
//! Keyboard input ramps like the paper's interactive demo: a held key adds
//! [`KEY_RAMP_PER_STEP`] each sim step, a released one decays by [`KEY_DECAY_PER_STEP`]. A gamepad
//! gives its analog values directly. No bevy here: the app reads the devices and hands over a
//! [`HumanInput`] per step.

use super::{Agent, Seen};
use crate::envs::EnvKind;

/// How much a held key adds to its axis each sim step (the demo's +0.1 per frame).
pub const KEY_RAMP_PER_STEP: f32 = 0.1;
/// What a released axis keeps each sim step (the demo's x0.9 per frame).
pub const KEY_DECAY_PER_STEP: f32 = 0.9;
/// Below this a decayed axis snaps to 0, so the bars really return to rest.
pub const AXIS_REST_EPSILON: f32 = 1e-3;
/// Stick and trigger values below this are noise from a resting pad, not a human.
pub const GAMEPAD_DEADZONE: f32 = 0.15;

/// The directions held on the keyboard this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldKeys {
    pub left: bool,
    pub right: bool,
    pub up: bool,
    pub down: bool,
}

impl HeldKeys {
    pub fn any(&self) -> bool {
        self.left || self.right || self.up || self.down
    }
}

/// One gamepad's values this frame, deadzone not yet applied.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PadValues {
    /// Left stick x, -1 (left) .. 1 (right).
    pub stick_x: f32,
    /// Right trigger, 0 .. 1: gas.
    pub right_trigger: f32,
    /// Left trigger, 0 .. 1: brake.
    pub left_trigger: f32,
    pub dpad_left: bool,
    pub dpad_right: bool,
}

impl PadValues {
    /// The pad with the deadzone applied and non-finite readings dropped.
    pub fn filtered(self) -> PadValues {
        let live = |v: f32| {
            if v.is_finite() && v.abs() >= GAMEPAD_DEADZONE {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        PadValues {
            stick_x: live(self.stick_x),
            right_trigger: live(self.right_trigger).max(0.0),
            left_trigger: live(self.left_trigger).max(0.0),
            ..self
        }
    }

    /// Someone is touching the pad.
    pub fn any(&self) -> bool {
        let f = self.filtered();
        f.stick_x != 0.0
            || f.right_trigger != 0.0
            || f.left_trigger != 0.0
            || self.dpad_left
            || self.dpad_right
    }

    /// Combines several pads: the largest magnitude per axis wins, buttons OR.
    pub fn merge(self, other: PadValues) -> PadValues {
        let bigger = |a: f32, b: f32| if b.abs() > a.abs() { b } else { a };
        PadValues {
            stick_x: bigger(self.stick_x, other.stick_x),
            right_trigger: bigger(self.right_trigger, other.right_trigger),
            left_trigger: bigger(self.left_trigger, other.left_trigger),
            dpad_left: self.dpad_left || other.dpad_left,
            dpad_right: self.dpad_right || other.dpad_right,
        }
    }
}

/// What the human is doing this frame: keys and pads, as read in `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HumanInput {
    pub keys: HeldKeys,
    pub pad: PadValues,
}

impl HumanInput {
    /// Any control is being touched: this takes the wheel from C.
    pub fn active(&self) -> bool {
        self.keys.any() || self.pad.any()
    }
}

/// The human's smoothed controls, in the env's terms. CarRacing: steer in [-1, 1], gas and brake in
/// [0, 1]. Take Cover: `steer` is the strafe (-1 left .. 1 right); gas and brake stay 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HumanAxes {
    pub steer: f32,
    pub gas: f32,
    pub brake: f32,
}

impl HumanAxes {
    /// Advances one sim step under `input`.
    ///
    /// CarRacing: a held key ramps its axis, a released one decays; a pad beyond its deadzone sets
    /// the axis directly (the pad is already analog, ramping it would only add lag).
    /// Take Cover: left/right set the strafe to -1/+1 at once. Its action is three-way (beyond +-1/3
    /// moves), so a ramp would only delay the dodge by four tics.
    pub fn advance(&mut self, env: EnvKind, input: &HumanInput) {
        let pad = input.pad.filtered();
        match env {
            EnvKind::CarRacing => {
                self.steer = if input.keys.left && !input.keys.right {
                    (self.steer - KEY_RAMP_PER_STEP).max(-1.0)
                } else if input.keys.right && !input.keys.left {
                    (self.steer + KEY_RAMP_PER_STEP).min(1.0)
                } else if pad.stick_x != 0.0 {
                    pad.stick_x
                } else {
                    decay(self.steer)
                };
                self.gas = ramp_or(self.gas, input.keys.up, pad.right_trigger);
                self.brake = ramp_or(self.brake, input.keys.down, pad.left_trigger);
            }
            EnvKind::TakeCover => {
                let left = input.keys.left || pad.dpad_left || pad.stick_x < 0.0;
                let right = input.keys.right || pad.dpad_right || pad.stick_x > 0.0;
                self.steer = match (left, right) {
                    (true, false) => -1.0,
                    (false, true) => 1.0,
                    _ => 0.0,
                };
                self.gas = 0.0;
                self.brake = 0.0;
            }
        }
    }

    /// The env's action vector.
    pub fn to_action(self, env: EnvKind) -> Vec<f32> {
        action_from_axes(env, self)
    }
}

/// The action vector `env` takes for these axes: CarRacing `[steer, gas, brake]`, Take Cover `[move]`.
pub fn action_from_axes(env: EnvKind, axes: HumanAxes) -> Vec<f32> {
    match env {
        EnvKind::CarRacing => vec![
            axes.steer.clamp(-1.0, 1.0),
            axes.gas.clamp(0.0, 1.0),
            axes.brake.clamp(0.0, 1.0),
        ],
        EnvKind::TakeCover => vec![axes.steer.clamp(-1.0, 1.0)],
    }
}

/// The axes an action vector shows on the HUD bars (for C's actions). Missing values read as 0.
pub fn axes_from_action(env: EnvKind, action: &[f32]) -> HumanAxes {
    let at = |i: usize| {
        action
            .get(i)
            .copied()
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
    };
    match env {
        EnvKind::CarRacing => HumanAxes {
            steer: at(0),
            gas: at(1),
            brake: at(2),
        },
        EnvKind::TakeCover => HumanAxes {
            steer: at(0),
            gas: 0.0,
            brake: 0.0,
        },
    }
}

fn decay(value: f32) -> f32 {
    let next = value * KEY_DECAY_PER_STEP;
    if next.abs() < AXIS_REST_EPSILON {
        0.0
    } else {
        next
    }
}

/// A pedal: the key ramps it, else the trigger sets it, else it decays.
fn ramp_or(value: f32, key_held: bool, trigger: f32) -> f32 {
    if key_held {
        (value + KEY_RAMP_PER_STEP).min(1.0)
    } else if trigger > 0.0 {
        trigger
    } else {
        decay(value)
    }
}

/// The human as an [`Agent`]: the axes the app advanced with the latest input, as an action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Human {
    pub env: EnvKind,
    pub axes: HumanAxes,
}

impl Agent for Human {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        self.axes.to_action(self.env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(left: bool, right: bool, up: bool, down: bool) -> HumanInput {
        HumanInput {
            keys: HeldKeys {
                left,
                right,
                up,
                down,
            },
            pad: PadValues::default(),
        }
    }

    #[test]
    fn a_held_key_ramps_by_a_tenth_per_step_and_saturates() {
        let mut axes = HumanAxes::default();
        for _ in 0..3 {
            axes.advance(EnvKind::CarRacing, &keys(false, false, true, false));
        }
        assert!((axes.gas - 0.3).abs() < 1e-6, "gas {}", axes.gas);
        for _ in 0..20 {
            axes.advance(EnvKind::CarRacing, &keys(true, false, true, false));
        }
        assert_eq!(axes.gas, 1.0);
        assert_eq!(axes.steer, -1.0);
    }

    #[test]
    fn a_released_key_decays_by_a_tenth_and_comes_to_rest() {
        let mut axes = HumanAxes {
            steer: 0.5,
            gas: 1.0,
            brake: 0.0,
        };
        axes.advance(EnvKind::CarRacing, &HumanInput::default());
        assert!((axes.steer - 0.45).abs() < 1e-6);
        assert!((axes.gas - 0.9).abs() < 1e-6);
        for _ in 0..200 {
            axes.advance(EnvKind::CarRacing, &HumanInput::default());
        }
        assert_eq!(axes, HumanAxes::default());
    }

    #[test]
    fn a_gamepad_sets_axes_directly_outside_its_deadzone() {
        let mut axes = HumanAxes::default();
        let pad = PadValues {
            stick_x: -0.6,
            right_trigger: 0.8,
            left_trigger: 0.05,
            ..PadValues::default()
        };
        let input = HumanInput {
            keys: HeldKeys::default(),
            pad,
        };
        axes.advance(EnvKind::CarRacing, &input);
        assert_eq!(
            axes,
            HumanAxes {
                steer: -0.6,
                gas: 0.8,
                brake: 0.0
            }
        );
        assert!(input.active());
        let resting = HumanInput {
            pad: PadValues {
                stick_x: 0.1,
                ..PadValues::default()
            },
            ..HumanInput::default()
        };
        assert!(
            !resting.active(),
            "a stick inside its deadzone is not a human"
        );
    }

    #[test]
    fn take_cover_strafes_at_once_and_maps_to_one_value() {
        let mut axes = HumanAxes::default();
        axes.advance(EnvKind::TakeCover, &keys(true, false, false, false));
        assert_eq!(axes.to_action(EnvKind::TakeCover), vec![-1.0]);
        let dpad = HumanInput {
            pad: PadValues {
                dpad_right: true,
                ..PadValues::default()
            },
            ..HumanInput::default()
        };
        axes.advance(EnvKind::TakeCover, &dpad);
        assert_eq!(axes.to_action(EnvKind::TakeCover), vec![1.0]);
        axes.advance(EnvKind::TakeCover, &HumanInput::default());
        assert_eq!(axes.to_action(EnvKind::TakeCover), vec![0.0]);
    }

    #[test]
    fn actions_round_trip_through_the_hud_axes() {
        let axes = axes_from_action(EnvKind::CarRacing, &[0.25, 0.5, f32::NAN]);
        assert_eq!(
            axes,
            HumanAxes {
                steer: 0.25,
                gas: 0.5,
                brake: 0.0
            }
        );
        assert_eq!(
            action_from_axes(EnvKind::CarRacing, axes),
            vec![0.25, 0.5, 0.0]
        );
    }
}
