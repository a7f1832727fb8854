//! V, M, C, the model file and the backends.

use std::path::Path;

use burn::backend::Autodiff;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{Distribution, ElementConversion, TensorData};
use dreamplay::envs::{EnvKind, Frame};
use dreamplay::model::atlas::{AtlasError, DimStats, LatentMap, LatentRows, LatentStats};
use dreamplay::model::backend::{
    self, BackendRequest, FlexBackend, FlexDevice, SelectedBackend, WgpuBackend, WgpuDevice,
};
use dreamplay::model::bundle::{
    self, BundleError, Expect, ModelSpec, Part, Precision, WorldModel, collect_params, load_params,
};
use dreamplay::model::controller::{Controller, ControllerKind};
use dreamplay::model::mdrnn::{self, MdnRnnConfig, MdnRnnState, Mixture, sample_mixture};
use dreamplay::model::vae::{self, ConvVaeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = FlexBackend;
type AD = Autodiff<FlexBackend>;

fn dev() -> FlexDevice {
    FlexDevice
}

/// A 64x64 frame with a background colour and a coloured rectangle and disc, from `seed`.
fn synthetic_frame(seed: u64) -> Frame {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bg = [
        rng.random::<u8>() / 2,
        rng.random::<u8>() / 2,
        rng.random::<u8>() / 2,
    ];
    let rect_col = [rng.random::<u8>(), rng.random::<u8>(), 255];
    let disc_col = [255, rng.random::<u8>(), rng.random::<u8>()];
    let (rx, ry, rw, rh) = (
        rng.random_range(0..40),
        rng.random_range(0..40),
        rng.random_range(8..24),
        rng.random_range(8..24),
    );
    let (cx, cy, r) = (
        rng.random_range(10..54) as f32,
        rng.random_range(10..54) as f32,
        rng.random_range(4..12) as f32,
    );
    Frame::from_fn(64, 64, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        if (xf - cx).powi(2) + (yf - cy).powi(2) < r * r {
            image::Rgb(disc_col)
        } else if x >= rx && x < rx + rw && y >= ry && y < ry + rh {
            image::Rgb(rect_col)
        } else {
            image::Rgb(bg)
        }
    })
}

// ---------------------------------------------------------------- V

#[test]
fn vae_parameter_count_matches_the_paper() {
    assert_eq!(
        ConvVaeConfig::new(32).init::<B>(&dev()).num_params(),
        4_348_547
    );
    assert_eq!(
        ConvVaeConfig::new(64).init::<B>(&dev()).num_params(),
        4_446_915
    );
}

#[test]
fn vae_shapes() {
    let device = dev();
    let vae = ConvVaeConfig::new(32).init::<B>(&device);
    let x = Tensor::<B, 4>::random([2, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    let (mu, logvar) = vae.encode(x.clone());
    assert_eq!(mu.dims(), [2, 32]);
    assert_eq!(logvar.dims(), [2, 32]);
    let frames: Vec<Frame> = (0..2).map(synthetic_frame).collect();
    let (mu_host, logvar_host) = vae.encode_frames(&frames.iter().collect::<Vec<_>>(), &device);
    assert_eq!((mu_host.len(), logvar_host.len()), (64, 64));
    assert_eq!(
        vae.frame_decoder()
            .decode_to_frames(&mu_host, &device)
            .len(),
        2
    );
    let out = vae.forward(x);
    assert_eq!(out.recon.dims(), [2, 3, 64, 64]);
    assert_eq!(out.z.dims(), [2, 32]);
    let recon = out.recon.into_data().to_vec::<f32>().unwrap();
    assert!(
        recon.iter().all(|v| (0.0..=1.0).contains(v)),
        "sigmoid output must lie in [0, 1]"
    );
}

fn max_abs_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
    (a - b).abs().max().into_scalar().elem::<f32>()
}

/// V's three decoder forms are the same function: dec1 as a transposed conv (the paper's), as a
/// matmul (training), and folded into the dense layer (the dream).
#[test]
fn the_decoder_forms_agree() {
    let device = dev();
    for z_size in [32, 64] {
        let vae = ConvVaeConfig::new(z_size).init::<B>(&device);
        let z = Tensor::<B, 2>::random([3, z_size], Distribution::Normal(0.0, 2.0), &device);
        let decoded = vae.decode(z.clone());
        let as_conv = max_abs_diff(decoded.clone(), vae.decode_reference(z.clone()));
        assert!(
            as_conv < 1e-5,
            "dec1 as matmul differs from the conv by {as_conv}"
        );
        let folded = vae.frame_decoder();
        assert_eq!(folded.z_size(), z_size);
        let as_folded = max_abs_diff(decoded, folded.decode(z));
        assert!(
            as_folded < 1e-5,
            "the folded decoder differs by {as_folded} at z {z_size}"
        );
    }
}

#[test]
fn frames_round_trip_through_tensors() {
    let frames: Vec<Frame> = (0..3).map(synthetic_frame).collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let t = vae::frames_to_tensor::<B>(&refs, &dev());
    assert_eq!(t.dims(), [3, 3, 64, 64]);
    assert_eq!(vae::tensor_to_frames(t), frames);
}

#[test]
fn vae_loss_matches_a_hand_computation() {
    let device = dev();
    let recon = Tensor::<B, 4>::full([2, 3, 64, 64], 0.5, &device);
    let target = Tensor::<B, 4>::zeros([2, 3, 64, 64], &device);
    let mu = Tensor::<B, 2>::from_floats([[3.0, 0.0], [0.0, 0.0]], &device);
    let logvar = Tensor::<B, 2>::zeros([2, 2], &device);
    let (total, rec, kl) = vae::vae_loss(recon, target, mu, logvar, 0.5);
    let rec = rec.into_scalar().elem::<f32>();
    let kl = kl.into_scalar().elem::<f32>();
    assert!((rec - 0.25 * 3.0 * 4096.0).abs() < 1e-2, "recon {rec}");
    // sample 0: KL = 0.5 * 9 = 4.5 > floor 1.0; sample 1: KL = 0 -> floor 0.5 * 2 = 1.0.
    assert!((kl - (4.5 + 1.0) / 2.0).abs() < 1e-5, "kl {kl}");
    assert!((total.into_scalar().elem::<f32>() - rec - kl).abs() < 1e-2);
}

#[test]
fn vae_loss_goes_down_on_synthetic_frames() {
    let device = dev();
    AD::seed(&device, 7);
    let frames: Vec<Frame> = (0..24).map(synthetic_frame).collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let data = vae::frames_to_tensor::<AD>(&refs, &device);
    let mut model = ConvVaeConfig::new(32).init::<AD>(&device);
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    for step in 0..24 {
        let start = (step * 8) % 24;
        let x = data.clone().narrow(0, start, 8);
        let out = model.forward(x.clone());
        let (total, rec, _) = vae::vae_loss(out.recon, x, out.mu, out.logvar, vae::KL_TOLERANCE);
        losses.push(rec.into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(total.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let first = losses[..3].iter().sum::<f32>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    println!("VAE recon loss {first:.1} -> {last:.1}");
    assert!(
        last < 0.7 * first,
        "VAE recon loss did not go down: {first} -> {last}"
    );
}

#[test]
fn sprite_weight_counts_the_masked_pixels_more_and_reports_the_plain_error() {
    use dreamplay::train::vae::{frames_u8_to_tensor, masks_u8_to_tensor};
    let device = dev();
    let grey = vec![128u8; 64 * 64 * 3];
    let with_pixels = |pixels: &[(usize, usize, u8)]| {
        let mut frame = grey.clone();
        for &(y, x, v) in pixels {
            frame[(y * 64 + x) * 3..][..3].fill(v);
        }
        frame
    };
    // The target: grey with one dark imp pixel, which the mask marks.
    let target = with_pixels(&[(30, 10, 20)]);
    let mut mask = vec![0u8; 64 * 64];
    mask[30 * 64 + 10] = 1;
    let loss = |recon: &[u8], weight: f32| {
        let (total, plain, kl) = vae::vae_loss_with_sprites(
            frames_u8_to_tensor::<B>(&[recon], &device),
            frames_u8_to_tensor::<B>(&[&target], &device),
            masks_u8_to_tensor::<B>(&[&mask], &device),
            Tensor::<B, 2>::zeros([1, 4], &device),
            Tensor::<B, 2>::zeros([1, 4], &device),
            0.5,
            weight,
        );
        let [total, plain, kl] = [total, plain, kl].map(|t| t.into_scalar().elem::<f32>());
        (total - kl, plain)
    };
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    // Missing the imp pixel: only it is wrong, and it counts 1 + 9 times.
    let (weighted, plain) = loss(&grey, 9.0);
    let one_pixel = 3.0 * ((128.0 - 20.0) / 255.0f32).powi(2);
    assert!(
        close(plain, one_pixel),
        "plain {plain}, expected {one_pixel}"
    );
    assert!(close(weighted, 10.0 * one_pixel), "weighted {weighted}");
    // Weight 0 is the paper's loss.
    let (weighted, _) = loss(&grey, 0.0);
    let (paper, _, paper_kl) = vae::vae_loss(
        frames_u8_to_tensor::<B>(&[&grey], &device),
        frames_u8_to_tensor::<B>(&[&target], &device),
        Tensor::<B, 2>::zeros([1, 4], &device),
        Tensor::<B, 2>::zeros([1, 4], &device),
        0.5,
    );
    let paper = (paper - paper_kl).into_scalar().elem::<f32>();
    assert!(close(weighted, paper), "{weighted} vs {paper}");
    // Drawing the imp, but a dark pixel off the mask: that error counts once.
    let (weighted, plain) = loss(&with_pixels(&[(30, 10, 20), (5, 40, 20)]), 9.0);
    assert!(
        close(plain, one_pixel) && close(weighted, one_pixel),
        "{weighted} vs {plain}"
    );
}

// ---------------------------------------------------------------- M

#[test]
fn mdrnn_parameter_counts_match_the_paper() {
    let device = dev();
    // The paper counts the LSTM and the mixture head (plus Doom's done head). Ours adds a reward
    // head (and CarRacing gets a done head too): hidden + 1 parameters each.
    let car = ModelSpec::paper(EnvKind::CarRacing)
        .mdrnn_config()
        .init::<B>(&device);
    assert_eq!(car.num_params() - 2 * (256 + 1), 422_368);
    let doom = ModelSpec::paper(EnvKind::TakeCover)
        .mdrnn_config()
        .init::<B>(&device);
    assert_eq!(doom.num_params() - (512 + 1), 1_678_785);
}

#[test]
fn mdrnn_shapes_and_normalised_mixture() {
    let device = dev();
    let m = MdnRnnConfig::new(32, 3, 64).init::<B>(&device);
    let z = Tensor::<B, 3>::random([2, 7, 32], Distribution::Normal(0.0, 1.0), &device);
    let a = Tensor::<B, 3>::random([2, 7, 3], Distribution::Uniform(-1.0, 1.0), &device);
    let out = m.forward(z.clone(), a.clone(), None);
    assert_eq!(out.mixture.logmix.dims(), [2, 7, 32, 5]);
    assert_eq!(out.mixture.mu.dims(), [2, 7, 32, 5]);
    assert_eq!(out.mixture.logsigma.dims(), [2, 7, 32, 5]);
    assert_eq!(out.done_logit.dims(), [2, 7]);
    assert_eq!(out.reward.dims(), [2, 7]);
    assert_eq!(out.state.hidden.dims(), [2, 64]);
    let sums = out
        .mixture
        .logmix
        .exp()
        .sum_dim(3)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
        "mixture weights must sum to 1"
    );

    // Stepping one at a time equals the sequence forward.
    let mut state = MdnRnnState::zeros(2, 64, &device);
    let mut last = None;
    for t in 0..7 {
        let zt = z.clone().narrow(1, t, 1).reshape([2, 32]);
        let at = a.clone().narrow(1, t, 1).reshape([2, 3]);
        let s = m.step(zt, at, state);
        assert_eq!(s.mixture.mu.dims(), [2, 32, 5]);
        assert_eq!(s.done_logit.dims(), [2]);
        state = s.state.clone();
        last = Some(s);
    }
    let last = last.unwrap();
    let seq_mu = out.mixture.mu.narrow(1, 6, 1).reshape([2, 32, 5]);
    let diff = (seq_mu - last.mixture.mu)
        .abs()
        .max()
        .into_scalar()
        .elem::<f32>();
    assert!(diff < 1e-5, "step and forward disagree by {diff}");
}

/// Builds a 1-step, 1-dim mixture [1, 1, 1, k] from plain values.
fn mixture_4d(logmix: &[f32], mu: &[f32], logsigma: &[f32]) -> Mixture<B, 4> {
    let k = logmix.len();
    let t =
        |v: &[f32]| Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), [1, 1, 1, k]), &dev());
    let logmix = burn::tensor::activation::log_softmax(t(logmix), 3);
    Mixture {
        logmix,
        mu: t(mu),
        logsigma: t(logsigma),
    }
}

#[test]
fn mdn_loss_matches_a_hand_computation() {
    let w = [0.2f32, 0.8];
    let mu = [0.0f32, 2.0];
    let sigma = [1.0f32, 0.5];
    let x = 1.0f32;
    let logmix: Vec<f32> = w.iter().map(|v| v.ln()).collect();
    let logsigma: Vec<f32> = sigma.iter().map(|v| v.ln()).collect();
    let mix = mixture_4d(&logmix, &mu, &logsigma);
    let target = Tensor::<B, 3>::from_floats([[[x]]], &dev());
    let nll = mdrnn::mdn_loss(&mix, target).into_scalar().elem::<f32>();
    let pdf = |m: f32, s: f32| {
        (-(x - m).powi(2) / (2.0 * s * s)).exp() / (s * (2.0 * std::f32::consts::PI).sqrt())
    };
    let expected = -(w[0] * pdf(mu[0], sigma[0]) + w[1] * pdf(mu[1], sigma[1])).ln();
    assert!(
        (nll - expected).abs() < 1e-5,
        "nll {nll} expected {expected}"
    );
}

#[test]
fn done_loss_weights_positives_ten_times() {
    let device = dev();
    let logit = Tensor::<B, 2>::from_floats([[0.0, 0.0]], &device);
    let done = Tensor::<B, 2>::from_floats([[1.0, 0.0]], &device);
    let l = mdrnn::done_loss(logit, done, mdrnn::DONE_POS_WEIGHT)
        .into_scalar()
        .elem::<f32>();
    let ln2 = std::f32::consts::LN_2;
    assert!((l - (10.0 * ln2 + ln2) / 2.0).abs() < 1e-5, "done loss {l}");
}

const W: [f32; 3] = [0.2, 0.5, 0.3];
const MU: [f32; 3] = [-2.0, 1.0, 4.0];
const SIGMA: [f32; 3] = [0.5, 0.3, 1.0];

fn sample_stats(tau: f32, n: usize, seed: u64) -> (f64, f64) {
    let logmix: Vec<f32> = W.iter().map(|w| w.ln()).collect();
    let logsigma: Vec<f32> = SIGMA.iter().map(|s| s.ln()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let xs: Vec<f64> = (0..n)
        .map(|_| sample_mixture(&logmix, &MU, &logsigma, tau, &mut rng) as f64)
        .collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var)
}

#[test]
fn temperature_zero_collapses_to_the_most_likely_mean() {
    let logmix: Vec<f32> = W.iter().map(|w| w.ln()).collect();
    let logsigma: Vec<f32> = SIGMA.iter().map(|s| s.ln()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for tau in [0.0, 1e-9, 1e-7, -1.0, f32::NAN] {
        assert_eq!(
            sample_mixture(&logmix, &MU, &logsigma, tau, &mut rng),
            1.0,
            "tau {tau}"
        );
    }
    // Just above the deterministic cut-off: finite and at the mode's mean within its tiny sigma.
    for tau in [1e-5f32, 1e-3] {
        for _ in 0..100 {
            let x = sample_mixture(&logmix, &MU, &logsigma, tau, &mut rng);
            assert!(
                x.is_finite() && (x - 1.0).abs() < 0.3 * tau.sqrt() * 6.0,
                "tau {tau}: {x}"
            );
        }
    }
    // Extreme logits do not produce NaN.
    let x = sample_mixture(&[-1e30, 1e30, 0.0], &MU, &logsigma, 0.5, &mut rng);
    assert!(x.is_finite());
}

#[test]
fn temperature_one_matches_the_mixture_moments() {
    let mean: f64 = W.iter().zip(MU).map(|(w, m)| (*w * m) as f64).sum();
    let second: f64 = W
        .iter()
        .zip(MU)
        .zip(SIGMA)
        .map(|((w, m), s)| (*w * (s * s + m * m)) as f64)
        .sum();
    let var = second - mean * mean;
    let (m, v) = sample_stats(1.0, 200_000, 3);
    assert!((m - mean).abs() < 0.03, "mean {m} vs {mean}");
    assert!((v - var).abs() / var < 0.03, "var {v} vs {var}");
}

#[test]
fn higher_temperature_spreads_wider() {
    let (_, v_low) = sample_stats(0.5, 50_000, 4);
    let (_, v_one) = sample_stats(1.0, 50_000, 5);
    let (_, v_high) = sample_stats(2.0, 50_000, 6);
    assert!(
        v_low < v_one && v_one < v_high,
        "variances {v_low} {v_one} {v_high}"
    );
}

#[test]
fn mdrnn_loss_goes_down_on_synthetic_sequences() {
    let device = dev();
    AD::seed(&device, 11);
    // z_{t+1} = 0.8 z_t + 0.5 a_t (+ small noise); done when z_0 > 1; reward = a_t.
    let (batch, seq, zs) = (16, 12, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut zv, mut av, mut nv, mut dv, mut rv) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..batch {
        let mut z: Vec<f32> = (0..zs).map(|_| rng.random_range(-1.0..1.0)).collect();
        for _ in 0..seq {
            let a: f32 = rng.random_range(-1.0..1.0);
            let next: Vec<f32> = z
                .iter()
                .map(|v| 0.8 * v + 0.5 * a + 0.05 * (rng.random::<f32>() - 0.5))
                .collect();
            zv.extend(&z);
            av.push(a);
            nv.extend(&next);
            dv.push(if next[0] > 0.6 { 1.0 } else { 0.0 });
            rv.push(a);
            z = next;
        }
    }
    let t3 = |v: Vec<f32>, d: usize| {
        Tensor::<AD, 3>::from_data(TensorData::new(v, [batch, seq, d]), &device)
    };
    let t2 = |v: Vec<f32>| Tensor::<AD, 2>::from_data(TensorData::new(v, [batch, seq]), &device);
    let (z, a, next, done, reward) = (t3(zv, zs), t3(av, 1), t3(nv, zs), t2(dv), t2(rv));
    let mut model = MdnRnnConfig::new(zs, 1, 32).init::<AD>(&device);
    let mut optim = AdamConfig::new().init();
    let mut history = Vec::new();
    for _ in 0..40 {
        let out = model.forward(z.clone(), a.clone(), None);
        let l_mdn = mdrnn::mdn_loss(&out.mixture, next.clone());
        let l_done = mdrnn::done_loss(out.done_logit, done.clone(), mdrnn::DONE_POS_WEIGHT);
        let l_reward = mdrnn::reward_loss(out.reward, reward.clone());
        let scalars = [&l_mdn, &l_done, &l_reward].map(|l| l.clone().into_scalar().elem::<f32>());
        history.push(scalars);
        let total = l_mdn + l_done + l_reward;
        let grads = GradientsParams::from_grads(total.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (history[0], history[history.len() - 1]);
    println!("M losses (mdn, done, reward): {first:?} -> {last:?}");
    assert!(
        last[0] < first[0] - 0.5,
        "MDN loss did not go down: {} -> {}",
        first[0],
        last[0]
    );
    assert!(
        last[1] < 0.8 * first[1],
        "done loss did not go down: {} -> {}",
        first[1],
        last[1]
    );
    assert!(
        last[2] < 0.5 * first[2],
        "reward loss did not go down: {} -> {}",
        first[2],
        last[2]
    );
}

// ---------------------------------------------------------------- C

#[test]
fn controller_parameter_counts_match_the_paper() {
    assert_eq!(
        ModelSpec::paper(EnvKind::CarRacing)
            .controller()
            .param_count(),
        867
    );
    assert_eq!(
        ModelSpec::paper(EnvKind::TakeCover)
            .controller()
            .param_count(),
        1_088
    );
}

#[test]
fn controller_forward_and_action_mapping() {
    let mut car = Controller::new(ControllerKind::CarRacing, 2, 3);
    assert_eq!(car.param_count(), 3 * 5 + 3);
    assert!(car.set_params(&[0.0; 4]).is_err());
    // Row 0 reads z[0]; row 1 has bias 0.5; row 2 reads h[2] negatively.
    let mut p = vec![0.0f32; 18];
    p[0] = 1.0; // W[0][z0]
    p[10 + 4] = -2.0; // W[2][h2]
    p[15 + 1] = 0.5; // b[1]
    car.set_params(&p).unwrap();
    assert_eq!(car.params(), &p[..]);
    let (z, h) = ([0.3f32, 9.0], [0.0f32, 0.0, 0.25]);
    let raw = car.forward(&z, &[], &h);
    assert_eq!(raw.len(), 3);
    assert!((raw[0] - 0.3f32.tanh()).abs() < 1e-6);
    assert!((raw[1] - 0.5f32.tanh()).abs() < 1e-6);
    assert!((raw[2] - (-0.5f32).tanh()).abs() < 1e-6);
    let act = car.to_env_action(&raw);
    assert!((act[1] - (0.5f32.tanh() + 1.0) / 2.0).abs() < 1e-6);
    assert_eq!(act[2], 0.0, "brake is clipped at 0");

    let mut doom = Controller::new(ControllerKind::TakeCover, 2, 2);
    assert_eq!(doom.param_count(), 6);
    doom.set_params(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]).unwrap(); // reads c[0]
    let raw = doom.forward(&[5.0, 5.0], &[0.7, 0.0], &[3.0, 3.0]);
    assert!((raw[0] - 0.7f32.tanh()).abs() < 1e-6);
    // The move is snapped to what the env does with it: right beyond +1/3, left beyond -1/3,
    // no thrust between, so M is told the move the env makes.
    for (c0, moves) in [(0.7, 1.0), (-0.7, -1.0), (0.3, 0.0), (-0.3, 0.0)] {
        let out = doom.act(&[5.0, 5.0], &[c0, 0.0], &[3.0, 3.0]);
        assert_eq!(out, vec![moves], "c[0] = {c0}, tanh {}", c0.tanh());
    }
}

// ---------------------------------------------------------------- the model file

fn small_spec(env: EnvKind) -> ModelSpec {
    ModelSpec {
        hidden_size: 16,
        ..ModelSpec::paper(env)
    }
}

fn filled_model(spec: ModelSpec) -> WorldModel<B> {
    let mut model = WorldModel::<B>::init(spec, &dev());
    let c = model.controller.as_mut().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let p: Vec<f32> = (0..c.param_count())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    c.set_params(&p).unwrap();
    model.provenance.vae = Some(bundle::TrainingInfo {
        data_size: Some(1000),
        epochs: Some(1),
        ..Default::default()
    });
    model.provenance.controller = Some(bundle::TrainingInfo {
        epochs: Some(3),
        dream: Some(bundle::EvolvedDream {
            tau: 1.15,
            done_odds: 0.1,
            done_rule: dreamplay::model::mdrnn::DoneRule::Sample,
            context_steps: 10,
        }),
        ..Default::default()
    });
    model
}

/// A scratch folder and a small model for `env` with every part filled.
fn filled_in_scratch(env: EnvKind) -> (tempfile::TempDir, ModelSpec, WorldModel<B>) {
    let spec = small_spec(env);
    let model = filled_model(spec);
    (tempfile::tempdir().expect("scratch folder"), spec, model)
}

#[test]
fn bundle_round_trip_f32_is_exact() {
    let (scratch, spec, model) = filled_in_scratch(EnvKind::CarRacing);
    let path = scratch.path().join("f32.bin");
    bundle::save(&model, &path, Precision::F32).unwrap();
    let loaded = bundle::load::<B>(&path, &Expect::spec(&spec), &dev()).unwrap();
    assert_eq!(loaded.spec, spec);
    assert_eq!(loaded.provenance, model.provenance);
    assert_eq!(
        collect_params(loaded.vae.as_ref().unwrap()),
        collect_params(model.vae.as_ref().unwrap())
    );
    assert_eq!(
        collect_params(loaded.mdrnn.as_ref().unwrap()),
        collect_params(model.mdrnn.as_ref().unwrap())
    );
    assert_eq!(loaded.controller, model.controller);
    let header = bundle::read_header(&path).unwrap();
    assert!(header.has(Part::Vae) && header.has(Part::Mdrnn) && header.has(Part::Controller));
}

/// The later stages write the run bundle with `save_over_run`: a V that came in f16 (a shipped
/// model a run started from) stays f16 and keeps its checksum, which names the V that `encode`'s
/// series were made with; M, being trained, is written in f32.
#[test]
fn saving_over_a_run_keeps_an_f16_v_and_its_checksum() {
    let (scratch, spec, model) = filled_in_scratch(EnvKind::TakeCover);
    let path = scratch.path().join("run.bin");
    let part = |path: &Path, which: Part| {
        let header = bundle::read_header(path).unwrap();
        let p = header.parts.into_iter().find(|p| p.part == which).unwrap();
        (p.precision, p.checksum)
    };
    bundle::save(&model, &path, Precision::F16).unwrap();
    let v_before = part(&path, Part::Vae);
    let loaded = bundle::load::<B>(&path, &Expect::spec(&spec), &dev()).unwrap();
    bundle::save_over_run(&loaded, &path).unwrap();
    assert_eq!(part(&path, Part::Vae), v_before);
    assert_eq!(part(&path, Part::Mdrnn).0, Precision::F32);
    // Where the file is new, or holds V in f32, V is written in f32.
    let fresh = scratch.path().join("fresh.bin");
    bundle::save_over_run(&loaded, &fresh).unwrap();
    assert_eq!(part(&fresh, Part::Vae).0, Precision::F32);
}

#[test]
fn bundle_round_trip_f16_equals_rounded_weights_and_reconstructs_the_same() {
    let (scratch, _, model) = filled_in_scratch(EnvKind::TakeCover);
    let path = scratch.path().join("f16.bin");
    bundle::save(&model, &path, Precision::F16).unwrap();
    let f32_size = bundle::to_bytes(&model, Precision::F32).len();
    let f16_size = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(
        f16_size < f32_size * 6 / 10,
        "f16 file {f16_size} vs f32 {f32_size}"
    );
    let loaded = bundle::load::<B>(&path, &Expect::env(EnvKind::TakeCover), &dev()).unwrap();
    let rounded = |m: Vec<(Vec<usize>, Vec<f32>)>| -> Vec<(Vec<usize>, Vec<f32>)> {
        m.into_iter()
            .map(|(s, v)| {
                (
                    s,
                    v.into_iter()
                        .map(|x| half::f16::from_f32(x).to_f32())
                        .collect(),
                )
            })
            .collect()
    };
    let vae = model.vae.as_ref().unwrap();
    assert_eq!(
        collect_params(loaded.vae.as_ref().unwrap()),
        rounded(collect_params(vae))
    );
    assert_eq!(
        collect_params(loaded.mdrnn.as_ref().unwrap()),
        rounded(collect_params(model.mdrnn.as_ref().unwrap()))
    );
    assert_eq!(
        loaded.controller, model.controller,
        "C is always stored in f32"
    );
    // The reconstruction barely moves: well under one 8-bit grey level on average.
    let frames: Vec<Frame> = (0..4).map(synthetic_frame).collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let x = vae::frames_to_tensor::<B>(&refs, &dev());
    let recon = |v: &vae::ConvVae<B>| v.decode(v.encode(x.clone()).0);
    let diff = (recon(vae) - recon(loaded.vae.as_ref().unwrap())).abs();
    let max = diff.clone().max().into_scalar().elem::<f32>();
    let mean = diff.mean().into_scalar().elem::<f32>();
    println!("f16 round trip: reconstruction max diff {max:.2e}, mean {mean:.2e}");
    assert!(
        max < 2.0 / 255.0 && mean < 0.2 / 255.0,
        "max {max}, mean {mean}"
    );
}

#[test]
fn bundle_with_v_only_loads_v_and_says_m_is_missing() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let spec = small_spec(EnvKind::CarRacing);
    let mut model = WorldModel::<B>::empty(spec);
    model.vae = Some(spec.vae_config().init(&dev()));
    let path = scratch.path().join("v-only.bin");
    bundle::save(&model, &path, Precision::F16).unwrap();
    let vae = bundle::load_vae::<B>(&path, &Expect::env(EnvKind::CarRacing), &dev()).unwrap();
    assert_eq!(vae.z_size(), 32);
    let err = bundle::load_mdrnn::<B>(&path, &Expect::env(EnvKind::CarRacing), &dev()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            BundleError::MissingPart {
                part: Part::Mdrnn,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("v-only.bin") && msg.contains("M (mdrnn)") && msg.contains("holds: V"),
        "{msg}"
    );
}

fn expect_err(path: &Path, expect: &Expect) -> (BundleError, String) {
    let err = bundle::load::<B>(path, expect, &dev()).expect_err("loading a bad file must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error must name the file: {msg}"
    );
    (err, msg)
}

#[test]
fn bad_model_files_give_errors_naming_the_file_and_the_mismatch() {
    let (scratch, spec, model) = filled_in_scratch(EnvKind::CarRacing);
    let good = bundle::to_bytes(&model, Precision::F16);
    let expect = Expect::spec(&spec);

    let missing = scratch.path().join("does-not-exist.bin");
    let (err, _) = expect_err(&missing, &expect);
    assert!(matches!(err, BundleError::NotFound { .. }));

    let truncated = scratch.path().join("truncated.bin");
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    let (err, msg) = expect_err(&truncated, &expect);
    assert!(matches!(err, BundleError::Truncated { .. }), "{msg}");
    std::fs::write(&truncated, &good[..10]).unwrap();
    assert!(matches!(
        expect_err(&truncated, &expect).0,
        BundleError::Truncated { .. }
    ));
    std::fs::write(&truncated, &good[..200]).unwrap();
    assert!(matches!(
        expect_err(&truncated, &expect).0,
        BundleError::Truncated { .. }
    ));

    let garbage = scratch.path().join("garbage.bin");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    std::fs::write(
        &garbage,
        (0..5000).map(|_| rng.random::<u8>()).collect::<Vec<_>>(),
    )
    .unwrap();
    let (err, msg) = expect_err(&garbage, &expect);
    assert!(matches!(err, BundleError::NotABundle { .. }), "{msg}");
    std::fs::write(&garbage, b"").unwrap();
    assert!(matches!(
        expect_err(&garbage, &expect).0,
        BundleError::NotABundle { .. }
    ));

    let flipped = scratch.path().join("flipped.bin");
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n - 7] ^= 0x55;
    std::fs::write(&flipped, &bytes).unwrap();
    let (err, msg) = expect_err(&flipped, &expect);
    assert!(
        matches!(err, BundleError::Corrupt { .. }) && msg.contains("checksum"),
        "{msg}"
    );

    let bad_header = scratch.path().join("bad-header.bin");
    let mut bytes = good.clone();
    bytes[16] = b'#';
    std::fs::write(&bad_header, &bytes).unwrap();
    assert!(matches!(
        expect_err(&bad_header, &expect).0,
        BundleError::Header { .. }
    ));

    let version = scratch.path().join("version.bin");
    let mut bytes = good.clone();
    bytes[8] = 99;
    std::fs::write(&version, &bytes).unwrap();
    let (err, msg) = expect_err(&version, &expect);
    assert!(
        matches!(err, BundleError::Version { found: 99, .. }) && msg.contains("99"),
        "{msg}"
    );

    let car = scratch.path().join("car.bin");
    std::fs::write(&car, &good).unwrap();
    let wrong_z = Expect {
        z_size: Some(64),
        ..expect
    };
    let (_, msg) = expect_err(&car, &wrong_z);
    assert!(
        msg.contains("z size") && msg.contains("64") && msg.contains("32"),
        "{msg}"
    );
    let (_, msg) = expect_err(&car, &Expect::env(EnvKind::TakeCover));
    assert!(
        msg.contains("env") && msg.contains("take-cover") && msg.contains("car-racing"),
        "{msg}"
    );
    assert!(
        bundle::load::<B>(&car, &expect, &dev()).is_ok(),
        "the intact file loads"
    );
}

// ---------------------------------------------------------------- latent statistics and map

/// `n` rows of z (`z_size` wide) from `seed`, each dim on its own scale, steps counted from 0.
fn random_rows(z_size: usize, n: usize, seed: u64) -> LatentRows {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = LatentRows::new(z_size);
    for t in 0..n {
        let z: Vec<f32> = (0..z_size)
            .map(|d| (d as f32 + 1.0) * rng.random_range(-1.0..1.0))
            .collect();
        rows.push(&z, t as u32, rng.random_range(-1.0..1.0), t % 7 == 6)
            .unwrap();
    }
    rows
}

#[test]
fn latent_stats_give_each_dimension_its_mean_sd_and_percentiles() {
    // Dim 0 runs 0..=100 (shuffled), dim 1 is constant.
    let mut values: Vec<f32> = (0..=100).map(|v| v as f32).collect();
    values.reverse();
    values.swap(3, 70);
    let mut rows = LatentRows::new(2);
    let rewards = vec![0.5; values.len()];
    let dones = vec![0u8; values.len()];
    let z: Vec<f32> = values.iter().flat_map(|&v| [v, 5.0]).collect();
    rows.push_episode(&z, &rewards, &dones).unwrap();
    let stats = LatentStats::compute(&rows).unwrap();
    assert_eq!(stats.frames, 101);
    let d0 = &stats.dims[0];
    assert_eq!((d0.mean, d0.p1, d0.p99), (50.0, 1.0, 99.0));
    // The population sd of 0..=100: sqrt((101^2 - 1) / 12).
    assert!((d0.sd - 850f32.sqrt()).abs() < 1e-4, "{d0:?}");
    assert_eq!(
        stats.dims[1],
        DimStats {
            mean: 5.0,
            sd: 0.0,
            p1: 5.0,
            p99: 5.0
        }
    );

    // Bad rows are refused, and no rows is an error, not a panic.
    assert_eq!(
        rows.push(&[1.0], 0, 0.0, false),
        Err(AtlasError::RowSize {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        rows.push(&[1.0, f32::NAN], 0, 0.0, false),
        Err(AtlasError::NonFinite)
    );
    assert!(matches!(
        rows.push_episode(&[1.0, 2.0, 3.0, 4.0], &[0.0], &[0, 0]),
        Err(AtlasError::EpisodeSize { .. })
    ));
    assert_eq!(
        LatentStats::compute(&LatentRows::new(2)),
        Err(AtlasError::Empty)
    );
}

#[test]
fn the_map_of_points_on_a_line_has_the_line_as_its_first_axis() {
    let center = [1.0f32, -2.0, 0.5, 3.0];
    let direction = [-0.6f32, 0.0, 0.8, 0.0];
    let line = |sign: f32| {
        let mut rows = LatentRows::new(4);
        for (i, t) in (-50..=50).enumerate() {
            let t = t as f32 * 0.1;
            let z: Vec<f32> = center
                .iter()
                .zip(direction)
                .map(|(c, d)| c + sign * t * d)
                .collect();
            rows.push(&z, i as u32, 0.0, false).unwrap();
        }
        rows
    };
    let map = LatentMap::compute(&line(1.0), 3000, 0).unwrap();
    for (c, e) in map.center.iter().zip(center) {
        assert!((c - e).abs() < 1e-5, "{:?}", map.center);
    }
    // The line, signed so that its largest component (0.8) is positive, explaining it all.
    for (a, d) in map.axes[0].iter().zip(direction) {
        assert!((a - d).abs() < 1e-5, "{:?}", map.axes);
    }
    assert!((map.variance_explained[0] - 1.0).abs() < 1e-5, "{map:?}");
    assert!(map.variance_explained[1].abs() < 1e-5, "{map:?}");
    let norm: f32 = map.axes[1].iter().map(|a| a * a).sum();
    let dot: f32 = map.axes[0]
        .iter()
        .zip(&map.axes[1])
        .map(|(a, b)| a * b)
        .sum();
    assert!((norm - 1.0).abs() < 1e-5 && dot.abs() < 1e-5, "{map:?}");
    // Every row fits (101 <= 3000), in data order, on the line at its t.
    assert_eq!(map.points.len(), 101);
    for (i, p) in map.points.iter().enumerate() {
        assert_eq!(p.step, i as u32);
        let t = (i as f32 - 50.0) * 0.1;
        assert!((p.xy[0] - t).abs() < 1e-4 && p.xy[1].abs() < 1e-4, "{p:?}");
        assert_eq!(p.xy, map.project(&p.z));
    }
    // The same line walked the other way gives the same axes: the sign does not flip.
    let reversed = LatentMap::compute(&line(-1.0), 3000, 0).unwrap();
    for (a, b) in map.axes[0].iter().zip(&reversed.axes[0]) {
        assert!((a - b).abs() < 1e-5);
    }

    assert_eq!(
        LatentMap::compute(&line(1.0), 0, 0),
        Err(AtlasError::NoPoints)
    );
    assert_eq!(
        LatentMap::compute(&LatentRows::new(1), 10, 0),
        Err(AtlasError::Empty)
    );
}

#[test]
fn the_map_samples_its_points_by_seed_in_data_order() {
    let rows = random_rows(8, 500, 3);
    let a = LatentMap::compute(&rows, 40, 7).unwrap();
    assert_eq!(a, LatentMap::compute(&rows, 40, 7).unwrap(), "same seed");
    let b = LatentMap::compute(&rows, 40, 8).unwrap();
    assert_eq!((a.center.clone(), a.axes.clone()), (b.center, b.axes));
    assert_ne!(a.points, b.points, "another seed draws other frames");
    assert_eq!(a.points.len(), 40);
    let steps: Vec<u32> = a.points.iter().map(|p| p.step).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    for p in &a.points {
        assert_eq!(p.z, rows.z(p.step as usize));
        assert_eq!(p.done, p.step % 7 == 6);
    }
    // The widest dim (8) leads the first axis.
    let lead = a.axes[0]
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
        .unwrap();
    assert_eq!(lead.0, 7, "{:?}", a.axes[0]);
    assert!(*lead.1 > 0.0);
    assert!(a.variance_explained[0] >= a.variance_explained[1]);
    assert!(a.variance_explained.iter().sum::<f32>() < 1.0);
}

/// A small model with latent statistics and a map of `z_size` dims.
fn with_atlas(mut model: WorldModel<B>) -> WorldModel<B> {
    let rows = random_rows(model.spec.z_size, 300, 4);
    model.latent_stats = Some(LatentStats::compute(&rows).unwrap());
    model.latent_map = Some(LatentMap::compute(&rows, 100, 0).unwrap());
    model
}

#[test]
fn bundle_round_trip_keeps_the_latent_statistics_and_map() {
    let (scratch, spec, model) = filled_in_scratch(EnvKind::CarRacing);
    let model = with_atlas(model);
    let path = scratch.path().join("atlas.bin");
    bundle::save(&model, &path, Precision::F16).unwrap();
    let loaded = bundle::load::<B>(&path, &Expect::spec(&spec), &dev()).unwrap();
    assert_eq!(loaded.latent_stats, model.latent_stats);
    assert_eq!(
        loaded.latent_map, model.latent_map,
        "the map is stored in f32"
    );
    assert_eq!(loaded.controller, model.controller);
    let header = bundle::read_header(&path).unwrap();
    assert_eq!(header.latent_stats, model.latent_stats);
    let entry = header
        .parts
        .iter()
        .find(|p| p.part == Part::LatentMap)
        .expect("a map part");
    assert_eq!(entry.precision, Precision::F32);
    assert_eq!(entry.shapes[3], vec![100, 32]);
    // Saving what was loaded gives the same bytes.
    assert_eq!(
        bundle::to_bytes(&loaded, Precision::F16),
        std::fs::read(&path).unwrap()
    );
    // The header's JSON names them as the app and `inspect` read them.
    let bytes = std::fs::read(&path).unwrap();
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[16..16 + json_len]).unwrap();
    assert_eq!(json["latent_stats"]["dims"].as_array().unwrap().len(), 32);
    assert!(json["latent_stats"]["dims"][0]["p99"].is_number());
    assert_eq!(json["parts"][3]["part"], "latent_map");
}

/// A bundle without latent statistics or a map has exactly the bytes it had before they existed:
/// the shipped bundles as first exported, less their latent parts, are pinned by size and FNV-1a.
#[test]
fn a_bundle_without_latent_parts_or_extra_cs_keeps_the_old_bytes() {
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    for (env, len, hash) in [
        (EnvKind::CarRacing, 9_550_206, 0x0a74_76bf_22cf_c11c_u64),
        (EnvKind::TakeCover, 12_261_044, 0xafe4_0d18_c7e0_f84b),
    ] {
        let path = bundle::default_path(Path::new("models"), env);
        let mut model = bundle::load::<B>(&path, &Expect::env(env), &dev()).unwrap();
        model.latent_stats = None;
        model.latent_map = None;
        // The extra Cs came later still, and leave no trace when taken out too.
        model.extra_controllers.clear();
        let bytes = bundle::to_bytes(&model, Precision::F16);
        assert_eq!((bytes.len(), fnv1a(&bytes)), (len, hash), "{env}");
        let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let header = String::from_utf8_lossy(&bytes[16..16 + json_len]);
        assert!(!header.contains("latent"), "{env}");
    }
}

#[test]
fn a_corrupt_or_mismatched_latent_map_is_a_clear_error() {
    let (scratch, spec, model) = filled_in_scratch(EnvKind::TakeCover);
    let good = bundle::to_bytes(&with_atlas(model.clone()), Precision::F16);
    let expect = Expect::spec(&spec);

    // The map is the last part: a flipped byte there fails its checksum.
    let flipped = scratch.path().join("flipped.bin");
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let (err, msg) = expect_err(&flipped, &expect);
    assert!(
        matches!(
            err,
            BundleError::Corrupt {
                part: Part::LatentMap,
                ..
            }
        ) && msg.contains("checksum")
            && msg.contains("latent map"),
        "{msg}"
    );

    let truncated = scratch.path().join("truncated.bin");
    std::fs::write(&truncated, &good[..n - 3]).unwrap();
    let (err, msg) = expect_err(&truncated, &expect);
    assert!(matches!(err, BundleError::Truncated { .. }), "{msg}");

    // Statistics of another z size than the model's.
    let mut other = with_atlas(model.clone());
    other.latent_stats.as_mut().unwrap().dims.truncate(3);
    let stats = scratch.path().join("stats.bin");
    bundle::save(&other, &stats, Precision::F16).unwrap();
    let (err, msg) = expect_err(&stats, &expect);
    assert!(
        matches!(err, BundleError::Header { .. }) && msg.contains("latent_stats"),
        "{msg}"
    );

    // A map of another z size than the model's: its shapes say so.
    let mut other = model;
    let rows = random_rows(5, 50, 1);
    other.latent_map = Some(LatentMap::compute(&rows, 10, 0).unwrap());
    let map = scratch.path().join("map.bin");
    bundle::save(&other, &map, Precision::F16).unwrap();
    let (err, msg) = expect_err(&map, &expect);
    assert!(
        matches!(
            err,
            BundleError::Corrupt {
                part: Part::LatentMap,
                ..
            }
        ) && msg.contains("center"),
        "{msg}"
    );

    // Tensors that cannot be a map are refused by name.
    let good_map = LatentMap::compute(&random_rows(4, 30, 2), 10, 0).unwrap();
    let mut tensors = good_map.to_tensors();
    assert_eq!(LatentMap::from_tensors(tensors.clone(), 4), Ok(good_map));
    tensors[7].1[0] = 0.5;
    let err = LatentMap::from_tensors(tensors.clone(), 4).unwrap_err();
    assert!(err.to_string().contains("done"), "{err}");
    tensors.pop();
    let err = LatentMap::from_tensors(tensors, 4).unwrap_err();
    assert!(err.to_string().contains("8 tensors"), "{err}");
}

// ---------------------------------------------------------------- backends

#[test]
fn backend_selection_honours_overrides_and_never_panics() {
    let sel = backend::select(Some("flex"));
    assert!(matches!(sel.backend, SelectedBackend::Flex(_)));
    assert!(sel.backend.describe().starts_with("flex"));
    let sel = backend::select(Some("bogus"));
    assert!(sel.note.unwrap().contains("bogus"));
    let auto = backend::select(None);
    println!(
        "auto backend: {} (note: {:?})",
        auto.backend.describe(),
        auto.note
    );
    assert_eq!("wgpu".parse::<BackendRequest>(), Ok(BackendRequest::Wgpu));
    let n = dreamplay::with_backend!(&auto.backend, |Bk, device| {
        Tensor::<Bk, 1>::from_floats([1.0, 2.0], &device)
            .sum()
            .into_scalar()
            .elem::<f32>()
    });
    assert_eq!(n, 3.0);
}

/// A wgpu device and its adapter's name, or `None` (with a SKIPPED line naming `test`) where this
/// machine has none. Under CI a missing adapter fails: `.ci/setup` installs Mesa's lavapipe.
fn wgpu_or_skip(test: &str) -> Option<(WgpuDevice, String)> {
    let adapters = backend::probe_adapters();
    let Some(adapter) = adapters.first() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no wgpu adapter under CI: .ci/setup installs mesa-vulkan-drivers for this test"
        );
        println!("SKIPPED {test}: no wgpu adapter on this machine");
        return None;
    };
    let mut notes = Vec::new();
    match backend::select_request(BackendRequest::Wgpu, &mut notes) {
        SelectedBackend::Wgpu { device, .. } => Some((device, adapter.to_string())),
        _ => {
            println!("SKIPPED {test}: wgpu on {adapter} failed: {notes:?}");
            None
        }
    }
}

/// The largest absolute difference between two equally long slices.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// flex and wgpu agree on the same weights, loaded from one file. Tiny (batch-1 decode) because
/// CI's wgpu is Mesa's software Vulkan.
#[test]
fn flex_and_wgpu_agree_on_the_same_weights() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let Some((device, adapter)) = wgpu_or_skip("flex_and_wgpu_agree_on_the_same_weights") else {
        return;
    };
    let spec = small_spec(EnvKind::CarRacing);
    let path = scratch.path().join("cross-backend.bin");
    bundle::save(&filled_model(spec), &path, Precision::F16).unwrap();
    let on_flex = bundle::load::<B>(&path, &Expect::spec(&spec), &dev()).unwrap();
    let on_wgpu = bundle::load::<WgpuBackend>(&path, &Expect::spec(&spec), &device).unwrap();
    assert_eq!(
        collect_params(on_flex.vae.as_ref().unwrap()),
        collect_params(on_wgpu.vae.as_ref().unwrap())
    );
    let z: Vec<f32> = (0..32).map(|i| ((i as f32) * 0.37).sin()).collect();
    let (flex_vae, wgpu_vae) = (on_flex.vae.unwrap(), on_wgpu.vae.unwrap());
    let on = |t: Tensor<B, 4>| t.into_data().to_vec::<f32>().unwrap();
    let on_gpu =
        |t: Tensor<WgpuBackend, 4>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let z_flex = || Tensor::<B, 2>::from_data(TensorData::new(z.clone(), [1, 32]), &dev());
    let z_wgpu =
        || Tensor::<WgpuBackend, 2>::from_data(TensorData::new(z.clone(), [1, 32]), &device);
    // V's decoder (training's form) and the folded one the dream draws with.
    let pairs = [
        (
            "decode",
            on(flex_vae.decode(z_flex())),
            on_gpu(wgpu_vae.decode(z_wgpu())),
        ),
        (
            "folded decode",
            on(flex_vae.frame_decoder().decode(z_flex())),
            on_gpu(wgpu_vae.frame_decoder().decode(z_wgpu())),
        ),
    ];
    for (form, a, b) in pairs {
        let max = max_diff(&a, &b);
        println!("flex vs wgpu ({adapter}) {form} max diff {max:.2e}");
        assert!(max < 1e-3, "flex and wgpu disagree by {max} on {form}");
    }
}

/// The flow dream on flex and on wgpu, from one f16 file, the same start and the same draws:
/// the same latents (to float rounding) and the same frames (to an 8-bit level or two). A small
/// model with every weight drawn at random (a fresh one's zero-started convs would hide the UNet).
#[test]
fn flex_and_wgpu_agree_on_the_flow_dream() {
    use dreamplay::dream::FlowDreamBatch;
    use dreamplay::model::flow::{FlowModel, FlowSpec, file as flow_file};

    let scratch = tempfile::tempdir().expect("scratch folder");
    let Some((device, adapter)) = wgpu_or_skip("flex_and_wgpu_agree_on_the_flow_dream") else {
        return;
    };
    let spec = FlowSpec {
        autoencoder_widths: [8, 8],
        unet_widths: [8, 8, 16],
        cond_size: 16,
        ..FlowSpec::default_for(EnvKind::TakeCover)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut randomise = |tensors: bundle::HostTensors| -> bundle::HostTensors {
        tensors
            .into_iter()
            .map(|(shape, values)| {
                let values = values.iter().map(|_| rng.random_range(-0.3..0.3)).collect();
                (shape, values)
            })
            .collect()
    };
    let path = scratch.path().join("flow-model.bin");
    let part = Part::Dynamics;
    let mut model = FlowModel::<B>::empty(spec);
    let ae = spec.autoencoder_config().init::<B>(&dev());
    let dynamics = spec.dynamics_config().init::<B>(&dev());
    let heads = spec.end_heads_config().init::<B>(&dev());
    model.autoencoder =
        Some(load_params(&path, part, ae.clone(), randomise(collect_params(&ae))).unwrap());
    model.dynamics = Some(
        load_params(
            &path,
            part,
            dynamics.clone(),
            randomise(collect_params(&dynamics)),
        )
        .unwrap(),
    );
    model.end_heads = Some(
        load_params(
            &path,
            part,
            heads.clone(),
            randomise(collect_params(&heads)),
        )
        .unwrap(),
    );
    model.latent_stats = Some(dreamplay::model::flow::LatentStats {
        mean: vec![0.1, -0.2, 0.0, 0.3],
        std: vec![0.5, 1.0, 2.0, 0.8],
    });
    flow_file::save(&model, &path, Precision::F16).unwrap();

    let start = Frame::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
    });
    let mut flex = FlowDreamBatch::new(
        flow_file::load::<B>(&path, None, &dev()).unwrap(),
        1,
        &dev(),
    )
    .unwrap();
    let mut wgpu = FlowDreamBatch::new(
        flow_file::load::<WgpuBackend>(&path, None, &device).unwrap(),
        1,
        &device,
    )
    .unwrap();
    flex.reset_from_frames(0, &[&start], &[]).unwrap();
    wgpu.reset_from_frames(0, &[&start], &[]).unwrap();
    let max = max_diff(flex.latent(0), wgpu.latent(0));
    println!("flex vs wgpu ({adapter}) flow encode max diff {max:.2e}");
    assert!(max < 1e-3, "the autoencoder's encodings differ by {max}");
    let (mut flex_rng, mut wgpu_rng) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
    for step in 0..3 {
        let a = flex.step(&[1.0], &mut flex_rng).unwrap().remove(0);
        let b = wgpu.step(&[1.0], &mut wgpu_rng).unwrap().remove(0);
        let max = max_diff(&a.z, &b.z);
        println!("flex vs wgpu ({adapter}) flow step {step} max diff {max:.2e}");
        assert!(
            max < 2e-3,
            "step {step}: the flow dreams' latents differ by {max}"
        );
        assert!(
            (a.reward - b.reward).abs() < 1e-3,
            "step {step}: rewards {} and {}",
            a.reward,
            b.reward
        );
    }
    let (a, b) = (flex.frame(0).unwrap(), wgpu.frame(0).unwrap());
    let levels = a
        .pixels()
        .zip(b.pixels())
        .flat_map(|(p, q)| (0..3).map(move |c| p[c].abs_diff(q[c])))
        .max()
        .unwrap_or(0);
    assert!(
        levels <= 2,
        "the flow dreams' frames differ by {levels} levels"
    );
}

/// V's convs on flex go through `gemm_conv` (batch-wide im2col + GEMM, its own backward). Every
/// layer shape of V, forward and all three gradients, against burn's own conv ops.
#[test]
fn gemm_convs_match_burns_forward_and_gradients() {
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use dreamplay::model::gemm_conv;

    let device = dev();
    AD::seed(&device, 7);
    // Largest difference relative to the largest magnitude.
    fn rel<const D: usize>(ours: Tensor<B, D>, theirs: Tensor<B, D>) -> f32 {
        let scale = theirs
            .clone()
            .abs()
            .max()
            .into_scalar()
            .elem::<f32>()
            .max(1e-6);
        (ours - theirs).abs().max().into_scalar().elem::<f32>() / scale
    }
    // (transposed, channels in, channels out, kernel, stride, input size): V's encoder, then its
    // decoder, each followed by strides V does not use (the path covers any).
    #[rustfmt::skip]
    let layers = [
        (false, 3, 32, 4, 2, 64), (false, 32, 64, 4, 2, 31), (false, 64, 128, 4, 2, 14),
        (false, 128, 256, 4, 2, 6), (false, 3, 5, 3, 1, 9), (false, 4, 3, 4, 3, 14),
        (true, 64, 128, 5, 2, 1), (true, 128, 64, 5, 2, 5), (true, 64, 32, 6, 2, 13),
        (true, 32, 3, 6, 2, 30), (true, 3, 5, 3, 1, 9), (true, 4, 3, 4, 3, 5),
    ];
    for (transposed, c_in, c_out, k, stride, size) in layers {
        let x = Tensor::<AD, 4>::random(
            [2, c_in, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        // One layer of each kind, so that both runs use the same weights (the backend's seed is
        // shared with the tests running beside this one).
        let deconv = ConvTranspose2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .init::<AD>(&device);
        let conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .init::<AD>(&device);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = match (transposed, ours) {
                (true, true) => gemm_conv::try_conv_transpose2d(&deconv, x.clone())
                    .expect("V's transposed convs are on the GEMM path"),
                (true, false) => deconv.forward(x.clone()),
                (false, true) => {
                    gemm_conv::try_conv2d(&conv, x.clone()).expect("V's convs are on the GEMM path")
                }
                (false, false) => conv.forward(x.clone()),
            };
            let (weight, bias) = if transposed {
                (deconv.weight.clone(), deconv.bias.clone().unwrap())
            } else {
                (conv.weight.clone(), conv.bias.clone().unwrap())
            };
            // A loss that weights every output differently, so every gradient entry is exercised.
            let dims = y.dims();
            let n = dims.iter().product::<usize>();
            let ramp = Tensor::<AD, 1, Int>::arange(0..n as i64, &device)
                .float()
                .reshape(dims)
                .div_scalar(n as f32)
                .sin();
            let grads = (y.clone() * ramp).sum().backward();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                weight.grad(&grads).unwrap(),
                bias.grad(&grads).unwrap(),
            )
        };
        let ours = run(true);
        let theirs = run(false);
        let what = format!(
            "{} {c_in}->{c_out} k{k} s{stride} on {size}x{size}",
            if transposed { "deconv" } else { "conv" }
        );
        for (name, err) in [
            ("output", rel(ours.0, theirs.0)),
            ("x grad", rel(ours.1, theirs.1)),
            ("weight grad", rel(ours.2, theirs.2)),
        ] {
            assert!(err < 1e-5, "{what}: {name} differs by {err} (relative)");
        }
        let bias_err = rel(ours.3, theirs.3);
        assert!(
            bias_err < 1e-5,
            "{what}: bias grad differs by {bias_err} (relative)"
        );
    }
}

#[test]
fn fused_adam_steps_as_burns_adam_and_shares_its_state_file() {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::AdamConfig;
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    use dreamplay::model::adam;

    let device = dev();
    AD::seed(&device, 3);
    // More weights than one parallel chunk (65,536), so the chunk seams are exercised.
    let model = LinearConfig::new(300, 250).init::<AD>(&device);
    let _ = (model.weight.val(), model.bias.as_ref().map(|b| b.val())); // draw the weights once
    let x = Tensor::<AD, 2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
    let grads = |m: &Linear<AD>| {
        let loss = m.forward(x.clone()).powi_scalar(2).mean();
        GradientsParams::from_grads(loss.backward(), m)
    };
    let weights = |m: &Linear<AD>| m.weight.val().inner().into_data().to_vec::<f32>().unwrap();

    let mut theirs = AdamConfig::new().init::<AD, Linear<AD>>();
    let mut ours = adam::adam::<AD, Linear<AD>>(None);
    let (mut a, mut b) = (model.clone(), model);
    for step in 0..3 {
        a = theirs.step(1e-2, a.clone(), grads(&a));
        b = ours.step(1e-2, b.clone(), grads(&b));
        assert_eq!(weights(&a), weights(&b), "step {step}: fused Adam differs");
    }
    // burn's Adam state, saved as the checkpoints save it, loads into the fused one and goes on
    // as burn's would.
    let bytes = BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(theirs.to_record(), ())
        .unwrap();
    let record = BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes, &device)
        .unwrap();
    let mut resumed = adam::adam::<AD, Linear<AD>>(None).load_record(record);
    let next_theirs = theirs.step(1e-2, a.clone(), grads(&a));
    let next_ours = resumed.step(1e-2, a.clone(), grads(&a));
    assert_eq!(weights(&next_theirs), weights(&next_ours));
    assert_ne!(
        weights(&next_ours),
        weights(&a),
        "the step must move the weights"
    );
}
