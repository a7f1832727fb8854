//! Recording a GIF of the three views (R) and screenshots of the window (P / F12).
//!
//! The GIF takes one frame every [`RecordingRate::every`] sim steps, with delays that play it
//! back in real time, each view [`RecordingSettings::view_size`] pixels square; the defaults keep
//! 30 s under 10 MB (`docs/benchmarks.md`). A change applies from the next recording. Encoding
//! runs on its own thread so the UI never waits on it. If the encoder falls behind by more than
//! [`RECORDING_QUEUE_FRAMES`], frames are dropped and counted.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::AppSystems;
use super::commands::{Mode, PlayCommand};
use super::sim::{DreamEpisode, ModelFrames, Notice, Reality, Session};
use super::views::ViewRects;
use crate::envs::{EnvKind, Frame};
use crate::record::GifRecorder;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Recording>();
    app.init_resource::<RecordingSettings>();
    app.init_resource::<OutputDirs>();
    app.add_systems(
        Update,
        (apply_recording_commands, finish_recordings)
            .chain()
            .in_set(AppSystems::ApplyCommands),
    );
    // After the sim step, so each recorded frame shows the step just taken.
    app.add_systems(FixedPostUpdate, record_step);
    app.add_systems(Last, finish_recordings_on_exit);
}

/// Frames the encoder may fall behind before new ones are dropped.
pub const RECORDING_QUEUE_FRAMES: usize = 256;
/// Side of each view in the recorded GIF by default, in pixels: sharp on a projector, and 30 s at
/// half rate stay under 10 MB.
pub const RECORDING_VIEW_SIZE: u32 = 192;
/// The view sides a recording may have, in pixels.
pub const RECORDING_VIEW_SIZE_RANGE: std::ops::RangeInclusive<u32> = 64..=512;
/// The view sides a menu offers, in pixels.
pub const RECORDING_VIEW_SIZES: [u32; 3] = [128, RECORDING_VIEW_SIZE, 256];

/// How the next GIF is recorded.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingSettings {
    /// Which sim steps become frames.
    pub rate: RecordingRate,
    /// Side of each of the three views, in pixels, within [`RECORDING_VIEW_SIZE_RANGE`].
    pub view_size: u32,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            rate: RecordingRate::Half,
            view_size: RECORDING_VIEW_SIZE,
        }
    }
}

/// Which sim steps a GIF records: all, or every second or third (17.5 or 11.7 frames a second in
/// Take Cover, 25 or 16.7 in CarRacing). The GIF plays back in real time at any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecordingRate {
    /// Every sim step: 35 frames a second in Take Cover, 50 in CarRacing.
    Full,
    /// Every second step.
    #[default]
    Half,
    /// Every third step.
    Third,
}

impl RecordingRate {
    pub const ALL: [RecordingRate; 3] = [
        RecordingRate::Full,
        RecordingRate::Half,
        RecordingRate::Third,
    ];

    /// One frame every this many sim steps.
    pub fn every(self) -> u32 {
        match self {
            RecordingRate::Full => 1,
            RecordingRate::Half => 2,
            RecordingRate::Third => 3,
        }
    }

    /// For a menu: "every step", "every 2nd step", "every 3rd step".
    pub fn label(self) -> &'static str {
        match self {
            RecordingRate::Full => "every step",
            RecordingRate::Half => "every 2nd step",
            RecordingRate::Third => "every 3rd step",
        }
    }

    /// The GIF's frames a second in `env`.
    pub fn frames_per_second(self, env: EnvKind) -> f64 {
        f64::from(env.steps_per_second()) / f64::from(self.every())
    }
}

/// Where recordings and screenshots go.
#[derive(Resource, Debug, Clone)]
pub struct OutputDirs {
    pub recordings: PathBuf,
    pub screenshots: PathBuf,
}

impl Default for OutputDirs {
    fn default() -> Self {
        Self {
            recordings: PathBuf::from("recordings"),
            screenshots: PathBuf::from("screenshots"),
        }
    }
}

/// The GIF being recorded, if any, and those still being finished.
#[derive(Resource, Default)]
pub struct Recording {
    active: Option<ActiveRecording>,
    finishing: Vec<FinishingRecording>,
}

struct ActiveRecording {
    path: PathBuf,
    /// The settings it started with.
    settings: RecordingSettings,
    sender: SyncSender<Frame>,
    worker: JoinHandle<Result<usize, String>>,
    /// Sim steps seen since it started, recorded or not.
    steps_seen: u64,
    frames_sent: usize,
    frames_dropped: usize,
}

struct FinishingRecording {
    path: PathBuf,
    worker: JoinHandle<Result<usize, String>>,
    frames_dropped: usize,
}

impl Recording {
    /// The file being recorded and the frames so far, for the UI.
    pub fn status(&self) -> Option<(PathBuf, usize)> {
        self.active
            .as_ref()
            .map(|active| (active.path.clone(), active.frames_sent))
    }

    pub fn is_recording(&self) -> bool {
        self.active.is_some()
    }
}

/// A file name that sorts by time: `<prefix>-<env>-YYYYMMDD-HHMMSS.<ext>` (UTC).
pub fn timestamped_path(dir: &Path, prefix: &str, env: EnvKind, extension: &str) -> PathBuf {
    let stamp = file_stamp(std::time::SystemTime::now());
    let mut path = dir.join(format!("{prefix}-{}-{stamp}.{extension}", env.name()));
    // Two in the same second get a suffix instead of overwriting.
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{prefix}-{}-{stamp}-{n}.{extension}", env.name()));
        n += 1;
    }
    path
}

/// `YYYYMMDD-HHMMSS` (UTC): RFC 3339 without its separators, so it sorts and suits a file name.
pub fn file_stamp(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter_map(|c| match c {
            'T' => Some('-'),
            '-' | ':' | 'Z' => None,
            c => Some(c),
        })
        .collect()
}

fn apply_recording_commands(
    mut commands: MessageReader<PlayCommand>,
    mut recording: ResMut<Recording>,
    mut settings: ResMut<RecordingSettings>,
    mut notice: ResMut<Notice>,
    mut ecs: Commands,
    session: Res<Session>,
    dirs: Res<OutputDirs>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::ToggleRecording => {
                if let Some(active) = recording.active.take() {
                    notice.show(format!(
                        "Finishing {} ({} frames)...",
                        active.path.display(),
                        active.frames_sent
                    ));
                    drop(active.sender);
                    recording.finishing.push(FinishingRecording {
                        path: active.path,
                        worker: active.worker,
                        frames_dropped: active.frames_dropped,
                    });
                } else {
                    match start_recording(&dirs.recordings, session.env, *settings) {
                        Ok(active) => {
                            notice.show(format!("Recording {}", active.path.display()));
                            recording.active = Some(active);
                        }
                        Err(reason) => notice.show(reason),
                    }
                }
            }
            PlayCommand::SetRecordingRate(rate) => {
                settings.rate = *rate;
                notice_if_recording(&recording, &mut notice);
            }
            PlayCommand::SetRecordingSize(side) => {
                settings.view_size = (*side).clamp(
                    *RECORDING_VIEW_SIZE_RANGE.start(),
                    *RECORDING_VIEW_SIZE_RANGE.end(),
                );
                notice_if_recording(&recording, &mut notice);
            }
            PlayCommand::Screenshot => {
                let path = timestamped_path(&dirs.screenshots, "dreamplay", session.env, "png");
                take_screenshot(&mut ecs, path, false);
            }
            _ => {}
        }
    }
}

/// Says that new settings wait for the next recording.
fn notice_if_recording(recording: &Recording, notice: &mut Notice) {
    if recording.is_recording() {
        notice.show("The new GIF settings apply from the next recording");
    }
}

fn start_recording(
    dir: &Path,
    env: EnvKind,
    settings: RecordingSettings,
) -> Result<ActiveRecording, String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let path = timestamped_path(dir, "dreamplay", env, "gif");
    let mut recorder = GifRecorder::create(&path, settings.rate.frames_per_second(env))
        .map_err(|err| err.to_string())?;
    let (sender, receiver) = sync_channel::<Frame>(RECORDING_QUEUE_FRAMES);
    let worker = std::thread::Builder::new()
        .name("gif-recorder".into())
        .spawn(move || {
            for frame in receiver {
                recorder.push(&frame).map_err(|err| err.to_string())?;
            }
            recorder.finish().map_err(|err| err.to_string())
        })
        .map_err(|err| format!("cannot start the GIF encoder thread: {err}"))?;
    Ok(ActiveRecording {
        path,
        settings,
        sender,
        worker,
        steps_seen: 0,
        frames_sent: 0,
        frames_dropped: 0,
    })
}

/// Reports recordings whose encoder has finished.
fn finish_recordings(mut recording: ResMut<Recording>, mut notice: ResMut<Notice>) {
    let (done, pending): (Vec<_>, Vec<_>) = recording
        .finishing
        .drain(..)
        .partition(|finishing| finishing.worker.is_finished());
    recording.finishing = pending;
    for finishing in done {
        match finishing.worker.join() {
            Ok(Ok(frames)) if finishing.frames_dropped == 0 => {
                notice.show(format!(
                    "Saved {} ({frames} frames)",
                    finishing.path.display()
                ));
            }
            Ok(Ok(frames)) => notice.show(format!(
                "Saved {} ({frames} frames; {} dropped: the encoder fell behind)",
                finishing.path.display(),
                finishing.frames_dropped
            )),
            Ok(Err(reason)) => notice.show(format!("Recording failed: {reason}")),
            Err(_) => notice.show(format!(
                "Recording {} failed: the encoder crashed",
                finishing.path.display()
            )),
        }
    }
}

/// On exit, closes the GIF being recorded and waits for the encoders, so no file is left cut off.
fn finish_recordings_on_exit(mut exits: MessageReader<AppExit>, mut recording: ResMut<Recording>) {
    if exits.read().next().is_none() {
        return;
    }
    if let Some(active) = recording.active.take() {
        drop(active.sender);
        recording.finishing.push(FinishingRecording {
            path: active.path,
            worker: active.worker,
            frames_dropped: active.frames_dropped,
        });
    }
    for finishing in recording.finishing.drain(..) {
        match finishing.worker.join() {
            Ok(Ok(frames)) => info!("Saved {} ({frames} frames)", finishing.path.display()),
            Ok(Err(reason)) => error!("Recording {} failed: {reason}", finishing.path.display()),
            Err(_) => error!(
                "Recording {} failed: the encoder crashed",
                finishing.path.display()
            ),
        }
    }
}

/// One GIF frame every few sim steps: reality, what V keeps, and the dream, side by side.
fn record_step(
    mut recording: ResMut<Recording>,
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    frames: Res<ModelFrames>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    mut last_generations: Local<Option<(u64, u64, u64)>>,
) {
    let Some(active) = recording.active.as_mut() else {
        return;
    };
    // Only steps that changed something (reality, or the dream alone in Drive the dream): a
    // paused sim records nothing.
    let generations = (reality.generation, dream.generation, dream.flow_generation);
    if *last_generations == Some(generations) {
        return;
    }
    *last_generations = Some(generations);
    let step = active.steps_seen;
    active.steps_seen += 1;
    if !step.is_multiple_of(u64::from(active.settings.rate.every())) {
        return;
    }
    let strip = compose_strip(
        &reality,
        &frames,
        &session,
        *mode.get(),
        active.settings.view_size,
    );
    match active.sender.try_send(strip) {
        Ok(()) => active.frames_sent += 1,
        Err(TrySendError::Full(_)) => active.frames_dropped += 1,
        Err(TrySendError::Disconnected(_)) => {
            // The encoder stopped (a write error); finish_recordings will report why.
            if let Some(active) = recording.active.take() {
                recording.finishing.push(FinishingRecording {
                    path: active.path,
                    worker: active.worker,
                    frames_dropped: active.frames_dropped,
                });
            }
        }
    }
}

/// The three views in one image, each `side` pixels square, as the window shows them: reality, what
/// V sees and the dream; side by side, reality and the two dreams. A view without a model stays
/// dark.
pub fn compose_strip(
    reality: &Reality,
    frames: &ModelFrames,
    session: &Session,
    mode: Mode,
    side: u32,
) -> Frame {
    let real = reality.render(side, side);
    if mode == Mode::SideBySide {
        return compose_views(
            [
                Some(&real),
                frames.dream.as_ref(),
                frames.flow_dream.as_ref(),
            ],
            side,
        );
    }
    let seen = frames.reconstruction.as_ref().unwrap_or(&reality.obs);
    compose_views(
        [Some(&real), Some(seen), frames.dream_pane(session, mode)],
        side,
    )
}

/// Reality, what V sees and the dream side by side, each scaled (nearest) to `side` pixels square,
/// 4 pixels apart on a dark ground; a missing view stays dark.
pub fn compose_views(views: [Option<&Frame>; 3], side: u32) -> Frame {
    let mut strip = Frame::from_pixel(side * 3 + 8, side, image::Rgb([24, 24, 28]));
    for (index, view) in (0u32..).zip(views) {
        let Some(view) = view else { continue };
        let x = i64::from(index * (side + 4));
        if view.dimensions() == (side, side) {
            image::imageops::replace(&mut strip, view, x, 0);
        } else {
            let scaled =
                image::imageops::resize(view, side, side, image::imageops::FilterType::Nearest);
            image::imageops::replace(&mut strip, &scaled, x, 0);
        }
    }
    strip
}

/// Captures the window to `path` on the next rendered frame; `then_exit` quits after saving
/// (`--screenshot-after`).
pub fn take_screenshot(ecs: &mut Commands, path: PathBuf, then_exit: bool) {
    ecs.spawn(Screenshot::primary_window()).observe(
        move |captured: On<ScreenshotCaptured>,
              rects: Option<Res<ViewRects>>,
              mut notice: ResMut<Notice>,
              mut exit: MessageWriter<AppExit>| {
            let saved = save_png(&captured.image, &path).and_then(|()| match &rects {
                Some(rects) => save_view_rects(rects, &path),
                None => Ok(()),
            });
            match saved {
                Ok(()) => {
                    notice.show(format!("Screenshot: {}", path.display()));
                    println!("screenshot: {}", path.display());
                    if then_exit {
                        exit.write(AppExit::Success);
                    }
                }
                Err(reason) => {
                    notice.show(format!("Screenshot failed: {reason}"));
                    if then_exit {
                        error!("screenshot failed: {reason}");
                        exit.write(AppExit::error());
                    }
                }
            }
        },
    );
}

/// `<path>.views.json`: where each view sits in the screenshot.
fn save_view_rects(rects: &ViewRects, path: &Path) -> Result<(), String> {
    let json_path = view_rects_path(path);
    let json = serde_json::to_string_pretty(rects).map_err(|err| err.to_string())?;
    std::fs::write(&json_path, json)
        .map_err(|err| format!("cannot write {}: {err}", json_path.display()))
}

/// The layout file that goes with a screenshot.
pub fn view_rects_path(screenshot: &Path) -> PathBuf {
    let mut name = screenshot
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".views.json");
    screenshot.with_file_name(name)
}

fn save_png(image: &Image, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let dynamic = image
        .clone()
        .try_into_dynamic()
        .map_err(|err| format!("unreadable capture: {err}"))?;
    // Drop alpha: it holds nothing useful in a window capture.
    dynamic
        .to_rgb8()
        .save(path)
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}
