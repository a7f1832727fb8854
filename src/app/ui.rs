//! The egui panels: top bar (modes, env), side panel (tau, driver, dream, lecture tools), the HUD,
//! the latent explorer's sliders, the three views and the help overlay. The `_ui` functions only
//! draw and send [`PlayCommand`]s; the plugins that own the state apply them.
//!
//! egui 0.36 shows panels inside a `Ui`, so one system builds the root `Ui` and lays the panels
//! out in order: top, bottom, sides, then the central views.

use bevy::prelude::*;
use bevy_egui::egui::{self, Color32, RichText, Ui, UiBuilder, vec2};
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, EguiTextureHandle};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::commands::{
    Control, FLOW_STEP_CHOICES, Instrument, Mode, PlayCommand, controls_help, key_for,
};
use super::drive::{
    DONE_ODDS_RANGE, Driver, FLOW_TEMPERATURE_RANGE, TAU_PRESETS, done_rule_name, tau_range,
};
use super::hud::{self, HudData};
use super::instrument_panels::{
    FrameTextures, InstrumentState, instrument_buttons_ui, instrument_panel_ui, missing_atlas_hint,
};
use super::lecture::{Presentation, UI_SCALE_MAX, UI_SCALE_MIN, ViewKind};
use super::recording::{RECORDING_VIEW_SIZES, Recording, RecordingRate, RecordingSettings};
use super::sim::{Divergence, DreamEpisode, Notice, Reality, Session, SimState, Timings};
use super::tour::Tour;
use super::views::{RealitySize, ViewImages, ViewRects, reality_aspect};
use super::world_model::{DreamFamily, FlowStatus, ModelStatus, WorldModelRuntime};
use crate::envs::EnvKind;
use crate::model::mdrnn::DoneRule;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(EguiPrimaryContextPass, playground_ui);
}

/// The default latent slider range where the model ships no statistics.
pub const DEFAULT_LATENT_RANGE: (f32, f32) = (-3.0, 3.0);
/// Heading size of the view titles, in points (before the UI scale); smaller in a small window.
const VIEW_TITLE_SIZE: f32 = 30.0;
const VIEW_TITLE_SIZE_SMALL: f32 = 22.0;
/// The captions under the view titles, in points.
const VIEW_CAPTION_SIZE: f32 = 16.0;
/// The label between V's input and its reconstruction.
const V_LABEL_SIZE: f32 = 14.0;
/// Space between the views, in points.
const VIEW_GAP: f32 = 16.0;
/// Height kept for the lockstep plot, in points.
const PLOT_HEIGHT: f32 = 190.0;
/// The share of the central area an open instrument takes, below the views.
const INSTRUMENT_SHARE: f32 = 0.5;
/// A window at least this large, in points, has room for the side panel and the plot beside
/// large views, and for the top bar's full form. Smaller (a projector at UI scale 2 or more), they
/// fold away and the views keep the window.
const ROOMY_SIZE: egui::Vec2 = vec2(1150.0, 640.0);
/// About what a tour's caption takes with room for it (title, three lines, the keys).
const TOUR_CAPTION_HEIGHT: f32 = 150.0;
/// The side panel's width, in points, and the most of the window's width it may take.
const SIDE_PANEL_WIDTH: f32 = 300.0;
const SIDE_PANEL_SHARE: f32 = 0.36;
/// The latent sliders' panel, likewise.
const LATENT_PANEL_WIDTH: f32 = 320.0;
const LATENT_PANEL_SHARE: f32 = 0.3;

/// The texture ids of the view images, for this frame.
struct ViewTextures {
    reality: egui::TextureId,
    v_input: egui::TextureId,
    v_reconstruction: egui::TextureId,
    dream: egui::TextureId,
    flow_dream: egui::TextureId,
}

/// The state the panels read (all read-only: changes go through commands).
#[derive(bevy::ecs::system::SystemParam)]
struct UiState<'w> {
    session: Res<'w, Session>,
    mode: Res<'w, State<Mode>>,
    sim_state: Res<'w, State<SimState>>,
    reality: Res<'w, Reality>,
    dream: Res<'w, DreamEpisode>,
    runtime: Res<'w, WorldModelRuntime>,
    divergence: Res<'w, Divergence>,
    timings: Res<'w, Timings>,
    notice: Res<'w, Notice>,
    presentation: ResMut<'w, Presentation>,
    recording: Res<'w, Recording>,
    recording_settings: Res<'w, RecordingSettings>,
    instruments: InstrumentState<'w>,
    tour: Option<Res<'w, Tour>>,
}

impl UiState<'_> {
    fn paused(&self) -> bool {
        *self.sim_state.get() == SimState::Paused
    }

    /// The tour, while it is being played.
    fn active_tour(&self) -> Option<&Tour> {
        self.tour.as_deref().filter(|tour| tour.active)
    }
}

#[allow(clippy::too_many_arguments)]
fn playground_ui(
    mut contexts: EguiContexts,
    views: Option<Res<ViewImages>>,
    mut state: UiState,
    mut reality_size: ResMut<RealitySize>,
    mut view_rects: ResMut<ViewRects>,
    mut commands: MessageWriter<PlayCommand>,
    mut styled: Local<bool>,
    mut frame_textures: Local<FrameTextures>,
    mut images: ResMut<Assets<Image>>,
) -> Result {
    let Some(views) = views else { return Ok(()) };
    let textures = ViewTextures {
        reality: contexts.add_image(EguiTextureHandle::Weak(views.reality.id())),
        v_input: contexts.add_image(EguiTextureHandle::Weak(views.v_input.id())),
        v_reconstruction: contexts.add_image(EguiTextureHandle::Weak(views.v_reconstruction.id())),
        dream: contexts.add_image(EguiTextureHandle::Weak(views.dream.id())),
        flow_dream: contexts.add_image(EguiTextureHandle::Weak(views.flow_dream.id())),
    };
    frame_textures.prepare(&state.instruments, &mut images, &mut contexts);
    let ctx = contexts.ctx_mut()?;
    if !*styled {
        *styled = true;
        apply_style(ctx);
    }
    if (ctx.zoom_factor() - state.presentation.ui_scale).abs() > 1e-3 {
        ctx.set_zoom_factor(state.presentation.ui_scale);
    }
    let pixels_per_point = ctx.pixels_per_point();
    let screen = ctx.viewport_rect();
    // A tour's caption takes its own lines from the height.
    let caption = if state.active_tour().is_some() {
        TOUR_CAPTION_HEIGHT
    } else {
        0.0
    };
    let roomy = screen.width() >= ROOMY_SIZE.x && screen.height() >= ROOMY_SIZE.y + caption;
    if state.presentation.roomy != roomy {
        state.presentation.roomy = roomy;
    }
    let state = &state;
    if state.presentation.blank {
        // As slide software blanks: black over everything; B, period or Escape brings it back.
        ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, "blank".into()))
            .rect_filled(screen, 0.0, Color32::BLACK);
        return Ok(());
    }
    let mut sent = Vec::new();
    let mut panels = Vec::new();
    let mut root = Ui::new(
        ctx.clone(),
        "playground".into(),
        UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(screen),
    );

    let presenter = state.presentation.presenter;
    let hud_data = HudData {
        session: &state.session,
        mode: *state.mode.get(),
        paused: state.paused(),
        reality: &state.reality,
        dream: &state.dream,
        timings: &state.timings,
        drift: state.divergence.points.back().map(|(_, pixel, _)| *pixel),
        flow_drift: state
            .divergence
            .flow_points
            .back()
            .map(|(_, pixel, _)| *pixel),
    };
    if presenter {
        let shown = egui::Panel::bottom("hud").show(&mut root, |ui| {
            ui.add_space(4.0);
            hud::hud_line_ui(ui, &hud_data);
            ui.add_space(4.0);
        });
        panels.push(("hud", shown.response.rect));
    } else {
        // A small window keeps its bars thin: every point goes to the views.
        let (margin, padding) = if roomy { (8, 4.0) } else { (4, 1.0) };
        let bar_frame =
            |panel_frame: egui::Frame| panel_frame.inner_margin(egui::Margin::symmetric(8, margin));
        let style = root.ctx().global_style();
        let shown = egui::Panel::top("top_bar")
            .frame(bar_frame(egui::Frame::side_top_panel(&style)))
            .show(&mut root, |ui| top_bar_ui(ui, state, roomy, &mut sent));
        panels.push(("top_bar", shown.response.rect));
        let shown = egui::Panel::bottom("hud")
            .frame(bar_frame(egui::Frame::side_top_panel(&style)))
            .show(&mut root, |ui| {
                ui.add_space(padding);
                hud::hud_ui(ui, &hud_data, roomy);
                ui.add_space(padding);
            });
        panels.push(("hud", shown.response.rect));
    }
    if let Some(tour) = state.active_tour() {
        let frame = egui::Frame::side_top_panel(&root.ctx().global_style())
            .fill(Color32::from_rgb(16, 22, 34));
        let shown = egui::Panel::bottom("tour")
            .frame(frame)
            .show(&mut root, |ui| tour_caption_ui(ui, tour, roomy));
        panels.push(("tour", shown.response.rect));
    }
    if state.presentation.side_panel_shown() && !presenter {
        let shown = egui::Panel::left("controls")
            .resizable(false)
            .exact_size(SIDE_PANEL_WIDTH.min(screen.width() * SIDE_PANEL_SHARE))
            .show(&mut root, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| side_panel_ui(ui, state, &mut sent));
            });
        panels.push(("side_panel", shown.response.rect));
    }
    // The sliders edit the running dream too: M carries the change forward.
    let mode = *state.mode.get();
    if matches!(mode, Mode::LatentExplorer | Mode::DriveDream)
        && state.session.family_in(mode) == DreamFamily::MdnRnn
        && !presenter
    {
        let shown = egui::Panel::right("latent")
            .resizable(false)
            .exact_size(LATENT_PANEL_WIDTH.min(screen.width() * LATENT_PANEL_SHARE))
            .show(&mut root, |ui| {
                latent_panel_ui(ui, state, &mut sent);
            });
        panels.push(("latent_sliders", shown.response.rect));
    }
    egui::CentralPanel::default().show(&mut root, |ui| {
        let (size, rects) = views_ui(ui, state, roomy, &textures, &frame_textures, &mut sent);
        let physical = |rect: egui::Rect| {
            let at = |v: f32| (v * pixels_per_point).round().max(0.0) as u32;
            [
                at(rect.left()),
                at(rect.top()),
                at(rect.width()),
                at(rect.height()),
            ]
        };
        let rects = ViewRects {
            reality: rects[0].map(physical),
            v_input: rects[1].map(physical),
            v_reconstruction: rects[2].map(physical),
            dream: rects[3].map(physical),
            flow_dream: rects[5].map(physical),
            instrument: rects[4].map(physical),
            panels: panels
                .iter()
                .map(|(name, rect)| (name.to_string(), physical(*rect)))
                .collect(),
        };
        if *view_rects != rects {
            *view_rects = rects;
        }
        let physical = (
            (size.x * pixels_per_point).round() as u32,
            (size.y * pixels_per_point).round() as u32,
        );
        if reality_size.requested != physical {
            reality_size.requested = physical;
        }
    });
    if state.presentation.help_open {
        help_overlay_ui(ctx, &mut sent);
    }
    for command in sent {
        commands.write(command);
    }
    Ok(())
}

/// Big, high-contrast text: the app is shown on projectors.
fn apply_style(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        use egui::{FontFamily, FontId, TextStyle};
        style.text_styles = [
            (
                TextStyle::Heading,
                FontId::new(28.0, FontFamily::Proportional),
            ),
            (TextStyle::Body, FontId::new(18.0, FontFamily::Proportional)),
            (
                TextStyle::Button,
                FontId::new(18.0, FontFamily::Proportional),
            ),
            (
                TextStyle::Monospace,
                FontId::new(17.0, FontFamily::Monospace),
            ),
            (
                TextStyle::Small,
                FontId::new(14.0, FontFamily::Proportional),
            ),
        ]
        .into();
        style.spacing.item_spacing = vec2(10.0, 8.0);
        style.spacing.button_padding = vec2(10.0, 5.0);
        style.spacing.slider_width = 180.0;
    });
}

/// One line, always: in a small window the envs and modes become two drop-downs, the notice is cut
/// to what fits, and the side panel gets a button.
fn top_bar_ui(ui: &mut Ui, state: &UiState, roomy: bool, sent: &mut Vec<PlayCommand>) {
    if roomy {
        ui.add_space(4.0);
    }
    ui.horizontal(|ui| {
        // The row's full height from the start, so that every item centres on the same line.
        ui.set_min_height(ui.spacing().interact_size.y + 12.0);
        let mode = *state.mode.get();
        if roomy {
            ui.label(RichText::new("dreamplay").size(26.0).strong());
            for env in EnvKind::ALL {
                let label = RichText::new(env_title(env)).size(20.0);
                if ui
                    .selectable_label(state.session.env == env, label)
                    .on_hover_text(format!("{} switches env", Control::SwitchEnv.key_hint()))
                    .clicked()
                {
                    sent.push(PlayCommand::SwitchEnv(Some(env)));
                }
            }
            ui.separator();
            for each in Mode::ALL {
                let label = RichText::new(each.label()).size(20.0);
                let response = ui
                    .selectable_label(mode == each, label)
                    .on_hover_text(each.key_label());
                if response.clicked() {
                    sent.push(PlayCommand::SetMode(each));
                }
            }
        } else {
            egui::ComboBox::from_id_salt("env")
                .selected_text(RichText::new(env_title(state.session.env)).size(18.0))
                .show_ui(ui, |ui| {
                    for env in EnvKind::ALL {
                        if ui
                            .selectable_label(state.session.env == env, env_title(env))
                            .clicked()
                        {
                            sent.push(PlayCommand::SwitchEnv(Some(env)));
                        }
                    }
                });
            egui::ComboBox::from_id_salt("mode")
                .selected_text(RichText::new(mode.label()).size(18.0))
                .show_ui(ui, |ui| {
                    for each in Mode::ALL {
                        if ui
                            .selectable_label(
                                mode == each,
                                format!("{} ({})", each.label(), each.key_label()),
                            )
                            .clicked()
                        {
                            sent.push(PlayCommand::SetMode(each));
                        }
                    }
                });
            let shown = state.presentation.side_panel_shown();
            if ui
                .selectable_label(
                    shown,
                    format!("Controls ({})", Control::SidePanel.key_hint()),
                )
                .clicked()
            {
                sent.push(PlayCommand::ToggleSidePanel);
            }
        }
        ui.separator();
        ui.label(RichText::new(format!("{} help", Control::Help.key_hint())).weak());
        if let Some((path, frames)) = state.recording.status() {
            ui.add(
                egui::Label::new(
                    RichText::new(format!("REC {} ({frames})", file_name(&path)))
                        .color(Color32::RED)
                        .strong(),
                )
                .truncate(),
            );
        }
        if state.notice.seconds_left > 0.0 {
            ui.add(
                egui::Label::new(
                    RichText::new(&state.notice.text).color(Color32::from_rgb(250, 220, 120)),
                )
                .truncate(),
            );
        }
    });
    if roomy {
        ui.add_space(2.0);
    }
}

/// The scene's number and title, its caption in large type, and the keys that move on.
fn tour_caption_ui(ui: &mut Ui, tour: &Tour, roomy: bool) {
    let scene = tour.scene();
    let (title_size, caption_size) = if roomy { (28.0, 22.0) } else { (20.0, 16.0) };
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("{} / {}", tour.current + 1, tour.len()))
                .size(title_size)
                .color(Color32::from_rgb(120, 170, 250)),
        );
        ui.add(
            egui::Label::new(
                RichText::new(&scene.title)
                    .size(title_size)
                    .strong()
                    .color(Color32::WHITE),
            )
            .truncate(),
        );
    });
    for line in scene.caption.lines() {
        ui.add(
            egui::Label::new(
                RichText::new(line)
                    .size(caption_size)
                    .color(Color32::from_gray(235)),
            )
            .truncate(),
        );
    }
    if !roomy {
        // A small window keeps the caption's lines for the caption.
        return;
    }
    ui.add(
        egui::Label::new(
            RichText::new("PageDown next, PageUp back, Escape leaves the tour")
                .size(caption_size * 0.75)
                .weak(),
        )
        .truncate(),
    );
    ui.add_space(2.0);
}

fn env_title(env: EnvKind) -> &'static str {
    match env {
        EnvKind::CarRacing => "CarRacing",
        EnvKind::TakeCover => "Take Cover",
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn side_panel_ui(ui: &mut Ui, state: &UiState, sent: &mut Vec<PlayCommand>) {
    let session = &state.session;
    // Narrow sliders, so their labels fit the panel.
    ui.spacing_mut().slider_width = 120.0;
    dream_with_ui(ui, state, sent);
    ui.separator();
    ui.heading("Temperature");
    let (low, high) = tau_range(session.env);
    let mut tau = session.tau;
    if add_slider(
        ui,
        egui::Slider::new(&mut tau, low..=high)
            .text("tau")
            .fixed_decimals(2),
    )
    .changed()
    {
        sent.push(PlayCommand::SetTau(tau));
    }
    ui.horizontal_wrapped(|ui| {
        for (index, preset) in TAU_PRESETS.iter().enumerate() {
            let selected = (session.tau - preset).abs() < 1e-4;
            if ui
                .selectable_label(selected, format!("{preset}"))
                .on_hover_text(
                    key_for(&PlayCommand::TauPreset(index))
                        .map(|key| format!("key {key}"))
                        .unwrap_or_default(),
                )
                .clicked()
            {
                sent.push(PlayCommand::TauPreset(index));
            }
        }
    });
    let mut odds = session.done_odds;
    if add_slider(
        ui,
        egui::Slider::new(&mut odds, DONE_ODDS_RANGE.0..=DONE_ODDS_RANGE.1)
            .logarithmic(true)
            .text("done odds")
            .max_decimals(2),
    )
    .on_hover_text("how often M's done head ends the dream: x1 as M predicts, lower is kinder")
    .changed()
    {
        sent.push(PlayCommand::SetDoneOdds(odds));
    }
    ui.horizontal(|ui| {
        ui.label("done");
        for (rule, hover) in [
            (
                DoneRule::Sample,
                "drawn each step with the probability M's done head gives (how C was evolved)",
            ),
            (
                DoneRule::Threshold,
                "the paper's rule: done when M's done logit is above 0",
            ),
        ] {
            if ui
                .selectable_label(session.done_rule == rule, done_rule_name(rule))
                .on_hover_text(hover)
                .clicked()
            {
                sent.push(PlayCommand::SetDoneRule(rule));
            }
        }
    });
    // The details go in the hover text: the side panel is too narrow for them at UI scale 1.
    let (label, hover) = match session.evolved_dream {
        Some(dream) => (
            "As C was evolved",
            format!(
                "tau {:.2}, done odds x{}, done {}, forked after {} real steps",
                dream.tau,
                dream.done_odds,
                done_rule_name(dream.done_rule),
                dream.context_steps
            ),
        ),
        None => (
            "Defaults",
            "the env's tau, M's own done odds, done drawn".to_string(),
        ),
    };
    if ui.button(label).on_hover_text(hover).clicked() {
        sent.push(PlayCommand::DreamAsTrained);
    }
    ui.separator();

    ui.heading("Who drives");
    let controller = state.runtime.controller_available();
    ui.horizontal(|ui| {
        if ui
            .selectable_label(session.driver == Driver::Human, "Human")
            .on_hover_text("any key or stick takes the wheel")
            .clicked()
        {
            sent.push(PlayCommand::TakeWheel);
        }
        let c_button = ui.add_enabled(
            controller,
            egui::Button::selectable(session.driver == Driver::Controller, "C"),
        );
        let c_button = if controller {
            c_button.on_hover_text(format!(
                "key {}: hand the wheel to the controller",
                Control::HandToController.key_hint()
            ))
        } else {
            c_button.on_disabled_hover_text("no controller (C) in the loaded model")
        };
        if c_button.clicked() {
            sent.push(PlayCommand::HandToController);
        }
    });
    controller_picker_ui(ui, state, sent);
    ui.separator();

    ui.heading("Dream");
    control_button_ui(ui, Control::DreamFromReality, None, sent);
    control_button_ui(ui, Control::DreamFromRandom, None, sent);
    ui.separator();

    instrument_buttons_ui(
        ui,
        &state.instruments.instruments,
        session.resync_every,
        sent,
    );
    ui.separator();

    ui.heading("Sim");
    ui.horizontal_wrapped(|ui| {
        let resume = state.paused().then_some("Resume");
        control_button_ui(ui, Control::Pause, resume, sent);
        control_button_ui(ui, Control::StepOnce, None, sent);
        control_button_ui(ui, Control::ResetEpisode, None, sent);
    });
    ui.separator();

    ui.heading("Show");
    ui.horizontal_wrapped(|ui| {
        let stop = state.recording.is_recording().then_some("Stop GIF");
        control_button_ui(ui, Control::Record, stop, sent);
        control_button_ui(ui, Control::Screenshot, None, sent);
        control_button_ui(ui, Control::Fullscreen, None, sent);
        control_button_ui(ui, Control::Presenter, None, sent);
        control_button_ui(ui, Control::Blank, None, sent);
        if matches!(*state.mode.get(), Mode::Lockstep | Mode::SideBySide) {
            let text = if state.presentation.plot_shown() {
                "Fold plot"
            } else {
                "Show plot"
            };
            control_button_ui(ui, Control::Plot, Some(text), sent);
        }
    });
    recording_settings_ui(ui, state, sent);
    let mut scale = state.presentation.ui_scale;
    if add_slider(
        ui,
        egui::Slider::new(&mut scale, UI_SCALE_MIN..=UI_SCALE_MAX)
            .text(Control::UiScale.button_text())
            .fixed_decimals(1),
    )
    .changed()
    {
        sent.push(PlayCommand::SetUiScale(scale));
    }
    ui.separator();

    ui.heading("World model");
    model_status_ui(ui, &state.runtime.status);
}

/// Which world model dreams, and the flow dream's knobs: disabled, with the commands that train a
/// flow model, when the bundle has none.
fn dream_with_ui(ui: &mut Ui, state: &UiState, sent: &mut Vec<PlayCommand>) {
    let session = &state.session;
    ui.heading("Dream with");
    let flow_status = state.runtime.runner.as_deref().map_or_else(
        || FlowStatus::Unavailable {
            reason: "the flow dream needs the bundle's V and M too".to_string(),
        },
        |runner| runner.flow_status(),
    );
    let ready = flow_status.is_ready();
    let key = Control::DreamWith.key_hint();
    ui.horizontal(|ui| {
        for family in [DreamFamily::MdnRnn, DreamFamily::Flow] {
            let enabled = family == DreamFamily::MdnRnn || ready;
            let response = ui.add_enabled(
                enabled,
                egui::Button::selectable(session.family == family, family.label()),
            );
            let response = if enabled {
                response.on_hover_text(format!("key {key} switches the dream's world model"))
            } else {
                response.on_disabled_hover_text(flow_status.explanation())
            };
            if response.clicked() {
                sent.push(PlayCommand::DreamWith(Some(family)));
            }
        }
    });
    ui.add_enabled_ui(ready, |ui| {
        ui.horizontal(|ui| {
            ui.label("steps");
            for steps in FLOW_STEP_CHOICES {
                if ui
                    .selectable_label(session.flow.steps == steps, steps.to_string())
                    .on_hover_text(format!(
                        "Euler steps from noise to each flow frame ({} fewer, {} more)",
                        shown_key(&PlayCommand::CycleFlowSteps(-1)),
                        shown_key(&PlayCommand::CycleFlowSteps(1))
                    ))
                    .clicked()
                {
                    sent.push(PlayCommand::SetFlowSteps(steps));
                }
            }
        });
        let mut temperature = session.flow.temperature;
        let (low, high) = FLOW_TEMPERATURE_RANGE;
        if add_slider(
            ui,
            egui::Slider::new(&mut temperature, low..=high)
                .text("flow temp")
                .fixed_decimals(2),
        )
        .on_hover_text("the starting noise's scale: the flow dream's analogue of tau")
        .changed()
        {
            sent.push(PlayCommand::SetFlowTemperature(temperature));
        }
    });
    if !ready {
        ui.add(
            egui::Label::new(
                RichText::new(flow_status.explanation())
                    .small()
                    .color(Color32::from_rgb(250, 200, 90)),
            )
            .wrap(),
        );
    }
}

fn shown_key(command: &PlayCommand) -> String {
    key_for(command).unwrap_or_default()
}

/// The next GIF's frame rate and size: half the sim's rate at 192 pixels keeps 30 s of the three
/// views under 10 MB, small enough for a slide.
fn recording_settings_ui(ui: &mut Ui, state: &UiState, sent: &mut Vec<PlayCommand>) {
    let settings = *state.recording_settings;
    ui.horizontal(|ui| {
        ui.label("GIF");
        egui::ComboBox::from_id_salt("recording_rate")
            .selected_text(settings.rate.label())
            .show_ui(ui, |ui| {
                for rate in RecordingRate::ALL {
                    if ui
                        .selectable_label(settings.rate == rate, rate.label())
                        .clicked()
                    {
                        sent.push(PlayCommand::SetRecordingRate(rate));
                    }
                }
            });
        egui::ComboBox::from_id_salt("recording_size")
            .selected_text(format!("{} px", settings.view_size))
            .show_ui(ui, |ui| {
                for size in RECORDING_VIEW_SIZES {
                    if ui
                        .selectable_label(settings.view_size == size, format!("{size} px"))
                        .clicked()
                    {
                        sent.push(PlayCommand::SetRecordingSize(size));
                    }
                }
            });
    })
    .response
    .on_hover_text("the next recording's frame rate and the side of each view");
}

/// Which of the bundle's Cs drives, when it has several: each was evolved in its own dream, and
/// choosing one dreams as it was evolved (the paper's Table 2, one C at a time).
fn controller_picker_ui(ui: &mut Ui, state: &UiState, sent: &mut Vec<PlayCommand>) {
    let Some(runner) = state.runtime.runner.as_deref() else {
        return;
    };
    let choices = runner.controllers();
    if choices.len() < 2 {
        return;
    }
    let selected = runner.selected_controller();
    let name = |index: usize| {
        choices
            .get(index)
            .map_or("C", |c| c.name.as_str())
            .to_string()
    };
    egui::ComboBox::from_id_salt("controller")
        .width(ui.available_width())
        .truncate()
        .selected_text(name(selected))
        .show_ui(ui, |ui| {
            for (index, choice) in choices.iter().enumerate() {
                let hover = choice.dream.as_ref().map_or_else(
                    || "no dream recorded".to_string(),
                    crate::train::table::describe_dream,
                );
                if ui
                    .selectable_label(index == selected, &choice.name)
                    .on_hover_text(format!("evolved in: {hover}; choosing it dreams so"))
                    .clicked()
                {
                    sent.push(PlayCommand::SelectController(index));
                }
            }
        });
}

/// A button for `control`, its label (or `text`) with the key hint; a click sends its command.
fn control_button_ui(
    ui: &mut Ui,
    control: Control,
    text: Option<&str>,
    sent: &mut Vec<PlayCommand>,
) {
    let text = text.map_or_else(
        || control.button_text(),
        |text| control.button_text_as(text),
    );
    if ui.button(text).clicked()
        && let Some(command) = control.command()
    {
        sent.push(command);
    }
}

fn model_status_ui(ui: &mut Ui, status: &ModelStatus) {
    match status {
        ModelStatus::Ready {
            backend,
            controller,
        } => {
            ui.label(format!("V + M on {backend}"));
            ui.label(if *controller {
                "C: controller loaded"
            } else {
                "C: none (you drive)"
            });
        }
        other => {
            ui.label(RichText::new(other.headline()).color(Color32::from_rgb(250, 200, 90)));
            ui.label(RichText::new(other.explanation()).small().monospace());
        }
    }
}

fn latent_panel_ui(ui: &mut Ui, state: &UiState, sent: &mut Vec<PlayCommand>) {
    ui.heading("Latent z");
    let Some(runner) = state.runtime.runner.as_deref() else {
        ui.label("The latent explorer needs V and M.");
        ui.label(
            RichText::new(state.runtime.status.explanation())
                .small()
                .monospace(),
        );
        return;
    };
    ui.horizontal_wrapped(|ui| {
        control_button_ui(ui, Control::DreamFromRandom, Some("Randomize z"), sent);
        control_button_ui(ui, Control::DreamFromReality, Some("From real frame"), sent);
        control_button_ui(ui, Control::StepOnce, Some("Step dream"), sent);
    });
    let z = runner.z();
    let stats = runner
        .latent_stats()
        .filter(|stats| stats.dims.len() == z.len());
    if stats.is_some() {
        ui.label(
            RichText::new("ranges: the data's 1st..99th percentile; | marks the mean").small(),
        );
    } else {
        ui.label(
            RichText::new(format!(
                "ranges: -3..3, this model ships no latent statistics. {}",
                missing_atlas_hint(state.session.env)
            ))
            .small()
            .color(Color32::from_rgb(250, 200, 90)),
        );
    }
    let shown_dim = state.instruments.mixture.dim;
    egui::ScrollArea::vertical().show(ui, |ui| {
        // The z label and the value box beside each slider take about 110 points of the panel.
        ui.spacing_mut().slider_width = (ui.available_width() - 110.0).clamp(60.0, 190.0);
        for (dim, value) in z.iter().enumerate() {
            let dim_stats = stats.and_then(|s| s.dims.get(dim));
            let (low, high) = dim_stats.map_or(DEFAULT_LATENT_RANGE, |d| (d.p1, d.p99));
            let mut edited = *value;
            let range = low.min(*value)..=high.max(*value);
            ui.horizontal(|ui| {
                // A click on the name shows this dimension inside M.
                let open = state.instruments.instruments.is_open(Instrument::Mixture);
                if ui
                    .selectable_label(
                        open && shown_dim == dim,
                        RichText::new(format!("z{dim}")).monospace(),
                    )
                    .on_hover_text("show M's prediction for this dimension (Inside M)")
                    .clicked()
                {
                    sent.push(PlayCommand::SetMixtureDim(dim));
                    if !open {
                        sent.push(PlayCommand::ToggleInstrument(Instrument::Mixture));
                    }
                }
                let (shown_low, shown_high) = (*range.start(), *range.end());
                let slider = egui::Slider::new(&mut edited, range).fixed_decimals(2);
                let response = add_slider(ui, slider);
                if let Some(d) = dim_stats {
                    mark_on_slider(
                        ui,
                        &response,
                        (d.mean - shown_low) / (shown_high - shown_low),
                    );
                }
                if response.changed() {
                    sent.push(PlayCommand::SetLatentDim { dim, value: edited });
                }
            });
        }
    });
}

/// A tick on a slider's rail at `fraction` of its range (the data's mean on a latent slider).
fn mark_on_slider(ui: &Ui, response: &egui::Response, fraction: f32) {
    if !fraction.is_finite() {
        return;
    }
    // The rail spans the slider width less the handle's radius at each end, as egui draws it.
    let rect = response.rect;
    let radius = rect.height() / 2.5;
    let width = ui.spacing().slider_width;
    let x = rect.left() + radius + fraction.clamp(0.0, 1.0) * (width - 2.0 * radius);
    ui.painter().line_segment(
        [
            egui::pos2(x, rect.top() + 1.0),
            egui::pos2(x, rect.bottom() - 1.0),
        ],
        egui::Stroke::new(2.0, Color32::from_rgb(250, 200, 90)),
    );
}

/// The three labelled views side by side (or one, maximised), and below them the open instrument
/// (beside Lockstep's plot, unless it is folded). Returns the reality image's size in points and
/// where things went: reality, V's input, V's reconstruction, the dream, the instrument.
fn views_ui(
    ui: &mut Ui,
    state: &UiState,
    roomy: bool,
    textures: &ViewTextures,
    frame_textures: &FrameTextures,
    sent: &mut Vec<PlayCommand>,
) -> (egui::Vec2, [Option<egui::Rect>; 6]) {
    let mut rects = [None; 6];
    let mode = *state.mode.get();
    let side_by_side = mode == Mode::SideBySide;
    let plot = matches!(mode, Mode::Lockstep | Mode::SideBySide) && state.presentation.plot_shown();
    let available = ui.available_size();
    let instrument_open = state.instruments.instruments.open.is_some();
    // An open instrument takes the lower half; Lockstep's plot then sits beside it.
    let below = if instrument_open {
        (available.y * INSTRUMENT_SHARE).max(PLOT_HEIGHT.min(available.y / 3.0))
    } else if plot {
        // The plot never takes more than a third of a small window from the views.
        PLOT_HEIGHT.min(available.y / 3.0)
    } else {
        0.0
    };
    let header = ViewHeader::for_window(ui, roomy);
    let space = vec2(available.x, (available.y - below - header.height).max(40.0));
    let aspect = reality_aspect(state.session.env);
    let maximised = state.presentation.maximised;
    let geometry = match maximised {
        Some(view) => ViewGeometry::maximised(view, space, aspect),
        None if side_by_side => ViewGeometry::two_dreams(space, aspect),
        None => ViewGeometry::side_by_side(space, aspect),
    };
    let status = &state.runtime.status;
    let has_model = state.runtime.runner.is_some();
    let shown = |view: ViewKind| maximised.is_none_or(|only| only == view);
    // A click on a view shows it alone; a click on the view alone shows all three again.
    let mut clicked = |response: &egui::Response, view: ViewKind| {
        if response.clicked() {
            sent.push(PlayCommand::ToggleMaximised(view));
        }
    };
    let clickable = |image: egui::Image<'static>| image.sense(egui::Sense::click());

    ui.horizontal_top(|ui| {
        ui.spacing_mut().item_spacing.x = VIEW_GAP;
        ui.add_space(geometry.margin);
        if shown(ViewKind::Reality) {
            column_ui(
                ui,
                &header,
                geometry.reality.x,
                ViewKind::Reality.title(),
                "the real env, at screen resolution",
                |ui| {
                    let response = ui.add(clickable(egui::Image::from_texture((
                        textures.reality,
                        geometry.reality,
                    ))));
                    clicked(&response, ViewKind::Reality);
                    rects[0] = Some(response.rect);
                },
            );
        }
        if shown(ViewKind::VSees) && !side_by_side {
            let side = vec2(geometry.v_side, geometry.v_side);
            let width = if maximised.is_some() {
                2.0 * geometry.v_side + VIEW_GAP
            } else {
                geometry.v_side
            };
            column_ui(
                ui,
                &header,
                width,
                ViewKind::VSees.title(),
                "the 64x64 input, then V's reconstruction",
                |ui| {
                    let mut add_pair = |ui: &mut Ui| {
                        let response = ui.add(clickable(egui::Image::from_texture((
                            textures.v_input,
                            side,
                        ))));
                        clicked(&response, ViewKind::VSees);
                        rects[1] = Some(response.rect);
                        if maximised.is_none() {
                            let size = fitting_size(
                                ui,
                                "V's reconstruction",
                                V_LABEL_SIZE,
                                geometry.v_side,
                            );
                            ui.add(
                                egui::Label::new(RichText::new("V's reconstruction").size(size))
                                    .truncate(),
                            );
                        }
                        let response = ui.add(clickable(egui::Image::from_texture((
                            textures.v_reconstruction,
                            side,
                        ))));
                        clicked(&response, ViewKind::VSees);
                        rects[2] = Some(response.rect);
                        if !has_model {
                            overlay_message_ui(
                                ui,
                                response.rect,
                                &status.headline(),
                                "V reconstructs the input once a model is trained.",
                            );
                        }
                    };
                    if maximised.is_some() {
                        // Alone, the input and its reconstruction sit side by side.
                        ui.horizontal_top(|ui| {
                            ui.spacing_mut().item_spacing.x = VIEW_GAP;
                            add_pair(ui)
                        });
                    } else {
                        add_pair(ui);
                    }
                },
            );
        }
        let family = state.session.family_in(mode);
        if shown(ViewKind::Dream) {
            let caption = match (mode, family) {
                (Mode::DriveReality, DreamFamily::MdnRnn) => {
                    "M's one-step prediction, decoded by V"
                }
                (Mode::DriveReality, DreamFamily::Flow) => {
                    "the flow model's one-step prediction from the last frames"
                }
                (Mode::DriveDream, DreamFamily::MdnRnn) => "inside M: only the dream steps",
                (Mode::DriveDream, DreamFamily::Flow) => {
                    "inside the flow model: only the dream steps"
                }
                (Mode::Lockstep, DreamFamily::MdnRnn) => {
                    "a dream forked from reality, same actions"
                }
                (Mode::Lockstep, DreamFamily::Flow) => {
                    "a flow dream forked from reality, same actions"
                }
                (Mode::LatentExplorer, _) => "z from the sliders, decoded by V",
                (Mode::SideBySide, _) => "V and M, forked from reality, same actions",
            };
            let title = match (mode, family) {
                (Mode::SideBySide, _) => "The 2018 dream",
                (_, DreamFamily::Flow) => ViewKind::FlowDream.title(),
                (_, DreamFamily::MdnRnn) => ViewKind::Dream.title(),
            };
            let forked = match family {
                DreamFamily::MdnRnn => state.dream.forked,
                DreamFamily::Flow => state.dream.flow_forked,
            };
            let side = vec2(geometry.dream, geometry.dream);
            column_ui(ui, &header, geometry.dream, title, caption, |ui| {
                let response = ui.add(clickable(egui::Image::from_texture((textures.dream, side))));
                clicked(&response, ViewKind::Dream);
                rects[3] = Some(response.rect);
                if !has_model {
                    overlay_message_ui(
                        ui,
                        response.rect,
                        &status.headline(),
                        &status.explanation(),
                    );
                } else if !forked {
                    overlay_message_ui(
                        ui,
                        response.rect,
                        "No dream yet",
                        &format!(
                            "Press {} to dream from the real frame, {} from a random z.",
                            Control::DreamFromReality.key_hint(),
                            Control::DreamFromRandom.key_hint()
                        ),
                    );
                }
            });
        }
        if side_by_side && shown(ViewKind::FlowDream) {
            let steps = state.session.flow.steps;
            let caption = format!(
                "flow matching, {steps} sampling step{}, same fork and actions",
                if steps == 1 { "" } else { "s" }
            );
            let side = vec2(geometry.dream, geometry.dream);
            column_ui(
                ui,
                &header,
                geometry.dream,
                ViewKind::FlowDream.title(),
                &caption,
                |ui| {
                    let response = ui.add(clickable(egui::Image::from_texture((
                        textures.flow_dream,
                        side,
                    ))));
                    clicked(&response, ViewKind::FlowDream);
                    rects[5] = Some(response.rect);
                    let flow_status = state
                        .runtime
                        .runner
                        .as_deref()
                        .map(|runner| runner.flow_status());
                    match flow_status {
                        None => overlay_message_ui(
                            ui,
                            response.rect,
                            &status.headline(),
                            &status.explanation(),
                        ),
                        Some(flow) if !flow.is_ready() => overlay_message_ui(
                            ui,
                            response.rect,
                            "No flow model",
                            &flow.explanation(),
                        ),
                        Some(_) if !state.dream.flow_forked => overlay_message_ui(
                            ui,
                            response.rect,
                            "No flow dream yet",
                            &format!(
                                "Press {} to fork both dreams from the real frame.",
                                Control::DreamFromReality.key_hint()
                            ),
                        ),
                        Some(_) => {}
                    }
                },
            );
        }
    });
    if instrument_open {
        ui.add_space(6.0);
        let bottom = ui.available_size();
        ui.horizontal_top(|ui| {
            if plot {
                ui.allocate_ui_with_layout(
                    vec2(bottom.x * 0.34, bottom.y),
                    egui::Layout::top_down(egui::Align::Min),
                    |ui| {
                        ui.set_width(bottom.x * 0.34);
                        divergence_plot_ui(
                            ui,
                            &state.divergence,
                            state.session.resync_every,
                            side_by_side,
                        );
                    },
                );
                ui.separator();
            }
            rects[4] = Some(
                ui.vertical(|ui| {
                    instrument_panel_ui(
                        ui,
                        &state.instruments,
                        state.runtime.runner.as_deref(),
                        (state.session.env, *state.mode.get()),
                        state.paused(),
                        frame_textures,
                        sent,
                    );
                })
                .response
                .rect,
            );
        });
    } else if plot {
        divergence_plot_ui(
            ui,
            &state.divergence,
            state.session.resync_every,
            side_by_side,
        );
    }
    (geometry.reality, rects)
}

/// The titles above the views: their size, and whether the one-line captions fit under them.
struct ViewHeader {
    title_size: f32,
    captions: bool,
    /// Title, caption and spacing together, in points.
    height: f32,
}

impl ViewHeader {
    fn for_window(ui: &Ui, roomy: bool) -> Self {
        let title_size = if roomy {
            VIEW_TITLE_SIZE
        } else {
            VIEW_TITLE_SIZE_SMALL
        };
        let spacing = ui.spacing().item_spacing.y;
        let row = |size: f32| {
            ui.ctx()
                .fonts_mut(|fonts| fonts.row_height(&egui::FontId::proportional(size)))
        };
        let mut height = row(title_size) + spacing;
        if roomy {
            height += row(VIEW_CAPTION_SIZE) + spacing;
        }
        Self {
            title_size,
            captions: roomy,
            height,
        }
    }
}

/// The views' sizes in points, worked out so that they fill the space they are given.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ViewGeometry {
    /// Space before the first view, centring the row.
    margin: f32,
    reality: egui::Vec2,
    /// The side of V's input and of its reconstruction.
    v_side: f32,
    /// The side of the dream.
    dream: f32,
}

impl ViewGeometry {
    /// Reality (at its aspect), V's column (input over reconstruction, each half as high as the
    /// row) and the dream (square), side by side, as high as both `space`'s height and its width
    /// allow.
    fn side_by_side(space: egui::Vec2, aspect: f32) -> Self {
        // V's column holds two squares, the small label between them and two gaps.
        let v_column_extra = V_LABEL_SIZE * 1.4 + 16.0;
        // Widths: aspect h + (h - extra) / 2 + h + 2 gaps = space.x.
        let by_width = (space.x - 2.0 * VIEW_GAP + v_column_extra / 2.0) / (aspect + 1.5);
        let height = by_width.min(space.y).max(24.0);
        let v_side = ((height - v_column_extra) / 2.0).max(12.0);
        let used = height * aspect + v_side + height + 2.0 * VIEW_GAP;
        Self {
            margin: ((space.x - used) / 2.0).max(0.0),
            reality: vec2(height * aspect, height),
            v_side,
            dream: height,
        }
    }

    /// Reality (at its aspect) and two square dreams side by side, as high as `space` allows.
    fn two_dreams(space: egui::Vec2, aspect: f32) -> Self {
        let by_width = (space.x - 2.0 * VIEW_GAP) / (aspect + 2.0);
        let height = by_width.min(space.y).max(24.0);
        let used = height * aspect + 2.0 * height + 2.0 * VIEW_GAP;
        Self {
            margin: ((space.x - used) / 2.0).max(0.0),
            reality: vec2(height * aspect, height),
            v_side: 0.0,
            dream: height,
        }
    }

    /// One view as large as `space` allows (What V sees: its two images side by side).
    fn maximised(view: ViewKind, space: egui::Vec2, aspect: f32) -> Self {
        // Reality keeps its full size even when hidden: it is rendered at it once shown again.
        let reality = fit(space, aspect);
        let square = space.x.min(space.y).max(24.0);
        let (v_side, dream, used) = match view {
            ViewKind::Reality => (0.0, 0.0, reality.x),
            ViewKind::VSees => {
                let side = ((space.x - VIEW_GAP) / 2.0).min(space.y).max(12.0);
                (side, 0.0, 2.0 * side + VIEW_GAP)
            }
            ViewKind::Dream | ViewKind::FlowDream => (0.0, square, square),
        };
        Self {
            margin: ((space.x - used) / 2.0).max(0.0),
            reality,
            v_side,
            dream,
        }
    }
}

/// The largest size of `aspect` (width / height) inside `space`.
fn fit(space: egui::Vec2, aspect: f32) -> egui::Vec2 {
    if space.x / space.y > aspect {
        vec2(space.y * aspect, space.y)
    } else {
        vec2(space.x, space.x / aspect)
    }
}

/// The font size at most `size` at which `text` fits in `width` on one line (never below 10).
fn fitting_size(ui: &Ui, text: &str, size: f32, width: f32) -> f32 {
    let at_full = ui
        .painter()
        .layout_no_wrap(
            text.to_string(),
            egui::FontId::proportional(size),
            Color32::WHITE,
        )
        .size()
        .x;
    if at_full > width {
        (size * width / at_full).max(10.0)
    } else {
        size
    }
}

/// A view's column: its title (shrunk to fit a narrow column), its caption when there is room,
/// then the images.
fn column_ui(
    ui: &mut Ui,
    header: &ViewHeader,
    width: f32,
    title: &str,
    caption: &str,
    add_contents: impl FnOnce(&mut Ui),
) {
    ui.allocate_ui_with_layout(
        vec2(width, ui.available_height()),
        egui::Layout::top_down(egui::Align::Center),
        |ui| {
            ui.set_width(width);
            // One line each: the views' heights are worked out from that.
            let size = fitting_size(ui, title, header.title_size, width);
            // The row keeps the full title's height, so the images line up across columns.
            let row = ui.ctx().fonts_mut(|fonts| {
                fonts.row_height(&egui::FontId::proportional(header.title_size))
            });
            ui.allocate_ui_with_layout(
                vec2(width, row),
                egui::Layout::centered_and_justified(egui::Direction::TopDown),
                |ui| {
                    ui.add(
                        egui::Label::new(
                            RichText::new(title)
                                .size(size)
                                .strong()
                                .color(Color32::WHITE),
                        )
                        .truncate(),
                    )
                    .on_hover_text(caption);
                },
            );
            if header.captions {
                ui.add(
                    egui::Label::new(RichText::new(caption).size(VIEW_CAPTION_SIZE).weak())
                        .truncate(),
                );
            }
            add_contents(ui);
        },
    );
}

/// A dark box over a view with a headline and an explanation, sized to the view and clipped to it.
fn overlay_message_ui(ui: &mut Ui, rect: egui::Rect, headline: &str, explanation: &str) {
    let inner = rect.shrink(rect.width().min(rect.height()) * 0.05);
    ui.painter()
        .rect_filled(inner, 8.0, Color32::from_black_alpha(200));
    let headline_size = (inner.height() / 9.0).clamp(11.0, 24.0);
    let text_size = (inner.height() / 19.0).clamp(8.0, 15.0);
    let content = inner.shrink(8.0);
    ui.scope_builder(
        UiBuilder::new()
            .max_rect(content)
            .layout(egui::Layout::top_down(egui::Align::Center)),
        |ui| {
            ui.set_clip_rect(content);
            ui.spacing_mut().item_spacing.y = 4.0;
            ui.label(
                RichText::new(headline)
                    .size(headline_size)
                    .strong()
                    .color(Color32::from_rgb(250, 200, 90)),
            );
            ui.add(
                egui::Label::new(
                    RichText::new(explanation)
                        .size(text_size)
                        .color(Color32::from_gray(230)),
                )
                .wrap(),
            );
        },
    );
}

fn divergence_plot_ui(
    ui: &mut Ui,
    divergence: &Divergence,
    resync_every: Option<u32>,
    both_dreams: bool,
) {
    ui.add_space(6.0);
    ui.label(
        RichText::new(if both_dreams {
            "Reality vs each dream: how fast they drift apart"
        } else {
            "Reality vs dream: how fast they drift apart"
        })
        .size(18.0)
        .strong(),
    );
    ui.label(
        RichText::new(match resync_every {
            Some(k) => format!(
                "re-synced to reality every {k} steps ({} so far): the mean error at each step since a sync (K cycles it)",
                divergence.syncs
            ),
            None => "open loop: never re-synced (K sets a re-sync interval)".to_string(),
        })
        .small()
        .weak(),
    );
    let by_horizon = divergence.by_horizon();
    if both_dreams {
        let pixel = |rows: Vec<(u32, f64, f64)>| -> PlotPoints {
            rows.iter()
                .map(|(steps, pixel, _)| [f64::from(*steps), *pixel])
                .collect()
        };
        Plot::new("divergence_both")
            .height((ui.available_height() - 8.0).max(80.0))
            .legend(Legend::default())
            .x_axis_label("steps since the fork")
            .allow_scroll(false)
            .allow_drag(false)
            .show(ui, |plot| {
                plot.line(Line::new(
                    "2018 dream: pixel error (mean |real - dream|, 0..1)",
                    pixel(by_horizon),
                ));
                plot.line(Line::new(
                    "flow dream: pixel error",
                    pixel(divergence.flow_by_horizon()),
                ));
            });
        return;
    }
    let pixel: PlotPoints = by_horizon
        .iter()
        .map(|(steps, pixel, _)| [f64::from(*steps), *pixel])
        .collect();
    // z distances are tens of units; scaled to share the axis with the [0, 1] pixel error.
    let z_gap: PlotPoints = by_horizon
        .iter()
        .map(|(steps, _, z)| [f64::from(*steps), *z / 10.0])
        .collect();
    Plot::new("divergence")
        .height((ui.available_height() - 8.0).max(80.0))
        .legend(Legend::default())
        .x_axis_label("steps since the last sync")
        .allow_scroll(false)
        .allow_drag(false)
        .show(ui, |plot| {
            plot.line(Line::new("pixel error (mean |real - dream|, 0..1)", pixel));
            plot.line(Line::new("z distance / 10 (|V(real) - z_dream|)", z_gap));
        });
}

fn help_overlay_ui(ctx: &egui::Context, sent: &mut Vec<PlayCommand>) {
    let mut open = true;
    egui::Window::new(RichText::new("Controls").size(26.0))
        .collapsible(false)
        .resizable(false)
        .open(&mut open)
        .anchor(egui::Align2::CENTER_CENTER, vec2(0.0, 0.0))
        .show(ctx, |ui| {
            egui::Grid::new("controls_help")
                .num_columns(2)
                .spacing(vec2(24.0, 8.0))
                .striped(true)
                .show(ui, |ui| {
                    for (keys, action) in controls_help() {
                        ui.label(RichText::new(keys).monospace().strong());
                        ui.label(action);
                        ui.end_row();
                    }
                });
            ui.label(
                RichText::new(format!(
                    "{} or {} closes this.",
                    Control::Help.keys_text(),
                    Control::Escape.keys_text()
                ))
                .weak(),
            );
        });
    if !open {
        sent.push(PlayCommand::ToggleHelp);
    }
}

/// Adds a slider that never keeps keyboard focus: a focused egui slider takes the arrow keys, which
/// in this app steer. Sliders here are for the mouse; the keyboard always drives.
fn add_slider(ui: &mut egui::Ui, slider: egui::Slider<'_>) -> egui::Response {
    let response = ui.add(slider);
    if response.has_focus() {
        response.surrender_focus();
    }
    response
}
