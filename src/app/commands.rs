//! What a user can ask for, as messages: keys, gamepad buttons, UI widgets and the script all send
//! [`PlayCommand`]s; the systems that own the state apply them. Nothing else mutates the sim.

use bevy::prelude::*;

use crate::model::mdrnn::DoneRule;
use crate::envs::EnvKind;

pub(super) fn plugin(app: &mut App) {
    app.add_message::<PlayCommand>();
}

/// The playground's modes: one axis, one bevy state. Commands ask for a mode through
/// `NextState<Mode>`; entering one forks the dream (`sim::enter_mode`).
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The real env steps; V shows its reconstruction, the dream pane M's one-step prediction.
    #[default]
    DriveReality,
    /// Only the dream steps: you (or C) drive inside M.
    DriveDream,
    /// The same actions go to reality and to a dream forked from it; the gap is plotted.
    Lockstep,
    /// The dream is paused and every latent dimension has a slider.
    LatentExplorer,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::DriveReality,
        Mode::DriveDream,
        Mode::Lockstep,
        Mode::LatentExplorer,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::DriveReality => "Drive reality",
            Mode::DriveDream => "Drive the dream",
            Mode::Lockstep => "Lockstep",
            Mode::LatentExplorer => "Latent explorer",
        }
    }

    /// The function key that selects this mode.
    pub fn key_label(self) -> &'static str {
        match self {
            Mode::DriveReality => "F5",
            Mode::DriveDream => "F6",
            Mode::Lockstep => "F7",
            Mode::LatentExplorer => "F8",
        }
    }

    pub fn next(self) -> Mode {
        let index = Mode::ALL.iter().position(|m| *m == self).unwrap_or(0);
        Mode::ALL[(index + 1) % Mode::ALL.len()]
    }
}

/// A request from the user.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum PlayCommand {
    SetMode(Mode),
    NextMode,
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
    Screenshot,
    ToggleFullscreen,
    /// Multiply the UI scale by this factor.
    ScaleUi(f32),
    SetUiScale(f32),
    ToggleSidePanel,
    ToggleHelp,
    Quit,
}
