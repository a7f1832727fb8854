//! The playground: reality, what V sees and the dream, side by side, drivable by a human or by C.
//!
//! Built from one plugin per file:
//! - [`commands`]: the [`PlayCommand`](commands::PlayCommand) messages every control sends, each
//!   control's keys, label and help ([`Control`](commands::Control)), and [`Mode`](commands::Mode).
//! - [`drive`]: the input logic as plain Rust (ramps, takeover, actions).
//! - [`input`]: keyboard and gamepads, read in `Update`.
//! - [`sim`]: reality and the dream, stepped at the env's rate in `FixedUpdate`, one system per
//!   mode; pause is a state ([`SimState`](sim::SimState)).
//! - [`world_model`]: the single seam to V, M and C ([`DreamRunner`](world_model::DreamRunner));
//!   `burn_runner` implements it on a model bundle.
//! - [`experiment`]: the paper's Table 2 (every C of the bundle in its dream and in reality), run
//!   on a background thread.
//! - [`lecture`]: fullscreen, UI scale, help overlay, side panel, presenter layout, a maximised
//!   view, the blank screen.
//! - [`tour`]: the guided tour, scenes read from a TOML file.
//! - [`recording`]: GIFs of the views, screenshots.
//! - [`views`], [`hud`], [`ui`]: the images and egui panels (windowed only).
//! - [`script`]: scripted input, `--screenshot-after`, `--bench-frames`.
//!
//! [`LogicPlugin`] holds everything that runs without a window (what the tests drive);
//! [`AppPlugin`] adds the window's parts.

mod burn_runner;
pub mod commands;
pub mod drive;
pub mod experiment;
mod hud;
pub mod input;
mod instrument_panels;
pub mod instruments;
pub mod lecture;
pub mod recording;
pub mod script;
pub mod sim;
pub mod tour;
mod ui;
pub mod views;
pub mod world_model;

use std::path::PathBuf;

use bevy::prelude::*;
use bevy::window::{MonitorSelection, PresentMode, WindowMode, WindowResolution};

use crate::envs::EnvKind;
use commands::{Instrument, Mode};

/// The app's system order within a frame, set once here.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppSystems {
    /// Scripted input replaces the keyboard.
    Script,
    /// Keys and pads become held controls and commands.
    ReadInput,
    /// Commands that stand for others become them (a tour's next scene becomes its setup), so
    /// that all of them apply on the same frame.
    ExpandCommands,
    /// Commands change the state.
    ApplyCommands,
    /// Derived data (decoded frames) catches up with the state.
    Update,
    /// Images for the views.
    Present,
}

/// Everything `dreamplay play` can be told.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    pub env: EnvKind,
    /// The real env's first seed.
    pub seed: u64,
    pub models_dir: PathBuf,
    /// `auto`, `wgpu` or `flex`; `None` leaves it to `DREAMPLAY_BACKEND` or the automatic choice.
    pub backend: Option<String>,
    pub fullscreen: bool,
    /// Start in the presenter layout.
    pub presenter: bool,
    pub ui_scale: f32,
    /// Window size in logical pixels.
    pub window_size: (u32, u32),
    /// Run this many frames, print timing statistics, exit.
    pub bench_frames: Option<u32>,
    /// Take a screenshot to `screenshot` after this many frames, then exit.
    pub screenshot_after: Option<u32>,
    pub screenshot: Option<PathBuf>,
    /// Scripted input (see [`script::Script`]).
    pub script: Option<script::Script>,
    /// The mode to start in (default: drive reality).
    pub mode: Mode,
    /// An instrument to open at the start.
    pub instrument: Option<Instrument>,
    /// Lockstep's re-sync interval at the start (`None`: open loop).
    pub resync_every: Option<u32>,
    /// The futures fan's size at the start.
    pub fan_size: usize,
    /// A guided tour to play, opened on its current scene (which then sets the env and the rest).
    pub tour: Option<tour::Tour>,
}

impl PlayOptions {
    pub fn new(env: EnvKind) -> Self {
        Self {
            env,
            seed: 0,
            models_dir: PathBuf::from("models"),
            backend: None,
            fullscreen: false,
            presenter: false,
            ui_scale: 1.0,
            window_size: (1600, 900),
            bench_frames: None,
            screenshot_after: None,
            screenshot: None,
            script: None,
            mode: Mode::default(),
            instrument: None,
            resync_every: None,
            fan_size: instruments::FAN_SIZE_DEFAULT,
            tour: None,
        }
    }
}

/// What runs without a window: commands, input, the sim, the world model, lecture settings and
/// recording. Inserts the session for `options`.
pub struct LogicPlugin {
    pub options: PlayOptions,
}

impl Plugin for LogicPlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            Update,
            (
                AppSystems::Script,
                AppSystems::ReadInput,
                AppSystems::ExpandCommands,
                AppSystems::ApplyCommands,
                AppSystems::Update,
                AppSystems::Present,
            )
                .chain(),
        );
        // Headless tests have no InputPlugin; the window's InputPlugin keeps this one.
        app.init_resource::<ButtonInput<KeyCode>>();
        app.add_plugins((
            commands::plugin,
            world_model::plugin,
            input::plugin,
            sim::plugin,
            instruments::plugin,
            lecture::plugin,
            tour::plugin,
            recording::plugin,
            experiment::plugin,
        ));
        let source = sim::ModelSource {
            models_dir: self.options.models_dir.clone(),
            backend: self.options.backend.clone(),
        };
        // A tour's first scene names the env: load that one, not another first.
        let env = self
            .options
            .tour
            .as_ref()
            .map_or(self.options.env, |tour| tour.scene().env);
        sim::insert_session(app.world_mut(), env, self.options.seed, source);
        if let Some(tour) = &self.options.tour {
            app.insert_resource(tour.clone());
        }
        let mut presentation = app.world_mut().resource_mut::<lecture::Presentation>();
        presentation.ui_scale = lecture::clamp_ui_scale(self.options.ui_scale, 1.0);
        presentation.fullscreen = self.options.fullscreen;
        presentation.presenter = self.options.presenter;
        if self.options.tour.is_some() {
            // A tour is a lecture: the pictures and the caption; Tab brings the controls.
            presentation.side_panel = Some(false);
        }
        let world = app.world_mut();
        world.resource_mut::<sim::Session>().resync_every = self.options.resync_every;
        let mut instruments = world.resource_mut::<instruments::Instruments>();
        instruments.open = self.options.instrument;
        instruments.fan_size = self.options.fan_size;
        if self.options.mode != Mode::default() {
            world
                .resource_mut::<NextState<Mode>>()
                .set(self.options.mode);
        }
    }
}

/// The whole playground: [`LogicPlugin`] plus the views, HUD, panels and scripting.
pub struct AppPlugin {
    pub options: PlayOptions,
}

impl Plugin for AppPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(LogicPlugin {
            options: self.options.clone(),
        });
        app.add_plugins(bevy_egui::EguiPlugin::default());
        app.add_plugins((views::plugin, ui::plugin, script::plugin));
        app.insert_resource(script::RunPlan::from_options(&self.options));
        app.add_systems(Startup, spawn_camera);
    }
}

fn spawn_camera(mut commands: Commands) {
    commands.spawn(Camera2d);
}

/// Opens the playground window and runs until it closes.
pub fn run(options: PlayOptions) -> anyhow::Result<()> {
    check_display()?;
    check_render_adapter()?;
    let (width, height) = options.window_size;
    let window = Window {
        title: format!("dreamplay: World Models you can play ({})", options.env),
        resolution: WindowResolution::new(width.max(320), height.max(240)),
        mode: if options.fullscreen {
            WindowMode::BorderlessFullscreen(MonitorSelection::Current)
        } else {
            WindowMode::Windowed
        },
        present_mode: PresentMode::AutoVsync,
        ..default()
    };
    let exit = App::new()
        .insert_resource(ClearColor(Color::srgb(0.07, 0.07, 0.09)))
        .add_plugins(DefaultPlugins.set(WindowPlugin {
            primary_window: Some(window),
            ..default()
        }))
        .add_plugins(AppPlugin { options })
        .run();
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => anyhow::bail!("the playground exited with code {code}"),
    }
}

/// The window is drawn through wgpu, and bevy panics when no adapter exists ("Unable to find a
/// GPU"). Probe first, over the same backends bevy asks for (`WGPU_BACKEND`, else all), and say
/// what to install instead.
fn check_render_adapter() -> anyhow::Result<()> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let found = std::panic::catch_unwind(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        bevy::tasks::block_on(instance.enumerate_adapters(backends)).len()
    })
    .unwrap_or(0);
    if found == 0 {
        anyhow::bail!(
            "no graphics adapter to draw the window with (wgpu found none for {backends:?}).\n\
             Install a Vulkan driver for your GPU, or Mesa's software one:\n\
             \n    sudo apt-get install mesa-vulkan-drivers\n\n\
             The models, training and the envs need no window: dreamplay --help"
        );
    }
    Ok(())
}

/// A window needs a display: say what to do instead of letting the windowing backend panic.
fn check_display() -> anyhow::Result<()> {
    if cfg!(all(unix, not(target_os = "macos"))) {
        let has = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
        if !has("DISPLAY") && !has("WAYLAND_DISPLAY") {
            anyhow::bail!(
                "no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set).\n\
                 Run dreamplay from a desktop session, or headless under a virtual X server:\n\
                 \n    xvfb-run -a dreamplay play\n\n\
                 (.ci/setup installs xvfb and Mesa's software Vulkan.) The envs also run without a window: dreamplay env --help"
            );
        }
    }
    Ok(())
}
