//! The flow model's autoencoder: 64x64x3 frames <-> a spatial latent, 4 x 16 x 16 (1,024 numbers,
//! against V's 32 or 64), so that thin details (Take Cover's far fireballs, CarRacing's kerbs)
//! survive into the dream.
//!
//! Encoder: conv 4x4 stride 2 (3 -> w0, 64 -> 32), a residual 3x3 conv at 32x32, conv 4x4
//! stride 2 (w0 -> w1, 32 -> 16), a residual 3x3 conv at 16x16, a 3x3 conv to the latent's
//! channels. The decoder mirrors it with transposed convs, sigmoid at the end.
//!
//! - **ReLU, no normalisation,** as V: SiLU and group norm cost more than the convs around them
//!   at 32x32 on the CPU (docs/flow.md), and the autoencoder trains well without them.
//! - **A noisy, penalised latent instead of a KL term.** Training decodes the latent with a
//!   little noise added, so the decoder draws a clean frame from a latent the dynamics gets
//!   slightly wrong, and a small penalty on the latent's mean square ([`Autoencoder::training_loss`]) keeps
//!   the encoder from outgrowing that noise. A tanh bound was tried instead: the encoder drove
//!   every latent into saturation within 50 steps, and training stalled.

use burn::module::AutodiffModule;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::AutodiffBackend;

/// The autoencoder's shape.
#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    /// Channels of the latent.
    pub latent_channels: usize,
    /// Channels at 32x32 and at 16x16.
    pub widths: [usize; 2],
}

impl AutoencoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Autoencoder<B> {
        let [w0, w1] = self.widths;
        let c = self.latent_channels;
        let down = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let same = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let up = |c_in, c_out| {
            ConvTranspose2dConfig::new([c_in, c_out], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        super::super::materialize(Autoencoder {
            enc_down1: down(3, w0),
            enc_res1: same(w0, w0),
            enc_down2: down(w0, w1),
            enc_res2: same(w1, w1),
            enc_out: same(w1, c),
            dec_in: same(c, w1),
            dec_res2: same(w1, w1),
            dec_up2: up(w1, w0),
            dec_res1: same(w0, w0),
            dec_up1: up(w0, 3),
        })
    }
}

/// Frames to spatial latents and back.
#[derive(Module, Debug)]
pub struct Autoencoder<B: Backend> {
    enc_down1: Conv2d<B>,
    enc_res1: Conv2d<B>,
    enc_down2: Conv2d<B>,
    enc_res2: Conv2d<B>,
    enc_out: Conv2d<B>,
    dec_in: Conv2d<B>,
    dec_res2: Conv2d<B>,
    dec_up2: ConvTranspose2d<B>,
    dec_res1: Conv2d<B>,
    dec_up1: ConvTranspose2d<B>,
}

impl<B: Backend> Autoencoder<B> {
    /// Channels of the latent.
    pub fn latent_channels(&self) -> usize {
        self.enc_out.weight.dims()[0]
    }

    /// Frames to latents.
    ///
    /// # Shapes
    /// - `frames`: `[n, 3, 64, 64]`, values in [0, 1]
    /// - returns `[n, C, 16, 16]`
    pub fn encode(&self, frames: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = relu(self.enc_down1.forward(frames * 2.0 - 1.0)); // [n, w0, 32, 32]
        let x = x.clone() + relu(self.enc_res1.forward(x));
        let x = relu(self.enc_down2.forward(x)); // [n, w1, 16, 16]
        let x = x.clone() + relu(self.enc_res2.forward(x));
        self.enc_out.forward(x)
    }

    /// The training loss on `frames`, as `(total, reconstruction)`, each `[1]`: the latent is
    /// decoded with `latent_noise * eps` added, and its mean square, weighted by
    /// `latent_penalty`, keeps its scale (see the module docs).
    ///
    /// # Shapes
    /// - `frames`: `[n, 3, 64, 64]` in [0, 1]; `eps`: `[n, C, 16, 16]`, standard normal
    pub fn training_loss(
        &self,
        frames: Tensor<B, 4>,
        eps: Tensor<B, 4>,
        latent_noise: f32,
        latent_penalty: f32,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let latent = self.encode(frames.clone());
        let penalty = latent.clone().powi_scalar(2).mean() * latent_penalty;
        let recon = reconstruction_loss(self.decode(latent + eps * latent_noise), frames);
        (recon.clone() + penalty, recon)
    }

    /// A checksum of the encoder's weights alone: what a latent series records, so that a
    /// fine-tuned decoder keeps the series made before it.
    pub fn encoder_checksum(&self) -> u64 {
        let convs = [
            &self.enc_down1,
            &self.enc_res1,
            &self.enc_down2,
            &self.enc_res2,
            &self.enc_out,
        ];
        let mut bytes = Vec::new();
        for conv in convs {
            let weight = conv.weight.val().into_data();
            let bias = conv.bias.as_ref().map(|b| b.val().into_data());
            for data in std::iter::once(weight).chain(bias) {
                let values = data.convert::<f32>().to_vec::<f32>().unwrap_or_default();
                bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        crate::model::bundle::fnv1a(&bytes)
    }

    /// Latents to frames.
    ///
    /// # Shapes
    /// - `latents`: `[n, C, 16, 16]`
    /// - returns `[n, 3, 64, 64]`, values in [0, 1]
    pub fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = relu(self.dec_in.forward(latents)); // [n, w1, 16, 16]
        let x = x.clone() + relu(self.dec_res2.forward(x));
        let x = relu(self.dec_up2.forward(x)); // [n, w0, 32, 32]
        let x = x.clone() + relu(self.dec_res1.forward(x));
        sigmoid(self.dec_up1.forward(x)) // [n, 3, 64, 64]
    }
}

/// [`Autoencoder::decoder_loss`]'s parts.
pub struct DecoderLoss<B: Backend> {
    /// Reconstruction plus the weighted gradient difference, `[1]`.
    pub total: Tensor<B, 1>,
    pub recon: Tensor<B, 1>,
    pub gradient: Tensor<B, 1>,
    /// The decoded frames, `[n, 3, 64, 64]`, for a critic to score.
    pub drawn: Tensor<B, 4>,
}

impl<B: AutodiffBackend> Autoencoder<B> {
    /// The loss that fine-tunes the decoder alone. No gradient reaches the encoder, so the
    /// latents, their statistics and the dynamics trained on them stay valid. The latent is
    /// decoded with `latent_noise * eps` added, and the frame is scored by its reconstruction
    /// error plus `gradient_weight` times [`gradient_difference_loss`], which squared error alone
    /// leaves blurred.
    ///
    /// # Shapes
    /// - `frames`: `[n, 3, 64, 64]` in [0, 1]; `eps`: `[n, C, 16, 16]`, standard normal
    pub fn decoder_loss(
        &self,
        frames: Tensor<B, 4>,
        eps: Tensor<B, 4>,
        latent_noise: f32,
        gradient_weight: f32,
    ) -> DecoderLoss<B> {
        // The frozen encoder runs on the inner backend. Traced and then detached, its ops stayed
        // in the autodiff graph, which backward frees only along the loss's path: a fine-tune
        // on CarRacing grew to 23 GB by step 880.
        let latent = Tensor::from_inner(self.valid().encode(frames.clone().inner()));
        let drawn = self.decode(latent + eps * latent_noise);
        let recon = reconstruction_loss(drawn.clone(), frames.clone());
        let gradient = gradient_difference_loss(drawn.clone(), frames);
        DecoderLoss {
            total: recon.clone() + gradient.clone() * gradient_weight,
            recon,
            gradient,
            drawn,
        }
    }
}

/// The autoencoder's reconstruction loss: per-frame sum of squared error, averaged over the batch
/// (V's unit, so the two compare), `[1]`.
///
/// # Shapes
/// - `recon`, `target`: `[n, 3, 64, 64]`
pub fn reconstruction_loss<B: Backend>(recon: Tensor<B, 4>, target: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = target.dims();
    (recon - target)
        .powi_scalar(2)
        .reshape([n, c * h * w])
        .sum_dim(1)
        .mean()
}

/// The gradient difference loss (Mathieu, Couprie and LeCun 2016, with alpha 1): the absolute
/// difference between the magnitudes of the two frames' horizontal and vertical pixel
/// differences, summed per frame and averaged over the batch, `[1]`. Squared error is smallest
/// for the mean of the frames a latent could mean, which is blurred; this term is smallest when
/// the edges are as strong as the real ones.
///
/// # Shapes
/// - `drawn`, `target`: `[n, c, h, w]`, `h` and `w` at least 2
pub fn gradient_difference_loss<B: Backend>(
    drawn: Tensor<B, 4>,
    target: Tensor<B, 4>,
) -> Tensor<B, 1> {
    let [n, c, h, w] = target.dims();
    let across = |t: Tensor<B, 4>| {
        (t.clone().slice([0..n, 0..c, 0..h, 1..w]) - t.slice([0..n, 0..c, 0..h, 0..w - 1])).abs()
    };
    let down = |t: Tensor<B, 4>| {
        (t.clone().slice([0..n, 0..c, 1..h, 0..w]) - t.slice([0..n, 0..c, 0..h - 1, 0..w])).abs()
    };
    let per_frame = |t: Tensor<B, 4>| {
        let [n, c, h, w] = t.dims();
        t.reshape([n, c * h * w]).sum_dim(1)
    };
    let x = per_frame((across(drawn.clone()) - across(target.clone())).abs());
    let y = per_frame((down(drawn) - down(target)).abs());
    (x + y).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn frames_become_a_16x16_latent_and_back() {
        let device = Default::default();
        let ae = AutoencoderConfig::new(4, [8, 16]).init::<Flex>(&device);
        let frames = Tensor::<Flex, 4>::random(
            [2, 3, 64, 64],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let latents = ae.encode(frames);
        assert_eq!(latents.dims(), [2, 4, 16, 16]);
        assert_eq!(ae.latent_channels(), 4);
        let values = latents.clone().into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        let frames = ae.decode(latents);
        assert_eq!(frames.dims(), [2, 3, 64, 64]);
        let values = frames.into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn the_gradient_difference_loss_scores_softer_edges() {
        let device = Default::default();
        // A vertical edge: columns 0-3 dark, 4-7 bright, in every channel.
        let edge: Vec<f32> = (0..3 * 8 * 8)
            .map(|i| if i % 8 < 4 { 0.0 } else { 1.0 })
            .collect();
        let frame = |values: Vec<f32>| {
            Tensor::<Flex, 4>::from_data(TensorData::new(values, [1, 3, 8, 8]), &device)
        };
        let loss =
            |a: Vec<f32>, b: Vec<f32>| gradient_difference_loss(frame(a), frame(b)).into_scalar();
        assert_eq!(loss(edge.clone(), edge.clone()), 0.0);
        let half_contrast: Vec<f32> = edge.iter().map(|v| v * 0.5 + 0.25).collect();
        let softer_by_half = loss(half_contrast, edge.clone());
        // Blurred: the step of 1 becomes two steps of 0.5, so each of the 24 rows loses 1 - 0.5
        // at one column and gains 0.5 at the next: 24 * 1.0.
        let blurred: Vec<f32> = (0..3 * 8 * 8)
            .map(|i| match i % 8 {
                0..=2 => 0.0,
                3 => 0.5,
                _ => 1.0,
            })
            .collect();
        assert!((loss(blurred, edge.clone()) - 24.0).abs() < 1e-5);
        // Halving the contrast halves each step: 24 rows * 0.5.
        assert!((softer_by_half - 12.0).abs() < 1e-5, "{softer_by_half}");
    }

    #[test]
    fn the_decoder_loss_leaves_the_encoder_alone() {
        use crate::model::adam::adam;
        use burn::backend::Autodiff;
        use burn::optim::{GradientsParams, Optimizer};
        type AB = Autodiff<Flex>;
        let device = Default::default();
        let ae = AutoencoderConfig::new(4, [8, 16]).init::<AB>(&device);
        let frames = Tensor::<AB, 4>::random(
            [2, 3, 64, 64],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let eps = Tensor::<AB, 4>::zeros([2, 4, 16, 16], &device);
        let (before_encoder, before_frames) = (
            ae.encoder_checksum(),
            ae.decode(ae.encode(frames.clone())).into_data(),
        );
        let loss = ae.decoder_loss(frames.clone(), eps, 0.05, 0.01);
        assert!(loss.recon.into_scalar() > 0.0 && loss.gradient.into_scalar() > 0.0);
        assert_eq!(loss.drawn.dims(), [2, 3, 64, 64]);
        let grads = GradientsParams::from_grads(loss.total.backward(), &ae);
        let ae = adam::<AB, Autoencoder<AB>>(None).step(1e-3, ae, grads);
        assert_eq!(ae.encoder_checksum(), before_encoder);
        assert_ne!(ae.decode(ae.encode(frames)).into_data(), before_frames);
    }
}
