//! The flow dream: the flow model stepped like an environment, N dreams as one batch.
//!
//! Each dream keeps its last K latents (normalised, [`LatentStats`]) and actions. A step asks the
//! heads whether the step ends the episode and what it pays (from the two newest latents and the
//! action), then samples the next latent from noise in a few Euler steps ([`Sampling`]), and
//! shifts it into the context. Its noise comes from the caller's seeded generator, so a dream is
//! deterministic under its seed, as M's dream is.

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::Rng;
use rand_distr::{Distribution as _, StandardNormal};

use super::DreamStep;
use crate::envs::Frame;
use crate::model::flow::shortcut::{self, Sampling, SamplingError};
use crate::model::flow::{Autoencoder, Dynamics, EndHeads, FlowModel, FlowSpec, LatentStats};
use crate::model::vae::{frames_to_tensor, tensor_to_frames};

/// Why a flow dream cannot be made or stepped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowDreamError {
    #[error(
        "the flow model has no {0}; train it with `dreamplay train-autoencoder`, `encode-latents` and `train-flow`"
    )]
    Missing(&'static str),
    #[error(
        "a flow dream step needs {expected} action values ({batch} dreams x {action_size}), got {got}"
    )]
    WrongActionLength {
        expected: usize,
        got: usize,
        batch: usize,
        action_size: usize,
    },
    #[error("action[{index}] is {value}, not a finite number")]
    NotFinite { index: usize, value: f32 },
    #[error("flow dream index {index} out of range for a batch of {batch}")]
    BadIndex { index: usize, batch: usize },
    #[error("a flow dream starts from 1 to {context} frames, got {got}")]
    FrameCount { got: usize, context: usize },
    #[error("{got} actions for {frames} start frames (one between each two)")]
    StartActions { got: usize, frames: usize },
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// Sampling as a dream starts: 2 steps (the play-rate budget), temperature 1, a little context
/// noise (the low end of training's range, which keeps long dreams together).
pub const DEFAULT_SAMPLING: Sampling = Sampling {
    steps: 2,
    temperature: 1.0,
    context_noise: 0.05,
};

/// N flow dreams stepped together.
#[derive(Debug, Clone)]
pub struct FlowDreamBatch<B: Backend> {
    spec: FlowSpec,
    autoencoder: Autoencoder<B>,
    dynamics: Dynamics<B>,
    heads: EndHeads<B>,
    stats: LatentStats,
    device: B::Device,
    batch: usize,
    sampling: Sampling,
    /// `[batch, K, latent_len]`: each dream's last K latents, oldest first, normalised.
    context: Vec<f32>,
    /// `[batch, K, A]`: the actions taken at those latents (zero before the start).
    actions: Vec<f32>,
    reward: Vec<f32>,
    done: Vec<bool>,
    steps: Vec<u32>,
}

impl<B: Backend> FlowDreamBatch<B> {
    /// Sampling as a dream starts ([`DEFAULT_SAMPLING`]).
    pub const DEFAULT_SAMPLING: Sampling = DEFAULT_SAMPLING;

    /// `batch` dreams of `model`, each at a blank start until reset. Needs every part and the
    /// latent statistics.
    pub fn new(
        model: FlowModel<B>,
        batch: usize,
        device: &B::Device,
    ) -> Result<Self, FlowDreamError> {
        let spec = model.spec;
        let autoencoder = model
            .autoencoder
            .ok_or(FlowDreamError::Missing("autoencoder"))?;
        let dynamics = model.dynamics.ok_or(FlowDreamError::Missing("dynamics"))?;
        let heads = model
            .end_heads
            .ok_or(FlowDreamError::Missing("done and reward heads"))?;
        let stats = model
            .latent_stats
            .ok_or(FlowDreamError::Missing("latent statistics"))?;
        let batch = batch.max(1);
        Ok(Self {
            spec,
            autoencoder,
            dynamics,
            heads,
            stats,
            device: device.clone(),
            batch,
            sampling: Self::DEFAULT_SAMPLING,
            context: vec![0.0; batch * spec.context * spec.latent_len()],
            actions: vec![0.0; batch * spec.context * spec.action_size],
            reward: vec![0.0; batch],
            done: vec![false; batch],
            steps: vec![0; batch],
        })
    }

    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    pub fn action_size(&self) -> usize {
        self.spec.action_size
    }

    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Sets the steps, temperature and context noise of later steps; a setting the model cannot
    /// sample with is an error and changes nothing.
    pub fn set_sampling(&mut self, sampling: Sampling) -> Result<(), FlowDreamError> {
        if shortcut::level_for_steps(sampling.steps).is_none() {
            return Err(SamplingError::Steps(sampling.steps).into());
        }
        if !(sampling.temperature.is_finite() && sampling.temperature >= 0.0) {
            return Err(SamplingError::Temperature(sampling.temperature).into());
        }
        if !(0.0..=1.0).contains(&sampling.context_noise) {
            return Err(SamplingError::ContextNoise(sampling.context_noise).into());
        }
        self.sampling = sampling;
        Ok(())
    }

    pub fn rewards(&self) -> &[f32] {
        &self.reward
    }

    pub fn dones(&self) -> &[bool] {
        &self.done
    }

    pub fn steps(&self) -> &[u32] {
        &self.steps
    }

    /// `n` dreams that each go on from dream `i`'s context and actions, at its sampling: a fan
    /// of futures from one state, which the noise of each step draws apart.
    pub fn fan_out(&self, i: usize, n: usize) -> Result<Self, FlowDreamError> {
        self.check_index(i)?;
        let n = n.max(1);
        let (k, a, len) = (
            self.spec.context,
            self.spec.action_size,
            self.spec.latent_len(),
        );
        let context = &self.context[i * k * len..(i + 1) * k * len];
        let actions = &self.actions[i * k * a..(i + 1) * k * a];
        Ok(Self {
            batch: n,
            context: context.repeat(n),
            actions: actions.repeat(n),
            reward: vec![self.reward[i]; n],
            done: vec![self.done[i]; n],
            steps: vec![0; n],
            ..self.clone()
        })
    }

    /// Dream `i`'s newest latent, normalised, `[C * S * S]`.
    pub fn latent(&self, i: usize) -> &[f32] {
        let (k, len) = (self.spec.context, self.spec.latent_len());
        let start = (i * k + k - 1) * len;
        &self.context[start..start + len]
    }

    fn check_index(&self, i: usize) -> Result<(), FlowDreamError> {
        if i < self.batch {
            Ok(())
        } else {
            Err(FlowDreamError::BadIndex {
                index: i,
                batch: self.batch,
            })
        }
    }

    /// Resets dream `i` to real `frames` (oldest first, 1 to K) and the `actions` taken between
    /// them (`frames - 1` actions of `action_size`): the dream goes on from the last frame. Fewer
    /// than K frames are padded with the first, as training pads an episode's start.
    pub fn reset_from_frames(
        &mut self,
        i: usize,
        frames: &[&Frame],
        actions: &[f32],
    ) -> Result<(), FlowDreamError> {
        self.check_index(i)?;
        let (k, a, len) = (
            self.spec.context,
            self.spec.action_size,
            self.spec.latent_len(),
        );
        if frames.is_empty() || frames.len() > k {
            return Err(FlowDreamError::FrameCount {
                got: frames.len(),
                context: k,
            });
        }
        if actions.len() != (frames.len() - 1) * a {
            return Err(FlowDreamError::StartActions {
                got: actions.len() / a.max(1),
                frames: frames.len(),
            });
        }
        check_finite(actions)?;
        let latents = self
            .autoencoder
            .encode(frames_to_tensor(frames, &self.device));
        let mut latents = read_f32(latents);
        self.stats.normalise(&mut latents, len);
        let pad = k - frames.len();
        let context = &mut self.context[i * k * len..(i + 1) * k * len];
        for slot in 0..k {
            let source = slot.saturating_sub(pad);
            context[slot * len..(slot + 1) * len]
                .copy_from_slice(&latents[source * len..(source + 1) * len]);
        }
        // Action slot j is the action taken at context latent j; the newest's is not taken yet.
        let row = &mut self.actions[i * k * a..(i + 1) * k * a];
        row.fill(0.0);
        for (j, action) in actions.chunks(a.max(1)).enumerate() {
            let slot = pad + j;
            row[slot * a..(slot + 1) * a].copy_from_slice(action);
        }
        self.reward[i] = 0.0;
        self.done[i] = false;
        self.steps[i] = 0;
        Ok(())
    }

    /// Steps every dream with `actions` (`[batch, action_size]`, row-major); returns each dream's
    /// step. The done and reward are the heads' on the two newest latents and the action.
    pub fn step<R: Rng + ?Sized>(
        &mut self,
        actions: &[f32],
        rng: &mut R,
    ) -> Result<Vec<DreamStep>, FlowDreamError> {
        let (n, k, a) = (self.batch, self.spec.context, self.spec.action_size);
        let (c, s, len) = (
            self.spec.latent_channels,
            self.spec.latent_side,
            self.spec.latent_len(),
        );
        if actions.len() != n * a {
            return Err(FlowDreamError::WrongActionLength {
                expected: n * a,
                got: actions.len(),
                batch: n,
                action_size: a,
            });
        }
        check_finite(actions)?;
        // The action is taken at the newest latent: it fills the newest action slot.
        for i in 0..n {
            let slot = (i * k + k - 1) * a;
            self.actions[slot..slot + a].copy_from_slice(&actions[i * a..(i + 1) * a]);
        }
        let device = &self.device;
        let context = Tensor::<B, 4>::from_data(
            TensorData::new(self.context.clone(), [n, k * c, s, s]),
            device,
        );
        let action_rows =
            Tensor::<B, 2>::from_data(TensorData::new(self.actions.clone(), [n, k * a]), device);
        let newest = context.clone().narrow(1, (k - 1) * c, c);
        let previous = context.clone().narrow(1, k.saturating_sub(2) * c, c);
        let action = Tensor::<B, 2>::from_data(TensorData::new(actions.to_vec(), [n, a]), device);
        let (done_logit, reward) = self.heads.forward(previous, newest, action);
        let noise = normal::<B, 4, R>(rng, [n, c, s, s], device);
        let context_eps = normal::<B, 4, R>(rng, [n, k * c, s, s], device);
        let next = shortcut::sample(
            &self.dynamics,
            context,
            action_rows,
            noise,
            context_eps,
            &self.sampling,
        )?;
        let next = read_f32(next);
        let done_logit = read_f32(done_logit.reshape([n]));
        let reward = read_f32(reward.reshape([n]));
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // Shift the context and its actions one step; the new latent is the newest.
            let context = &mut self.context[i * k * len..(i + 1) * k * len];
            context.copy_within(len.., 0);
            context[(k - 1) * len..].copy_from_slice(&next[i * len..(i + 1) * len]);
            let row = &mut self.actions[i * k * a..(i + 1) * k * a];
            row.copy_within(a.., 0);
            row[(k - 1) * a..].fill(0.0);
            self.done[i] = done_logit[i] > 0.0;
            self.reward[i] = reward[i];
            self.steps[i] += 1;
            out.push(DreamStep {
                z: next[i * len..(i + 1) * len].to_vec(),
                reward: reward[i],
                done: self.done[i],
            });
        }
        Ok(out)
    }

    /// Every dream's newest latent drawn as a frame, in one batch.
    pub fn frames(&self) -> Vec<Frame> {
        let (n, k, len) = (self.batch, self.spec.context, self.spec.latent_len());
        let mut latents = Vec::with_capacity(n * len);
        for i in 0..n {
            latents.extend_from_slice(&self.context[(i * k + k - 1) * len..(i * k + k) * len]);
        }
        self.decode(latents, n)
    }

    /// Dream `i`'s newest latent drawn as a frame.
    pub fn frame(&self, i: usize) -> Result<Frame, FlowDreamError> {
        self.check_index(i)?;
        let mut frames = self.decode(self.latent(i).to_vec(), 1);
        Ok(frames.remove(0))
    }

    /// Normalised latents (`n` of them) to frames.
    fn decode(&self, mut latents: Vec<f32>, n: usize) -> Vec<Frame> {
        let (c, s) = (self.spec.latent_channels, self.spec.latent_side);
        self.stats.denormalise(&mut latents, self.spec.latent_len());
        let latents = Tensor::from_data(TensorData::new(latents, [n, c, s, s]), &self.device);
        tensor_to_frames(self.autoencoder.decode(latents))
    }
}

fn check_finite(values: &[f32]) -> Result<(), FlowDreamError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(FlowDreamError::NotFinite {
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn normal<B: Backend, const D: usize, R: Rng + ?Sized>(
    rng: &mut R,
    dims: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| StandardNormal.sample(rng))
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

fn read_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 tensor data")
}
