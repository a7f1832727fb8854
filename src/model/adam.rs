//! Adam as burn's, with one fused, parallel pass per parameter tensor on burn-flex.
//!
//! Why by hand: burn's Adam is a dozen tensor ops per parameter tensor, and burn-flex 0.21 runs
//! each as its own single-threaded pass over memory (its element-wise ops are not parallel). For
//! V's 4.4M parameters the optimiser step then ran on one core while the other waited. Here each
//! tensor's step is one loop over (parameter, gradient, moments), in place, split across rayon's
//! threads.
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
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
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

/// Adam for a module of type `M`, as `AdamConfig::new().init()` builds it, with optional gradient
/// clipping.
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
    let (mut param, grad) = (contiguous(tensor), contiguous(grad));
    // A first step is a step from zero moments: 0 * beta + x is x, so the result is burn's.
    let (time, mut m, mut v) = match state {
        Some(s) => (
            s.momentum.time + 1,
            contiguous(s.momentum.moment_1),
            contiguous(s.momentum.moment_2),
        ),
        None => {
            let zeros = || FlexTensor::zeros(shape.clone(), burn::tensor::DType::F32);
            (1, zeros(), zeros())
        }
    };
    let step = Step::new(lr, time);
    let grad = f32s(&grad);
    // In place where this step holds the only reference (the moments always; the parameter
    // usually), else on a copy: `storage_mut` copies shared storage first.
    let (param_out, m_out, v_out) = (
        param.storage_mut::<f32>(),
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
    );
    param_out
        .par_chunks_mut(CHUNK)
        .zip(m_out.par_chunks_mut(CHUNK))
        .zip(v_out.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| step.run(p, g, m, v));
    let tensor = |t: FlexTensor| Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t));
    let state = AdamState::new(AdaptiveMomentumState::new(time, tensor(m), tensor(v)));
    (tensor(param), state)
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

    /// One step on a slice, in place: the moments, then the parameter, element by element in
    /// burn's order of operations (so the result is the same to the last bit, rounding included).
    fn run(self, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (f1, f2) = (1.0 - BETA_1, 1.0 - BETA_2);
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
            *m = *m * BETA_1 + g * f1;
            *v = *v * BETA_2 + g * g * f2;
            let update = *m * self.combined_factor / (v.sqrt() + self.epsilon);
            *p -= update * self.lr;
        }
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    // Callers pass contiguous f32 tensors (checked by `step`, made by `to_contiguous`).
    t.as_slice::<f32>().unwrap_or(&[])
}
