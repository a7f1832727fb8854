//! The real binary in a real window: scripted driving, a screenshot, and checks on its pixels.
//!
//! Without a display the test runs the binary under `xvfb-run -a` (X in memory, Mesa's software
//! Vulkan renders), so `cargo test` alone works in CI. Without `xvfb-run` it fails and says to run
//! `.ci/setup`. The screenshot is kept under `target/test-artifacts/` and its path printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dreamplay::app::recording::view_rects_path;
use dreamplay::app::views::ViewRects;
use image::RgbImage;

/// lavapipe renders slowly: a small window and few frames keep this well under two minutes.
const WINDOW_SIZE: &str = "960x540";
const SCRIPT: &str = "hold up 25; hold up+right 10; wait 3";
const TIMEOUT: Duration = Duration::from_secs(110);
/// The instruments share the window with the views: a laptop's window, not the smallest.
const INSTRUMENT_WINDOW_SIZE: &str = "1280x720";

fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; artifacts sit beside it.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-artifacts")
}

fn has_display() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    set("DISPLAY") || set("WAYLAND_DISPLAY")
}

fn xvfb_run_available() -> bool {
    Command::new("sh")
        .args(["-c", "command -v xvfb-run"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs the binary with `args`, under xvfb-run when there is no display; returns (stdout, stderr).
fn run_app(args: &[&str]) -> (String, String) {
    let binary = env!("CARGO_BIN_EXE_dreamplay");
    let mut command = if has_display() {
        Command::new(binary)
    } else {
        assert!(
            xvfb_run_available(),
            "no display and no xvfb-run: run .ci/setup (it installs xvfb and mesa-vulkan-drivers) and try again"
        );
        let mut command = Command::new("xvfb-run");
        command.args(["-a", "-s", "-screen 0 1920x1080x24", binary]);
        command
    };
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Keep the log readable; bevy's INFO lines are enough.
    command.env("RUST_LOG", "warn,dreamplay=info");
    let mut child = command.spawn().expect("the dreamplay binary starts");
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect output after kill");
                panic!(
                    "the app did not exit within {TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(err) => panic!("waiting for the app failed: {err}"),
        }
    }
    let output = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the app failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// Runs the driving script in a window on the models in `models`, screenshots it to `screenshot`,
/// and returns the screenshot and where each view sits in it.
fn screenshot_after_script(models: &Path, screenshot: &Path) -> (RgbImage, ViewRects) {
    screenshot_with(models, screenshot, WINDOW_SIZE, &[], SCRIPT)
}

/// As [`screenshot_after_script`], with `extra` flags and its own script.
fn screenshot_with(
    models: &Path,
    screenshot: &Path,
    window_size: &str,
    extra: &[&str],
    script: &str,
) -> (RgbImage, ViewRects) {
    screenshot_of(&["play"], models, screenshot, window_size, extra, script)
}

/// As [`screenshot_with`], running `command` (`play`, or `tour` and its arguments).
fn screenshot_of(
    command: &[&str],
    models: &Path,
    screenshot: &Path,
    window_size: &str,
    extra: &[&str],
    script: &str,
) -> (RgbImage, ViewRects) {
    std::fs::create_dir_all(artifacts_dir()).expect("create target/test-artifacts");
    let _ = std::fs::remove_file(screenshot);
    let mut args = command.to_vec();
    args.extend([
        "--window-size",
        window_size,
        "--models",
        models.to_str().expect("utf-8 path"),
        "--script",
        script,
        "--screenshot",
        screenshot.to_str().expect("utf-8 path"),
    ]);
    args.extend_from_slice(extra);
    let (stdout, _stderr) = run_app(&args);
    println!("screenshot: {}", screenshot.display());
    assert!(
        stdout.contains("screenshot: "),
        "the app reports the screenshot it saved:\n{stdout}"
    );
    let image = image::open(screenshot)
        .expect("the screenshot is a readable PNG")
        .to_rgb8();
    let layout =
        std::fs::read_to_string(view_rects_path(screenshot)).expect("the views layout file");
    let rects: ViewRects = serde_json::from_str(&layout).expect("a valid views layout");
    (image, rects)
}

/// The region `[x, y, w, h]` of `image`, reduced to a 32x32 RGB thumbnail, values in [0, 1].
fn thumbnail(image: &RgbImage, rect: [u32; 4]) -> Vec<f32> {
    let [x, y, w, h] = rect;
    assert!(w >= 8 && h >= 8, "view too small: {rect:?}");
    assert!(
        x + w <= image.width() && y + h <= image.height(),
        "view {rect:?} outside the {}x{} screenshot",
        image.width(),
        image.height()
    );
    let region = image::imageops::crop_imm(image, x, y, w, h).to_image();
    let small = image::imageops::resize(&region, 32, 32, image::imageops::FilterType::Triangle);
    small
        .pixels()
        .flat_map(|p| p.0)
        .map(|v| f32::from(v) / 255.0)
        .collect()
}

/// The smallest rect holding both.
fn union(a: [u32; 4], b: [u32; 4]) -> [u32; 4] {
    let (x, y) = (a[0].min(b[0]), a[1].min(b[1]));
    let (right, bottom) = (
        (a[0] + a[2]).max(b[0] + b[2]),
        (a[1] + a[3]).max(b[1] + b[3]),
    );
    [x, y, right - x, bottom - y]
}

fn std_dev(values: &[f32]) -> f32 {
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt()
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

#[test]
fn the_window_shows_three_distinct_views() {
    let dir = artifacts_dir();
    let screenshot = dir.join("app_window.png");
    // No models here: the fresh-clone state, which must still show reality and explain the rest.
    let empty_models = dir.join("no-models");
    std::fs::create_dir_all(&empty_models).expect("create an empty models dir");

    let (image, rects) = screenshot_after_script(&empty_models, &screenshot);
    let drawn =
        |name: &str, rect: Option<[u32; 4]>| rect.unwrap_or_else(|| panic!("{name} was not drawn"));
    let v_input = drawn("V's input", rects.v_input);
    let v_reconstruction = drawn("V's reconstruction", rects.v_reconstruction);
    let panes = [
        ("Reality", drawn("Reality", rects.reality)),
        ("What V sees", union(v_input, v_reconstruction)),
        ("The dream", drawn("The dream", rects.dream)),
    ];
    let input_spread = std_dev(&thumbnail(&image, v_input));
    assert!(
        input_spread > 0.02,
        "V's 64x64 input looks blank (spread {input_spread:.4})"
    );
    let thumbs: Vec<(&str, Vec<f32>)> = panes
        .iter()
        .map(|(name, rect)| (*name, thumbnail(&image, *rect)))
        .collect();
    for (name, thumb) in &thumbs {
        let spread = std_dev(thumb);
        println!("{name}: spread {spread:.3}");
        assert!(
            spread > 0.02,
            "{name} looks blank (spread {spread:.4}) in {}",
            screenshot.display()
        );
    }
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let gap = mean_abs_diff(&thumbs[i].1, &thumbs[j].1);
        println!(
            "{} vs {}: mean difference {gap:.3}",
            thumbs[i].0, thumbs[j].0
        );
        assert!(
            gap > 0.03,
            "{} and {} look the same (mean difference {gap:.4})",
            thumbs[i].0,
            thumbs[j].0
        );
    }
}

/// On Linux, the run failed with a clear error (not a panic) that says each of `phrases`.
fn fails_saying(output: &std::process::Output, phrases: &[&str]) {
    if cfg!(target_os = "linux") {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        for phrase in phrases {
            assert!(stderr.contains(phrase), "stderr: {stderr}");
        }
        assert!(
            !stderr.contains("panicked"),
            "a clear error, not a panic: {stderr}"
        );
    }
}

#[test]
fn a_window_that_cannot_open_says_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(["play"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("the binary runs");
    fails_saying(&output, &["xvfb-run -a dreamplay play"]);
}

#[test]
fn no_graphics_adapter_says_what_to_install() {
    // A display, but a Vulkan loader with no driver to load, and bevy asked for Vulkan only.
    let output = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(["play"])
        .env("DISPLAY", ":99")
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .expect("the binary runs");
    fails_saying(&output, &["no graphics adapter", "mesa-vulkan-drivers"]);
}

/// With the models that ship in `models/`: V's reconstruction looks like V's input (a trained V, not
/// random weights), and the dream pane shows a picture. This is the README screenshot's setup.
#[test]
fn the_shipped_models_reconstruct_and_dream_in_the_window() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    assert!(
        models.join("car-racing").join("world-model.bin").is_file(),
        "the repository ships models/car-racing/world-model.bin"
    );
    let screenshot = artifacts_dir().join("app_window_models.png");
    let (image, rects) = screenshot_after_script(&models, &screenshot);
    let input = thumbnail(&image, rects.v_input.expect("V's input drawn"));
    let recon = thumbnail(
        &image,
        rects.v_reconstruction.expect("V's reconstruction drawn"),
    );
    let dream = thumbnail(&image, rects.dream.expect("the dream drawn"));
    let gap = mean_abs_diff(&input, &recon);
    println!("V input vs reconstruction: mean difference {gap:.3}");
    assert!(
        gap < 0.08,
        "the trained V's reconstruction is far from its input ({gap:.3})"
    );
    let spread = std_dev(&dream);
    println!("dream: spread {spread:.3}");
    assert!(spread > 0.02, "the dream pane looks blank ({spread:.4})");
}

/// Each instrument, opened from the command line on the shipped Take Cover model, draws its own
/// non-blank panel, and no two look alike.
#[test]
fn every_instrument_draws_a_distinct_panel() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let runs: [(&str, &[&str], &str); 4] = [
        ("futures", &["--mode", "lockstep"], "wait 12"),
        ("mixture", &[], "wait 12"),
        ("map", &[], "wait 12"),
        // The previews are for a still moment: pause first.
        ("actions", &[], "wait 6; press space; wait 4"),
    ];
    let mut thumbs = Vec::new();
    for (instrument, extra, script) in runs {
        let screenshot = artifacts_dir().join(format!("app_window_{instrument}.png"));
        let mut flags = vec!["--env", "take-cover", "--instrument", instrument];
        flags.extend_from_slice(extra);
        let (image, rects) =
            screenshot_with(&models, &screenshot, INSTRUMENT_WINDOW_SIZE, &flags, script);
        let panel = rects
            .instrument
            .unwrap_or_else(|| panic!("the {instrument} panel was not drawn"));
        let thumb = thumbnail(&image, panel);
        let spread = std_dev(&thumb);
        println!("{instrument}: spread {spread:.3}");
        assert!(
            spread > 0.02,
            "the {instrument} panel looks blank (spread {spread:.4}) in {}",
            screenshot.display()
        );
        thumbs.push((instrument, thumb));
    }
    for i in 0..thumbs.len() {
        for j in i + 1..thumbs.len() {
            let gap = mean_abs_diff(&thumbs[i].1, &thumbs[j].1);
            println!(
                "{} vs {}: mean difference {gap:.3}",
                thumbs[i].0, thumbs[j].0
            );
            assert!(
                gap > 0.02,
                "the {} and {} panels look the same ({gap:.4})",
                thumbs[i].0,
                thumbs[j].0
            );
        }
    }
}

/// Side by side on the shipped Take Cover models: reality, the 2018 dream and the flow dream each
/// draw a picture in their own place, the flow dream is not the 2018 dream, and the views keep
/// clear of each other and of the panels.
#[test]
fn side_by_side_shows_reality_and_both_dreams() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    assert!(
        models.join("take-cover").join("flow-model.bin").is_file(),
        "the repository ships models/take-cover/flow-model.bin"
    );
    let screenshot = artifacts_dir().join("app_window_side_by_side.png");
    let flags = ["--env", "take-cover", "--mode", "side-by-side"];
    let (image, rects) = screenshot_with(&models, &screenshot, WINDOW_SIZE, &flags, "wait 30");
    let reality = thumbnail(&image, rects.reality.expect("reality drawn"));
    let dream = thumbnail(&image, rects.dream.expect("the 2018 dream drawn"));
    let flow = thumbnail(&image, rects.flow_dream.expect("the flow dream drawn"));
    assert!(
        rects.v_input.is_none() && rects.v_reconstruction.is_none(),
        "side by side, the dreams take V's place"
    );
    for (name, thumb) in [
        ("reality", &reality),
        ("2018 dream", &dream),
        ("flow dream", &flow),
    ] {
        let spread = std_dev(thumb);
        println!("{name}: spread {spread:.3}");
        assert!(spread > 0.02, "the {name} view looks blank ({spread:.4})");
    }
    let gap = mean_abs_diff(&dream, &flow);
    println!("2018 dream vs flow dream: mean difference {gap:.3}");
    // Near the fork both dreams resemble reality; a shared texture would make them equal.
    assert!(gap > 0.002, "the two dreams look identical ({gap:.4})");
    let views = [
        rects.reality.expect("reality"),
        rects.dream.expect("dream"),
        rects.flow_dream.expect("flow dream"),
    ];
    for (i, a) in views.iter().enumerate() {
        for b in &views[i + 1..] {
            assert!(!overlaps(*a, *b), "views overlap: {a:?} and {b:?}");
        }
        for (panel, rect) in &rects.panels {
            assert!(!overlaps(*a, *rect), "a view overlaps the {panel}");
        }
    }
}

/// `[x, y, w, h]` rectangles overlap (share more than an edge).
fn overlaps(a: [u32; 4], b: [u32; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// The views' rectangles, by name.
fn view_rects(rects: &ViewRects) -> Vec<(&'static str, [u32; 4])> {
    [
        ("reality", rects.reality),
        ("V's input", rects.v_input),
        ("V's reconstruction", rects.v_reconstruction),
        ("the dream", rects.dream),
        ("the flow dream", rects.flow_dream),
    ]
    .into_iter()
    .filter_map(|(name, rect)| rect.map(|rect| (name, rect)))
    .collect()
}

/// The views take at least `share` of the window, every panel stays clear of them, and the top
/// bar and the HUD keep to their lines (`scale` turns their heights back into points).
fn assert_hall_layout(rects: &ViewRects, size: (u32, u32), scale: f32, share: f32, what: &str) {
    let views = view_rects(rects);
    assert_eq!(views.len(), 4, "{what}: every view is drawn: {views:?}");
    let area: u32 = views.iter().map(|(_, r)| r[2] * r[3]).sum();
    let window = size.0 * size.1;
    let taken = area as f32 / window as f32;
    println!("{what}: the views take {:.0}% of the window", 100.0 * taken);
    assert!(
        taken >= share,
        "{what}: the views take only {:.0}% of the window",
        100.0 * taken
    );
    for (panel, panel_rect) in &rects.panels {
        for (view, view_rect) in &views {
            assert!(
                !overlaps(*panel_rect, *view_rect),
                "{what}: the {panel} overlaps {view}: {panel_rect:?} / {view_rect:?}"
            );
        }
    }
    let points = |name: &str| rects.panels.get(name).map(|r| r[3] as f32 / scale);
    // One line of the top bar's 26-point title with its padding is under 60 points; two are not.
    if let Some(top) = points("top_bar") {
        assert!(
            top < 60.0,
            "{what}: the top bar wrapped ({top:.0} points high)"
        );
    }
    // The HUD's two lines (26 and 24 points) with padding; a wrapped line adds 30 more.
    if let Some(hud) = points("hud") {
        assert!(
            hud < 100.0,
            "{what}: the HUD wrapped ({hud:.0} points high)"
        );
    }
}

/// A projector at a large UI scale (the lecture hall): the views keep most of the window
/// and nothing overlaps them, in Lockstep with its plot, and in the presenter layout.
#[test]
fn in_a_hall_the_views_take_most_of_the_window() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (size, scale, name) in [
        ((1280, 720), "2", "1280x720-s2"),
        ((1920, 1080), "2.5", "1920x1080-s2.5"),
    ] {
        let window = format!("{}x{}", size.0, size.1);
        let scale_value: f32 = scale.parse().expect("a number");
        for (layout, extra) in [
            ("lockstep", &["--mode", "lockstep"][..]),
            ("presenter", &["--presenter"][..]),
        ] {
            let screenshot = artifacts_dir().join(format!("app_window_hall_{layout}_{name}.png"));
            let mut flags = vec!["--env", "take-cover", "--ui-scale", scale];
            flags.extend_from_slice(extra);
            let (_, rects) = screenshot_with(&models, &screenshot, &window, &flags, "wait 8");
            let what = format!("{layout} at {window}, UI scale {scale}");
            assert_hall_layout(&rects, size, scale_value, 0.5, &what);
            if layout == "presenter" {
                let names: Vec<&String> = rects.panels.keys().collect();
                assert_eq!(
                    names,
                    ["hud"],
                    "{what}: only the HUD is left beside the views"
                );
            }
        }
    }
}

/// The tour opens on the scene asked for, its caption under the views and clear of them: scene 12,
/// the cold C in Lockstep.
#[test]
fn the_tour_shows_its_scene_and_caption() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let screenshot = artifacts_dir().join("app_window_tour.png");
    let (image, rects) = screenshot_of(
        &["tour", "--scene", "12"],
        &models,
        &screenshot,
        INSTRUMENT_WINDOW_SIZE,
        &[],
        "wait 10",
    );
    let caption = *rects
        .panels
        .get("tour")
        .expect("the tour's caption is drawn");
    assert!(
        std_dev(&thumbnail(&image, caption)) > 0.02,
        "the caption looks blank"
    );
    assert!(rects.instrument.is_none(), "scene 12 opens no instrument");
    assert_hall_layout(&rects, (1280, 720), 1.0, 0.4, "the tour at 1280x720");
}
