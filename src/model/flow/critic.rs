//! A patch critic for `train-decoder --adversarial-weight`: it scores each 16x16 patch of a frame
//! as real or drawn, and its score teaches the decoder to draw texture rather than average it.
//!
//! Squared error is smallest for the mean of the frames a latent could mean, which is blurred; a
//! critic that tells drawn patches from real ones has no such minimum (the PatchGAN of Isola et
//! al. 2017, the adversarial term of the autoencoders behind latent diffusion). It lives only
//! while the decoder is fine-tuned (`train::flow::decoder` checkpoints it), and no shipped file
//! holds it.
//!
//! Three convs (64x64 -> 32x32 -> 16x16 -> 16x16 logits), leaky ReLU 0.2, no normalisation: 35k parameters.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, softplus};

/// Scores a frame's patches: one logit per 4x4 cell, each seeing an 18x18 patch.
#[derive(Module, Debug)]
pub struct PatchCritic<B: Backend> {
    down1: Conv2d<B>,
    down2: Conv2d<B>,
    score: Conv2d<B>,
}

impl<B: Backend> PatchCritic<B> {
    /// A fresh critic, drawn from the backend's seed.
    pub fn new(device: &B::Device) -> Self {
        let down = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            down1: down(3, 32),
            down2: down(32, 64),
            score: Conv2dConfig::new([64, 1], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        }
    }

    /// The patches' logits: above 0 reads as real.
    ///
    /// # Shapes
    /// - `frames`: `[n, 3, 64, 64]` in [0, 1]
    /// - returns `[n, 1, 16, 16]`
    pub fn forward(&self, frames: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = leaky_relu(self.down1.forward(frames * 2.0 - 1.0), 0.2);
        let x = leaky_relu(self.down2.forward(x), 0.2);
        self.score.forward(x)
    }
}

/// The drawn frames' adversarial loss, non-saturating (Goodfellow et al. 2014): small when the
/// critic scores their patches as real, `[1]`.
pub fn looks_real_loss<B: Backend>(drawn_logits: Tensor<B, 4>) -> Tensor<B, 1> {
    softplus(drawn_logits.neg(), 1.0).mean()
}

/// The critic's loss: real patches scored real, drawn ones drawn, `[1]`. ln 4 (1.386) when it
/// cannot tell them apart.
pub fn critic_loss<B: Backend>(
    real_logits: Tensor<B, 4>,
    drawn_logits: Tensor<B, 4>,
) -> Tensor<B, 1> {
    softplus(real_logits.neg(), 1.0).mean() + softplus(drawn_logits, 1.0).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{GradientsParams, Optimizer};

    type AB = Autodiff<Flex>;

    #[test]
    fn a_critic_learns_to_tell_flat_frames_from_striped_ones() {
        let device = Default::default();
        AB::seed(&device, 5);
        let mut critic = PatchCritic::<AB>::new(&device);
        // Real: vertical stripes; drawn: their blurred mean, flat grey.
        let stripes: Vec<f32> = (0..3 * 64 * 64)
            .map(|i| if (i % 64) % 4 < 2 { 1.0 } else { 0.0 })
            .collect();
        let real =
            Tensor::<AB, 1>::from_floats(stripes.as_slice(), &device).reshape([1, 3, 64, 64]);
        let flat = Tensor::<AB, 4>::full([1, 3, 64, 64], 0.5, &device);
        let loss = |c: &PatchCritic<AB>| {
            critic_loss(c.forward(real.clone()), c.forward(flat.clone())).into_scalar()
        };
        let first = loss(&critic);
        assert!(
            (first - 4f32.ln()).abs() < 0.3,
            "near chance at first: {first}"
        );
        let mut optim = crate::model::adam::adam::<AB, PatchCritic<AB>>(None);
        for _ in 0..30 {
            let l = critic_loss(critic.forward(real.clone()), critic.forward(flat.clone()));
            let grads = GradientsParams::from_grads(l.backward(), &critic);
            critic = optim.step(1e-3, critic, grads);
        }
        let last = loss(&critic);
        assert!(last < 0.2, "the critic tells them apart: {first} -> {last}");
        assert!(looks_real_loss(critic.forward(flat.clone())).into_scalar() > 1.0);
    }
}
