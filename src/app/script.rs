//! Runs without a person at the keyboard: scripted key presses (`--script`), a screenshot after N
//! frames (`--screenshot-after`, `--screenshot`), and a timed run (`--bench-frames`).
//!
//! A script is a list of steps separated by `;` or `,`, counted in display frames:
//! - `hold KEY[+KEY..] N`: hold the keys for N frames (`hold up+left 30`)
//! - `press KEY`: press and release on the next frame (`press f6`)
//! - `wait N`: N frames of nothing
//!
//! Keys: `up down left right`, letters, digits, `space tab backspace escape enter pagedown pageup period plus minus`,
//! `f1`..`f12`.

use std::path::PathBuf;
use std::str::FromStr;

use bevy::prelude::*;

use super::sim::{Timings, millis};
use super::{AppSystems, PlayOptions};
use crate::envs::EnvKind;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(
        Update,
        (count_frame, run_script).chain().in_set(AppSystems::Script),
    );
}

/// Frames to wait for a requested screenshot before giving up.
pub const SCREENSHOT_TIMEOUT_FRAMES: u32 = 600;
/// Frames after the end of a script before its screenshot, so the last input shows.
pub const SCREENSHOT_AFTER_SCRIPT_FRAMES: u32 = 5;
/// Frames before a screenshot when neither a frame count nor a script says when.
pub const SCREENSHOT_DEFAULT_FRAMES: u32 = 60;

/// One scripted step.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    Hold { keys: Vec<KeyCode>, frames: u32 },
    Press(KeyCode),
    Wait(u32),
}

impl ScriptStep {
    fn frames(&self) -> u32 {
        match self {
            ScriptStep::Hold { frames, .. } | ScriptStep::Wait(frames) => *frames,
            // Pressed on one frame, released on the next.
            ScriptStep::Press(_) => 2,
        }
    }
}

/// A parsed `--script`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub steps: Vec<ScriptStep>,
}

impl Script {
    pub fn total_frames(&self) -> u32 {
        self.steps.iter().map(ScriptStep::frames).sum()
    }

    /// The keys held on `frame` (0-based) and whether they are newly pressed then.
    fn keys_at(&self, frame: u32) -> Vec<KeyCode> {
        let mut start = 0;
        for step in &self.steps {
            let end = start + step.frames();
            if frame < end {
                return match step {
                    ScriptStep::Hold { keys, .. } => keys.clone(),
                    ScriptStep::Press(key) if frame == start => vec![*key],
                    _ => Vec::new(),
                };
            }
            start = end;
        }
        Vec::new()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("script step '{0}': expected 'hold KEY[+KEY] FRAMES', 'press KEY' or 'wait FRAMES'")]
    Shape(String),
    #[error(
        "script step '{step}': unknown key '{key}' (keys: up down left right, a-z, 0-9, space, tab, backspace, escape, enter, period, plus, minus, f1-f12)"
    )]
    Key { step: String, key: String },
    #[error("script step '{0}': the frame count must be a whole number")]
    Frames(String),
}

impl FromStr for Script {
    type Err = ScriptError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut steps = Vec::new();
        for raw in text
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let words: Vec<&str> = raw.split_whitespace().collect();
            let frames = |word: &str| {
                word.parse::<u32>()
                    .map_err(|_| ScriptError::Frames(raw.to_string()))
            };
            let key = |word: &str| {
                parse_key(word).ok_or_else(|| ScriptError::Key {
                    step: raw.to_string(),
                    key: word.to_string(),
                })
            };
            let step = match words.as_slice() {
                ["hold", keys, count] => ScriptStep::Hold {
                    keys: keys
                        .split('+')
                        .filter(|k| !k.is_empty())
                        .map(key)
                        .collect::<Result<_, _>>()?,
                    frames: frames(count)?,
                },
                ["press", name] => ScriptStep::Press(key(name)?),
                ["wait", count] => ScriptStep::Wait(frames(count)?),
                _ => return Err(ScriptError::Shape(raw.to_string())),
            };
            steps.push(step);
        }
        Ok(Script { steps })
    }
}

/// A key by its script name.
pub fn parse_key(name: &str) -> Option<KeyCode> {
    let name = name.to_ascii_lowercase();
    let letters = [
        KeyCode::KeyA,
        KeyCode::KeyB,
        KeyCode::KeyC,
        KeyCode::KeyD,
        KeyCode::KeyE,
        KeyCode::KeyF,
        KeyCode::KeyG,
        KeyCode::KeyH,
        KeyCode::KeyI,
        KeyCode::KeyJ,
        KeyCode::KeyK,
        KeyCode::KeyL,
        KeyCode::KeyM,
        KeyCode::KeyN,
        KeyCode::KeyO,
        KeyCode::KeyP,
        KeyCode::KeyQ,
        KeyCode::KeyR,
        KeyCode::KeyS,
        KeyCode::KeyT,
        KeyCode::KeyU,
        KeyCode::KeyV,
        KeyCode::KeyW,
        KeyCode::KeyX,
        KeyCode::KeyY,
        KeyCode::KeyZ,
    ];
    let digits = [
        KeyCode::Digit0,
        KeyCode::Digit1,
        KeyCode::Digit2,
        KeyCode::Digit3,
        KeyCode::Digit4,
        KeyCode::Digit5,
        KeyCode::Digit6,
        KeyCode::Digit7,
        KeyCode::Digit8,
        KeyCode::Digit9,
    ];
    let functions = [
        KeyCode::F1,
        KeyCode::F2,
        KeyCode::F3,
        KeyCode::F4,
        KeyCode::F5,
        KeyCode::F6,
        KeyCode::F7,
        KeyCode::F8,
        KeyCode::F9,
        KeyCode::F10,
        KeyCode::F11,
        KeyCode::F12,
    ];
    let single = |set: &[KeyCode], first: u8| {
        let bytes = name.as_bytes();
        (bytes.len() == 1)
            .then(|| bytes[0].checked_sub(first))
            .flatten()
            .and_then(|i| set.get(usize::from(i)).copied())
    };
    match name.as_str() {
        "up" => Some(KeyCode::ArrowUp),
        "down" => Some(KeyCode::ArrowDown),
        "left" => Some(KeyCode::ArrowLeft),
        "right" => Some(KeyCode::ArrowRight),
        "space" => Some(KeyCode::Space),
        "tab" => Some(KeyCode::Tab),
        "backspace" => Some(KeyCode::Backspace),
        "escape" | "esc" => Some(KeyCode::Escape),
        "enter" => Some(KeyCode::Enter),
        "pagedown" | "pgdn" => Some(KeyCode::PageDown),
        "pageup" | "pgup" => Some(KeyCode::PageUp),
        "period" | "." => Some(KeyCode::Period),
        "plus" | "=" => Some(KeyCode::Equal),
        "minus" | "-" => Some(KeyCode::Minus),
        "[" | "bracketleft" => Some(KeyCode::BracketLeft),
        "]" | "bracketright" => Some(KeyCode::BracketRight),
        _ if name.starts_with('f') && name.len() > 1 => name[1..]
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| functions.get(i).copied()),
        _ => single(&letters, b'a').or_else(|| single(&digits, b'0')),
    }
}

/// What this run does on its own: script, screenshot, benchmark.
#[derive(Resource, Debug, Clone, Default)]
pub struct RunPlan {
    pub script: Option<Script>,
    /// (frame, path): screenshot then exit.
    pub screenshot: Option<(u32, PathBuf)>,
    pub bench_frames: Option<u32>,
    pub env: Option<EnvKind>,
    /// Display frames so far.
    pub frame: u32,
    screenshot_requested: bool,
    /// Sim steps taken, and when, at the benchmark's first frame.
    bench_start: Option<(u64, std::time::Instant)>,
}

impl RunPlan {
    pub fn from_options(options: &PlayOptions) -> Self {
        let script_frames = options
            .script
            .as_ref()
            .map(|script| script.total_frames() + SCREENSHOT_AFTER_SCRIPT_FRAMES);
        let screenshot = match (options.screenshot_after, &options.screenshot) {
            (None, None) => None,
            (after, path) => {
                let frame = after.or(script_frames).unwrap_or(SCREENSHOT_DEFAULT_FRAMES);
                let path = path.clone().unwrap_or_else(|| {
                    super::recording::timestamped_path(
                        &PathBuf::from("screenshots"),
                        "dreamplay",
                        options.env,
                        "png",
                    )
                });
                Some((frame, path))
            }
        };
        Self {
            script: options.script.clone(),
            screenshot,
            bench_frames: options.bench_frames,
            env: Some(options.env),
            frame: 0,
            screenshot_requested: false,
            bench_start: None,
        }
    }
}

fn count_frame(
    mut plan: ResMut<RunPlan>,
    mut timings: ResMut<Timings>,
    session: Res<super::sim::Session>,
    time: Res<Time<Real>>,
    mut exit: MessageWriter<AppExit>,
    mut ecs: Commands,
) {
    plan.frame += 1;
    // The first frame's delta is start-up, not a frame.
    if plan.frame > 1 {
        timings.frame.push(millis(time.delta()));
    }
    if plan.bench_frames.is_some() {
        timings.frame.keep_all = true;
        timings.dream_step.keep_all = true;
        timings.dream_decode.keep_all = true;
        timings.instrument.keep_all = true;
        timings.flow_step.keep_all = true;
        if plan.frame == 1 {
            plan.bench_start = Some((session.steps_taken, std::time::Instant::now()));
        }
    }
    if let Some(frames) = plan.bench_frames
        && plan.frame >= frames.max(2)
    {
        print_bench(plan.env, frames, &timings);
        if let Some((steps, since)) = plan.bench_start {
            let seconds = since.elapsed().as_secs_f64();
            let taken = session.steps_taken - steps;
            println!(
                "sim steps       {taken} in {seconds:.1} s: {:.1} per second",
                taken as f64 / seconds.max(1e-9)
            );
        }
        exit.write(AppExit::Success);
    }
    if let Some((at, path)) = plan.screenshot.clone() {
        if plan.frame >= at && !plan.screenshot_requested {
            plan.screenshot_requested = true;
            super::recording::take_screenshot(&mut ecs, path, true);
        } else if plan.frame >= at + SCREENSHOT_TIMEOUT_FRAMES {
            error!(
                "no screenshot arrived within {SCREENSHOT_TIMEOUT_FRAMES} frames; is the window being rendered?"
            );
            exit.write(AppExit::error());
        }
    }
}

fn run_script(
    plan: Res<RunPlan>,
    mut keys: ResMut<ButtonInput<KeyCode>>,
    mut held: Local<Vec<KeyCode>>,
) {
    let Some(script) = &plan.script else { return };
    let now = script.keys_at(plan.frame.saturating_sub(1));
    for key in held.iter() {
        if !now.contains(key) {
            keys.release(*key);
        }
    }
    // Pressed again every frame (a no-op while still down): the window losing focus releases
    // every key, and a held step must survive that.
    for key in &now {
        keys.press(*key);
    }
    *held = now;
}

/// Statistics of a sample, in its own unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

pub fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at =
        |q: f64| sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    Some(Stats {
        count: sorted.len(),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        p50: at(0.5),
        p95: at(0.95),
        max: sorted[sorted.len() - 1],
    })
}

fn print_bench(env: Option<EnvKind>, frames: u32, timings: &Timings) {
    let env = env.map_or_else(String::new, |env| format!(" {env}"));
    println!("dreamplay play --bench-frames {frames}{env}: times in ms");
    println!(
        "{:<15} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "mean", "p50", "p95", "max"
    );
    let row = |name: &str, samples: &[f64]| match stats(samples) {
        Some(s) => println!(
            "{name:<15} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            s.count, s.mean, s.p50, s.p95, s.max
        ),
        None => println!(
            "{name:<15} {:>7} (none: no world model loaded, or the dream never stepped)",
            0
        ),
    };
    row("frame", &timings.frame.all);
    row("dream step (M)", &timings.dream_step.all);
    row("V decode", &timings.dream_decode.all);
    if !timings.flow_step.all.is_empty() {
        row("flow frame", &timings.flow_step.all);
    }
    if !timings.instrument.all.is_empty() {
        row("instrument", &timings.instrument.all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_and_hold_keys_for_their_frames() -> Result<(), ScriptError> {
        let script: Script = "hold up+left 3; press f6, wait 2".parse()?;
        assert_eq!(script.total_frames(), 7);
        assert_eq!(
            script.keys_at(0),
            vec![KeyCode::ArrowUp, KeyCode::ArrowLeft]
        );
        assert_eq!(
            script.keys_at(2),
            vec![KeyCode::ArrowUp, KeyCode::ArrowLeft]
        );
        assert_eq!(script.keys_at(3), vec![KeyCode::F6]);
        assert!(script.keys_at(4).is_empty());
        assert!(script.keys_at(100).is_empty());
        Ok(())
    }

    #[test]
    fn bad_scripts_say_what_is_wrong() {
        assert!(matches!(
            "hold up".parse::<Script>(),
            Err(ScriptError::Shape(_))
        ));
        assert!(matches!(
            "press banana".parse::<Script>(),
            Err(ScriptError::Key { .. })
        ));
        assert!(matches!(
            "wait -3".parse::<Script>(),
            Err(ScriptError::Frames(_))
        ));
        assert_eq!(parse_key("f12"), Some(KeyCode::F12));
        assert_eq!(parse_key("f13"), None);
        assert_eq!(parse_key("q"), Some(KeyCode::KeyQ));
        assert_eq!(parse_key("7"), Some(KeyCode::Digit7));
    }

    #[test]
    fn stats_are_order_statistics() {
        let s = stats(&[4.0, 1.0, 3.0, 2.0, 100.0]).expect("non-empty");
        assert_eq!((s.count, s.p50, s.max), (5, 3.0, 100.0));
        assert!((s.mean - 22.0).abs() < 1e-9);
        assert!(stats(&[]).is_none());
    }
}
