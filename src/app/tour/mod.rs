//! The guided tour: scenes from a [`TourFile`], stepped with PageDown / PageUp (what a presenter's
//! clicker sends), or Right / Left while the sim is paused and the arrows steer nothing. Entering
//! a scene sends one [`PlayCommand::Setup`]; each plugin applies its part of it.

pub mod file;

use bevy::prelude::*;

use super::AppSystems;
use super::commands::{PlayCommand, Setup};
use super::drive::Driver;
use super::input::HumanControls;
use super::sim::SimState;
pub use file::{Scene, SceneDriver, TourFile};

pub(super) fn plugin(app: &mut App) {
    app.add_systems(
        Update,
        (navigate, enter_scene)
            .chain()
            .in_set(AppSystems::ExpandCommands),
    );
}

/// The tour being played.
#[derive(Resource, Debug, Clone)]
pub struct Tour {
    pub file: TourFile,
    /// Index of the scene on screen.
    pub current: usize,
    /// Escape leaves the tour (its caption goes, the keys stop stepping it); PageDown or PageUp
    /// come back to it.
    pub active: bool,
    /// The scene last entered: a change of `current` enters the new one.
    entered: Option<usize>,
}

impl Tour {
    /// A tour that opens on scene `start` (0-based, clamped to the last).
    pub fn new(file: TourFile, start: usize) -> Self {
        let current = start.min(file.scenes.len().saturating_sub(1));
        Self {
            file,
            current,
            active: true,
            entered: None,
        }
    }

    pub fn scene(&self) -> &Scene {
        &self.file.scenes[self.current]
    }

    pub fn len(&self) -> usize {
        self.file.scenes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.scenes.is_empty()
    }

    fn step(&mut self, forward: bool) {
        if !self.active {
            // Back into the tour: on to the next scene, or the one it was left in, afresh.
            self.active = true;
            self.entered = None;
            if forward {
                self.current = (self.current + 1).min(self.len() - 1);
            }
            return;
        }
        self.current = if forward {
            (self.current + 1).min(self.len() - 1)
        } else {
            self.current.saturating_sub(1)
        };
    }
}

/// What entering `scene` sets.
pub fn scene_setup(scene: &Scene) -> Setup {
    Setup {
        env: scene.env,
        seed: scene.seed,
        mode: scene.mode,
        driver: match scene.driver {
            SceneDriver::Human => Driver::Human,
            SceneDriver::C => Driver::Controller,
        },
        controller: scene.controller.clone(),
        tau: scene.tau,
        done_odds: scene.done_odds,
        done_rule: scene.done_rule.map(Into::into),
        fork_after: scene.fork_after,
        paused: scene.paused,
        random_z: scene.random_z,
        resync: scene.resync.flatten(),
        instrument: scene.instrument,
        fan_size: scene.futures,
        maximised: scene.maximise,
        dream_with: scene.dream_with,
        flow_steps: scene.flow_steps,
        flow_temperature: scene.flow_temperature,
    }
}

fn navigate(
    mut commands: MessageReader<PlayCommand>,
    keys: Res<ButtonInput<KeyCode>>,
    sim_state: Res<State<SimState>>,
    mut controls: ResMut<HumanControls>,
    tour: Option<ResMut<Tour>>,
) {
    let Some(mut tour) = tour else {
        commands.clear();
        return;
    };
    for command in commands.read() {
        match command {
            PlayCommand::TourNext => tour.step(true),
            PlayCommand::TourPrevious => tour.step(false),
            _ => {}
        }
    }
    // The arrows steer while the sim runs; paused, nothing moves, so they may turn the page.
    if tour.active && *sim_state.get() == SimState::Paused {
        let forward = keys.just_pressed(KeyCode::ArrowRight);
        if forward || keys.just_pressed(KeyCode::ArrowLeft) {
            tour.step(forward);
        }
        // A page turn, not a steer: while the key is down, the next scene's C keeps the wheel.
        if keys.any_pressed([KeyCode::ArrowRight, KeyCode::ArrowLeft]) {
            controls.forget_pending();
        }
    }
}

fn enter_scene(tour: Option<ResMut<Tour>>, mut commands: MessageWriter<PlayCommand>) {
    let Some(mut tour) = tour else { return };
    if !tour.active || tour.entered == Some(tour.current) {
        return;
    }
    tour.entered = Some(tour.current);
    commands.write(PlayCommand::Setup(Box::new(scene_setup(tour.scene()))));
}
