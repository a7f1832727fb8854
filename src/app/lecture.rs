//! For the lecture hall: fullscreen, a UI scale that reads from the back row, the controls overlay
//! and a hideable side panel.

use bevy::prelude::*;
use bevy::window::{MonitorSelection, PrimaryWindow, WindowMode};

use super::AppSystems;
use super::commands::PlayCommand;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Presentation>();
    app.add_systems(
        Update,
        apply_presentation_commands.in_set(AppSystems::ApplyCommands),
    );
}

/// UI scale limits: below this text is unreadable, above it nothing fits.
pub const UI_SCALE_MIN: f32 = 0.5;
pub const UI_SCALE_MAX: f32 = 4.0;

/// How the UI is shown.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct Presentation {
    /// egui zoom: 1.0 is egui's own size (already enlarged by our style).
    pub ui_scale: f32,
    pub help_open: bool,
    pub side_panel_visible: bool,
    pub fullscreen: bool,
    /// The presenter layout: the views (and an open instrument) only, under a one-line HUD.
    pub presenter: bool,
}

impl Default for Presentation {
    fn default() -> Self {
        Self {
            ui_scale: 1.0,
            help_open: false,
            side_panel_visible: true,
            fullscreen: false,
            presenter: false,
        }
    }
}

/// Clamps a UI scale into range; nonsense keeps `current`.
pub fn clamp_ui_scale(requested: f32, current: f32) -> f32 {
    if requested.is_finite() && requested > 0.0 {
        requested.clamp(UI_SCALE_MIN, UI_SCALE_MAX)
    } else {
        current
    }
}

fn apply_presentation_commands(
    mut commands: MessageReader<PlayCommand>,
    mut presentation: ResMut<Presentation>,
    mut windows: Query<&mut Window, With<PrimaryWindow>>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::ToggleHelp => presentation.help_open = !presentation.help_open,
            PlayCommand::ToggleSidePanel => {
                presentation.side_panel_visible = !presentation.side_panel_visible
            }
            PlayCommand::TogglePresenter => presentation.presenter = !presentation.presenter,
            PlayCommand::ScaleUi(factor) => {
                presentation.ui_scale =
                    clamp_ui_scale(presentation.ui_scale * factor, presentation.ui_scale);
            }
            PlayCommand::SetUiScale(scale) => {
                presentation.ui_scale = clamp_ui_scale(*scale, presentation.ui_scale)
            }
            PlayCommand::ToggleFullscreen => {
                presentation.fullscreen = !presentation.fullscreen;
                // Headless (tests) there is no window: the flag alone changes.
                for mut window in &mut windows {
                    window.mode = if presentation.fullscreen {
                        WindowMode::BorderlessFullscreen(MonitorSelection::Current)
                    } else {
                        WindowMode::Windowed
                    };
                }
            }
            _ => {}
        }
    }
}
