//! The pipeline: collect rollouts, fit V and M, evolve C, evaluate.

pub mod cmaes;
pub mod collect;
pub mod rollout;
