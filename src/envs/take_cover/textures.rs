//! Procedural textures and sprites, generated once at first use: no Doom assets.
//!
//! Walls, floor and ceiling are 64x64 tiles at one texel per map unit, as Doom's are. Sprites are
//! RGBA with binary alpha (Doom's sprites are masked, not blended); the glow is an additive
//! brightness map.

use std::sync::OnceLock;

/// Side of every wall, floor and ceiling tile (texels = map units); a power of two for masking.
pub const TILE_SIZE: usize = 64;
/// Mask that wraps a texel coordinate into a tile.
pub const TILE_MASK: i32 = TILE_SIZE as i32 - 1;
/// Imp sprite size (texels = map units): as wide as the imp's reach, as tall as its horns.
pub const IMP_SPRITE_WIDTH: usize = 48;
pub const IMP_SPRITE_HEIGHT: usize = 64;
/// Side of the glow sprite (texels); it is scaled to the glow's world size when drawn.
pub const GLOW_SIZE: usize = 64;

/// Mip levels per tile: 64, 32, 16, 8 and 4 texels a side.
pub const MIP_LEVELS: usize = 5;

/// An opaque, tiling 64x64 texture with box-filtered mip levels, so that far surfaces average
/// their texels instead of shimmering (a 64x64 view is mostly far surfaces).
pub struct Tile {
    /// Level k is (64 >> k) texels a side, row-major RGB.
    pub levels: Vec<Vec<[u8; 3]>>,
}

impl Tile {
    /// The tile whose texel (u, v) is `texel(u, v)`, with its mip chain.
    fn from_fn(texel: impl Fn(i32, i32) -> [u8; 3]) -> Self {
        let side = TILE_SIZE as i32;
        Self::new(
            (0..side)
                .flat_map(|v| (0..side).map(move |u| (u, v)))
                .map(|(u, v)| texel(u, v))
                .collect(),
        )
    }

    fn new(texels: Vec<[u8; 3]>) -> Self {
        let mut levels = vec![texels];
        for level in 1..MIP_LEVELS {
            let side = TILE_SIZE >> level;
            let Some(finer) = levels.last() else { break };
            let mut coarser = Vec::with_capacity(side * side);
            for v in 0..side {
                for u in 0..side {
                    let mut sum = [0u32; 3];
                    for (du, dv) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let texel = finer[(2 * v + dv) * (2 * side) + 2 * u + du];
                        for (s, c) in sum.iter_mut().zip(texel) {
                            *s += u32::from(c);
                        }
                    }
                    coarser.push(sum.map(|s| (s / 4) as u8));
                }
            }
            levels.push(coarser);
        }
        Tile { levels }
    }

    /// The texel at any integer coordinate of level 0 (the tile wraps), read from mip `level`
    /// (clamped to the coarsest).
    #[inline(always)]
    pub fn at(&self, level: usize, u: i32, v: i32) -> [u8; 3] {
        let level = level.min(self.levels.len().saturating_sub(1));
        let mask = TILE_MASK >> level;
        let index = (((v >> level) & mask) as usize) * (TILE_SIZE >> level)
            + ((u >> level) & mask) as usize;
        self.levels[level][index]
    }
}

/// A masked sprite: alpha is 0 (transparent) or 255.
pub struct Sprite {
    pub width: usize,
    pub height: usize,
    /// Row-major, top row first.
    pub texels: Vec<[u8; 4]>,
}

/// Everything the renderer draws with.
pub struct Assets {
    /// The side walls.
    pub brick: Tile,
    /// The far wall, behind the imps: light, so that the dark imps stand out against it.
    pub far_wall: Tile,
    pub floor: Tile,
    pub ceiling: Tile,
    /// The imp standing, facing the player.
    pub imp_stand: Sprite,
    /// Arms raised, a fireball forming in the hand (S_TROO_ATK1/2).
    pub imp_wind_up: Sprite,
    /// Arm thrown forward (S_TROO_ATK3).
    pub imp_throw: Sprite,
    /// Additive radial glow, RGB brightness to add (alpha unused).
    pub glow: Sprite,
}

/// The shared assets, generated on first use.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| Assets {
        brick: brick_tile(),
        far_wall: sandstone_tile(),
        floor: floor_tile(),
        ceiling: ceiling_tile(),
        imp_stand: imp_sprite(ImpPose::Stand),
        imp_wind_up: imp_sprite(ImpPose::WindUp),
        imp_throw: imp_sprite(ImpPose::Throw),
        glow: glow_sprite(),
    })
}

/// A deterministic integer hash in [0, 1): texture noise without a random stream.
fn hash01(x: i32, y: i32, salt: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ salt.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h & 0x00ff_ffff) as f32 / 16_777_216.0
}

/// Smooth value noise in [0, 1) with a cell of `cell` texels, tiling every 64 texels.
fn value_noise(x: i32, y: i32, cell: i32, salt: u32) -> f32 {
    let cells = TILE_SIZE as i32 / cell;
    let (cx, cy) = (x.div_euclid(cell), y.div_euclid(cell));
    let (fx, fy) = (
        (x.rem_euclid(cell)) as f32 / cell as f32,
        (y.rem_euclid(cell)) as f32 / cell as f32,
    );
    let corner =
        |i: i32, j: i32| hash01((cx + i).rem_euclid(cells), (cy + j).rem_euclid(cells), salt);
    let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (smooth(fx), smooth(fy));
    let top = corner(0, 0) * (1.0 - sx) + corner(1, 0) * sx;
    let bottom = corner(0, 1) * (1.0 - sx) + corner(1, 1) * sx;
    top * (1.0 - sy) + bottom * sy
}

fn to_rgb(color: [f32; 3], brightness: f32) -> [u8; 3] {
    color.map(|channel| (channel * brightness).clamp(0.0, 255.0) as u8)
}

/// Where texel (u, v) falls in a running bond of `width` x `height` units, alternate rows offset
/// by half a unit: (row, column, u within the unit, v within the unit).
fn running_bond(u: i32, v: i32, width: i32, height: i32) -> (i32, i32, i32, i32) {
    let row = v / height;
    let shifted_u = (u + if row % 2 == 1 { width / 2 } else { 0 }).rem_euclid(TILE_SIZE as i32);
    (row, shifted_u / width, shifted_u % width, v % height)
}

/// Red-brown bricks, 32x16 with 2-texel mortar, alternate rows offset by half a brick.
fn brick_tile() -> Tile {
    const BRICK_WIDTH: i32 = 32;
    const BRICK_HEIGHT: i32 = 16;
    const MORTAR: i32 = 2;
    Tile::from_fn(|u, v| {
        let (row, column, in_u, in_v) = running_bond(u, v, BRICK_WIDTH, BRICK_HEIGHT);
        let grain = value_noise(u, v, 4, 7) * 0.6 + hash01(u, v, 11) * 0.4;
        if in_u < MORTAR || in_v < MORTAR {
            to_rgb([72.0, 66.0, 58.0], 0.75 + 0.3 * grain)
        } else {
            // Each brick its own tone; lit from the top-left, shadowed at the bottom-right.
            let tone = hash01(row, column, 3);
            let base = [132.0 + 30.0 * tone, 62.0 + 14.0 * tone, 40.0 + 8.0 * tone];
            let bevel = if in_u == MORTAR || in_v == MORTAR {
                1.18
            } else if in_u == BRICK_WIDTH - 1 || in_v == BRICK_HEIGHT - 1 {
                0.72
            } else {
                1.0
            };
            to_rgb(base, bevel * (0.78 + 0.36 * grain))
        }
    })
}

/// Light tan sandstone blocks, 32x32 with thin joints, for the far wall.
// Departure from the spec's "brick walls": ViZDoom's take_cover far wall is light (about
// (110, 87, 67) in a 64x64 frame) and its imps dark against it. On red brick, under the room's
// dim light, our imps averaged the wall's own colour at 64x64, so V could leave them out for
// 0.6 of squared error per frame; against this wall leaving them out costs 2.43
// (`tests/take_cover.rs`).
fn sandstone_tile() -> Tile {
    const BLOCK: i32 = 32;
    const JOINT: i32 = 1;
    Tile::from_fn(|u, v| {
        let (row, column, in_u, in_v) = running_bond(u, v, BLOCK, BLOCK);
        let tone = hash01(row, column, 51);
        let grain = value_noise(u, v, 8, 53) * 0.5 + hash01(u, v, 59) * 0.5;
        if in_u < JOINT || in_v < JOINT {
            to_rgb([150.0, 120.0, 92.0], 0.9 + 0.2 * grain)
        } else {
            let base = [240.0 + 12.0 * tone, 192.0 + 10.0 * tone, 148.0 + 8.0 * tone];
            to_rgb(base, 0.9 + 0.2 * grain)
        }
    })
}

/// Grey-brown flagstones, 32x32, with dark joints and mottling.
fn floor_tile() -> Tile {
    const STONE: i32 = 32;
    Tile::from_fn(|u, v| {
        let (in_u, in_v) = (u % STONE, v % STONE);
        let tone = hash01(u / STONE, v / STONE, 21);
        let mottle = value_noise(u, v, 8, 23) * 0.6 + hash01(u, v, 29) * 0.4;
        if in_u == 0 || in_v == 0 {
            to_rgb([40.0, 36.0, 30.0], 1.0)
        } else {
            let base = [96.0 + 16.0 * tone, 84.0 + 12.0 * tone, 66.0 + 8.0 * tone];
            let bevel = if in_u == 1 || in_v == 1 {
                1.15
            } else if in_u == STONE - 1 || in_v == STONE - 1 {
                0.75
            } else {
                1.0
            };
            to_rgb(base, bevel * (0.72 + 0.45 * mottle))
        }
    })
}

/// Cool grey ceiling panels, 16x16, with light edges and a rivet in each corner.
fn ceiling_tile() -> Tile {
    const PANEL: i32 = 16;
    Tile::from_fn(|u, v| {
        let (in_u, in_v) = (u % PANEL, v % PANEL);
        let tone = hash01(u / PANEL, v / PANEL, 41);
        let grain = hash01(u, v, 43);
        let base = [74.0 + 10.0 * tone, 74.0 + 10.0 * tone, 80.0 + 10.0 * tone];
        let brightness = if in_u == 0 || in_v == 0 {
            0.55
        } else if in_u == 1 || in_v == 1 {
            1.3
        } else if (in_u == 3 || in_u == PANEL - 3) && (in_v == 3 || in_v == PANEL - 3) {
            1.6
        } else {
            0.9 + 0.2 * grain
        };
        to_rgb(base, brightness)
    })
}

#[derive(Clone, Copy)]
enum ImpPose {
    Stand,
    WindUp,
    Throw,
}

/// A sprite part: a capsule from a to b whose radius tapers from ra to rb (an ellipse when a = b
/// and the radii are scaled), in sprite units with z up from the feet.
struct Part {
    a: (f32, f32),
    b: (f32, f32),
    radius_a: f32,
    radius_b: f32,
    /// Vertical squash of the distance (1 = round): ellipses.
    aspect: f32,
    color: [f32; 3],
    /// Lit parts keep their colour; fullbright ones (eyes, fire) ignore shading.
    fullbright: bool,
}

fn capsule(a: (f32, f32), b: (f32, f32), radius_a: f32, radius_b: f32, color: [f32; 3]) -> Part {
    Part {
        a,
        b,
        radius_a,
        radius_b,
        aspect: 1.0,
        color,
        fullbright: false,
    }
}

fn ellipse(center: (f32, f32), radius_x: f32, radius_z: f32, color: [f32; 3]) -> Part {
    Part {
        a: center,
        b: center,
        radius_a: radius_x,
        radius_b: radius_x,
        aspect: radius_x / radius_z,
        color,
        fullbright: false,
    }
}

impl Part {
    /// How deep inside the part a point is: 1 on the axis, 0 at the edge, negative outside.
    fn depth(&self, x: f32, z: f32) -> f32 {
        let (ax, az) = (self.a.0, self.a.1 * self.aspect);
        let (bx, bz) = (self.b.0, self.b.1 * self.aspect);
        let (px, pz) = (x, z * self.aspect);
        let (dx, dz) = (bx - ax, bz - az);
        let length_squared = dx * dx + dz * dz;
        let t = if length_squared > 0.0 {
            (((px - ax) * dx + (pz - az) * dz) / length_squared).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (nx, nz) = (ax + t * dx - px, az + t * dz - pz);
        let radius = self.radius_a + (self.radius_b - self.radius_a) * t;
        1.0 - (nx * nx + nz * nz).sqrt() / radius.max(0.01)
    }
}

/// Doom's imp, drawn from simple parts: brown hide, pale spikes and horns, glowing eyes.
// Departure from ViZDoom: one front view per pose instead of Doom's 8 rotations (the imps face the
// player anyway: A_FaceTarget), and no walking frames (these imps never walk).
fn imp_sprite(pose: ImpPose) -> Sprite {
    const HIDE: [f32; 3] = [152.0, 104.0, 64.0];
    const HIDE_DARK: [f32; 3] = [118.0, 78.0, 48.0];
    const BELLY: [f32; 3] = [178.0, 130.0, 86.0];
    const BONE: [f32; 3] = [226.0, 214.0, 186.0];
    const CLAW: [f32; 3] = [84.0, 56.0, 36.0];
    const EYE: [f32; 3] = [255.0, 70.0, 20.0];
    const FIRE: [f32; 3] = [255.0, 170.0, 50.0];
    let center = IMP_SPRITE_WIDTH as f32 / 2.0;
    let cx = |offset: f32| center + offset;

    let mut parts = vec![
        // Legs and feet.
        capsule((cx(-5.0), 4.0), (cx(-4.0), 24.0), 4.0, 4.6, HIDE_DARK),
        capsule((cx(5.0), 4.0), (cx(4.0), 24.0), 4.0, 4.6, HIDE_DARK),
        ellipse((cx(-6.0), 2.2), 5.0, 2.4, CLAW),
        ellipse((cx(6.0), 2.2), 5.0, 2.4, CLAW),
        // Torso, belly.
        ellipse((cx(0.0), 35.0), 10.5, 12.5, HIDE),
        ellipse((cx(0.0), 31.0), 6.0, 7.0, BELLY),
    ];
    // Arms: shoulder to hand, by pose; the right hand (screen right) throws.
    let (left_hand, right_hand) = match pose {
        ImpPose::Stand => ((cx(-15.0), 24.0), (cx(15.0), 24.0)),
        ImpPose::WindUp => ((cx(-16.0), 55.0), (cx(16.0), 57.0)),
        ImpPose::Throw => ((cx(-15.0), 24.0), (cx(8.0), 36.0)),
    };
    parts.push(capsule((cx(-10.0), 43.0), left_hand, 3.8, 3.0, HIDE));
    parts.push(capsule((cx(10.0), 43.0), right_hand, 3.8, 3.0, HIDE));
    parts.push(ellipse((left_hand.0, left_hand.1 - 1.5), 3.0, 3.0, CLAW));
    parts.push(ellipse((right_hand.0, right_hand.1 - 1.5), 3.0, 3.0, CLAW));
    // Spikes on the shoulders and elbows.
    parts.push(capsule(
        (cx(-10.0), 45.0),
        (cx(-15.0), 53.0),
        2.4,
        0.3,
        BONE,
    ));
    parts.push(capsule((cx(10.0), 45.0), (cx(15.0), 53.0), 2.4, 0.3, BONE));
    parts.push(capsule((cx(-6.0), 41.0), (cx(-8.0), 47.0), 1.6, 0.2, BONE));
    parts.push(capsule((cx(6.0), 41.0), (cx(8.0), 47.0), 1.6, 0.2, BONE));
    // Head, horns, eyes, mouth.
    parts.push(ellipse((cx(0.0), 50.0), 6.5, 7.0, HIDE));
    parts.push(capsule((cx(-4.0), 54.0), (cx(-8.0), 62.0), 2.0, 0.3, BONE));
    parts.push(capsule((cx(4.0), 54.0), (cx(8.0), 62.0), 2.0, 0.3, BONE));
    let mut eye_left = ellipse((cx(-2.6), 51.0), 1.7, 1.2, EYE);
    eye_left.fullbright = true;
    let mut eye_right = ellipse((cx(2.6), 51.0), 1.7, 1.2, EYE);
    eye_right.fullbright = true;
    parts.push(eye_left);
    parts.push(eye_right);
    parts.push(ellipse((cx(0.0), 46.0), 2.6, 1.0, [60.0, 22.0, 16.0]));
    if let ImpPose::WindUp | ImpPose::Throw = pose {
        let mut fire = ellipse((right_hand.0, right_hand.1 + 2.5), 3.6, 3.6, FIRE);
        fire.fullbright = true;
        parts.push(fire);
    }

    let (width, height) = (IMP_SPRITE_WIDTH, IMP_SPRITE_HEIGHT);
    let mut texels = vec![[0u8; 4]; width * height];
    let mut opaque = vec![false; width * height];
    for row in 0..height {
        for column in 0..width {
            let (x, z) = (column as f32 + 0.5, (height - row) as f32 - 0.5);
            // Later parts are painted over earlier ones.
            let Some((part, depth)) = parts
                .iter()
                .rev()
                .map(|part| (part, part.depth(x, z)))
                .find(|(_, depth)| *depth >= 0.0)
            else {
                continue;
            };
            let brightness = if part.fullbright {
                1.0
            } else {
                // Rounded look: bright on the axis, darker towards the edge; lit from above.
                let noise = hash01(column as i32, row as i32, 57) - 0.5;
                (0.55 + 0.5 * depth.sqrt()) * (0.9 + 0.15 * z / height as f32) + 0.12 * noise
            };
            let [r, g, b] = to_rgb(part.color, brightness);
            texels[row * width + column] = [r, g, b, 255];
            opaque[row * width + column] = true;
        }
    }
    // A dark rim where the figure meets transparency keeps it readable against the bricks.
    for row in 0..height {
        for column in 0..width {
            let index = row * width + column;
            if !opaque[index] {
                continue;
            }
            let edge = [(0i32, 1i32), (0, -1), (1, 0), (-1, 0)]
                .iter()
                .any(|&(dr, dc)| {
                    let (r, c) = (row as i32 + dr, column as i32 + dc);
                    r < 0
                        || c < 0
                        || r >= height as i32
                        || c >= width as i32
                        || !opaque[r as usize * width + c as usize]
                });
            if edge {
                let [r, g, b, a] = texels[index];
                texels[index] = [
                    (r as f32 * 0.55) as u8,
                    (g as f32 * 0.55) as u8,
                    (b as f32 * 0.55) as u8,
                    a,
                ];
            }
        }
    }
    Sprite {
        width,
        height,
        texels,
    }
}

/// A fireball's glow: a solid white-yellow to orange ball (Doom's fullbright BAL1) inside a red
/// halo that fades to nothing at the edge.
fn glow_sprite() -> Sprite {
    /// Fraction of the glow's radius taken by the solid ball.
    const BALL: f32 = 0.42;
    let mut texels = Vec::with_capacity(GLOW_SIZE * GLOW_SIZE);
    let half = GLOW_SIZE as f32 / 2.0;
    for row in 0..GLOW_SIZE {
        for column in 0..GLOW_SIZE {
            let dx = (column as f32 + 0.5 - half) / half;
            let dy = (row as f32 + 0.5 - half) / half;
            let distance = (dx * dx + dy * dy).sqrt();
            let [r, g, b] = if distance < BALL {
                let t = distance / BALL;
                [255.0, 235.0 - 95.0 * t, 170.0 - 140.0 * t]
            } else if distance < 1.0 {
                let fade = (1.0 - (distance - BALL) / (1.0 - BALL)).powi(2);
                [235.0 * fade, 80.0 * fade, 12.0 * fade]
            } else {
                [0.0; 3]
            };
            texels.push([r as u8, g as u8, b as u8, 0]);
        }
    }
    Sprite {
        width: GLOW_SIZE,
        height: GLOW_SIZE,
        texels,
    }
}
