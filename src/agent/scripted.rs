//! Blind baselines: they act without looking. Scored in a dream and in reality, they show whether
//! the dream kills as reality does before any C is evolved in it.

use super::{Agent, Seen};
use crate::envs::EnvKind;

/// A few fixed, named actions per env: what "what would each action do" compares. Take Cover:
/// left, stay, right. CarRacing: steer either way, straight on the gas, brake.
pub fn named_actions(env: EnvKind) -> Vec<(&'static str, Vec<f32>)> {
    match env {
        EnvKind::TakeCover => vec![
            ("left", vec![-1.0]),
            ("stay", vec![0.0]),
            ("right", vec![1.0]),
        ],
        EnvKind::CarRacing => vec![
            ("left", vec![-1.0, 0.0, 0.0]),
            ("straight", vec![0.0, 1.0, 0.0]),
            ("right", vec![1.0, 0.0, 0.0]),
            ("brake", vec![0.0, 0.0, 0.8]),
        ],
    }
}

/// The zero action every step. In Take Cover's dream it shows whether M kills an agent that never
/// dodges, which C must beat to be worth evolving.
#[derive(Debug, Clone)]
pub struct Still {
    action_size: usize,
}

impl Still {
    pub fn new(action_size: usize) -> Self {
        Self { action_size }
    }
}

impl Agent for Still {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        vec![0.0; self.action_size]
    }
}

/// The first action value held at -1 for `half` steps, then at +1 as long, and again; the others
/// zero. In Take Cover a dream that gives it much less, or far more, than reality will mislead C.
#[derive(Debug, Clone)]
pub struct Sweep {
    action_size: usize,
    half: u32,
    step: u32,
}

impl Sweep {
    /// `half` steps each way (at least 1).
    pub fn new(action_size: usize, half: u32) -> Self {
        Self {
            action_size,
            half: half.max(1),
            step: 0,
        }
    }
}

impl Agent for Sweep {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        let mut action = vec![0.0; self.action_size];
        if let Some(first) = action.first_mut() {
            *first = if (self.step / self.half).is_multiple_of(2) {
                -1.0
            } else {
                1.0
            };
        }
        self.step += 1;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_actions_are_valid_actions_of_their_env() {
        for env in EnvKind::ALL {
            let actions = named_actions(env);
            assert!(actions.len() >= 3, "{env}");
            for (name, action) in actions {
                assert!(
                    env.action_space().validate(&action).is_ok(),
                    "{env}: {name} {action:?}"
                );
            }
        }
    }

    #[test]
    fn a_sweep_turns_every_half_and_still_stays() {
        let mut sweep = Sweep::new(2, 3);
        let firsts: Vec<f32> = (0..7).map(|_| sweep.act(&Seen::default())[0]).collect();
        assert_eq!(firsts, [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0]);
        assert_eq!(Still::new(3).act(&Seen::default()), vec![0.0; 3]);
    }
}
