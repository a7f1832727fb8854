//! Reality and the dream, stepped at the env's own rate in `FixedUpdate` (50 Hz CarRacing, 35 Hz
//! Take Cover), whatever the display rate. Owns [`Session`] and applies the sim's commands.
//!
//! Per mode, one sim step does:
//! - Drive reality: keep M in step with reality (z = V(frame), h carried), act (human or C), step the
//!   env, then step M with the same action: the dream pane shows M's one-step prediction.
//! - Drive the dream: act from the dream's state, step M only; a predicted done (or the time limit)
//!   restarts the dream from where it was forked.
//! - Lockstep: the same action to reality and to a dream forked from it; the gap is recorded. C,
//!   when it drives, sees reality (V of the real frame, the memory of an M that follows reality).
//! - Latent explorer: nothing, unless single-stepped.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bevy::prelude::*;

use super::AppSystems;
use super::commands::{Mode, PlayCommand};
use super::drive::{
    Driver, HumanAxes, TAU_PRESETS, axes_from_action, clamp_done_odds, clamp_tau, default_tau,
    done_rule_name, idle_action, next_driver,
};
use super::input::HumanControls;
use super::world_model::{DreamRunner, ModelStatus, View, WorldModelRuntime, load_runtime};
use crate::model::mdrnn::DoneRule;
use crate::envs::{Env, EnvKind, Frame};
use crate::model::bundle::EvolvedDream;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Divergence>();
    app.init_resource::<Timings>();
    app.init_resource::<ModelFrames>();
    app.init_resource::<Notice>();
    // Headless tests run on MinimalPlugins, which lack the states plugin that DefaultPlugins bring.
    if !app.is_plugin_added::<bevy::state::app::StatesPlugin>() {
        app.add_plugins(bevy::state::app::StatesPlugin);
    }
    app.init_state::<Mode>();
    for mode in Mode::ALL {
        app.add_systems(OnEnter(mode), enter_mode);
    }
    app.add_systems(Update, apply_sim_commands.in_set(AppSystems::ApplyCommands));
    app.add_systems(Update, refresh_model_frames.in_set(AppSystems::Update));
    app.add_systems(FixedUpdate, step_sim);
}

/// Longest dream episode before it restarts, in steps: the demo's car dream reset after 1,000 frames.
pub const DREAM_EPISODE_STEPS_MAX: u32 = 1000;
/// Points kept in the lockstep plot.
pub const DIVERGENCE_HISTORY: usize = 1000;
/// Timing samples kept for the HUD's rolling figures.
pub const TIMING_WINDOW: usize = 120;
/// How long a notice stays on screen.
pub const NOTICE_SECONDS: f32 = 6.0;

/// Where models come from, kept so that switching env can load the other env's model.
#[derive(Resource, Debug, Clone)]
pub struct ModelSource {
    pub models_dir: PathBuf,
    /// `--backend` as given (`auto`, `wgpu`, `flex`), or none.
    pub backend: Option<String>,
}

/// The state of play: which env, who drives, how hot the dream runs (the mode is `State<Mode>`).
#[derive(Resource, Debug, Clone)]
pub struct Session {
    pub env: EnvKind,
    /// M's sampling temperature.
    pub tau: f32,
    /// The factor on the odds of M's done head (1: as trained).
    pub done_odds: f32,
    /// How M's done head ends the dream: drawn (the app's default, as the shipped Cs were evolved)
    /// or the paper's threshold.
    pub done_rule: DoneRule,
    /// The dream C was evolved in, when the model records it.
    pub evolved_dream: Option<EvolvedDream>,
    pub driver: Driver,
    pub paused: bool,
    /// Steps requested while paused (N), still to run.
    pub pending_steps: u32,
    /// The user asked for C this frame; applied by the next sim step's takeover rule.
    pub hand_back_requested: bool,
    /// The human's smoothed controls (the HUD bars while the human drives).
    pub human_axes: HumanAxes,
    /// The action sent on the last step, whoever chose it (the HUD bars).
    pub last_action: Vec<f32>,
}

impl Session {
    pub fn new(env: EnvKind) -> Self {
        Self {
            env,
            tau: default_tau(env),
            done_odds: 1.0,
            done_rule: DoneRule::Sample,
            evolved_dream: None,
            driver: Driver::Human,
            paused: false,
            pending_steps: 0,
            hand_back_requested: false,
            human_axes: HumanAxes::default(),
            last_action: idle_action(env),
        }
    }

    /// Dreams as C was evolved to, if the model says how: its tau, done odds and done rule.
    /// Otherwise the env's default tau, M's own odds, drawn.
    pub fn dream_as_trained(&mut self) {
        let (tau, odds, rule) = self
            .evolved_dream
            .map_or((default_tau(self.env), 1.0, DoneRule::default()), |dream| {
                (dream.tau, dream.done_odds, dream.done_rule)
            });
        self.tau = clamp_tau(self.env, tau, self.tau);
        self.done_odds = clamp_done_odds(odds, self.done_odds);
        self.done_rule = rule;
    }

    /// A fresh session for `env` that dreams as the loaded model's C was evolved to.
    pub fn for_model(env: EnvKind, runtime: &mut WorldModelRuntime) -> Self {
        let mut session = Self::new(env);
        session.evolved_dream = runtime
            .runner
            .as_ref()
            .and_then(|runner| runner.evolved_dream());
        session.dream_as_trained();
        session.apply_done(runtime);
        session
    }

    /// Hands the session's done odds and rule to the dream.
    fn apply_done(&self, runtime: &mut WorldModelRuntime) {
        if let Some(runner) = runtime.runner.as_deref_mut() {
            runner.set_done_odds(self.done_odds);
            runner.set_done_rule(self.done_rule);
        }
    }

    /// The axes shown on the HUD: the last action sent.
    pub fn shown_axes(&self) -> HumanAxes {
        axes_from_action(self.env, &self.last_action)
    }
}

/// The real env and its episode.
#[derive(Resource)]
pub struct Reality {
    /// Behind a mutex only because resources must be `Sync` and envs are `Send`; the sim and the
    /// views take turns, so it is never contended.
    env: Mutex<Box<dyn Env>>,
    /// Seed of the current episode; each new episode takes the next.
    pub seed: u64,
    /// The model's 64x64 observation of the current state.
    pub obs: Frame,
    pub episode_return: f64,
    pub episodes_finished: u32,
    /// Bumped whenever the real state changes, so views redraw only then.
    pub generation: u64,
}

impl Reality {
    pub fn new(kind: EnvKind, seed: u64) -> Self {
        let env = kind.make(seed);
        let obs = env.observation();
        Self {
            env: Mutex::new(env),
            seed,
            obs,
            episode_return: 0.0,
            episodes_finished: 0,
            generation: 0,
        }
    }

    fn env(&self) -> MutexGuard<'_, Box<dyn Env>> {
        // A poisoned lock means a render panicked earlier; the env itself is still consistent.
        self.env
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn env_mut(&mut self) -> &mut Box<dyn Env> {
        self.env
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn kind(&self) -> EnvKind {
        self.env().kind()
    }

    pub fn steps(&self) -> u32 {
        self.env().elapsed_steps()
    }

    /// The current state drawn at `width` x `height` for display.
    pub fn render(&self, width: u32, height: u32) -> Frame {
        self.env().render(width, height)
    }

    /// Starts the next episode (next seed).
    pub fn next_episode(&mut self) {
        self.seed = self.seed.wrapping_add(1);
        let seed = self.seed;
        self.obs = self.env_mut().reset(seed);
        self.episode_return = 0.0;
        self.generation += 1;
    }

    /// Steps with `action`; restarts the episode when it ends. Returns whether it ended.
    fn step(&mut self, action: &[f32]) -> Result<bool, crate::envs::ActionError> {
        let step = self.env_mut().step(action)?;
        self.episode_return += f64::from(step.reward);
        self.obs = step.obs.clone();
        self.generation += 1;
        if step.done() {
            self.episodes_finished += 1;
            self.next_episode();
            return Ok(true);
        }
        Ok(false)
    }
}

/// Where a dream was forked from: its restart point when M predicts the end.
#[derive(Debug, Clone)]
pub enum DreamOrigin {
    RealFrame(Frame),
    RandomZ,
}

/// The dream's episode, as the app sees it.
#[derive(Resource, Debug, Clone, Default)]
pub struct DreamEpisode {
    /// A dream has been forked and may step.
    pub forked: bool,
    pub origin: Option<DreamOrigin>,
    pub steps: u32,
    /// Sum of M's predicted rewards.
    pub episode_return: f64,
    /// Dream episodes ended by a predicted done or the time limit.
    pub restarts: u32,
    /// Bumped whenever z changes, so the dream view re-decodes only then.
    pub generation: u64,
}

/// Lockstep's gap between reality and the dream, one point per step.
#[derive(Resource, Debug, Clone, Default)]
pub struct Divergence {
    /// (lockstep step, mean absolute pixel error in [0, 1], L2 distance between V(real) and the dream's z).
    pub points: VecDeque<(u32, f64, f64)>,
    pub steps: u32,
}

impl Divergence {
    fn clear(&mut self) {
        self.points.clear();
        self.steps = 0;
    }

    fn push(&mut self, pixel_error: f64, z_distance: f64) {
        if self.points.len() == DIVERGENCE_HISTORY {
            self.points.pop_front();
        }
        self.points.push_back((self.steps, pixel_error, z_distance));
        self.steps += 1;
    }
}

/// Rolling samples of a duration, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub recent: VecDeque<f64>,
    /// Every sample, for `--bench-frames` (only filled while `keep_all`).
    pub all: Vec<f64>,
    pub keep_all: bool,
}

impl Samples {
    pub fn push(&mut self, milliseconds: f64) {
        if self.recent.len() == TIMING_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(milliseconds);
        if self.keep_all {
            self.all.push(milliseconds);
        }
    }

    /// The median of the recent samples: one slow frame (a shader compiling) does not swing it.
    pub fn median_recent(&self) -> Option<f64> {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }

    pub fn mean_recent(&self) -> Option<f64> {
        (!self.recent.is_empty())
            .then(|| self.recent.iter().sum::<f64>() / self.recent.len() as f64)
    }
}

/// Frame and dream-step times for the HUD and the benchmark.
#[derive(Resource, Debug, Clone, Default)]
pub struct Timings {
    pub frame: Samples,
    /// One M step (sampling the next z included).
    pub dream_step: Samples,
    /// V decoding the dream's z into the frame shown.
    pub dream_decode: Samples,
}

/// V's and M's frames for the views, decoded once per display frame at most.
#[derive(Resource, Debug, Clone, Default)]
pub struct ModelFrames {
    /// V's reconstruction of the current real observation.
    pub reconstruction: Option<Frame>,
    /// The dream's current z, decoded.
    pub dream: Option<Frame>,
    seen_reality: Option<u64>,
    seen_dream: Option<u64>,
}

/// A one-line message for the user (a file saved, something unavailable), shown for a few seconds.
#[derive(Resource, Debug, Clone, Default)]
pub struct Notice {
    pub text: String,
    /// Seconds left on screen.
    pub seconds_left: f32,
}

impl Notice {
    pub fn show(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.seconds_left = NOTICE_SECONDS;
        info!("{}", self.text);
    }
}

/// Inserts the sim's resources for `env`, loading its world model.
pub fn insert_session(world: &mut World, env: EnvKind, seed: u64, source: ModelSource) {
    let runtime = load_runtime(&source.models_dir, env, source.backend.as_deref());
    insert_session_with_runtime(world, env, seed, source, runtime);
}

/// As [`insert_session`], with a given world model (tests inject their own).
pub fn insert_session_with_runtime(
    world: &mut World,
    env: EnvKind,
    seed: u64,
    source: ModelSource,
    mut runtime: WorldModelRuntime,
) {
    let mut reality = Reality::new(env, seed);
    reality.generation = 1;
    world.insert_resource(Time::<Fixed>::from_hz(f64::from(env.steps_per_second())));
    world.insert_resource(reality);
    world.insert_resource(Session::for_model(env, &mut runtime));
    world.insert_resource(DreamEpisode::default());
    world.insert_resource(runtime);
    world.insert_resource(source);
}

/// Applies the commands that change the sim. Presentation commands belong to other plugins.
#[allow(clippy::too_many_arguments)]
fn apply_sim_commands(
    mut commands: MessageReader<PlayCommand>,
    mut session: ResMut<Session>,
    mode: Res<State<Mode>>,
    mut next_mode: ResMut<NextState<Mode>>,
    mut reality: ResMut<Reality>,
    mut dream: ResMut<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut divergence: ResMut<Divergence>,
    mut fixed_time: ResMut<Time<Fixed>>,
    mut notice: ResMut<Notice>,
    source: Res<ModelSource>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::SetMode(wanted) => next_mode.as_mut().set_if_neq(*wanted),
            PlayCommand::NextMode => next_mode.as_mut().set_if_neq(mode.get().next()),
            PlayCommand::SetTau(tau) => session.tau = clamp_tau(session.env, *tau, session.tau),
            PlayCommand::TauPreset(index) => {
                if let Some(&preset) = TAU_PRESETS.get(*index) {
                    session.tau = clamp_tau(session.env, preset, session.tau);
                }
            }
            PlayCommand::SetDoneOdds(odds) => {
                session.done_odds = clamp_done_odds(*odds, session.done_odds);
                session.apply_done(&mut runtime);
            }
            PlayCommand::SetDoneRule(rule) => {
                session.done_rule = *rule;
                session.apply_done(&mut runtime);
            }
            PlayCommand::DreamAsTrained => {
                session.dream_as_trained();
                session.apply_done(&mut runtime);
                notice.show(match session.evolved_dream {
                    Some(_) => format!(
                        "Dreaming as C was evolved: tau {:.2}, done odds x{}, done {}",
                        session.tau,
                        session.done_odds,
                        done_rule_name(session.done_rule)
                    ),
                    None => "The model records no dream for C: default tau, M's own odds, drawn"
                        .to_string(),
                });
            }
            PlayCommand::SwitchEnv(target) => {
                let next = target.unwrap_or(match session.env {
                    EnvKind::CarRacing => EnvKind::TakeCover,
                    EnvKind::TakeCover => EnvKind::CarRacing,
                });
                if next != session.env {
                    switch_env(
                        next,
                        *mode.get(),
                        &mut session,
                        &mut reality,
                        &mut dream,
                        &mut runtime,
                        &mut divergence,
                        &mut fixed_time,
                        &source,
                    );
                    notice.show(format!("Switched to {next}"));
                }
            }
            PlayCommand::TogglePause => session.paused = !session.paused,
            PlayCommand::StepOnce => {
                session.paused = true;
                session.pending_steps = session.pending_steps.saturating_add(1);
            }
            PlayCommand::ResetEpisode => {
                reality.next_episode();
                if let Some(runner) = runtime.runner.as_deref_mut() {
                    runner.reset_reality();
                }
                if matches!(mode.get(), Mode::Lockstep | Mode::DriveReality) {
                    fork_from_reality(&reality, &mut dream, &mut runtime, &mut notice);
                    divergence.clear();
                }
            }
            PlayCommand::DreamFromReality => {
                fork_from_reality(&reality, &mut dream, &mut runtime, &mut notice);
                divergence.clear();
            }
            PlayCommand::DreamFromRandom => fork_from_random(&mut dream, &mut runtime, &mut notice),
            PlayCommand::TakeWheel => {
                session.driver = Driver::Human;
                session.hand_back_requested = false;
            }
            PlayCommand::HandToController => {
                if runtime.controller_available() {
                    session.hand_back_requested = true;
                } else {
                    notice.show(format!(
                        "C cannot drive: {}",
                        runtime.status.headline().to_lowercase()
                    ));
                }
            }
            PlayCommand::SetLatentDim { dim, value } => {
                set_latent_dim(*dim, *value, &mut dream, &mut runtime, &mut notice)
            }
            _ => {}
        }
    }
    // The wheel goes back to C right away when asked (and nobody touches the controls); a human
    // taking over is handled as the input arrives, in the step.
    if session.hand_back_requested {
        let available = runtime.controller_available();
        session.driver = next_driver(session.driver, false, true, available);
        session.hand_back_requested = false;
    }
}

/// `OnEnter` each mode.
fn enter_mode(
    mode: Res<State<Mode>>,
    reality: Res<Reality>,
    mut dream: ResMut<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut divergence: ResMut<Divergence>,
    mut notice: ResMut<Notice>,
) {
    match mode.get() {
        // A fresh dream from what reality shows now: the demo's "dream from here".
        Mode::DriveDream | Mode::Lockstep => {
            fork_from_reality(&reality, &mut dream, &mut runtime, &mut notice);
            divergence.clear();
        }
        // The explorer starts from the current real frame's encoding unless a dream is running.
        Mode::LatentExplorer => {
            if !dream.forked {
                fork_from_reality(&reality, &mut dream, &mut runtime, &mut notice);
            }
        }
        Mode::DriveReality => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn switch_env(
    next: EnvKind,
    mode: Mode,
    session: &mut Session,
    reality: &mut Reality,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    divergence: &mut Divergence,
    fixed_time: &mut Time<Fixed>,
    source: &ModelSource,
) {
    let paused = session.paused;
    *runtime = load_runtime(&source.models_dir, next, source.backend.as_deref());
    *session = Session::for_model(next, runtime);
    session.paused = paused;
    let generation = reality.generation + 1;
    *reality = Reality::new(next, reality.seed);
    reality.generation = generation;
    let dream_generation = dream.generation + 1;
    *dream = DreamEpisode {
        generation: dream_generation,
        ..DreamEpisode::default()
    };
    divergence.clear();
    fixed_time.set_timestep_hz(f64::from(next.steps_per_second()));
    if matches!(
        mode,
        Mode::DriveDream | Mode::Lockstep | Mode::LatentExplorer
    ) {
        let mut quiet = Notice::default();
        fork_from_reality(reality, dream, runtime, &mut quiet);
    }
}

/// Forks the dream from the current real frame, which the reality-following M sees too (Lockstep
/// then needs no second encoding of it); the dream keeps the memory M built along the episode.
/// Without a model, says so.
fn fork_from_reality(
    reality: &Reality,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    let frame = reality.obs.clone();
    let result = with_runner(runtime, notice, |runner| {
        runner.observe_reality(&frame)?;
        runner.fork_from_reality(&frame)
    });
    if result.is_some() {
        start_dream(dream, DreamOrigin::RealFrame(frame));
    }
}

fn fork_from_random(
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if with_runner(runtime, notice, |runner| runner.reset_random()).is_some() {
        start_dream(dream, DreamOrigin::RandomZ);
    }
}

fn start_dream(dream: &mut DreamEpisode, origin: DreamOrigin) {
    dream.forked = true;
    dream.origin = Some(origin);
    dream.steps = 0;
    dream.episode_return = 0.0;
    dream.generation += 1;
}

fn set_latent_dim(
    dim: usize,
    value: f32,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    if !value.is_finite() {
        return;
    }
    let done = with_runner(runtime, notice, |runner| {
        let mut z = runner.z();
        let Some(slot) = z.get_mut(dim) else {
            anyhow::bail!("latent dimension {dim} does not exist (z has {})", z.len());
        };
        *slot = value;
        runner.set_z(&z)
    });
    if done.is_some() {
        dream.forked = true;
        dream.generation += 1;
    }
}

/// Runs `f` on the runner. No runner: a notice saying why. An error: shown once, and the runner is
/// dropped with the reason, so a broken model cannot flood the log every step.
fn with_runner<T>(
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
    f: impl FnOnce(&mut dyn DreamRunner) -> anyhow::Result<T>,
) -> Option<T> {
    let Some(runner) = runtime.runner.as_deref_mut() else {
        if notice.seconds_left <= 0.0 {
            notice.show(format!(
                "{}: the dream needs V and M.",
                runtime.status.headline()
            ));
        }
        return None;
    };
    match f(runner) {
        Ok(value) => Some(value),
        Err(err) => {
            let reason = format!("The world model failed: {err:#}");
            error!("{reason}");
            notice.show(reason.clone());
            runtime.runner = None;
            runtime.status = ModelStatus::Unavailable { reason };
            None
        }
    }
}

/// One sim step at the env's rate.
#[allow(clippy::too_many_arguments)]
fn step_sim(
    mut session: ResMut<Session>,
    mode: Res<State<Mode>>,
    mut controls: ResMut<HumanControls>,
    mut reality: ResMut<Reality>,
    mut dream: ResMut<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut divergence: ResMut<Divergence>,
    mut timings: ResMut<Timings>,
    mut notice: ResMut<Notice>,
) {
    if session.paused {
        if session.pending_steps == 0 {
            return;
        }
        session.pending_steps -= 1;
    }
    let env = session.env;
    let input = controls.take_for_step();
    let human_active = input.active();
    let available = runtime.controller_available();
    session.driver = next_driver(session.driver, human_active, false, available);
    session.human_axes.advance(env, &input);

    let has_runner = runtime.runner.is_some();
    let mode = *mode.get();
    match mode {
        Mode::DriveReality => {
            // Keep M in step with reality: z from V, h carried over; the dream pane shows its
            // one-step prediction.
            if has_runner {
                let obs = reality.obs.clone();
                with_runner(&mut runtime, &mut notice, |runner| {
                    let z = runner.observe_reality(&obs)?;
                    runner.set_z(&z)
                });
            }
            let action = choose_action(&session, &runtime, View::Reality);
            let Some(episode_ended) = step_reality(&mut reality, &action, &mut notice) else {
                return;
            };
            if has_runner {
                let started = Instant::now();
                let stepped = with_runner(&mut runtime, &mut notice, |runner| {
                    runner.step(&action, session.tau)
                });
                timings.dream_step.push(millis(started.elapsed()));
                if stepped.is_some() {
                    dream.forked = true;
                    dream.generation += 1;
                }
                follow_reality(&action, episode_ended, &mut runtime, &mut notice);
            }
            session.last_action = action;
        }
        Mode::DriveDream => {
            if !dream.forked {
                return;
            }
            let action = choose_action(&session, &runtime, View::Dream);
            step_dream(
                &action,
                &session,
                mode,
                &mut dream,
                &mut runtime,
                &mut timings,
                &mut notice,
            );
            session.last_action = action;
        }
        Mode::Lockstep => {
            // C drives reality here; the dream gets the same actions. The reality-following M has
            // seen the current frame: at the fork, or after the previous step.
            let action = choose_action(&session, &runtime, View::Reality);
            let Some(episode_ended) = step_reality(&mut reality, &action, &mut notice) else {
                return;
            };
            session.last_action = action.clone();
            if has_runner {
                follow_reality(&action, episode_ended, &mut runtime, &mut notice);
            }
            if episode_ended {
                fork_from_reality(&reality, &mut dream, &mut runtime, &mut notice);
                divergence.clear();
                return;
            }
            // One encoding of the new frame serves C's next action and the gap.
            let obs = reality.obs.clone();
            let real_z = if has_runner {
                with_runner(&mut runtime, &mut notice, |runner| {
                    runner.observe_reality(&obs)
                })
            } else {
                None
            };
            if dream.forked {
                step_dream(
                    &action,
                    &session,
                    mode,
                    &mut dream,
                    &mut runtime,
                    &mut timings,
                    &mut notice,
                );
                if let Some(real_z) = real_z
                    && let Some((pixel, z_gap)) = with_runner(&mut runtime, &mut notice, |runner| {
                        let dreamed = runner.frame()?;
                        Ok((
                            mean_abs_pixel_error(&obs, &dreamed),
                            l2_distance(&real_z, &runner.z()),
                        ))
                    })
                {
                    divergence.push(pixel, z_gap);
                }
            }
        }
        Mode::LatentExplorer => {
            // Paused by design; a single step (N) moves the dream on once.
            if session.paused && dream.forked {
                let action = choose_action(&session, &runtime, View::Dream);
                step_dream(
                    &action,
                    &session,
                    mode,
                    &mut dream,
                    &mut runtime,
                    &mut timings,
                    &mut notice,
                );
                session.last_action = action;
            }
        }
    }
}

/// Steps reality; whether the episode ended, or `None` (with a notice) if the env refused the action.
fn step_reality(reality: &mut Reality, action: &[f32], notice: &mut Notice) -> Option<bool> {
    match reality.step(action) {
        Ok(ended) => Some(ended),
        Err(err) => {
            notice.show(format!("the env refused the action: {err}"));
            None
        }
    }
}

/// Moves the reality-following M on by the action reality took; forgets it when the episode ended.
fn follow_reality(
    action: &[f32],
    episode_ended: bool,
    runtime: &mut WorldModelRuntime,
    notice: &mut Notice,
) {
    with_runner(runtime, notice, |runner| {
        if episode_ended {
            runner.reset_reality();
            Ok(())
        } else {
            runner.advance_reality(action)
        }
    });
}

/// The action for this step: the human's axes, or C's action from the state of `view`.
fn choose_action(session: &Session, runtime: &WorldModelRuntime, view: View) -> Vec<f32> {
    if session.driver == Driver::Controller
        && let Some(action) = runtime
            .runner
            .as_ref()
            .and_then(|runner| runner.controller_action(view))
    {
        return action;
    }
    session.human_axes.to_action(session.env)
}

fn step_dream(
    action: &[f32],
    session: &Session,
    mode: Mode,
    dream: &mut DreamEpisode,
    runtime: &mut WorldModelRuntime,
    timings: &mut Timings,
    notice: &mut Notice,
) {
    let started = Instant::now();
    let Some(outcome) = with_runner(runtime, notice, |runner| runner.step(action, session.tau))
    else {
        return;
    };
    timings.dream_step.push(millis(started.elapsed()));
    dream.steps += 1;
    dream.episode_return += f64::from(outcome.reward);
    dream.generation += 1;
    let out_of_time = dream.steps >= DREAM_EPISODE_STEPS_MAX;
    // As in the demo: a predicted death (or the time limit) restarts the dream where it began.
    if (outcome.done || out_of_time) && mode == Mode::DriveDream {
        dream.restarts += 1;
        let origin = dream.origin.clone().unwrap_or(DreamOrigin::RandomZ);
        let restarted = with_runner(runtime, notice, |runner| match &origin {
            DreamOrigin::RealFrame(frame) => runner.restart_from_fork(frame),
            DreamOrigin::RandomZ => runner.reset_random(),
        });
        if restarted.is_some() {
            start_dream(dream, origin);
        }
    }
}

/// Decodes V's reconstruction and the dream frame when their inputs changed (at most once per
/// display frame, however many sim steps ran).
fn refresh_model_frames(
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut frames: ResMut<ModelFrames>,
    mut notice: ResMut<Notice>,
    mut timings: ResMut<Timings>,
    time: Res<Time>,
) {
    notice.seconds_left = (notice.seconds_left - time.delta_secs()).max(0.0);
    if runtime.runner.is_none() {
        frames.reconstruction = None;
        frames.dream = None;
        return;
    }
    if frames.seen_reality != Some(reality.generation) {
        frames.seen_reality = Some(reality.generation);
        let obs = reality.obs.clone();
        frames.reconstruction =
            with_runner(&mut runtime, &mut notice, |runner| runner.reconstruct(&obs));
    }
    if frames.seen_dream != Some(dream.generation) {
        frames.seen_dream = Some(dream.generation);
        frames.dream = if dream.forked {
            let started = Instant::now();
            let decoded = with_runner(&mut runtime, &mut notice, |runner| runner.frame());
            timings.dream_decode.push(millis(started.elapsed()));
            decoded
        } else {
            None
        };
    }
}

/// Mean absolute difference of two frames' RGB values, in [0, 1]; frames of different sizes compare
/// over their common area.
pub fn mean_abs_pixel_error(a: &Frame, b: &Frame) -> f64 {
    let (width, height) = (a.width().min(b.width()), a.height().min(b.height()));
    if width == 0 || height == 0 {
        return 0.0;
    }
    let mut total = 0u64;
    for y in 0..height {
        for x in 0..width {
            let (pa, pb) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            total += (0..3)
                .map(|c| u64::from(pa[c].abs_diff(pb[c])))
                .sum::<u64>();
        }
    }
    total as f64 / (f64::from(width) * f64::from(height) * 3.0 * 255.0)
}

/// Euclidean distance over the common length of two latents.
pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
