//! The playground's logic under bevy, with no window: keys and gamepads in, actions, modes and
//! settings out. Time advances exactly one sim step per `update`, so counts are exact.
//!
//! Note the frame order: `FixedUpdate` (the sim) runs before `Update` (input), so input read on one
//! frame drives the sim step of the next.

use std::time::Duration;

use bevy::input::gamepad::{Gamepad, GamepadAxis, GamepadButton};
use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;

use dreamplay::app::commands::{
    Control, DRIVE_KEYS, Instrument, Mode, PlayCommand, controls_markdown, key_for,
};
use dreamplay::app::drive::Driver;
use dreamplay::app::drive::TAU_PRESETS;
use dreamplay::app::lecture::Presentation;
use dreamplay::app::sim::{
    Divergence, DreamEpisode, ModelFrames, Notice, Reality, Session, SimState,
};
use dreamplay::app::world_model::{
    DreamFamily, DreamRunner, FlowStatus, ModelStatus, View, WorldModelRuntime,
};
use dreamplay::app::{LogicPlugin, PlayOptions};
use dreamplay::dream::DreamStep;
use dreamplay::envs::{EnvKind, Frame};
use dreamplay::model::mdrnn::DoneRule;

/// The action the fake controller takes in the dream: right, full gas.
const FAKE_C_ACTION: [f32; 3] = [0.5, 1.0, 0.0];
/// The action it takes in reality, once the reality-following M has seen a frame: left, half gas.
const FAKE_C_REAL_ACTION: [f32; 3] = [-0.5, 0.5, 0.0];
/// The fake dream predicts "done" after this many steps.
const FAKE_DONE_AFTER: u32 = 5;

/// A stand-in world model: z is the frame's mean colour plus a step counter, decoding paints it.
struct FakeDream {
    z: Vec<f32>,
    steps: u32,
    controller: bool,
    /// The reality-following M: whether it has seen a frame, and the actions it has followed.
    real_seen: bool,
    real_followed: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The factor on M's done odds the app last set, as f32 bits.
    done_odds: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The done rule the app last set.
    done_rule: std::sync::Arc<std::sync::Mutex<Option<DoneRule>>>,
}

impl FakeDream {
    fn new(controller: bool) -> Self {
        Self {
            z: vec![0.0; 4],
            steps: 0,
            controller,
            real_seen: false,
            real_followed: Default::default(),
            done_odds: std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1.0f32.to_bits())),
            done_rule: Default::default(),
        }
    }
}

impl DreamRunner for FakeDream {
    fn describe_backend(&self) -> String {
        "fake".into()
    }
    fn z_size(&self) -> usize {
        4
    }
    fn has_controller(&self) -> bool {
        self.controller
    }
    fn set_done_odds(&mut self, factor: f32) {
        self.done_odds
            .store(factor.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }
    fn set_done_rule(&mut self, rule: DoneRule) {
        *self.done_rule.lock().unwrap() = Some(rule);
    }
    fn encode(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        let mut mean = [0.0f32; 3];
        for pixel in frame.pixels() {
            for c in 0..3 {
                mean[c] += f32::from(pixel[c]) / 255.0;
            }
        }
        let n = (frame.width() * frame.height()).max(1) as f32;
        Ok(vec![mean[0] / n, mean[1] / n, mean[2] / n, 0.0])
    }
    fn decode(&mut self, z: &[f32]) -> anyhow::Result<Frame> {
        let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0) as u8;
        Ok(Frame::from_pixel(
            64,
            64,
            image::Rgb([level(z[0]), level(z[1]), level(z[2])]),
        ))
    }
    fn reset_from_frame(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.z = self.encode(frame)?;
        self.steps = 0;
        Ok(())
    }
    fn reset_random(&mut self) -> anyhow::Result<()> {
        self.z = vec![0.9, 0.1, 0.5, 0.0];
        self.steps = 0;
        Ok(())
    }
    fn set_z(&mut self, z: &[f32]) -> anyhow::Result<()> {
        anyhow::ensure!(z.len() == 4, "z of {} values", z.len());
        self.z = z.to_vec();
        Ok(())
    }
    fn step(&mut self, action: &[f32], _tau: f32) -> anyhow::Result<DreamStep> {
        self.steps += 1;
        self.z[3] += 1.0;
        self.z[0] = (self.z[0] + 0.01 * action[0]).clamp(0.0, 1.0);
        Ok(DreamStep {
            z: self.z.clone(),
            reward: 1.0,
            done: self.steps >= FAKE_DONE_AFTER,
        })
    }
    fn frame(&mut self) -> anyhow::Result<Frame> {
        let z = self.z.clone();
        self.decode(&z)
    }
    fn z(&self) -> Vec<f32> {
        self.z.clone()
    }
    fn observe_reality(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        self.real_seen = true;
        self.encode(frame)
    }
    fn advance_reality(&mut self, _action: &[f32]) -> anyhow::Result<()> {
        anyhow::ensure!(self.real_seen, "advanced before seeing a frame");
        self.real_followed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn reset_reality(&mut self) {
        self.real_followed
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
    fn controller_action(&self, view: View) -> Option<Vec<f32>> {
        match view {
            View::Dream => self.controller.then(|| FAKE_C_ACTION.to_vec()),
            View::FlowDream => None,
            View::Reality => {
                (self.controller && self.real_seen).then(|| FAKE_C_REAL_ACTION.to_vec())
            }
        }
    }
}

fn app_for(env: EnvKind) -> App {
    let mut options = PlayOptions::new(env);
    // A directory that holds no models: the fresh-clone state.
    options.models_dir = std::env::temp_dir().join("dreamplay-tests-no-models");
    app_with_options(options)
}

/// The headless playground for `options`, with time started.
fn app_with_options(options: PlayOptions) -> App {
    let env = options.env;
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    app.add_plugins(LogicPlugin { options });
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(
        1.0 / f64::from(env.steps_per_second()),
    )));
    // Time starts on the first update; from the second on, each update is one sim step.
    app.update();
    app.update();
    app
}

fn app_with_model(env: EnvKind, controller: bool) -> App {
    let mut app = app_for(env);
    app.insert_resource(WorldModelRuntime::ready(Box::new(FakeDream::new(
        controller,
    ))));
    app
}

fn keys(app: &mut App) -> Mut<'_, ButtonInput<KeyCode>> {
    app.world_mut().resource_mut::<ButtonInput<KeyCode>>()
}

/// Without bevy's InputPlugin nobody clears `just_pressed`, so the tests do it after each frame.
fn frame(app: &mut App) {
    app.update();
    keys(app).clear();
}

fn frames(app: &mut App, n: usize) {
    for _ in 0..n {
        frame(app);
    }
}

/// Press and release a key within one frame, as a quick tap.
fn tap(app: &mut App, key: KeyCode) {
    keys(app).press(key);
    frame(app);
    keys(app).release(key);
    frame(app);
}

fn session(app: &App) -> &Session {
    app.world().resource::<Session>()
}

fn driver(app: &App) -> Driver {
    session(app).driver
}

fn mode(app: &App) -> Mode {
    *app.world().resource::<State<Mode>>().get()
}

fn sim_state(app: &App) -> SimState {
    *app.world().resource::<State<SimState>>().get()
}

fn real_steps(app: &App) -> u32 {
    app.world().resource::<Reality>().steps()
}

/// `actual` is `expected` up to f32 rounding.
fn assert_close(actual: f32, expected: f32, what: &str) {
    assert_within(actual, expected, 1e-5, what);
}

fn assert_within(actual: f32, expected: f32, tolerance: f32, what: &str) {
    assert!(
        (actual - expected).abs() < tolerance,
        "{what}: {actual}, expected {expected}"
    );
}

/// Runs `n` frames in which reality must not step; returns its step count.
fn assert_reality_frozen(app: &mut App, n: usize, what: &str) -> u32 {
    let frozen = real_steps(app);
    frames(app, n);
    assert_eq!(real_steps(app), frozen, "{what}");
    frozen
}

fn send(app: &mut App, command: PlayCommand) {
    app.world_mut().write_message(command);
    frame(app);
}

/// Moves one latent slider; the dream's z afterwards, if a runner is left.
fn set_latent_dim(app: &mut App, dim: usize, value: f32) -> Option<Vec<f32>> {
    send(app, PlayCommand::SetLatentDim { dim, value });
    app.world()
        .resource::<WorldModelRuntime>()
        .runner
        .as_ref()
        .map(|runner| runner.z())
}

#[test]
fn one_update_is_one_sim_step() {
    let mut app = app_for(EnvKind::CarRacing);
    let before = real_steps(&app);
    frames(&mut app, 10);
    assert_eq!(real_steps(&app) - before, 10);
}

#[test]
fn held_keys_ramp_a_tenth_per_step_and_decay_when_released() {
    let mut app = app_for(EnvKind::CarRacing);
    keys(&mut app).press(KeyCode::ArrowUp);
    keys(&mut app).press(KeyCode::KeyA);
    frame(&mut app); // input read; the sim sees it from the next step on
    frames(&mut app, 3);
    let axes = session(&app).human_axes;
    assert_close(axes.gas, 0.3, "gas after 3 steps");
    assert_close(axes.steer, -0.3, "steer after 3 steps");
    assert_eq!(session(&app).last_action.len(), 3);
    assert_close(
        session(&app).last_action[1],
        0.3,
        "the env got the ramped gas",
    );

    keys(&mut app).release(KeyCode::ArrowUp);
    keys(&mut app).release(KeyCode::KeyA);
    // One more ramped step (from the input read before the release), then the first decay.
    frames(&mut app, 2);
    let axes = session(&app).human_axes;
    assert_close(axes.gas, 0.36, "gas one step after release");
    assert_close(axes.steer, -0.36, "steer one step after release");
    assert_eq!(driver(&app), Driver::Human);
}

#[test]
fn a_tap_shorter_than_a_sim_step_still_counts() {
    let mut app = app_for(EnvKind::CarRacing);
    // Two display frames per sim step: the key is held on the first only.
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
        10,
    )));
    frame(&mut app);
    keys(&mut app).press(KeyCode::ArrowRight);
    frame(&mut app);
    keys(&mut app).release(KeyCode::ArrowRight);
    frames(&mut app, 3);
    assert!(
        session(&app).human_axes.steer > 0.05,
        "steer {}",
        session(&app).human_axes.steer
    );
}

#[test]
fn a_gamepad_drives_and_unplugging_it_is_harmless() {
    let mut app = app_for(EnvKind::CarRacing);
    let mut pad = Gamepad::default();
    pad.analog_mut().set(GamepadAxis::LeftStickX, -0.7);
    pad.analog_mut().set(GamepadButton::RightTrigger2, 0.9);
    let entity = app.world_mut().spawn(pad).id();
    frames(&mut app, 2);
    let axes = session(&app).human_axes;
    assert_close(axes.steer, -0.7, "steer");
    assert_close(axes.gas, 0.9, "gas");
    assert_close(session(&app).last_action[0], -0.7, "steer sent");

    app.world_mut().despawn(entity);
    frames(&mut app, 2);
    let axes = session(&app).human_axes;
    assert_within(axes.steer, -0.63, 1e-4, "steer decays once the pad is gone");
}

#[test]
fn a_gamepad_dpad_strafes_in_take_cover() {
    let mut app = app_for(EnvKind::TakeCover);
    let mut pad = Gamepad::default();
    pad.digital_mut().press(GamepadButton::DPadLeft);
    app.world_mut().spawn(pad);
    frames(&mut app, 2);
    assert_eq!(session(&app).last_action, vec![-1.0]);
}

#[test]
fn the_controller_drives_until_a_human_touches_the_controls() {
    let mut app = app_with_model(EnvKind::CarRacing, true);
    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller);
    frames(&mut app, 2);
    assert_eq!(
        session(&app).last_action,
        FAKE_C_REAL_ACTION.to_vec(),
        "C's action, from reality's state, reaches the env"
    );

    keys(&mut app).press(KeyCode::ArrowLeft);
    frames(&mut app, 2);
    assert_eq!(driver(&app), Driver::Human, "any human input takes over");
    assert!(
        session(&app).last_action[0] < 0.0,
        "and the human's steering is what the env gets"
    );
    keys(&mut app).release(KeyCode::ArrowLeft);
    frames(&mut app, 3);
    assert_eq!(driver(&app), Driver::Human, "releasing does not hand back");

    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller, "C hands the wheel back");
}

#[test]
fn a_gamepad_also_takes_the_wheel_from_c() {
    let mut app = app_with_model(EnvKind::CarRacing, true);
    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller);
    let mut pad = Gamepad::default();
    pad.analog_mut().set(GamepadButton::LeftTrigger2, 0.8);
    app.world_mut().spawn(pad);
    frames(&mut app, 2);
    assert_eq!(driver(&app), Driver::Human);
    assert_close(session(&app).last_action[2], 0.8, "brake");
}

#[test]
fn without_a_controller_c_stays_human_and_says_why() {
    let mut app = app_for(EnvKind::CarRacing);
    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Human);
    let notice = app.world().resource::<Notice>();
    assert!(
        notice.text.contains("C cannot drive"),
        "notice: {}",
        notice.text
    );
    let status = &app.world().resource::<WorldModelRuntime>().status;
    assert!(matches!(status, ModelStatus::Missing { .. }), "{status:?}");
    assert!(
        status
            .explanation()
            .contains("dreamplay train-vae --env car-racing"),
        "{}",
        status.explanation()
    );
}

#[test]
fn tau_presets_and_the_slider_are_clamped_per_env() {
    let mut app = app_for(EnvKind::CarRacing);
    tap(&mut app, KeyCode::Digit1);
    assert_eq!(session(&app).tau, 0.1);
    tap(&mut app, KeyCode::Digit4);
    assert_eq!(session(&app).tau, 1.15);
    tap(&mut app, KeyCode::Digit5);
    assert_eq!(session(&app).tau, 1.3);
    send(&mut app, PlayCommand::SetTau(9.0));
    assert_eq!(session(&app).tau, 1.5, "CarRacing's slider stops at 1.5");
    send(&mut app, PlayCommand::SetTau(f32::NAN));
    assert_eq!(session(&app).tau, 1.5, "nonsense is ignored");
    send(&mut app, PlayCommand::TauPreset(99));
    assert_eq!(session(&app).tau, 1.5, "an unknown preset is ignored");

    let mut app = app_for(EnvKind::TakeCover);
    send(&mut app, PlayCommand::SetTau(2.5));
    assert_eq!(session(&app).tau, 2.5, "Take Cover goes up to 3.0");
}

#[test]
fn modes_step_the_right_things() {
    let mut app = app_with_model(EnvKind::CarRacing, false);
    // Drive reality: the env steps and M predicts one step ahead.
    let before = real_steps(&app);
    frames(&mut app, 3);
    assert_eq!(real_steps(&app) - before, 3);
    assert!(
        app.world()
            .resource::<ModelFrames>()
            .reconstruction
            .is_some(),
        "V reconstructs reality"
    );
    assert!(
        app.world().resource::<ModelFrames>().dream.is_some(),
        "M's prediction is decoded"
    );

    // Drive the dream: reality freezes, the dream steps and restarts on a predicted done.
    tap(&mut app, KeyCode::F6);
    assert_eq!(mode(&app), Mode::DriveDream);
    assert_reality_frozen(&mut app, 3, "reality does not step in the dream");
    let dream = app.world().resource::<DreamEpisode>();
    assert!(
        dream.forked && dream.steps > 0,
        "the dream steps: {dream:?}"
    );
    frames(&mut app, 2 * FAKE_DONE_AFTER as usize);
    assert!(
        app.world().resource::<DreamEpisode>().restarts >= 1,
        "a predicted done restarts the dream"
    );

    // Lockstep: both step, and the gap is recorded.
    tap(&mut app, KeyCode::F7);
    assert_eq!(mode(&app), Mode::Lockstep);
    let before = real_steps(&app);
    frames(&mut app, 4);
    assert!(real_steps(&app) > before);
    assert!(
        app.world().resource::<Divergence>().points.len() >= 3,
        "divergence is plotted"
    );

    // Latent explorer: nothing steps; the sliders set z; N steps the dream once.
    tap(&mut app, KeyCode::F8);
    assert_eq!(mode(&app), Mode::LatentExplorer);
    let frozen = real_steps(&app);
    let dream_steps = app.world().resource::<DreamEpisode>().steps;
    frames(&mut app, 3);
    assert_eq!(real_steps(&app), frozen);
    assert_eq!(
        app.world().resource::<DreamEpisode>().steps,
        dream_steps,
        "the dream is paused"
    );
    let z = set_latent_dim(&mut app, 1, 0.75);
    assert_eq!(z.as_ref().map(|z| z[1]), Some(0.75));
    set_latent_dim(&mut app, 99, 0.75);
    assert!(
        app.world().resource::<WorldModelRuntime>().runner.is_none(),
        "a bad dimension is an error, reported"
    );
}

#[test]
fn single_step_in_the_latent_explorer_steps_the_dream_once() {
    let mut app = app_with_model(EnvKind::CarRacing, false);
    tap(&mut app, KeyCode::F8);
    let dream_steps = app.world().resource::<DreamEpisode>().steps;
    tap(&mut app, KeyCode::KeyN);
    frames(&mut app, 3);
    assert_eq!(
        app.world().resource::<DreamEpisode>().steps,
        dream_steps + 1
    );
}

#[test]
fn mode_keys_cycle_and_the_dream_without_a_model_just_explains() {
    let mut app = app_for(EnvKind::CarRacing);
    tap(&mut app, KeyCode::KeyM);
    assert_eq!(mode(&app), Mode::DriveDream);
    assert_reality_frozen(&mut app, 3, "reality does not step in the dream");
    assert!(!app.world().resource::<DreamEpisode>().forked);
    assert!(
        app.world()
            .resource::<Notice>()
            .text
            .contains("No world model"),
        "{}",
        app.world().resource::<Notice>().text
    );
    for expected in [
        Mode::Lockstep,
        Mode::LatentExplorer,
        Mode::SideBySide,
        Mode::DriveReality,
    ] {
        tap(&mut app, KeyCode::KeyM);
        assert_eq!(mode(&app), expected);
    }
    let before = real_steps(&app);
    frames(&mut app, 2);
    assert_eq!(
        real_steps(&app) - before,
        2,
        "back in reality, it steps again"
    );
}

#[test]
fn pause_and_single_step() {
    let mut app = app_for(EnvKind::CarRacing);
    tap(&mut app, KeyCode::Space);
    assert_eq!(sim_state(&app), SimState::Paused);
    let frozen = assert_reality_frozen(&mut app, 5, "a paused sim does not step");
    tap(&mut app, KeyCode::KeyN);
    frames(&mut app, 3);
    assert_eq!(real_steps(&app), frozen + 1, "one step per N");
    tap(&mut app, KeyCode::Space);
    frames(&mut app, 2);
    assert!(real_steps(&app) > frozen + 1);
}

#[test]
fn switching_env_swaps_reality_rate_and_model() {
    let mut app = app_with_model(EnvKind::CarRacing, true);
    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller);
    tap(&mut app, KeyCode::F7);
    tap(&mut app, KeyCode::KeyE);
    assert_eq!(session(&app).env, EnvKind::TakeCover);
    assert_eq!(app.world().resource::<Reality>().kind(), EnvKind::TakeCover);
    assert_eq!(mode(&app), Mode::Lockstep, "the mode survives the switch");
    assert_eq!(driver(&app), Driver::Human, "no Take Cover model, so no C");
    let timestep = app.world().resource::<Time<Fixed>>().timestep();
    assert!(
        (timestep.as_secs_f64() - 1.0 / 35.0).abs() < 1e-6,
        "Take Cover steps at 35 Hz: {timestep:?}"
    );
    let status = &app.world().resource::<WorldModelRuntime>().status;
    assert!(
        matches!(
            status,
            ModelStatus::Missing {
                env: EnvKind::TakeCover,
                ..
            }
        ),
        "{status:?}"
    );

    // Take Cover steps at its own rate with a one-value action.
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(
        1.0 / 35.0,
    )));
    keys(&mut app).press(KeyCode::ArrowRight);
    frames(&mut app, 3);
    assert_eq!(session(&app).last_action, vec![1.0]);

    send(&mut app, PlayCommand::SwitchEnv(Some(EnvKind::CarRacing)));
    assert_eq!(app.world().resource::<Reality>().kind(), EnvKind::CarRacing);
    assert_eq!(session(&app).last_action.len(), 3);
}

#[test]
fn lecture_controls_toggle_and_clamp() {
    let mut app = app_for(EnvKind::CarRacing);
    tap(&mut app, KeyCode::Escape);
    assert!(
        !app.world().resource::<Presentation>().help_open,
        "Escape never opens the help"
    );
    tap(&mut app, KeyCode::F1);
    assert!(app.world().resource::<Presentation>().help_open);
    tap(&mut app, KeyCode::Escape);
    assert!(
        !app.world().resource::<Presentation>().help_open,
        "Escape closes it"
    );
    tap(&mut app, KeyCode::Tab);
    assert!(!app.world().resource::<Presentation>().side_panel_shown());
    tap(&mut app, KeyCode::Tab);
    assert!(app.world().resource::<Presentation>().side_panel_shown());
    tap(&mut app, KeyCode::KeyV);
    assert!(app.world().resource::<Presentation>().presenter);
    tap(&mut app, KeyCode::KeyV);
    assert!(
        !app.world().resource::<Presentation>().presenter,
        "V again leaves it"
    );
    tap(&mut app, KeyCode::Equal);
    let scale = app.world().resource::<Presentation>().ui_scale;
    assert_close(scale, 1.1, "UI scale after one step");
    for _ in 0..40 {
        tap(&mut app, KeyCode::Equal);
    }
    assert_eq!(
        app.world().resource::<Presentation>().ui_scale,
        4.0,
        "the scale is bounded"
    );
    tap(&mut app, KeyCode::F11);
    assert!(app.world().resource::<Presentation>().fullscreen);
}

/// A real (untrained, randomly initialised) model bundle on disk, with a random controller.
fn write_random_bundle(env: EnvKind) -> tempfile::TempDir {
    write_random_bundle_evolved_in(env, None)
}

/// As [`write_random_bundle`], its C recorded as evolved in `dream`.
fn write_random_bundle_evolved_in(
    env: EnvKind,
    dream: Option<dreamplay::model::bundle::EvolvedDream>,
) -> tempfile::TempDir {
    use dreamplay::model::bundle::{self, Precision};
    use dreamplay::model::{FlexBackend, ModelSpec, WorldModel};
    use rand::{Rng, SeedableRng};

    let dir = tempfile::Builder::new()
        .prefix(&format!("dreamplay-app-models-{}-", env.name()))
        .tempdir()
        .expect("scratch folder");
    let device = Default::default();
    let mut model = WorldModel::<FlexBackend>::init(ModelSpec::paper(env), &device);
    if let Some(controller) = model.controller.as_mut() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let params: Vec<f32> = (0..controller.param_count())
            .map(|_| rng.random_range(-0.1..0.1))
            .collect();
        controller
            .set_params(&params)
            .expect("params of the right length");
    }
    model.provenance.controller = Some(bundle::TrainingInfo {
        dream,
        ..Default::default()
    });
    let path = dreamplay::app::world_model::model_path(dir.path(), env);
    bundle::save(&model, &path, Precision::F32).expect("save the bundle");
    dir
}

fn app_with_models_dir(env: EnvKind, models_dir: std::path::PathBuf) -> App {
    let mut options = PlayOptions::new(env);
    options.models_dir = models_dir;
    options.backend = Some("flex".into());
    app_with_options(options)
}

#[test]
fn a_model_bundle_on_disk_runs_every_mode() {
    let dir = write_random_bundle(EnvKind::CarRacing);
    let mut app = app_with_models_dir(EnvKind::CarRacing, dir.path().to_path_buf());
    let status = app.world().resource::<WorldModelRuntime>().status.clone();
    assert!(
        matches!(
            status,
            ModelStatus::Ready {
                controller: true,
                ..
            }
        ),
        "{status:?}"
    );

    frames(&mut app, 3);
    let frames_now = app.world().resource::<ModelFrames>();
    let reconstruction = frames_now.reconstruction.as_ref().expect("V reconstructs");
    assert_eq!(reconstruction.dimensions(), (64, 64));
    assert!(frames_now.dream.is_some(), "M's prediction is decoded");

    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller);
    frames(&mut app, 2);
    let action = session(&app).last_action.clone();
    assert_eq!(action.len(), 3);
    assert!(
        (-1.0..=1.0).contains(&action[0])
            && (0.0..=1.0).contains(&action[1])
            && (0.0..=1.0).contains(&action[2]),
        "C's action is in the action space: {action:?}"
    );

    tap(&mut app, KeyCode::F6);
    let generation = app.world().resource::<DreamEpisode>().generation;
    frames(&mut app, 3);
    // An untrained M may predict "done" at once, restarting the dream every step: either way, it moves.
    let dream = app.world().resource::<DreamEpisode>();
    assert!(
        dream.generation >= generation + 2,
        "the dream steps: {} steps, {} restarts",
        dream.steps,
        dream.restarts
    );
    tap(&mut app, KeyCode::F7);
    frames(&mut app, 3);
    assert!(!app.world().resource::<Divergence>().points.is_empty());
    tap(&mut app, KeyCode::F8);
    let z = set_latent_dim(&mut app, 31, 2.5);
    assert_eq!(z.map(|z| (z.len(), z[31])), Some((32, 2.5)));
    assert!(
        app.world().resource::<WorldModelRuntime>().runner.is_some(),
        "nothing failed on the way"
    );
}

#[test]
fn a_broken_model_file_is_explained_and_reality_still_runs() {
    let scratch = tempfile::Builder::new()
        .prefix("dreamplay-app-broken-")
        .tempdir()
        .expect("scratch folder");
    let dir = scratch.path().to_path_buf();
    let path = dreamplay::app::world_model::model_path(&dir, EnvKind::CarRacing);
    std::fs::create_dir_all(path.parent().expect("a parent dir")).expect("create the models dir");
    std::fs::write(&path, b"not a model at all").expect("write the broken file");
    let mut app = app_with_models_dir(EnvKind::CarRacing, dir.clone());
    let status = app.world().resource::<WorldModelRuntime>().status.clone();
    let ModelStatus::Unavailable { reason } = status else {
        panic!("expected an unavailable model, got {status:?}");
    };
    assert!(
        reason.contains("world-model.bin"),
        "the reason names the file: {reason}"
    );
    let before = real_steps(&app);
    frames(&mut app, 3);
    assert_eq!(real_steps(&app) - before, 3);
    tap(&mut app, KeyCode::F6);
    frames(&mut app, 2);
    assert!(!app.world().resource::<DreamEpisode>().forked);
}

#[test]
fn c_sees_reality_when_it_drives_reality_and_the_dream_in_the_dream() {
    let runner = FakeDream::new(true);
    let followed = runner.real_followed.clone();
    let mut app = app_for(EnvKind::CarRacing);
    app.insert_resource(WorldModelRuntime::ready(Box::new(runner)));
    tap(&mut app, KeyCode::KeyC);
    assert_eq!(driver(&app), Driver::Controller);

    // Lockstep: reality and the dream both take C's action from reality's state.
    tap(&mut app, KeyCode::F7);
    assert_eq!(mode(&app), Mode::Lockstep);
    let before = followed.load(std::sync::atomic::Ordering::Relaxed);
    frames(&mut app, 4);
    assert_eq!(session(&app).last_action, FAKE_C_REAL_ACTION.to_vec());
    assert!(
        followed.load(std::sync::atomic::Ordering::Relaxed) >= before + 3,
        "M follows reality step by step"
    );

    // A new real episode: the reality-following memory starts over.
    tap(&mut app, KeyCode::Backspace);
    assert!(followed.load(std::sync::atomic::Ordering::Relaxed) <= 2);

    // Drive the dream: C acts from the dream's state.
    tap(&mut app, KeyCode::F6);
    assert_eq!(mode(&app), Mode::DriveDream);
    frames(&mut app, 2);
    assert_eq!(session(&app).last_action, FAKE_C_ACTION.to_vec());
}

#[test]
fn the_done_odds_slider_reaches_the_dream_clamped() {
    let fake = FakeDream::new(true);
    let odds_in_runner = fake.done_odds.clone();
    let runner_odds = || f32::from_bits(odds_in_runner.load(std::sync::atomic::Ordering::Relaxed));
    let rule_in_runner = fake.done_rule.clone();
    let mut app = app_for(EnvKind::TakeCover);
    app.insert_resource(WorldModelRuntime::ready(Box::new(fake)));
    assert_eq!(session(&app).done_odds, 1.0, "M's own odds by default");

    send(&mut app, PlayCommand::SetDoneOdds(0.1));
    assert_eq!((session(&app).done_odds, runner_odds()), (0.1, 0.1));
    send(&mut app, PlayCommand::SetDoneOdds(0.0));
    assert_eq!(
        (session(&app).done_odds, runner_odds()),
        (0.01, 0.01),
        "a dream that can never end is not on the slider"
    );
    send(&mut app, PlayCommand::SetDoneOdds(f32::NAN));
    assert_eq!((session(&app).done_odds, runner_odds()), (0.01, 0.01));

    // The rule buttons reach the dream too.
    assert_eq!(
        session(&app).done_rule,
        DoneRule::Sample,
        "drawn by default"
    );
    send(&mut app, PlayCommand::SetDoneRule(DoneRule::Threshold));
    assert_eq!(
        (session(&app).done_rule, *rule_in_runner.lock().unwrap()),
        (DoneRule::Threshold, Some(DoneRule::Threshold))
    );

    // This model records no dream for C: back to the env's tau, M's own odds, drawn.
    send(&mut app, PlayCommand::SetTau(2.5));
    send(&mut app, PlayCommand::DreamAsTrained);
    assert_eq!(
        (session(&app).tau, session(&app).done_odds, runner_odds()),
        (1.15, 1.0, 1.0)
    );
    assert_eq!(
        (session(&app).done_rule, *rule_in_runner.lock().unwrap()),
        (DoneRule::Sample, Some(DoneRule::Sample))
    );
}

#[test]
fn the_app_dreams_as_the_bundle_says_c_was_evolved() {
    use dreamplay::model::bundle::EvolvedDream;
    let evolved = EvolvedDream {
        tau: 1.3,
        done_odds: 0.1,
        done_rule: DoneRule::Threshold,
        context_steps: 10,
    };
    let dir = write_random_bundle_evolved_in(EnvKind::TakeCover, Some(evolved));
    let mut app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (1.3, 0.1, DoneRule::Threshold)
    );
    assert_eq!(s.evolved_dream, Some(evolved));

    send(&mut app, PlayCommand::SetTau(0.5));
    send(&mut app, PlayCommand::SetDoneOdds(2.0));
    send(&mut app, PlayCommand::SetDoneRule(DoneRule::Sample));
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (0.5, 2.0, DoneRule::Sample)
    );
    send(&mut app, PlayCommand::DreamAsTrained);
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (1.3, 0.1, DoneRule::Threshold)
    );

    // A bundle without the record: the env's defaults, M's own odds, drawn.
    let plain = write_random_bundle(EnvKind::TakeCover);
    let app = app_with_models_dir(EnvKind::TakeCover, plain.path().to_path_buf());
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule, s.evolved_dream),
        (1.15, 1.0, DoneRule::Sample, None)
    );
}

/// The shipped Take Cover C was evolved in a dream at tau 0.5 with M's done odds divided by ten;
/// its bundle says so, and the app starts there, so that C handed the wheel meets the dream it
/// knows.
#[test]
fn the_shipped_take_cover_model_starts_the_app_in_the_dream_c_was_evolved_in() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let app = app_with_models_dir(EnvKind::TakeCover, models);
    let s = session(&app);
    let evolved = s
        .evolved_dream
        .expect("the shipped bundle records C's dream");
    assert_eq!(
        (evolved.tau, evolved.done_odds, evolved.context_steps),
        (0.5, 0.1, 10)
    );
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (0.5, 0.1, DoneRule::Sample)
    );
}

#[test]
fn every_key_and_pad_button_sends_one_command() {
    let mut keys = Vec::new();
    let mut pads = Vec::new();
    for control in Control::ALL {
        for binding in control.spec().bindings {
            keys.extend_from_slice(binding.keys);
            pads.extend_from_slice(binding.pad);
        }
    }
    for held in [
        DRIVE_KEYS.left,
        DRIVE_KEYS.right,
        DRIVE_KEYS.up,
        DRIVE_KEYS.down,
    ] {
        keys.extend_from_slice(held);
    }
    let (all_keys, all_pads) = (keys.len(), pads.len());
    keys.sort_by_key(|key| format!("{key:?}"));
    keys.dedup();
    pads.sort_by_key(|pad| format!("{pad:?}"));
    pads.dedup();
    assert_eq!(
        (keys.len(), pads.len()),
        (all_keys, all_pads),
        "a key bound twice"
    );
}

#[test]
fn every_tau_preset_and_mode_has_a_key() {
    for (index, _) in TAU_PRESETS.iter().enumerate() {
        assert!(
            key_for(&PlayCommand::TauPreset(index)).is_some(),
            "preset {index}"
        );
    }
    for mode in Mode::ALL {
        assert!(key_for(&PlayCommand::SetMode(mode)).is_some(), "{mode:?}");
    }
    assert_eq!(Mode::Lockstep.key_label(), "F7");
}

#[test]
fn the_help_names_keys_as_people_read_them() {
    assert_eq!(Control::StepOnce.keys_text(), "N");
    assert_eq!(Control::HandToController.keys_text(), "C (pad Y)");
    assert_eq!(Control::TauPresets.keys_text(), "1 2 3 4 5");
    assert_eq!(Control::UiScale.keys_text(), "+ -");
    assert_eq!(
        Control::DreamFromReality.button_text(),
        "Dream from here (F)"
    );
    assert_eq!(
        Control::TauPresets.spec().help,
        "tau presets 0.1 / 0.5 / 1.0 / 1.15 / 1.3"
    );
}

/// README.md shows the controls table the app generates, between its `controls` markers.
#[test]
fn the_readme_lists_the_controls_the_app_binds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md is readable");
    let lines: Vec<&str> = readme.lines().collect();
    let marker = |name: &str| lines.iter().position(|line| line.trim() == name);
    let expected = controls_markdown();
    let (Some(begin), Some(end)) = (
        marker("<!-- controls:begin -->"),
        marker("<!-- controls:end -->"),
    ) else {
        panic!("README.md lacks the controls markers; put this between them:\n{expected}");
    };
    let shown = lines[begin + 1..end].join("\n");
    assert_eq!(
        shown.trim(),
        expected.trim(),
        "README.md's controls table is stale; put this between the markers:\n{expected}"
    );
}

#[test]
fn recordings_are_named_by_utc_second() {
    use dreamplay::app::recording::file_stamp;
    use std::time::{Duration, UNIX_EPOCH};
    assert_eq!(file_stamp(UNIX_EPOCH), "19700101-000000");
    assert_eq!(
        file_stamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "20231114-221320"
    );
}

fn runner(app: &App) -> &dyn DreamRunner {
    app.world()
        .resource::<WorldModelRuntime>()
        .runner
        .as_deref()
        .expect("the model loaded and nothing failed")
}

#[test]
fn the_futures_fan_forks_every_future_from_one_state_and_tau_spreads_them() {
    use dreamplay::app::instruments::FuturesFan;
    let dir = write_random_bundle(EnvKind::CarRacing);
    let mut app = app_with_models_dir(EnvKind::CarRacing, dir.path().to_path_buf());
    send(&mut app, PlayCommand::SetMode(Mode::Lockstep));
    send(&mut app, PlayCommand::SetFanSize(5));
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Futures));
    // The command applies after this frame's sim step; the fan forks on the next.
    frame(&mut app);

    // At the fork, every future is reality's state: V's encoding of the real frame.
    let fan = app.world().resource::<FuturesFan>();
    assert_eq!((fan.frames.len(), fan.steps), (5, 0));
    assert_eq!(fan.from, Some(View::Reality));
    assert!(
        fan.reality.is_some(),
        "reality's continuation sits among them"
    );
    let real_z = runner(&app).reality_z().expect("M follows reality");
    let futures = runner(&app).futures_z();
    assert_eq!(futures.len(), 5);
    assert!(futures.iter().all(|z| *z == real_z), "one fork for all");
    assert_eq!(fan.spread.as_ref().map(|s| s.mean), Some(0.0));

    // Stepped with the same actions at tau 1, they draw apart.
    send(&mut app, PlayCommand::SetTau(1.0));
    frames(&mut app, 3);
    let futures = runner(&app).futures_z();
    assert_ne!(futures[0], futures[1], "M's draws differ per future");
    let fan = app.world().resource::<FuturesFan>();
    assert!(fan.steps >= 3, "{}", fan.steps);
    let spread_hot = fan.spread.as_ref().expect("a spread").mean;
    assert!(spread_hot > 0.0);

    // The fan forks afresh every `fan_horizon` steps, all futures equal again.
    send(&mut app, PlayCommand::SetFanHorizon(5));
    frames(&mut app, 6);
    let fan = app.world().resource::<FuturesFan>();
    assert!(
        fan.steps <= 5 && fan.forks >= 2,
        "steps {} forks {}",
        fan.steps,
        fan.forks
    );

    // Closing the fan drops its frames.
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Futures));
    frame(&mut app);
    assert!(app.world().resource::<FuturesFan>().frames.is_empty());
}

#[test]
fn lockstep_re_sync_resets_the_dream_to_reality_every_k_steps() {
    let dir = write_random_bundle(EnvKind::CarRacing);
    let mut app = app_with_models_dir(EnvKind::CarRacing, dir.path().to_path_buf());
    send(&mut app, PlayCommand::SetMode(Mode::Lockstep));
    send(&mut app, PlayCommand::SetTau(1.0));
    // Open loop: the dream drifts from V's encoding of reality.
    frames(&mut app, 3);
    assert_ne!(Some(runner(&app).z()), runner(&app).reality_z());

    // K = 1: after every step the dream is V's encoding of the real frame again.
    send(&mut app, PlayCommand::SetResync(Some(1)));
    for _ in 0..3 {
        frame(&mut app);
        assert_eq!(Some(runner(&app).z()), runner(&app).reality_z());
    }
    let divergence = app.world().resource::<Divergence>();
    assert!(divergence.syncs >= 3);
    assert!(
        divergence
            .by_horizon()
            .iter()
            .all(|(steps, _, _)| *steps >= 1),
        "the plot counts steps since the last sync"
    );

    // K cycles off -> 1 -> 5 ...; off again after the last.
    send(&mut app, PlayCommand::SetResync(None));
    tap(&mut app, KeyCode::KeyK);
    assert_eq!(session(&app).resync_every, Some(1));
    tap(&mut app, KeyCode::KeyK);
    assert_eq!(session(&app).resync_every, Some(5));
}

#[test]
fn the_mixture_panel_shows_ms_own_prediction() {
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use dreamplay::app::instruments::MixtureReadout;
    use dreamplay::model::FlexBackend;
    use dreamplay::model::bundle::{self, Expect};
    use dreamplay::model::mdrnn::MdnRnnState;

    let env = EnvKind::CarRacing;
    let dir = write_random_bundle(env);
    let mut app = app_with_models_dir(env, dir.path().to_path_buf());
    send(&mut app, PlayCommand::SetMode(Mode::LatentExplorer));
    send(&mut app, PlayCommand::TogglePause);
    // A known input: a random z with M's memory zeroed, the idle action.
    send(&mut app, PlayCommand::DreamFromRandom);
    let z = runner(&app).z();
    send(&mut app, PlayCommand::SetMixtureDim(7));
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Mixture));
    assert!(
        app.world().resource::<MixtureReadout>().mixture.is_none(),
        "no prediction before the dream steps"
    );
    send(&mut app, PlayCommand::SetTau(0.5));
    send(&mut app, PlayCommand::StepOnce);
    frame(&mut app);

    let readout = app.world().resource::<MixtureReadout>();
    let shown = readout.mixture.clone().expect("M predicted z7");
    assert_eq!(readout.dim, 7);
    assert_eq!(readout.tau, 0.5);
    assert_eq!(
        readout.sampled,
        Some(runner(&app).z()[7]),
        "the drawn value is z7 now"
    );

    let device = Default::default();
    let path = dreamplay::app::world_model::model_path(dir.path(), env);
    let rnn = bundle::load_mdrnn::<FlexBackend>(&path, &Expect::env(env), &device).expect("M");
    let (zs, hs) = (rnn.z_size(), rnn.hidden_size());
    let (packed, _) = rnn.step_packed(
        Tensor::from_data(TensorData::new(z, [1, zs]), &device),
        Tensor::from_data(TensorData::new(vec![0.0f32; 3], [1, 3]), &device),
        MdnRnnState::zeros(1, hs, &device),
    );
    let packed: Vec<f32> = packed.into_data().to_vec().expect("f32");
    let expected = rnn
        .packed_layout()
        .row(&packed, 0)
        .mixture(7, rnn.n_gaussians());
    for (a, b) in [
        (&shown.logmix, &expected.logmix),
        (&shown.mu, &expected.mu),
        (&shown.logsigma, &expected.logsigma),
    ] {
        assert_eq!(a.len(), 5);
        for (x, y) in a.iter().zip(b) {
            assert_within(*x, *y, 1e-5, "M's own output");
        }
    }
    let weights = shown.weights(1.0);
    assert_within(weights.iter().sum(), 1.0, 1e-5, "pi sums to 1");
    // A low tau sharpens the weights toward the likeliest component.
    let top = weights.iter().cloned().fold(0.0, f32::max);
    assert!(shown.weights(0.5).iter().cloned().fold(0.0, f32::max) >= top);
}

#[test]
fn latent_slider_edits_reach_the_running_dream() {
    let env = EnvKind::CarRacing;
    let dir = write_random_bundle(env);
    let dream_after_one_step = |edit: bool| {
        let mut app = app_with_models_dir(env, dir.path().to_path_buf());
        send(&mut app, PlayCommand::SetDoneOdds(0.01));
        send(&mut app, PlayCommand::SetMode(Mode::DriveDream));
        send(&mut app, PlayCommand::TogglePause);
        if edit {
            let z = set_latent_dim(&mut app, 3, 2.0).expect("a runner");
            assert_eq!(z[3], 2.0, "the slider sets the running dream's z");
        }
        send(&mut app, PlayCommand::StepOnce);
        frame(&mut app);
        runner(&app).z()
    };
    let (plain, edited) = (dream_after_one_step(false), dream_after_one_step(true));
    let changed = plain.iter().zip(&edited).filter(|(a, b)| a != b).count();
    assert!(
        changed > 1,
        "M carries the edit into every dimension's next value ({changed} changed)"
    );
}

#[test]
fn previews_show_each_named_action_from_the_paused_state() {
    use dreamplay::app::instruments::ActionPreviews;
    let env = EnvKind::TakeCover;
    let dir = write_random_bundle(env);
    let mut app = app_with_models_dir(env, dir.path().to_path_buf());
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Actions));
    assert!(
        app.world().resource::<ActionPreviews>().items.is_empty(),
        "only when paused"
    );
    send(&mut app, PlayCommand::TogglePause);
    frame(&mut app);
    let previews = app.world().resource::<ActionPreviews>();
    let names: Vec<&str> = previews.items.iter().map(|p| p.name).collect();
    assert_eq!(names, ["left", "stay", "right"]);
    assert_eq!(previews.steps, 10);
    assert!(
        previews
            .items
            .iter()
            .all(|p| p.next.dimensions() == (64, 64))
    );
    let real_steps_paused = real_steps(&app);
    send(&mut app, PlayCommand::SetPreviewSteps(3));
    assert_eq!(app.world().resource::<ActionPreviews>().steps, 3);
    assert_eq!(real_steps(&app), real_steps_paused, "previews move nothing");
}

/// A random bundle that also ships latent statistics and a map, computed from random rows.
fn write_random_bundle_with_atlas(env: EnvKind) -> tempfile::TempDir {
    use dreamplay::model::FlexBackend;
    use dreamplay::model::atlas::{LatentMap, LatentRows, LatentStats};
    use dreamplay::model::bundle::{self, Expect, Precision};
    use rand::{Rng, SeedableRng};

    let dir = write_random_bundle(env);
    let path = dreamplay::app::world_model::model_path(dir.path(), env);
    let device = Default::default();
    let mut model = bundle::load::<FlexBackend>(&path, &Expect::env(env), &device).expect("load");
    let z_size = model.spec.z_size;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut rows = LatentRows::new(z_size);
    for step in 0..400 {
        let z: Vec<f32> = (0..z_size)
            .map(|d| rng.random_range(-1.0..1.0) * (1.0 + d as f32 / 4.0))
            .collect();
        rows.push(&z, step, 1.0, false).expect("a row");
    }
    model.latent_stats = Some(LatentStats::compute(&rows).expect("stats"));
    model.latent_map = Some(LatentMap::compute(&rows, 100, 0).expect("map"));
    bundle::save(&model, &path, Precision::F32).expect("save");
    dir
}

#[test]
fn a_map_point_puts_the_dream_there_and_the_explorer_opens() {
    let env = EnvKind::TakeCover;
    let plain = write_random_bundle(env);
    let app = app_with_models_dir(env, plain.path().to_path_buf());
    assert!(
        runner(&app).latent_map().is_none() && runner(&app).latent_stats().is_none(),
        "a bundle without the statistics still loads"
    );

    let dir = write_random_bundle_with_atlas(env);
    let mut app = app_with_models_dir(env, dir.path().to_path_buf());
    let map = runner(&app).latent_map().expect("the map ships").clone();
    assert_eq!(map.points.len(), 100);
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Map));
    let picked = map.points[17].z.clone();
    send(&mut app, PlayCommand::JumpToLatent(picked.clone()));
    frame(&mut app);
    assert_eq!(runner(&app).z(), picked, "the dream's z is the point's");
    assert_eq!(mode(&app), Mode::LatentExplorer);
    assert!(app.world().resource::<DreamEpisode>().forked);

    // The map follows reality's and the dream's paths while it is open.
    send(&mut app, PlayCommand::SetMode(Mode::Lockstep));
    frames(&mut app, 4);
    let trails = app
        .world()
        .resource::<dreamplay::app::instruments::LatentTrails>();
    assert!(trails.reality.len() >= 3 && trails.dream.len() >= 3);

    // Inside M starts on the dimension that varies most over the data.
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Mixture));
    frame(&mut app);
    let stats = runner(&app).latent_stats().expect("stats").clone();
    let widest = (0..stats.dims.len())
        .max_by(|a, b| stats.dims[*a].sd.total_cmp(&stats.dims[*b].sd))
        .expect("dims");
    assert_eq!(
        app.world()
            .resource::<dreamplay::app::instruments::MixtureReadout>()
            .dim,
        widest
    );
}

/// The app playing `tour` (TOML) from scene `start`, with `models_dir`'s bundles.
fn app_with_tour(tour: &str, start: usize, models_dir: std::path::PathBuf) -> App {
    use dreamplay::app::tour::{Tour, TourFile};
    let file = TourFile::parse(tour, "test.toml").expect("the test tour parses");
    let mut options = PlayOptions::new(EnvKind::CarRacing);
    options.models_dir = models_dir;
    options.backend = Some("flex".into());
    options.tour = Some(Tour::new(file, start));
    let mut app = app_with_options(options);
    frames(&mut app, 2);
    app
}

fn tour_at(app: &App) -> (usize, bool) {
    let tour = app.world().resource::<dreamplay::app::tour::Tour>();
    (tour.current, tour.active)
}

const THREE_SCENES: &str = r#"
title = "three"

[[scene]]
title = "one"
caption = "the car"
env = "car-racing"
tau = 0.3

[[scene]]
title = "two"
caption = "the doom"
env = "take-cover"
mode = "drive-dream"
tau = 1.3

[[scene]]
title = "three"
caption = "the car again"
env = "car-racing"
mode = "lockstep"
"#;

#[test]
fn page_down_and_up_step_through_the_tour_and_escape_leaves_it() {
    let mut app = app_with_tour(
        THREE_SCENES,
        0,
        std::env::temp_dir().join("dreamplay-tests-no-models"),
    );
    assert_eq!(tour_at(&app), (0, true));
    assert_eq!(
        (session(&app).env, session(&app).tau),
        (EnvKind::CarRacing, 0.3)
    );
    tap(&mut app, KeyCode::PageDown);
    assert_eq!(tour_at(&app), (1, true));
    assert_eq!(session(&app).env, EnvKind::TakeCover);
    assert_close(session(&app).tau, 1.3, "scene two's tau");
    assert_eq!(mode(&app), Mode::DriveDream);
    tap(&mut app, KeyCode::PageDown);
    tap(&mut app, KeyCode::PageDown);
    assert_eq!(tour_at(&app), (2, true), "the last scene stays the last");
    assert_eq!(
        (session(&app).env, mode(&app)),
        (EnvKind::CarRacing, Mode::Lockstep)
    );
    tap(&mut app, KeyCode::PageUp);
    assert_eq!(tour_at(&app), (1, true));
    assert_eq!(session(&app).env, EnvKind::TakeCover);

    // Paused, the arrows turn pages; running, they steer.
    tap(&mut app, KeyCode::Space);
    assert_eq!(sim_state(&app), SimState::Paused);
    tap(&mut app, KeyCode::ArrowRight);
    assert_eq!(tour_at(&app), (2, true));
    assert_eq!(driver(&app), Driver::Human);

    tap(&mut app, KeyCode::Escape);
    assert_eq!(tour_at(&app), (2, false), "Escape leaves the tour");
    tap(&mut app, KeyCode::PageUp);
    assert_eq!(
        tour_at(&app),
        (2, true),
        "PageUp comes back to the scene it was left in"
    );
    tap(&mut app, KeyCode::Escape);
    tap(&mut app, KeyCode::PageDown);
    assert_eq!(
        tour_at(&app),
        (2, true),
        "PageDown comes back on the next scene, the last here"
    );
}

#[test]
fn entering_a_scene_sets_every_setting_it_names() {
    use dreamplay::app::instruments::Instruments;
    use dreamplay::app::lecture::ViewKind;
    let dir = write_random_bundle(EnvKind::TakeCover);
    let tour = r#"
title = "all"

[[scene]]
title = "plain"
caption = "the car"
env = "car-racing"

[[scene]]
title = "everything"
caption = "every setting"
env = "take-cover"
mode = "lockstep"
driver = "c"
seed = 7
tau = 0.1
done_odds = 0.5
done_rule = "threshold"
fork_after = 20
paused = true
instrument = "futures"
futures = 12
resync = 10
maximise = "v"
"#;
    let mut app = app_with_tour(tour, 1, dir.path().to_path_buf());
    let s = session(&app);
    assert_eq!(
        (s.env, s.driver, s.resync_every),
        (EnvKind::TakeCover, Driver::Controller, Some(10))
    );
    assert_close(s.tau, 0.1, "tau");
    assert_close(s.done_odds, 0.5, "done odds");
    assert_eq!(s.done_rule, DoneRule::Threshold);
    let reality = app.world().resource::<Reality>();
    assert_eq!(
        (reality.seed, reality.steps()),
        (7, 20),
        "seed and the steps before the fork"
    );
    assert_eq!(
        (mode(&app), sim_state(&app)),
        (Mode::Lockstep, SimState::Paused)
    );
    assert!(app.world().resource::<DreamEpisode>().forked);
    let instruments = app.world().resource::<Instruments>();
    assert_eq!(
        (instruments.open, instruments.fan_size),
        (Some(Instrument::Futures), 12)
    );
    assert_eq!(
        app.world().resource::<Presentation>().maximised,
        Some(ViewKind::VSees)
    );

    // Scene one names none of these: each goes back to its default.
    tap(&mut app, KeyCode::PageUp);
    let s = session(&app);
    assert_eq!(
        (s.env, s.driver, s.resync_every),
        (EnvKind::CarRacing, Driver::Human, None)
    );
    assert_eq!(
        (mode(&app), sim_state(&app)),
        (Mode::DriveReality, SimState::Running)
    );
    assert_eq!(app.world().resource::<Instruments>().open, None);
    assert_eq!(app.world().resource::<Presentation>().maximised, None);
    assert_eq!(app.world().resource::<Reality>().seed, 0);
}

#[test]
fn a_scene_shows_the_same_frames_each_time_it_is_entered() {
    let dir = write_random_bundle(EnvKind::TakeCover);
    let tour = r#"
title = "again"

[[scene]]
title = "hot dream"
caption = "C in a hot dream"
env = "take-cover"
mode = "drive-dream"
driver = "c"
seed = 3
tau = 1.3
fork_after = 12
paused = true

[[scene]]
title = "elsewhere"
caption = "the car"
env = "car-racing"
mode = "lockstep"
seed = 9
"#;
    let mut app = app_with_tour(tour, 0, dir.path().to_path_buf());
    // Paused, the scene moves only by single steps, so both visits take the same steps.
    let run = |app: &mut App| {
        let mut seen = Vec::new();
        for _ in 0..10 {
            tap(app, KeyCode::KeyN);
            // The step runs on the next fixed tick, which a frame may lack.
            frames(app, 2);
            let runner = app.world().resource::<WorldModelRuntime>();
            seen.push(runner.runner.as_ref().expect("the bundle loads").z());
        }
        (seen, app.world().resource::<Reality>().obs.clone())
    };
    let first = run(&mut app);
    tap(&mut app, KeyCode::PageDown);
    frames(&mut app, 7);
    tap(&mut app, KeyCode::PageUp);
    let second = run(&mut app);
    assert_eq!(first.1, second.1, "reality shows the same frame");
    assert_eq!(first.0, second.0, "the dream draws the same z");
    assert!(first.0.iter().any(|z| *z != first.0[0]), "the dream moved");
}

#[test]
fn blank_maximise_and_escape_work_innermost_first() {
    use dreamplay::app::lecture::ViewKind;
    let mut app = app_for(EnvKind::TakeCover);
    let presentation = |app: &App| app.world().resource::<Presentation>().clone();
    tap(&mut app, KeyCode::F4);
    assert_eq!(presentation(&app).maximised, Some(ViewKind::Dream));
    tap(&mut app, KeyCode::F2);
    assert_eq!(
        presentation(&app).maximised,
        Some(ViewKind::Reality),
        "another view replaces it"
    );
    tap(&mut app, KeyCode::KeyB);
    assert!(presentation(&app).blank);
    let steps = real_steps(&app);
    frames(&mut app, 5);
    assert!(
        real_steps(&app) > steps,
        "the sim goes on behind the black screen"
    );
    tap(&mut app, KeyCode::Period);
    assert!(
        !presentation(&app).blank,
        "period, which clickers send, also brings it back"
    );
    assert_eq!(
        sim_state(&app),
        SimState::Running,
        "period no longer single-steps"
    );
    tap(&mut app, KeyCode::KeyB);
    tap(&mut app, KeyCode::F11);
    assert!(presentation(&app).fullscreen);
    tap(&mut app, KeyCode::Escape);
    let p = presentation(&app);
    assert!(
        !p.blank && p.maximised.is_some() && p.fullscreen,
        "first the blank screen"
    );
    tap(&mut app, KeyCode::Escape);
    let p = presentation(&app);
    assert!(
        p.maximised.is_none() && p.fullscreen,
        "then the maximised view"
    );
    tap(&mut app, KeyCode::Escape);
    assert!(!presentation(&app).fullscreen, "then fullscreen");
    tap(&mut app, KeyCode::F3);
    tap(&mut app, KeyCode::F3);
    assert_eq!(
        presentation(&app).maximised,
        None,
        "the same key again shows all three"
    );
}

#[test]
fn the_side_panel_and_plot_follow_the_window_until_the_user_chooses() {
    let mut app = app_for(EnvKind::TakeCover);
    let presentation = |app: &App| app.world().resource::<Presentation>().clone();
    assert!(presentation(&app).side_panel_shown() && presentation(&app).plot_shown());
    app.world_mut().resource_mut::<Presentation>().roomy = false;
    assert!(!presentation(&app).side_panel_shown() && !presentation(&app).plot_shown());
    tap(&mut app, KeyCode::Tab);
    tap(&mut app, KeyCode::KeyL);
    assert!(
        presentation(&app).side_panel_shown() && presentation(&app).plot_shown(),
        "shown on request"
    );
    app.world_mut().resource_mut::<Presentation>().roomy = true;
    tap(&mut app, KeyCode::KeyL);
    assert!(!presentation(&app).plot_shown(), "L folds it away");
}

/// A models folder holding a Take Cover bundle with a small LSTM and three Cs: the default one,
/// evolved at tau 0.5, and two extra ones, evolved cold (threshold) and warm.
fn write_bundle_with_three_cs() -> tempfile::TempDir {
    use dreamplay::model::bundle::{self, EvolvedDream, NamedController, Precision, TrainingInfo};
    use dreamplay::model::{FlexBackend, ModelSpec, WorldModel};
    use rand::{Rng, SeedableRng};

    let dir = tempfile::Builder::new()
        .prefix("dreamplay-app-three-cs-")
        .tempdir()
        .expect("scratch folder");
    let spec = ModelSpec {
        hidden_size: 16,
        ..ModelSpec::paper(EnvKind::TakeCover)
    };
    let device = Default::default();
    let mut model = WorldModel::<FlexBackend>::init(spec, &device);
    let controller = |seed: u64| {
        let mut c = spec.controller();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let params: Vec<f32> = (0..c.param_count())
            .map(|_| rng.random_range(-0.5..0.5))
            .collect();
        c.set_params(&params).expect("params of the right length");
        c
    };
    let evolved = |tau, done_odds, done_rule, context_steps| TrainingInfo {
        dream: Some(EvolvedDream {
            tau,
            done_odds,
            done_rule,
            context_steps,
        }),
        ..TrainingInfo::default()
    };
    model.controller = Some(controller(1));
    model.provenance.controller = Some(evolved(0.5, 0.1, DoneRule::Sample, 10));
    model.extra_controllers = vec![
        NamedController {
            name: "C, evolved at tau 0.1".into(),
            controller: controller(2),
            training: evolved(0.1, 1.0, DoneRule::Threshold, 10),
        },
        NamedController {
            name: "C, evolved at tau 1.15".into(),
            controller: controller(3),
            training: evolved(1.15, 0.5, DoneRule::Sample, 0),
        },
    ];
    let path = dreamplay::app::world_model::model_path(dir.path(), EnvKind::TakeCover);
    bundle::save(&model, &path, Precision::F32).expect("save the bundle");
    dir
}

#[test]
fn selecting_a_c_drives_with_it_and_dreams_as_it_was_evolved() {
    let dir = write_bundle_with_three_cs();
    let mut app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    let names: Vec<String> = runner(&app)
        .controllers()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        [
            "C, evolved at tau 0.5",
            "C, evolved at tau 0.1",
            "C, evolved at tau 1.15"
        ]
    );
    assert_eq!(runner(&app).selected_controller(), 0);
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (0.5, 0.1, DoneRule::Sample)
    );

    tap(&mut app, KeyCode::KeyC);
    frames(&mut app, 2);

    send(&mut app, PlayCommand::SelectController(1));
    assert_eq!(runner(&app).selected_controller(), 1);
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (0.1, 1.0, DoneRule::Threshold)
    );
    assert_eq!(s.evolved_dream.map(|d| d.tau), Some(0.1));
    assert_eq!(runner(&app).evolved_dream(), s.evolved_dream);
    let notice = app.world().resource::<Notice>().text.clone();
    assert!(
        notice.starts_with("C, evolved at tau 0.1: dreaming as it was evolved (tau 0.10"),
        "{notice}"
    );
    assert_eq!(driver(&app), Driver::Controller, "C keeps the wheel");

    // "Dream as trained" now means the selected C's dream.
    send(&mut app, PlayCommand::SetTau(1.0));
    send(&mut app, PlayCommand::DreamAsTrained);
    assert_eq!(session(&app).tau, 0.1);

    send(&mut app, PlayCommand::SelectController(2));
    let s = session(&app);
    assert_eq!(
        (s.tau, s.done_odds, s.done_rule),
        (1.15, 0.5, DoneRule::Sample)
    );

    // A C that is not there changes nothing and says so.
    send(&mut app, PlayCommand::SelectController(3));
    assert_eq!(runner(&app).selected_controller(), 2);
    assert_eq!(session(&app).tau, 1.15);
    let notice = app.world().resource::<Notice>().text.clone();
    assert!(notice.contains("no C number 3"), "{notice}");
}

#[test]
fn the_experiment_scores_every_c_in_the_background() {
    use dreamplay::app::experiment::{Experiment, ExperimentState};

    let dir = write_bundle_with_three_cs();
    let mut app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    assert_eq!(
        app.world().resource::<Experiment>().state,
        ExperimentState::Idle
    );
    send(&mut app, PlayCommand::RunTable { episodes: 2 });
    assert!(app.world().resource::<Experiment>().is_running());
    let started = std::time::Instant::now();
    let mut seen_progress = false;
    let rows = loop {
        frame(&mut app);
        match &app.world().resource::<Experiment>().state {
            ExperimentState::Running { total, .. } => seen_progress |= *total == 12,
            ExperimentState::Finished(rows) => break rows.clone(),
            other => panic!("the run stopped: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the table took over 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(seen_progress, "the progress reached the resource");
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "C, evolved at tau 0.5",
            "C, evolved at tau 0.1",
            "C, evolved at tau 1.15"
        ]
    );
    assert!(rows.iter().all(|r| r.real.n == 2 && r.dream.n == 2));
    assert_eq!(rows[1].tau(), 0.1);
    assert_eq!(
        app.world().resource::<Experiment>().env,
        Some(EnvKind::TakeCover)
    );

    // Cancelled, a run goes back to idle; the app steps on meanwhile.
    send(&mut app, PlayCommand::RunTable { episodes: 50 });
    let before = real_steps(&app);
    send(&mut app, PlayCommand::CancelTable);
    assert_eq!(
        app.world().resource::<Experiment>().state,
        ExperimentState::Idle
    );
    frames(&mut app, 3);
    assert!(real_steps(&app) > before);

    // Without a model, the run fails with the reason.
    let mut bare = app_for(EnvKind::TakeCover);
    send(&mut bare, PlayCommand::RunTable { episodes: 1 });
    let started = std::time::Instant::now();
    let reason = loop {
        frame(&mut bare);
        if let ExperimentState::Failed(reason) = &bare.world().resource::<Experiment>().state {
            break reason.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never failed");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(reason.contains("world-model.bin"), "{reason}");
}

#[test]
fn a_scene_that_names_a_c_drives_with_it_in_its_dream() {
    let dir = write_bundle_with_three_cs();
    let tour = r#"
title = "cs"

[[scene]]
title = "cold"
caption = "the cold C"
env = "take-cover"
mode = "drive-dream"
driver = "c"
controller = "C, evolved at tau 0.1"

[[scene]]
title = "own"
caption = "the bundle's own C"
env = "take-cover"
driver = "c"

[[scene]]
title = "unknown"
caption = "a C the bundle lacks"
env = "take-cover"
controller = "C, evolved on the moon"
"#;
    let mut app = app_with_tour(tour, 0, dir.path().to_path_buf());
    let selected = |app: &App| {
        let runtime = app.world().resource::<WorldModelRuntime>();
        runtime
            .runner
            .as_ref()
            .expect("the bundle loads")
            .selected_controller()
    };
    assert_eq!(selected(&app), 1);
    let s = session(&app);
    assert_close(s.tau, 0.1, "the cold C's own tau");
    assert_eq!(
        (s.done_rule, s.driver),
        (DoneRule::Threshold, Driver::Controller)
    );
    tap(&mut app, KeyCode::PageDown);
    assert_eq!(
        selected(&app),
        0,
        "a scene that names no C gets the bundle's own"
    );
    assert_close(session(&app).tau, 0.5, "the default C's tau");
    tap(&mut app, KeyCode::PageDown);
    assert_eq!(selected(&app), 0);
    let notice = &app.world().resource::<Notice>().text;
    assert!(
        notice.contains("on the moon") && notice.contains("C, evolved at tau 0.1"),
        "{notice}"
    );
}

#[test]
fn a_recording_takes_the_settings_it_started_with() {
    use dreamplay::app::recording::{OutputDirs, RecordingRate, RecordingSettings};
    let dir = tempfile::Builder::new()
        .prefix("dreamplay-app-gif-")
        .tempdir()
        .expect("scratch folder");
    let mut app = app_for(EnvKind::TakeCover);
    app.insert_resource(OutputDirs {
        recordings: dir.path().to_path_buf(),
        screenshots: dir.path().to_path_buf(),
    });
    assert_eq!(
        *app.world().resource::<RecordingSettings>(),
        RecordingSettings {
            rate: RecordingRate::Half,
            view_size: 192
        }
    );
    send(&mut app, PlayCommand::SetRecordingSize(10_000));
    frame(&mut app);
    assert_eq!(app.world().resource::<RecordingSettings>().view_size, 512);
    send(&mut app, PlayCommand::SetRecordingSize(64));
    send(
        &mut app,
        PlayCommand::SetRecordingRate(RecordingRate::Third),
    );
    send(&mut app, PlayCommand::ToggleRecording);
    frame(&mut app);
    // Changed while recording: for the next one.
    send(&mut app, PlayCommand::SetRecordingRate(RecordingRate::Full));
    frames(&mut app, 12);
    send(&mut app, PlayCommand::ToggleRecording);
    for _ in 0..500 {
        frame(&mut app);
        if app.world().resource::<Notice>().text.starts_with("Saved") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let notice = app.world().resource::<Notice>().text.clone();
    assert!(notice.starts_with("Saved"), "{notice}");
    let path = std::fs::read_dir(dir.path())
        .expect("the recordings folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "gif"))
        .expect("a GIF");
    assert!(notice.contains(&path.display().to_string()), "{notice}");
    let file = std::io::BufReader::new(std::fs::File::open(&path).expect("the GIF opens"));
    let decoder = image::codecs::gif::GifDecoder::new(file).expect("a GIF header");
    let frames = image::AnimationDecoder::into_frames(decoder)
        .collect_frames()
        .expect("every frame decodes");
    // 13 or so steps at a third: 4 or 5 frames, three 64-pixel views wide.
    assert!((4..=5).contains(&frames.len()), "{} frames", frames.len());
    assert_eq!(frames[0].buffer().dimensions(), (64 * 3 + 8, 64));
}

/// The app on Take Cover with a random bundle and a random flow model beside it (the folder
/// lives as long as the first value).
fn take_cover_with_flow_model() -> (tempfile::TempDir, App) {
    let dir = write_random_bundle(EnvKind::TakeCover);
    write_random_flow_model(dir.path(), EnvKind::TakeCover);
    let app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    (dir, app)
}

/// A small flow model with fresh weights beside the bundle in `models_dir`, every part there.
fn write_random_flow_model(models_dir: &std::path::Path, env: EnvKind) {
    use dreamplay::model::FlexBackend;
    use dreamplay::model::bundle::Precision;
    use dreamplay::model::flow::{FlowModel, FlowSpec, LatentStats, file as flow_file};

    let device = Default::default();
    let spec = FlowSpec {
        autoencoder_widths: [8, 8],
        unet_widths: [8, 8, 16],
        cond_size: 16,
        ..FlowSpec::default_for(env)
    };
    let mut model = FlowModel::<FlexBackend>::empty(spec);
    model.autoencoder = Some(spec.autoencoder_config().init(&device));
    model.dynamics = Some(spec.dynamics_config().init(&device));
    model.end_heads = Some(spec.end_heads_config().init(&device));
    model.latent_stats = Some(LatentStats {
        mean: vec![0.0; spec.latent_channels],
        std: vec![1.0; spec.latent_channels],
    });
    let bundle = dreamplay::app::world_model::model_path(models_dir, env);
    flow_file::save(&model, &flow_file::beside(&bundle), Precision::F32)
        .expect("save the flow model");
}

#[test]
fn the_futures_fan_follows_the_family_that_dreams() {
    use dreamplay::app::instruments::FuturesFan;
    let (_dir, mut app) = take_cover_with_flow_model();
    frames(&mut app, 2);
    tap(&mut app, KeyCode::KeyX);
    assert_eq!(session(&app).family, DreamFamily::Flow);
    send(&mut app, PlayCommand::SetMode(Mode::Lockstep));
    send(&mut app, PlayCommand::SetFanSize(4));
    send(&mut app, PlayCommand::ToggleInstrument(Instrument::Futures));
    frame(&mut app);

    // Flow futures from the last real frames: one context for all, so one frame at the fork.
    let fan = app.world().resource::<FuturesFan>();
    assert_eq!(fan.problem, None);
    assert_eq!(fan.family, Some(DreamFamily::Flow));
    assert_eq!((fan.frames.len(), fan.steps), (4, 0));
    assert_eq!(fan.spread.as_ref().map(|s| s.mean), Some(0.0));
    assert!(
        runner(&app).futures_z().is_empty(),
        "the flow model's futures have no V z"
    );
    // Each future samples its own noise, so they draw apart.
    frames(&mut app, 3);
    let fan = app.world().resource::<FuturesFan>();
    assert!(fan.steps >= 2, "{}", fan.steps);
    assert!(fan.spread.as_ref().expect("a spread").mean > 0.0);

    // Dreaming with the 2018 model again, the fan forks M's futures.
    let forks = fan.forks;
    tap(&mut app, KeyCode::KeyX);
    frame(&mut app);
    let fan = app.world().resource::<FuturesFan>();
    assert_eq!(fan.family, Some(DreamFamily::MdnRnn));
    assert_eq!(fan.forks, forks + 1, "one new fork");
    assert_eq!(runner(&app).futures_z().len(), 4);
}

fn flow_dream_moves(app: &mut App, n: usize) -> (u64, u64) {
    let before = app.world().resource::<DreamEpisode>();
    let (mdn, flow) = (before.generation, before.flow_generation);
    frames(app, n);
    let after = app.world().resource::<DreamEpisode>();
    (after.generation - mdn, after.flow_generation - flow)
}

#[test]
fn dream_with_flow_steps_the_flow_dream_in_every_mode_that_dreams() {
    let (_dir, mut app) = take_cover_with_flow_model();
    assert!(
        runner(&app).flow_status().is_ready(),
        "{:?}",
        runner(&app).flow_status()
    );
    frames(&mut app, 2);
    tap(&mut app, KeyCode::KeyX);
    assert_eq!(session(&app).family, DreamFamily::Flow);

    // Drive reality: each step the flow dream predicts the next frame from the last real ones.
    let (mdn, flow) = flow_dream_moves(&mut app, 4);
    assert!(flow >= 4, "the flow dream predicts every step ({flow})");
    assert_eq!(mdn, 0, "M's dream is left alone");
    let frames_now = app.world().resource::<ModelFrames>();
    let flow_frame = frames_now
        .flow_dream
        .as_ref()
        .expect("the flow frame is drawn");
    assert_eq!(flow_frame.dimensions(), (64, 64));
    assert!(
        !app.world()
            .resource::<dreamplay::app::sim::Timings>()
            .flow_step
            .recent
            .is_empty(),
        "the flow frame time is measured for the HUD"
    );

    // Drive the dream: only the flow dream steps, counted as the dream's episode.
    tap(&mut app, KeyCode::F6);
    let reality_before = real_steps(&app);
    let (mdn, flow) = flow_dream_moves(&mut app, 4);
    assert!(flow >= 4 && mdn == 0, "flow {flow}, M {mdn}");
    assert_eq!(real_steps(&app), reality_before, "reality waits");

    // C drives the flow dream, reading V's encoding of it and M's memory along it.
    tap(&mut app, KeyCode::KeyC);
    frames(&mut app, 2);
    assert_eq!(driver(&app), Driver::Controller);
    let expected = runner(&app)
        .controller_action(View::FlowDream)
        .expect("C reads the flow dream");
    frames(&mut app, 1);
    let action = session(&app).last_action.clone();
    assert_eq!(action.len(), 1, "Take Cover's one action");
    assert!((-1.0..=1.0).contains(&action[0]), "{action:?}");
    assert_eq!(expected.len(), 1);

    // Lockstep: the flow dream takes reality's actions and its gap is plotted.
    tap(&mut app, KeyCode::F7);
    frames(&mut app, 4);
    assert!(!app.world().resource::<Divergence>().points.is_empty());
    assert!(
        app.world().resource::<WorldModelRuntime>().runner.is_some(),
        "nothing failed on the way"
    );
}

#[test]
fn side_by_side_runs_reality_and_both_dreams_on_the_same_actions() {
    let (_dir, mut app) = take_cover_with_flow_model();
    frames(&mut app, 3);
    tap(&mut app, KeyCode::F9);
    assert_eq!(mode(&app), Mode::SideBySide);
    let reality_before = real_steps(&app);
    let (mdn, flow) = flow_dream_moves(&mut app, 6);
    assert!(
        mdn >= 6 && flow >= 6,
        "both dreams step: M {mdn}, flow {flow}"
    );
    assert!(real_steps(&app) >= reality_before + 5, "reality steps too");
    let divergence = app.world().resource::<Divergence>();
    assert!(!divergence.points.is_empty(), "the 2018 dream's gap");
    assert_eq!(
        divergence.points.iter().map(|p| p.0).collect::<Vec<_>>(),
        divergence
            .flow_points
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        "the flow dream's gap, at the same steps"
    );
    assert!(
        divergence
            .flow_points
            .iter()
            .all(|(_, pixel, z)| (0.0..=1.0).contains(pixel) && z.is_finite())
    );
    let frames_now = app.world().resource::<ModelFrames>();
    assert!(frames_now.dream.is_some() && frames_now.flow_dream.is_some());

    // Re-sync every 2 steps: both dreams restart from reality together.
    send(&mut app, PlayCommand::SetResync(Some(2)));
    frames(&mut app, 6);
    assert!(app.world().resource::<Divergence>().syncs >= 2);
    assert!(
        app.world()
            .resource::<Divergence>()
            .flow_points
            .iter()
            .all(|(steps, _, _)| *steps <= 2)
            || app.world().resource::<Divergence>().flow_points.len() > 6,
        "after a re-sync the flow dream's steps count from it"
    );
}

#[test]
fn the_flow_knobs_reach_the_session_clamped() {
    let (_dir, mut app) = take_cover_with_flow_model();
    assert_eq!(session(&app).flow.steps, 2, "two steps by default");
    tap(&mut app, KeyCode::BracketRight);
    assert_eq!(session(&app).flow.steps, 4);
    tap(&mut app, KeyCode::BracketRight);
    tap(&mut app, KeyCode::BracketRight);
    assert_eq!(session(&app).flow.steps, 8, "8 is the most");
    for _ in 0..4 {
        tap(&mut app, KeyCode::BracketLeft);
    }
    assert_eq!(session(&app).flow.steps, 1, "1 is the least");
    send(&mut app, PlayCommand::SetFlowSteps(3));
    assert_eq!(session(&app).flow.steps, 1, "3 steps is not a choice");
    send(&mut app, PlayCommand::SetFlowTemperature(9.0));
    assert_close(session(&app).flow.temperature, 1.5, "temperature clamped");
    send(&mut app, PlayCommand::SetFlowTemperature(f32::NAN));
    assert_close(session(&app).flow.temperature, 1.5, "NaN ignored");
    // One step and a hot start still dream.
    tap(&mut app, KeyCode::KeyX);
    tap(&mut app, KeyCode::F6);
    let (_, flow) = flow_dream_moves(&mut app, 3);
    assert!(flow >= 3);
}

#[test]
fn without_a_flow_model_the_2018_dream_plays_and_the_commands_are_named() {
    let dir = write_random_bundle(EnvKind::TakeCover);
    let mut app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    let status = runner(&app).flow_status();
    assert!(matches!(status, FlowStatus::Missing { .. }), "{status:?}");
    let explanation = status.explanation();
    for command in [
        "train-autoencoder",
        "encode-latents",
        "train-flow",
        "export-flow",
    ] {
        assert!(explanation.contains(command), "{explanation}");
    }
    tap(&mut app, KeyCode::KeyX);
    assert_eq!(
        session(&app).family,
        DreamFamily::MdnRnn,
        "no flow model to dream with"
    );
    let notice = app.world().resource::<Notice>().text.clone();
    assert!(notice.contains("train-flow"), "{notice}");

    tap(&mut app, KeyCode::F9);
    let (mdn, flow) = flow_dream_moves(&mut app, 4);
    assert!(
        mdn >= 4 && flow == 0,
        "the 2018 dream alone: M {mdn}, flow {flow}"
    );
    assert!(!app.world().resource::<DreamEpisode>().flow_forked);
    assert!(app.world().resource::<Divergence>().flow_points.is_empty());
}

#[test]
fn a_corrupt_flow_file_is_explained_and_the_2018_dream_plays() {
    let dir = write_random_bundle(EnvKind::TakeCover);
    let bundle = dreamplay::app::world_model::model_path(dir.path(), EnvKind::TakeCover);
    let flow_path = dreamplay::model::flow::file::beside(&bundle);
    std::fs::write(&flow_path, b"DPFLOWMD and then nothing").expect("write the broken file");
    let mut app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    let status = runner(&app).flow_status();
    let FlowStatus::Unavailable { reason } = status else {
        panic!("expected an unusable flow model, got {status:?}");
    };
    assert!(
        reason.contains("flow-model.bin"),
        "the reason names the file: {reason}"
    );
    tap(&mut app, KeyCode::F6);
    let (mdn, _) = flow_dream_moves(&mut app, 3);
    assert!(mdn >= 2, "the 2018 dream plays");
}

#[test]
fn a_flow_model_for_the_other_env_is_refused() {
    let dir = write_random_bundle(EnvKind::TakeCover);
    let scratch = tempfile::tempdir().expect("scratch folder");
    write_random_flow_model(scratch.path(), EnvKind::CarRacing);
    let bundle = dreamplay::app::world_model::model_path(dir.path(), EnvKind::TakeCover);
    let car = dreamplay::app::world_model::model_path(scratch.path(), EnvKind::CarRacing);
    std::fs::copy(
        dreamplay::model::flow::file::beside(&car),
        dreamplay::model::flow::file::beside(&bundle),
    )
    .expect("copy the flow model");
    let app = app_with_models_dir(EnvKind::TakeCover, dir.path().to_path_buf());
    let status = runner(&app).flow_status();
    assert!(
        matches!(&status, FlowStatus::Unavailable { reason } if reason.contains("car-racing")),
        "{status:?}"
    );
}
