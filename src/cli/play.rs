//! `dreamplay play` (and `dreamplay` alone): the playground window; `dreamplay tour`: the same
//! window playing a guided tour.

use std::path::PathBuf;

use clap::Args;

use crate::app::commands::{Instrument, Mode};
use crate::app::instruments::{FAN_SIZE_DEFAULT, FAN_SIZES};
use crate::app::script::Script;
use crate::app::tour::{Tour, TourFile};
use crate::app::{PlayOptions, run as run_app};
use crate::envs::EnvKind;

use super::{BackendArg, parse_env};

#[derive(Debug, Args, Clone)]
pub struct PlayArgs {
    /// Which env to start with (E switches in the app).
    #[arg(long, value_parser = parse_env, default_value = "car-racing")]
    pub env: EnvKind,
    /// Seed of the first real episode.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The mode to start in.
    #[arg(long, value_enum, default_value = "drive-reality")]
    pub mode: Mode,
    /// Open an instrument at the start: the futures fan, M's mixture, the latent map, what each
    /// action would do, or the paper's table (keys 6 7 8 9 0 in the app).
    #[arg(long, value_enum)]
    pub instrument: Option<Instrument>,
    /// How many futures the fan rolls.
    #[arg(long, default_value_t = FAN_SIZE_DEFAULT, value_name = "N")]
    pub futures: usize,
    /// Lockstep: re-sync the dream to reality every K steps (1: one-step predictions), or `off`.
    #[arg(long, default_value = "off", value_parser = parse_resync, value_name = "K|off")]
    pub resync: Resync,
    #[command(flatten)]
    pub window: WindowArgs,
}

/// `dreamplay tour`: the paper's story, scene by scene.
#[derive(Debug, Args, Clone)]
pub struct TourArgs {
    /// A tour file (TOML, as assets/tours/world-models.toml); without one, the paper's story.
    pub file: Option<PathBuf>,
    /// Print one `N. title` line per scene and exit.
    #[arg(long)]
    pub list: bool,
    /// Start at scene N (numbered from 1, as --list prints them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub scene: Option<u32>,
    #[command(flatten)]
    pub window: WindowArgs,
}

/// What the window is opened with, for `play` and `tour` alike.
#[derive(Debug, Args, Clone)]
pub struct WindowArgs {
    /// Directory holding the trained models (`<dir>/<env>/world-model.bin`).
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Start fullscreen (F11 toggles).
    #[arg(long)]
    pub fullscreen: bool,
    /// Start in the presenter layout: the views only, under a one-line HUD (V toggles).
    #[arg(long)]
    pub presenter: bool,
    /// UI scale, e.g. 1.5 for a lecture hall (+ and - change it in the app).
    #[arg(long, default_value_t = 1.0)]
    pub ui_scale: f32,
    /// Window size in logical pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1600x900", value_parser = parse_window_size)]
    pub window_size: (u32, u32),
    /// Run N frames, print frame-time and dream-step statistics, exit.
    #[arg(long)]
    pub bench_frames: Option<u32>,
    /// Take the screenshot after N frames, then exit (default: after the script, or 60 frames).
    #[arg(long)]
    pub screenshot_after: Option<u32>,
    /// Where the screenshot goes (PNG); with --screenshot-after or --script.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Scripted keys, e.g. "hold up 40; hold up+left 20; press f6; wait 10" (see the app's script docs).
    #[arg(long)]
    pub script: Option<String>,
}

/// `--resync`'s value: a step count, or never.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resync(pub Option<u32>);

fn parse_resync(text: &str) -> Result<Resync, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Resync(None));
    }
    match text.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!(
            "'{text}': expected a number of steps (1 or more) or 'off'"
        )),
        Ok(k) => Ok(Resync(Some(k))),
    }
}

impl Default for PlayArgs {
    /// `dreamplay` with no command: the same defaults as `dreamplay play`, read from the clap
    /// attributes above so they live in one place.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: PlayArgs,
        }
        <Defaults as clap::Parser>::parse_from(["play"]).args
    }
}

fn parse_window_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("window size '{text}': expected WIDTHxHEIGHT, e.g. 1600x900"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("window size '{text}': '{s}' is not a whole number"))
    };
    let (w, h) = (parse(w)?, parse(h)?);
    if !(320..=16384).contains(&w) || !(240..=16384).contains(&h) {
        return Err(format!("window size '{text}': expected at least 320x240"));
    }
    Ok((w, h))
}

pub fn run(args: PlayArgs) -> anyhow::Result<()> {
    if !FAN_SIZES.contains(&args.futures) {
        anyhow::bail!(
            "--futures must be between {} and {}, got {}",
            FAN_SIZES.start(),
            FAN_SIZES.end(),
            args.futures
        );
    }
    let mut options = PlayOptions::new(args.env);
    args.window.apply(&mut options)?;
    options.seed = args.seed;
    options.mode = args.mode;
    options.instrument = args.instrument;
    options.fan_size = args.futures;
    options.resync_every = args.resync.0;
    run_app(options)
}

pub fn run_tour(args: TourArgs) -> anyhow::Result<()> {
    // Read and checked before any window opens: a bad file is a message, not a blank window.
    let file = TourFile::load(args.file.as_deref())?;
    if args.list {
        print!("{}", file.listing());
        return Ok(());
    }
    let start = match args.scene {
        Some(n) if n as usize > file.scenes.len() => anyhow::bail!(
            "--scene {n}: the tour has {} scenes (dreamplay tour --list names them)",
            file.scenes.len()
        ),
        Some(n) => n as usize - 1,
        None => 0,
    };
    let tour = Tour::new(file, start);
    let mut options = PlayOptions::new(tour.scene().env);
    args.window.apply(&mut options)?;
    options.tour = Some(tour);
    run_app(options)
}

impl WindowArgs {
    /// Checks the flags and puts them in `options`.
    fn apply(self, options: &mut PlayOptions) -> anyhow::Result<()> {
        if !(self.ui_scale.is_finite() && self.ui_scale > 0.0) {
            anyhow::bail!(
                "--ui-scale must be a positive number, got {}",
                self.ui_scale
            );
        }
        if self.bench_frames == Some(0) {
            anyhow::bail!("--bench-frames must be at least 1");
        }
        options.script = match &self.script {
            Some(text) => Some(
                text.parse::<Script>()
                    .map_err(|err| anyhow::anyhow!("--script: {err}"))?,
            ),
            None => None,
        };
        options.models_dir = self.models;
        // The app selects (and reports) the backend itself, reading the flag by its name.
        options.backend = self.backend.backend.map(|b| b.name().to_string());
        options.fullscreen = self.fullscreen;
        options.presenter = self.presenter;
        options.ui_scale = self.ui_scale;
        options.window_size = self.window_size;
        options.bench_frames = self.bench_frames;
        options.screenshot_after = self.screenshot_after;
        options.screenshot = self.screenshot;
        Ok(())
    }
}
