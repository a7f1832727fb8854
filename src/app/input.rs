//! Keyboard and gamepads, read once per display frame in `Update`: held controls go to
//! [`HumanControls`] for the fixed-rate sim; key presses become [`PlayCommand`]s, as bound in
//! [`Control::spec`].
//!
//! Reading here rather than in `FixedUpdate` matters: a fixed step can see a `just_pressed` twice or
//! not at all. Presses are accumulated until the next sim step consumes them, so a tap shorter than
//! one sim step still counts.

use bevy::input::gamepad::{Gamepad, GamepadAxis, GamepadButton};
use bevy::prelude::*;

use super::AppSystems;
use super::commands::{Control, DRIVE_KEYS, PlayCommand};
use crate::agent::human::{HeldKeys, HumanInput, PadValues};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<HumanControls>();
    app.add_systems(
        Update,
        (read_held_controls, keyboard_commands, gamepad_commands).in_set(AppSystems::ReadInput),
    );
}

/// The human's controls, handed from `Update` to the sim.
#[derive(Resource, Debug, Default, Clone)]
pub struct HumanControls {
    /// What was held on the latest display frame.
    pub latest: HumanInput,
    /// Everything held since the sim last stepped (keys OR-ed, pads latest), so short taps count.
    pub since_last_step: HumanInput,
    /// The sim consumed `since_last_step`; the next frame starts it afresh.
    consumed: bool,
}

impl HumanControls {
    /// The input for one sim step; later steps before the next frame see what is still held.
    pub fn take_for_step(&mut self) -> HumanInput {
        self.consumed = true;
        std::mem::replace(&mut self.since_last_step, self.latest)
    }

    /// Drops what was pressed since the last step: a key that meant something else (a page turn).
    pub fn forget_pending(&mut self) {
        self.since_last_step = HumanInput::default();
        self.latest = HumanInput::default();
    }

    /// Records one display frame's input.
    pub fn record_frame(&mut self, latest: HumanInput) {
        let pending = if self.consumed {
            HumanInput::default()
        } else {
            self.since_last_step
        };
        self.consumed = false;
        self.latest = latest;
        self.since_last_step = HumanInput {
            keys: HeldKeys {
                left: pending.keys.left || latest.keys.left,
                right: pending.keys.right || latest.keys.right,
                up: pending.keys.up || latest.keys.up,
                down: pending.keys.down || latest.keys.down,
            },
            pad: latest.pad,
        };
    }
}

fn read_held_controls(
    keys: Res<ButtonInput<KeyCode>>,
    gamepads: Query<&Gamepad>,
    mut controls: ResMut<HumanControls>,
) {
    let held = |codes: &[KeyCode]| keys.any_pressed(codes.iter().copied());
    let keys = HeldKeys {
        left: held(DRIVE_KEYS.left),
        right: held(DRIVE_KEYS.right),
        up: held(DRIVE_KEYS.up),
        down: held(DRIVE_KEYS.down),
    };
    // Every connected pad counts: a pad that unplugs simply leaves the query.
    let pad = gamepads
        .iter()
        .map(pad_values)
        .fold(PadValues::default(), PadValues::merge);
    controls.record_frame(HumanInput { keys, pad });
}

/// A pad's driving values. Triggers are read as analog buttons; a pad that reports them only as
/// digital still gives full gas or brake.
fn pad_values(gamepad: &Gamepad) -> PadValues {
    let trigger = |button: GamepadButton| {
        let analog = gamepad.get(button).unwrap_or(0.0);
        if gamepad.pressed(button) {
            analog.max(1.0)
        } else {
            analog
        }
    };
    PadValues {
        stick_x: gamepad.get(GamepadAxis::LeftStickX).unwrap_or(0.0),
        right_trigger: trigger(GamepadButton::RightTrigger2),
        left_trigger: trigger(GamepadButton::LeftTrigger2),
        dpad_left: gamepad.pressed(GamepadButton::DPadLeft),
        dpad_right: gamepad.pressed(GamepadButton::DPadRight),
    }
}

fn keyboard_commands(keys: Res<ButtonInput<KeyCode>>, mut commands: MessageWriter<PlayCommand>) {
    for control in Control::ALL {
        for binding in control.spec().bindings {
            if binding.keys.iter().any(|key| keys.just_pressed(*key)) {
                commands.write(binding.command.clone());
            }
        }
    }
}

fn gamepad_commands(gamepads: Query<&Gamepad>, mut commands: MessageWriter<PlayCommand>) {
    for gamepad in &gamepads {
        for control in Control::ALL {
            for binding in control.spec().bindings {
                if binding
                    .pad
                    .iter()
                    .any(|button| gamepad.just_pressed(*button))
                {
                    commands.write(binding.command.clone());
                }
            }
        }
    }
}
