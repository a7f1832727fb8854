//! Adam as burn's, with one fused, parallel pass per parameter tensor on burn-flex.
//!
//! Why by hand: burn's Adam is a dozen tensor ops per parameter tensor, and burn-flex 0.21 runs
//! each as its own single-threaded pass over memory (its element-wise ops are not parallel). For
//! V's 4.4M parameters the optimiser step then ran on one core while the other waited. Here each
//! tensor's step is one loop over (parameter, gradient, moments), split across rayon's threads.
//!
//! The maths is burn's `Adam` (no AMSGrad, no weight decay), op for op in the same order, and the
//! state is burn's own `AdamState`, so checkpoints load with either; `tests/model.rs` checks the
//! two against each other. Every backend other than flex uses burn's `Adam` itself.

use std::any::TypeId;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::same_type_cast as cast;

/// burn's `AdamConfig` defaults, which dreamplay trains with.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Elements per parallel task: large enough that a task outweighs rayon's hand-off.
const CHUNK: usize = 1 << 16;

/// Adam with burn's defaults, fused on flex (see the module docs).
#[derive(Clone)]
pub struct FusedAdam {
    /// burn's Adam with the same settings, for every other backend.
    fallback: burn::optim::Adam,
}

impl Default for FusedAdam {
    fn default() -> Self {
        Self {
            fallback: AdamConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .build(),
        }
    }
}

/// The optimiser for `M`, as `AdamConfig::new().init()` gives, plus optional gradient clipping.
pub fn adam<B: AutodiffBackend, M: AutodiffModule<B>>(
    clipping: Option<GradientClippingConfig>,
) -> OptimizerAdaptor<FusedAdam, M, B> {
    let optim = OptimizerAdaptor::from(FusedAdam::default());
    match clipping {
        Some(config) => optim.with_grad_clipping(config.init()),
        None => optim,
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let f32 = burn::tensor::DType::F32;
        let all_f32 = tensor.dtype() == f32
            && grad.dtype() == f32
            && state.as_ref().is_none_or(|s| {
                s.momentum.moment_1.dtype() == f32
                    && s.momentum.moment_2.dtype() == f32
                    && s.momentum.max_moment_2.is_none()
            });
        if TypeId::of::<B>() != TypeId::of::<Flex>() || !all_f32 {
            return SimpleOptimizer::<B>::step(&self.fallback, lr, tensor, grad, state);
        }
        let (tensor, state) = flex_step(
            lr,
            cast::<_, Tensor<Flex, D>>(tensor),
            cast::<_, Tensor<Flex, D>>(grad),
            state.map(cast::<_, AdamState<Flex, D>>),
        );
        (cast(tensor), Some(cast(state)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

fn flex_step<const D: usize>(
    lr: LearningRate,
    tensor: Tensor<Flex, D>,
    grad: Tensor<Flex, D>,
    state: Option<AdamState<Flex, D>>,
) -> (Tensor<Flex, D>, AdamState<Flex, D>) {
    let shape = tensor.shape();
    let contiguous = |t: Tensor<Flex, D>| t.into_primitive().tensor().to_contiguous();
    let (param, grad) = (contiguous(tensor), contiguous(grad));
    let (time, moments) = match state {
        Some(s) => (
            s.momentum.time + 1,
            Some((
                contiguous(s.momentum.moment_1),
                contiguous(s.momentum.moment_2),
            )),
        ),
        None => (1, None),
    };
    let n = shape.num_elements();
    let (mut new_param, mut m, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let step = Step::new(lr, time);
    let (param, grad) = (f32s(&param), f32s(&grad));
    let old = moments.as_ref().map(|(m, v)| (f32s(m), f32s(v)));
    new_param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, ((p_out, m_out), v_out))| {
            let range = c * CHUNK..c * CHUNK + p_out.len();
            let old = old.map(|(m, v)| (&m[range.clone()], &v[range.clone()]));
            step.run(
                &param[range.clone()],
                &grad[range],
                old,
                p_out,
                m_out,
                v_out,
            );
        });
    let tensor = |data: Vec<f32>| {
        let flex = FlexTensor::from_data(TensorData::new(data, shape.clone()));
        Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(flex))
    };
    let state = AdamState::new(AdaptiveMomentumState::new(time, tensor(m), tensor(v)));
    (tensor(new_param), state)
}

/// One step's constants, as burn's `AdaptiveMomentum` computes them.
#[derive(Clone, Copy)]
struct Step {
    lr: f32,
    combined_factor: f32,
    epsilon: f32,
}

impl Step {
    fn new(lr: LearningRate, time: usize) -> Self {
        let time = time as i32;
        let bias_correction2_sqrt = (1.0 - BETA_2.powi(time)).sqrt();
        Self {
            lr: lr as f32,
            combined_factor: bias_correction2_sqrt / (1.0 - BETA_1.powi(time)),
            epsilon: EPSILON * bias_correction2_sqrt,
        }
    }

    /// The moments and the parameter after one step, element by element in burn's order of
    /// operations (so the result is the same to the last bit, rounding included).
    fn run(
        self,
        param: &[f32],
        grad: &[f32],
        old: Option<(&[f32], &[f32])>,
        param_out: &mut [f32],
        m_out: &mut [f32],
        v_out: &mut [f32],
    ) {
        let (f1, f2) = (1.0 - BETA_1, 1.0 - BETA_2);
        // Re-sliced to one length, so the loop runs without bounds checks.
        let n = param.len();
        let (grad, param_out, m_out, v_out) = (
            &grad[..n],
            &mut param_out[..n],
            &mut m_out[..n],
            &mut v_out[..n],
        );
        let old = old.map(|(m, v)| (&m[..n], &v[..n]));
        for i in 0..n {
            let g = grad[i];
            let (m, v) = match old {
                Some((m, v)) => (m[i] * BETA_1 + g * f1, v[i] * BETA_2 + g * g * f2),
                None => (g * f1, g * g * f2),
            };
            let update = m * self.combined_factor / (v.sqrt() + self.epsilon);
            m_out[i] = m;
            v_out[i] = v;
            param_out[i] = param[i] - update * self.lr;
        }
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    // Callers pass contiguous f32 tensors (checked by `step`, made by `to_contiguous`).
    t.as_slice::<f32>().unwrap_or(&[])
}
