//! Track generation: Gym's 12 noisy checkpoints, the traced centre line, one closed lap, kerbs and tiles.
//!
//! Everything random is drawn from the caller's `ChaCha8Rng`; a rejected track retries from the same stream,
//! so a seed always gives the same track.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Gym's world scale: its pixel-ish constants are divided by this.
pub const SCALE: f64 = 6.0;
/// The track is a heavily morphed circle of this radius (world units).
pub const TRACK_RAD: f64 = 900.0 / SCALE;
/// Distance between consecutive centre points (world units): one tile's length.
pub const TRACK_DETAIL_STEP: f64 = 21.0 / SCALE;
/// Most the heading may turn per centre point (radians).
pub const TRACK_TURN_RATE: f64 = 0.31;
/// Half-width of the road (world units).
pub const TRACK_WIDTH: f64 = 40.0 / SCALE;
/// Width of a kerb (world units).
pub const BORDER: f64 = 8.0 / SCALE;
/// A kerb needs this many consecutive sharp same-direction turns.
pub const BORDER_MIN_COUNT: usize = 4;
/// Number of random checkpoints the tracer steers through.
pub const CHECKPOINTS: usize = 12;
/// Gym gives up tracing after this many centre points.
const TRACE_LIMIT: usize = 2500;
/// Gym stops tracing once it has counted more than this many laps.
const TRACE_LAPS: u32 = 4;

/// Road colour, RGB; tile `i` adds `(i % 3) * 2.55` to each channel (Gym: `road_color + 0.01 * (i % 3) * 255`).
pub const ROAD_COLOR: [u8; 3] = [102, 102, 102];
pub const KERB_WHITE: [u8; 3] = [255, 255, 255];
pub const KERB_RED: [u8; 3] = [255, 0, 0];

/// One centre point of the traced lap.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrackPoint {
    /// Polar angle of the point around the origin (radians), as the tracer saw it.
    pub alpha: f64,
    /// Heading parameter: the road runs along `(-sin beta, cos beta)`; `(cos beta, sin beta)` points across it.
    pub beta: f64,
    pub x: f64,
    pub y: f64,
}

/// A road tile: the quad between centre points `i - 1` and `i` (tile 0 closes the loop).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tile {
    /// Corners in world units: `[left_i, right_i, right_{i-1}, left_{i-1}]`, as Gym orders them.
    pub quad: [[f64; 2]; 4],
    /// Colour until a wheel first touches it (Gym then resets it to the plain road colour).
    pub color: [u8; 3],
    /// Centre and radius of a circle holding the quad, for cheap culling and contact broad-phase.
    pub center: [f64; 2],
    pub radius: f64,
}

/// A red or white kerb quad on the outside of a hard turn: drawn like a tile, never touched.
pub type Kerb = Tile;

/// A generated track, read-only.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Track {
    /// Centre points of exactly one lap; the car starts at `points[0]`.
    pub points: Vec<TrackPoint>,
    /// One tile per centre point.
    pub tiles: Vec<Tile>,
    pub kerbs: Vec<Kerb>,
    /// How many tracings it took (1 when the first was accepted).
    pub attempts: u32,
}

impl Track {
    /// Generates a track, retrying (with the same RNG stream) until one closes cleanly, as Gym's `reset` does.
    pub fn generate(rng: &mut ChaCha8Rng) -> Track {
        Track::generate_with(|low, high| rng.random_range(low..high))
    }

    /// The same generator fed by any source of uniform draws `uniform(low, high)`, called exactly where Gym
    /// calls `np_random.uniform(low, high)`: tests replay Gym's own draws through it and compare tracks.
    pub fn generate_with(mut uniform: impl FnMut(f64, f64) -> f64) -> Track {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(mut track) = try_create_track(&mut uniform) {
                track.attempts = attempts;
                return track;
            }
        }
    }

    pub fn tile_count(&self) -> usize {
        self.tiles.len()
    }
}

/// numpy's `sign`: 0 at 0 (Rust's `signum` gives 1).
pub(crate) fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn bounding_circle(quad: &[[f64; 2]; 4]) -> ([f64; 2], f64) {
    let cx = quad.iter().map(|p| p[0]).sum::<f64>() / 4.0;
    let cy = quad.iter().map(|p| p[1]).sum::<f64>() / 4.0;
    let radius = quad
        .iter()
        .map(|p| ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt())
        .fold(0.0, f64::max);
    ([cx, cy], radius)
}

/// One attempt of Gym's `_create_track`; `None` where Gym returns False.
fn try_create_track(uniform: &mut impl FnMut(f64, f64) -> f64) -> Option<Track> {
    // 1. Checkpoints. Both random draws happen for every checkpoint (even the two pinned ones) to keep the
    // stream's structure the same as Gym's.
    let mut checkpoints = [(0.0_f64, 0.0_f64, 0.0_f64); CHECKPOINTS];
    let sector = 2.0 * PI / CHECKPOINTS as f64;
    for (c, checkpoint) in checkpoints.iter_mut().enumerate() {
        let noise = uniform(0.0, sector);
        let mut alpha = sector * c as f64 + noise;
        let mut rad = uniform(TRACK_RAD / 3.0, TRACK_RAD);
        if c == 0 {
            alpha = 0.0;
            rad = 1.5 * TRACK_RAD;
        }
        if c == CHECKPOINTS - 1 {
            alpha = sector * c as f64;
            rad = 1.5 * TRACK_RAD;
        }
        *checkpoint = (alpha, rad * alpha.cos(), rad * alpha.sin());
    }
    let start_alpha = -0.5 * sector;

    // 2. Trace: steer from checkpoint to checkpoint, one detail step at a time.
    let (mut x, mut y, mut beta) = (1.5 * TRACK_RAD, 0.0_f64, 0.0_f64);
    let mut dest_i = 0usize;
    let mut laps = 0u32;
    let mut visited_other_side = false;
    let mut traced: Vec<TrackPoint> = Vec::with_capacity(TRACE_LIMIT);
    for _ in 0..TRACE_LIMIT {
        let mut alpha = y.atan2(x);
        if visited_other_side && alpha > 0.0 {
            laps += 1;
            visited_other_side = false;
        }
        if alpha < 0.0 {
            visited_other_side = true;
            alpha += 2.0 * PI;
        }
        // The destination is the first checkpoint (from dest_i on) not behind us; past the last one, look
        // again a full turn earlier.
        let (dest_x, dest_y) = loop {
            let mut found = None;
            loop {
                let (dest_alpha, cx, cy) = checkpoints[dest_i % CHECKPOINTS];
                if alpha <= dest_alpha {
                    found = Some((cx, cy));
                    break;
                }
                dest_i += 1;
                if dest_i.is_multiple_of(CHECKPOINTS) {
                    break;
                }
            }
            if let Some(dest) = found {
                break dest;
            }
            alpha -= 2.0 * PI;
        };

        let (r1x, r1y) = (beta.cos(), beta.sin());
        let (p1x, p1y) = (-r1y, r1x);
        let mut proj = r1x * (dest_x - x) + r1y * (dest_y - y);
        while beta - alpha > 1.5 * PI {
            beta -= 2.0 * PI;
        }
        while beta - alpha < -1.5 * PI {
            beta += 2.0 * PI;
        }
        let prev_beta = beta;
        proj *= SCALE;
        if proj > 0.3 {
            beta -= TRACK_TURN_RATE.min((0.001 * proj).abs());
        }
        if proj < -0.3 {
            beta += TRACK_TURN_RATE.min((0.001 * proj).abs());
        }
        x += p1x * TRACK_DETAIL_STEP;
        y += p1y * TRACK_DETAIL_STEP;
        traced.push(TrackPoint {
            alpha,
            beta: 0.5 * (prev_beta + beta),
            x,
            y,
        });
        if laps > TRACE_LAPS {
            break;
        }
    }

    // 3. Keep one lap: between the last two crossings of start_alpha (the first laps are warm-up).
    let mut i1 = None;
    let mut i2 = None;
    let mut i = traced.len();
    loop {
        if i <= 1 {
            return None;
        }
        i -= 1;
        let passes_start = traced[i].alpha > start_alpha && traced[i - 1].alpha <= start_alpha;
        if passes_start && i2.is_none() {
            i2 = Some(i);
        } else if passes_start && i1.is_none() {
            i1 = Some(i);
            break;
        }
    }
    let (i1, i2) = (i1?, i2?);
    // Gym slices `track[i1 : i2 - 1]`.
    if i2 < i1 + 1 + BORDER_MIN_COUNT + 2 {
        return None;
    }
    let points: Vec<TrackPoint> = traced[i1..i2 - 1].to_vec();
    let first = points[0];
    let last = points[points.len() - 1];
    // Gym's gap measure (not a true projection, but it is the rule).
    let glue_gap = ((first.beta.cos() * (first.x - last.x)).powi(2)
        + (first.beta.sin() * (first.y - last.y)).powi(2))
    .sqrt();
    if glue_gap > TRACK_DETAIL_STEP {
        return None;
    }

    // 4. Kerbs on hard turns: BORDER_MIN_COUNT consecutive turns sharper than a fifth of the turn rate, all the
    // same way. Python's negative indices wrap, so indices here are taken modulo n.
    let n = points.len();
    let wrap = |i: isize| -> usize { i.rem_euclid(n as isize) as usize };
    let mut border = vec![false; n];
    for (i, is_border) in border.iter_mut().enumerate() {
        let mut good = true;
        let mut oneside = 0.0;
        for neg in 0..BORDER_MIN_COUNT as isize {
            let beta1 = points[wrap(i as isize - neg)].beta;
            let beta2 = points[wrap(i as isize - neg - 1)].beta;
            good &= (beta1 - beta2).abs() > TRACK_TURN_RATE * 0.2;
            oneside += sign(beta1 - beta2);
        }
        good &= oneside.abs() == BORDER_MIN_COUNT as f64;
        *is_border = good;
    }
    // Spread each kerb to the tiles before it, in place and in order as Gym does (so a kerb near the start
    // can cascade from the end of the list).
    for i in 0..n {
        for neg in 0..BORDER_MIN_COUNT as isize {
            let j = wrap(i as isize - neg);
            border[j] |= border[i];
        }
    }

    // 5. Tiles (and their kerbs) between point i-1 and point i.
    let mut tiles = Vec::with_capacity(n);
    let mut kerbs = Vec::new();
    for i in 0..n {
        let p1 = points[i];
        let p2 = points[wrap(i as isize - 1)];
        let (c1, s1) = (p1.beta.cos(), p1.beta.sin());
        let (c2, s2) = (p2.beta.cos(), p2.beta.sin());
        let road1_l = [p1.x - TRACK_WIDTH * c1, p1.y - TRACK_WIDTH * s1];
        let road1_r = [p1.x + TRACK_WIDTH * c1, p1.y + TRACK_WIDTH * s1];
        let road2_l = [p2.x - TRACK_WIDTH * c2, p2.y - TRACK_WIDTH * s2];
        let road2_r = [p2.x + TRACK_WIDTH * c2, p2.y + TRACK_WIDTH * s2];
        let quad = [road1_l, road1_r, road2_r, road2_l];
        let (center, radius) = bounding_circle(&quad);
        // Gym: int(102 + 0.01 * (i % 3) * 255) -> 102, 104, 107.
        let tint = (0.01 * (i % 3) as f64 * 255.0) as u8;
        let color = ROAD_COLOR.map(|c| c + tint);
        tiles.push(Tile {
            quad,
            color,
            center,
            radius,
        });

        if border[i] {
            let side = sign(p2.beta - p1.beta);
            let inner = side * TRACK_WIDTH;
            let outer = side * (TRACK_WIDTH + BORDER);
            let quad = [
                [p1.x + inner * c1, p1.y + inner * s1],
                [p1.x + outer * c1, p1.y + outer * s1],
                [p2.x + outer * c2, p2.y + outer * s2],
                [p2.x + inner * c2, p2.y + inner * s2],
            ];
            let (center, radius) = bounding_circle(&quad);
            let color = if i % 2 == 0 { KERB_WHITE } else { KERB_RED };
            kerbs.push(Kerb {
                quad,
                color,
                center,
                radius,
            });
        }
    }

    Some(Track {
        points,
        tiles,
        kerbs,
        attempts: 1,
    })
}
