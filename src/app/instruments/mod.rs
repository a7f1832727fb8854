//! The instruments: what shows *why* the dream behaves as it does, live and beside reality.
//!
//! - [`fan`]: N futures forked from one state and stepped with the same actions, their spread as
//!   a heat map, and (when reality steps) reality's own continuation among them;
//! - [`mixture`]: M's predicted mixture for one latent dimension, the value drawn and the real one;
//! - [`previews`]: from the paused state, what each of a few actions would do;
//! - [`map`]: the data's z projected to 2D, with the live paths of reality and the dream.
//!
//! At most one is open ([`Instruments::open`]). Their state follows the sim in `FixedUpdate`, after
//! the step ([`SimStep`](super::sim::SimStep)); the panels that draw them live in
//! `super::instrument_panels`. Lockstep's re-sync interval is the session's
//! ([`Session::resync_every`](super::sim::Session::resync_every)).

pub mod fan;
pub mod map;
pub mod mixture;
pub mod previews;

use std::ops::RangeInclusive;

use bevy::prelude::*;

use super::AppSystems;
use super::commands::{Instrument, Mode, PlayCommand};
use super::sim::SimStep;
use super::world_model::{DreamFamily, View};

pub use fan::FuturesFan;
pub use map::LatentTrails;
pub use mixture::MixtureReadout;
pub use previews::ActionPreviews;

/// How many futures the fan can roll, and its default.
pub const FAN_SIZES: RangeInclusive<usize> = 4..=16;
pub const FAN_SIZE_DEFAULT: usize = 8;
/// The fan forks afresh every this many steps (so that it shows futures growing apart, again and
/// again, rather than N unrelated dreams).
pub const FAN_HORIZONS: RangeInclusive<u32> = 5..=200;
pub const FAN_HORIZON_DEFAULT: u32 = 40;
/// How far on the action previews look (K).
pub const PREVIEW_STEPS: RangeInclusive<usize> = 1..=60;
pub const PREVIEW_STEPS_DEFAULT: usize = 10;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Instruments>();
    app.init_resource::<FuturesFan>();
    app.init_resource::<MixtureReadout>();
    app.init_resource::<ActionPreviews>();
    app.init_resource::<LatentTrails>();
    app.add_systems(
        Update,
        apply_instrument_commands.in_set(AppSystems::ApplyCommands),
    );
    app.add_systems(
        FixedUpdate,
        (fan::follow_sim, mixture::read_mixture, map::follow_paths).after(SimStep),
    );
    app.add_systems(
        Update,
        previews::refresh_previews.in_set(AppSystems::Update),
    );
}

/// Which instrument is open, and its settings.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct Instruments {
    pub open: Option<Instrument>,
    pub fan_size: usize,
    pub fan_horizon: u32,
    /// The dimension inside M shows; `None`: the one that varies most over the data (z0 without
    /// statistics).
    pub mixture_dim: Option<usize>,
    pub preview_steps: usize,
}

impl Default for Instruments {
    fn default() -> Self {
        Self {
            open: None,
            fan_size: FAN_SIZE_DEFAULT,
            fan_horizon: FAN_HORIZON_DEFAULT,
            mixture_dim: None,
            preview_steps: PREVIEW_STEPS_DEFAULT,
        }
    }
}

impl Instruments {
    pub fn is_open(&self, instrument: Instrument) -> bool {
        self.open == Some(instrument)
    }
}

/// Whose state an instrument forks from in `mode`: reality's where reality steps, else the dream's
/// (for the flow dream, M's memory of it: the instruments read the 2018 model).
pub fn source_view(mode: Mode, family: DreamFamily) -> View {
    match (mode, family) {
        (Mode::DriveReality | Mode::Lockstep | Mode::SideBySide, _) => View::Reality,
        (Mode::DriveDream, DreamFamily::Flow) => View::FlowDream,
        (Mode::DriveDream | Mode::LatentExplorer, DreamFamily::MdnRnn)
        | (Mode::LatentExplorer, DreamFamily::Flow) => View::Dream,
    }
}

fn apply_instrument_commands(
    mut commands: MessageReader<PlayCommand>,
    mut instruments: ResMut<Instruments>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::ToggleInstrument(instrument) => {
                instruments.open = if instruments.open == Some(*instrument) {
                    None
                } else {
                    Some(*instrument)
                };
            }
            PlayCommand::SetFanSize(n) => {
                instruments.fan_size = (*n).clamp(*FAN_SIZES.start(), *FAN_SIZES.end());
            }
            PlayCommand::SetFanHorizon(steps) => {
                instruments.fan_horizon =
                    (*steps).clamp(*FAN_HORIZONS.start(), *FAN_HORIZONS.end());
            }
            PlayCommand::SetMixtureDim(dim) => instruments.mixture_dim = Some(*dim),
            PlayCommand::Setup(setup) => {
                *instruments = Instruments {
                    open: setup.instrument,
                    fan_size: setup.fan_size.unwrap_or(FAN_SIZE_DEFAULT),
                    ..Instruments::default()
                };
            }
            PlayCommand::SetPreviewSteps(k) => {
                instruments.preview_steps =
                    (*k).clamp(*PREVIEW_STEPS.start(), *PREVIEW_STEPS.end());
            }
            _ => {}
        }
    }
}
