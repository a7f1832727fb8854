//! The real [`DreamRunner`]: V, M and C from a model bundle, on the backend `model::backend` picks.
//! A thin adapter over [`Dream`], so the app dreams exactly as `train-controller` and `eval` do;
//! and over [`FlowDreamBatch`] when a flow model sits beside the bundle.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::world_model::{
    ControllerChoice, DreamFamily, DreamRunner, FlowKnobs, FlowStatus, ModelStatus, View,
    WorldModelRuntime, training_commands,
};
use crate::agent::{Agent, Seen};
use crate::dream::flow::DEFAULT_SAMPLING;
use crate::dream::{Dream, DreamBatch, DreamStep, FlowDreamBatch, RealityMemory};
use crate::envs::{EnvKind, Frame, OBS_SIZE};
use crate::model::Controller;
use crate::model::atlas::{LatentMap, LatentStats};
use crate::model::bundle::{self, EvolvedDream, Expect};
use crate::model::flow::file as flow_file;
use crate::model::flow::shortcut::Sampling;
use crate::model::mdrnn::{DimMixture, DoneRule};

/// Seed of the dream's sampling RNG: a session replays the same dream for the same inputs.
const DREAM_RNG_SEED: u64 = 0x00D2_EA11;
/// Seed of the futures' sampling RNG (apart from the dream's, so opening the fan does not change
/// the dream).
const FUTURES_RNG_SEED: u64 = 0x0F07_0E55;
/// Seed of every action preview: the same state shows the same previews.
const PREVIEW_RNG_SEED: u64 = 0x0A71_0255;
/// Seed of the flow dream's noise (apart from M's, so switching models changes neither's draws).
const FLOW_RNG_SEED: u64 = 0xF10E_D8EA;

/// Loads `path` for `env` on the selected backend and wraps it as a runner, or says why not.
pub fn load_burn_runtime(
    path: &Path,
    env: EnvKind,
    backend_flag: Option<&str>,
) -> WorldModelRuntime {
    let selection = crate::model::backend::select(backend_flag);
    if let Some(note) = &selection.note {
        bevy::log::info!("backend: {note}");
    }
    let described = selection.backend.describe();
    let result: Result<Box<dyn DreamRunner>, String> =
        crate::with_backend!(&selection.backend, |B, device| {
            BurnRunner::<B>::load(path, env, device, described.clone())
                .map(|runner| Box::new(runner) as Box<dyn DreamRunner>)
        });
    match result {
        Ok(runner) => {
            bevy::log::info!("world model {} on {}", path.display(), described);
            WorldModelRuntime::ready(runner)
        }
        Err(reason) => {
            bevy::log::warn!("{reason}");
            WorldModelRuntime {
                runner: None,
                status: ModelStatus::Unavailable { reason },
            }
        }
    }
}

/// V, M and C on backend `B`, behind a mutex so the runner is `Sync` whatever burn's types are.
pub struct BurnRunner<B: Backend> {
    inner: Mutex<Inner<B>>,
    backend: String,
    z_size: usize,
    /// Every C of the bundle, the default first; `Inner::controllers` holds their weights.
    choices: Vec<ControllerChoice>,
    latent_stats: Option<LatentStats>,
    latent_map: Option<LatentMap>,
    flow_status: FlowStatus,
}

struct Inner<B: Backend> {
    dream: Dream<B>,
    /// C's memory of the real episode: V's z of the latest real frame, M's h and c along it.
    reality: RealityMemory,
    /// Every C of the bundle, the default first.
    controllers: Vec<Controller>,
    /// The one that acts.
    selected: usize,
    rng: ChaCha8Rng,
    /// The last fork from reality: z, h and c, to restart from.
    fork: Option<ForkPoint>,
    /// The fan of futures, stepped as one batch.
    futures: Option<Futures<B>>,
    futures_rng: ChaCha8Rng,
    /// The last real frames and actions, as many as the flow dream's context: where it forks.
    recent: RecentReality,
    /// The flow dream, when a flow model came with the bundle.
    flow: Option<FlowLane<B>>,
}

/// The last real frames the reality-following M saw, oldest first, and the actions between them.
#[derive(Debug, Default)]
struct RecentReality {
    frames: VecDeque<Frame>,
    /// `actions[i]` was taken at `frames[i]`: one fewer than the frames.
    actions: VecDeque<Vec<f32>>,
    /// The action taken at the newest frame, once reality has moved on by it.
    pending: Option<Vec<f32>>,
    keep: usize,
}

impl RecentReality {
    fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(1),
            ..Self::default()
        }
    }

    /// A frame seen: the next in the episode after an action, or the same moment seen again.
    fn observe(&mut self, frame: &Frame) {
        match self.pending.take() {
            Some(action) if !self.frames.is_empty() => self.actions.push_back(action),
            _ => {
                self.frames.pop_back();
            }
        }
        self.frames.push_back(frame.clone());
        while self.frames.len() > self.keep {
            self.frames.pop_front();
            self.actions.pop_front();
        }
    }

    fn advance(&mut self, action: &[f32]) {
        self.pending = Some(action.to_vec());
    }

    fn forget(&mut self) {
        self.frames.clear();
        self.actions.clear();
        self.pending = None;
    }
}

/// A fan of futures from one state, of either family.
enum Futures<B: Backend> {
    MdnRnn(Box<DreamBatch<B>>),
    Flow(Box<FlowDreamBatch<B>>),
}

/// The flow dream (one dream), where it forked, and an M that follows it for C.
struct FlowLane<B: Backend> {
    dream: FlowDreamBatch<B>,
    rng: ChaCha8Rng,
    /// Where it last forked, to restart from.
    fork: Option<FlowFork>,
    /// V's encoding of the flow dream's frames and M's memory along them: what C reads there.
    memory: RealityMemory,
    /// The newest latent drawn (each step draws it once, for C and for the view).
    frame: Option<Frame>,
}

/// The real frames a flow dream forked from, the actions between them, and reality's memory then.
#[derive(Clone)]
struct FlowFork {
    frames: Vec<Frame>,
    actions: Vec<f32>,
    memory: RealityMemory,
}

/// The flow lane and what it reads from the rest of the runner.
struct FlowParts<'a, B: Backend> {
    lane: &'a mut FlowLane<B>,
    dream: &'a Dream<B>,
    reality: &'a RealityMemory,
    recent: &'a RecentReality,
}

impl<B: Backend> FlowParts<'_, B> {
    /// A fork at the last real frames and actions, with reality's memory now.
    fn fork_here(&self) -> anyhow::Result<FlowFork> {
        anyhow::ensure!(
            !self.recent.frames.is_empty(),
            "no real frame seen yet to fork the flow dream from"
        );
        Ok(FlowFork {
            frames: self.recent.frames.iter().cloned().collect(),
            actions: self.recent.actions.iter().flatten().copied().collect(),
            memory: self.reality.clone(),
        })
    }
}

impl<B: Backend> FlowLane<B> {
    /// Starts the flow dream at the fork's frames, C's memory at reality's then.
    fn fork(&mut self, fork: FlowFork) -> anyhow::Result<()> {
        let frames: Vec<&Frame> = fork.frames.iter().collect();
        self.dream.reset_from_frames(0, &frames, &fork.actions)?;
        self.frame = Some(self.dream.frame(0)?);
        self.memory = fork.memory.clone();
        self.fork = Some(fork);
        Ok(())
    }
}

impl<B: Backend> Inner<B> {
    /// The dream's state, or the reality-following memory's.
    fn state(&self, from: View) -> ForkPoint {
        let latent = match (from, &self.flow) {
            (View::Dream, _) | (View::FlowDream, None) => self.dream.batch().latent(0),
            (View::Reality, _) => self.reality.latent(0),
            // M's memory of the flow dream: the 2018 model's view of where the flow dream is.
            (View::FlowDream, Some(lane)) => lane.memory.latent(0),
        };
        ForkPoint {
            z: latent.z.to_vec(),
            hidden: latent.hidden.to_vec(),
            cell: latent.cell.to_vec(),
        }
    }

    /// A batch of `n` dreams on this model, all at the state of `from`.
    fn batch_at(&self, n: usize, from: &ForkPoint) -> anyhow::Result<DreamBatch<B>> {
        let model = self.dream.batch();
        let mut batch = DreamBatch::new(
            model.vae().clone(),
            model.mdrnn().clone(),
            n,
            model.device(),
        );
        batch.fork_all(&from.z, &from.hidden, &from.cell)?;
        Ok(batch)
    }
}

struct ForkPoint {
    z: Vec<f32>,
    hidden: Vec<f32>,
    cell: Vec<f32>,
}

impl<B: Backend> BurnRunner<B> {
    pub fn load(
        path: &Path,
        env: EnvKind,
        device: B::Device,
        backend: String,
    ) -> Result<Self, String> {
        let model =
            bundle::load::<B>(path, &Expect::env(env), &device).map_err(|err| err.to_string())?;
        let named = model.named_controllers();
        let missing = |part: &str| {
            format!(
                "{} has no {part} yet. Train it with:\n{}",
                path.display(),
                training_commands(env)
            )
        };
        let vae = model.vae.ok_or_else(|| missing("V (the VAE)"))?;
        let rnn = model.mdrnn.ok_or_else(|| missing("M (the MDN-RNN)"))?;
        let (z_size, hidden_size) = (rnn.z_size(), rnn.hidden_size());
        if vae.z_size() != z_size {
            return Err(format!(
                "{}: V's z has {} values but M's has {z_size}",
                path.display(),
                vae.z_size()
            ));
        }
        let (choices, controllers): (Vec<ControllerChoice>, Vec<Controller>) = named
            .into_iter()
            .filter(|c| {
                c.controller.z_size() == z_size && c.controller.hidden_size() == hidden_size
            })
            .map(|c| {
                let choice = ControllerChoice {
                    name: c.name,
                    dream: c.training.dream,
                };
                (choice, c.controller)
            })
            .unzip();
        let reality = RealityMemory::for_model(&rnn, 1);
        let (flow, flow_status) = load_flow_lane::<B>(path, env, &reality, &device);
        let context = flow.as_ref().map_or(1, |lane| lane.dream.spec().context);
        let mut dream = Dream::new(vae, rnn, &device);
        // Done is drawn with the done head's probability, as the shipped Cs were evolved; the
        // session then sets the rule the bundle records, if it records one.
        dream.set_done_rule(DoneRule::Sample);
        let inner = Inner {
            dream,
            reality,
            controllers,
            selected: 0,
            rng: ChaCha8Rng::seed_from_u64(DREAM_RNG_SEED),
            fork: None,
            futures: None,
            futures_rng: ChaCha8Rng::seed_from_u64(FUTURES_RNG_SEED),
            recent: RecentReality::new(context),
            flow,
        };
        Ok(Self {
            inner: Mutex::new(inner),
            backend,
            z_size,
            choices,
            latent_stats: model.latent_stats.filter(|s| s.dims.len() == z_size),
            latent_map: model.latent_map.filter(|m| m.z_size() == z_size),
            flow_status,
        })
    }

    /// The flow lane beside the state it forks from, or the reason there is no flow dream.
    fn flow_parts(&mut self) -> anyhow::Result<FlowParts<'_, B>> {
        // The lock's field and the status are disjoint borrows of `self`.
        let inner = self
            .inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Inner {
            dream,
            reality,
            recent,
            flow,
            ..
        } = inner;
        match flow {
            Some(lane) => Ok(FlowParts {
                lane,
                dream,
                reality,
                recent,
            }),
            None => Err(anyhow::anyhow!("{}", self.flow_status.explanation())),
        }
    }

    fn inner(&mut self) -> &mut Inner<B> {
        // A poisoned lock only means an earlier call panicked mid-way; the data is still usable.
        self.inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Inner<B>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The flow model beside the bundle at `path`, ready to dream, or why not. A missing or broken flow
/// model leaves the 2018 dream playing.
fn load_flow_lane<B: Backend>(
    path: &Path,
    env: EnvKind,
    reality: &RealityMemory,
    device: &B::Device,
) -> (Option<FlowLane<B>>, FlowStatus) {
    let flow_path = flow_file::beside(path);
    if !flow_path.exists() {
        return (
            None,
            FlowStatus::Missing {
                path: flow_path,
                env,
            },
        );
    }
    let loaded = flow_file::load::<B>(&flow_path, Some(env), device)
        .map_err(anyhow::Error::from)
        .and_then(|model| Ok(FlowDreamBatch::new(model, 1, device)?));
    match loaded {
        Ok(dream) => {
            bevy::log::info!("flow model {}", flow_path.display());
            let lane = FlowLane {
                dream,
                rng: ChaCha8Rng::seed_from_u64(FLOW_RNG_SEED),
                fork: None,
                memory: reality.clone(),
                frame: None,
            };
            (Some(lane), FlowStatus::Ready)
        }
        Err(err) => {
            let reason = format!(
                "The flow model {} is unusable: {err:#}",
                flow_path.display()
            );
            bevy::log::warn!("{reason}");
            (None, FlowStatus::Unavailable { reason })
        }
    }
}

/// V takes the paper's 64x64 frames only.
fn check_frame(frame: &Frame) -> anyhow::Result<()> {
    anyhow::ensure!(
        frame.width() == OBS_SIZE && frame.height() == OBS_SIZE,
        "V takes {OBS_SIZE}x{OBS_SIZE} frames, got {}x{}",
        frame.width(),
        frame.height()
    );
    Ok(())
}

impl<B: Backend> DreamRunner for BurnRunner<B> {
    fn describe_backend(&self) -> String {
        self.backend.clone()
    }

    fn z_size(&self) -> usize {
        self.z_size
    }

    fn has_controller(&self) -> bool {
        !self.choices.is_empty()
    }

    fn evolved_dream(&self) -> Option<EvolvedDream> {
        let selected = self.selected_controller();
        self.choices.get(selected).and_then(|c| c.dream)
    }

    fn controllers(&self) -> Vec<ControllerChoice> {
        self.choices.clone()
    }

    fn select_controller(&mut self, index: usize) -> anyhow::Result<()> {
        let count = self.choices.len();
        anyhow::ensure!(
            index < count,
            "there is no C number {index}: this model holds {count}"
        );
        self.inner().selected = index;
        Ok(())
    }

    fn selected_controller(&self) -> usize {
        self.locked().selected
    }

    fn latent_stats(&self) -> Option<&LatentStats> {
        self.latent_stats.as_ref()
    }

    fn latent_map(&self) -> Option<&LatentMap> {
        self.latent_map.as_ref()
    }

    fn set_done_odds(&mut self, factor: f32) {
        // The slider's range keeps it positive; anything else would make M's done logit NaN.
        if factor.is_finite() && factor > 0.0 {
            self.inner().dream.set_done_odds(factor);
        }
    }

    fn set_done_rule(&mut self, rule: DoneRule) {
        self.inner().dream.set_done_rule(rule);
    }

    fn encode(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        check_frame(frame)?;
        let batch = self.inner().dream.batch();
        Ok(batch.vae().encode_frames(&[frame], batch.device()).0)
    }

    fn decode(&mut self, z: &[f32]) -> anyhow::Result<Frame> {
        let z_size = self.z_size;
        anyhow::ensure!(
            z.len() == z_size,
            "z has {} values, V takes {z_size}",
            z.len()
        );
        let batch = self.inner().dream.batch();
        batch
            .decoder()
            .decode_to_frames(z, batch.device())
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("V decoded no frame"))
    }

    fn reset_from_frame(&mut self, frame: &Frame) -> anyhow::Result<()> {
        check_frame(frame)?;
        self.inner().dream.reset_from_frame(frame);
        Ok(())
    }

    fn fork_from_reality(&mut self, frame: &Frame) -> anyhow::Result<()> {
        check_frame(frame)?;
        let inner = self.inner();
        let fork = inner.state(View::Reality);
        inner
            .dream
            .reset_to_state(&fork.z, &fork.hidden, &fork.cell)?;
        inner.fork = Some(fork);
        Ok(())
    }

    fn restart_from_fork(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let inner = self.inner();
        if let Some(fork) = &inner.fork {
            return Ok(inner
                .dream
                .reset_to_state(&fork.z, &fork.hidden, &fork.cell)?);
        }
        self.reset_from_frame(frame)
    }

    fn reset_random(&mut self) -> anyhow::Result<()> {
        let inner = self.inner();
        inner.dream.reset_random(&mut inner.rng);
        Ok(())
    }

    fn set_z(&mut self, z: &[f32]) -> anyhow::Result<()> {
        Ok(self.inner().dream.set_z(z)?)
    }

    fn step(&mut self, action: &[f32], tau: f32) -> anyhow::Result<DreamStep> {
        let inner = self.inner();
        Ok(inner.dream.step(action, tau, &mut inner.rng)?)
    }

    fn frame(&mut self) -> anyhow::Result<Frame> {
        Ok(self.inner().dream.frame())
    }

    fn z(&self) -> Vec<f32> {
        self.locked().dream.z().to_vec()
    }

    fn observe_reality(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        check_frame(frame)?;
        let inner = self.inner();
        let batch = inner.dream.batch();
        inner
            .reality
            .observe(batch.vae(), &[frame], batch.device())?;
        inner.recent.observe(frame);
        Ok(inner.reality.z(0).to_vec())
    }

    fn advance_reality(&mut self, action: &[f32]) -> anyhow::Result<()> {
        let inner = self.inner();
        let batch = inner.dream.batch();
        inner
            .reality
            .advance(batch.mdrnn(), action, batch.device())?;
        inner.recent.advance(action);
        Ok(())
    }

    fn reset_reality(&mut self) {
        let inner = self.inner();
        inner.reality.forget();
        inner.recent.forget();
    }

    fn reseed(&mut self, seed: u64) {
        let inner = self.inner();
        inner.rng = ChaCha8Rng::seed_from_u64(DREAM_RNG_SEED ^ seed);
        inner.futures_rng = ChaCha8Rng::seed_from_u64(FUTURES_RNG_SEED ^ seed);
        if let Some(lane) = &mut inner.flow {
            lane.rng = ChaCha8Rng::seed_from_u64(FLOW_RNG_SEED ^ seed);
        }
    }

    fn controller_action(&self, view: View) -> Option<Vec<f32>> {
        let inner = self.locked();
        let mut controller = inner.controllers.get(inner.selected)?;
        let latent = match view {
            View::Dream => inner.dream.batch().latent(0),
            View::Reality => inner.reality.latent(0),
            View::FlowDream => inner.flow.as_ref()?.memory.latent(0),
        };
        Some(Agent::act(&mut controller, &Seen::latent(latent)))
    }

    fn reality_z(&self) -> Option<Vec<f32>> {
        Some(self.locked().reality.z(0).to_vec())
    }

    fn mixture(&self, dim: usize) -> Option<DimMixture> {
        self.locked().dream.mixture(dim)
    }

    fn fork_futures(&mut self, n: usize, from: View, family: DreamFamily) -> anyhow::Result<()> {
        anyhow::ensure!(n > 0, "a fan needs at least one future");
        if family == DreamFamily::Flow {
            let parts = self.flow_parts()?;
            let fan = match from {
                View::Reality => {
                    let fork = parts.fork_here()?;
                    let frames: Vec<&Frame> = fork.frames.iter().collect();
                    let mut start = parts.lane.dream.fan_out(0, 1)?;
                    start.reset_from_frames(0, &frames, &fork.actions)?;
                    start.fan_out(0, n)?
                }
                View::Dream | View::FlowDream => {
                    anyhow::ensure!(
                        parts.lane.fork.is_some(),
                        "fork the flow dream before fanning out its futures"
                    );
                    parts.lane.dream.fan_out(0, n)?
                }
            };
            self.inner().futures = Some(Futures::Flow(Box::new(fan)));
            return Ok(());
        }
        let inner = self.inner();
        let state = inner.state(from);
        match &mut inner.futures {
            Some(Futures::MdnRnn(batch)) if batch.batch_size() == n => {
                batch.fork_all(&state.z, &state.hidden, &state.cell)?
            }
            _ => inner.futures = Some(Futures::MdnRnn(Box::new(inner.batch_at(n, &state)?))),
        }
        Ok(())
    }

    fn step_futures(&mut self, action: &[f32], tau: f32) -> anyhow::Result<()> {
        let Inner {
            futures,
            futures_rng,
            ..
        } = self.inner();
        match futures {
            None => anyhow::bail!("no futures to step: fork them first"),
            Some(Futures::MdnRnn(batch)) => {
                batch.step(&action.repeat(batch.batch_size()), tau, futures_rng)?;
            }
            Some(Futures::Flow(batch)) => {
                batch.step(&action.repeat(batch.batch_size()), futures_rng)?;
            }
        }
        Ok(())
    }

    fn futures_frames(&mut self) -> anyhow::Result<Vec<Frame>> {
        Ok(match &self.inner().futures {
            None => Vec::new(),
            Some(Futures::MdnRnn(batch)) => batch.frames(),
            Some(Futures::Flow(batch)) => batch.frames(),
        })
    }

    /// The 2018 futures' z; the flow model's futures have none (its latent is a grid, not V's z).
    fn futures_z(&self) -> Vec<Vec<f32>> {
        let inner = self.locked();
        let Some(Futures::MdnRnn(batch)) = &inner.futures else {
            return Vec::new();
        };
        (0..batch.batch_size())
            .map(|i| batch.z(i).to_vec())
            .collect()
    }

    fn preview_actions(
        &mut self,
        from: View,
        actions: &[Vec<f32>],
        steps: usize,
        tau: f32,
    ) -> anyhow::Result<Vec<[Frame; 2]>> {
        anyhow::ensure!(!actions.is_empty(), "no actions to preview");
        let inner = self.inner();
        let state = inner.state(from);
        let mut batch = inner.batch_at(actions.len(), &state)?;
        let flat: Vec<f32> = actions.concat();
        let mut rng = ChaCha8Rng::seed_from_u64(PREVIEW_RNG_SEED);
        batch.step(&flat, tau, &mut rng)?;
        let first = batch.frames();
        for _ in 1..steps.max(1) {
            batch.step(&flat, tau, &mut rng)?;
        }
        let last = batch.frames();
        Ok(first.into_iter().zip(last).map(|(a, b)| [a, b]).collect())
    }

    fn flow_status(&self) -> FlowStatus {
        self.flow_status.clone()
    }

    fn flow_fork_from_reality(&mut self) -> anyhow::Result<()> {
        let parts = self.flow_parts()?;
        let fork = parts.fork_here()?;
        parts.lane.fork(fork)
    }

    fn flow_restart_from_fork(&mut self) -> anyhow::Result<()> {
        let parts = self.flow_parts()?;
        let fork = match parts.lane.fork.clone() {
            Some(fork) => fork,
            None => parts.fork_here()?,
        };
        parts.lane.fork(fork)
    }

    fn flow_step(&mut self, action: &[f32]) -> anyhow::Result<DreamStep> {
        let FlowParts { lane, dream, .. } = self.flow_parts()?;
        anyhow::ensure!(
            lane.fork.is_some(),
            "fork the flow dream before stepping it"
        );
        let step = lane
            .dream
            .step(action, &mut lane.rng)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the flow dream returned no step"))?;
        let frame = lane.dream.frame(0)?;
        // M's memory of the flow dream moves on by the action, then V sees the new frame.
        let batch = dream.batch();
        lane.memory.advance(batch.mdrnn(), action, batch.device())?;
        lane.memory
            .observe(batch.vae(), &[&frame], batch.device())?;
        lane.frame = Some(frame);
        Ok(step)
    }

    fn flow_frame(&mut self) -> anyhow::Result<Frame> {
        let lane = self.flow_parts()?.lane;
        match &lane.frame {
            Some(frame) => Ok(frame.clone()),
            None => Ok(lane.dream.frame(0)?),
        }
    }

    fn flow_encoding(&self) -> Option<Vec<f32>> {
        let inner = self.locked();
        inner.flow.as_ref().map(|lane| lane.memory.z(0).to_vec())
    }

    fn set_flow_knobs(&mut self, knobs: FlowKnobs) -> anyhow::Result<()> {
        let sampling = Sampling {
            steps: knobs.steps,
            temperature: knobs.temperature,
            ..DEFAULT_SAMPLING
        };
        let inner = self.inner();
        let Some(lane) = &mut inner.flow else {
            return Ok(());
        };
        lane.dream.set_sampling(sampling)?;
        // A fan of flow futures follows the knobs from its next step.
        if let Some(Futures::Flow(fan)) = &mut inner.futures {
            fan.set_sampling(sampling)?;
        }
        Ok(())
    }
}
