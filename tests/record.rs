//! GIF recording: thirty seconds of the playground's three views stay small enough for a slide and
//! decode back to what was recorded.

use std::path::Path;

use dreamplay::agent::{AgentKind, Seen};
use dreamplay::app::recording::{
    RECORDING_VIEW_SIZES, RecordingRate, RecordingSettings, compose_views,
};
use dreamplay::envs::{EnvKind, Frame};
use dreamplay::record::GifRecorder;

/// The goal: 30 s of the three views at the default settings under this many bytes.
const SLIDE_BYTES_MAX: u64 = 10_000_000;
/// How long a recording the goal is about, in seconds of play.
const SECONDS: u32 = 30;
/// A decoded frame's mean error against the input, a channel (0-255): the palette's and the
/// differencing's.
const MEAN_ERROR_MAX: f64 = 6.0;
/// An error a channel that counts as far off; under 1% of the pixels may be.
const FAR: u8 = 48;

/// What a recording should decode back to: its frame count and two of its frames.
struct Recorded {
    frames: usize,
    size: (u32, u32),
    first: Frame,
    later_index: usize,
    later: Frame,
}

/// Records `SECONDS` of `env` driven by its data policy, as the app does: reality at the view size
/// and, standing in for V's and M's 64x64 frames, the env's 64x64 observation scaled up.
fn record(env_kind: EnvKind, settings: RecordingSettings, path: &Path) -> Recorded {
    let every = settings.rate.every();
    let side = settings.view_size;
    let steps = env_kind.steps_per_second() * SECONDS;
    let fps = f64::from(env_kind.steps_per_second()) / f64::from(every);
    let mut recorder = GifRecorder::create(path, fps).expect("the GIF file can be created");
    let mut env = env_kind.make(7);
    let mut seed = 7;
    let mut policy = AgentKind::default_for(env_kind).build(env_kind, seed);
    let mut obs = env.observation();
    let later_index = (steps / every / 2) as usize;
    let mut first = None;
    let mut later = None;
    let mut size = (0, 0);
    for step in 0..steps {
        if step % every == 0 {
            let real = env.render(side, side);
            let strip = compose_views([Some(&real), Some(&obs), Some(&obs)], side);
            size = strip.dimensions();
            match recorder.frames() {
                0 => first = Some(strip.clone()),
                n if n == later_index => later = Some(strip.clone()),
                _ => {}
            }
            recorder.push(&strip).expect("the frame is written");
        }
        let action = policy.act(&Seen::frame(&obs));
        let result = env
            .step(&action)
            .expect("the policy acts inside the action space");
        obs = if result.done() {
            seed += 1;
            policy = AgentKind::default_for(env_kind).build(env_kind, seed);
            env.reset(seed)
        } else {
            result.obs
        };
    }
    let frames = recorder.finish().expect("the GIF is finished");
    Recorded {
        frames,
        size,
        first: first.expect("a first frame"),
        later_index,
        later: later.expect("a later frame"),
    }
}

/// Mean absolute difference per channel, and the share of pixels off by more than `far` in a
/// channel.
fn difference(decoded: &image::RgbaImage, input: &Frame, far: u8) -> (f64, f64) {
    assert_eq!(decoded.dimensions(), input.dimensions());
    let mut total = 0u64;
    let mut far_pixels = 0usize;
    for (out, want) in decoded.pixels().zip(input.pixels()) {
        let errors = [0, 1, 2].map(|c| out.0[c].abs_diff(want.0[c]));
        total += errors.iter().map(|&e| u64::from(e)).sum::<u64>();
        if errors.iter().any(|&e| e > far) {
            far_pixels += 1;
        }
    }
    let pixels = input.pixels().len();
    (
        total as f64 / (pixels * 3) as f64,
        far_pixels as f64 / pixels as f64,
    )
}

/// Records, prints the size, and checks the file decodes back to every frame, the first and a
/// later one within the palette's error.
fn check(env: EnvKind, settings: RecordingSettings) -> u64 {
    let dir = tempfile::Builder::new()
        .prefix("dreamplay-record-")
        .tempdir()
        .expect("scratch folder");
    let path = dir.path().join(format!("{}.gif", env.name()));
    let recorded = record(env, settings, &path);
    let bytes = std::fs::metadata(&path).expect("the GIF exists").len();
    println!(
        "{env}: {SECONDS} s, every {} step(s), views {} px: {} frames of {}x{}, {:.2} MB",
        settings.rate.every(),
        settings.view_size,
        recorded.frames,
        recorded.size.0,
        recorded.size.1,
        bytes as f64 / 1e6
    );

    let file = std::io::BufReader::new(std::fs::File::open(&path).expect("the GIF opens"));
    let decoder = image::codecs::gif::GifDecoder::new(file).expect("a GIF header");
    let mut decoded = 0;
    for (index, frame) in image::AnimationDecoder::into_frames(decoder).enumerate() {
        let frame = frame.expect("each frame decodes");
        assert_eq!(frame.buffer().dimensions(), recorded.size);
        let want = match index {
            0 => Some(&recorded.first),
            i if i == recorded.later_index => Some(&recorded.later),
            _ => None,
        };
        if let Some(want) = want {
            let (mean, far) = difference(frame.buffer(), want, FAR);
            println!(
                "  frame {index}: mean error {mean:.2} a channel, {:.3}% of pixels off by more than {FAR}",
                far * 100.0
            );
            assert!(mean < MEAN_ERROR_MAX, "frame {index}: mean error {mean:.2}");
            assert!(
                far < 0.01,
                "frame {index}: {:.2}% of pixels far off",
                far * 100.0
            );
        }
        decoded += 1;
    }
    assert_eq!(decoded, recorded.frames, "every frame decodes back");
    let steps = env.steps_per_second() * SECONDS;
    assert_eq!(
        recorded.frames,
        steps.div_ceil(settings.rate.every()) as usize
    );
    bytes
}

#[test]
fn thirty_seconds_of_take_cover_fit_on_a_slide() {
    let bytes = check(EnvKind::TakeCover, RecordingSettings::default());
    assert!(bytes < SLIDE_BYTES_MAX, "{bytes} bytes");
}

#[test]
fn thirty_seconds_of_car_racing_fit_on_a_slide() {
    let bytes = check(EnvKind::CarRacing, RecordingSettings::default());
    assert!(bytes < SLIDE_BYTES_MAX, "{bytes} bytes");
}

/// The sizes at every setting, for `docs/benchmarks.md`:
/// `cargo test --test record -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: 18 recordings"]
fn sizes_at_every_setting() {
    for env in [EnvKind::TakeCover, EnvKind::CarRacing] {
        for rate in RecordingRate::ALL {
            for view_size in RECORDING_VIEW_SIZES {
                check(env, RecordingSettings { rate, view_size });
            }
        }
    }
}
