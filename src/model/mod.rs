//! The world model: V (ConvVAE), M (MDN-RNN), C (linear controller), their losses, the model
//! file, and the backend choice.
//!
//! Data flow: frame -> V.encode -> z; [z, a] -> M -> mixture over z'; [z, h] (or [z, c, h]) -> C -> a.

pub mod adam;
pub mod atlas;
pub mod backend;
pub mod bundle;
pub mod controller;
pub mod flow;
pub mod gemm_conv;
pub mod mdrnn;
pub mod vae;

pub use atlas::{LatentMap, LatentStats};
pub use backend::{FlexBackend, SelectedBackend, Selection, WgpuBackend};
pub use bundle::{BundleError, Expect, ModelSpec, Precision, WorldModel};
pub use controller::{Controller, ControllerKind};
pub use mdrnn::{
    MdnRnn, MdnRnnConfig, MdnRnnState, Mixture, done_loss, mdn_loss, reward_loss, sample_mixture,
};
pub use vae::{ConvVae, ConvVaeConfig, frames_to_tensor, tensor_to_frames, vae_loss};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Backend, Tensor};

/// Forces burn's lazy parameter initialisation now, so that clones of a fresh module share its
/// weights (clones of a never-used module would each draw their own).
pub(crate) fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

/// Moves a value between two names of the same type: a generic backend `B` and the concrete
/// backend it was found to be by `TypeId` (the CPU fast paths, `gemm_conv` and `adam`).
pub(crate) fn same_type_cast<T: 'static, U: 'static>(value: T) -> U {
    match (Box::new(value) as Box<dyn std::any::Any>).downcast::<U>() {
        Ok(value) => *value,
        // Only reached if a caller skipped the TypeId check: a bug, not bad input.
        Err(_) => unreachable!("same_type_cast between different types"),
    }
}
