//! Keyboard and gamepads, read once per display frame in `Update`: held controls go to
//! [`HumanControls`] for the fixed-rate sim; key presses become [`PlayCommand`]s.
//!
//! Reading here rather than in `FixedUpdate` matters: a fixed step can see a `just_pressed` twice or
//! not at all. Presses are accumulated until the next sim step consumes them, so a tap shorter than
//! one sim step still counts.

use bevy::input::gamepad::{Gamepad, GamepadAxis, GamepadButton};
use bevy::prelude::*;

use super::AppSystems;
use super::commands::{Mode, PlayCommand};
use super::drive::{HeldKeys, HumanInput, PadValues, TAU_PRESETS};
use super::lecture::Presentation;

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

/// Driving keys: arrows or WASD.
const LEFT_KEYS: [KeyCode; 2] = [KeyCode::ArrowLeft, KeyCode::KeyA];
const RIGHT_KEYS: [KeyCode; 2] = [KeyCode::ArrowRight, KeyCode::KeyD];
const UP_KEYS: [KeyCode; 2] = [KeyCode::ArrowUp, KeyCode::KeyW];
const DOWN_KEYS: [KeyCode; 2] = [KeyCode::ArrowDown, KeyCode::KeyS];

/// The tau preset keys, in [`TAU_PRESETS`] order.
const TAU_PRESET_KEYS: [KeyCode; 5] = [
    KeyCode::Digit1,
    KeyCode::Digit2,
    KeyCode::Digit3,
    KeyCode::Digit4,
    KeyCode::Digit5,
];

/// Every control, for the F1 overlay: (keys, what they do).
pub const CONTROLS_HELP: &[(&str, &str)] = &[
    (
        "Arrows / WASD",
        "steer, gas, brake (Take Cover: left / right)",
    ),
    (
        "Gamepad",
        "left stick steers, RT gas, LT brake; d-pad strafes",
    ),
    ("C  (pad Y)", "hand the wheel to C, the controller"),
    ("1 2 3 4 5", "tau presets 0.1  0.5  1.0  1.15  1.3"),
    ("M  (pad Select)", "next mode"),
    (
        "F5 F6 F7 F8",
        "Drive reality / Drive the dream / Lockstep / Latent explorer",
    ),
    (
        "F  (pad B)",
        "dream from here: fork the dream from the real frame",
    ),
    ("G", "dream from a random z"),
    ("Backspace  (pad X)", "restart the real episode"),
    ("Space  (pad Start)", "pause"),
    ("N  or  .", "single step"),
    ("E", "switch env"),
    ("R", "record a GIF of the views (again to stop)"),
    ("P  or  F12", "screenshot"),
    ("F11", "fullscreen"),
    ("+  /  -", "UI scale"),
    ("Tab", "hide / show the side panel"),
    ("F1  or  H", "this help"),
];

fn read_held_controls(
    keys: Res<ButtonInput<KeyCode>>,
    gamepads: Query<&Gamepad>,
    mut controls: ResMut<HumanControls>,
) {
    let held = |codes: &[KeyCode]| keys.any_pressed(codes.iter().copied());
    let keys = HeldKeys {
        left: held(&LEFT_KEYS),
        right: held(&RIGHT_KEYS),
        up: held(&UP_KEYS),
        down: held(&DOWN_KEYS),
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

fn keyboard_commands(
    keys: Res<ButtonInput<KeyCode>>,
    presentation: Res<Presentation>,
    mut commands: MessageWriter<PlayCommand>,
) {
    let pressed = |code: KeyCode| keys.just_pressed(code);
    let any = |codes: &[KeyCode]| codes.iter().any(|code| keys.just_pressed(*code));

    for (index, key) in TAU_PRESET_KEYS.iter().enumerate().take(TAU_PRESETS.len()) {
        if pressed(*key) {
            commands.write(PlayCommand::TauPreset(index));
        }
    }
    let mode_keys = [KeyCode::F5, KeyCode::F6, KeyCode::F7, KeyCode::F8];
    for (mode, key) in Mode::ALL.iter().zip(mode_keys) {
        if pressed(key) {
            commands.write(PlayCommand::SetMode(*mode));
        }
    }
    let simple: [(&[KeyCode], PlayCommand); 16] = [
        (&[KeyCode::KeyC], PlayCommand::HandToController),
        (&[KeyCode::KeyM], PlayCommand::NextMode),
        (&[KeyCode::KeyF], PlayCommand::DreamFromReality),
        (&[KeyCode::KeyG], PlayCommand::DreamFromRandom),
        (&[KeyCode::Backspace], PlayCommand::ResetEpisode),
        (&[KeyCode::Space], PlayCommand::TogglePause),
        (&[KeyCode::KeyN, KeyCode::Period], PlayCommand::StepOnce),
        (&[KeyCode::KeyE], PlayCommand::SwitchEnv(None)),
        (&[KeyCode::KeyR], PlayCommand::ToggleRecording),
        (&[KeyCode::KeyP, KeyCode::F12], PlayCommand::Screenshot),
        (&[KeyCode::F11], PlayCommand::ToggleFullscreen),
        (
            &[KeyCode::Equal, KeyCode::NumpadAdd],
            PlayCommand::ScaleUi(UI_SCALE_STEP),
        ),
        (
            &[KeyCode::Minus, KeyCode::NumpadSubtract],
            PlayCommand::ScaleUi(1.0 / UI_SCALE_STEP),
        ),
        (&[KeyCode::Tab], PlayCommand::ToggleSidePanel),
        (&[KeyCode::F1, KeyCode::KeyH], PlayCommand::ToggleHelp),
        (&[KeyCode::Escape], PlayCommand::ToggleHelp),
    ];
    for (codes, command) in simple {
        // Escape only closes the help; it never opens it (people press Escape to get out of things).
        if command == PlayCommand::ToggleHelp
            && codes.contains(&KeyCode::Escape)
            && !presentation.help_open
        {
            continue;
        }
        if any(codes) {
            commands.write(command);
        }
    }
}

/// One UI scale step (+ / -).
pub const UI_SCALE_STEP: f32 = 1.1;

fn gamepad_commands(gamepads: Query<&Gamepad>, mut commands: MessageWriter<PlayCommand>) {
    for gamepad in &gamepads {
        let buttons = [
            (GamepadButton::North, PlayCommand::HandToController),
            (GamepadButton::East, PlayCommand::DreamFromReality),
            (GamepadButton::West, PlayCommand::ResetEpisode),
            (GamepadButton::Start, PlayCommand::TogglePause),
            (GamepadButton::Select, PlayCommand::NextMode),
        ];
        for (button, command) in buttons {
            if gamepad.just_pressed(button) {
                commands.write(command);
            }
        }
    }
}
