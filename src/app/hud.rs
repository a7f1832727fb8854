//! The heads-up display under the views: score, step, who drives, the action bars, tau, frame rate
//! and dream step time. Drawing only; the numbers come from the sim's resources.

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
}

pub fn driver_color(driver: Driver) -> Color32 {
    match driver {
        Driver::Human => HUMAN_COLOR,
        Driver::Controller => CONTROLLER_COLOR,
    }
}

/// The HUD's content: one line of numbers, one line of bars.
pub fn hud_ui(ui: &mut Ui, data: &HudData) {
    let session = data.session;
    let big = |text: String| RichText::new(text).size(26.0).strong();
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 28.0;
        let (score_label, score, step) = match data.mode {
            Mode::DriveDream | Mode::LatentExplorer => {
                ("Dream score", data.dream.episode_return, data.dream.steps)
            }
            Mode::DriveReality | Mode::Lockstep => {
                ("Score", data.reality.episode_return, data.reality.steps())
            }
        };
        ui.label(big(format!("{score_label} {score:.1}")));
        ui.label(big(format!("Step {step}")));
        let driver = session.driver;
        ui.label(big(format!("Driving: {}", driver.label())).color(driver_color(driver)));
        if data.paused {
            ui.label(big("PAUSED".to_string()).color(Color32::YELLOW));
        }
    });
    ui.add_space(6.0);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 22.0;
        let axes = session.shown_axes();
        let color = driver_color(session.driver);
        match session.env {
            EnvKind::CarRacing => {
                bar_ui(ui, "steer", axes.steer, true, color);
                bar_ui(ui, "gas", axes.gas, false, color);
                bar_ui(ui, "brake", axes.brake, false, color);
            }
            EnvKind::TakeCover => {
                let strafe = if axes.steer < -1.0 / 3.0 {
                    "left"
                } else if axes.steer > 1.0 / 3.0 {
                    "right"
                } else {
                    "stay"
                };
                bar_ui(ui, &format!("move ({strafe})"), axes.steer, true, color);
            }
        }
        let stat = |text: String| RichText::new(text).size(20.0).monospace();
        ui.label(stat(format!("tau {:.2}", session.tau)));
        if session.done_odds != 1.0 {
            ui.label(stat(format!("done odds x{:.2}", session.done_odds)));
        }
        if session.done_rule == DoneRule::Threshold {
            ui.label(stat("done: threshold".to_string()));
        }
        let fps = data
            .timings
            .frame
            .median_recent()
            .filter(|ms| *ms > 0.0)
            .map(|ms| 1000.0 / ms);
        ui.label(stat(fps.map_or_else(
            || "fps -".to_string(),
            |fps| format!("{fps:.0} fps"),
        )));
        // A dream step as the viewer sees it: M's step, then V decoding the new z.
        let step_ms = data.timings.dream_step.mean_recent();
        let decode_ms = data.timings.dream_decode.mean_recent();
        let dream = match (step_ms, decode_ms) {
            (Some(step), Some(decode)) => {
                format!("dream step {step:.1} ms (M) + {decode:.1} ms (V)")
            }
            (Some(step), None) => format!("dream step {step:.1} ms (M)"),
            _ => "dream step -".to_string(),
        };
        ui.label(stat(dream));
    });
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
            Mode::DriveReality | Mode::Lockstep => {
                (data.reality.episode_return, data.reality.steps())
            }
        };
        ui.label(large(data.mode.label().to_string()));
        ui.label(large(format!("score {score:.0}")));
        ui.label(large(format!("step {step}")));
        let driver = session.driver;
        let who = match driver {
            Driver::Human => "human",
            Driver::Controller => "C",
        };
        ui.label(large(who.to_string()).color(driver_color(driver)));
        ui.label(large(format!("tau {:.2}", session.tau)));
        if data.paused {
            ui.label(large("PAUSED".to_string()).color(Color32::YELLOW));
        }
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
