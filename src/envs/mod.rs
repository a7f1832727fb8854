//! The real environments: native, headless, deterministic, software-rendered to RGB buffers.
//!
//! Both follow Gymnasium's semantics: `reset(seed)` starts an episode, `step(action)` returns the
//! observation, the reward, and whether the episode `terminated` (the task ended) or was
//! `truncated` (the time limit). They know nothing of bevy or burn.

pub mod car_racing;
pub mod take_cover;

use std::fmt;
use std::str::FromStr;

pub use car_racing::CarRacing;
pub use take_cover::TakeCover;

/// An RGB8 image, row-major, as every env renders it.
pub type Frame = image::RgbImage;

/// Side of the square observation the world model sees (the paper's 64x64).
pub const OBS_SIZE: u32 = 64;

/// An observation shows a hazard from this many hazard pixels (a fireball of ~2x2 on screen).
pub const HAZARD_MIN_PIXELS: usize = 4;

/// Which environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvKind {
    CarRacing,
    TakeCover,
}

impl EnvKind {
    pub const ALL: [EnvKind; 2] = [EnvKind::CarRacing, EnvKind::TakeCover];

    /// The name used on the command line and in files: `car-racing`, `take-cover`.
    pub fn name(self) -> &'static str {
        match self {
            EnvKind::CarRacing => "car-racing",
            EnvKind::TakeCover => "take-cover",
        }
    }

    /// Simulation rate in steps per second: CarRacing's FPS, Doom's tic rate.
    pub fn steps_per_second(self) -> u32 {
        match self {
            EnvKind::CarRacing => car_racing::FPS,
            EnvKind::TakeCover => take_cover::TICS_PER_SECOND,
        }
    }

    pub fn action_space(self) -> ActionSpace {
        match self {
            EnvKind::CarRacing => car_racing::ACTION_SPACE,
            EnvKind::TakeCover => take_cover::ACTION_SPACE,
        }
    }

    /// Pixels of a 64x64 RGB observation that show a hazard the agent must see: Take Cover's
    /// fireballs (their fullbright core). CarRacing has none.
    pub fn hazard_pixels(self, obs: &[u8]) -> usize {
        match self {
            EnvKind::CarRacing => 0,
            EnvKind::TakeCover => take_cover::fireball_pixels(obs),
        }
    }

    /// The observation shows a hazard ([`HAZARD_MIN_PIXELS`] or more of them). `train-vae
    /// --hazard-repeats` uses it to show V these rare, small, vital frames more often.
    pub fn shows_hazard(self, obs: &[u8]) -> bool {
        self.hazard_pixels(obs) >= HAZARD_MIN_PIXELS
    }

    /// A fresh env of this kind, already reset with `seed`.
    pub fn make(self, seed: u64) -> Box<dyn Env> {
        match self {
            EnvKind::CarRacing => Box::new(CarRacing::new(seed)),
            EnvKind::TakeCover => Box::new(TakeCover::new(seed)),
        }
    }
}

impl fmt::Display for EnvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown env '{0}': expected one of car-racing, take-cover")]
pub struct UnknownEnv(pub String);

impl FromStr for EnvKind {
    type Err = UnknownEnv;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "car-racing" | "carracing" | "car" => Ok(EnvKind::CarRacing),
            "take-cover" | "takecover" | "doom" => Ok(EnvKind::TakeCover),
            _ => Err(UnknownEnv(s.to_string())),
        }
    }
}

/// A box of continuous actions, in the paper's convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionSpace {
    pub names: &'static [&'static str],
    pub low: &'static [f32],
    pub high: &'static [f32],
}

impl ActionSpace {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Checks length and finiteness, then clamps each value into the box (as Gym clips).
    /// A rejected action leaves the caller's env untouched.
    pub fn validate(&self, action: &[f32]) -> Result<Vec<f32>, ActionError> {
        if action.len() != self.len() {
            return Err(ActionError::WrongLength {
                got: action.len(),
                space: *self,
            });
        }
        action
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v.is_finite() {
                    Ok(v.clamp(self.low[i], self.high[i]))
                } else {
                    Err(ActionError::NotFinite {
                        index: i,
                        value: v,
                        space: *self,
                    })
                }
            })
            .collect()
    }
}

impl fmt::Display for ActionSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = (0..self.len())
            .map(|i| format!("{} in [{}, {}]", self.names[i], self.low[i], self.high[i]))
            .collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("action has {got} values, but the action space is {space}")]
    WrongLength { got: usize, space: ActionSpace },
    #[error("action[{index}] is {value}, not a finite number; the action space is {space}")]
    NotFinite {
        index: usize,
        value: f32,
        space: ActionSpace,
    },
}

/// What one step returns.
#[derive(Debug, Clone)]
pub struct Step {
    /// The model's 64x64 observation after the step.
    pub obs: Frame,
    pub reward: f32,
    /// The task ended: off the playfield, every tile visited, the player died.
    pub terminated: bool,
    /// The time limit was reached.
    pub truncated: bool,
}

impl Step {
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// One API for both environments.
pub trait Env: Send {
    fn kind(&self) -> EnvKind;

    fn action_space(&self) -> ActionSpace {
        self.kind().action_space()
    }

    /// Starts a new episode. Everything random in it derives from `seed`. Returns the observation.
    fn reset(&mut self, seed: u64) -> Frame;

    /// Advances one step (a CarRacing frame, a Doom tic). Out-of-range values are clamped into the
    /// action space; a wrong length or a non-finite value is an error and changes nothing.
    fn step(&mut self, action: &[f32]) -> Result<Step, ActionError>;

    /// The model's 64x64 observation of the current state.
    fn observation(&self) -> Frame;

    /// The same scene drawn at `width` x `height` for display (re-rendered, not upscaled).
    fn render(&self, width: u32, height: u32) -> Frame;

    /// For the observation: 64x64 bytes, row-major, 1 on the pixels that show a sprite V should
    /// learn to draw and finds hard (Take Cover's imps), 0 elsewhere. `None` for an env without one.
    fn sprite_mask(&self) -> Option<Vec<u8>> {
        None
    }

    /// Steps taken in this episode.
    fn elapsed_steps(&self) -> u32;

    /// The physical state, read-only, for traces and comparisons with the reference envs.
    fn state_json(&self) -> serde_json::Value;
}
