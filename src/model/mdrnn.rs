//! M: the MDN-RNN. An LSTM over `[z_t, a_t]` whose hidden state feeds a mixture of `n_gaussians`
//! diagonal gaussians per z dimension (the paper's form: logmix, mu and logsigma, each
//! `z_size * n_gaussians`), plus a "done" logit (the paper's Doom model) and a reward prediction
//! (ctallec's addition, so that CarRacing too can train in the dream).
//!
//! The LSTM is written out here rather than taken from `burn::nn::Lstm`, for two reasons:
//! - it is burn's structure (per gate, a Linear on the input and one on h; gate order i, f, g, o),
//!   measured as fast as `burn::nn::Lstm` on flex. Fused `[d, 4 * hidden]` or stacked
//!   `[4, d, hidden]` gate matrices were measured and were slower at batch 1,024 on flex;
//! - it matches the TF reference's parameter count exactly (one bias vector; burn's LSTM always
//!   has two). `recurrent_bias` adds the second vector, which reproduces the paper's Doom count.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid, tanh};
use rand::Rng;
use rand_distr::{Distribution as _, StandardNormal};

/// Below this temperature, sampling is deterministic: the most likely component's mean.
pub const MIN_TAU: f32 = 1e-6;

/// The paper's weight on done = 1 in the done loss.
pub const DONE_POS_WEIGHT: f64 = 10.0;

/// The paper's Doom temperatures (its Table 2), one preset key each in the app.
pub const PAPER_DOOM_TAUS: [f32; 5] = [0.1, 0.5, 1.0, 1.15, 1.3];
/// The temperature the paper evolved and showed Take Cover's C in.
pub const PAPER_DOOM_TAU: f32 = 1.15;

/// How a dream decides that M's done head has fired. It lives with M because the bundle records
/// the rule a C was evolved under.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DoneRule {
    /// The paper's rule: done when the logit is above 0.
    Threshold,
    /// Done with the probability M's done head gives, sigmoid(logit), drawn each step. A
    /// departure from the paper for evolving C: under the threshold a careless policy lives far
    /// longer in the dream than in reality, because the head's logit rarely crosses 0 even on the
    /// step a fireball kills. Drawn, the dream kills about as often as reality or a little more
    /// (the head carries the paper's x10 weight on done, so the draw errs towards death). The
    /// default: every shipped C was evolved under it.
    #[default]
    Sample,
}

impl DoneRule {
    /// Whether M's done head, at `logit`, ends the dream (draws one number under `Sample`).
    pub fn fires<R: Rng + ?Sized>(self, logit: f32, rng: &mut R) -> bool {
        match self {
            DoneRule::Threshold => logit > 0.0,
            DoneRule::Sample => rng.random::<f32>() < 1.0 / (1.0 + (-logit).exp()),
        }
    }

    /// The rule whose on-disk flag `sampled_done` is `sampled` (see `bundle::EvolvedDream`).
    pub fn from_sampled(sampled: bool) -> Self {
        if sampled {
            Self::Sample
        } else {
            Self::Threshold
        }
    }
}

/// M's shape. The paper: z 32, action 3, hidden 256 (CarRacing); z 64, action 1, hidden 512 (Doom).
#[derive(Config, Debug)]
pub struct MdnRnnConfig {
    /// Size of z.
    pub z_size: usize,
    /// Size of the action.
    pub action_size: usize,
    /// LSTM units: 256 for CarRacing, 512 for Take Cover.
    pub hidden_size: usize,
    /// Gaussians per z dimension.
    #[config(default = 5)]
    pub n_gaussians: usize,
    /// A second gate-bias vector on the recurrent product (the paper's Doom model has one).
    #[config(default = false)]
    pub recurrent_bias: bool,
}

impl MdnRnnConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> MdnRnn<B> {
        let d_in = self.z_size + self.action_size;
        let h = self.hidden_size;
        let gate = || LstmGate {
            input: LinearConfig::new(d_in, h).init(device),
            recurrent: LinearConfig::new(h, h)
                .with_bias(self.recurrent_bias)
                .init(device),
        };
        super::materialize(MdnRnn {
            gates: [gate(), gate(), gate(), gate()],
            mdn: LinearConfig::new(self.hidden_size, 3 * self.z_size * self.n_gaussians)
                .init(device),
            done: LinearConfig::new(self.hidden_size, 1).init(device),
            reward: LinearConfig::new(self.hidden_size, 1).init(device),
            z_size: self.z_size,
            action_size: self.action_size,
            hidden_size: self.hidden_size,
            n_gaussians: self.n_gaussians,
        })
    }
}

/// The MDN-RNN (M).
#[derive(Module, Debug)]
pub struct MdnRnn<B: Backend> {
    /// The LSTM's gates in the order input, forget, cell, output.
    gates: [LstmGate<B>; 4],
    /// `h -> [logmix | mu | logsigma]`, each `z_size * n_gaussians`.
    mdn: Linear<B>,
    done: Linear<B>,
    reward: Linear<B>,
    z_size: usize,
    action_size: usize,
    hidden_size: usize,
    n_gaussians: usize,
}

/// One LSTM gate: `input(x) + recurrent(h)`. Only `input` has a bias unless `recurrent_bias`.
#[derive(Module, Debug)]
pub struct LstmGate<B: Backend> {
    input: Linear<B>,
    recurrent: Linear<B>,
}

/// The LSTM state, carried explicitly between steps.
#[derive(Debug, Clone)]
pub struct MdnRnnState<B: Backend> {
    /// `[batch, hidden]`.
    pub hidden: Tensor<B, 2>,
    /// `[batch, hidden]`.
    pub cell: Tensor<B, 2>,
}

impl<B: Backend> MdnRnnState<B> {
    /// The reset state: zeros.
    pub fn zeros(batch: usize, hidden_size: usize, device: &B::Device) -> Self {
        Self {
            hidden: Tensor::zeros([batch, hidden_size], device),
            cell: Tensor::zeros([batch, hidden_size], device),
        }
    }
}

/// Mixture parameters with the z dims and components split out: `[.., z_size, n_gaussians]`.
/// `logmix` is log-softmax normalised over the components (last dim).
#[derive(Debug, Clone)]
pub struct Mixture<B: Backend, const D: usize> {
    pub logmix: Tensor<B, D>,
    pub mu: Tensor<B, D>,
    pub logsigma: Tensor<B, D>,
}

/// M over whole sequences (training).
#[derive(Debug, Clone)]
pub struct MdnRnnOutput<B: Backend> {
    /// Each `[batch, seq, z_size, n_gaussians]`.
    pub mixture: Mixture<B, 4>,
    /// `[batch, seq]`.
    pub done_logit: Tensor<B, 2>,
    /// `[batch, seq]`.
    pub reward: Tensor<B, 2>,
    /// The state after the last step.
    pub state: MdnRnnState<B>,
}

/// M for one step.
#[derive(Debug, Clone)]
pub struct MdnRnnStep<B: Backend> {
    /// Each `[batch, z_size, n_gaussians]`.
    pub mixture: Mixture<B, 3>,
    /// `[batch]`.
    pub done_logit: Tensor<B, 1>,
    /// `[batch]`.
    pub reward: Tensor<B, 1>,
    pub state: MdnRnnState<B>,
}

impl<B: Backend> MdnRnn<B> {
    pub fn z_size(&self) -> usize {
        self.z_size
    }
    pub fn action_size(&self) -> usize {
        self.action_size
    }
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    pub fn n_gaussians(&self) -> usize {
        self.n_gaussians
    }

    /// The input's contribution to each gate, with the gate bias.
    ///
    /// # Shapes
    /// - `x`: `[.., z + a]`; returns 4 x `[.., hidden]`
    fn input_gates<const D: usize>(&self, x: Tensor<B, D>) -> [Tensor<B, D>; 4] {
        self.gates.each_ref().map(|g| g.input.forward(x.clone()))
    }

    /// One LSTM cell update from precomputed input gates.
    ///
    /// # Shapes
    /// - `input_gates`: 4 x `[batch, hidden]`; state tensors `[batch, hidden]`
    fn cell(&self, input_gates: [Tensor<B, 2>; 4], state: MdnRnnState<B>) -> MdnRnnState<B> {
        let [xi, xf, xg, xo] = input_gates;
        let h = state.hidden;
        let gate = |k: usize, x: Tensor<B, 2>| x + self.gates[k].recurrent.forward(h.clone());
        let i = sigmoid(gate(0, xi));
        let f = sigmoid(gate(1, xf));
        let g = tanh(gate(2, xg));
        let o = sigmoid(gate(3, xo));
        let cell = f * state.cell + i * g;
        let hidden = o * tanh(cell.clone());
        MdnRnnState { hidden, cell }
    }

    /// Splits the MDN head's output `[.., 3 * z * k]` into a [`Mixture`] of rank `D + 1`.
    fn mixture<const D: usize, const D2: usize>(&self, out: Tensor<B, D>) -> Mixture<B, D2> {
        let zk = self.z_size * self.n_gaussians;
        let mut shape: [usize; D2] = [0; D2];
        let dims = out.dims();
        shape[..D - 1].copy_from_slice(&dims[..D - 1]);
        shape[D - 1] = self.z_size;
        shape[D] = self.n_gaussians;
        let logmix = out.clone().narrow(D - 1, 0, zk).reshape(shape);
        let mu = out.clone().narrow(D - 1, zk, zk).reshape(shape);
        let logsigma = out.narrow(D - 1, 2 * zk, zk).reshape(shape);
        Mixture {
            logmix: log_softmax(logmix, D2 - 1),
            mu,
            logsigma,
        }
    }

    /// M over whole sequences, from `state` (zeros when `None`).
    ///
    /// # Shapes
    /// - `z`: `[batch, seq, z_size]`, `action`: `[batch, seq, action_size]`
    /// - see [`MdnRnnOutput`] for the outputs
    pub fn forward(
        &self,
        z: Tensor<B, 3>,
        action: Tensor<B, 3>,
        state: Option<MdnRnnState<B>>,
    ) -> MdnRnnOutput<B> {
        let [batch, seq, _] = z.dims();
        let device = z.device();
        let x = Tensor::cat(vec![z, action], 2); // [batch, seq, z + a]
        let h = self.hidden_size;
        let input_gates = self.input_gates(x); // 4 x [batch, seq, h]
        let mut state = state.unwrap_or_else(|| MdnRnnState::zeros(batch, h, &device));
        let mut hiddens = Vec::with_capacity(seq);
        for t in 0..seq {
            let gates_t = input_gates
                .each_ref()
                .map(|g| g.clone().narrow(1, t, 1).reshape([batch, h]));
            state = self.cell(gates_t, state);
            hiddens.push(state.hidden.clone());
        }
        let h = Tensor::stack::<3>(hiddens, 1); // [batch, seq, hidden]
        let mixture = self.mixture::<3, 4>(self.mdn.forward(h.clone()));
        let done_logit = self.done.forward(h.clone()).reshape([batch, seq]);
        let reward = self.reward.forward(h).reshape([batch, seq]);
        MdnRnnOutput {
            mixture,
            done_logit,
            reward,
            state,
        }
    }

    /// The LSTM alone for one step (no heads): the new state.
    ///
    /// # Shapes
    /// - `z`: `[batch, z_size]`, `action`: `[batch, action_size]`, state `[batch, hidden]`
    pub fn lstm_step(
        &self,
        z: Tensor<B, 2>,
        action: Tensor<B, 2>,
        state: MdnRnnState<B>,
    ) -> MdnRnnState<B> {
        self.cell(self.input_gates(Tensor::cat(vec![z, action], 1)), state)
    }

    /// One step of M: the distribution of z_{t+1} given z_t, a_t and the state.
    ///
    /// # Shapes
    /// - `z`: `[batch, z_size]`, `action`: `[batch, action_size]`, state `[batch, hidden]`
    /// - see [`MdnRnnStep`] for the outputs
    pub fn step(
        &self,
        z: Tensor<B, 2>,
        action: Tensor<B, 2>,
        state: MdnRnnState<B>,
    ) -> MdnRnnStep<B> {
        let [batch, _] = z.dims();
        let x = Tensor::cat(vec![z, action], 1); // [batch, z + a]
        let state = self.cell(self.input_gates(x), state);
        let h = state.hidden.clone();
        let mixture = self.mixture::<2, 3>(self.mdn.forward(h.clone()));
        let done_logit = self.done.forward(h.clone()).reshape([batch]);
        let reward = self.reward.forward(h).reshape([batch]);
        MdnRnnStep {
            mixture,
            done_logit,
            reward,
            state,
        }
    }

    /// How [`step_packed`](Self::step_packed) lays out each dream's row.
    pub fn packed_layout(&self) -> PackedLayout {
        PackedLayout {
            z_size: self.z_size,
            n_gaussians: self.n_gaussians,
            hidden_size: self.hidden_size,
        }
    }

    /// One step returning everything as one `[batch, row]` tensor (see [`PackedLayout`]), so that
    /// a caller on a GPU can read it back in one transfer. Also returns the new state.
    pub fn step_packed(
        &self,
        z: Tensor<B, 2>,
        action: Tensor<B, 2>,
        state: MdnRnnState<B>,
    ) -> (Tensor<B, 2>, MdnRnnState<B>) {
        let [batch, _] = z.dims();
        let x = Tensor::cat(vec![z, action], 1);
        let state = self.cell(self.input_gates(x), state);
        let h = state.hidden.clone();
        let zk = self.z_size * self.n_gaussians;
        let out = self.mdn.forward(h.clone()); // [batch, 3zk]
        let logmix = out
            .clone()
            .narrow(1, 0, zk)
            .reshape([batch, self.z_size, self.n_gaussians]);
        let logmix = log_softmax(logmix, 2).reshape([batch, zk]);
        let packed = Tensor::cat(
            vec![
                logmix,
                out.narrow(1, zk, 2 * zk),
                self.done.forward(h.clone()),
                self.reward.forward(h),
                state.hidden.clone(),
                state.cell.clone(),
            ],
            1,
        );
        (packed, state)
    }
}

/// The row [`MdnRnn::step_packed`] returns per dream, `3 * z * k + 2 + 2 * hidden` values:
/// `[logmix (log-softmaxed) | mu | logsigma | done_logit | reward | hidden | cell]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayout {
    pub z_size: usize,
    pub n_gaussians: usize,
    pub hidden_size: usize,
}

/// One dream's row of [`MdnRnn::step_packed`], split. Mixture slices are `[z_size, n_gaussians]`
/// row-major: dimension d's components are `d * k .. (d + 1) * k`.
#[derive(Debug, Clone, Copy)]
pub struct PackedStep<'a> {
    pub logmix: &'a [f32],
    pub mu: &'a [f32],
    pub logsigma: &'a [f32],
    pub done_logit: f32,
    pub reward: f32,
    pub hidden: &'a [f32],
    pub cell: &'a [f32],
}

impl PackedLayout {
    pub fn row_len(&self) -> usize {
        3 * self.z_size * self.n_gaussians + 2 + 2 * self.hidden_size
    }

    /// Row `i` of a packed `[batch, row_len]` read-back.
    pub fn row<'a>(&self, packed: &'a [f32], i: usize) -> PackedStep<'a> {
        let (zk, hs, n) = (
            self.z_size * self.n_gaussians,
            self.hidden_size,
            self.row_len(),
        );
        let r = &packed[i * n..(i + 1) * n];
        let (logmix, rest) = r.split_at(zk);
        let (mu, rest) = rest.split_at(zk);
        let (logsigma, rest) = rest.split_at(zk);
        PackedStep {
            logmix,
            mu,
            logsigma,
            done_logit: rest[0],
            reward: rest[1],
            hidden: &rest[2..2 + hs],
            cell: &rest[2 + hs..2 + 2 * hs],
        }
    }
}

impl PackedStep<'_> {
    /// Dimension `d`'s predicted mixture (`k` components).
    pub fn mixture(&self, d: usize, k: usize) -> DimMixture {
        let s = d * k..(d + 1) * k;
        DimMixture {
            logmix: self.logmix[s.clone()].to_vec(),
            mu: self.mu[s.clone()].to_vec(),
            logsigma: self.logsigma[s].to_vec(),
        }
    }

    /// Dimension `d`'s next value drawn from its mixture at temperature `tau`.
    pub fn sample_dim<R: Rng + ?Sized>(&self, d: usize, k: usize, tau: f32, rng: &mut R) -> f32 {
        let s = d * k..(d + 1) * k;
        sample_mixture(
            &self.logmix[s.clone()],
            &self.mu[s.clone()],
            &self.logsigma[s],
            tau,
            rng,
        )
    }
}

/// M's prediction for one latent dimension's next value: a mixture of gaussians, as M outputs it
/// (log weights already normalised). The temperature reshapes it as [`sample_mixture`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct DimMixture {
    pub logmix: Vec<f32>,
    pub mu: Vec<f32>,
    pub logsigma: Vec<f32>,
}

impl DimMixture {
    /// The component weights at temperature `tau`: `softmax(logmix / tau)` (tau 1: M's own).
    /// At or below [`MIN_TAU`] all weight goes to the most likely component, as sampling does.
    pub fn weights(&self, tau: f32) -> Vec<f32> {
        let k = argmax(&self.logmix);
        if !tau.is_finite() || tau <= MIN_TAU {
            return (0..self.logmix.len()).map(|i| f32::from(i == k)).collect();
        }
        let max = self.logmix[k];
        let w: Vec<f32> = self
            .logmix
            .iter()
            .map(|l| ((l - max) / tau).exp())
            .collect();
        let total: f32 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    /// The component standard deviations at temperature `tau`: `exp(logsigma) * sqrt(tau)`.
    pub fn sigmas(&self, tau: f32) -> Vec<f32> {
        let scale = tau.max(0.0).sqrt();
        self.logsigma.iter().map(|l| l.exp() * scale).collect()
    }

    /// The mixture's probability density at `x`, temperature `tau`.
    pub fn density(&self, x: f32, tau: f32) -> f32 {
        self.weights(tau)
            .iter()
            .zip(&self.mu)
            .zip(self.sigmas(tau))
            .map(|((w, mu), sigma)| w * gaussian_density(x, *mu, sigma))
            .sum()
    }
}

/// N(x; mu, sigma^2); a zero sigma gives zero (the point mass is drawn apart).
pub fn gaussian_density(x: f32, mu: f32, sigma: f32) -> f32 {
    if sigma <= 0.0 || !sigma.is_finite() {
        return 0.0;
    }
    let t = (x - mu) / sigma;
    (-0.5 * t * t).exp() / (sigma * (2.0 * std::f32::consts::PI).sqrt())
}

/// The MDN negative log-likelihood of `target` under the mixture, averaged over batch, time and z
/// dims (as the TF reference). Log-sum-exp over the components.
///
/// # Shapes
/// - mixture tensors `[batch, seq, z, k]`, `target`: `[batch, seq, z]`
pub fn mdn_loss<B: Backend>(mixture: &Mixture<B, 4>, target: Tensor<B, 3>) -> Tensor<B, 1> {
    let target = target.unsqueeze_dim::<4>(3); // [batch, seq, z, 1]
    let log_sqrt_two_pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let scaled = (target - mixture.mu.clone()) * mixture.logsigma.clone().neg().exp();
    let log_prob = scaled.powi_scalar(2) * -0.5 - mixture.logsigma.clone() - log_sqrt_two_pi; // [.., k]
    let v = mixture.logmix.clone() + log_prob;
    let max = v.clone().max_dim(3).detach(); // [.., 1]
    let lse = (v - max.clone()).exp().sum_dim(3).log() + max; // [batch, seq, z, 1]
    lse.neg().mean()
}

/// [`mdn_loss`] counting only the steps where `mask` is 1 (a window's last step has no next z;
/// padding past an episode's end has nothing at all): the mean over masked steps and z dims.
///
/// # Shapes
/// - mixture tensors `[batch, seq, z, k]`, `target`: `[batch, seq, z]`, `mask`: `[batch, seq]`
pub fn mdn_loss_masked<B: Backend>(
    mixture: &Mixture<B, 4>,
    target: Tensor<B, 3>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [_, _, z, _] = mixture.mu.dims();
    let target = target.unsqueeze_dim::<4>(3);
    let log_sqrt_two_pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let scaled = (target - mixture.mu.clone()) * mixture.logsigma.clone().neg().exp();
    let log_prob = scaled.powi_scalar(2) * -0.5 - mixture.logsigma.clone() - log_sqrt_two_pi;
    let v = mixture.logmix.clone() + log_prob;
    let max = v.clone().max_dim(3).detach();
    let lse = (v - max.clone()).exp().sum_dim(3).log() + max; // [batch, seq, z, 1]
    let per_step = lse.sum_dim(2).squeeze_dims::<2>(&[2, 3]); // [batch, seq]
    let count = mask.clone().sum().clamp_min(1.0) * z as f64;
    (per_step * mask).sum().neg() / count
}

/// [`done_loss`] and [`reward_loss`] over the steps where `mask` is 1, as `(done, reward)`.
///
/// # Shapes
/// - `logit`, `done`, `pred`, `reward`, `mask`: `[batch, seq]`
pub fn done_reward_loss_masked<B: Backend>(
    logit: Tensor<B, 2>,
    done: Tensor<B, 2>,
    pred: Tensor<B, 2>,
    reward: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    pos_weight: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let count = mask.clone().sum().clamp_min(1.0);
    let softplus_neg =
        logit.clone().neg().clamp_min(0.0) + (logit.clone().abs().neg().exp() + 1.0).log();
    let pos = softplus_neg.clone() * done.clone() * pos_weight;
    let neg = (softplus_neg + logit) * (done.neg() + 1.0);
    let done_loss = ((pos + neg) * mask.clone()).sum() / count.clone();
    let reward_loss = ((pred - reward).powi_scalar(2) * mask).sum() / count;
    (done_loss, reward_loss)
}

/// Sigmoid cross-entropy on the done flag, with done = 1 weighted by `pos_weight` (the paper: 10).
///
/// # Shapes
/// - `logit`, `done` (0 or 1): `[batch, seq]`
pub fn done_loss<B: Backend>(
    logit: Tensor<B, 2>,
    done: Tensor<B, 2>,
    pos_weight: f64,
) -> Tensor<B, 1> {
    // -log sigmoid(x) = softplus(-x) = max(-x, 0) + ln(1 + exp(-|x|)), and -log(1 - sigmoid(x)) = x + softplus(-x).
    let softplus_neg =
        logit.clone().neg().clamp_min(0.0) + (logit.clone().abs().neg().exp() + 1.0).log();
    let pos = softplus_neg.clone() * done.clone() * pos_weight;
    let neg = (softplus_neg + logit) * (done.neg() + 1.0);
    (pos + neg).mean()
}

/// Mean squared error of the reward prediction.
///
/// # Shapes
/// - `pred`, `target`: `[batch, seq]`
pub fn reward_loss<B: Backend>(pred: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 1> {
    (pred - target).powi_scalar(2).mean()
}

/// Samples one value from a 1-D mixture with temperature `tau`, exactly as the paper:
/// the weights are `softmax(logmix / tau)` and the chosen component's sigma is scaled by
/// `sqrt(tau)`. At `tau <= MIN_TAU` (or a non-finite tau) it returns the mean of the most likely
/// component, with no randomness consumed.
pub fn sample_mixture<R: Rng + ?Sized>(
    logmix: &[f32],
    mu: &[f32],
    logsigma: &[f32],
    tau: f32,
    rng: &mut R,
) -> f32 {
    let k = argmax(logmix);
    if !tau.is_finite() || tau <= MIN_TAU {
        return mu[k];
    }
    let max = logmix[k];
    let mut weights = [0.0f32; 16];
    let mut total = 0.0f32;
    let n = logmix.len();
    let mut heap;
    let w: &mut [f32] = if n <= weights.len() {
        &mut weights[..n]
    } else {
        heap = vec![0.0f32; n];
        &mut heap
    };
    for (wi, &l) in w.iter_mut().zip(logmix) {
        *wi = ((l - max) / tau).exp();
        total += *wi;
    }
    let mut u = rng.random::<f32>() * total;
    let mut chosen = n - 1;
    for (i, &wi) in w.iter().enumerate() {
        if u < wi {
            chosen = i;
            break;
        }
        u -= wi;
    }
    let eps: f32 = StandardNormal.sample(rng);
    mu[chosen] + logsigma[chosen].exp() * tau.sqrt() * eps
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
