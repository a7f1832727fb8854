//! CarRacing: a native, headless, deterministic port of Gymnasium's `CarRacing-v3`
//! (`gymnasium/envs/box2d/car_racing.py` and `car_dynamics.py`), rendered in software with tiny-skia.
//!
//! Modules: [`track`] generates the track, [`car`] is the car's dynamics, [`render`] draws frames, and
//! [`resample`] makes the 64x64 observation.
//!
//! ## Description
//! A top-down racing task, the easiest control task to learn from pixels. Every episode generates a new random
//! track (see [`track`]). A powerful rear-wheel-drive car (see [`car`]) must visit as many of the track's tiles
//! as it can. Indicators at the bottom of the frame show, from left to right: the true speed, four ABS sensors
//! (wheel spin), the steering position and the gyroscope.
//!
//! ## Action Space
//! Continuous, `[steer, gas, brake]`: steer in [-1, 1] (-1 full left, +1 full right), gas in [0, 1],
//! brake in [0, 1] (0.9 and above locks the wheels). Out-of-range values are clamped; a wrong length or a
//! non-finite value is an error that changes nothing. Gym's discrete variant is not provided.
//!
//! ## Observation Space
//! [`CarRacing::render`] draws Gym's 96x96 state frame (or any size: the same scene, re-rendered) with the HUD in
//! its bottom 12 rows. The model's observation, returned by `step` and [`Env::observation`], is that frame's rows
//! 0..84 (dropping the HUD) resized to 64x64 with a triangle filter, as World Models does.
//!
//! ## Rewards
//! -0.1 every step, plus 1000/N the first time any wheel touches each of the N tiles. Leaving the playfield
//! (|x| or |y| > 2000/6) gives -100 for that step instead. Finishing in 732 steps scores 1000 - 73.2 = 926.8.
//!
//! ## Starting State
//! The car starts at rest on the first centre point of the track, facing along it. As in Gym, `reset` runs one
//! step without an action (time 0.02 s); the tiles touched there are rewarded in the first real step. (Gym's
//! hull also turns by about 5% of its start angle in that step, from a quirk in how it attaches the wheels;
//! dreamplay's does not.)
//!
//! ## Episode Termination
//! Terminated when every tile has been visited, or (Gym v3's `lap_complete_percent = 0.95`) when a wheel
//! touches or leaves tile 0 after more than 95% of the tiles have been visited, or when the car leaves the
//! playfield. Truncated at 1,000 steps (Gym's `TimeLimit`, built in). Stepping after the end keeps simulating:
//! the flags stay raised while their cause holds.
//!
//! ## Arguments
//! `CarRacing::new(seed)`: everything random (the track) derives from `seed` through `ChaCha8Rng`.
//! Gym's `lap_complete_percent` is fixed at 0.95 ([`LAP_COMPLETE_PERCENT`]); `domain_randomize` and
//! `continuous = False` are not provided.
//!
//! ## Version History
//! - dreamplay v0: port of Gymnasium CarRacing-v3. Fed Gym's own random draws, the track generator rebuilds
//!   Gym's tracks (tests replay recorded seeds); the car matches Gym's to 4-5 digits in a straight line.
//!   Departures from Gym are marked `Departure from Gym:` in the code; in short: one rigid body instead of
//!   Box2D's jointed bodies (the wheels start attached, the joints never stretch), f64 instead of Box2D's f32,
//!   its own RNG (so a seed gives a different track than in Gym), seamless batched polygon filling instead of
//!   pygame's supersampled drawing, no skid marks, and seven-segment reward digits instead of a font.

pub mod car;
pub mod render;
pub mod resample;
pub mod track;

use std::cell::RefCell;

use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tiny_skia::Pixmap;

use super::{ActionError, ActionSpace, Env, EnvKind, Frame, OBS_SIZE, Step};
pub use car::Car;
pub use render::PLAYFIELD;
pub use track::{Kerb, Tile, Track, TrackPoint};

/// Simulation steps per second; one step integrates dt = 1/FPS.
pub const FPS: u32 = 50;
/// Side of Gym's square state frame (pixels).
pub const STATE_SIZE: u32 = 96;
/// Rows of the state frame above the HUD, the part World Models keeps.
pub const STATE_CROP_ROWS: u32 = 84;
/// Steps before the episode is truncated (Gym registers CarRacing with `max_episode_steps=1000`).
pub const MAX_EPISODE_STEPS: u32 = 1000;
/// Reward per step: the clock is always running.
pub const STEP_REWARD: f64 = -0.1;
/// Reward for a whole lap's tiles, shared equally between them.
pub const TRACK_REWARD: f64 = 1000.0;
/// Reward for the step that leaves the playfield.
pub const OFF_PLAYFIELD_REWARD: f64 = -100.0;
/// Gym v3: touching tile 0 after visiting more than this fraction of tiles completes the lap.
pub const LAP_COMPLETE_PERCENT: f64 = 0.95;

pub const ACTION_SPACE: ActionSpace = ActionSpace {
    names: &["steer", "gas", "brake"],
    low: &[-1.0, 0.0, 0.0],
    high: &[1.0, 1.0, 1.0],
};

/// The paper's map from three tanh outputs in [-1, 1] to the action: steer = a0,
/// gas = (a1 + 1) / 2, brake = clip(a2, 0, 1). Both C and the random controller act through it.
pub fn action_from_tanh(out: &[f32]) -> Vec<f32> {
    vec![out[0], (out[1] + 1.0) / 2.0, out[2].clamp(0.0, 1.0)]
}

const DT: f64 = 1.0 / FPS as f64;

/// The physical state, read-only, for traces and comparisons with Gym.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CarRacingState {
    /// Hull origin (Box2D's `hull.position`), world units.
    pub x: f64,
    pub y: f64,
    /// Velocity of the car's centre of mass (units/s).
    pub vx: f64,
    pub vy: f64,
    /// Hull angle (radians, counter-clockwise; the car faces `(-sin, cos)`).
    pub angle: f64,
    /// rad/s, counter-clockwise positive.
    pub angular_velocity: f64,
    /// Wheel spin (rad/s): front-left, front-right, rear-left, rear-right.
    pub wheel_omega: [f64; 4],
    /// Front steering joint angle (radians, counter-clockwise positive: negative is a right turn).
    pub steering_angle: f64,
    /// Rear wheels' current gas (after the ramp).
    pub gas: f64,
    pub brake: f64,
    pub tiles_visited: usize,
    pub tile_count: usize,
    pub elapsed_steps: u32,
}

/// The CarRacing environment.
///
/// Departure from Gym: physics runs in f64 (Box2D uses f32), and tracks come from `ChaCha8Rng`, so a seed does
/// not give Gym's track for that seed (the generator and its statistics are Gym's).
pub struct CarRacing {
    track: Track,
    car: Car,
    /// Per tile: visited (first touched by a wheel).
    visited: Vec<bool>,
    tiles_visited: usize,
    /// Per wheel: the tiles it overlapped at the last contact update (Gym's `wheel.tiles`).
    wheel_tiles: [Vec<u32>; 4],
    /// Scratch for the new contact sets.
    scratch_tiles: Vec<u32>,
    /// Gym's running `self.reward` and `self.prev_reward`; their difference is the step reward.
    total_reward: f64,
    prev_reward: f64,
    /// Set once a lap completes (Gym's `new_lap`).
    lap_complete: bool,
    /// Seconds simulated, including `reset`'s step (Gym's `self.t`).
    time: f64,
    elapsed_steps: u32,
    /// Reused canvas for the observation (rows 0..84 of the 96x96 state).
    obs_canvas: RefCell<ObsCanvas>,
}

struct ObsCanvas {
    pixmap: Pixmap,
    /// `imageops::resize(.., Triangle)` from 96x84 to 64x64, bit for bit, with its weights precomputed.
    resizer: resample::TriangleResizer,
}

impl ObsCanvas {
    fn new() -> ObsCanvas {
        ObsCanvas {
            pixmap: Pixmap::new(STATE_SIZE, STATE_CROP_ROWS)
                .expect("precondition: 96x84 is a valid pixmap size"),
            resizer: resample::TriangleResizer::new(
                STATE_SIZE,
                STATE_CROP_ROWS,
                OBS_SIZE,
                OBS_SIZE,
            ),
        }
    }
}

/// Copies an opaque premultiplied RGBA pixmap into an RGB image of the same size.
fn pixmap_to_rgb(pixmap: &Pixmap, rgb: &mut RgbImage) {
    for (dst, src) in rgb
        .as_mut()
        .chunks_exact_mut(3)
        .zip(pixmap.data().chunks_exact(4))
    {
        dst.copy_from_slice(&src[..3]);
    }
}

impl CarRacing {
    /// A new env, already reset with `seed`.
    pub fn new(seed: u64) -> CarRacing {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        CarRacing::on_track(Track::generate(&mut rng))
    }

    /// A new episode on a given track (e.g. one rebuilt from Gym's own draws with [`Track::generate_with`], to
    /// compare with Gym step by step). `reset` afterwards generates tracks from seeds as usual.
    pub fn on_track(track: Track) -> CarRacing {
        let mut env = CarRacing {
            car: start_car(&track),
            visited: vec![false; track.tile_count()],
            track,
            tiles_visited: 0,
            wheel_tiles: Default::default(),
            scratch_tiles: Vec::new(),
            total_reward: 0.0,
            prev_reward: 0.0,
            lap_complete: false,
            time: 0.0,
            elapsed_steps: 0,
            obs_canvas: RefCell::new(ObsCanvas::new()),
        };
        env.start_episode();
        env
    }

    /// Gym's `reset` after the track: zeroed counters, then one step with no action.
    fn start_episode(&mut self) {
        self.car = start_car(&self.track);
        self.visited = vec![false; self.track.tile_count()];
        self.tiles_visited = 0;
        for tiles in &mut self.wheel_tiles {
            tiles.clear();
        }
        self.total_reward = 0.0;
        self.prev_reward = 0.0;
        self.lap_complete = false;
        self.time = 0.0;
        self.elapsed_steps = 0;
        self.advance_physics();
    }

    /// One simulation step in Gym's order: the car's forces from the contacts of the last update, then Box2D's
    /// contact update at the current pose (rewards), then integration.
    fn advance_physics(&mut self) {
        self.car.apply_wheel_forces(DT);
        self.update_contacts();
        self.car.integrate(DT);
        self.time += DT;
    }

    /// Finds the tiles each wheel overlaps and handles Gym's begin/end contact events.
    ///
    /// Box2D reports a sensor contact when the shapes overlap at the start of `world.Step`, before it integrates;
    /// `advance_physics` calls this at the same point.
    // Departure from Gym: overlap is the exact convex test, without Box2D's 0.01 polygon skin.
    // Departure from Gym: only wheels repaint a tile in the plain road colour; in Gym any body does (the hull
    // reaches a few tenths of a unit further forward), which only shifts when a tile's tint disappears.
    // Departure from Gym: contact events are handled wheel by wheel, in tile order; Box2D's order is its
    // contact list's, which matters only for the lap check within a single step.
    fn update_contacts(&mut self) {
        let tile_count = self.track.tile_count();
        // A wheel box fits in a circle of this radius.
        let wheel_radius = car::WHEEL_W.hypot(car::WHEEL_R);
        for wheel_index in 0..4 {
            let pose = self.car.wheel_pose(wheel_index);
            let corners = car::wheel_box(pose);
            let mut current = std::mem::take(&mut self.scratch_tiles);
            current.clear();
            for (tile_index, tile) in self.track.tiles.iter().enumerate() {
                let reach = tile.radius + wheel_radius;
                let dx = tile.center[0] - pose.center[0];
                let dy = tile.center[1] - pose.center[1];
                if dx * dx + dy * dy > reach * reach {
                    continue;
                }
                if car::convex_overlap(&corners, &tile.quad) {
                    current.push(tile_index as u32);
                }
            }
            let previous = std::mem::replace(&mut self.wheel_tiles[wheel_index], current);
            // End contacts: only tile 0's matters (the lap check).
            for &tile_index in &previous {
                if !self.wheel_tiles[wheel_index].contains(&tile_index) {
                    self.check_lap(tile_index, tile_count);
                }
            }
            // Begin contacts: the lap check, then the first-visit reward.
            for position in 0..self.wheel_tiles[wheel_index].len() {
                let tile_index = self.wheel_tiles[wheel_index][position];
                if previous.contains(&tile_index) {
                    continue;
                }
                self.check_lap(tile_index, tile_count);
                let Some(visited) = self.visited.get_mut(tile_index as usize) else {
                    continue;
                };
                if !*visited {
                    *visited = true;
                    self.tiles_visited += 1;
                    self.total_reward += TRACK_REWARD / tile_count as f64;
                }
            }
            self.car.wheels[wheel_index].on_road = !self.wheel_tiles[wheel_index].is_empty();
            self.scratch_tiles = previous;
        }
    }

    /// Gym's `FrictionDetector`: a contact with tile 0 once enough tiles are visited completes the lap.
    fn check_lap(&mut self, tile_index: u32, tile_count: usize) {
        if tile_index == 0 && self.tiles_visited as f64 / tile_count as f64 > LAP_COMPLETE_PERCENT {
            self.lap_complete = true;
        }
    }

    /// The generated track, read-only.
    pub fn track(&self) -> &Track {
        &self.track
    }

    /// The car, read-only.
    pub fn car(&self) -> &Car {
        &self.car
    }

    /// Which tiles have been visited.
    pub fn visited_tiles(&self) -> &[bool] {
        &self.visited
    }

    pub fn state(&self) -> CarRacingState {
        let [x, y] = self.car.position();
        CarRacingState {
            x,
            y,
            vx: self.car.velocity[0],
            vy: self.car.velocity[1],
            angle: self.car.angle,
            angular_velocity: self.car.angular_velocity,
            wheel_omega: self.car.wheels.map(|w| w.omega),
            steering_angle: self.car.wheels[0].joint_angle,
            gas: self.car.wheels[2].gas,
            brake: self.car.wheels[0].brake,
            tiles_visited: self.tiles_visited,
            tile_count: self.track.tile_count(),
            elapsed_steps: self.elapsed_steps,
        }
    }

    fn scene(&self) -> render::Scene<'_> {
        render::Scene {
            track: &self.track,
            visited: &self.visited,
            car: &self.car,
            time: self.time,
            reward: self.total_reward,
        }
    }

    /// Test hook: moves the car (at rest) so its hull origin is at `(x, y)` facing `angle`. Not part of the
    /// env's interface; tests use it to reach places a 1,000-step episode cannot.
    #[doc(hidden)]
    pub fn place_car_for_tests(&mut self, x: f64, y: f64, angle: f64) {
        self.car = Car::new(angle, x, y);
    }
}

fn start_car(track: &Track) -> Car {
    match track.points.first() {
        Some(start) => Car::new(start.beta, start.x, start.y),
        // Unreachable: generation only accepts tracks with points.
        None => Car::new(0.0, 0.0, 0.0),
    }
}

impl Env for CarRacing {
    fn kind(&self) -> EnvKind {
        EnvKind::CarRacing
    }

    fn reset(&mut self, seed: u64) -> Frame {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.track = Track::generate(&mut rng);
        self.start_episode();
        self.observation()
    }

    fn step(&mut self, action: &[f32]) -> Result<Step, ActionError> {
        let action = ACTION_SPACE.validate(action)?;
        let [steer, gas, brake] = [action[0], action[1], action[2]].map(f64::from);
        // Gym calls `car.steer(-action[0])`: positive steer turns the wheels clockwise, to the right.
        self.car.set_steer(-steer);
        self.car.set_gas(gas);
        self.car.set_brake(brake);
        self.advance_physics();
        self.elapsed_steps = self.elapsed_steps.saturating_add(1);

        self.total_reward += STEP_REWARD;
        let mut reward = self.total_reward - self.prev_reward;
        self.prev_reward = self.total_reward;
        let mut terminated = self.tiles_visited == self.track.tile_count() || self.lap_complete;
        let [x, y] = self.car.position();
        if x.abs() > PLAYFIELD || y.abs() > PLAYFIELD {
            terminated = true;
            reward = OFF_PLAYFIELD_REWARD;
        }
        let truncated = self.elapsed_steps >= MAX_EPISODE_STEPS;
        Ok(Step {
            obs: self.observation(),
            reward: reward as f32,
            terminated,
            truncated,
        })
    }

    fn observation(&self) -> Frame {
        let scene = self.scene();
        let mut canvas = self.obs_canvas.borrow_mut();
        let ObsCanvas { pixmap, resizer } = &mut *canvas;
        // The HUD lies entirely in the cropped rows, so it is not drawn at all.
        render::draw_scene(pixmap, &scene, STATE_SIZE, STATE_SIZE, false);
        let mut obs = RgbImage::new(OBS_SIZE, OBS_SIZE);
        // The RGBA pixmap is opaque, so its premultiplied bytes are the plain colour.
        let resized = resizer.resize(pixmap.data(), 4, obs.as_mut());
        debug_assert!(
            resized,
            "the canvas and the resizer are made for the same sizes"
        );
        obs
    }

    fn render(&self, width: u32, height: u32) -> Frame {
        let Some(mut pixmap) = Pixmap::new(width, height) else {
            // tiny-skia refuses zero and absurdly large sizes: a zero-sized request gets its empty frame, an
            // oversized one an empty frame rather than an allocation failure.
            return if width == 0 || height == 0 {
                RgbImage::new(width, height)
            } else {
                RgbImage::new(0, 0)
            };
        };
        render::draw_scene(&mut pixmap, &self.scene(), width, height, true);
        let mut rgb = RgbImage::new(width, height);
        pixmap_to_rgb(&pixmap, &mut rgb);
        rgb
    }

    fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.state()).unwrap_or(serde_json::Value::Null)
    }
}
