//! Flow matching with the shortcut objective (Frans et al. 2024, "One Step Diffusion via
//! Shortcut Models"), and the Euler sampler that dreams with it.
//!
//! Flow matching: `x_t = (1 - t) x0 + t x1` between noise `x0 ~ N(0, I)` and data `x1`; the
//! model learns the velocity `x1 - x0` (in expectation: the mean over every pair whose line
//! passes through `x_t`), and Euler steps `x_{t+d} = x_t + d f(x_t, t, d)` carry noise to data.
//! With few large steps they follow that mean velocity off the curved path and blur.
//!
//! Shortcut: the model is also told the step size d it will be used with, and trained so that
//! one step of size d lands where two steps of size d/2 would (self-consistency), bootstrapped
//! from the finest level, which is plain flow matching. Then 1-8 steps come close to many-step
//! samples: what a CPU dream at interactive rates needs.
//!
//! Step levels: level `L < FLOW_LEVEL` is step size `2^-L` (1, 1/2, ..., 1/32); level
//! `FLOW_LEVEL` is plain flow matching ("d = 0"), and as the finest self-consistency step it
//! stands for `2^-FLOW_LEVEL` = 1/64.
//!
//! Context noise (GameNGen, Dreamer 4): in training the context latents are noised by a random
//! amount the model is told, so that it learns to lean less on a context that could be off; a
//! dream's context is the model's own earlier samples, which drift. At play a fixed small amount
//! is used, through the same formula ([`noise_context`]).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::Rng;

use super::dynamics::{Dynamics, DynamicsInput, DynamicsInputError};

/// The step level of plain flow matching; levels below it are shortcut step sizes `2^-level`.
pub const FLOW_LEVEL: usize = 6;

/// The step counts a dream offers.
pub const SAMPLING_STEPS: [usize; 4] = [1, 2, 4, 8];

/// The step size of a level: `2^-level`. For `FLOW_LEVEL` that is 1/64, the size it stands for
/// as the finest self-consistency step.
pub fn step_size(level: usize) -> f32 {
    0.5f32.powi(level as i32)
}

/// The shortcut level whose step size is `1 / steps`: `Some(L)` for `steps = 2^L` with `L <
/// FLOW_LEVEL` (1 to 32 steps), `None` for anything else.
pub fn level_for_steps(steps: usize) -> Option<usize> {
    let level = steps.checked_ilog2()? as usize;
    (steps.is_power_of_two() && level < FLOW_LEVEL).then_some(level)
}

/// The context as the model sees it: `(1 - s) * context + s * eps` with `s` the row's noise
/// level, one formula for training and play.
///
/// # Shapes
/// - `context`, `eps`: `[n, K*C, S, S]`; `level`: `[n]`; returns `[n, K*C, S, S]`
pub fn noise_context<B: Backend>(
    context: Tensor<B, 4>,
    eps: Tensor<B, 4>,
    level: Tensor<B, 1>,
) -> Tensor<B, 4> {
    let [n] = level.dims();
    let s = level.reshape([n, 1, 1, 1]);
    context * (s.clone().neg() + 1.0) + eps * s
}

/// How a dream samples the next latent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Euler steps: a power of two from 1 to 32 (the dream offers [`SAMPLING_STEPS`]).
    pub steps: usize,
    /// Scales the starting noise: below 1 the samples stay nearer the likely ones. The flow
    /// dream's analogue of M's temperature tau.
    pub temperature: f32,
    /// The context's noise level, in [0, 1] (a little of the training range's low end).
    pub context_noise: f32,
}

/// Why [`sample`] cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error(
        "{0} sampling steps: the model knows powers of two from 1 to {max}",
        max = 1 << (FLOW_LEVEL - 1)
    )]
    Steps(usize),
    #[error("temperature {0} is not a finite number at least 0")]
    Temperature(f32),
    #[error("context noise {0} is not in [0, 1]")]
    ContextNoise(f32),
    #[error("the context noise has shape {got:?}, the context {expected:?}")]
    ContextEps {
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(transparent)]
    Input(#[from] DynamicsInputError),
}

/// Samples the next latent: noises the context by `sampling.context_noise`, starts at `noise *
/// temperature` and takes `steps` Euler steps of size `1 / steps` at the matching shortcut level.
/// All randomness comes in (`noise`, `context_eps`), drawn by the caller from its seeded stream,
/// so the sampler itself is deterministic.
///
/// # Shapes
/// - `context`, `context_eps`: `[n, K*C, S, S]`; `actions`: `[n, K*A]`; `noise`: `[n, C, S, S]`
/// - returns `[n, C, S, S]`
pub fn sample<B: Backend>(
    model: &Dynamics<B>,
    context: Tensor<B, 4>,
    actions: Tensor<B, 2>,
    noise: Tensor<B, 4>,
    context_eps: Tensor<B, 4>,
    sampling: &Sampling,
) -> Result<Tensor<B, 4>, SamplingError> {
    let &Sampling {
        steps,
        temperature,
        context_noise,
    } = sampling;
    let level = level_for_steps(steps).ok_or(SamplingError::Steps(steps))?;
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(SamplingError::Temperature(temperature));
    }
    if !(0.0..=1.0).contains(&context_noise) {
        return Err(SamplingError::ContextNoise(context_noise));
    }
    if context_eps.dims() != context.dims() {
        return Err(SamplingError::ContextEps {
            got: context_eps.dims().to_vec(),
            expected: context.dims().to_vec(),
        });
    }

    let device = noise.device();
    let [n, _, _, _] = noise.dims();
    let context_noise = Tensor::<B, 1>::full([n], context_noise, &device);
    let input = |noisy: Tensor<B, 4>, context: Tensor<B, 4>, time: f32| DynamicsInput {
        noisy,
        context,
        actions: actions.clone(),
        time: Tensor::full([n], time, &device),
        step_level: Tensor::full([n], level as i64, &device),
        context_noise: context_noise.clone(),
    };
    // Shapes are checked once, on the inputs as given, so that a misfit is an error here rather
    // than a panic inside the UNet.
    model.check_input(&input(noise.clone(), context.clone(), 0.0))?;

    let context = noise_context(context, context_eps, context_noise.clone());
    let d = step_size(level);
    let mut x = noise * temperature;
    for i in 0..steps {
        let v = model.forward(input(x.clone(), context.clone(), i as f32 * d));
        x = x + v * d;
    }
    Ok(x)
}

/// The per-row draws of one training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDraws {
    /// Step level: `FLOW_LEVEL` for a flow row, `0..FLOW_LEVEL` for a shortcut row.
    pub level: Vec<usize>,
    /// Flow time t in [0, 1). A shortcut row's t lies on its step's grid, so that `t + d <= 1`.
    pub time: Vec<f32>,
    /// The context's noise level.
    pub context_noise: Vec<f32>,
}

impl RowDraws {
    pub fn len(&self) -> usize {
        self.level.len()
    }

    pub fn is_empty(&self) -> bool {
        self.level.is_empty()
    }

    /// The indices of the shortcut rows (level below `FLOW_LEVEL`), in order.
    pub fn shortcut_rows(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.level[i] < FLOW_LEVEL)
            .collect()
    }
}

/// Draws the per-row plan of a batch of `n` rows: the first `n - shortcut_rows` are flow rows
/// (t uniform in [0, 1)), the rest shortcut rows at a uniform level L in `0..FLOW_LEVEL` with t
/// on that step's grid, `t = k * 2^-L` for k uniform in `0..2^L`. Every row's context noise is
/// uniform in [0, `max_context_noise`). `shortcut_rows` above `n` counts as `n`.
pub fn draw_rows(
    rng: &mut impl Rng,
    n: usize,
    shortcut_rows: usize,
    max_context_noise: f32,
) -> RowDraws {
    let flow_rows = n - shortcut_rows.min(n);
    let mut rows = RowDraws {
        level: Vec::with_capacity(n),
        time: Vec::with_capacity(n),
        context_noise: Vec::with_capacity(n),
    };
    for i in 0..n {
        let (level, time) = if i < flow_rows {
            (FLOW_LEVEL, rng.random::<f32>())
        } else {
            let level = rng.random_range(0..FLOW_LEVEL);
            let k = rng.random_range(0..1u32 << level);
            (level, k as f32 * step_size(level))
        };
        rows.level.push(level);
        rows.time.push(time);
        rows.context_noise
            .push(rng.random::<f32>() * max_context_noise.max(0.0));
    }
    rows
}

/// One training batch: the data and every random draw, so that the loss is a pure function.
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend> {
    /// x1: the next latent, `[n, C, S, S]`.
    pub target: Tensor<B, 4>,
    /// The clean context, `[n, K*C, S, S]`.
    pub context: Tensor<B, 4>,
    /// `[n, K*A]`.
    pub actions: Tensor<B, 2>,
    /// x0, `[n, C, S, S]`.
    pub noise: Tensor<B, 4>,
    /// The noise mixed into the context, `[n, K*C, S, S]`.
    pub context_eps: Tensor<B, 4>,
    pub rows: RowDraws,
}

/// The shortcut objective on one batch.
#[derive(Debug, Clone)]
pub struct ShortcutLoss<B: AutodiffBackend> {
    /// Mean squared error over all rows and elements, for backward.
    pub loss: Tensor<B, 1>,
    /// The flow rows' mean squared error (NaN when there are none), for logs.
    pub flow: f64,
    /// The shortcut rows' mean squared error, `None` when there are none.
    pub shortcut: Option<f64>,
}

/// The flow-matching and shortcut loss. Flow rows regress on `x1 - x0`. A shortcut row at level
/// L (step d) regresses on the mean velocity of two half steps at level L + 1, taken by the
/// model itself without gradient (`v1` at `x_t`, `v2` at `x_t + d/2 v1`): one step of d should
/// land where two of d/2 do. Its targets come from two batched forwards over the shortcut rows
/// only; then one forward with gradient covers every row.
///
/// # Panics
/// If `rows` does not have one entry per batch row, or holds a level above `FLOW_LEVEL`.
pub fn shortcut_loss<B: AutodiffBackend>(
    model: &Dynamics<B>,
    batch: TrainBatch<B>,
) -> ShortcutLoss<B> {
    let TrainBatch {
        target,
        context,
        actions,
        noise,
        context_eps,
        rows,
    } = batch;
    let [n, c, h, w] = target.dims();
    assert_eq!(
        rows.len(),
        n,
        "shortcut_loss needs one row draw per batch row"
    );
    assert!(
        rows.level.iter().all(|&l| l <= FLOW_LEVEL),
        "step levels run 0..={FLOW_LEVEL}"
    );
    let device = target.device();
    let time = floats::<B>(&rows.time, &device);
    let context_noise = floats::<B>(&rows.context_noise, &device);
    let step_level = ints::<B>(rows.level.iter().copied(), &device);

    let context = noise_context(context, context_eps, context_noise.clone());
    let t = time.clone().reshape([n, 1, 1, 1]);
    let x_t = noise.clone() * (t.clone().neg() + 1.0) + target.clone() * t;

    // Targets are constants: built on the inner backend, out of the autodiff graph.
    let flow_target = (target - noise).inner();
    let shortcut = rows.shortcut_rows();
    let velocity_target = if shortcut.is_empty() {
        flow_target
    } else {
        let shortcut_target = shortcut_targets(
            &model.valid(),
            &rows,
            &shortcut,
            x_t.clone().inner(),
            context.clone().inner(),
            actions.clone().inner(),
        );
        // Row i takes its flow target, or, as the j-th shortcut row, the j-th shortcut target
        // (stacked after the n flow targets).
        let mut pick: Vec<usize> = (0..n).collect();
        for (j, &row) in shortcut.iter().enumerate() {
            pick[row] = n + j;
        }
        let pick = ints::<B::InnerBackend>(pick, &flow_target.device());
        Tensor::cat(vec![flow_target, shortcut_target], 0).select(0, pick)
    };

    let prediction = model.forward(DynamicsInput {
        noisy: x_t,
        context,
        actions,
        time,
        step_level,
        context_noise,
    });
    let squared = (prediction - Tensor::from_inner(velocity_target)).powi_scalar(2);
    let per_row: Vec<f32> = squared
        .clone()
        .inner()
        .reshape([n, c * h * w])
        .mean_dim(1)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 tensor data");
    let mean_of = |flow: bool| {
        let picked: Vec<f64> = (0..n)
            .filter(|&i| (rows.level[i] == FLOW_LEVEL) == flow)
            .map(|i| f64::from(per_row[i]))
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    };
    ShortcutLoss {
        loss: squared.mean(),
        flow: mean_of(true).unwrap_or(f64::NAN),
        shortcut: mean_of(false),
    }
}

/// The self-consistency targets of the shortcut rows `rows_at` (in that order): the mean of two
/// half steps at the next finer level.
///
/// # Shapes
/// - `x_t`: `[n, C, S, S]`; `context`: `[n, K*C, S, S]` (already noised); `actions`: `[n, K*A]`
/// - returns `[rows_at.len(), C, S, S]`
fn shortcut_targets<B: Backend>(
    model: &Dynamics<B>,
    rows: &RowDraws,
    rows_at: &[usize],
    x_t: Tensor<B, 4>,
    context: Tensor<B, 4>,
    actions: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let device = x_t.device();
    let m = rows_at.len();
    let pick = ints::<B>(rows_at.iter().copied(), &device);
    let x_t = x_t.select(0, pick.clone());
    let half: Vec<f32> = rows_at
        .iter()
        .map(|&i| step_size(rows.level[i]) / 2.0)
        .collect();
    let time: Vec<f32> = rows_at.iter().map(|&i| rows.time[i]).collect();
    let context_noise: Vec<f32> = rows_at.iter().map(|&i| rows.context_noise[i]).collect();
    let half = floats::<B>(&half, &device);
    let time = floats::<B>(&time, &device);
    // Level L + 1 has half the step; L + 1 = FLOW_LEVEL is the flow embedding, standing for 1/64.
    let finer = ints::<B>(rows_at.iter().map(|&i| rows.level[i] + 1), &device);
    let context = context.select(0, pick.clone());
    let actions = actions.select(0, pick);
    let context_noise = floats::<B>(&context_noise, &device);
    let input = |noisy, time| DynamicsInput {
        noisy,
        context: context.clone(),
        actions: actions.clone(),
        time,
        step_level: finer.clone(),
        context_noise: context_noise.clone(),
    };
    let half_step = half.clone().reshape([m, 1, 1, 1]);
    let v1 = model.forward(input(x_t.clone(), time.clone()));
    let x_mid = x_t + v1.clone() * half_step;
    let v2 = model.forward(input(x_mid, time + half));
    (v1 + v2) / 2.0
}

fn floats<B: Backend>(values: &[f32], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn ints<B: Backend>(
    values: impl IntoIterator<Item = usize>,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_steps_agree() {
        assert_eq!(step_size(0), 1.0);
        assert_eq!(step_size(5), 1.0 / 32.0);
        assert_eq!(step_size(FLOW_LEVEL), 1.0 / 64.0);
        for (steps, level) in [(1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (32, 5)] {
            assert_eq!(level_for_steps(steps), Some(level));
            assert_eq!(step_size(level) * steps as f32, 1.0);
        }
        for steps in [0, 3, 6, 12, 64, 128, usize::MAX] {
            assert_eq!(level_for_steps(steps), None, "{steps} steps");
        }
        for steps in SAMPLING_STEPS {
            assert!(level_for_steps(steps).is_some());
        }
    }

    #[test]
    fn noise_context_mixes_per_row() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let context = Tensor::<B, 4>::ones([2, 1, 1, 2], &device);
        let eps = Tensor::<B, 4>::full([2, 1, 1, 2], 3.0, &device);
        let level = floats::<B>(&[0.0, 0.25], &device);
        let mixed: Vec<f32> = noise_context(context, eps, level)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(mixed, [1.0, 1.0, 1.5, 1.5]);
    }
}
