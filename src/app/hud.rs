//! The heads-up display under the views: score, step, who drives, the action bars, tau (or the flow
//! dream's steps and temperature), frame rate and dream step time. Drawing only; the numbers come
//! from the sim's resources.

use bevy_egui::egui::{self, Color32, RichText, Sense, Stroke, StrokeKind, Ui, vec2};

use super::commands::Mode;
use super::drive::Driver;
use super::sim::{DreamEpisode, Reality, Session, Timings};
use crate::envs::EnvKind;
use crate::model::mdrnn::DoneRule;

/// Orange-red while a human drives, like the demo's bars turning red on override.
pub const HUMAN_COLOR: Color32 = Color32::from_rgb(240, 110, 60);
/// Green while C drives.
pub const CONTROLLER_COLOR: Color32 = Color32::from_rgb(90, 200, 120);
/// Bar size in points.
const BAR_SIZE: egui::Vec2 = vec2(160.0, 24.0);

/// Everything the HUD shows, gathered by the UI system.
pub struct HudData<'a> {
    pub session: &'a Session,
    pub mode: Mode,
    pub paused: bool,
    pub reality: &'a Reality,
    pub dream: &'a DreamEpisode,
    pub timings: &'a Timings,
    /// Lockstep: the latest pixel error between reality and the dream.
    pub drift: Option<f64>,
    /// Side by side: the latest pixel error between reality and the flow dream.
    pub flow_drift: Option<f64>,
}

impl HudData<'_> {
    /// The 2018 dream is on screen.
    fn shows_mdn(&self) -> bool {
        self.session.dreams_shown(self.mode).0
    }

    /// The flow dream is on screen.
    fn shows_flow(&self) -> bool {
        self.session.dreams_shown(self.mode).1
    }

    /// The flow dream's knobs, as the HUD writes them.
    fn flow_knobs(&self) -> String {
        let knobs = self.session.flow;
        let steps = if knobs.steps == 1 { "step" } else { "steps" };
        format!(
            "flow {} {steps}, temp {:.2}",
            knobs.steps, knobs.temperature
        )
    }
}

pub fn driver_color(driver: Driver) -> Color32 {
    match driver {
        Driver::Human => HUMAN_COLOR,
        Driver::Controller => CONTROLLER_COLOR,
    }
}

/// The HUD's content. With room: a line of numbers in large type, then the action bars and the
/// model's figures. In a small window, all on one line in smaller type. No line ever wraps: what
/// does not fit the window's width is left out, the least needed last.
pub fn hud_ui(ui: &mut Ui, data: &HudData, roomy: bool) {
    if roomy {
        ui.horizontal(|ui| {
            ui.spacing_mut().item_spacing.x = 28.0;
            labels_while_they_fit(ui, headline(data, 26.0, false));
        });
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.spacing_mut().item_spacing.x = 22.0;
            if action_bars_ui(ui, data) {
                labels_while_they_fit(ui, figures(data));
            }
        });
    } else {
        ui.horizontal(|ui| {
            ui.spacing_mut().item_spacing.x = 14.0;
            if labels_while_they_fit(ui, headline(data, 20.0, true)) && action_bars_ui(ui, data) {
                labels_while_they_fit(ui, figures(data));
            }
        });
    }
}

/// Score, step, who drives and whether the sim is paused, at `size` points (`short`: fewer words).
fn headline(data: &HudData, size: f32, short: bool) -> Vec<RichText> {
    let big = |text: String| RichText::new(text).size(size).strong();
    let (score_label, score, step) = match data.mode {
        Mode::DriveDream | Mode::LatentExplorer => {
            ("Dream score", data.dream.episode_return, data.dream.steps)
        }
        Mode::DriveReality | Mode::Lockstep | Mode::SideBySide => {
            ("Score", data.reality.episode_return, data.reality.steps())
        }
    };
    let driver = data.session.driver;
    let who = if short {
        match driver {
            Driver::Human => "human".to_string(),
            Driver::Controller => "C drives".to_string(),
        }
    } else {
        format!("Driving: {}", driver.label())
    };
    let mut items = vec![
        big(format!("{score_label} {score:.1}")),
        big(format!("Step {step}")),
        big(who).color(driver_color(driver)),
    ];
    if data.paused {
        items.push(big("PAUSED".to_string()).color(Color32::YELLOW));
    }
    items
}

/// The action bars of the env; whether they all fit.
fn action_bars_ui(ui: &mut Ui, data: &HudData) -> bool {
    let session = data.session;
    let axes = session.shown_axes();
    let color = driver_color(session.driver);
    match session.env {
        EnvKind::CarRacing => [
            ("steer", axes.steer, true),
            ("gas", axes.gas, false),
            ("brake", axes.brake, false),
        ]
        .into_iter()
        .all(|(label, value, centred)| bar_if_fits(ui, label, value, centred, color)),
        EnvKind::TakeCover => {
            let strafe = if axes.steer < -1.0 / 3.0 {
                "left"
            } else if axes.steer > 1.0 / 3.0 {
                "right"
            } else {
                "stay"
            };
            bar_if_fits(ui, &format!("move ({strafe})"), axes.steer, true, color)
        }
    }
}

/// tau, the drift in Lockstep, the done settings, the frame rate and the dream step's time.
fn figures(data: &HudData) -> Vec<RichText> {
    let session = data.session;
    let stat = |text: String| RichText::new(text).size(20.0).monospace();
    let mut stats = Vec::new();
    // The flow dream's knobs and its frame time (sampling and drawing) together, early in the
    // line: a lecturer changing the steps watches both.
    if data.shows_flow() {
        stats.push(stat(match data.timings.flow_step.mean_recent() {
            Some(ms) => format!("{}: {ms:.1} ms/frame", data.flow_knobs()),
            None => data.flow_knobs(),
        }));
    }
    if data.shows_mdn() {
        stats.push(stat(format!("tau {:.2}", session.tau)));
    }
    match (data.mode, data.drift, data.flow_drift) {
        (Mode::Lockstep, Some(drift), _) => stats.push(stat(format!("drift {drift:.3}"))),
        (Mode::SideBySide, Some(drift), flow) => stats.push(stat(format!(
            "drift 2018 {drift:.3}, flow {}",
            flow.map_or_else(|| "-".to_string(), |f| format!("{f:.3}"))
        ))),
        _ => {}
    }
    // The done odds and rule are M's: the flow dream's heads end it where their logit is positive.
    if data.shows_mdn() && session.done_odds != 1.0 {
        stats.push(stat(format!("done odds x{:.2}", session.done_odds)));
    }
    if data.shows_mdn() && session.done_rule == DoneRule::Threshold {
        stats.push(stat("done: threshold".to_string()));
    }
    let fps = data
        .timings
        .frame
        .median_recent()
        .filter(|ms| *ms > 0.0)
        .map(|ms| 1000.0 / ms);
    stats.push(stat(fps.map_or_else(
        || "fps -".to_string(),
        |fps| format!("{fps:.0} fps"),
    )));
    // A dream step as the viewer sees it: M's step, then V decoding the new z.
    if data.shows_mdn() {
        let step_ms = data.timings.dream_step.mean_recent();
        let decode_ms = data.timings.dream_decode.mean_recent();
        stats.push(stat(match (step_ms, decode_ms) {
            (Some(step), Some(decode)) => {
                format!("dream step {step:.1} ms (M) + {decode:.1} ms (V)")
            }
            (Some(step), None) => format!("dream step {step:.1} ms (M)"),
            _ => "dream step -".to_string(),
        }));
    }
    stats
}

/// Adds `items` in order while each fits the rest of the line; whether all did.
pub fn labels_while_they_fit(ui: &mut Ui, items: Vec<RichText>) -> bool {
    items.into_iter().all(|item| label_if_fits(ui, item))
}

/// Adds `text` as one unwrapped label if it fits the rest of the line; whether it did.
pub fn label_if_fits(ui: &mut Ui, text: impl Into<egui::WidgetText>) -> bool {
    let galley = text.into().into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Body,
    );
    if galley.size().x > ui.available_width() {
        return false;
    }
    ui.label(galley);
    true
}

/// [`bar_ui`] if the label, the bar and its value fit the rest of the line; whether it did.
fn bar_if_fits(ui: &mut Ui, label: &str, value: f32, centred: bool, color: Color32) -> bool {
    let text_width = |text: &str, font: egui::FontId| {
        ui.painter()
            .layout_no_wrap(text.to_string(), font, Color32::WHITE)
            .size()
            .x
    };
    let needed = text_width(label, egui::FontId::proportional(20.0))
        + BAR_SIZE.x
        + text_width("+0.00", egui::FontId::monospace(18.0))
        + 2.0 * ui.spacing().item_spacing.x;
    if needed > ui.available_width() {
        return false;
    }
    bar_ui(ui, label, value, centred, color);
    true
}

/// The presenter layout's HUD: one line, large, what a hall reads from the back.
pub fn hud_line_ui(ui: &mut Ui, data: &HudData) {
    let session = data.session;
    let large = |text: String| RichText::new(text).size(34.0).strong();
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 36.0;
        let (score, step) = match data.mode {
            Mode::DriveDream | Mode::LatentExplorer => {
                (data.dream.episode_return, data.dream.steps)
            }
            Mode::DriveReality | Mode::Lockstep | Mode::SideBySide => {
                (data.reality.episode_return, data.reality.steps())
            }
        };
        let driver = session.driver;
        let who = match driver {
            Driver::Human => "human",
            Driver::Controller => "C",
        };
        let mut items = vec![
            large(data.mode.label().to_string()),
            large(format!("score {score:.0}")),
            large(format!("step {step}")),
            large(who.to_string()).color(driver_color(driver)),
        ];
        if data.shows_flow() {
            items.push(large(data.flow_knobs()));
        }
        if data.shows_mdn() {
            items.push(large(format!("tau {:.2}", session.tau)));
        }
        if data.paused {
            // Paused matters more than tau when the line is short.
            items.insert(1, large("PAUSED".to_string()).color(Color32::YELLOW));
        }
        labels_while_they_fit(ui, items);
    });
}

/// A labelled bar. `centered` bars run -1..1 from the middle (steering); others 0..1 from the left.
pub fn bar_ui(ui: &mut Ui, label: &str, value: f32, centered: bool, color: Color32) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(label).size(20.0));
        let (rect, _) = ui.allocate_exact_size(BAR_SIZE, Sense::hover());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 4.0, Color32::from_gray(40));
        let value = if value.is_finite() { value } else { 0.0 };
        let fill = if centered {
            let middle = rect.center().x;
            let end = middle + value.clamp(-1.0, 1.0) * rect.width() / 2.0;
            egui::Rect::from_x_y_ranges(middle.min(end)..=middle.max(end), rect.y_range())
        } else {
            let end = rect.left() + value.clamp(0.0, 1.0) * rect.width();
            egui::Rect::from_x_y_ranges(rect.left()..=end, rect.y_range())
        };
        painter.rect_filled(fill, 4.0, color);
        if centered {
            painter.vline(
                rect.center().x,
                rect.y_range(),
                Stroke::new(1.5, Color32::from_gray(200)),
            );
        }
        painter.rect_stroke(
            rect,
            4.0,
            Stroke::new(1.0, Color32::from_gray(110)),
            StrokeKind::Inside,
        );
        ui.label(RichText::new(format!("{value:+.2}")).size(18.0).monospace());
    });
}
