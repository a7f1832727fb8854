//! The instruments' panels (egui only): they draw what `super::instruments` computed and send
//! [`PlayCommand`]s; nothing here steps a model.

use std::collections::HashMap;

use bevy_egui::egui::{self, Color32, RichText, Ui, vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

use super::commands::{Instrument, Mode, PlayCommand};
use super::experiment::{Experiment, ExperimentState};
use super::instruments::{
    ActionPreviews, FAN_HORIZONS, FAN_SIZES, FuturesFan, Instruments, LatentTrails, MixtureReadout,
    PREVIEW_STEPS,
};
use super::world_model::{DreamFamily, DreamRunner, View};
use crate::envs::{EnvKind, Frame};
use crate::train::table::{PAPER_TABLE, TableRow};

/// Reality's mark among the futures.
pub const REALITY_COLOUR: Color32 = Color32::from_rgb(90, 220, 120);
/// The dream's colour in plots and on the map.
pub const DREAM_COLOUR: Color32 = Color32::from_rgb(230, 120, 240);

/// The state the instrument panels read.
#[derive(bevy::ecs::system::SystemParam)]
pub struct InstrumentState<'w> {
    pub instruments: bevy::prelude::Res<'w, Instruments>,
    pub fan: bevy::prelude::Res<'w, FuturesFan>,
    pub mixture: bevy::prelude::Res<'w, MixtureReadout>,
    pub previews: bevy::prelude::Res<'w, ActionPreviews>,
    pub trails: bevy::prelude::Res<'w, LatentTrails>,
    pub experiment: bevy::prelude::Res<'w, Experiment>,
}

/// The instruments' frames as bevy images, rewritten in place only when their source changed
/// (as the views' are), and their egui texture ids for this frame.
#[derive(Default)]
pub struct FrameTextures {
    slots: HashMap<String, (u64, bevy::prelude::Handle<bevy::prelude::Image>)>,
    ids: HashMap<String, egui::TextureId>,
}

impl FrameTextures {
    /// Brings every frame the open instrument shows into its image, and registers them with egui.
    pub fn prepare(
        &mut self,
        state: &InstrumentState,
        images: &mut bevy::prelude::Assets<bevy::prelude::Image>,
        contexts: &mut bevy_egui::EguiContexts,
    ) {
        let mut frames: Vec<(String, u64, &Frame)> = Vec::new();
        match state.instruments.open {
            Some(Instrument::Futures) => {
                let fan = &state.fan;
                if let Some(real) = &fan.reality {
                    frames.push(("fan/reality".into(), fan.generation, real));
                }
                for (i, frame) in fan.frames.iter().enumerate() {
                    frames.push((format!("fan/{i}"), fan.generation, frame));
                }
                if let Some(heat) = &fan.heat {
                    frames.push(("fan/spread".into(), fan.generation, heat));
                }
            }
            Some(Instrument::Actions) => {
                let previews = &state.previews;
                for (i, item) in previews.items.iter().enumerate() {
                    frames.push((format!("preview/0/{i}"), previews.generation, &item.next));
                    frames.push((format!("preview/1/{i}"), previews.generation, &item.later));
                }
            }
            _ => {}
        }
        self.ids.clear();
        for (slot, generation, frame) in frames {
            let handle = match self.slots.get_mut(&slot) {
                Some((seen, handle)) => {
                    if *seen != generation
                        && let Some(mut image) = images.get_mut(&*handle)
                    {
                        super::views::write_frame(&mut image, frame);
                        *seen = generation;
                    }
                    handle.clone()
                }
                None => {
                    let mut image = super::views::blank_image(frame.width(), frame.height());
                    super::views::write_frame(&mut image, frame);
                    let handle = images.add(image);
                    self.slots
                        .insert(slot.clone(), (generation, handle.clone()));
                    handle
                }
            };
            let id = contexts.add_image(bevy_egui::EguiTextureHandle::Weak(handle.id()));
            self.ids.insert(slot, id);
        }
    }

    /// The texture for `slot`, if [`prepare`](Self::prepare) made one this frame.
    fn get(&self, slot: &str) -> Option<egui::TextureId> {
        self.ids.get(slot).copied()
    }
}

/// The side panel's instrument buttons, and Lockstep's re-sync choice.
pub fn instrument_buttons_ui(
    ui: &mut Ui,
    instruments: &Instruments,
    resync_every: Option<u32>,
    sent: &mut Vec<PlayCommand>,
) {
    ui.heading("Instruments");
    ui.horizontal_wrapped(|ui| {
        for instrument in Instrument::ALL {
            let text = format!("{} ({})", instrument.label(), instrument.key_label());
            if ui
                .selectable_label(instruments.is_open(instrument), text)
                .on_hover_text(instrument.caption())
                .clicked()
            {
                sent.push(PlayCommand::ToggleInstrument(instrument));
            }
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.label("Lockstep re-sync").on_hover_text(
            "reset the dream to V's encoding of reality every K steps: 1 shows one-step predictions, off an open-loop dream",
        );
        for every in super::commands::RESYNC_CHOICES {
            let text = every.map_or_else(|| "off".to_string(), |k| k.to_string());
            if ui.selectable_label(resync_every == every, text).clicked() {
                sent.push(PlayCommand::SetResync(every));
            }
        }
    });
}

/// The open instrument, in `ui`'s remaining space.
pub fn instrument_panel_ui(
    ui: &mut Ui,
    state: &InstrumentState,
    runner: Option<&dyn DreamRunner>,
    (env, mode): (EnvKind, Mode),
    paused: bool,
    textures: &FrameTextures,
    sent: &mut Vec<PlayCommand>,
) {
    let Some(open) = state.instruments.open else {
        return;
    };
    let caption = match state.fan.family {
        Some(DreamFamily::Flow) => open.flow_caption().unwrap_or(open.caption()),
        _ => open.caption(),
    };
    // In a short panel (a small window at lecture scale) the caption's lines are the fan's tiles
    // or the plot's; it moves into the title's hover text.
    let roomy = ui.available_height() >= ROOMY_PANEL_HEIGHT;
    ui.horizontal_wrapped(|ui| {
        let title = ui.label(
            RichText::new(open.label())
                .size(24.0)
                .strong()
                .color(Color32::WHITE),
        );
        if roomy {
            ui.label(RichText::new(caption).weak());
        } else {
            title.on_hover_text(caption);
        }
    });
    match open {
        Instrument::Futures => futures_ui(ui, state, textures, sent),
        Instrument::Mixture => mixture_ui(ui, state, runner, sent),
        Instrument::Map => map_ui(ui, state, runner, (env, mode), sent),
        Instrument::Actions => previews_ui(ui, state, paused, textures, sent),
        Instrument::Table => table_ui(ui, &state.experiment, env, sent),
    }
}

/// The panel height (in UI points) from which an instrument's caption has a line of its own.
const ROOMY_PANEL_HEIGHT: f32 = 200.0;

/// Episodes per C a run of the table takes unless changed: the paper's 100 would take half an
/// hour here; 16 take about three minutes.
pub const TABLE_EPISODES_DEFAULT: usize = 16;
/// The real scores' colour in the table's chart; the dream's is [`DREAM_COLOUR`].
const REAL_COLOUR: Color32 = REALITY_COLOUR;

/// The paper's Table 2 for this bundle: a run button with its progress, then the rows beside the
/// paper's, as a table and as bars.
fn table_ui(ui: &mut Ui, experiment: &Experiment, env: EnvKind, sent: &mut Vec<PlayCommand>) {
    let episodes_id = ui.id().with("table_episodes");
    let mut episodes =
        ui.data_mut(|data| *data.get_temp_mut_or(episodes_id, TABLE_EPISODES_DEFAULT));
    ui.horizontal(|ui| {
        if experiment.is_running() {
            if ui.button("Cancel").clicked() {
                sent.push(PlayCommand::CancelTable);
            }
        } else {
            ui.add(
                egui::DragValue::new(&mut episodes)
                    .range(1..=200)
                    .suffix(" episodes"),
            )
            .on_hover_text("per C, in its dream and in reality");
            if ui
                .button("Run")
                .on_hover_text(format!("on {env}'s bundle"))
                .clicked()
            {
                sent.push(PlayCommand::RunTable { episodes });
            }
        }
        match &experiment.state {
            ExperimentState::Running { done, total } => {
                let fraction = if *total == 0 {
                    0.0
                } else {
                    *done as f32 / *total as f32
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(format!("{done} of {total} episodes"))
                        .desired_width(ui.available_width().min(420.0)),
                );
            }
            ExperimentState::Failed(reason) => {
                ui.add(
                    egui::Label::new(RichText::new(reason).color(Color32::from_rgb(250, 200, 90)))
                        .truncate(),
                );
            }
            ExperimentState::Idle => {
                ui.label(
                    RichText::new(
                        "each C in the dream it was evolved in, then in reality; the app plays on",
                    )
                    .weak(),
                );
            }
            ExperimentState::Finished(_) => {
                let on = experiment
                    .env
                    .map_or_else(String::new, |env| format!(" on {env}"));
                ui.label(
                    RichText::new(format!("{} episodes per C{on}", experiment.episodes)).weak(),
                );
            }
        }
    });
    ui.data_mut(|data| data.insert_temp(episodes_id, episodes));
    let rows: &[TableRow] = match &experiment.state {
        ExperimentState::Finished(rows) => rows,
        _ => &[],
    };
    let space = ui.available_size();
    ui.horizontal_top(|ui| {
        ui.allocate_ui_with_layout(
            vec2(space.x * 0.48, space.y),
            egui::Layout::top_down(egui::Align::Min),
            |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("table_rows")
                    .show(ui, |ui| table_grid_ui(ui, rows));
            },
        );
        ui.separator();
        ui.vertical(|ui| table_chart_ui(ui, rows));
    });
}

/// The rows as numbers: this model's Cs, then the paper's.
fn table_grid_ui(ui: &mut Ui, rows: &[TableRow]) {
    egui::Grid::new("paper_table")
        .striped(true)
        .spacing(vec2(16.0, 4.0))
        .show(ui, |ui| {
            for head in ["tau", "dream", "real", "dream / real", ""] {
                ui.label(RichText::new(head).strong());
            }
            ui.end_row();
            for row in rows {
                ui.label(format!("{:.2}", row.tau()));
                ui.label(
                    RichText::new(format!("{:.0} +- {:.0}", row.dream.mean, row.dream.sd))
                        .color(DREAM_COLOUR),
                );
                ui.label(
                    RichText::new(format!("{:.0} +- {:.0}", row.real.mean, row.real.sd))
                        .color(REAL_COLOUR),
                );
                ui.label(RichText::new(format!("{:.2}", row.ratio())).strong());
                ui.label(&row.name);
                ui.end_row();
            }
            if rows.is_empty() {
                ui.label(RichText::new("no run yet: press Run").weak());
                ui.end_row();
            }
            ui.label(RichText::new("the paper (2018)").strong());
            ui.end_row();
            for paper in PAPER_TABLE {
                ui.label(format!("{:.2}", paper.tau));
                ui.label(format!("{:.0} +- {:.0}", paper.dream_mean, paper.dream_sd));
                ui.label(format!("{:.0} +- {:.0}", paper.real_mean, paper.real_sd));
                ui.label(format!("{:.2}", paper.dream_mean / paper.real_mean));
                ui.label(RichText::new("C evolved at this tau").weak());
                ui.end_row();
            }
        });
}

/// Dream against real score per C as bars, this model's then the paper's, each labelled by tau.
fn table_chart_ui(ui: &mut Ui, rows: &[TableRow]) {
    use egui_plot::{Bar, BarChart};
    let ours = rows.iter().map(|row| {
        (
            format!("tau {:.2}", row.tau()),
            row.dream.mean,
            row.real.mean,
        )
    });
    let paper = PAPER_TABLE.iter().map(|row| {
        (
            format!("paper {:.2}", row.tau),
            row.dream_mean,
            row.real_mean,
        )
    });
    let groups: Vec<(String, f64, f64)> = ours.chain(paper).collect();
    let bars = |real: bool| {
        groups
            .iter()
            .enumerate()
            .map(|(i, (label, dream, real_score))| {
                let (offset, value) = if real {
                    (0.2, *real_score)
                } else {
                    (-0.2, *dream)
                };
                Bar::new(i as f64 + offset, value)
                    .width(0.38)
                    .name(label.clone())
            })
            .collect::<Vec<_>>()
    };
    let labels: Vec<String> = groups.iter().map(|(label, _, _)| label.clone()).collect();
    Plot::new("paper_table_chart")
        .height((ui.available_height() - 8.0).max(80.0))
        .legend(Legend::default())
        .y_axis_label("steps survived")
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        // A mark under every group, so each is labelled.
        .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 2.0, 4.0]))
        .x_axis_formatter(move |mark, _range| {
            let index = mark.value.round();
            if (mark.value - index).abs() < 1e-6 && index >= 0.0 {
                labels.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("in the dream", bars(false)).color(DREAM_COLOUR));
            plot.bar_chart(BarChart::new("in reality", bars(true)).color(REAL_COLOUR));
        });
}

/// The side of the largest square tiles that fit `count` of them (plus a label line each) in
/// `space`, and the columns that gives.
fn tile_layout(space: egui::Vec2, count: usize, label: f32, gap: f32) -> (f32, usize) {
    let mut best = (0.0f32, 1usize);
    for columns in 1..=count.max(1) {
        let rows = count.div_ceil(columns);
        let side = ((space.x - gap * columns as f32) / columns as f32)
            .min((space.y - rows as f32 * (label + gap)) / rows as f32);
        if side > best.0 {
            best = (side, columns);
        }
    }
    (best.0.max(16.0), best.1)
}

/// A labelled square image; `mark` draws a frame around it.
fn tile_ui(ui: &mut Ui, texture: egui::TextureId, side: f32, label: &str, mark: Option<Color32>) {
    ui.vertical(|ui| {
        // The label never widens the tile: in a small window it is cut, not the grid overflowed.
        ui.set_max_width(side);
        ui.spacing_mut().item_spacing.y = 2.0;
        let colour = mark.unwrap_or(Color32::from_gray(200));
        ui.add(egui::Label::new(RichText::new(label).size(15.0).color(colour).strong()).truncate());
        let rect = ui
            .add(egui::Image::from_texture((texture, vec2(side, side))))
            .rect;
        if let Some(colour) = mark {
            ui.painter().rect_stroke(
                rect.expand(2.0),
                2.0,
                egui::Stroke::new(4.0, colour),
                egui::StrokeKind::Outside,
            );
        }
    });
}

fn futures_ui(
    ui: &mut Ui,
    state: &InstrumentState,
    textures: &FrameTextures,
    sent: &mut Vec<PlayCommand>,
) {
    let fan = &state.fan;
    let instruments = &state.instruments;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().slider_width = 110.0;
        let mut n = instruments.fan_size;
        if ui
            .add(egui::Slider::new(&mut n, FAN_SIZES).text("futures"))
            .changed()
        {
            sent.push(PlayCommand::SetFanSize(n));
        }
        let mut horizon = instruments.fan_horizon;
        if ui
            .add(egui::Slider::new(&mut horizon, FAN_HORIZONS).text("steps per fork"))
            .changed()
        {
            sent.push(PlayCommand::SetFanHorizon(horizon));
        }
        ui.label(format!("step {} of {}", fan.steps, instruments.fan_horizon));
        if let Some(spread) = &fan.spread {
            ui.label(
                RichText::new(format!("spread {:.3}", spread.mean))
                    .strong()
                    .color(Color32::from_rgb(250, 200, 90)),
            );
        }
    });
    if let Some(problem) = &fan.problem {
        ui.label(RichText::new(problem).color(Color32::from_rgb(250, 200, 90)));
        return;
    }
    if fan.frames.is_empty() {
        ui.label("Forking the futures...");
        return;
    }
    let count = fan.frames.len() + 1 + usize::from(fan.reality.is_some());
    let (side, columns) = tile_layout(ui.available_size(), count, 22.0, 10.0);
    let mut tiles: Vec<(egui::TextureId, String, Option<Color32>)> = Vec::new();
    if let Some(id) = textures.get("fan/reality") {
        tiles.push((id, "reality".into(), Some(REALITY_COLOUR)));
    }
    for i in 0..fan.frames.len() {
        if let Some(id) = textures.get(&format!("fan/{i}")) {
            tiles.push((id, format!("#{}", i + 1), None));
        }
    }
    if let Some(id) = textures.get("fan/spread") {
        tiles.push((id, "spread".into(), Some(Color32::from_rgb(250, 140, 60))));
    }
    egui::Grid::new("futures_grid")
        .spacing(vec2(10.0, 6.0))
        .show(ui, |ui| {
            for (index, (id, label, mark)) in tiles.into_iter().enumerate() {
                tile_ui(ui, id, side, &label, mark);
                if (index + 1) % columns == 0 {
                    ui.end_row();
                }
            }
        });
}

fn mixture_ui(
    ui: &mut Ui,
    state: &InstrumentState,
    runner: Option<&dyn DreamRunner>,
    sent: &mut Vec<PlayCommand>,
) {
    let readout = &state.mixture;
    let z_size = runner.map_or(0, |r| r.z_size());
    ui.horizontal_wrapped(|ui| {
        ui.label("dimension");
        let mut dim = readout.dim;
        if ui
            .add(
                egui::DragValue::new(&mut dim)
                    .range(0..=z_size.saturating_sub(1))
                    .prefix("z"),
            )
            .changed()
        {
            sent.push(PlayCommand::SetMixtureDim(dim));
        }
        ui.label(RichText::new("(or click a z label in the latent panel)").weak());
        if let Some(sampled) = readout.sampled {
            ui.label(
                RichText::new(format!("drawn {sampled:+.3}"))
                    .color(DREAM_COLOUR)
                    .strong(),
            );
        }
        if let Some(real) = readout.real {
            ui.label(
                RichText::new(format!("real {real:+.3}"))
                    .color(REALITY_COLOUR)
                    .strong(),
            );
        }
    });
    let Some(mixture) = &readout.mixture else {
        ui.label(if runner.is_none() {
            "Inside M needs V and M."
        } else {
            "No prediction for this z yet: let the dream take a step (N steps once)."
        });
        return;
    };
    let tau = readout.tau;
    let (w1, wt) = (mixture.weights(1.0), mixture.weights(tau));
    let (s1, st) = (mixture.sigmas(1.0), mixture.sigmas(tau));
    // The x range covers, within 3 sigma, every component that carries weight at either tau
    // (one with none would only flatten the plot), and the drawn and real values.
    let mut low = f32::INFINITY;
    let mut high = f32::NEG_INFINITY;
    for k in 0..mixture.mu.len() {
        if w1[k].max(wt[k]) < 0.01 {
            continue;
        }
        let sigma = s1[k].max(st[k]);
        low = low.min(mixture.mu[k] - 3.0 * sigma);
        high = high.max(mixture.mu[k] + 3.0 * sigma);
    }
    for value in [readout.sampled, readout.real].into_iter().flatten() {
        low = low.min(value - 0.2);
        high = high.max(value + 0.2);
    }
    let curve = |f: &dyn Fn(f32) -> f32| -> PlotPoints {
        (0..=240)
            .map(|i| {
                let x = low + (high - low) * i as f32 / 240.0;
                [f64::from(x), f64::from(f(x))]
            })
            .collect()
    };
    let available = ui.available_size();
    let table_width = 430.0f32.min(available.x * 0.45);
    ui.horizontal_top(|ui| {
        ui.allocate_ui(vec2(available.x - table_width - 12.0, available.y), |ui| {
            Plot::new("mixture")
                .legend(Legend::default())
                .allow_scroll(false)
                .allow_drag(false)
                .height(available.y.max(80.0))
                .show(ui, |plot| {
                    plot.line(
                        Line::new(
                            "mixture at tau 1 (M as trained)",
                            curve(&|x| mixture.density(x, 1.0)),
                        )
                        .color(Color32::from_gray(150))
                        .width(2.0),
                    );
                    plot.line(
                        Line::new(
                            format!("mixture at tau {tau:.2}"),
                            curve(&|x| mixture.density(x, tau)),
                        )
                        .color(Color32::from_rgb(250, 200, 90))
                        .width(3.0),
                    );
                    for k in 0..mixture.mu.len() {
                        let (w, mu, sigma) = (wt[k], mixture.mu[k], st[k]);
                        plot.line(
                            Line::new(
                                "components at tau (weighted)",
                                curve(&|x| w * crate::model::mdrnn::gaussian_density(x, mu, sigma)),
                            )
                            .color(Color32::from_rgb(120, 170, 250))
                            .width(1.0),
                        );
                    }
                    if let Some(value) = readout.sampled {
                        plot.vline(
                            VLine::new("drawn by the dream", f64::from(value))
                                .color(DREAM_COLOUR)
                                .width(3.0),
                        );
                    }
                    if let Some(value) = readout.real {
                        plot.vline(
                            VLine::new("real (V of the real frame)", f64::from(value))
                                .color(REALITY_COLOUR)
                                .width(3.0),
                        );
                    }
                });
        });
        ui.allocate_ui(vec2(table_width, available.y), |ui| {
            egui::Grid::new("mixture_table")
                .striped(true)
                .spacing(vec2(10.0, 4.0))
                .show(ui, |ui| {
                    for head in [
                        "k",
                        "pi",
                        &format!("pi@{tau:.2}"),
                        "mu",
                        "sigma",
                        &format!("sd@{tau:.2}"),
                    ] {
                        ui.label(RichText::new(head).strong());
                    }
                    ui.end_row();
                    for k in 0..mixture.mu.len() {
                        ui.label(format!("{}", k + 1));
                        ui.label(format!("{:.3}", w1[k]));
                        ui.label(format!("{:.3}", wt[k]));
                        ui.label(format!("{:+.3}", mixture.mu[k]));
                        ui.label(format!("{:.3}", s1[k]));
                        ui.label(format!("{:.3}", st[k]));
                        ui.end_row();
                    }
                });
        });
    });
}

fn previews_ui(
    ui: &mut Ui,
    state: &InstrumentState,
    paused: bool,
    textures: &FrameTextures,
    sent: &mut Vec<PlayCommand>,
) {
    let previews = &state.previews;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().slider_width = 140.0;
        let mut k = state.instruments.preview_steps;
        if ui
            .add(egui::Slider::new(&mut k, PREVIEW_STEPS).text("K steps on"))
            .changed()
        {
            sent.push(PlayCommand::SetPreviewSteps(k));
        }
        if let Some(from) = previews.from {
            ui.label(
                RichText::new(match from {
                    View::Reality => "from the real frame (M's memory of the episode)",
                    View::Dream => "from the dream's state",
                    View::FlowDream => "from M's memory of the flow dream",
                })
                .weak(),
            );
        }
    });
    if !paused {
        ui.label(
            RichText::new("Pause (Space) to see what each action would do from here.").size(20.0),
        );
        return;
    }
    if let Some(problem) = &previews.problem {
        ui.label(RichText::new(problem).color(Color32::from_rgb(250, 200, 90)));
        return;
    }
    if previews.items.is_empty() {
        return;
    }
    // One column per action, its name on top; rows: the next frame, then K steps on.
    let columns = previews.items.len();
    let space = ui.available_size();
    let row_label = 120.0;
    let side = ((space.x - row_label - 14.0 * columns as f32) / columns as f32)
        .min((space.y - 40.0 - 2.0 * 10.0) / 2.0)
        .max(16.0);
    egui::Grid::new("previews_grid")
        .spacing(vec2(14.0, 6.0))
        .show(ui, |ui| {
            ui.label("");
            for item in &previews.items {
                ui.label(
                    RichText::new(item.name)
                        .size(22.0)
                        .strong()
                        .color(Color32::WHITE),
                );
            }
            ui.end_row();
            for (row, label) in [
                (0, "next step".to_string()),
                (1, format!("{} steps on", previews.steps)),
            ] {
                ui.add_sized(
                    vec2(row_label, side),
                    egui::Label::new(RichText::new(label).size(18.0)),
                );
                for i in 0..columns {
                    if let Some(id) = textures.get(&format!("preview/{row}/{i}")) {
                        ui.add(egui::Image::from_texture((id, vec2(side, side))));
                    }
                }
                ui.end_row();
            }
        });
}

fn map_ui(
    ui: &mut Ui,
    state: &InstrumentState,
    runner: Option<&dyn DreamRunner>,
    (env, mode): (EnvKind, Mode),
    sent: &mut Vec<PlayCommand>,
) {
    let Some(runner) = runner else {
        ui.label("The latent map needs V and M.");
        return;
    };
    let Some(map) = runner.latent_map() else {
        ui.label(
            RichText::new("This model ships no latent map.")
                .size(20.0)
                .color(Color32::from_rgb(250, 200, 90)),
        );
        ui.label(RichText::new(missing_atlas_hint(env)).monospace());
        return;
    };
    let max_step = map.points.iter().map(|p| p.step).max().unwrap_or(1).max(1);
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "{} frames of the data; PCA axes hold {:.0}% and {:.0}% of the variance",
            map.points.len(),
            100.0 * map.variance_explained[0],
            100.0 * map.variance_explained[1]
        ));
        ui.label(
            RichText::new(format!(
                "colour: step in the episode, 0 (blue) to {max_step} (yellow)"
            ))
            .weak(),
        );
        ui.label(RichText::new("reality").color(REALITY_COLOUR).strong());
        ui.label(RichText::new("dream").color(DREAM_COLOUR).strong());
        ui.label(RichText::new("click a point to decode it").weak());
    });
    let size = ui.available_size();
    let (response, painter) = ui.allocate_painter(size, egui::Sense::click());
    let rect = response.rect;
    painter.rect_filled(rect, 4.0, Color32::from_gray(18));
    let bounds = map_bounds(map);
    let to_screen = |xy: [f32; 2]| {
        egui::pos2(
            rect.left()
                + 8.0
                + (xy[0] - bounds[0]) / (bounds[1] - bounds[0]) * (rect.width() - 16.0),
            rect.bottom()
                - 8.0
                - (xy[1] - bounds[2]) / (bounds[3] - bounds[2]) * (rect.height() - 16.0),
        )
    };
    let radius = (rect.height() / 220.0).clamp(1.5, 4.0);
    for point in &map.points {
        let colour = step_colour(point.step as f32 / max_step as f32);
        painter.circle_filled(to_screen(point.xy), radius, colour);
    }
    let trails = &state.trails;
    let shown = [
        (&trails.reality, REALITY_COLOUR, source_is_reality(mode)),
        (&trails.dream, DREAM_COLOUR, true),
    ];
    for (trail, colour, show) in shown {
        if !show || trail.is_empty() || trail.back().is_some_and(|z| z.len() != map.z_size()) {
            continue;
        }
        let line: Vec<egui::Pos2> = trail.iter().map(|z| to_screen(map.project(z))).collect();
        painter.add(egui::Shape::line(
            line.clone(),
            egui::Stroke::new(2.5, colour),
        ));
        if let Some(last) = line.last() {
            painter.circle(
                *last,
                radius * 3.0,
                colour,
                egui::Stroke::new(2.0, Color32::WHITE),
            );
        }
    }
    if response.clicked()
        && let Some(pos) = response.interact_pointer_pos()
    {
        let screen: Vec<[f32; 2]> = map
            .points
            .iter()
            .map(|p| {
                let at = to_screen(p.xy);
                [at.x, at.y]
            })
            .collect();
        if let Some(index) = super::instruments::map::nearest_point(&screen, [pos.x, pos.y], 16.0) {
            sent.push(PlayCommand::JumpToLatent(map.points[index].z.clone()));
        }
    }
}

/// What the instruments that need the latent statistics say when a model has none: the commands
/// that add them (`export` computes them from the run's encoded data).
pub fn missing_atlas_hint(env: EnvKind) -> String {
    format!("Add them with: dreamplay encode --env {env}, then dreamplay export --env {env}")
}

fn source_is_reality(mode: Mode) -> bool {
    super::instruments::source_view(mode, super::world_model::DreamFamily::MdnRnn) == View::Reality
}

/// The map's view: the points' 1st to 99th percentile on each axis, with a margin, so a few
/// outliers do not squeeze the cloud.
fn map_bounds(map: &crate::model::atlas::LatentMap) -> [f32; 4] {
    let range = |axis: usize| {
        let mut values: Vec<f32> = map.points.iter().map(|p| p.xy[axis]).collect();
        values.sort_by(f32::total_cmp);
        if values.is_empty() {
            return (-1.0, 1.0);
        }
        let at = |q: f32| values[((values.len() - 1) as f32 * q).round() as usize];
        let (low, high) = (at(0.01), at(0.99));
        let margin = ((high - low) * 0.08).max(1e-3);
        (low - margin, high + margin)
    };
    let ((x0, x1), (y0, y1)) = (range(0), range(1));
    [x0, x1, y0, y1]
}

/// A blue-to-yellow ramp (viridis-like) for `t` in [0, 1].
fn step_colour(t: f32) -> Color32 {
    const STOPS: [[f32; 3]; 4] = [
        [68.0, 1.0, 84.0],
        [49.0, 104.0, 142.0],
        [53.0, 183.0, 121.0],
        [253.0, 231.0, 37.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let mix = |c: usize| (STOPS[i][c] + (STOPS[i + 1][c] - STOPS[i][c]) * f).round() as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}
