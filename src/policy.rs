//! Action samplers that need no model: the random policies used to explore and to collect data.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::envs::ActionSpace;

/// Samples each action uniformly from the action space's box, as Gym's `action_space.sample()`.
#[derive(Debug, Clone)]
pub struct UniformRandom {
    space: ActionSpace,
    rng: ChaCha8Rng,
}

impl UniformRandom {
    pub fn new(space: ActionSpace, seed: u64) -> Self {
        Self { space, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn act(&mut self) -> Vec<f32> {
        (0..self.space.len())
            .map(|i| self.rng.random_range(self.space.low[i]..=self.space.high[i]))
            .collect()
    }
}
