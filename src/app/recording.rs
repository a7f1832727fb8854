//! Recording a GIF of the three views (R) and screenshots of the window (P / F12).
//!
//! The GIF takes one frame per sim step, so it plays back at the env's rate. Encoding runs on its
//! own thread: quantising a frame takes longer than a sim step, and the UI must not stutter. If the
//! encoder falls behind by more than [`RECORDING_QUEUE_FRAMES`], frames are dropped and counted.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::AppSystems;
use super::commands::PlayCommand;
use super::sim::{ModelFrames, Notice, Reality, Session};
use super::views::ViewRects;
use crate::envs::{EnvKind, Frame};
use crate::record::GifRecorder;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Recording>();
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
/// Side of each view in the recorded GIF, in pixels.
pub const RECORDING_VIEW_SIZE: u32 = 192;

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
    sender: SyncSender<Frame>,
    worker: JoinHandle<Result<usize, String>>,
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
                    match start_recording(&dirs.recordings, session.env) {
                        Ok(active) => {
                            notice.show(format!("Recording {}", active.path.display()));
                            recording.active = Some(active);
                        }
                        Err(reason) => notice.show(reason),
                    }
                }
            }
            PlayCommand::Screenshot => {
                let path = timestamped_path(&dirs.screenshots, "dreamplay", session.env, "png");
                take_screenshot(&mut ecs, path, false);
            }
            _ => {}
        }
    }
}

fn start_recording(dir: &Path, env: EnvKind) -> Result<ActiveRecording, String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let path = timestamped_path(dir, "dreamplay", env, "gif");
    let mut recorder =
        GifRecorder::create(&path, env.steps_per_second()).map_err(|err| err.to_string())?;
    let (sender, receiver) = sync_channel::<Frame>(RECORDING_QUEUE_FRAMES);
    let worker = std::thread::Builder::new()
        .name("gif-recorder".into())
        .spawn(move || {
            for frame in receiver {
                recorder.push(&frame).map_err(|err| err.to_string())?;
            }
            Ok(recorder.frames())
        })
        .map_err(|err| format!("cannot start the GIF encoder thread: {err}"))?;
    Ok(ActiveRecording {
        path,
        sender,
        worker,
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

/// One GIF frame per sim step: reality, what V keeps, and the dream, side by side.
fn record_step(
    mut recording: ResMut<Recording>,
    reality: Res<Reality>,
    frames: Res<ModelFrames>,
    mut last_generation: Local<Option<u64>>,
) {
    let Some(active) = recording.active.as_mut() else {
        return;
    };
    // Only steps that changed something: a paused sim records nothing.
    if *last_generation == Some(reality.generation) {
        return;
    }
    *last_generation = Some(reality.generation);
    let strip = compose_strip(&reality, &frames);
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

/// The three views in one image, each [`RECORDING_VIEW_SIZE`] square; a view without a model is grey.
pub fn compose_strip(reality: &Reality, frames: &ModelFrames) -> Frame {
    let side = RECORDING_VIEW_SIZE;
    let mut strip = Frame::from_pixel(side * 3 + 8, side, image::Rgb([24, 24, 28]));
    let real = reality.render(side, side);
    let seen = frames
        .reconstruction
        .clone()
        .unwrap_or_else(|| reality.obs.clone());
    let views = [Some(real), Some(seen), frames.dream.clone()];
    for (index, view) in views.iter().enumerate() {
        let Some(view) = view else { continue };
        let scaled =
            image::imageops::resize(view, side, side, image::imageops::FilterType::Nearest);
        image::imageops::replace(&mut strip, &scaled, i64::from(index as u32 * (side + 4)), 0);
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
