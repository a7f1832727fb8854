//! For the lecture hall: fullscreen, a UI scale that reads from the back row, the controls overlay,
//! the presenter layout, a maximised view, a blank screen and a hideable side panel and plot.
//!
//! Where the user has not chosen, the side panel and Lockstep's plot follow the window: shown when
//! it has room for them beside views of a good size, folded when it does not (a projector at a large
//! UI scale), so that the views always take most of the window.

use bevy::prelude::*;
use bevy::window::{MonitorSelection, PrimaryWindow, WindowMode};

use super::AppSystems;
use super::commands::PlayCommand;
use super::tour::Tour;

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
    /// The side panel as the user chose it (Tab); `None`: shown when the window has room.
    pub side_panel: Option<bool>,
    /// Lockstep's plot as the user chose it (L); `None`: shown when the window has room.
    pub plot: Option<bool>,
    /// Whether the window has room for the side panel and the plot beside large views. The UI
    /// works this out from the window's size in points every frame; headless, it stays true.
    pub roomy: bool,
    pub fullscreen: bool,
    /// The presenter layout: the views (and an open instrument) only, under a one-line HUD.
    pub presenter: bool,
    /// One view shown alone, as large as the window allows.
    pub maximised: Option<ViewKind>,
    /// The screen is black, as slide software's B does; the sim goes on.
    pub blank: bool,
}

/// The three views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewKind {
    Reality,
    /// What V sees: its 64x64 input and its reconstruction.
    #[value(name = "v")]
    #[serde(rename = "v")]
    VSees,
    Dream,
    /// The flow dream's own view, side by side with the 2018 dream.
    FlowDream,
}

impl ViewKind {
    pub fn title(self) -> &'static str {
        match self {
            ViewKind::Reality => "Reality",
            ViewKind::VSees => "What V sees",
            ViewKind::Dream => "The dream",
            ViewKind::FlowDream => "The flow dream",
        }
    }
}

impl Presentation {
    pub fn side_panel_shown(&self) -> bool {
        self.side_panel.unwrap_or(self.roomy)
    }

    pub fn plot_shown(&self) -> bool {
        self.plot.unwrap_or(self.roomy)
    }

    /// What Escape leaves, innermost first: the help, the blank screen, a maximised view, then
    /// fullscreen (the tour, which sits outside these, is left by its own plugin). Returns whether
    /// Escape had something to leave here.
    pub fn escape(&mut self) -> bool {
        if self.help_open {
            self.help_open = false;
        } else if self.blank {
            self.blank = false;
        } else if self.maximised.is_some() {
            self.maximised = None;
        } else {
            return false;
        }
        true
    }
}

impl Default for Presentation {
    fn default() -> Self {
        Self {
            ui_scale: 1.0,
            help_open: false,
            side_panel: None,
            plot: None,
            roomy: true,
            fullscreen: false,
            presenter: false,
            maximised: None,
            blank: false,
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
    mut tour: Option<ResMut<Tour>>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::ToggleHelp => presentation.help_open = !presentation.help_open,
            PlayCommand::ToggleSidePanel => {
                presentation.side_panel = Some(!presentation.side_panel_shown())
            }
            PlayCommand::TogglePlot => presentation.plot = Some(!presentation.plot_shown()),
            PlayCommand::ToggleMaximised(view) => {
                presentation.maximised = (presentation.maximised != Some(*view)).then_some(*view)
            }
            PlayCommand::ToggleBlank => presentation.blank = !presentation.blank,
            PlayCommand::Setup(setup) => {
                presentation.maximised = setup.maximised;
                presentation.blank = false;
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
                let fullscreen = !presentation.fullscreen;
                set_fullscreen(&mut presentation, &mut windows, fullscreen);
            }
            PlayCommand::Escape => {
                if presentation.escape() {
                    continue;
                }
                if let Some(tour) = tour.as_deref_mut()
                    && tour.active
                {
                    tour.active = false;
                } else if presentation.fullscreen {
                    set_fullscreen(&mut presentation, &mut windows, false);
                }
            }
            _ => {}
        }
    }
}

fn set_fullscreen(
    presentation: &mut Presentation,
    windows: &mut Query<&mut Window, With<PrimaryWindow>>,
    fullscreen: bool,
) {
    presentation.fullscreen = fullscreen;
    // Headless (tests) there is no window: the flag alone changes.
    for mut window in windows.iter_mut() {
        window.mode = if fullscreen {
            WindowMode::BorderlessFullscreen(MonitorSelection::Current)
        } else {
            WindowMode::Windowed
        };
    }
}
