//! What a user can ask for, as messages: keys, gamepad buttons, UI widgets and the script all send
//! [`PlayCommand`]s; the systems that own the state apply them. Nothing else mutates the sim.
//!
//! Each control's keys, pad buttons, label and help are defined once, in [`Control::spec`].

use std::borrow::Cow;

use bevy::input::gamepad::GamepadButton;
use bevy::prelude::*;

use super::drive::{Driver, TAU_PRESETS};
use super::lecture::ViewKind;
use super::recording::RecordingRate;
use super::world_model::DreamFamily;
use crate::envs::EnvKind;
use crate::model::mdrnn::DoneRule;

pub(super) fn plugin(app: &mut App) {
    app.add_message::<PlayCommand>();
}

/// The playground's modes: one axis, one bevy state. Commands ask for a mode through
/// `NextState<Mode>`; entering one may fork the dream (`sim::modes`).
#[derive(
    States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The real env steps; V shows its reconstruction, the dream pane M's one-step prediction.
    #[default]
    DriveReality,
    /// Only the dream steps: you (or C) drive inside M.
    DriveDream,
    /// The same actions go to reality and to a dream forked from it; the gap is plotted.
    Lockstep,
    /// The dream is paused and every latent dimension has a slider.
    #[value(alias = "explore")]
    #[serde(alias = "explore")]
    LatentExplorer,
    /// Reality, the 2018 dream and the flow dream, forked together and given the same actions.
    SideBySide,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::DriveReality,
        Mode::DriveDream,
        Mode::Lockstep,
        Mode::LatentExplorer,
        Mode::SideBySide,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::DriveReality => "Drive reality",
            Mode::DriveDream => "Drive the dream",
            Mode::Lockstep => "Lockstep",
            Mode::LatentExplorer => "Latent explorer",
            Mode::SideBySide => "Side by side",
        }
    }

    /// The function key that selects this mode.
    pub fn key_label(self) -> String {
        key_for(&PlayCommand::SetMode(self)).unwrap_or_default()
    }

    pub fn next(self) -> Mode {
        let index = Mode::ALL.iter().position(|m| *m == self).unwrap_or(0);
        Mode::ALL[(index + 1) % Mode::ALL.len()]
    }
}

/// The instruments that show why the dream behaves as it does. At most one is open; it shares the
/// screen with the views (see `super::instruments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instrument {
    /// N dreams forked from one state, stepped with the same actions, and their spread.
    Futures,
    /// M's predicted mixture for one latent dimension, at tau 1 and at the current tau.
    Mixture,
    /// V's latent space in 2D, with the live paths of reality and the dream.
    Map,
    /// What each of a few actions would do, from the paused state.
    Actions,
    /// The paper's Table 2: each C of the bundle in the dream it was evolved in and in reality.
    Table,
}

impl Instrument {
    pub const ALL: [Instrument; 5] = [
        Instrument::Futures,
        Instrument::Mixture,
        Instrument::Map,
        Instrument::Actions,
        Instrument::Table,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Instrument::Futures => "Futures fan",
            Instrument::Mixture => "Inside M",
            Instrument::Map => "Latent map",
            Instrument::Actions => "What if",
            Instrument::Table => "Paper's table",
        }
    }

    /// One line on what it shows.
    pub fn caption(self) -> &'static str {
        match self {
            Instrument::Futures => {
                "dreams forked from one state, the same actions: tau made visible"
            }
            Instrument::Mixture => "M's predicted distribution of one z dimension's next value",
            Instrument::Map => "the data's z in 2D (PCA), with reality's and the dream's paths",
            Instrument::Actions => "from the paused state: each action's next frame and K steps on",
            Instrument::Table => {
                "the paper's Table 2: each C in the dream it was evolved in, and in reality"
            }
        }
    }

    /// Its caption while the flow model dreams, where that differs.
    pub fn flow_caption(self) -> Option<&'static str> {
        match self {
            Instrument::Futures => {
                Some("flow dreams from one state, the same actions: temperature made visible")
            }
            Instrument::Mixture | Instrument::Map | Instrument::Actions | Instrument::Table => None,
        }
    }

    /// The key that opens and closes it.
    pub fn key_label(self) -> String {
        key_for(&PlayCommand::ToggleInstrument(self)).unwrap_or_default()
    }
}

/// A request from the user.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum PlayCommand {
    SetMode(Mode),
    NextMode,
    /// Which world model dreams; `None`: the other one.
    DreamWith(Option<DreamFamily>),
    /// The flow dream's sampling steps (1, 2, 4 or 8).
    SetFlowSteps(usize),
    /// Fewer (-1) or more (+1) flow sampling steps, along [`FLOW_STEP_CHOICES`].
    CycleFlowSteps(i8),
    /// The flow dream's temperature, its analogue of tau.
    SetFlowTemperature(f32),
    SetTau(f32),
    /// Index into [`super::drive::TAU_PRESETS`].
    TauPreset(usize),
    /// The factor on the odds of M's done head (1: as trained).
    SetDoneOdds(f32),
    /// How M's done head ends the dream: drawn, or the paper's threshold.
    SetDoneRule(DoneRule),
    /// tau, done odds and done rule back to the dream C was evolved in (or the defaults).
    DreamAsTrained,
    /// Switch to this env, or to the other one.
    SwitchEnv(Option<EnvKind>),
    TogglePause,
    /// Advance the sim one step (works while paused; in the latent explorer it steps the dream).
    StepOnce,
    /// Restart the real episode (next seed).
    ResetEpisode,
    /// Fork the dream from the current real frame (in the latent explorer: z = its encoding).
    DreamFromReality,
    /// Start the dream from a random z (in the latent explorer: randomize z).
    DreamFromRandom,
    /// Give the wheel back to C.
    HandToController,
    /// The human takes the wheel (touching any control does the same).
    TakeWheel,
    /// Latent explorer: set one dimension of z.
    SetLatentDim {
        dim: usize,
        value: f32,
    },
    ToggleRecording,
    /// Which sim steps the next GIF records (a change while recording applies to the next one).
    SetRecordingRate(RecordingRate),
    /// Side of each view in the next GIF, in pixels (clamped to
    /// [`super::recording::RECORDING_VIEW_SIZE_RANGE`]).
    SetRecordingSize(u32),
    Screenshot,
    ToggleFullscreen,
    /// Multiply the UI scale by this factor.
    ScaleUi(f32),
    SetUiScale(f32),
    ToggleSidePanel,
    /// The presenter layout: every panel hidden but the views and a one-line HUD.
    TogglePresenter,
    /// Lockstep's plot: fold it away, or show it again.
    TogglePlot,
    /// Show this view alone, as large as the window allows; again to show all three.
    ToggleMaximised(ViewKind),
    /// A black screen, as slide software's B gives; again (or Escape) to come back.
    ToggleBlank,
    /// Leave what is open, innermost first: the help, the blank screen, a maximised view, the
    /// tour, fullscreen.
    Escape,
    /// The tour's next scene.
    TourNext,
    /// The tour's previous scene.
    TourPrevious,
    /// Go to this whole state at once: what entering a tour scene does.
    Setup(Box<Setup>),
    ToggleHelp,
    /// Open this instrument, or close it if it is open.
    ToggleInstrument(Instrument),
    /// How many futures the fan rolls.
    SetFanSize(usize),
    /// The fan forks afresh every this many steps.
    SetFanHorizon(u32),
    /// Which latent dimension the mixture panel shows.
    SetMixtureDim(usize),
    /// How far on the action previews look (K).
    SetPreviewSteps(usize),
    /// Lockstep: reset the dream to reality every K steps (`None`: never, an open-loop dream).
    SetResync(Option<u32>),
    /// Lockstep: the next re-sync interval in [`RESYNC_CHOICES`].
    CycleResync,
    /// Put the dream at this z and open the latent explorer (a click on the latent map).
    JumpToLatent(Vec<f32>),
    /// C number N of the bundle drives from now on (0: the default C; see
    /// `DreamRunner::controllers`), and the dream becomes the one it was evolved in.
    SelectController(usize),
    /// Score every C of the bundle in its dream and in reality, this many episodes each, in the
    /// background: the paper's Table 2 (`super::experiment`).
    RunTable {
        episodes: usize,
    },
    /// Stop the table's run.
    CancelTable,
    Quit,
}

/// A whole state of play to go to, as a tour scene names it. What it leaves out takes the env's
/// defaults (the dream the chosen C was evolved in), so the result never depends on what came
/// before: the same setup shows the same frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub env: EnvKind,
    /// The real episode's seed; the dream's random draws are reseeded from it too.
    pub seed: u64,
    pub mode: Mode,
    pub driver: Driver,
    /// A C of the bundle by name; `None`: the bundle's own.
    pub controller: Option<String>,
    pub tau: Option<f32>,
    pub done_odds: Option<f32>,
    pub done_rule: Option<DoneRule>,
    /// Real steps, the driver acting, before the dream forks.
    pub fork_after: u32,
    pub paused: bool,
    /// Start the dream from a random z rather than the real frame.
    pub random_z: bool,
    /// Lockstep's re-sync interval (`None`: open loop).
    pub resync: Option<u32>,
    /// Which world model dreams; `None`: the 2018 one.
    pub dream_with: Option<DreamFamily>,
    /// The flow dream's sampling steps and temperature; `None`: its defaults.
    pub flow_steps: Option<usize>,
    pub flow_temperature: Option<f32>,
    pub instrument: Option<Instrument>,
    pub fan_size: Option<usize>,
    pub maximised: Option<ViewKind>,
}

/// The flow dream's sampling steps, as the knob offers them: the steps its shortcut training
/// covers.
pub const FLOW_STEP_CHOICES: [usize; 4] = crate::model::flow::shortcut::SAMPLING_STEPS;

/// The re-sync intervals K cycles through: every step (one-step predictions) to never (open loop).
pub const RESYNC_CHOICES: [Option<u32>; 6] =
    [None, Some(1), Some(5), Some(10), Some(30), Some(100)];

/// One UI scale step (+ / -).
pub const UI_SCALE_STEP: f32 = 1.1;

/// The driving keys, read while held rather than as commands: arrows or WASD.
pub const DRIVE_KEYS: DriveKeys = DriveKeys {
    left: &[KeyCode::ArrowLeft, KeyCode::KeyA],
    right: &[KeyCode::ArrowRight, KeyCode::KeyD],
    up: &[KeyCode::ArrowUp, KeyCode::KeyW],
    down: &[KeyCode::ArrowDown, KeyCode::KeyS],
};

/// The keys for each driving direction.
#[derive(Debug, Clone, Copy)]
pub struct DriveKeys {
    pub left: &'static [KeyCode],
    pub right: &'static [KeyCode],
    pub up: &'static [KeyCode],
    pub down: &'static [KeyCode],
}

/// Keys and pad buttons that send one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    pub pad: &'static [GamepadButton],
    pub command: PlayCommand,
}

impl Binding {
    const fn key(keys: &'static [KeyCode], command: PlayCommand) -> Self {
        Self::key_and_pad(keys, &[], command)
    }

    const fn key_and_pad(
        keys: &'static [KeyCode],
        pad: &'static [GamepadButton],
        command: PlayCommand,
    ) -> Self {
        Self { keys, pad, command }
    }
}

/// Every control the user has, in the order the help lists them. Each one's keys, pad buttons,
/// commands, label and help live in [`Control::spec`] and nowhere else: the help overlay, the
/// buttons, the input systems and the README's table all read them from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Drive,
    Gamepad,
    HandToController,
    TauPresets,
    Modes,
    NextMode,
    DreamWith,
    FlowSteps,
    DreamFromReality,
    DreamFromRandom,
    ResetEpisode,
    Pause,
    StepOnce,
    SwitchEnv,
    Record,
    Screenshot,
    Fullscreen,
    UiScale,
    SidePanel,
    Presenter,
    Maximise,
    Plot,
    Blank,
    Tour,
    Escape,
    Instruments,
    Resync,
    Help,
}

/// What a [`Control`] is: its bindings, a label for buttons and a line of help.
#[derive(Debug, Clone)]
pub struct ControlSpec {
    /// How the keys are named when they are held rather than bound to commands.
    pub held_keys: Option<&'static str>,
    /// Several bindings (tau presets, modes) send one command each, in order.
    pub bindings: &'static [Binding],
    /// A button's text, before the key hint.
    pub label: &'static str,
    /// What the keys do; with several bindings, one part per binding, split by " / ".
    pub help: Cow<'static, str>,
}

impl Control {
    pub const ALL: [Control; 28] = [
        Control::Drive,
        Control::Gamepad,
        Control::HandToController,
        Control::TauPresets,
        Control::Modes,
        Control::NextMode,
        Control::DreamWith,
        Control::FlowSteps,
        Control::DreamFromReality,
        Control::DreamFromRandom,
        Control::ResetEpisode,
        Control::Pause,
        Control::StepOnce,
        Control::SwitchEnv,
        Control::Record,
        Control::Screenshot,
        Control::Fullscreen,
        Control::UiScale,
        Control::SidePanel,
        Control::Presenter,
        Control::Maximise,
        Control::Plot,
        Control::Blank,
        Control::Tour,
        Control::Escape,
        Control::Instruments,
        Control::Resync,
        Control::Help,
    ];

    pub fn spec(self) -> ControlSpec {
        use GamepadButton as Pad;
        use PlayCommand as C;
        let spec = |bindings, label, help: &'static str| ControlSpec {
            held_keys: None,
            bindings,
            label,
            help: Cow::Borrowed(help),
        };
        let held = |keys, help: &'static str| ControlSpec {
            held_keys: Some(keys),
            bindings: &[],
            label: keys,
            help: Cow::Borrowed(help),
        };
        match self {
            Control::Drive => held(
                "Arrows / WASD",
                "steer, gas, brake (Take Cover: left / right)",
            ),
            Control::Gamepad => held(
                "Gamepad",
                "left stick steers, RT gas, LT brake; d-pad strafes",
            ),
            Control::HandToController => spec(
                const {
                    &[Binding::key_and_pad(
                        &[KeyCode::KeyC],
                        &[Pad::North],
                        C::HandToController,
                    )]
                },
                "C",
                "hand the wheel to C, the controller",
            ),
            Control::TauPresets => ControlSpec {
                help: format!(
                    "tau presets {}",
                    TAU_PRESETS.map(|tau| format!("{tau:?}")).join(" / ")
                )
                .into(),
                ..spec(
                    const {
                        &[
                            Binding::key(&[KeyCode::Digit1], C::TauPreset(0)),
                            Binding::key(&[KeyCode::Digit2], C::TauPreset(1)),
                            Binding::key(&[KeyCode::Digit3], C::TauPreset(2)),
                            Binding::key(&[KeyCode::Digit4], C::TauPreset(3)),
                            Binding::key(&[KeyCode::Digit5], C::TauPreset(4)),
                        ]
                    },
                    "tau",
                    "",
                )
            },
            Control::Modes => ControlSpec {
                help: Mode::ALL.map(Mode::label).join(" / ").into(),
                ..spec(
                    const {
                        &[
                            Binding::key(&[KeyCode::F5], C::SetMode(Mode::DriveReality)),
                            Binding::key(&[KeyCode::F6], C::SetMode(Mode::DriveDream)),
                            Binding::key(&[KeyCode::F7], C::SetMode(Mode::Lockstep)),
                            Binding::key(&[KeyCode::F8], C::SetMode(Mode::LatentExplorer)),
                            Binding::key(&[KeyCode::F9], C::SetMode(Mode::SideBySide)),
                        ]
                    },
                    "Mode",
                    "",
                )
            },
            Control::NextMode => spec(
                const {
                    &[Binding::key_and_pad(
                        &[KeyCode::KeyM],
                        &[Pad::Select],
                        C::NextMode,
                    )]
                },
                "Next mode",
                "next mode",
            ),
            Control::DreamWith => spec(
                const { &[Binding::key(&[KeyCode::KeyX], C::DreamWith(None))] },
                "Dream with",
                "dream with the other world model: the 2018 V+M, or the flow model",
            ),
            Control::FlowSteps => spec(
                const {
                    &[
                        Binding::key(&[KeyCode::BracketLeft], C::CycleFlowSteps(-1)),
                        Binding::key(&[KeyCode::BracketRight], C::CycleFlowSteps(1)),
                    ]
                },
                "Flow steps",
                "flow dream: fewer / more sampling steps (1, 2, 4, 8)",
            ),
            Control::DreamFromReality => spec(
                const {
                    &[Binding::key_and_pad(
                        &[KeyCode::KeyF],
                        &[Pad::East],
                        C::DreamFromReality,
                    )]
                },
                "Dream from here",
                "dream from here: fork the dream from the real frame",
            ),
            Control::DreamFromRandom => spec(
                const { &[Binding::key(&[KeyCode::KeyG], C::DreamFromRandom)] },
                "Dream from random z",
                "dream from a random z",
            ),
            Control::ResetEpisode => spec(
                const {
                    &[Binding::key_and_pad(
                        &[KeyCode::Backspace],
                        &[Pad::West],
                        C::ResetEpisode,
                    )]
                },
                "Restart episode",
                "restart the real episode",
            ),
            Control::Pause => spec(
                const {
                    &[Binding::key_and_pad(
                        &[KeyCode::Space],
                        &[Pad::Start],
                        C::TogglePause,
                    )]
                },
                "Pause",
                "pause",
            ),
            Control::StepOnce => spec(
                const { &[Binding::key(&[KeyCode::KeyN], C::StepOnce)] },
                "Step",
                "single step",
            ),
            Control::SwitchEnv => spec(
                const { &[Binding::key(&[KeyCode::KeyE], C::SwitchEnv(None))] },
                "Switch env",
                "switch env",
            ),
            Control::Record => spec(
                const { &[Binding::key(&[KeyCode::KeyR], C::ToggleRecording)] },
                "Record GIF",
                "record a GIF of the views (again to stop)",
            ),
            Control::Screenshot => spec(
                const { &[Binding::key(&[KeyCode::KeyP, KeyCode::F12], C::Screenshot)] },
                "Screenshot",
                "screenshot",
            ),
            Control::Fullscreen => spec(
                const { &[Binding::key(&[KeyCode::F11], C::ToggleFullscreen)] },
                "Fullscreen",
                "fullscreen",
            ),
            Control::UiScale => spec(
                const {
                    &[
                        Binding::key(
                            &[KeyCode::Equal, KeyCode::NumpadAdd],
                            C::ScaleUi(UI_SCALE_STEP),
                        ),
                        Binding::key(
                            &[KeyCode::Minus, KeyCode::NumpadSubtract],
                            C::ScaleUi(1.0 / UI_SCALE_STEP),
                        ),
                    ]
                },
                "UI scale",
                "UI scale up / down",
            ),
            Control::SidePanel => spec(
                const { &[Binding::key(&[KeyCode::Tab], C::ToggleSidePanel)] },
                "Side panel",
                "hide / show the side panel",
            ),
            Control::Presenter => spec(
                const { &[Binding::key(&[KeyCode::KeyV], C::TogglePresenter)] },
                "Views only",
                "presenter layout: the views only, under a one-line HUD (again to leave)",
            ),
            Control::Maximise => spec(
                const {
                    &[
                        Binding::key(&[KeyCode::F2], C::ToggleMaximised(ViewKind::Reality)),
                        Binding::key(&[KeyCode::F3], C::ToggleMaximised(ViewKind::VSees)),
                        Binding::key(&[KeyCode::F4], C::ToggleMaximised(ViewKind::Dream)),
                        Binding::key(&[KeyCode::F10], C::ToggleMaximised(ViewKind::FlowDream)),
                    ]
                },
                "Maximise",
                "show reality / what V sees / the dream / the flow dream (side by side) alone, full size (again, or a click, for all)",
            ),
            Control::Plot => spec(
                const { &[Binding::key(&[KeyCode::KeyL], C::TogglePlot)] },
                "Plot",
                "Lockstep and side by side: fold the plot away, or show it",
            ),
            // Presenter clickers send B or period for "black screen"; period no longer steps.
            Control::Blank => spec(
                const {
                    &[Binding::key(
                        &[KeyCode::KeyB, KeyCode::Period],
                        C::ToggleBlank,
                    )]
                },
                "Blank screen",
                "blank the screen, as slide software does (again to come back)",
            ),
            Control::Tour => spec(
                const {
                    &[
                        Binding::key(&[KeyCode::PageDown], C::TourNext),
                        Binding::key(&[KeyCode::PageUp], C::TourPrevious),
                    ]
                },
                "Tour",
                "tour: next / previous scene (a clicker's buttons; also Right / Left while paused)",
            ),
            Control::Escape => spec(
                const { &[Binding::key(&[KeyCode::Escape], C::Escape)] },
                "Leave",
                "leave the help, the blank screen, a maximised view, the tour or fullscreen",
            ),
            Control::Instruments => ControlSpec {
                help: format!(
                    "instruments: {} (again to close)",
                    Instrument::ALL.map(Instrument::label).join(" / ")
                )
                .into(),
                ..spec(
                    const {
                        &[
                            Binding::key(
                                &[KeyCode::Digit6],
                                C::ToggleInstrument(Instrument::Futures),
                            ),
                            Binding::key(
                                &[KeyCode::Digit7],
                                C::ToggleInstrument(Instrument::Mixture),
                            ),
                            Binding::key(&[KeyCode::Digit8], C::ToggleInstrument(Instrument::Map)),
                            Binding::key(
                                &[KeyCode::Digit9],
                                C::ToggleInstrument(Instrument::Actions),
                            ),
                            Binding::key(
                                &[KeyCode::Digit0],
                                C::ToggleInstrument(Instrument::Table),
                            ),
                        ]
                    },
                    "Instruments",
                    "",
                )
            },
            Control::Resync => spec(
                const { &[Binding::key(&[KeyCode::KeyK], C::CycleResync)] },
                "Re-sync",
                "Lockstep and side by side: re-sync the dreams to reality every K steps (off, 1, 5, 10, 30, 100)",
            ),
            Control::Help => spec(
                const { &[Binding::key(&[KeyCode::F1, KeyCode::KeyH], C::ToggleHelp)] },
                "Help",
                "this help",
            ),
        }
    }

    /// The keys as the help writes them: `N or .`, `1 2 3 4 5`, `C (pad Y)`.
    pub fn keys_text(self) -> String {
        let spec = self.spec();
        if let Some(held) = spec.held_keys {
            return held.to_string();
        }
        let keys = spec
            .bindings
            .iter()
            .map(|binding| shown_keys(binding.keys).join(" or "))
            .collect::<Vec<_>>()
            .join(" ");
        let pads: Vec<&str> = spec
            .bindings
            .iter()
            .flat_map(|binding| binding.pad.iter().copied().map(pad_name))
            .collect();
        if pads.is_empty() {
            keys
        } else {
            format!("{keys} (pad {})", pads.join(" "))
        }
    }

    /// The first key of each binding: the hint on a button (`F`, `+ -`).
    pub fn key_hint(self) -> String {
        self.spec()
            .bindings
            .iter()
            .filter_map(|binding| shown_keys(binding.keys).into_iter().next())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `text (key)`: a button for this control whose text depends on the state (Pause / Resume).
    pub fn button_text_as(self, text: &str) -> String {
        format!("{text} ({})", self.key_hint())
    }

    /// What a button for this control sends: its one command (none for held or grouped controls).
    pub fn command(self) -> Option<PlayCommand> {
        match self.spec().bindings {
            [binding] => Some(binding.command.clone()),
            _ => None,
        }
    }

    /// The control's label with its key hint: `Dream from here (F)`.
    pub fn button_text(self) -> String {
        self.button_text_as(self.spec().label)
    }
}

/// The key that sends `command`, for hover texts (`F6`, `3`).
pub fn key_for(command: &PlayCommand) -> Option<String> {
    Control::ALL.iter().find_map(|control| {
        control
            .spec()
            .bindings
            .iter()
            .find(|binding| binding.command == *command)
            .and_then(|binding| shown_keys(binding.keys).into_iter().next())
    })
}

/// Every control as (keys, what they do), for the help overlay and the README.
pub fn controls_help() -> Vec<(String, String)> {
    Control::ALL
        .iter()
        .map(|control| (control.keys_text(), control.spec().help.into_owned()))
        .collect()
}

/// The controls as a markdown table, the one README.md shows between its `controls` markers.
pub fn controls_markdown() -> String {
    let mut table = String::from("| Keys | Action |\n|---|---|\n");
    for (keys, action) in controls_help() {
        table.push_str(&format!("| {keys} | {action} |\n"));
    }
    table
}

/// The names of `keys` as the help writes them; numpad twins go unmentioned.
fn shown_keys(keys: &[KeyCode]) -> Vec<String> {
    keys.iter().filter_map(|key| key_name(*key)).collect()
}

/// A key's name as the help writes it; `None` for numpad twins, which go unmentioned.
pub fn key_name(key: KeyCode) -> Option<String> {
    let name = match key {
        KeyCode::Period => ".".to_string(),
        KeyCode::Equal => "+".to_string(),
        KeyCode::Minus => "-".to_string(),
        KeyCode::BracketLeft => "[".to_string(),
        KeyCode::BracketRight => "]".to_string(),
        _ => {
            let debug = format!("{key:?}");
            if debug.starts_with("Numpad") {
                return None;
            }
            debug
                .strip_prefix("Key")
                .or_else(|| debug.strip_prefix("Digit"))
                .unwrap_or(&debug)
                .to_string()
        }
    };
    Some(name)
}

/// A pad button by the label on an Xbox-style pad.
fn pad_name(button: GamepadButton) -> &'static str {
    match button {
        GamepadButton::North => "Y",
        GamepadButton::East => "B",
        GamepadButton::West => "X",
        GamepadButton::South => "A",
        GamepadButton::Start => "Start",
        GamepadButton::Select => "Select",
        _ => "button",
    }
}
