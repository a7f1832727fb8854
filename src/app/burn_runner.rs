//! The real [`DreamRunner`]: V, M and C from a model bundle, on the backend `model::backend` picks.
//! A thin adapter over [`Dream`], so the app dreams exactly as `train-controller` and `eval` do.

use std::path::Path;
use std::sync::Mutex;

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::world_model::{
    ControllerChoice, DreamRunner, ModelStatus, View, WorldModelRuntime, training_commands,
};
use crate::agent::{Agent, Seen};
use crate::dream::{Dream, DreamBatch, DreamStep, RealityMemory};
use crate::envs::{EnvKind, Frame, OBS_SIZE};
use crate::model::Controller;
use crate::model::atlas::{LatentMap, LatentStats};
use crate::model::bundle::{self, EvolvedDream, Expect};
use crate::model::mdrnn::{DimMixture, DoneRule};

/// Seed of the dream's sampling RNG: a session replays the same dream for the same inputs.
const DREAM_RNG_SEED: u64 = 0x00D2_EA11;
/// Seed of the futures' sampling RNG (apart from the dream's, so opening the fan does not change
/// the dream).
const FUTURES_RNG_SEED: u64 = 0x0F07_0E55;
/// Seed of every action preview: the same state shows the same previews.
const PREVIEW_RNG_SEED: u64 = 0x0A71_0255;

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
    futures: Option<DreamBatch<B>>,
    futures_rng: ChaCha8Rng,
}

impl<B: Backend> Inner<B> {
    /// The dream's state, or the reality-following memory's.
    fn state(&self, from: View) -> ForkPoint {
        let latent = match from {
            View::Dream => self.dream.batch().latent(0),
            View::Reality => self.reality.latent(0),
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
        };
        Ok(Self {
            inner: Mutex::new(inner),
            backend,
            z_size,
            choices,
            latent_stats: model.latent_stats.filter(|s| s.dims.len() == z_size),
            latent_map: model.latent_map.filter(|m| m.z_size() == z_size),
        })
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
        Ok(inner.reality.z(0).to_vec())
    }

    fn advance_reality(&mut self, action: &[f32]) -> anyhow::Result<()> {
        let inner = self.inner();
        let batch = inner.dream.batch();
        inner
            .reality
            .advance(batch.mdrnn(), action, batch.device())?;
        Ok(())
    }

    fn reset_reality(&mut self) {
        self.inner().reality.forget();
    }

    fn reseed(&mut self, seed: u64) {
        let inner = self.inner();
        inner.rng = ChaCha8Rng::seed_from_u64(DREAM_RNG_SEED ^ seed);
        inner.futures_rng = ChaCha8Rng::seed_from_u64(FUTURES_RNG_SEED ^ seed);
    }

    fn controller_action(&self, view: View) -> Option<Vec<f32>> {
        let inner = self.locked();
        let mut controller = inner.controllers.get(inner.selected)?;
        let latent = match view {
            View::Dream => inner.dream.batch().latent(0),
            View::Reality => inner.reality.latent(0),
        };
        Some(Agent::act(&mut controller, &Seen::latent(latent)))
    }

    fn reality_z(&self) -> Option<Vec<f32>> {
        Some(self.locked().reality.z(0).to_vec())
    }

    fn mixture(&self, dim: usize) -> Option<DimMixture> {
        self.locked().dream.mixture(dim)
    }

    fn fork_futures(&mut self, n: usize, from: View) -> anyhow::Result<()> {
        anyhow::ensure!(n > 0, "a fan needs at least one future");
        let inner = self.inner();
        let state = inner.state(from);
        match &mut inner.futures {
            Some(batch) if batch.batch_size() == n => {
                batch.fork_all(&state.z, &state.hidden, &state.cell)?
            }
            _ => inner.futures = Some(inner.batch_at(n, &state)?),
        }
        Ok(())
    }

    fn step_futures(&mut self, action: &[f32], tau: f32) -> anyhow::Result<()> {
        let inner = self.inner();
        let Some(batch) = &mut inner.futures else {
            anyhow::bail!("no futures to step: fork them first");
        };
        let actions = action.repeat(batch.batch_size());
        batch.step(&actions, tau, &mut inner.futures_rng)?;
        Ok(())
    }

    fn futures_frames(&mut self) -> anyhow::Result<Vec<Frame>> {
        Ok(self
            .inner()
            .futures
            .as_ref()
            .map(DreamBatch::frames)
            .unwrap_or_default())
    }

    fn futures_z(&self) -> Vec<Vec<f32>> {
        let inner = self.locked();
        let Some(batch) = &inner.futures else {
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
}
