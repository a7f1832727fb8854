//! The real env and its episode.

use std::sync::{Mutex, MutexGuard};

use bevy::prelude::*;

use super::notice::Notice;
use crate::envs::{Env, EnvKind, Frame};

/// The real env and its episode.
#[derive(Resource)]
pub struct Reality {
    /// Behind a mutex only because resources must be `Sync` and envs are `Send`; the sim and the
    /// views take turns, so it is never contended.
    env: Mutex<Box<dyn Env>>,
    /// Seed of the current episode; each new episode takes the next.
    pub seed: u64,
    /// The model's 64x64 observation of the current state.
    pub obs: Frame,
    pub episode_return: f64,
    pub episodes_finished: u32,
    /// Bumped whenever the real state changes, so views redraw only then.
    pub generation: u64,
}

impl Reality {
    pub fn new(kind: EnvKind, seed: u64) -> Self {
        let env = kind.make(seed);
        let obs = env.observation();
        Self {
            env: Mutex::new(env),
            seed,
            obs,
            episode_return: 0.0,
            episodes_finished: 0,
            generation: 0,
        }
    }

    fn env(&self) -> MutexGuard<'_, Box<dyn Env>> {
        // A poisoned lock means a render panicked earlier; the env itself is still consistent.
        self.env
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn env_mut(&mut self) -> &mut Box<dyn Env> {
        self.env
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn kind(&self) -> EnvKind {
        self.env().kind()
    }

    pub fn steps(&self) -> u32 {
        self.env().elapsed_steps()
    }

    /// The current state drawn at `width` x `height` for display.
    pub fn render(&self, width: u32, height: u32) -> Frame {
        self.env().render(width, height)
    }

    /// Starts the next episode (next seed).
    pub fn next_episode(&mut self) {
        self.seed = self.seed.wrapping_add(1);
        let seed = self.seed;
        self.obs = self.env_mut().reset(seed);
        self.episode_return = 0.0;
        self.generation += 1;
    }

    /// Steps with `action`; restarts the episode when it ends. Returns whether it ended.
    fn step(&mut self, action: &[f32]) -> Result<bool, crate::envs::ActionError> {
        let step = self.env_mut().step(action)?;
        self.episode_return += f64::from(step.reward);
        self.obs = step.obs.clone();
        self.generation += 1;
        if step.done() {
            self.episodes_finished += 1;
            self.next_episode();
            return Ok(true);
        }
        Ok(false)
    }

    /// Steps; whether the episode ended, or `None` (with a notice) if the env refused the action.
    pub(super) fn step_or_notice(&mut self, action: &[f32], notice: &mut Notice) -> Option<bool> {
        match self.step(action) {
            Ok(ended) => Some(ended),
            Err(err) => {
                notice.show(format!("the env refused the action: {err}"));
                None
            }
        }
    }
}
