//! Reality and the dream, stepped at the env's own rate in `FixedUpdate` (50 Hz CarRacing, 35 Hz
//! Take Cover), whatever the display rate.
//!
//! - [`session`]: [`Session`], the state of play, and where models come from.
//! - [`reality`]: the real env and its episode.
//! - [`dream_episode`]: the dream's episode and the operations that fork, step and edit it.
//! - [`modes`]: one stepping system per [`Mode`], and what entering a mode does.
//! - [`setup`]: going to a whole state at once, as a tour scene does.
//! - [`apply`]: the sim's [`PlayCommand`](super::commands::PlayCommand)s, env switching included.
//! - [`divergence`], [`timings`], [`model_frames`], [`notice`]: what the views and the HUD show.
//!
//! Pause is a state, [`SimState`]: every stepping system runs only while it is `Running`, or while
//! a single step (N) is pending.

mod apply;
mod divergence;
mod dream_episode;
mod model_frames;
mod modes;
mod notice;
mod reality;
mod session;
mod setup;
mod timings;

use bevy::prelude::*;

use super::AppSystems;
use super::commands::Mode;
use super::world_model::{WorldModelRuntime, load_runtime};
use crate::envs::EnvKind;

pub use divergence::{DIVERGENCE_HISTORY, Divergence, l2_distance};
pub use dream_episode::{DREAM_EPISODE_STEPS_MAX, DreamEpisode, DreamOrigin};
pub use model_frames::ModelFrames;
pub use modes::SimStep;
pub use notice::{NOTICE_SECONDS, Notice};
pub use reality::Reality;
pub use session::{ModelSource, Session};
pub use timings::{Samples, TIMING_WINDOW, Timings, millis};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Divergence>();
    app.init_resource::<Timings>();
    app.init_resource::<ModelFrames>();
    app.init_resource::<Notice>();
    // Headless tests run on MinimalPlugins, which lack the states plugin that DefaultPlugins bring.
    if !app.is_plugin_added::<bevy::state::app::StatesPlugin>() {
        app.add_plugins(bevy::state::app::StatesPlugin);
    }
    app.init_state::<Mode>();
    app.init_state::<SimState>();
    // When a sim step costs more than its share of real time (eight flow futures take ~90 ms on
    // two cores), bevy runs up to 250 ms of missed steps each frame, and the window falls to one
    // frame a second. A shorter catch-up keeps the window responsive; the sim slows instead.
    if let Some(mut time) = app.world_mut().get_resource_mut::<Time<Virtual>>() {
        time.set_max_delta(MAX_CATCH_UP);
    }
    app.add_systems(
        Update,
        apply::apply_sim_commands.in_set(AppSystems::ApplyCommands),
    );
    app.add_systems(
        Update,
        (notice::count_down, model_frames::refresh_model_frames)
            .chain()
            .in_set(AppSystems::Update),
    );
    modes::plugin(app);
}

/// The most sim time one frame catches up: three steps at Take Cover's 35 Hz.
pub const MAX_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(90);

/// Whether the sim steps on its own. Paused, it moves only by single steps (N).
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SimState {
    #[default]
    Running,
    Paused,
}

/// Inserts the sim's resources for `env`, loading its world model.
pub fn insert_session(world: &mut World, env: EnvKind, seed: u64, source: ModelSource) {
    let runtime = load_runtime(&source.models_dir, env, source.backend.as_deref());
    insert_session_with_runtime(world, env, seed, source, runtime);
}

/// As [`insert_session`], with a given world model (tests inject their own).
pub fn insert_session_with_runtime(
    world: &mut World,
    env: EnvKind,
    seed: u64,
    source: ModelSource,
    mut runtime: WorldModelRuntime,
) {
    let mut reality = Reality::new(env, seed);
    reality.generation = 1;
    world.insert_resource(Time::<Fixed>::from_hz(f64::from(env.steps_per_second())));
    world.insert_resource(reality);
    world.insert_resource(Session::for_model(env, &mut runtime));
    world.insert_resource(DreamEpisode::default());
    world.insert_resource(runtime);
    world.insert_resource(source);
}
