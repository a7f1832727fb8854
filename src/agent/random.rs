//! The random agents that need no model: what explores the envs and collects V's and M's data.
//!
//! Each is deterministic under its seed: the same seed and the same observations give the same
//! actions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Agent, Seen};
use crate::envs::{ActionSpace, EnvKind, Frame, car_racing};

/// Longest hold of the held random policy, in steps. The paper's Doom data held each random action for
/// a uniform 1..=10 frames (WorldModelsExperiments `doomrnn/extract.py`, `np.random.randint(1, 11)`).
pub const HOLD_STEPS_MAX: u32 = 10;

/// Longest hold of the long-held random policy, in steps: about a crossing of Take Cover's room at
/// the terminal strafe speed and as long again pushing on a side wall. A departure for M's data,
/// not in the paper: its 1..=10 holds almost never push on a wall for long, and a C evolved in the
/// dream of an M trained on them learnt to run into a wall. Measured on env v0, 600 such rollouts did
/// not teach M the fireballs there (`models/take-cover/EXPERIMENTS.md`, its first section).
pub const LONG_HOLD_STEPS_MAX: u32 = 100;

/// Side of the grey grid the random controller reads (cells). 8x8 = 64 features: coarse enough to be
/// cheap and smooth, fine enough that the road's position and bends change them.
pub const CONTROLLER_GRID: u32 = 8;

/// Upper end of the random controller's per-rollout weight scale: its weights are standard Cauchy
/// draws times a scale drawn uniformly from [0, this). WorldModelsExperiments used 0.01 on the untrained
/// model's 288 features (`init_random_model_params(stdev=np.random.rand()*0.01)`, Cauchy "to spice
/// things up"); our 64 grey features are centred on the frame's mean, so they need a larger scale for
/// the output to move at all. Measured on 16 CarRacing rollouts: at 1.0, 9 of 16 brake to a standstill;
/// at 0.1, 14 of 16 drive (most of them spinning on the grass).
pub const CONTROLLER_WEIGHT_SCALE_MAX: f32 = 0.1;

/// Samples each action uniformly from the action space's box, as Gym's `action_space.sample()`.
#[derive(Debug, Clone)]
pub struct UniformRandom {
    space: ActionSpace,
    rng: ChaCha8Rng,
}

impl UniformRandom {
    pub fn new(space: ActionSpace, seed: u64) -> Self {
        Self {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Agent for UniformRandom {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        uniform_action(&self.space, &mut self.rng)
    }
}

/// The paper's Doom data policy: a uniform random action, held for a uniform 1..=[`HOLD_STEPS_MAX`] steps,
/// then a new action and a new hold.
///
/// Departure from the paper: WorldModelsExperiments re-draws when `frame % repeat == 0` with a freshly
/// drawn `repeat`, so its holds are irregular (a hold can end early or last longer than 10 frames); here
/// each hold lasts exactly the drawn number of steps, as the paper describes.
#[derive(Debug, Clone)]
pub struct HeldRandom {
    space: ActionSpace,
    rng: ChaCha8Rng,
    action: Vec<f32>,
    steps_left: u32,
    max_hold: u32,
}

impl HeldRandom {
    /// The paper's policy: holds of 1..=[`HOLD_STEPS_MAX`] steps.
    pub fn new(space: ActionSpace, seed: u64) -> Self {
        Self::with_max_hold(space, seed, HOLD_STEPS_MAX)
    }

    /// Holds of a uniform 1..=`max_hold` steps (at least 1).
    pub fn with_max_hold(space: ActionSpace, seed: u64, max_hold: u32) -> Self {
        Self {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
            action: Vec::new(),
            steps_left: 0,
            max_hold: max_hold.max(1),
        }
    }
}

impl Agent for HeldRandom {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        if self.steps_left == 0 {
            self.action = uniform_action(&self.space, &mut self.rng);
            self.steps_left = self.rng.random_range(1..=self.max_hold);
        }
        self.steps_left -= 1;
        self.action.clone()
    }
}

/// A smooth random policy: the action is a Brownian motion clipped to the action box, ctallec's
/// CarRacing data policy (`sample_continuous_policy` in ctallec/world-models `utils/misc.py`).
///
/// The first action is uniform; each step then adds `sqrt(dt) * N(0, 1)` to every component and clips,
/// with `dt` = one env step in seconds (ctallec's 1/50 for CarRacing, 1/35 for Take Cover). For CarRacing
/// the step's standard deviation is sqrt(1/50) = 0.141 action units, so steering drifts across its whole
/// range in about (2 / 0.141)^2 = 200 steps (4 s): long sweeping turns, straights and spells of full brake.
#[derive(Debug, Clone)]
pub struct Brownian {
    space: ActionSpace,
    rng: ChaCha8Rng,
    /// Standard deviation of one step of the walk (action units).
    step_sd: f32,
    action: Vec<f32>,
}

impl Brownian {
    /// `steps_per_second` sets dt = 1 / steps_per_second.
    pub fn new(space: ActionSpace, steps_per_second: u32, seed: u64) -> Self {
        let step_sd = (1.0 / steps_per_second.max(1) as f32).sqrt();
        Self {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
            step_sd,
            action: Vec::new(),
        }
    }

    /// Standard deviation of one step of the walk (action units).
    pub fn step_sd(&self) -> f32 {
        self.step_sd
    }
}

impl Agent for Brownian {
    fn act(&mut self, _seen: &Seen<'_>) -> Vec<f32> {
        if self.action.len() != self.space.len() {
            self.action = uniform_action(&self.space, &mut self.rng);
        } else {
            for i in 0..self.space.len() {
                let step = self.step_sd * standard_normal(&mut self.rng);
                self.action[i] =
                    (self.action[i] + step).clamp(self.space.low[i], self.space.high[i]);
            }
        }
        self.action.clone()
    }
}

/// The paper's CarRacing data policy, without a model: a random linear tanh controller, new per rollout.
///
/// WorldModelsExperiments (`carracing/extract.py`, `model.py`) drew, per rollout, standard Cauchy weights
/// times a scale uniform in [0, 0.01) for the whole untrained model, and acted with
/// `a = tanh(W [z, h] + b)`, steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1).
///
/// Departure from the paper: there is no V or M yet, so the controller reads a fixed cheap feature
/// instead of [z, h]: the frame's grey levels averaged over a [`CONTROLLER_GRID`]² grid, centred on their
/// mean. Weights and bias are Cauchy times a per-rollout scale uniform in [0, [`CONTROLLER_WEIGHT_SCALE_MAX`]).
/// (The paper's untrained V, with near-zero weights, returned z ~ N(0, 1) sampling noise whatever the
/// frame, so its controller added per-rollout white noise around a fixed action; ours reacts to the
/// scene instead, which keeps it smooth.) Envs other than CarRacing map tanh's [-1, 1] linearly onto the
/// action box (for Take Cover that is the paper's Doom output, used as is).
#[derive(Debug, Clone)]
pub struct RandomController {
    env: EnvKind,
    space: ActionSpace,
    /// Row-major [actions, features].
    weights: Vec<f32>,
    bias: Vec<f32>,
    features: Vec<f32>,
}

impl RandomController {
    pub fn new(env: EnvKind, seed: u64) -> Self {
        let space = env.action_space();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let feature_count = (CONTROLLER_GRID * CONTROLLER_GRID) as usize;
        let scale = rng.random::<f32>() * CONTROLLER_WEIGHT_SCALE_MAX;
        let weights = (0..space.len() * feature_count)
            .map(|_| scale * standard_cauchy(&mut rng))
            .collect();
        let bias = (0..space.len())
            .map(|_| scale * standard_cauchy(&mut rng))
            .collect();
        Self {
            env,
            space,
            weights,
            bias,
            features: vec![0.0; feature_count],
        }
    }

    /// The raw controller output tanh(W f + b) in [-1, 1], one value per action. Without a frame
    /// (in a dream) the features read as a flat grey scene.
    fn output(&mut self, obs: Option<&Frame>) -> Vec<f32> {
        match obs {
            Some(frame) => grey_grid_features(frame, CONTROLLER_GRID, &mut self.features),
            None => self.features.fill(0.0),
        }
        let feature_count = self.features.len();
        (0..self.space.len())
            .map(|row| {
                let weights = &self.weights[row * feature_count..(row + 1) * feature_count];
                let sum: f32 = weights.iter().zip(&self.features).map(|(w, f)| w * f).sum();
                (sum + self.bias[row]).tanh()
            })
            .collect()
    }
}

impl Agent for RandomController {
    fn act(&mut self, seen: &Seen<'_>) -> Vec<f32> {
        let out = self.output(seen.frame);
        match self.env {
            EnvKind::CarRacing => car_racing::action_from_tanh(&out),
            EnvKind::TakeCover => (0..self.space.len())
                .map(|i| {
                    let (low, high) = (self.space.low[i], self.space.high[i]);
                    low + (out[i] + 1.0) / 2.0 * (high - low)
                })
                .collect(),
        }
    }
}

/// The frame's mean grey level (0..1) in each cell of a `grid` x `grid` grid, minus the mean over all
/// cells, written row-major into `out` (which must hold grid² values). Frames of any size work; cells
/// cover the frame as evenly as integer pixel bounds allow.
fn grey_grid_features(frame: &Frame, grid: u32, out: &mut [f32]) {
    let (width, height) = frame.dimensions();
    for cell_y in 0..grid {
        let (y0, y1) = (
            cell_y * height / grid,
            ((cell_y + 1) * height / grid).max(cell_y * height / grid + 1),
        );
        for cell_x in 0..grid {
            let (x0, x1) = (
                cell_x * width / grid,
                ((cell_x + 1) * width / grid).max(cell_x * width / grid + 1),
            );
            let mut sum = 0u32;
            let mut count = 0u32;
            for y in y0..y1.min(height) {
                for x in x0..x1.min(width) {
                    let [r, g, b] = frame.get_pixel(x, y).0;
                    sum += u32::from(r) + u32::from(g) + u32::from(b);
                    count += 1;
                }
            }
            let index = (cell_y * grid + cell_x) as usize;
            if let Some(slot) = out.get_mut(index) {
                *slot = if count == 0 {
                    0.0
                } else {
                    sum as f32 / (count as f32 * 3.0 * 255.0)
                };
            }
        }
    }
    let mean = out.iter().sum::<f32>() / out.len().max(1) as f32;
    out.iter_mut().for_each(|v| *v -= mean);
}

fn uniform_action(space: &ActionSpace, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..space.len())
        .map(|i| rng.random_range(space.low[i]..=space.high[i]))
        .collect()
}

/// One N(0, 1) draw, Box-Muller on two uniforms. Kept rather than `rand_distr`'s ziggurat
/// because the shipped data was collected with it: the same seed must give the same rollouts.
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    // 1 - u lies in (0, 1], so the log is finite.
    let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
    let angle = std::f64::consts::TAU * rng.random::<f64>();
    (radius * angle.cos()) as f32
}

/// One standard Cauchy draw: tan(pi (u - 1/2)), clamped to +-1e6 so a draw near the pole stays finite.
fn standard_cauchy(rng: &mut ChaCha8Rng) -> f32 {
    let u = rng.random::<f64>();
    (std::f64::consts::PI * (u - 0.5)).tan().clamp(-1e6, 1e6) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentKind;

    fn blank() -> Frame {
        Frame::new(64, 64)
    }

    fn run(kind: AgentKind, env: EnvKind, seed: u64, steps: usize) -> Vec<Vec<f32>> {
        let mut agent = kind.build(env, seed);
        let frame = blank();
        (0..steps)
            .map(|_| agent.act(&Seen::frame(&frame)))
            .collect()
    }

    #[test]
    fn every_policy_stays_in_the_box_and_is_deterministic() {
        for env in EnvKind::ALL {
            let space = env.action_space();
            for kind in AgentKind::RANDOM {
                let actions = run(kind, env, 7, 500);
                assert_eq!(
                    actions,
                    run(kind, env, 7, 500),
                    "{kind} on {env} is not deterministic"
                );
                assert_ne!(
                    actions,
                    run(kind, env, 8, 500),
                    "{kind} on {env} ignores its seed"
                );
                for action in &actions {
                    assert_eq!(
                        space.validate(action).as_ref(),
                        Ok(action),
                        "{kind} on {env}: {action:?}"
                    );
                }
            }
        }
    }

    fn hold_lengths(kind: AgentKind, steps: usize) -> Vec<u32> {
        let actions = run(kind, EnvKind::TakeCover, 3, steps);
        let mut runs = Vec::new();
        let mut length = 1;
        for pair in actions.windows(2) {
            if pair[0] == pair[1] {
                length += 1;
            } else {
                runs.push(length);
                length = 1;
            }
        }
        runs
    }

    /// Every hold of `kind` over `steps` lasts 1..=`max` steps and they average within `mean`.
    fn assert_holds(
        kind: AgentKind,
        steps: usize,
        max: u32,
        mean: std::ops::Range<f64>,
    ) -> Vec<u32> {
        let runs = hold_lengths(kind, steps);
        assert!(runs.iter().all(|&n| (1..=max).contains(&n)), "{runs:?}");
        let got = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
        assert!(
            mean.contains(&got),
            "{kind}: mean hold {got}, expected {mean:?}"
        );
        runs
    }

    #[test]
    fn held_random_holds_each_action_one_to_ten_steps() {
        assert_holds(AgentKind::Held, 5_000, HOLD_STEPS_MAX, 4.5..6.5);
    }

    #[test]
    fn long_held_random_holds_up_to_a_hundred_steps() {
        let runs = assert_holds(AgentKind::HeldLong, 50_000, LONG_HOLD_STEPS_MAX, 45.0..56.0);
        assert!(runs.iter().any(|&n| n > 90), "no hold past 90 steps");
    }

    #[test]
    fn brownian_moves_by_its_documented_step() {
        let policy = Brownian::new(EnvKind::CarRacing.action_space(), 50, 0);
        assert!((policy.step_sd() - 0.1414).abs() < 1e-3);
        let actions = run(AgentKind::Brownian, EnvKind::CarRacing, 1, 2_000);
        // Steering rarely sits on a bound, so its unclipped steps show the walk's sd.
        let steps: Vec<f32> = actions
            .windows(2)
            .filter(|w| w[1][0].abs() < 1.0 && w[0][0].abs() < 1.0)
            .map(|w| w[1][0] - w[0][0])
            .collect();
        let sd = (steps.iter().map(|s| s * s).sum::<f32>() / steps.len() as f32).sqrt();
        assert!((0.12..0.16).contains(&sd), "steer step sd {sd}");
    }

    #[test]
    fn random_controller_reacts_to_the_frame() {
        let dark = blank();
        // Left half white: the centred features differ, the mean-only part cancels.
        let bright = Frame::from_fn(64, 64, |x, _| {
            if x < 32 {
                image::Rgb([255; 3])
            } else {
                image::Rgb([0; 3])
            }
        });
        // Some seed gives a controller whose output differs between the two scenes.
        let reacts = (0..20).any(|seed| {
            let mut policy = RandomController::new(EnvKind::CarRacing, seed);
            policy.act(&Seen::frame(&dark)) != policy.act(&Seen::frame(&bright))
        });
        assert!(reacts);
    }
}
