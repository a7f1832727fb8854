//! The dream: M stepped like an environment in latent space, with V to see it.
//!
//! [`DreamBatch`] steps N dreams as one batch (what makes evolving C in the dream fast); each
//! dream resets on its own, from a real frame (encoded by V), from z ~ N(0, I), or from the memory
//! of a real episode ([`RealityMemory`]). [`Dream`] is the single-dream, env-like view of a batch
//! of one.
//!
//! Each step runs M once on the device and reads everything back in one transfer (mixture, done,
//! reward, h, c). z is sampled on the host from a caller-seeded RNG, so a dream is deterministic
//! under its seed on any backend (up to the backend's float differences).
//!
//! A fan of futures (`fan.rs`): rows forked from one state ([`DreamBatch::fork_all`]), with
//! [`pixel_spread`] and [`sharpness`] to measure what they show.

mod fan;
pub mod flow;
pub mod memory;

pub use fan::{Spread, pixel_error, pixel_spread, sharpness};
pub use flow::{FlowDreamBatch, FlowDreamError};
pub use memory::RealityMemory;

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::Rng;
use rand_distr::{Distribution as _, StandardNormal};

use crate::agent::Latent;
use crate::envs::Frame;
use crate::model::mdrnn::{DimMixture, DoneRule, MdnRnn, MdnRnnState};
use crate::model::vae::{
    ConvVae, FrameDecoder, frames_to_tensor, sample_posterior, tensor_to_frames,
};

/// What one dream step returns (the app's runner returns it too).
#[derive(Debug, Clone, PartialEq)]
pub struct DreamStep {
    /// The new latent, `[z_size]`.
    pub z: Vec<f32>,
    /// M's predicted reward for the step.
    pub reward: f32,
    /// M's done head fired, under the dream's [`DoneRule`].
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DreamError {
    #[error(
        "dream step needs {expected} action values ({batch} dreams x {action_size}), got {got}"
    )]
    WrongActionLength {
        expected: usize,
        got: usize,
        batch: usize,
        action_size: usize,
    },
    #[error("action[{index}] is {value}, not a finite number")]
    NotFinite { index: usize, value: f32 },
    #[error("dream index {index} out of range for a batch of {batch}")]
    BadIndex { index: usize, batch: usize },
    #[error("reset got {frames} frames for {indices} dreams")]
    FrameCount { frames: usize, indices: usize },
    #[error("z has {got} values, the dream's has {expected}")]
    WrongZLength { expected: usize, got: usize },
    #[error("z[{index}] is {value}, not a finite number")]
    ZNotFinite { index: usize, value: f32 },
    #[error("M's memory has {got} values, the dream's has {expected}")]
    WrongMemoryLength { expected: usize, got: usize },
    #[error("{got} random generators for {batch} dreams (one each)")]
    WrongGeneratorCount { got: usize, batch: usize },
    #[error("{got} dream starts for a batch of {batch} dreams (one each)")]
    WrongStartCount { got: usize, batch: usize },
    #[error(
        "dream start {index}: {z_values} z values and {action_values} action values are not \
         K + 1 latents of {z_size} and K actions of {action_size}"
    )]
    StartShape {
        index: usize,
        z_values: usize,
        action_values: usize,
        z_size: usize,
        action_size: usize,
    },
    #[error(
        "dream start {index} has {got} steps of real context, start 0 has {expected}: a batch warms up together"
    )]
    MixedContext {
        index: usize,
        got: usize,
        expected: usize,
    },
}

/// Where a dream starts: the first steps of a real episode, as latents and the actions between
/// them.
///
/// With no actions this is the paper's start: one z, from a zero LSTM state. With K actions, M
/// first reads the K real steps (z_0, a_0) .. (z_{K-1}, a_{K-1}) as it would have along the real
/// episode, and the dream goes on from z_K with the memory M built. A departure from the paper,
/// for Take Cover: M's windows start anywhere in an episode from a zero state, so a zero state
/// stands for any step, one just before a death too, and a dream from it can end at once where
/// no real episode does (the model card has the figures).
#[derive(Debug, Clone, PartialEq)]
pub struct DreamStart {
    /// `[K + 1, z_size]`: the real frames' latents; the dream starts at the last.
    pub z: Vec<f32>,
    /// `[K, action_size]`: the actions taken between them.
    pub actions: Vec<f32>,
    /// What reality paid for the K steps, so that a dream's return counts from the episode's
    /// start (Take Cover: K).
    pub prefix_return: f64,
}

impl DreamStart {
    /// The paper's start: latent `z` from a zero state, no real context.
    pub fn at(z: Vec<f32>) -> Self {
        Self {
            z,
            actions: Vec::new(),
            prefix_return: 0.0,
        }
    }

    /// K, the steps of real context: whole actions of `action_size` values
    /// ([`DreamBatch::reset_from_starts`] checks that the shapes fit).
    pub fn context_steps(&self, action_size: usize) -> usize {
        self.actions.len().checked_div(action_size).unwrap_or(0)
    }
}

/// N dreams stepped together.
#[derive(Debug, Clone)]
pub struct DreamBatch<B: Backend> {
    vae: ConvVae<B>,
    /// V's decoder folded for inference, built once from `vae`.
    decoder: FrameDecoder<B>,
    rnn: MdnRnn<B>,
    device: B::Device,
    batch: usize,
    /// `[batch, z_size]`: the current latents (host copy, authoritative).
    z: Vec<f32>,
    /// `[batch, hidden]`: h after the last step (host copy).
    hidden: Vec<f32>,
    /// `[batch, hidden]`: c after the last step (host copy).
    cell: Vec<f32>,
    /// The device state; stale when `state_dirty` (a reset changed the host copies).
    state: MdnRnnState<B>,
    state_dirty: bool,
    reward: Vec<f32>,
    done: Vec<bool>,
    /// Added to M's done logit: ln of the factor on the done odds (0: as trained).
    done_logit_offset: f32,
    /// Steps since each dream's reset.
    steps: Vec<u32>,
    done_rule: DoneRule,
    /// M's packed output of the last step (`[batch, row]`), kept so its mixtures can be shown.
    last_output: Vec<f32>,
    /// Dream i's z is the sample from `last_output` (no reset or edit since the step).
    output_current: Vec<bool>,
}

impl<B: Backend> DreamBatch<B> {
    /// `batch` dreams, all at z = 0 with a zero state until reset.
    pub fn new(vae: ConvVae<B>, rnn: MdnRnn<B>, batch: usize, device: &B::Device) -> Self {
        assert_eq!(vae.z_size(), rnn.z_size(), "V and M must share z_size");
        let (zs, hs) = (rnn.z_size(), rnn.hidden_size());
        Self {
            state: MdnRnnState::zeros(batch, hs, device),
            decoder: vae.frame_decoder(),
            vae,
            rnn,
            device: device.clone(),
            batch,
            z: vec![0.0; batch * zs],
            hidden: vec![0.0; batch * hs],
            cell: vec![0.0; batch * hs],
            state_dirty: false,
            reward: vec![0.0; batch],
            done: vec![false; batch],
            done_logit_offset: 0.0,
            steps: vec![0; batch],
            // The paper's rule draws no random numbers, so a bare dream's z draws do not depend
            // on how it ends; callers that evolve or score C choose the rule.
            done_rule: DoneRule::Threshold,
            last_output: Vec::new(),
            output_current: vec![false; batch],
        }
    }

    /// How M's done head ends a dream (the paper's threshold until set).
    pub fn set_done_rule(&mut self, rule: DoneRule) {
        self.done_rule = rule;
    }
    pub fn done_rule(&self) -> DoneRule {
        self.done_rule
    }

    /// Multiplies the odds of M's done head by `factor` (1: as trained), under either rule. A
    /// lever to make the dream kill about as often as reality does: M trained on a few hundred
    /// rollouts lets a careless agent live several times longer in its dream than in the env.
    pub fn set_done_odds(&mut self, factor: f32) {
        self.done_logit_offset = factor.ln();
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }
    pub fn z_size(&self) -> usize {
        self.rnn.z_size()
    }
    pub fn hidden_size(&self) -> usize {
        self.rnn.hidden_size()
    }
    pub fn action_size(&self) -> usize {
        self.rnn.action_size()
    }
    pub fn device(&self) -> &B::Device {
        &self.device
    }
    pub fn vae(&self) -> &ConvVae<B> {
        &self.vae
    }
    /// V's decoder as the dream uses it (folded for inference).
    pub fn decoder(&self) -> &FrameDecoder<B> {
        &self.decoder
    }
    pub fn mdrnn(&self) -> &MdnRnn<B> {
        &self.rnn
    }

    /// Dream `i`'s latent, `[z_size]`.
    pub fn z(&self, i: usize) -> &[f32] {
        let n = self.z_size();
        &self.z[i * n..(i + 1) * n]
    }
    /// Dream `i`'s LSTM h, `[hidden]`.
    pub fn hidden(&self, i: usize) -> &[f32] {
        let n = self.hidden_size();
        &self.hidden[i * n..(i + 1) * n]
    }
    /// Dream `i`'s LSTM c, `[hidden]`.
    pub fn cell(&self, i: usize) -> &[f32] {
        let n = self.hidden_size();
        &self.cell[i * n..(i + 1) * n]
    }
    /// Dream `i`'s state, as an agent sees it.
    pub fn latent(&self, i: usize) -> Latent<'_> {
        Latent {
            z: self.z(i),
            hidden: self.hidden(i),
            cell: self.cell(i),
        }
    }
    /// The last step's predicted rewards, `[batch]`.
    pub fn rewards(&self) -> &[f32] {
        &self.reward
    }
    /// The last step's done flags, `[batch]`.
    pub fn dones(&self) -> &[bool] {
        &self.done
    }
    /// Steps since each dream's reset, `[batch]`.
    pub fn steps(&self) -> &[u32] {
        &self.steps
    }

    fn check_index(&self, i: usize) -> Result<(), DreamError> {
        if i < self.batch {
            Ok(())
        } else {
            Err(DreamError::BadIndex {
                index: i,
                batch: self.batch,
            })
        }
    }

    fn check_z(&self, z: &[f32]) -> Result<(), DreamError> {
        if z.len() != self.z_size() {
            return Err(DreamError::WrongZLength {
                expected: self.z_size(),
                got: z.len(),
            });
        }
        match z.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            Some((index, &value)) => Err(DreamError::ZNotFinite { index, value }),
            None => Ok(()),
        }
    }

    /// Replaces dream `i`'s latent and keeps M's memory (h, c): how the playground makes M follow
    /// reality, and how the latent explorer edits z mid-dream.
    pub fn set_z(&mut self, i: usize, z: &[f32]) -> Result<(), DreamError> {
        self.check_index(i)?;
        self.check_z(z)?;
        let zs = self.z_size();
        self.z[i * zs..(i + 1) * zs].copy_from_slice(z);
        self.output_current[i] = false;
        Ok(())
    }

    /// M's predicted mixture for dimension `d` of dream `i`'s current z, from the step that drew
    /// it; `None` before any step, or once z was reset or edited since.
    pub fn mixture(&self, i: usize, d: usize) -> Option<DimMixture> {
        if !self.output_current.get(i).copied().unwrap_or(false) || d >= self.z_size() {
            return None;
        }
        let row = self.rnn.packed_layout().row(&self.last_output, i);
        Some(row.mixture(d, self.rnn.n_gaussians()))
    }

    /// M's memory (h and c) must be `hidden_size` long each.
    pub(crate) fn check_memory(&self, hidden: &[f32], cell: &[f32]) -> Result<(), DreamError> {
        let hs = self.hidden_size();
        for memory in [hidden, cell] {
            if memory.len() != hs {
                return Err(DreamError::WrongMemoryLength {
                    expected: hs,
                    got: memory.len(),
                });
            }
        }
        Ok(())
    }

    /// Sets dream `i` to latent `z` with a zero LSTM state.
    pub fn reset_to_z(&mut self, i: usize, z: &[f32]) -> Result<(), DreamError> {
        self.set_z(i, z)?;
        self.reset_memory(i)
    }

    /// Sets dream `i` to latent `z` with M's memory `hidden` and `cell` (taken from another
    /// dream, e.g. the one that followed reality), and restarts its episode counters: a fork that
    /// keeps what M knew of the episode, as [`DreamStart`]'s context does.
    pub fn reset_to_state(
        &mut self,
        i: usize,
        z: &[f32],
        hidden: &[f32],
        cell: &[f32],
    ) -> Result<(), DreamError> {
        self.check_memory(hidden, cell)?;
        let hs = self.hidden_size();
        self.reset_to_z(i, z)?;
        self.hidden[i * hs..(i + 1) * hs].copy_from_slice(hidden);
        self.cell[i * hs..(i + 1) * hs].copy_from_slice(cell);
        Ok(())
    }

    /// Zeroes dream `i`'s LSTM state and episode counters, keeping its z.
    pub fn reset_memory(&mut self, i: usize) -> Result<(), DreamError> {
        self.check_index(i)?;
        let hs = self.hidden_size();
        self.hidden[i * hs..(i + 1) * hs].fill(0.0);
        self.cell[i * hs..(i + 1) * hs].fill(0.0);
        self.reward[i] = 0.0;
        self.done[i] = false;
        self.steps[i] = 0;
        self.state_dirty = true;
        Ok(())
    }

    /// Resets dream `i` to z ~ N(0, I).
    pub fn reset_random<R: Rng + ?Sized>(
        &mut self,
        i: usize,
        rng: &mut R,
    ) -> Result<(), DreamError> {
        let z: Vec<f32> = (0..self.z_size())
            .map(|_| StandardNormal.sample(rng))
            .collect();
        self.reset_to_z(i, &z)
    }

    /// Resets every dream to z ~ N(0, I).
    pub fn reset_all_random<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        for i in 0..self.batch {
            self.reset_random(i, rng).expect("index in range");
        }
    }

    /// Resets every dream to its start (one each, all with the same steps of real context): the
    /// latents of a start without context are set as [`reset_to_z`](Self::reset_to_z) sets them;
    /// with K steps of context, M reads them for the whole batch at once first (K LSTM steps).
    /// Each dream's step count restarts at 0.
    pub fn reset_from_starts(&mut self, starts: &[DreamStart]) -> Result<(), DreamError> {
        let (n, zs, a, hs) = (
            self.batch,
            self.z_size(),
            self.action_size(),
            self.hidden_size(),
        );
        if starts.len() != n {
            return Err(DreamError::WrongStartCount {
                got: starts.len(),
                batch: n,
            });
        }
        let context = starts.first().map_or(0, |s| s.context_steps(a));
        for (index, s) in starts.iter().enumerate() {
            let k = s.context_steps(a);
            if s.actions.len() != k * a || s.z.len() != (k + 1) * zs {
                return Err(DreamError::StartShape {
                    index,
                    z_values: s.z.len(),
                    action_values: s.actions.len(),
                    z_size: zs,
                    action_size: a,
                });
            }
            if k != context {
                return Err(DreamError::MixedContext {
                    index,
                    got: k,
                    expected: context,
                });
            }
            for z in s.z.chunks(zs) {
                self.check_z(z)?;
            }
            if let Some((index, &value)) =
                s.actions.iter().enumerate().find(|(_, v)| !v.is_finite())
            {
                return Err(DreamError::NotFinite { index, value });
            }
        }
        if context == 0 {
            for (i, s) in starts.iter().enumerate() {
                self.reset_to_z(i, &s.z)?;
            }
            return Ok(());
        }
        // M reads the K real steps of every start at once, as it reads reality.
        let mut memory = RealityMemory::new(zs, hs, n);
        for t in 0..context {
            let gather = |values: &dyn Fn(&DreamStart) -> &[f32]| -> Vec<f32> {
                starts.iter().flat_map(values).copied().collect()
            };
            memory.set_all_z(gather(&|s| &s.z[t * zs..(t + 1) * zs]))?;
            memory.advance(
                &self.rnn,
                &gather(&|s| &s.actions[t * a..(t + 1) * a]),
                &self.device,
            )?;
        }
        for (i, s) in starts.iter().enumerate() {
            let Latent { hidden, cell, .. } = memory.latent(i);
            self.reset_to_state(i, &s.z[context * zs..], hidden, cell)?;
        }
        Ok(())
    }

    /// Forks dreams `indices` from real frames (one per index), encoded by V in one batch:
    /// z = mu, or z = mu + sigma * eps when `rng` is given.
    pub fn reset_from_frames<R: Rng + ?Sized>(
        &mut self,
        indices: &[usize],
        frames: &[&Frame],
        rng: Option<&mut R>,
    ) -> Result<(), DreamError> {
        if frames.len() != indices.len() {
            return Err(DreamError::FrameCount {
                frames: frames.len(),
                indices: indices.len(),
            });
        }
        for &i in indices {
            self.check_index(i)?;
        }
        if frames.is_empty() {
            return Ok(());
        }
        let zs = self.z_size();
        let (mu, logvar) = self.vae.encode(frames_to_tensor::<B>(frames, &self.device));
        let mu = read_f32(mu);
        let zs_all: Vec<f32> = match rng {
            None => mu,
            Some(rng) => sample_posterior(&mu, &read_f32(logvar), rng),
        };
        for (k, &i) in indices.iter().enumerate() {
            self.reset_to_z(i, &zs_all[k * zs..(k + 1) * zs])?;
        }
        Ok(())
    }

    /// Steps every dream with `actions` (`[batch, action_size]`, row-major) at temperature `tau`.
    /// Afterwards [`z`](Self::z), [`hidden`](Self::hidden), [`cell`](Self::cell),
    /// [`rewards`](Self::rewards) and [`dones`](Self::dones) hold the new values.
    pub fn step<R: Rng + ?Sized>(
        &mut self,
        actions: &[f32],
        tau: f32,
        rng: &mut R,
    ) -> Result<(), DreamError> {
        let packed = self.run_m(actions)?;
        for i in 0..self.batch {
            self.take_step_output(&packed, i, tau, rng);
        }
        self.keep_output(packed);
        Ok(())
    }

    /// As [`step`](Self::step), but dream i draws its samples from `rngs[i]` alone, so what
    /// happens in one dream does not depend on the others in the batch. This is what lets every
    /// candidate of a CMA-ES generation meet the same dreams (common random numbers).
    pub fn step_each<R: Rng>(
        &mut self,
        actions: &[f32],
        tau: f32,
        rngs: &mut [R],
    ) -> Result<(), DreamError> {
        if rngs.len() != self.batch {
            return Err(DreamError::WrongGeneratorCount {
                got: rngs.len(),
                batch: self.batch,
            });
        }
        let packed = self.run_m(actions)?;
        for (i, rng) in rngs.iter_mut().enumerate() {
            self.take_step_output(&packed, i, tau, rng);
        }
        self.keep_output(packed);
        Ok(())
    }

    /// Checks `actions`, runs M one step on the device and reads its packed output back.
    fn run_m(&mut self, actions: &[f32]) -> Result<Vec<f32>, DreamError> {
        let (n, zs, hs, a) = (
            self.batch,
            self.z_size(),
            self.hidden_size(),
            self.action_size(),
        );
        check_actions(actions, n, a)?;
        if self.state_dirty {
            self.state = MdnRnnState {
                hidden: Tensor::from_data(
                    TensorData::new(self.hidden.clone(), [n, hs]),
                    &self.device,
                ),
                cell: Tensor::from_data(TensorData::new(self.cell.clone(), [n, hs]), &self.device),
            };
            self.state_dirty = false;
        }
        let z = Tensor::from_data(TensorData::new(self.z.clone(), [n, zs]), &self.device);
        let action = Tensor::from_data(TensorData::new(actions.to_vec(), [n, a]), &self.device);
        let (packed, state) = self.rnn.step_packed(z, action, self.state.clone());
        self.state = state;
        Ok(read_f32(packed))
    }

    fn keep_output(&mut self, packed: Vec<f32>) {
        self.last_output = packed;
        self.output_current.fill(true);
    }

    /// Samples dream `i`'s next z (and done, under [`DoneRule::Sample`]) from M's packed output
    /// with `rng`, and stores its reward, h and c.
    fn take_step_output<R: Rng + ?Sized>(
        &mut self,
        packed: &[f32],
        i: usize,
        tau: f32,
        rng: &mut R,
    ) {
        let (zs, hs, k) = (self.z_size(), self.hidden_size(), self.rnn.n_gaussians());
        let out = self.rnn.packed_layout().row(packed, i);
        for d in 0..zs {
            self.z[i * zs + d] = out.sample_dim(d, k, tau, rng);
        }
        self.done[i] = self
            .done_rule
            .fires(out.done_logit + self.done_logit_offset, rng);
        self.reward[i] = out.reward;
        self.hidden[i * hs..(i + 1) * hs].copy_from_slice(out.hidden);
        self.cell[i * hs..(i + 1) * hs].copy_from_slice(out.cell);
        self.steps[i] += 1;
    }

    /// Decodes dream `i`'s current z to an RGB frame.
    pub fn frame(&self, i: usize) -> Frame {
        let zs = self.z_size();
        let z = Tensor::from_data(TensorData::new(self.z(i).to_vec(), [1, zs]), &self.device);
        tensor_to_frames(self.decoder.decode(z)).remove(0)
    }

    /// Decodes every dream's current z, in one batch.
    pub fn frames(&self) -> Vec<Frame> {
        let z = Tensor::from_data(
            TensorData::new(self.z.clone(), [self.batch, self.z_size()]),
            &self.device,
        );
        tensor_to_frames(self.decoder.decode(z))
    }
}

/// One dream with an env-like API: reset, step, look.
#[derive(Debug, Clone)]
pub struct Dream<B: Backend> {
    inner: DreamBatch<B>,
}

impl<B: Backend> Dream<B> {
    pub fn new(vae: ConvVae<B>, rnn: MdnRnn<B>, device: &B::Device) -> Self {
        Self {
            inner: DreamBatch::new(vae, rnn, 1, device),
        }
    }

    /// Forks the dream from a real frame: z = V's mu for it, h = c = 0.
    pub fn reset_from_frame(&mut self, obs: &Frame) {
        self.inner
            .reset_from_frames::<rand_chacha::ChaCha8Rng>(&[0], &[obs], None)
            .expect("one frame for dream 0");
    }

    /// Starts the dream from z ~ N(0, I), h = c = 0.
    pub fn reset_random<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.inner.reset_random(0, rng).expect("dream 0 exists");
    }

    /// Sets z directly, h = c = 0.
    pub fn reset_to_z(&mut self, z: &[f32]) -> Result<(), DreamError> {
        self.inner.reset_to_z(0, z)
    }

    /// Replaces z and keeps M's memory (h, c).
    pub fn set_z(&mut self, z: &[f32]) -> Result<(), DreamError> {
        self.inner.set_z(0, z)
    }

    /// Sets z and M's memory (h, c), e.g. another dream's, and restarts the step count: a fork
    /// that keeps what M knew (see [`DreamBatch::reset_to_state`]).
    pub fn reset_to_state(
        &mut self,
        z: &[f32],
        hidden: &[f32],
        cell: &[f32],
    ) -> Result<(), DreamError> {
        self.inner.reset_to_state(0, z, hidden, cell)
    }

    /// Multiplies the odds of M's done head by `factor` (see [`DreamBatch::set_done_odds`]).
    pub fn set_done_odds(&mut self, factor: f32) {
        self.inner.set_done_odds(factor);
    }

    /// Zeroes M's memory (h, c) and the step count, keeping z.
    pub fn reset_memory(&mut self) {
        self.inner.reset_memory(0).expect("dream 0 exists");
    }

    /// How M's done head ends the dream (the paper's threshold unless set).
    pub fn set_done_rule(&mut self, rule: DoneRule) {
        self.inner.set_done_rule(rule);
    }

    /// One step of M at temperature `tau`.
    pub fn step<R: Rng + ?Sized>(
        &mut self,
        action: &[f32],
        tau: f32,
        rng: &mut R,
    ) -> Result<DreamStep, DreamError> {
        self.inner.step(action, tau, rng)?;
        Ok(DreamStep {
            z: self.inner.z(0).to_vec(),
            reward: self.inner.rewards()[0],
            done: self.inner.dones()[0],
        })
    }

    /// The current z decoded by V.
    pub fn frame(&self) -> Frame {
        self.inner.frame(0)
    }

    pub fn z(&self) -> &[f32] {
        self.inner.z(0)
    }
    /// M's predicted mixture for dimension `d` of the current z (see [`DreamBatch::mixture`]).
    pub fn mixture(&self, d: usize) -> Option<DimMixture> {
        self.inner.mixture(0, d)
    }
    pub fn hidden(&self) -> &[f32] {
        self.inner.hidden(0)
    }
    pub fn cell(&self) -> &[f32] {
        self.inner.cell(0)
    }
    pub fn elapsed_steps(&self) -> u32 {
        self.inner.steps()[0]
    }
    pub fn batch(&self) -> &DreamBatch<B> {
        &self.inner
    }
}

/// `actions` are `batch` finite rows of `action_size` values.
fn check_actions(actions: &[f32], batch: usize, action_size: usize) -> Result<(), DreamError> {
    if actions.len() != batch * action_size {
        return Err(DreamError::WrongActionLength {
            expected: batch * action_size,
            got: actions.len(),
            batch,
            action_size,
        });
    }
    match actions.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => Err(DreamError::NotFinite { index, value }),
        None => Ok(()),
    }
}

pub(crate) fn read_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 tensor data")
}
