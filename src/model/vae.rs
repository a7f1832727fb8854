//! V: the paper's convolutional VAE, 64x64x3 frames <-> a `z_size` latent.
//!
//! Encoder: four 4x4 stride-2 convs (32, 64, 128, 256 channels, ReLU; 64 -> 31 -> 14 -> 6 -> 2),
//! flatten to 1024, dense to mu and logvar. Decoder: dense z -> 1024, reshape to 1x1x1024, four
//! stride-2 transposed convs (128 k5, 64 k5, 32 k6, 3 k6; 1 -> 5 -> 13 -> 30 -> 64), ReLU between,
//! sigmoid at the end. 4,348,547 parameters at z 32, 4,446,915 at z 64. [`FrameDecoder`] is the
//! same decoder folded for inference, which the dream and the app draw with.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Distribution, TensorData};

use super::gemm_conv::{conv_transpose2d, conv2d};
use crate::envs::{Frame, OBS_SIZE};

/// Channels after the encoder's last conv times its 2x2 spatial size: the flattened code.
pub const VAE_FLAT: usize = 1024;

/// The paper's KL tolerance: the KL term is never pushed below `kl_tolerance * z_size` nats.
pub const KL_TOLERANCE: f64 = 0.5;

/// V's shape. `z_size` is 32 for CarRacing and 64 for Take Cover.
#[derive(Config, Debug)]
pub struct ConvVaeConfig {
    /// Size of the latent z.
    pub z_size: usize,
}

impl ConvVaeConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvVae<B> {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [4, 4])
                .with_stride([2, 2])
                .init(device)
        };
        let deconv = |c_in, c_out, k| {
            ConvTranspose2dConfig::new([c_in, c_out], [k, k])
                .with_stride([2, 2])
                .init(device)
        };
        super::materialize(ConvVae {
            enc1: conv(3, 32),
            enc2: conv(32, 64),
            enc3: conv(64, 128),
            enc4: conv(128, 256),
            fc_mu: LinearConfig::new(VAE_FLAT, self.z_size).init(device),
            fc_logvar: LinearConfig::new(VAE_FLAT, self.z_size).init(device),
            dec_fc: LinearConfig::new(self.z_size, VAE_FLAT).init(device),
            dec1: deconv(VAE_FLAT, 128, 5),
            dec2: deconv(128, 64, 5),
            dec3: deconv(64, 32, 6),
            dec4: deconv(32, 3, 6),
            z_size: self.z_size,
        })
    }
}

/// The convolutional VAE (V).
#[derive(Module, Debug)]
pub struct ConvVae<B: Backend> {
    enc1: Conv2d<B>,
    enc2: Conv2d<B>,
    enc3: Conv2d<B>,
    enc4: Conv2d<B>,
    fc_mu: Linear<B>,
    fc_logvar: Linear<B>,
    dec_fc: Linear<B>,
    dec1: ConvTranspose2d<B>,
    dec2: ConvTranspose2d<B>,
    dec3: ConvTranspose2d<B>,
    dec4: ConvTranspose2d<B>,
    z_size: usize,
}

/// V's decoder for inference. Its matrix is computed once from V's weights, so it goes stale if
/// V trains on; training decodes with [`ConvVae::decode`].
///
/// In the paper's decoder nothing non-linear sits between the dense layer (z -> 1024) and the
/// first transposed conv, which acts on a 1x1 input and so is itself a matrix product (1024 ->
/// 128x5x5). Their product is one `[z, 3200]` matrix: the same maths (up to float rounding) with
/// 32x fewer multiply-adds, and 0.4 MB of weights to read per frame instead of 13 MB. At batch 1
/// that read was the largest single cost of a dream frame on the CPU.
#[derive(Debug, Clone)]
pub struct FrameDecoder<B: Backend> {
    /// `dec_fc.weight x dec1` as `[z, 128 * 5 * 5]`.
    head_weight: Tensor<B, 2>,
    /// `[1, 128 * 5 * 5]`.
    head_bias: Tensor<B, 2>,
    head_shape: [usize; 3],
    tail: [ConvTranspose2d<B>; 3],
}

impl<B: Backend> FrameDecoder<B> {
    pub fn z_size(&self) -> usize {
        self.head_weight.dims()[0]
    }

    /// Same as [`ConvVae::decode`].
    ///
    /// # Shapes
    /// - `z`: `[batch, z_size]`; returns `[batch, 3, 64, 64]`, values in [0, 1]
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, _] = z.dims();
        let [c, h, w] = self.head_shape;
        let x = z.matmul(self.head_weight.clone()) + self.head_bias.clone();
        let x = relu(x.reshape([batch, c, h, w])); // [batch, 128, 5, 5]
        let [dec2, dec3, dec4] = &self.tail;
        decode_tail([dec2, dec3, dec4], x)
    }

    /// Host convenience: latents (row-major `[n, z_size]`) -> n frames.
    ///
    /// # Panics
    /// If `z.len()` is not a multiple of `z_size`.
    pub fn decode_to_frames(&self, z: &[f32], device: &B::Device) -> Vec<Frame> {
        let z_size = self.z_size();
        assert_eq!(z.len() % z_size, 0, "decode_to_frames needs whole latents");
        let z = Tensor::from_data(
            TensorData::new(z.to_vec(), [z.len() / z_size, z_size]),
            device,
        );
        tensor_to_frames(self.decode(z))
    }
}

/// Decoder layers 2-4 from dec1's activation `[batch, 128, 5, 5]` to `[batch, 3, 64, 64]`.
fn decode_tail<B: Backend>(
    [dec2, dec3, dec4]: [&ConvTranspose2d<B>; 3],
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let x = relu(conv_transpose2d(dec2, x)); // [batch, 64, 13, 13]
    let x = relu(conv_transpose2d(dec3, x)); // [batch, 32, 30, 30]
    sigmoid(conv_transpose2d(dec4, x)) // [batch, 3, 64, 64]
}

/// What one VAE pass returns.
#[derive(Debug, Clone)]
pub struct VaeOutput<B: Backend> {
    /// Reconstruction in [0, 1], `[batch, 3, 64, 64]`.
    pub recon: Tensor<B, 4>,
    /// `[batch, z_size]`.
    pub mu: Tensor<B, 2>,
    /// `[batch, z_size]`.
    pub logvar: Tensor<B, 2>,
    /// The sampled latent, `[batch, z_size]`.
    pub z: Tensor<B, 2>,
}

impl<B: Backend> ConvVae<B> {
    pub fn z_size(&self) -> usize {
        self.z_size
    }

    /// Encodes frames to the posterior's mean and log-variance.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, 64, 64]`, values in [0, 1]
    /// - returns `(mu, logvar)`, each `[batch, z_size]`
    pub fn encode(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, _, _, _] = x.dims();
        let x = relu(conv2d(&self.enc1, x)); // [batch, 32, 31, 31]
        let x = relu(conv2d(&self.enc2, x)); // [batch, 64, 14, 14]
        let x = relu(conv2d(&self.enc3, x)); // [batch, 128, 6, 6]
        let x = relu(conv2d(&self.enc4, x)); // [batch, 256, 2, 2]
        let x = x.reshape([batch, VAE_FLAT]); // [batch, 1024]
        (self.fc_mu.forward(x.clone()), self.fc_logvar.forward(x))
    }

    /// Decodes latents to frames.
    ///
    /// # Shapes
    /// - `z`: `[batch, z_size]`
    /// - returns `[batch, 3, 64, 64]`, values in [0, 1]
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let x = self.dec_fc.forward(z); // [batch, 1024]
        let x = relu(self.dec1_as_matmul(x)); // [batch, 128, 5, 5]
        self.decode_tail(x)
    }

    /// [`decode`](Self::decode) with the first transposed conv run as a conv (the reference form;
    /// slower on flex, same maths).
    pub fn decode_reference(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, _] = z.dims();
        let x = self.dec_fc.forward(z).reshape([batch, VAE_FLAT, 1, 1]); // [batch, 1024, 1, 1]
        let x = relu(self.dec1.forward(x)); // [batch, 128, 5, 5]
        self.decode_tail(x)
    }

    /// The first transposed conv on its 1x1 input is a matrix product: output[o, y, x] =
    /// sum_i in[i] * W[i, o, y, x] + b[o], so W `[1024, 128, 5, 5]` reshaped to `[1024, 3200]` is
    /// the dense weight. Same parameters, same maths, one GEMM.
    ///
    /// # Shapes
    /// - `x`: `[batch, 1024]`; returns `[batch, 128, 5, 5]`
    fn dec1_as_matmul(&self, x: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, _] = x.dims();
        let [c_in, c_out, kh, kw] = self.dec1.weight.dims();
        let w = self.dec1.weight.val().reshape([c_in, c_out * kh * kw]);
        let y = x.matmul(w).reshape([batch, c_out, kh, kw]);
        match &self.dec1.bias {
            Some(bias) => y + bias.val().reshape([1, c_out, 1, 1]),
            None => y,
        }
    }

    /// Decoder layers 2-4 from dec1's activation `[batch, 128, 5, 5]`.
    fn decode_tail(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        decode_tail([&self.dec2, &self.dec3, &self.dec4], x)
    }

    /// V's decoder for inference, with `dec_fc` and `dec1` folded into one matrix (see
    /// [`FrameDecoder`]). Build it once per set of weights: the fold is a `[z, 1024] x [1024, 3200]`
    /// product.
    pub fn frame_decoder(&self) -> FrameDecoder<B> {
        let [c_in, c_out, kh, kw] = self.dec1.weight.dims();
        let dec1 = self.dec1.weight.val().reshape([c_in, c_out * kh * kw]); // [1024, 3200]
        let fc_weight = self.dec_fc.weight.val(); // [z, 1024]
        let mut head_bias = match &self.dec1.bias {
            // Each of dec1's channel biases covers its kh x kw outputs.
            Some(bias) => bias
                .val()
                .reshape([c_out, 1])
                .repeat_dim(1, kh * kw)
                .reshape([1, c_out * kh * kw]),
            None => Tensor::zeros([1, c_out * kh * kw], &fc_weight.device()),
        };
        if let Some(bias) = &self.dec_fc.bias {
            head_bias = head_bias + bias.val().reshape([1, c_in]).matmul(dec1.clone());
        }
        FrameDecoder {
            head_weight: fc_weight.matmul(dec1),
            head_bias,
            head_shape: [c_out, kh, kw],
            tail: [self.dec2.clone(), self.dec3.clone(), self.dec4.clone()],
        }
    }

    /// Host convenience: frames -> `(mu, logvar)`, each row-major `[frames.len(), z_size]`.
    pub fn encode_frames(&self, frames: &[&Frame], device: &B::Device) -> (Vec<f32>, Vec<f32>) {
        let (mu, logvar) = self.encode(frames_to_tensor(frames, device));
        let read = |t: Tensor<B, 2>| {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 tensor data")
        };
        (read(mu), read(logvar))
    }

    /// z = mu + sigma * eps with eps ~ N(0, 1) drawn by the backend, sigma = exp(logvar / 2).
    ///
    /// # Shapes
    /// - `mu`, `logvar`: `[batch, z_size]`; returns `[batch, z_size]`
    pub fn reparameterize(mu: Tensor<B, 2>, logvar: Tensor<B, 2>) -> Tensor<B, 2> {
        let eps = Tensor::random(mu.shape(), Distribution::Normal(0.0, 1.0), &mu.device());
        Self::reparameterize_with(mu, logvar, eps)
    }

    /// z = mu + exp(logvar / 2) * eps with a caller-supplied `eps` (deterministic under a seed).
    pub fn reparameterize_with(
        mu: Tensor<B, 2>,
        logvar: Tensor<B, 2>,
        eps: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        mu + (logvar * 0.5).exp() * eps
    }

    /// Encode, sample z, decode: the training pass.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, 64, 64]`; see [`VaeOutput`] for the outputs
    pub fn forward(&self, x: Tensor<B, 4>) -> VaeOutput<B> {
        let (mu, logvar) = self.encode(x);
        let z = Self::reparameterize(mu.clone(), logvar.clone());
        let recon = self.decode(z.clone());
        VaeOutput {
            recon,
            mu,
            logvar,
            z,
        }
    }
}

/// The VAE loss of the TF reference, as `(total, reconstruction, kl)`, each a scalar `[1]`.
///
/// reconstruction = per-sample sum of squared error, averaged over the batch;
/// kl = per-sample KL(q(z|x) || N(0, I)) clamped below at `kl_tolerance * z_size`, averaged over
/// the batch; total = reconstruction + kl.
///
/// # Shapes
/// - `recon`, `target`: `[batch, 3, 64, 64]`; `mu`, `logvar`: `[batch, z_size]`
pub fn vae_loss<B: Backend>(
    recon: Tensor<B, 4>,
    target: Tensor<B, 4>,
    mu: Tensor<B, 2>,
    logvar: Tensor<B, 2>,
    kl_tolerance: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let batch = mu.dims()[0];
    let sq = (recon - target)
        .powi_scalar(2)
        .reshape([batch, 3 * 64 * 64]);
    let recon_loss = sq.sum_dim(1).mean(); // [1]
    let kl = kl_term(mu, logvar, kl_tolerance);
    (recon_loss.clone() + kl.clone(), recon_loss, kl)
}

/// Per-sample KL(q(z|x) || N(0, I)), clamped below at `kl_tolerance * z_size`, averaged: `[1]`.
fn kl_term<B: Backend>(mu: Tensor<B, 2>, logvar: Tensor<B, 2>, kl_tolerance: f64) -> Tensor<B, 1> {
    let z_size = mu.dims()[1];
    // -0.5 * sum(1 + logvar - mu^2 - exp(logvar))
    let kl = (logvar.clone().exp() + mu.powi_scalar(2) - logvar - 1.0).sum_dim(1) * 0.5; // [batch, 1]
    kl.clamp_min(kl_tolerance * z_size as f64).mean()
}

/// [`vae_loss`] with the squared error of the pixels in `sprite_mask` counted `1 + sprite_weight`
/// times.
///
/// Departure from the paper, used only when asked (`train-vae --sprite-weight`): with the paper's
/// loss a few small, dim sprites (Take Cover's imps) are worth less reconstruction error than the
/// nats it takes to place them, so V leaves them out. The mask comes from the renderer (the
/// rollouts' `sprite_mask`), `[batch, 1, 64, 64]` of 0 and 1. The reconstruction loss returned is
/// the plain one, so runs with and without the weight compare.
pub fn vae_loss_with_sprites<B: Backend>(
    recon: Tensor<B, 4>,
    target: Tensor<B, 4>,
    sprite_mask: Tensor<B, 4>,
    mu: Tensor<B, 2>,
    logvar: Tensor<B, 2>,
    kl_tolerance: f64,
    sprite_weight: f32,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let batch = mu.dims()[0];
    let weight = sprite_mask * sprite_weight + 1.0;
    let sq = (recon - target).powi_scalar(2);
    let per_sample = |t: Tensor<B, 4>| t.reshape([batch, 3 * 64 * 64]).sum_dim(1).mean();
    let plain = per_sample(sq.clone().detach());
    let weighted = per_sample(sq * weight);
    let kl = kl_term(mu, logvar, kl_tolerance);
    (weighted + kl.clone(), plain, kl)
}

/// Frames (64x64 RGB) to a `[n, 3, 64, 64]` tensor in [0, 1].
///
/// # Panics
/// If a frame is not `OBS_SIZE` x `OBS_SIZE` (a caller bug: envs always render 64x64).
pub fn frames_to_tensor<B: Backend>(frames: &[&Frame], device: &B::Device) -> Tensor<B, 4> {
    let side = OBS_SIZE as usize;
    let plane = side * side;
    let mut data = vec![0.0f32; frames.len() * 3 * plane];
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.dimensions(),
            (OBS_SIZE, OBS_SIZE),
            "frames_to_tensor needs 64x64 frames"
        );
        let base = n * 3 * plane;
        for (i, px) in frame.pixels().enumerate() {
            for ch in 0..3 {
                data[base + ch * plane + i] = px.0[ch] as f32 / 255.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [frames.len(), 3, side, side]), device)
}

/// A `[n, 3, 64, 64]` tensor in [0, 1] back to frames (rounded, clamped).
pub fn tensor_to_frames<B: Backend>(images: Tensor<B, 4>) -> Vec<Frame> {
    let [n, c, h, w] = images.dims();
    assert_eq!(c, 3, "tensor_to_frames needs 3 channels");
    let data = images
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 tensor data");
    let plane = h * w;
    (0..n)
        .map(|k| {
            let base = k * 3 * plane;
            Frame::from_fn(w as u32, h as u32, |x, y| {
                let i = y as usize * w + x as usize;
                let px =
                    |ch: usize| (data[base + ch * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8;
                image::Rgb([px(0), px(1), px(2)])
            })
        })
        .collect()
}

/// A latent drawn from V's posterior on the host: z = mu + exp(logvar / 2) * eps, eps ~ N(0, 1)
/// from `rng`, so that a draw is the same on every backend.
pub fn sample_posterior<R: rand::Rng + ?Sized>(
    mu: &[f32],
    logvar: &[f32],
    rng: &mut R,
) -> Vec<f32> {
    use rand_distr::{Distribution as _, StandardNormal};
    mu.iter()
        .zip(logvar)
        .map(|(m, lv)| {
            let eps: f32 = StandardNormal.sample(rng);
            m + (0.5 * lv).exp() * eps
        })
        .collect()
}
