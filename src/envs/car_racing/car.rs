//! Car dynamics: Gym's `car_dynamics.py` on one rigid body.
//!
//! Gym builds the car in Box2D as a hull plus four wheel bodies held by revolute joints (the front two steered
//! by joint motors). Box2D only integrates here: the per-wheel friction forces are computed by the Python code,
//! and the joints hold the wheels rigidly to the hull. So dreamplay models the car as ONE rigid body (hull plus
//! wheels' mass) that receives the four wheel forces at the wheel positions, plus a steering-angle state for the
//! front joints, integrated by semi-implicit Euler as Box2D does.
//!
//! Checked against Gym itself (gymnasium 1.2.3, box2d 2.3.10, the car alone on grass): after 60 steps of full
//! gas the speed, position and wheel spins agree to 4-5 digits, and through a full-lock turn the heading and
//! yaw rate still agree closely (see the test `car_dynamics_match_gym_on_grass`).
//!
//! Departure from Gym: the joints are exact here, whereas Box2D's iterative solver lets them stretch slightly.
//! Departure from Gym: Gym creates the wheels at unrotated offsets from the hull, a quirk that Box2D's position
//! solver snaps together over the first steps, turning the hull a little (about 0.04 rad for a car starting at
//! 45 degrees, less at the usual start angles); here they start attached.
//! Departure from Gym: the steering joint follows its motor speed exactly (Box2D's motor, at 64.8 torque
//! against a wheel of ~0.008 inertia, reaches it within the step), with Box2D's limit rules applied to that
//! (see `step_steering_joint`), but without the tiny drift the joint picks up from Box2D's solver.

use super::track::sign;

/// Gym's size unit for the car geometry (world units per car unit).
pub const SIZE: f64 = 0.02;
/// Engine power (W-like units): 1e8 SIZE^2.
pub const ENGINE_POWER: f64 = 100_000_000.0 * SIZE * SIZE;
/// Wheel moment of inertia for the spin (omega) equation: 4000 SIZE^2.
pub const WHEEL_MOMENT_OF_INERTIA: f64 = 4000.0 * SIZE * SIZE;
/// Tyre friction force limit on road: 1e6 SIZE^2 (friction ~ mass ~ size^2).
pub const FRICTION_LIMIT: f64 = 1_000_000.0 * SIZE * SIZE;
/// Friction multiplier on grass (a wheel touching no tile).
pub const GRASS_FRICTION: f64 = 0.6;
/// Wheel radius in world units (27 car units).
pub const WHEEL_R: f64 = 27.0 * SIZE;
/// Wheel half-width in world units (14 car units).
pub const WHEEL_W: f64 = 14.0 * SIZE;
/// Wheel density (the hull's is 1).
const WHEEL_DENSITY: f64 = 0.1;
/// Gym's "random coefficient to cut oscillations": slip speed to force, 205000 SIZE^2.
const SLIP_GAIN: f64 = 205_000.0 * SIZE * SIZE;
/// Brake spin-down rate at brake = 1 (radians per second... per step, as Gym applies it).
const BRAKE_FORCE: f64 = 15.0;
/// At or above this brake value the wheels lock.
const BRAKE_LOCK: f64 = 0.9;
/// Gas may rise by at most this much per step (it drops at once).
const GAS_RAMP: f64 = 0.1;
/// Steering joint limits (radians).
pub const STEER_LIMIT: f64 = 0.4;
/// Box2D's b2_angularSlop (2 degrees): how far past its limit a joint may rest before it is pushed back.
const ANGULAR_SLOP: f64 = 2.0 / 180.0 * std::f64::consts::PI;
/// Steering motor: speed = sign(e) * min(STEER_GAIN |e|, STEER_MAX_SPEED) (rad/s).
const STEER_GAIN: f64 = 50.0;
const STEER_MAX_SPEED: f64 = 3.0;
/// Box2D's b2_maxTranslation: a body moves at most this far per step (world units).
const MAX_TRANSLATION: f64 = 2.0;
/// Box2D's b2_maxRotation: a body turns at most this far per step (radians).
const MAX_ROTATION: f64 = 0.5 * std::f64::consts::PI;

/// Wheel centres in hull coordinates (car units): front-left, front-right, rear-left, rear-right.
pub const WHEEL_POS: [[f64; 2]; 4] = [[-55.0, 80.0], [55.0, 80.0], [-55.0, -82.0], [55.0, -82.0]];
/// The hull's four density-1 polygons (car units).
pub const HULL_POLY1: [[f64; 2]; 4] =
    [[-60.0, 130.0], [60.0, 130.0], [60.0, 110.0], [-60.0, 110.0]];
pub const HULL_POLY2: [[f64; 2]; 4] = [[-15.0, 120.0], [15.0, 120.0], [20.0, 20.0], [-20.0, 20.0]];
pub const HULL_POLY3: [[f64; 2]; 8] = [
    [25.0, 20.0],
    [50.0, -10.0],
    [50.0, -40.0],
    [20.0, -90.0],
    [-20.0, -90.0],
    [-50.0, -40.0],
    [-50.0, -10.0],
    [-25.0, 20.0],
];
pub const HULL_POLY4: [[f64; 2]; 4] = [
    [-50.0, -120.0],
    [50.0, -120.0],
    [50.0, -90.0],
    [-50.0, -90.0],
];

/// Hull polygons as slices, for iteration.
pub const HULL_POLYS: [&[[f64; 2]]; 4] = [&HULL_POLY1, &HULL_POLY2, &HULL_POLY3, &HULL_POLY4];

/// Mass, centroid and moment of inertia (about the origin) of a uniform polygon, in world units.
/// The polygon may be wound either way.
fn polygon_mass(vertices_car_units: &[[f64; 2]], density: f64) -> (f64, [f64; 2], f64) {
    let n = vertices_car_units.len();
    let mut area = 0.0;
    let mut cx = 0.0;
    let mut cy = 0.0;
    let mut inertia = 0.0;
    for i in 0..n {
        let [x1, y1] = vertices_car_units[i].map(|v| v * SIZE);
        let [x2, y2] = vertices_car_units[(i + 1) % n].map(|v| v * SIZE);
        let cross = x1 * y2 - x2 * y1;
        area += 0.5 * cross;
        cx += cross * (x1 + x2) / 6.0;
        cy += cross * (y1 + y2) / 6.0;
        inertia += cross * (x1 * x1 + x1 * x2 + x2 * x2 + y1 * y1 + y1 * y2 + y2 * y2) / 12.0;
    }
    // The signs cancel in the centroid; take magnitudes for mass and inertia.
    let centroid = [cx / area, cy / area];
    (density * area.abs(), centroid, density * inertia.abs())
}

/// The car's rigid-body mass properties, computed from Gym's polygons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassProperties {
    /// Hull alone (Gym: about 7.06).
    pub hull_mass: f64,
    /// One wheel box (Gym: about 0.06).
    pub wheel_mass: f64,
    /// Hull plus four wheels.
    pub total_mass: f64,
    /// Centre of mass in hull coordinates (world units).
    pub local_com: [f64; 2],
    /// Moment of inertia of the whole car about its centre of mass.
    pub inertia: f64,
}

impl MassProperties {
    pub fn compute() -> MassProperties {
        let mut hull_mass = 0.0;
        let mut first_moment = [0.0, 0.0];
        let mut inertia_origin = 0.0;
        for poly in HULL_POLYS {
            let (m, c, i) = polygon_mass(poly, 1.0);
            hull_mass += m;
            first_moment[0] += m * c[0];
            first_moment[1] += m * c[1];
            inertia_origin += i;
        }
        let wheel_box = [[-14.0, 27.0], [14.0, 27.0], [14.0, -27.0], [-14.0, -27.0]];
        let (wheel_mass, _, wheel_inertia_own) = polygon_mass(&wheel_box, WHEEL_DENSITY);
        let mut total_mass = hull_mass;
        for [wx, wy] in WHEEL_POS {
            let (x, y) = (wx * SIZE, wy * SIZE);
            total_mass += wheel_mass;
            first_moment[0] += wheel_mass * x;
            first_moment[1] += wheel_mass * y;
            // Parallel-axis theorem to the hull origin.
            inertia_origin += wheel_inertia_own + wheel_mass * (x * x + y * y);
        }
        let local_com = [first_moment[0] / total_mass, first_moment[1] / total_mass];
        let inertia = inertia_origin
            - total_mass * (local_com[0] * local_com[0] + local_com[1] * local_com[1]);
        MassProperties {
            hull_mass,
            wheel_mass,
            total_mass,
            local_com,
            inertia,
        }
    }
}

/// One wheel's state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Wheel {
    /// Spin rate (rad/s); positive rolls the car forward.
    pub omega: f64,
    /// Spin angle (radians), only for drawing the tread stripe.
    pub phase: f64,
    /// Steering joint angle (radians, counter-clockwise positive); stays 0 for the rear wheels.
    pub joint_angle: f64,
    /// Steering joint motor speed set this step (rad/s).
    pub motor_speed: f64,
    pub gas: f64,
    pub brake: f64,
    /// Target joint angle (Gym clamps it only through the joint limits).
    pub steer: f64,
    /// Whether the wheel touched any road tile at the last contact update.
    pub on_road: bool,
}

/// The car: one rigid body plus wheel states.
#[derive(Debug, Clone, PartialEq)]
pub struct Car {
    pub mass: MassProperties,
    /// Centre of mass, world units.
    pub com: [f64; 2],
    /// Hull angle (radians); the car faces `(-sin angle, cos angle)`.
    pub angle: f64,
    /// Linear velocity of the centre of mass (units/s).
    pub velocity: [f64; 2],
    /// Angular velocity (rad/s, counter-clockwise positive).
    pub angular_velocity: f64,
    pub wheels: [Wheel; 4],
    /// Force and torque accumulated by `apply_wheel_forces`, consumed by `integrate`.
    force: [f64; 2],
    torque: f64,
}

/// A wheel's pose in the world: centre, angle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WheelPose {
    pub center: [f64; 2],
    pub angle: f64,
}

impl Car {
    /// A car at rest whose hull origin (Box2D's `hull.position`) sits at `(x, y)`, at hull angle `angle`.
    pub fn new(angle: f64, x: f64, y: f64) -> Car {
        let mass = MassProperties::compute();
        let mut car = Car {
            mass,
            com: [0.0, 0.0],
            angle,
            velocity: [0.0, 0.0],
            angular_velocity: 0.0,
            wheels: [Wheel::default(); 4],
            force: [0.0, 0.0],
            torque: 0.0,
        };
        let offset = car.rotate(mass.local_com);
        car.com = [x + offset[0], y + offset[1]];
        car
    }

    fn rotate(&self, v: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.angle.sin_cos();
        [c * v[0] - s * v[1], s * v[0] + c * v[1]]
    }

    /// A hull-frame point (world units) in world coordinates.
    pub fn world_point(&self, local: [f64; 2]) -> [f64; 2] {
        let r = self.rotate([
            local[0] - self.mass.local_com[0],
            local[1] - self.mass.local_com[1],
        ]);
        [self.com[0] + r[0], self.com[1] + r[1]]
    }

    /// The hull origin, Box2D's `hull.position` (what Gym's camera and playfield test use).
    pub fn position(&self) -> [f64; 2] {
        self.world_point([0.0, 0.0])
    }

    pub fn speed(&self) -> f64 {
        self.velocity[0].hypot(self.velocity[1])
    }

    pub fn wheel_pose(&self, i: usize) -> WheelPose {
        let [wx, wy] = WHEEL_POS[i];
        WheelPose {
            center: self.world_point([wx * SIZE, wy * SIZE]),
            angle: self.angle + self.wheels[i].joint_angle,
        }
    }

    /// Gym's `Car.steer(s)`: the front wheels' target angle (the env passes `-action[0]`).
    pub fn set_steer(&mut self, target: f64) {
        self.wheels[0].steer = target;
        self.wheels[1].steer = target;
    }

    /// Gym's `Car.gas`: rear wheels only, rising at most 0.1 per step, dropping at once.
    pub fn set_gas(&mut self, gas: f64) {
        let gas = gas.clamp(0.0, 1.0);
        for wheel in &mut self.wheels[2..4] {
            let diff = (gas - wheel.gas).min(GAS_RAMP);
            wheel.gas += diff;
        }
    }

    /// Gym's `Car.brake`: all four wheels.
    pub fn set_brake(&mut self, brake: f64) {
        for wheel in &mut self.wheels {
            wheel.brake = brake;
        }
    }

    /// Gym's `Car.step(dt)`: steering motors, wheel spin, and the tyre forces, accumulated for `integrate`.
    pub fn apply_wheel_forces(&mut self, dt: f64) {
        self.force = [0.0, 0.0];
        self.torque = 0.0;
        for i in 0..4 {
            let pose = self.wheel_pose(i);
            let r = [pose.center[0] - self.com[0], pose.center[1] - self.com[1]];
            // The wheel's velocity on the rigid body: v + omega x r.
            let v = [
                self.velocity[0] - self.angular_velocity * r[1],
                self.velocity[1] + self.angular_velocity * r[0],
            ];
            let wheel = &mut self.wheels[i];

            let error = wheel.steer - wheel.joint_angle;
            wheel.motor_speed = sign(error) * (STEER_GAIN * error.abs()).min(STEER_MAX_SPEED);

            let friction_limit = if wheel.on_road {
                FRICTION_LIMIT
            } else {
                FRICTION_LIMIT * GRASS_FRICTION
            };

            let (s, c) = pose.angle.sin_cos();
            let forward = [-s, c];
            let side = [c, s];
            let v_forward = forward[0] * v[0] + forward[1] * v[1];
            let v_side = side[0] * v[0] + side[1] * v[1];

            // Engine power into spin: d(omega) = dt * P / (I * omega), with +5 so it never divides by zero.
            wheel.omega +=
                dt * ENGINE_POWER * wheel.gas / WHEEL_MOMENT_OF_INERTIA / (wheel.omega.abs() + 5.0);

            if wheel.brake >= BRAKE_LOCK {
                wheel.omega = 0.0;
            } else if wheel.brake > 0.0 {
                let spin_down = (BRAKE_FORCE * wheel.brake).min(wheel.omega.abs());
                wheel.omega -= sign(wheel.omega) * spin_down;
            }
            wheel.phase += wheel.omega * dt;

            // Slip between tread and ground drives the forward force; sideways slip the lateral one.
            let mut f_force = (wheel.omega * WHEEL_R - v_forward) * SLIP_GAIN;
            let mut p_force = -v_side * SLIP_GAIN;
            let force = f_force.hypot(p_force);
            if force > friction_limit {
                f_force *= friction_limit / force;
                p_force *= friction_limit / force;
            }
            wheel.omega -= dt * f_force * WHEEL_R / WHEEL_MOMENT_OF_INERTIA;

            let applied = [
                p_force * side[0] + f_force * forward[0],
                p_force * side[1] + f_force * forward[1],
            ];
            self.force[0] += applied[0];
            self.force[1] += applied[1];
            self.torque += r[0] * applied[1] - r[1] * applied[0];
        }
    }

    /// Box2D's step for this body: semi-implicit Euler (velocity first, then position), with Box2D's caps on
    /// the motion per step, then the steering joints turn at their motor speed, up to their limits.
    pub fn integrate(&mut self, dt: f64) {
        self.velocity[0] += dt * self.force[0] / self.mass.total_mass;
        self.velocity[1] += dt * self.force[1] / self.mass.total_mass;
        self.angular_velocity += dt * self.torque / self.mass.inertia;

        let translation = dt * self.speed();
        if translation > MAX_TRANSLATION {
            let k = MAX_TRANSLATION / translation;
            self.velocity[0] *= k;
            self.velocity[1] *= k;
        }
        let rotation = dt * self.angular_velocity.abs();
        if rotation > MAX_ROTATION {
            self.angular_velocity *= MAX_ROTATION / rotation;
        }

        self.com[0] += dt * self.velocity[0];
        self.com[1] += dt * self.velocity[1];
        self.angle += dt * self.angular_velocity;

        for wheel in &mut self.wheels {
            wheel.joint_angle = step_steering_joint(wheel.joint_angle, wheel.motor_speed, dt);
        }
    }
}

/// One step of a steering joint, as Box2D 2.3's revolute joint with its motor and limit behaves.
///
/// The limit state is decided at the start of the step: a joint already at (or past) a limit cannot be driven
/// further out, and its position is corrected back only beyond Box2D's slop. A joint still inside its limits
/// moves freely for the whole step, so it can end up to one motor step (3 rad/s x dt = 0.06 rad) past the
/// limit and stays there while within the slop: Gym's full lock measures -0.420, not -0.4.
pub fn step_steering_joint(angle: f64, motor_speed: f64, dt: f64) -> f64 {
    let at_upper = angle >= STEER_LIMIT;
    let at_lower = angle <= -STEER_LIMIT;
    let blocked = (at_upper && motor_speed > 0.0) || (at_lower && motor_speed < 0.0);
    let moved = if blocked {
        angle
    } else {
        angle + dt * motor_speed
    };
    if at_upper {
        moved.min(STEER_LIMIT + ANGULAR_SLOP)
    } else if at_lower {
        moved.max(-STEER_LIMIT - ANGULAR_SLOP)
    } else {
        moved
    }
}

/// The corners of a wheel's box in world coordinates.
pub fn wheel_box(pose: WheelPose) -> [[f64; 2]; 4] {
    let (s, c) = pose.angle.sin_cos();
    let local = [
        [-WHEEL_W, WHEEL_R],
        [WHEEL_W, WHEEL_R],
        [WHEEL_W, -WHEEL_R],
        [-WHEEL_W, -WHEEL_R],
    ];
    local.map(|[x, y]| {
        [
            pose.center[0] + c * x - s * y,
            pose.center[1] + s * x + c * y,
        ]
    })
}

/// Whether two convex polygons overlap (separating-axis test).
pub fn convex_overlap(a: &[[f64; 2]], b: &[[f64; 2]]) -> bool {
    fn separated_on_edges(p: &[[f64; 2]], q: &[[f64; 2]]) -> bool {
        let n = p.len();
        for i in 0..n {
            let e0 = p[i];
            let e1 = p[(i + 1) % n];
            let axis = [e0[1] - e1[1], e1[0] - e0[0]];
            let project = |poly: &[[f64; 2]]| {
                poly.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                        let d = axis[0] * v[0] + axis[1] * v[1];
                        (lo.min(d), hi.max(d))
                    })
            };
            let (p_lo, p_hi) = project(p);
            let (q_lo, q_hi) = project(q);
            if p_hi < q_lo || q_hi < p_lo {
                return true;
            }
        }
        false
    }
    !separated_on_edges(a, b) && !separated_on_edges(b, a)
}
