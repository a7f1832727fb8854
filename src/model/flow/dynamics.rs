//! The flow model's dynamics: a small UNet over the spatial latent that predicts the velocity
//! carrying noise to the next latent, given the last K latents and actions. DIAMOND's design,
//! cut to CPU size. Also [`EndHeads`]: done and reward from two consecutive latents and the
//! action between them.
//!
//! Inputs. The context latents enter as extra input channels beside the noisy sample, so the
//! convs compare them with it pixel by pixel. Everything that is one number per row (the flow
//! time t, the context's noise level, the shortcut step level) and the actions make one
//! conditioning vector, which every residual block reads through an adaptive group norm: a
//! per-channel scale and shift of the normalised activations (DIAMOND's `AdaGroupNorm`).
//!
//! UNet, widths `[w0, w1, w2]` at S, S/2 and S/4 (16, 8, 4 for the shipped latent):
//! - in: conv3x3 (C + K*C -> w0);
//! - down: block(w0) -> skip0, conv3x3 stride 2, block(w1) -> skip1, conv3x3 stride 2,
//!   block(w2) -> skip2;
//! - middle: block(w2);
//! - up: block(2*w2 -> w2) on [x, skip2], 2x nearest upsample and conv3x3 (w2 -> w1),
//!   block(2*w1 -> w1) on [x, skip1], upsample and conv3x3 (w1 -> w0), block(2*w0 -> w0) on
//!   [x, skip0];
//! - out: group norm, SiLU, conv3x3 (w0 -> C).
//!
//! 2,378,644 parameters at the shipped sizes (C 4, K 4, A 1, widths [48, 96, 128], cond 128).
//!
//! The last conv of every residual block, and the output conv, start at zero (as in ADM and
//! DIAMOND): each block starts as the identity and a fresh model predicts velocity 0, so early
//! training is not thrown about by a random function of its inputs.

use burn::module::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::shortcut::FLOW_LEVEL;

/// Fourier frequencies per scalar input: `pi / 2 * 2^k` for k in 0..8. The lowest, `sin(pi t /
/// 2)`, rises monotonically over [0, 1]; the highest (64 pi) still tells neighbouring points of
/// the finest shortcut grid (1/64) apart, as its cosine flips sign between them.
const FOURIER_FREQS: usize = 8;

/// Features per Fourier-encoded scalar: a sine and a cosine per frequency.
const FOURIER_SIZE: usize = 2 * FOURIER_FREQS;

/// The UNet halves the latent's side twice.
pub const SIDE_MULTIPLE: usize = 4;

/// [`EndHeads`]' conv channels at S/2 and S/4, and its hidden layer.
const END_WIDTHS: [usize; 2] = [32, 64];
const END_HIDDEN: usize = 64;

/// A size that makes a config unusable. Caught before any layer is built, where burn would
/// otherwise panic deep inside (group norm) or a shape would only fail at the first forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowConfigError {
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("group norm's {groups} groups do not divide the width {width}")]
    Groups { groups: usize, width: usize },
    #[error("the latent side {side} is not a positive multiple of {SIDE_MULTIPLE}")]
    Side { side: usize },
}

/// An input whose shape does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamicsInputError {
    #[error("{what} has shape {got:?}, expected {expected:?}")]
    Shape {
        what: &'static str,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "the latent's side is {height}x{width}: each must be a positive multiple of {SIDE_MULTIPLE}"
    )]
    Side { height: usize, width: usize },
}

/// The dynamics' shape. Group norm splits every width into `groups` groups, so `groups` must
/// divide each of `widths` (checked by [`validate`](Self::validate)).
#[derive(Config, Debug)]
pub struct DynamicsConfig {
    /// Channels of one latent (C).
    pub latent_channels: usize,
    /// Past latents and actions seen (K).
    pub context: usize,
    /// Size of one action (A).
    pub action_size: usize,
    /// The UNet's channels at S, S/2 and S/4.
    pub widths: [usize; 3],
    /// Size of the conditioning vector.
    pub cond_size: usize,
    /// Group norm groups.
    #[config(default = 8)]
    pub groups: usize,
}

impl DynamicsConfig {
    /// Whether every size is usable: all at least 1, and `groups` dividing every width.
    pub fn validate(&self) -> Result<(), FlowConfigError> {
        let sizes = [
            ("latent_channels", self.latent_channels),
            ("context", self.context),
            ("action_size", self.action_size),
            ("cond_size", self.cond_size),
            ("groups", self.groups),
            ("every width", self.widths.into_iter().min().unwrap_or(0)),
        ];
        if let Some((what, _)) = sizes.into_iter().find(|&(_, size)| size == 0) {
            return Err(FlowConfigError::Zero { what });
        }
        // Blocks on the way up see twice a width, which `groups` then divides too.
        match self.widths.into_iter().find(|w| w % self.groups != 0) {
            Some(width) => Err(FlowConfigError::Groups {
                groups: self.groups,
                width,
            }),
            None => Ok(()),
        }
    }

    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Dynamics<B> {
        if let Err(e) = self.validate() {
            panic!("invalid DynamicsConfig: {e}");
        }
        let [w0, w1, w2] = self.widths;
        let c = self.latent_channels;
        let block = |c_in, c_out| ResBlock::new(c_in, c_out, self.cond_size, self.groups, device);
        let down = |c_in, c_out| conv3x3(c_in, c_out).with_stride([2, 2]).init(device);
        let up = |c_in, c_out| conv3x3(c_in, c_out).init(device);
        crate::model::materialize(Dynamics {
            cond: CondEmbedding::new(self, device),
            conv_in: conv3x3(c + self.context * c, w0).init(device),
            down0: block(w0, w0),
            down1_conv: down(w0, w1),
            down1: block(w1, w1),
            down2_conv: down(w1, w2),
            down2: block(w2, w2),
            middle: block(w2, w2),
            up2: block(2 * w2, w2),
            up1_conv: up(w2, w1),
            up1: block(2 * w1, w1),
            up0_conv: up(w1, w0),
            up0: block(2 * w0, w0),
            norm_out: group_norm(self.groups, w0, device),
            conv_out: conv3x3(w0, c)
                .with_initializer(Initializer::Zeros)
                .init(device),
            latent_channels: c,
            context: self.context,
            action_size: self.action_size,
        })
    }
}

/// A 3x3 conv that keeps the side (before any stride), with explicit padding: the form that
/// was measured fast on flex.
fn conv3x3(c_in: usize, c_out: usize) -> Conv2dConfig {
    Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
}

/// Group norm with no affine parameters: the adaptive scale and shift that follow take their
/// place, and the plain form is cheap on flex.
fn group_norm<B: Backend>(groups: usize, channels: usize, device: &B::Device) -> GroupNorm<B> {
    GroupNormConfig::new(groups, channels)
        .with_affine(false)
        .init(device)
}

/// Nearest-neighbour 2x upsampling. burn's `interpolate` has its own nearest kernel and backward
/// on flex (one gather per channel plane, parallel across planes; autodiff calls the backend's
/// backward), so it is used rather than an expand/reshape chain, which would copy strided data
/// through several ops.
fn upsample<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        [2 * h, 2 * w],
        InterpolateOptions::new(InterpolateMode::Nearest),
    )
}

/// `[sin(w_k x), cos(w_k x)]` at the fixed frequencies `w_k = pi / 2 * 2^k`: a smooth code of a
/// number in [0, 1] that a small MLP can read finely (a raw scalar would need large weights).
///
/// # Shapes
/// - `x`: `[n]`; returns `[n, FOURIER_SIZE]`
fn fourier<B: Backend>(x: Tensor<B, 1>) -> Tensor<B, 2> {
    let [n] = x.dims();
    let freqs: Vec<f32> = (0..FOURIER_FREQS)
        .map(|k| std::f32::consts::FRAC_PI_2 * (1u32 << k) as f32)
        .collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [FOURIER_FREQS]), &x.device());
    let angle = x.reshape([n, 1]) * freqs.reshape([1, FOURIER_FREQS]); // [n, F]
    Tensor::cat(vec![angle.clone().sin(), angle.cos()], 1)
}

/// The conditioning vector from the per-row scalars and the actions: each part is mapped to
/// `cond_size` and summed, then an MLP mixes them.
#[derive(Module, Debug)]
struct CondEmbedding<B: Backend> {
    /// Fourier features of t and of the context noise -> cond.
    noise: Linear<B>,
    /// One learned vector per step level, 0..=FLOW_LEVEL: levels are categories (the step
    /// sizes are powers of two), and an embedding needs no code for them.
    step: Embedding<B>,
    /// The last K actions, flattened -> cond.
    actions: Linear<B>,
    mlp_in: Linear<B>,
    mlp_out: Linear<B>,
}

impl<B: Backend> CondEmbedding<B> {
    fn new(config: &DynamicsConfig, device: &B::Device) -> Self {
        let cond = config.cond_size;
        Self {
            noise: LinearConfig::new(2 * FOURIER_SIZE, cond).init(device),
            step: EmbeddingConfig::new(FLOW_LEVEL + 1, cond).init(device),
            actions: LinearConfig::new(config.context * config.action_size, cond).init(device),
            mlp_in: LinearConfig::new(cond, cond).init(device),
            mlp_out: LinearConfig::new(cond, cond).init(device),
        }
    }

    /// # Shapes
    /// - `time`, `step_level`, `context_noise`: `[n]`; `actions`: `[n, K*A]`
    /// - returns `[n, cond_size]`
    fn forward(
        &self,
        time: Tensor<B, 1>,
        step_level: Tensor<B, 1, Int>,
        context_noise: Tensor<B, 1>,
        actions: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [n] = time.dims();
        let scalars = Tensor::cat(vec![fourier(time), fourier(context_noise)], 1);
        let step = self.step.forward(step_level.reshape([n, 1])); // [n, 1, cond]
        let [_, _, cond] = step.dims();
        let x =
            self.noise.forward(scalars) + step.reshape([n, cond]) + self.actions.forward(actions);
        self.mlp_out.forward(silu(self.mlp_in.forward(x)))
    }
}

/// Group norm, then a per-row, per-channel scale and shift read from the conditioning vector:
/// `norm(x) * (1 + scale) + shift`. The `1 +` makes a zero scale the plain norm.
#[derive(Module, Debug)]
struct AdaGroupNorm<B: Backend> {
    norm: GroupNorm<B>,
    /// cond -> `[scale | shift]`, each `channels`.
    film: Linear<B>,
}

impl<B: Backend> AdaGroupNorm<B> {
    fn new(channels: usize, cond: usize, groups: usize, device: &B::Device) -> Self {
        Self {
            norm: group_norm(groups, channels, device),
            film: LinearConfig::new(cond, 2 * channels).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[n, c, h, w]`; `cond`: `[n, cond_size]`; returns `[n, c, h, w]`
    fn forward(&self, x: Tensor<B, 4>, cond: Tensor<B, 2>) -> Tensor<B, 4> {
        let [n, c, _, _] = x.dims();
        let film = self.film.forward(cond).reshape([n, 2 * c, 1, 1]);
        let scale = film.clone().narrow(1, 0, c);
        let shift = film.narrow(1, c, c);
        self.norm.forward(x) * (scale + 1.0) + shift
    }
}

/// `x + conv(silu(ada_norm(conv(silu(ada_norm(x))))))`, with a 1x1 conv on the `x` path where
/// the channel count changes.
#[derive(Module, Debug)]
struct ResBlock<B: Backend> {
    norm1: AdaGroupNorm<B>,
    conv1: Conv2d<B>,
    norm2: AdaGroupNorm<B>,
    /// Starts at zero, so that the block starts as the identity (or as its 1x1 skip).
    conv2: Conv2d<B>,
    skip: Option<Conv2d<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(c_in: usize, c_out: usize, cond: usize, groups: usize, device: &B::Device) -> Self {
        Self {
            norm1: AdaGroupNorm::new(c_in, cond, groups, device),
            conv1: conv3x3(c_in, c_out).init(device),
            norm2: AdaGroupNorm::new(c_out, cond, groups, device),
            conv2: conv3x3(c_out, c_out)
                .with_initializer(Initializer::Zeros)
                .init(device),
            skip: (c_in != c_out).then(|| Conv2dConfig::new([c_in, c_out], [1, 1]).init(device)),
        }
    }

    /// # Shapes
    /// - `x`: `[n, c_in, h, w]`; `cond`: `[n, cond_size]`; returns `[n, c_out, h, w]`
    fn forward(&self, x: Tensor<B, 4>, cond: &Tensor<B, 2>) -> Tensor<B, 4> {
        let h = silu(self.norm1.forward(x.clone(), cond.clone()));
        let h = self.conv1.forward(h);
        let h = silu(self.norm2.forward(h, cond.clone()));
        let h = self.conv2.forward(h);
        let x = match &self.skip {
            Some(skip) => skip.forward(x),
            None => x,
        };
        x + h
    }
}

/// What the dynamics sees for one prediction.
#[derive(Debug, Clone)]
pub struct DynamicsInput<B: Backend> {
    /// The sample on its way from noise to the next latent, `[n, C, S, S]`.
    pub noisy: Tensor<B, 4>,
    /// The last K latents stacked as channels, oldest first, `[n, K*C, S, S]`.
    pub context: Tensor<B, 4>,
    /// The last K actions, oldest first, `[n, K*A]`. The last is the action taken at the newest
    /// context latent: the one that leads to the latent being predicted.
    pub actions: Tensor<B, 2>,
    /// Flow time t in [0, 1] (0 noise, 1 data), `[n]`.
    pub time: Tensor<B, 1>,
    /// The shortcut step level, 0..=FLOW_LEVEL (see [`super::shortcut`]), `[n]`.
    pub step_level: Tensor<B, 1, Int>,
    /// How much noise the context was given, in [0, 1], `[n]`.
    pub context_noise: Tensor<B, 1>,
}

/// The dynamics UNet (see the module docs).
#[derive(Module, Debug)]
pub struct Dynamics<B: Backend> {
    cond: CondEmbedding<B>,
    conv_in: Conv2d<B>,
    down0: ResBlock<B>,
    down1_conv: Conv2d<B>,
    down1: ResBlock<B>,
    down2_conv: Conv2d<B>,
    down2: ResBlock<B>,
    middle: ResBlock<B>,
    up2: ResBlock<B>,
    up1_conv: Conv2d<B>,
    up1: ResBlock<B>,
    up0_conv: Conv2d<B>,
    up0: ResBlock<B>,
    norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
    latent_channels: usize,
    context: usize,
    action_size: usize,
}

impl<B: Backend> Dynamics<B> {
    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }
    pub fn context(&self) -> usize {
        self.context
    }
    pub fn action_size(&self) -> usize {
        self.action_size
    }

    /// Whether `input`'s shapes fit this model (the step levels' range is not checked: that
    /// would read the tensor back).
    pub fn check_input(&self, input: &DynamicsInput<B>) -> Result<(), DynamicsInputError> {
        let [n, _, height, width] = input.noisy.dims();
        let side_ok = |s: usize| s > 0 && s.is_multiple_of(SIDE_MULTIPLE);
        if !side_ok(height) || !side_ok(width) {
            return Err(DynamicsInputError::Side { height, width });
        }
        let (c, k, a) = (self.latent_channels, self.context, self.action_size);
        let expected: [(&'static str, Vec<usize>, Vec<usize>); 6] = [
            (
                "noisy",
                input.noisy.dims().to_vec(),
                vec![n, c, height, width],
            ),
            (
                "context",
                input.context.dims().to_vec(),
                vec![n, k * c, height, width],
            ),
            ("actions", input.actions.dims().to_vec(), vec![n, k * a]),
            ("time", input.time.dims().to_vec(), vec![n]),
            ("step_level", input.step_level.dims().to_vec(), vec![n]),
            (
                "context_noise",
                input.context_noise.dims().to_vec(),
                vec![n],
            ),
        ];
        match expected.into_iter().find(|(_, got, want)| got != want) {
            Some((what, got, expected)) => Err(DynamicsInputError::Shape {
                what,
                got,
                expected,
            }),
            None => Ok(()),
        }
    }

    /// The predicted velocity: where the sample should move, per unit of flow time.
    ///
    /// # Shapes
    /// - see [`DynamicsInput`]; returns `[n, C, S, S]`
    ///
    /// # Panics
    /// On an input that [`check_input`](Self::check_input) rejects, or a step level above
    /// `FLOW_LEVEL`.
    pub fn forward(&self, input: DynamicsInput<B>) -> Tensor<B, 4> {
        let DynamicsInput {
            noisy,
            context,
            actions,
            time,
            step_level,
            context_noise,
        } = input;
        let cond = self.cond.forward(time, step_level, context_noise, actions); // [n, cond]

        let x = self.conv_in.forward(Tensor::cat(vec![noisy, context], 1)); // [n, w0, S, S]
        let skip0 = self.down0.forward(x, &cond);
        let x = self.down1_conv.forward(skip0.clone()); // [n, w1, S/2, S/2]
        let skip1 = self.down1.forward(x, &cond);
        let x = self.down2_conv.forward(skip1.clone()); // [n, w2, S/4, S/4]
        let skip2 = self.down2.forward(x, &cond);

        let x = self.middle.forward(skip2.clone(), &cond);

        let x = self.up2.forward(Tensor::cat(vec![x, skip2], 1), &cond);
        let x = self.up1_conv.forward(upsample(x)); // [n, w1, S/2, S/2]
        let x = self.up1.forward(Tensor::cat(vec![x, skip1], 1), &cond);
        let x = self.up0_conv.forward(upsample(x)); // [n, w0, S, S]
        let x = self.up0.forward(Tensor::cat(vec![x, skip0], 1), &cond);

        self.conv_out.forward(silu(self.norm_out.forward(x))) // [n, C, S, S]
    }
}

/// The end heads' shape. `latent_side` fixes the size of the flattened conv output.
#[derive(Config, Debug)]
pub struct EndHeadsConfig {
    /// Channels of one latent (C).
    pub latent_channels: usize,
    /// Size of one action (A).
    pub action_size: usize,
    /// The latent's side S, a multiple of 4.
    #[config(default = 16)]
    pub latent_side: usize,
}

impl EndHeadsConfig {
    /// Whether every size is usable: all at least 1, and the side a multiple of 4.
    pub fn validate(&self) -> Result<(), FlowConfigError> {
        let sizes = [
            ("latent_channels", self.latent_channels),
            ("action_size", self.action_size),
        ];
        if let Some((what, _)) = sizes.into_iter().find(|&(_, size)| size == 0) {
            return Err(FlowConfigError::Zero { what });
        }
        if self.latent_side == 0 || !self.latent_side.is_multiple_of(SIDE_MULTIPLE) {
            return Err(FlowConfigError::Side {
                side: self.latent_side,
            });
        }
        Ok(())
    }

    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EndHeads<B> {
        if let Err(e) = self.validate() {
            panic!("invalid EndHeadsConfig: {e}");
        }
        let [c1, c2] = END_WIDTHS;
        let down = |c_in, c_out| conv3x3(c_in, c_out).with_stride([2, 2]).init(device);
        let flat = c2 * (self.latent_side / 4).pow(2);
        crate::model::materialize(EndHeads {
            conv1: down(2 * self.latent_channels, c1),
            conv2: down(c1, c2),
            hidden: LinearConfig::new(flat + self.action_size, END_HIDDEN).init(device),
            out: LinearConfig::new(END_HIDDEN, 2).init(device),
        })
    }
}

/// Done and reward for one transition, read from the latents on either side of it and the
/// action between them. Apart from the dynamics, so that a dream asks them once per step
/// whatever the number of sampling steps.
#[derive(Module, Debug)]
pub struct EndHeads<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    hidden: Linear<B>,
    /// `[done logit, reward]`.
    out: Linear<B>,
}

impl<B: Backend> EndHeads<B> {
    /// `(done logit, reward)` for the step from `previous` to `next` under `action`.
    ///
    /// # Shapes
    /// - `previous`, `next`: `[n, C, S, S]` with S the config's `latent_side`; `action`: `[n, A]`
    /// - returns `([n], [n])`
    pub fn forward(
        &self,
        previous: Tensor<B, 4>,
        next: Tensor<B, 4>,
        action: Tensor<B, 2>,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let [n, _, _, _] = previous.dims();
        let x = Tensor::cat(vec![previous, next], 1); // [n, 2C, S, S]
        let x = silu(self.conv1.forward(x)); // [n, 32, S/2, S/2]
        let x = silu(self.conv2.forward(x)); // [n, 64, S/4, S/4]
        let x = Tensor::cat(vec![x.flatten::<2>(1, 3), action], 1);
        let out = self.out.forward(silu(self.hidden.forward(x))); // [n, 2]
        let done = out.clone().narrow(1, 0, 1).reshape([n]);
        let reward = out.narrow(1, 1, 1).reshape([n]);
        (done, reward)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::Distribution;

    use super::*;

    type B = Flex;

    fn small() -> DynamicsConfig {
        DynamicsConfig::new(2, 3, 2, [8, 16, 16], 16).with_groups(4)
    }

    fn input(n: usize, config: &DynamicsConfig, side: usize) -> DynamicsInput<B> {
        let device = Default::default();
        let (c, k, a) = (config.latent_channels, config.context, config.action_size);
        let normal = Distribution::Normal(0.0, 1.0);
        DynamicsInput {
            noisy: Tensor::random([n, c, side, side], normal, &device),
            context: Tensor::random([n, k * c, side, side], normal, &device),
            actions: Tensor::random([n, k * a], normal, &device),
            time: Tensor::random([n], Distribution::Uniform(0.0, 1.0), &device),
            step_level: Tensor::from_data(
                TensorData::new((0..n as i64).map(|i| i % 7).collect(), [n]),
                &device,
            ),
            context_noise: Tensor::random([n], Distribution::Uniform(0.0, 1.0), &device),
        }
    }

    /// Adds N(0, 0.1) to every parameter, so that the zero-initialised convs pass signal on.
    struct Jitter;
    impl ModuleMapper<B> for Jitter {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let noise = tensor.random_like(Distribution::Normal(0.0, 0.1));
            Param::from_mapped_value(id, tensor + noise, mapper)
        }
    }

    fn values(x: Tensor<B, 4>) -> Vec<f32> {
        x.into_data().to_vec().unwrap()
    }

    #[test]
    fn shapes() {
        let device = Default::default();
        let config = small();
        let model = config.init::<B>(&device);
        for side in [4, 8, 16] {
            let out = model.forward(input(3, &config, side));
            assert_eq!(out.dims(), [3, 2, side, side]);
        }
        for side in [4, 8, 16] {
            let heads = EndHeadsConfig::new(2, 3)
                .with_latent_side(side)
                .init::<B>(&device);
            let latent = || Tensor::zeros([5, 2, side, side], &device);
            let (done, reward) = heads.forward(latent(), latent(), Tensor::zeros([5, 3], &device));
            assert_eq!((done.dims(), reward.dims()), ([5], [5]));
        }
    }

    #[test]
    fn a_fresh_model_predicts_zero_velocity() {
        let config = small();
        let model = config.init::<B>(&Default::default());
        let out = values(model.forward(input(4, &config, 8)));
        assert!(out.iter().all(|&v| v == 0.0));
    }

    /// Every input reaches the output: a wiring slip (an unused embedding, a dropped skip)
    /// would leave one of them without effect.
    #[test]
    fn every_input_moves_the_output() {
        let config = small();
        let model = config.init::<B>(&Default::default()).map(&mut Jitter);
        let base = input(4, &config, 8);
        let reference = values(model.forward(base.clone()));
        assert!(reference.iter().all(|v| v.is_finite()));
        let changed: [(&str, DynamicsInput<B>); 6] = [
            (
                "noisy",
                DynamicsInput {
                    noisy: base.noisy.clone() + 0.5,
                    ..base.clone()
                },
            ),
            (
                "context",
                DynamicsInput {
                    context: base.context.clone() + 0.5,
                    ..base.clone()
                },
            ),
            (
                "actions",
                DynamicsInput {
                    actions: base.actions.clone() + 0.5,
                    ..base.clone()
                },
            ),
            (
                "time",
                DynamicsInput {
                    time: base.time.clone() + 0.25,
                    ..base.clone()
                },
            ),
            (
                "step_level",
                DynamicsInput {
                    step_level: (base.step_level.clone() + 1).remainder_scalar(7),
                    ..base.clone()
                },
            ),
            (
                "context_noise",
                DynamicsInput {
                    context_noise: base.context_noise.clone() + 0.25,
                    ..base.clone()
                },
            ),
        ];
        for (what, input) in changed {
            let out = values(model.forward(input));
            let gap = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(gap > 1e-4, "{what} does not reach the output (gap {gap})");
        }
    }

    #[test]
    fn upsample_repeats_each_pixel_2x2() {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &Default::default(),
        );
        let expected = [
            1.0, 1.0, 2.0, 2.0, //
            1.0, 1.0, 2.0, 2.0, //
            3.0, 3.0, 4.0, 4.0, //
            3.0, 3.0, 4.0, 4.0,
        ];
        assert_eq!(values(upsample(x)), expected);
    }

    /// Parameters of one residual block, counted from its layers.
    fn block_params(c_in: usize, c_out: usize, cond: usize) -> usize {
        let film = |c: usize| cond * 2 * c + 2 * c;
        let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
        let skip = if c_in == c_out {
            0
        } else {
            conv(c_in, c_out, 1)
        };
        film(c_in) + conv(c_in, c_out, 3) + film(c_out) + conv(c_out, c_out, 3) + skip
    }

    #[test]
    fn parameter_counts_at_the_shipped_sizes() {
        let device = Default::default();
        let (c, k, a, cond) = (4, 4, 1, 128);
        let [w0, w1, w2] = [48, 96, 128];
        let model = DynamicsConfig::new(c, k, a, [w0, w1, w2], cond).init::<B>(&device);
        let conv = |i: usize, o: usize| i * o * 9 + o;
        let linear = |i: usize, o: usize| i * o + o;
        let expected = linear(2 * FOURIER_SIZE, cond)
            + (FLOW_LEVEL + 1) * cond
            + linear(k * a, cond)
            + 2 * linear(cond, cond)
            + conv(c + k * c, w0)
            + block_params(w0, w0, cond)
            + conv(w0, w1)
            + block_params(w1, w1, cond)
            + conv(w1, w2)
            + 2 * block_params(w2, w2, cond)
            + block_params(2 * w2, w2, cond)
            + conv(w2, w1)
            + block_params(2 * w1, w1, cond)
            + conv(w1, w0)
            + block_params(2 * w0, w0, cond)
            + conv(w0, c);
        println!("dynamics: {} parameters", model.num_params());
        assert_eq!(model.num_params(), expected);
        assert_eq!(model.num_params(), 2_378_644);

        let heads = EndHeadsConfig::new(c, a).init::<B>(&device);
        let expected = conv(2 * c, 32) + conv(32, 64) + linear(64 * 4 * 4 + a, 64) + linear(64, 2);
        println!("end heads: {} parameters", heads.num_params());
        assert_eq!(heads.num_params(), expected);
        assert_eq!(heads.num_params(), 86_626);
    }

    #[test]
    fn configs_reject_unusable_sizes() {
        assert_eq!(small().validate(), Ok(()));
        assert_eq!(
            small().with_groups(3).validate(),
            Err(FlowConfigError::Groups {
                groups: 3,
                width: 8
            })
        );
        assert_eq!(
            DynamicsConfig::new(0, 3, 2, [8, 16, 16], 16).validate(),
            Err(FlowConfigError::Zero {
                what: "latent_channels"
            })
        );
        assert!(
            DynamicsConfig::new(4, 4, 1, [48, 96, 128], 128)
                .validate()
                .is_ok()
        );
        assert_eq!(
            EndHeadsConfig::new(4, 1).with_latent_side(18).validate(),
            Err(FlowConfigError::Side { side: 18 })
        );
        assert!(EndHeadsConfig::new(4, 1).validate().is_ok());
    }

    #[test]
    fn check_input_names_the_misfit() {
        let config = small();
        let model = config.init::<B>(&Default::default());
        let good = input(2, &config, 8);
        assert_eq!(model.check_input(&good), Ok(()));
        let bad = DynamicsInput {
            actions: Tensor::zeros([2, 5], &Default::default()),
            ..good.clone()
        };
        assert!(matches!(
            model.check_input(&bad),
            Err(DynamicsInputError::Shape {
                what: "actions",
                ..
            })
        ));
        let odd = input(2, &config, 6);
        assert_eq!(
            model.check_input(&odd),
            Err(DynamicsInputError::Side {
                height: 6,
                width: 6
            })
        );
    }
}
