//! The real [`DreamRunner`]: V, M and C from a model bundle, on the backend `model::backend` picks.
//!
//! It steps M itself (`MdnRnn::step_packed` + `sample_z`) rather than through `dream::Dream`,
//! because the playground needs one thing `Dream` does not offer: replacing z while keeping M's
//! state (h, c), which is how M follows reality while reality drives, and how the latent explorer's
//! sliders edit z mid-dream. (A `Dream::set_z` would let this file shrink to a thin adapter.)

use std::path::Path;
use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};

use super::world_model::{
    DreamOutcome, DreamRunner, ModelStatus, WorldModelRuntime, training_commands,
};
use crate::envs::{EnvKind, Frame};
use crate::model::bundle::{self, Expect};
use crate::model::mdrnn::sample_z;
use crate::model::{Controller, ConvVae, MdnRnn, MdnRnnState};

/// Seed of the dream's sampling RNG: a session replays the same dream for the same inputs.
const DREAM_RNG_SEED: u64 = 0x00D2_EA11;

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
    has_controller: bool,
}

struct Inner<B: Backend> {
    vae: ConvVae<B>,
    rnn: MdnRnn<B>,
    controller: Option<Controller>,
    device: B::Device,
    /// `[z_size]`: the dream's current latent.
    z: Vec<f32>,
    /// M's state on the device, and its host copies for C.
    state: MdnRnnState<B>,
    hidden: Vec<f32>,
    cell: Vec<f32>,
    rng: ChaCha8Rng,
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
        let controller = model
            .controller
            .filter(|c| c.z_size() == z_size && c.hidden_size() == hidden_size);
        let has_controller = controller.is_some();
        let inner = Inner {
            state: MdnRnnState::zeros(1, hidden_size, &device),
            vae,
            rnn,
            controller,
            device,
            z: vec![0.0; z_size],
            hidden: vec![0.0; hidden_size],
            cell: vec![0.0; hidden_size],
            rng: ChaCha8Rng::seed_from_u64(DREAM_RNG_SEED),
        };
        Ok(Self {
            inner: Mutex::new(inner),
            backend,
            z_size,
            has_controller,
        })
    }

    fn inner(&mut self) -> &mut Inner<B> {
        // A poisoned lock only means an earlier call panicked mid-way; the data is still usable.
        self.inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B: Backend> Inner<B> {
    fn reset_state(&mut self) {
        let hs = self.hidden.len();
        self.state = MdnRnnState::zeros(1, hs, &self.device);
        self.hidden.fill(0.0);
        self.cell.fill(0.0);
    }

    fn encode(&self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        anyhow::ensure!(
            frame.width() == crate::envs::OBS_SIZE && frame.height() == crate::envs::OBS_SIZE,
            "V takes {0}x{0} frames, got {1}x{2}",
            crate::envs::OBS_SIZE,
            frame.width(),
            frame.height()
        );
        let (mu, _logvar) = self.vae.encode_frames(&[frame], &self.device);
        Ok(mu)
    }

    fn decode(&self, z: &[f32]) -> anyhow::Result<Frame> {
        anyhow::ensure!(
            z.len() == self.z.len(),
            "z has {} values, V takes {}",
            z.len(),
            self.z.len()
        );
        self.vae
            .decode_to_frames(z, &self.device)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("V decoded no frame"))
    }
}

impl<B: Backend> DreamRunner for BurnRunner<B> {
    fn describe_backend(&self) -> String {
        self.backend.clone()
    }

    fn z_size(&self) -> usize {
        self.z_size
    }

    fn has_controller(&self) -> bool {
        self.has_controller
    }

    fn encode(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        self.inner().encode(frame)
    }

    fn decode(&mut self, z: &[f32]) -> anyhow::Result<Frame> {
        self.inner().decode(z)
    }

    fn reset_from_frame(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let inner = self.inner();
        inner.z = inner.encode(frame)?;
        inner.reset_state();
        Ok(())
    }

    fn reset_random(&mut self) -> anyhow::Result<()> {
        let inner = self.inner();
        let n = inner.z.len();
        inner.z = (0..n)
            .map(|_| StandardNormal.sample(&mut inner.rng))
            .collect();
        inner.reset_state();
        Ok(())
    }

    fn set_z(&mut self, z: &[f32]) -> anyhow::Result<()> {
        let inner = self.inner();
        anyhow::ensure!(
            z.len() == inner.z.len(),
            "z has {} values, the model's has {}",
            z.len(),
            inner.z.len()
        );
        anyhow::ensure!(z.iter().all(|v| v.is_finite()), "z has a non-finite value");
        inner.z.copy_from_slice(z);
        Ok(())
    }

    fn step(&mut self, action: &[f32], tau: f32) -> anyhow::Result<DreamOutcome> {
        let inner = self.inner();
        let (zs, hs, a, k) = (
            inner.z.len(),
            inner.hidden.len(),
            inner.rnn.action_size(),
            inner.rnn.n_gaussians(),
        );
        anyhow::ensure!(
            action.len() == a,
            "M takes {a} action values, got {}",
            action.len()
        );
        anyhow::ensure!(
            action.iter().all(|v| v.is_finite()),
            "the action has a non-finite value"
        );
        let z = Tensor::<B, 2>::from_data(TensorData::new(inner.z.clone(), [1, zs]), &inner.device);
        let act =
            Tensor::<B, 2>::from_data(TensorData::new(action.to_vec(), [1, a]), &inner.device);
        let (packed, state) = inner.rnn.step_packed(z, act, inner.state.clone());
        inner.state = state;
        let packed = packed
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|err| anyhow::anyhow!("reading M's output: {err:?}"))?;
        // Layout (MdnRnn::step_packed): [logmix | mu | logsigma | done_logit | reward | hidden | cell].
        let zk = zs * k;
        anyhow::ensure!(
            packed.len() == 3 * zk + 2 + 2 * hs,
            "M returned {} values",
            packed.len()
        );
        let (logmix, rest) = packed.split_at(zk);
        let (mu, rest) = rest.split_at(zk);
        let (logsigma, rest) = rest.split_at(zk);
        inner.z = sample_z(logmix, mu, logsigma, k, tau, &mut inner.rng);
        let (done_logit, reward) = (rest[0], rest[1]);
        inner.hidden.copy_from_slice(&rest[2..2 + hs]);
        inner.cell.copy_from_slice(&rest[2 + hs..2 + 2 * hs]);
        // Done is drawn with the done head's probability, as C was evolved (`DoneRule::Sample`):
        // the paper's logit > 0 never fires with the shipped M, and a dream that cannot end has no
        // danger to show at high tau.
        let done_probability = 1.0 / (1.0 + (-done_logit).exp());
        let done = rand::Rng::random::<f32>(&mut inner.rng) < done_probability;
        Ok(DreamOutcome { reward, done })
    }

    fn frame(&mut self) -> anyhow::Result<Frame> {
        let inner = self.inner();
        let z = inner.z.clone();
        inner.decode(&z)
    }

    fn z(&self) -> Vec<f32> {
        match self.inner.lock() {
            Ok(inner) => inner.z.clone(),
            Err(poisoned) => poisoned.into_inner().z.clone(),
        }
    }

    fn controller_action(&self) -> Option<Vec<f32>> {
        let inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        let controller = inner.controller.as_ref()?;
        Some(controller.act(&inner.z, &inner.cell, &inner.hidden))
    }
}
