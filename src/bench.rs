//! Timings for `dreamplay bench model`: V training throughput, dream latency and batched dream
//! throughput. Use an optimised build; the first wgpu run includes shader compilation and autotune
//! (the warm-up steps absorb most of it).

use std::time::Instant;

use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dream::{Dream, DreamBatch, FlowDreamBatch};
use crate::envs::EnvKind;
use crate::model::backend::SelectedBackend;
use crate::model::bundle::ModelSpec;
use crate::model::flow::shortcut::Sampling;
use crate::model::flow::{FlowModel, FlowSpec, LatentStats};
use crate::model::vae::vae_loss;
use crate::train::flow::dynamics::{DynamicsAndHeads, RowTensors, train_step};

/// How much to run.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    pub env: EnvKind,
    /// Timed V training steps at batch 32.
    pub train_steps: usize,
    /// Timed dream steps at batch 1.
    pub dream_steps: usize,
    /// Dreams stepped together for the throughput figure.
    pub batch_dreams: usize,
    /// Timed steps of the big batch.
    pub batch_steps: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            env: EnvKind::CarRacing,
            train_steps: 5,
            dream_steps: 100,
            batch_dreams: 1024,
            batch_steps: 20,
        }
    }
}

/// One decode timed in each of V's equivalent decoder forms.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeForms {
    /// [`FrameDecoder`](crate::model::vae::FrameDecoder): dense layer and dec1 folded into one matrix (what the dream uses).
    pub folded: f64,
    /// [`ConvVae::decode`](crate::model::vae::ConvVae::decode): dec1 as a matmul (what training uses).
    pub matmul: f64,
    /// [`ConvVae::decode_reference`](crate::model::vae::ConvVae::decode_reference): dec1 as a transposed conv.
    pub conv: f64,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub backend: String,
    /// V training images per second at batch 32.
    pub vae_train_img_per_s: f64,
    /// Milliseconds for one M step + one V decode at batch 1.
    pub dream_step_ms: f64,
    /// Milliseconds for one M step alone at batch 1 (no decode).
    pub m_step_ms: f64,
    /// Milliseconds for one V decode at batch 1, in its three equivalent forms.
    pub decode_ms: DecodeForms,
    /// Dream steps per second (M only, no decode) at `batch_dreams`.
    pub batched_steps_per_s: f64,
    /// The flow model's autoencoder: training images per second at batch 32.
    pub autoencoder_train_img_per_s: f64,
    /// The flow model's dynamics and heads: training samples per second at batch 32.
    pub flow_train_samples_per_s: f64,
    /// Milliseconds per flow-dream frame at batch 1 (heads, sampling, decode), by sampling steps.
    pub flow_frame_ms: Vec<(usize, f64)>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(
            f,
            "V training, batch 32:           {:8.1} img/s",
            self.vae_train_img_per_s
        )?;
        writeln!(
            f,
            "dream step, batch 1 (M + V):    {:8.2} ms",
            self.dream_step_ms
        )?;
        writeln!(
            f,
            "M step alone, batch 1:          {:8.2} ms",
            self.m_step_ms
        )?;
        let d = self.decode_ms;
        writeln!(
            f,
            "V decode, batch 1:              {:8.2} ms folded (dec1 as matmul {:.2}, as conv {:.2})",
            d.folded, d.matmul, d.conv
        )?;
        writeln!(
            f,
            "batched dream (M only):         {:8.0} dream-steps/s",
            self.batched_steps_per_s
        )?;
        writeln!(
            f,
            "autoencoder training, batch 32: {:8.1} img/s",
            self.autoencoder_train_img_per_s
        )?;
        write!(
            f,
            "flow training, batch 32:        {:8.1} samples/s",
            self.flow_train_samples_per_s
        )?;
        for &(steps, ms) in &self.flow_frame_ms {
            let label = format!(
                "flow dream frame, {steps} step{}:",
                if steps == 1 { "" } else { "s" }
            );
            write!(f, "\n{label:<32}{ms:8.2} ms")?;
        }
        Ok(())
    }
}

/// Runs every timing on `selected` (V training runs under `Autodiff` of the same backend).
pub fn run(selected: &SelectedBackend, config: &BenchConfig) -> BenchReport {
    let mut report = crate::with_backend!(selected, |Bk, device| run_on::<Bk>(&device, config));
    report.backend = selected.describe();
    report
}

/// Every timing on backend `B`.
pub fn run_on<B: Backend>(device: &B::Device, config: &BenchConfig) -> BenchReport {
    let spec = ModelSpec::paper(config.env);
    B::seed(device, 0);
    let vae_train_img_per_s = crate::model::backend::on_cpu_workers(|| {
        bench_vae_training::<B>(device, &spec, config.train_steps)
    });
    let (dream_step_ms, m_step_ms) = bench_dream_latency::<B>(device, &spec, config.dream_steps);
    let decode_ms = bench_decode_forms::<B>(device, &spec, 1, config.dream_steps);
    let batched_steps_per_s =
        bench_batched_dream::<B>(device, &spec, config.batch_dreams, config.batch_steps);
    let flow_spec = FlowSpec::default_for(config.env);
    let (autoencoder_train_img_per_s, flow_train_samples_per_s) =
        crate::model::backend::on_cpu_workers(|| {
            (
                bench_autoencoder_training::<B>(device, &flow_spec, config.train_steps),
                bench_flow_training::<B>(device, &flow_spec, config.train_steps),
            )
        });
    let flow_frame_ms = bench_flow_frame::<B>(device, &flow_spec, &[1, 2, 4], config.dream_steps);
    BenchReport {
        backend: String::new(),
        vae_train_img_per_s,
        dream_step_ms,
        m_step_ms,
        decode_ms,
        batched_steps_per_s,
        autoencoder_train_img_per_s,
        flow_train_samples_per_s,
        flow_frame_ms,
    }
}

/// Times `step` `steps` times after one warm-up call; returns the seconds per call.
fn seconds_per_step(steps: usize, mut step: impl FnMut()) -> f64 {
    step();
    let start = Instant::now();
    for _ in 0..steps {
        step();
    }
    start.elapsed().as_secs_f64() / steps.max(1) as f64
}

/// The flow model's autoencoder: training images/s at batch 32 (Adam, latent noise 0.05).
pub fn bench_autoencoder_training<B: Backend>(
    device: &B::Device,
    spec: &FlowSpec,
    steps: usize,
) -> f64 {
    const BATCH: usize = 32;
    let mut model = Some(spec.autoencoder_config().init::<Autodiff<B>>(device));
    let mut optim = crate::model::adam::adam(None);
    let x = Tensor::<Autodiff<B>, 4>::random(
        [BATCH, 3, 64, 64],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let seconds = seconds_per_step(steps, || {
        let ae = model.take().expect("the model between steps");
        let eps = Tensor::random(
            [
                BATCH,
                spec.latent_channels,
                spec.latent_side,
                spec.latent_side,
            ],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let (loss, _) = ae.training_loss(x.clone(), eps, 0.05, 1.0);
        let grads = GradientsParams::from_grads(loss.backward(), &ae);
        model = Some(optim.step(1e-3, ae, grads));
    });
    BATCH as f64 / seconds
}

/// The flow model's dynamics and heads: training samples/s at batch 32 with 8 shortcut rows.
pub fn bench_flow_training<B: Backend>(device: &B::Device, spec: &FlowSpec, steps: usize) -> f64 {
    const BATCH: usize = 32;
    let mut model = Some(DynamicsAndHeads {
        dynamics: spec.dynamics_config().init::<Autodiff<B>>(device),
        heads: spec.end_heads_config().init::<Autodiff<B>>(device),
    });
    let mut optim = crate::model::adam::adam(None);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let seconds = seconds_per_step(steps, || {
        let rows = RowTensors::random(spec, BATCH, &mut rng, device);
        let m = model.take().expect("the model between steps");
        let (m, _) = train_step(m, &mut optim, rows, (BATCH / 4, 0.3), 3e-4, &mut rng);
        model = Some(m);
    });
    BATCH as f64 / seconds
}

/// Milliseconds per flow-dream frame at batch 1 (heads, sampling at each of `steps`, decode) on
/// a freshly initialised model of `spec`'s sizes.
pub fn bench_flow_frame<B: Backend>(
    device: &B::Device,
    spec: &FlowSpec,
    steps: &[usize],
    reps: usize,
) -> Vec<(usize, f64)> {
    let mut model = FlowModel::<B>::empty(*spec);
    model.autoencoder = Some(spec.autoencoder_config().init(device));
    model.dynamics = Some(spec.dynamics_config().init(device));
    model.end_heads = Some(spec.end_heads_config().init(device));
    model.latent_stats = Some(LatentStats {
        mean: vec![0.0; spec.latent_channels],
        std: vec![1.0; spec.latent_channels],
    });
    let Ok(mut dream) = FlowDreamBatch::new(model, 1, device) else {
        return Vec::new();
    };
    let start = crate::envs::Frame::new(64, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let action = vec![0.0f32; spec.action_size];
    steps
        .iter()
        .filter_map(|&n| {
            let sampling = Sampling {
                steps: n,
                ..FlowDreamBatch::<B>::DEFAULT_SAMPLING
            };
            dream.set_sampling(sampling).ok()?;
            dream.reset_from_frames(0, &[&start], &[]).ok()?;
            let seconds = seconds_per_step(reps, || {
                if dream.step(&action, &mut rng).is_ok() {
                    let _ = dream.frames();
                }
            });
            Some((n, seconds * 1e3))
        })
        .collect()
}

/// V training images/s at batch 32 (Adam, the paper's loss), after one warm-up step.
pub fn bench_vae_training<B: Backend>(device: &B::Device, spec: &ModelSpec, steps: usize) -> f64 {
    const BATCH: usize = 32;
    let mut model = spec.vae_config().init::<Autodiff<B>>(device);
    let mut optim = crate::model::adam::adam(None);
    let x = Tensor::<Autodiff<B>, 4>::random(
        [BATCH, 3, 64, 64],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let mut start = Instant::now();
    for step in 0..=steps {
        if step == 1 {
            start = Instant::now();
        }
        let out = model.forward(x.clone());
        let (loss, _, _) = vae_loss(out.recon, x.clone(), out.mu, out.logvar, 0.5);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-4, model, grads);
        let _ = loss.into_scalar(); // sync
    }
    (steps * BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// (ms per dream step with decode, ms per M step alone) at batch 1, after warm-up.
pub fn bench_dream_latency<B: Backend>(
    device: &B::Device,
    spec: &ModelSpec,
    steps: usize,
) -> (f64, f64) {
    let mut dream = Dream::new(
        spec.vae_config().init::<B>(device),
        spec.mdrnn_config().init::<B>(device),
        device,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    dream.reset_random(&mut rng);
    let action = vec![0.0f32; spec.action_size];
    for _ in 0..5 {
        dream.step(&action, 1.0, &mut rng).expect("valid action");
        let _ = dream.frame();
    }
    let start = Instant::now();
    for _ in 0..steps {
        dream.step(&action, 1.0, &mut rng).expect("valid action");
        let _ = dream.frame();
    }
    let with_decode = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let start = Instant::now();
    for _ in 0..steps {
        dream.step(&action, 1.0, &mut rng).expect("valid action");
    }
    let m_only = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
    (with_decode, m_only)
}

/// Dream steps per second (M step + host sampling, no decode) with `batch` dreams stepped together.
pub fn bench_batched_dream<B: Backend>(
    device: &B::Device,
    spec: &ModelSpec,
    batch: usize,
    steps: usize,
) -> f64 {
    let mut dreams = DreamBatch::new(
        spec.vae_config().init::<B>(device),
        spec.mdrnn_config().init::<B>(device),
        batch,
        device,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    dreams.reset_all_random(&mut rng);
    let actions = vec![0.0f32; batch * spec.action_size];
    for _ in 0..2 {
        dreams.step(&actions, 1.0, &mut rng).expect("valid actions");
    }
    let start = Instant::now();
    for _ in 0..steps {
        dreams.step(&actions, 1.0, &mut rng).expect("valid actions");
    }
    (batch * steps) as f64 / start.elapsed().as_secs_f64()
}

/// One decode at `batch` in each of V's decoder forms.
pub fn bench_decode_forms<B: Backend>(
    device: &B::Device,
    spec: &ModelSpec,
    batch: usize,
    reps: usize,
) -> DecodeForms {
    let vae = spec.vae_config().init::<B>(device);
    let z = Tensor::<B, 2>::random([batch, spec.z_size], Distribution::Normal(0.0, 1.0), device);
    let time = |f: &dyn Fn() -> Tensor<B, 4>| {
        for _ in 0..3 {
            let _ = f().into_data();
        }
        let start = Instant::now();
        for _ in 0..reps {
            let _ = f().into_data();
        }
        start.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let folded = vae.frame_decoder();
    DecodeForms {
        folded: time(&|| folded.decode(z.clone())),
        matmul: time(&|| vae.decode(z.clone())),
        conv: time(&|| vae.decode_reference(z.clone())),
    }
}
