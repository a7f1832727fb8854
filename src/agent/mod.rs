//! Everything that acts, behind one trait: [`Agent`] turns what it sees into the env's action.
//!
//! - [`random`]: the random agents that collect data (uniform, held, held-long, brownian, the
//!   random controller);
//! - [`scripted`]: the blind baselines that score a dream against reality (still, sweep);
//! - [`human`]: keyboard and gamepad, smoothed as the paper's demo does;
//! - C, the evolved controller ([`crate::model::Controller`]), acting on the world model's state.
//!
//! [`AgentKind`] names the model-free ones on the command line and in run files.

pub mod human;
pub mod random;
pub mod scripted;

use std::fmt;
use std::str::FromStr;

use crate::envs::{EnvKind, Frame};
use crate::model::Controller;

pub use human::Human;
pub use random::{Brownian, HeldRandom, RandomController, UniformRandom};
pub use scripted::{Still, Sweep};

/// The world model's state an agent may act on: V's (or M's) latent and M's memory.
#[derive(Debug, Clone, Copy)]
pub struct Latent<'a> {
    /// `[z_size]`.
    pub z: &'a [f32],
    /// M's LSTM h, `[hidden]`.
    pub hidden: &'a [f32],
    /// M's LSTM c, `[hidden]`.
    pub cell: &'a [f32],
}

/// What an agent sees before it acts: the real frame where there is one, and the world model's
/// state where there is a world model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub frame: Option<&'a Frame>,
    pub latent: Option<Latent<'a>>,
}

impl<'a> Seen<'a> {
    /// A real frame alone (no world model).
    pub fn frame(frame: &'a Frame) -> Self {
        Self {
            frame: Some(frame),
            latent: None,
        }
    }

    /// The world model's state alone (a dream has no real frame).
    pub fn latent(latent: Latent<'a>) -> Self {
        Self {
            frame: None,
            latent: Some(latent),
        }
    }
}

/// Anything that acts in an env or in a dream.
pub trait Agent: Send {
    /// The next action, inside the env's action space, on seeing `seen` (before acting).
    fn act(&mut self, seen: &Seen<'_>) -> Vec<f32>;
}

/// C acts on the world model's state; with none (a caller's mistake) it stands still rather
/// than guess.
impl Agent for &Controller {
    fn act(&mut self, seen: &Seen<'_>) -> Vec<f32> {
        match seen.latent {
            Some(Latent { z, hidden, cell }) => Controller::act(self, z, cell, hidden),
            None => vec![0.0; self.output_size()],
        }
    }
}

/// The model-free agents by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// Uniform over the action space each step, as Gym's `action_space.sample()`.
    Uniform,
    /// A uniform random action held for a uniform 1..=10 steps (the paper's Doom data).
    Held,
    /// A uniform random action held for a uniform 1..=100 steps: long strafes and pushes on a wall.
    HeldLong,
    /// A clipped random walk in action space, step sd sqrt(1/fps) (ctallec's CarRacing data).
    Brownian,
    /// A random linear tanh controller per rollout on a coarse grey view (stand-in for the paper's
    /// CarRacing data).
    RandomController,
    /// The zero action every step: Take Cover's player never strafes.
    Still,
    /// A blind sweep: the first action value at -1 for this many steps, then +1 as long, and
    /// again; the others zero.
    Sweep(u32),
}

/// The sweep that `sweep` names on the command line: in Take Cover the strongest blind policy
/// (80 steps each way lives about 750 tics in ViZDoom and in our env).
pub const DEFAULT_SWEEP_STEPS: u32 = 80;

impl AgentKind {
    /// The random agents, which collect data.
    pub const RANDOM: [AgentKind; 5] = [
        AgentKind::Uniform,
        AgentKind::Held,
        AgentKind::HeldLong,
        AgentKind::Brownian,
        AgentKind::RandomController,
    ];

    /// Every kind, the sweep at [`DEFAULT_SWEEP_STEPS`].
    pub const ALL: [AgentKind; 7] = [
        AgentKind::Uniform,
        AgentKind::Held,
        AgentKind::HeldLong,
        AgentKind::Brownian,
        AgentKind::RandomController,
        AgentKind::Still,
        AgentKind::Sweep(DEFAULT_SWEEP_STEPS),
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Uniform => "uniform",
            AgentKind::Held => "held",
            AgentKind::HeldLong => "held-long",
            AgentKind::Brownian => "brownian",
            AgentKind::RandomController => "random-controller",
            AgentKind::Still => "still",
            AgentKind::Sweep(_) => "sweep",
        }
    }

    /// The agent in a sentence, for reports.
    pub fn describe(self) -> String {
        match self {
            AgentKind::Uniform => "the uniform-random policy".into(),
            AgentKind::Still => "the still policy (zero action)".into(),
            AgentKind::Sweep(n) => format!("a blind sweep ({n} steps left, {n} right)"),
            other => format!("the {} policy", other.name()),
        }
    }

    /// The data-collection agent for `env`. CarRacing: brownian, which gives the most varied frames
    /// (turns, kerbs, road and grass in every rollout); the random controller's near-constant output
    /// mostly spins on the grass or stands still (measurements in `train::collect`'s module doc).
    /// Take Cover: the paper's held random action.
    pub fn default_for(env: EnvKind) -> AgentKind {
        match env {
            EnvKind::CarRacing => AgentKind::Brownian,
            EnvKind::TakeCover => AgentKind::Held,
        }
    }

    /// A fresh agent for one episode of `env`; everything random in it derives from `seed`.
    pub fn build(self, env: EnvKind, seed: u64) -> Box<dyn Agent> {
        let space = env.action_space();
        match self {
            AgentKind::Uniform => Box::new(UniformRandom::new(space, seed)),
            AgentKind::Held => Box::new(HeldRandom::new(space, seed)),
            AgentKind::HeldLong => Box::new(HeldRandom::with_max_hold(
                space,
                seed,
                random::LONG_HOLD_STEPS_MAX,
            )),
            AgentKind::Brownian => Box::new(Brownian::new(space, env.steps_per_second(), seed)),
            AgentKind::RandomController => Box::new(RandomController::new(env, seed)),
            AgentKind::Still => Box::new(Still::new(space.len())),
            AgentKind::Sweep(steps) => Box::new(Sweep::new(space.len(), steps)),
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy '{0}': expected one of uniform, held, held-long, brownian, random-controller, \
     still, sweep"
)]
pub struct UnknownAgent(pub String);

impl FromStr for AgentKind {
    type Err = UnknownAgent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "uniform" | "random" => Ok(AgentKind::Uniform),
            "held" | "held-random" => Ok(AgentKind::Held),
            "held-long" | "long" => Ok(AgentKind::HeldLong),
            "brownian" | "brown" => Ok(AgentKind::Brownian),
            "random-controller" | "controller" => Ok(AgentKind::RandomController),
            "still" => Ok(AgentKind::Still),
            "sweep" => Ok(AgentKind::Sweep(DEFAULT_SWEEP_STEPS)),
            _ => Err(UnknownAgent(s.to_string())),
        }
    }
}

/// Written by hand rather than derived because the sweep carries its length; `sweep` on the command
/// line is the [`DEFAULT_SWEEP_STEPS`] sweep.
impl clap::ValueEnum for AgentKind {
    fn value_variants<'a>() -> &'a [Self] {
        &AgentKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(self.name());
        Some(match self {
            AgentKind::Uniform => value
                .alias("random")
                .help("Uniform over the action space each step, as Gym's action_space.sample()"),
            AgentKind::Held => {
                value.help("A uniform random action held 1..=10 steps (the paper's Doom data)")
            }
            AgentKind::HeldLong => value.help("A uniform random action held 1..=100 steps"),
            AgentKind::Brownian => {
                value.help("A clipped random walk in action space (ctallec's CarRacing data)")
            }
            AgentKind::RandomController => {
                value.help("A random linear tanh controller per rollout on a coarse grey view")
            }
            AgentKind::Still => value.help("The zero action every step"),
            AgentKind::Sweep(_) => {
                value.help("The first action at -1 for 80 steps, then +1, and again")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in AgentKind::ALL {
            assert_eq!(kind.name().parse::<AgentKind>(), Ok(kind));
        }
        assert_eq!("random".parse::<AgentKind>(), Ok(AgentKind::Uniform));
        assert!("greedy".parse::<AgentKind>().is_err());
    }

    #[test]
    fn c_acts_on_the_latent_state_and_stands_still_without_one() {
        let mut c = Controller::new(crate::model::controller::ControllerKind::TakeCover, 2, 1);
        c.set_params(&[1.0, 0.0, 0.0, 0.0]).unwrap();
        let (z, h, cell) = ([0.9, 0.0], [0.0], [0.0]);
        let seen = Seen::latent(Latent {
            z: &z,
            hidden: &h,
            cell: &cell,
        });
        assert_eq!(Agent::act(&mut &c, &seen), vec![1.0]);
        assert_eq!(Agent::act(&mut &c, &Seen::default()), vec![0.0]);
    }
}
