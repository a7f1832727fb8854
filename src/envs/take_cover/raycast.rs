//! The first-person software renderer: one ray per screen column against the box room, textured
//! perspective-correct floor and ceiling, then billboard sprites depth-tested per column.
//!
//! Screen axes: column 0 is the left edge. The view looks along +x; a point at +y (the player's
//! left) lands left of centre, so strafing left shifts the scene right.

use super::sim::{
    CEILING_Z, EXPLOSION_TICS, FIREBALL_HEIGHT, IMP_HEIGHT, ROOM_MAX_X, ROOM_MAX_Y, ROOM_MIN_Y,
    TakeCoverState,
};
use super::textures::{Assets, IMP_SPRITE_HEIGHT, IMP_SPRITE_WIDTH, MIP_LEVELS, Sprite, assets};
use crate::envs::Frame;

/// Largest side rendered (pixels): bigger requests are clamped so no size can exhaust memory.
pub const MAX_RENDER_SIDE: u32 = 8192;
/// Nearest depth drawn (map units): sprites closer than this would blow up.
const NEAR_DEPTH: f32 = 1.0;
/// Light: the sector's level (of 1), as in a dim Doom room...
const LIGHT_MAX: f32 = 0.82;
/// ...up to this depth (map units), then fading...
const LIGHT_FULL_DEPTH: f32 = 96.0;
/// ...by this much per map unit...
const LIGHT_FADE_PER_UNIT: f32 = 1.0 / 1000.0;
/// ...down to this floor, Doom-like diminishing light in a dim room.
const LIGHT_MIN: f32 = 0.3;
/// Doom's "fake contrast": walls along y (facing the player) are lit a little more than side walls.
const FACING_WALL_LIGHT: f32 = 1.08;
const SIDE_WALL_LIGHT: f32 = 0.86;
/// Imp sprite scale: world units per sprite texel, so its 56 texels of body are 56 units tall.
const IMP_UNITS_PER_TEXEL: f32 = IMP_HEIGHT as f32 / 56.0;
/// A fireball glows over this diameter (map units); its solid body is 12.
const FIREBALL_GLOW_DIAMETER: f32 = 26.0;
/// An explosion's glow grows from / to these diameters (map units) as it fades.
const EXPLOSION_START_DIAMETER: f32 = 28.0;
const EXPLOSION_END_DIAMETER: f32 = 56.0;
/// Texel footprints are scaled by this before picking a mip level.
const MIP_BIAS: f32 = 1.4;
/// Doom's red palettes: steps of 1/9 towards pure red, at most NUMREDPALS - 1 = 7 of them.
const MAX_RED_STEPS: u32 = 7;

/// The camera for one frame.
struct View {
    width: usize,
    height: usize,
    eye_x: f32,
    eye_y: f32,
    /// Eye height above the floor, with Doom's view bob (map units).
    eye_z: f32,
    center_x: f32,
    center_y: f32,
    /// Pixels per unit of lateral offset at depth 1: a 90 degree horizontal field of view.
    focal_x: f32,
    /// Pixels per unit of height at depth 1: square pixels at 4:3, and the paper's squashed 4:3
    /// frame at 64x64 (it resized ViZDoom's 4:3 screen to a square).
    focal_y: f32,
}

impl View {
    /// The player's eye on a `width` x `height` screen (each at least 1).
    fn new(state: &TakeCoverState, width: u32, height: u32) -> Self {
        View {
            width: width as usize,
            height: height as usize,
            eye_x: state.player_x as f32,
            eye_y: state.player_y as f32,
            eye_z: state.eye_z() as f32,
            center_x: width as f32 / 2.0,
            center_y: height as f32 / 2.0,
            focal_x: width as f32 / 2.0,
            focal_y: height as f32 * 2.0 / 3.0,
        }
    }
}

/// What one screen column sees of the walls.
#[derive(Clone, Copy, Default)]
struct WallColumn {
    /// Perpendicular depth to the wall (map units).
    depth: f32,
    /// First and one-past-last wall rows (may lie off screen).
    top: f32,
    bottom: f32,
    /// Texture column.
    texture_u: i32,
    /// Light, 0..=256.
    light: u32,
    mip_level: usize,
    /// The far wall (behind the imps), not a side wall.
    far: bool,
}

/// Renders the state at `width` x `height` (each clamped to [`MAX_RENDER_SIDE`]).
// Departure from ViZDoom: the paper resized ViZDoom's 4:3 screen (minus the HUD) to 64x64; we render
// 64x64 directly with the same squashed 4:3 projection and mip-mapped textures, which averages
// far texels much as a resize would. No HUD and no weapon sprite.
pub fn render(state: &TakeCoverState, width: u32, height: u32) -> Frame {
    let (width, height) = (width.min(MAX_RENDER_SIDE), height.min(MAX_RENDER_SIDE));
    let mut frame = Frame::new(width, height);
    if width == 0 || height == 0 {
        return frame;
    }
    let view = View::new(state, width, height);
    let assets = assets();
    let pixels: &mut [u8] = &mut frame;
    let columns = cast_walls(&view);
    draw_room(pixels, &view, &columns, assets);
    draw_sprites(pixels, None, &view, &columns, state, assets);
    apply_damage_flash(pixels, state.damage_flash);
    frame
}

/// The pixels of [`render`]'s frame that show an imp, as a mask (row-major, one byte per pixel, 1
/// on an imp and 0 elsewhere): the ground truth `train-vae --sprite-weight` weights. No guess from
/// the picture gets it right, because the imps are small and far. Only the
/// walls' depths and the sprites are drawn, into scratch: the room's pixels are not needed.
pub fn imp_mask(state: &TakeCoverState, width: u32, height: u32) -> Vec<u8> {
    let (width, height) = (width.min(MAX_RENDER_SIDE), height.min(MAX_RENDER_SIDE));
    let mut mask = vec![0; width as usize * height as usize];
    if width == 0 || height == 0 {
        return mask;
    }
    let view = View::new(state, width, height);
    let columns = cast_walls(&view);
    let mut scratch = vec![0; mask.len() * 3];
    draw_sprites(
        &mut scratch,
        Some(&mut mask),
        &view,
        &columns,
        state,
        assets(),
    );
    mask
}

/// Doom-like diminishing light for a depth, 0..=256.
#[inline(always)]
fn light_at(depth: f32, contrast: f32) -> u32 {
    let light = (LIGHT_MAX - (depth - LIGHT_FULL_DEPTH).max(0.0) * LIGHT_FADE_PER_UNIT)
        .max(LIGHT_MIN)
        * contrast;
    (light.min(1.0) * 256.0) as u32
}

/// The mip level whose texels are about `units_per_pixel` map units wide.
#[inline(always)]
fn mip_level(units_per_pixel: f32) -> usize {
    // A slight bias to the coarser level: a little blur beats shimmering.
    let footprint = units_per_pixel * MIP_BIAS;
    if footprint < 2.0 {
        0
    } else {
        (footprint.log2() as usize).min(MIP_LEVELS - 1)
    }
}

#[inline(always)]
fn shade(texel: [u8; 3], light: u32) -> [u8; 3] {
    texel.map(|channel| ((u32::from(channel) * light) >> 8) as u8)
}

/// The lateral tangent of a column's ray: -1 at the left edge, +1 at the right edge.
#[inline(always)]
fn column_tangent(view: &View, column: usize) -> f32 {
    (column as f32 + 0.5 - view.center_x) / view.focal_x
}

fn cast_walls(view: &View) -> Vec<WallColumn> {
    (0..view.width)
        .map(|column| {
            // The ray runs (1, -tangent) per unit of depth: screen right is -y.
            let tangent = column_tangent(view, column);
            let front_depth = ROOM_MAX_X as f32 - view.eye_x;
            let side_depth = if tangent > 0.0 {
                (view.eye_y - ROOM_MIN_Y as f32) / tangent
            } else if tangent < 0.0 {
                (ROOM_MAX_Y as f32 - view.eye_y) / -tangent
            } else {
                f32::INFINITY
            };
            let far = front_depth <= side_depth;
            let (depth, texture_u, contrast) = if far {
                let hit_y = view.eye_y - tangent * front_depth;
                // Texture runs left to right on screen: along -y.
                (
                    front_depth,
                    (ROOM_MAX_Y as f32 - hit_y).floor() as i32,
                    FACING_WALL_LIGHT,
                )
            } else {
                let hit_x = view.eye_x + side_depth;
                let along = if tangent > 0.0 { hit_x } else { -hit_x };
                (side_depth, along.floor() as i32, SIDE_WALL_LIGHT)
            };
            let depth = depth.max(NEAR_DEPTH);
            WallColumn {
                depth,
                top: view.center_y - (CEILING_Z as f32 - view.eye_z) * view.focal_y / depth,
                bottom: view.center_y + view.eye_z * view.focal_y / depth,
                texture_u,
                light: light_at(depth, contrast),
                mip_level: mip_level(depth / view.focal_x.min(view.focal_y)),
                far,
            }
        })
        .collect()
}

/// Ceiling, walls and floor, row by row (the frame is row-major).
fn draw_room(pixels: &mut [u8], view: &View, columns: &[WallColumn], assets: &Assets) {
    // Keep texture coordinates positive before masking: this offset is a multiple of 64.
    const POSITIVE: f32 = 65536.0;
    let tangents: Vec<f32> = (0..view.width)
        .map(|column| column_tangent(view, column))
        .collect();
    for row in 0..view.height {
        let row_center = row as f32 + 0.5;
        let offset_from_horizon = row_center - view.center_y;
        // Depth at which this row meets the ceiling or the floor plane, that plane's height over the eye.
        let (plane, plane_height) = if offset_from_horizon < 0.0 {
            (&assets.ceiling, (CEILING_Z as f32 - view.eye_z))
        } else {
            (&assets.floor, view.eye_z)
        };
        let plane_depth = plane_height * view.focal_y / offset_from_horizon.abs().max(1e-3);
        let plane_light = light_at(plane_depth, 1.0);
        // A row's texels stretch along the view more than across it: mip by the mean footprint.
        let across = plane_depth / view.focal_x;
        let along = plane_depth * plane_depth / (plane_height * view.focal_y);
        let plane_mip = mip_level((across * along.max(across)).sqrt());
        let plane_x = view.eye_x + plane_depth + POSITIVE;
        let row_pixels = &mut pixels[row * view.width * 3..(row + 1) * view.width * 3];
        for (column, (pixel, wall)) in row_pixels.chunks_exact_mut(3).zip(columns).enumerate() {
            let color = if row_center >= wall.top && row_center < wall.bottom {
                // Walls are pegged to the ceiling, as Doom's one-sided walls are by default.
                let z = view.eye_z - offset_from_horizon * wall.depth / view.focal_y;
                let texture_v = (CEILING_Z as f32 - z + POSITIVE) as i32;
                let tile = if wall.far {
                    &assets.far_wall
                } else {
                    &assets.brick
                };
                shade(
                    tile.at(wall.mip_level, wall.texture_u, texture_v),
                    wall.light,
                )
            } else {
                let plane_y = view.eye_y - tangents[column] * plane_depth + POSITIVE;
                shade(
                    plane.at(plane_mip, plane_x as i32, plane_y as i32),
                    plane_light,
                )
            };
            pixel.copy_from_slice(&color);
        }
    }
}

/// One billboard to draw.
struct Billboard<'a> {
    sprite: &'a Sprite,
    /// Depth along the view (map units).
    depth: f32,
    /// World position of the sprite's centre line (y) and bottom (z), size in map units.
    y: f32,
    bottom_z: f32,
    world_width: f32,
    world_height: f32,
    /// Masked and lit (imps), or added with this strength (fire: Doom's fullbright).
    additive_strength: Option<f32>,
}

fn draw_sprites(
    pixels: &mut [u8],
    mut imp_mask: Option<&mut [u8]>,
    view: &View,
    columns: &[WallColumn],
    state: &TakeCoverState,
    assets: &Assets,
) {
    let mut billboards: Vec<Billboard> =
        Vec::with_capacity(state.imps.len() + state.fireballs.len() + state.explosions.len());
    for imp in &state.imps {
        let sprite = if imp.is_winding_up() {
            &assets.imp_wind_up
        } else if imp.is_throwing() {
            &assets.imp_throw
        } else {
            &assets.imp_stand
        };
        billboards.push(Billboard {
            sprite,
            depth: imp.x as f32 - view.eye_x,
            y: imp.y as f32,
            bottom_z: 0.0,
            world_width: IMP_SPRITE_WIDTH as f32 * IMP_UNITS_PER_TEXEL,
            world_height: IMP_SPRITE_HEIGHT as f32 * IMP_UNITS_PER_TEXEL,
            additive_strength: None,
        });
    }
    // Fire glows round its centre, a fireball's height above its z.
    let glow = |x: f64, y: f64, z: f64, diameter: f32, strength: f32| Billboard {
        sprite: &assets.glow,
        depth: x as f32 - view.eye_x,
        y: y as f32,
        bottom_z: z as f32 + FIREBALL_HEIGHT as f32 / 2.0 - diameter / 2.0,
        world_width: diameter,
        world_height: diameter,
        additive_strength: Some(strength),
    };
    for fireball in &state.fireballs {
        billboards.push(glow(
            fireball.x,
            fireball.y,
            fireball.z,
            FIREBALL_GLOW_DIAMETER,
            1.0,
        ));
    }
    for explosion in &state.explosions {
        let progress = explosion.age_tics as f32 / EXPLOSION_TICS as f32;
        let diameter = EXPLOSION_START_DIAMETER
            + (EXPLOSION_END_DIAMETER - EXPLOSION_START_DIAMETER) * progress;
        billboards.push(glow(
            explosion.x,
            explosion.y,
            explosion.z,
            diameter,
            1.1 * (1.0 - progress),
        ));
    }
    // Painter's order: far to near.
    billboards.sort_by(|a, b| b.depth.total_cmp(&a.depth));
    for billboard in &billboards {
        let mask = if billboard.additive_strength.is_none() {
            imp_mask.as_deref_mut()
        } else {
            None
        };
        draw_billboard(pixels, mask, view, columns, billboard);
    }
}

/// Draws one billboard; `mask`, where given, gets a 1 on each pixel the sprite covers.
fn draw_billboard(
    pixels: &mut [u8],
    mut mask: Option<&mut [u8]>,
    view: &View,
    columns: &[WallColumn],
    billboard: &Billboard,
) {
    let depth = billboard.depth;
    if depth < NEAR_DEPTH {
        return;
    }
    let scale_x = view.focal_x / depth;
    let scale_y = view.focal_y / depth;
    let center_column = view.center_x - (billboard.y - view.eye_y) * scale_x;
    let left = center_column - billboard.world_width / 2.0 * scale_x;
    let right = center_column + billboard.world_width / 2.0 * scale_x;
    let top = view.center_y - (billboard.bottom_z + billboard.world_height - view.eye_z) * scale_y;
    let bottom = view.center_y - (billboard.bottom_z - view.eye_z) * scale_y;
    // Pixels whose centres fall inside the sprite's rectangle.
    let first_column = (left - 0.5).ceil().max(0.0) as usize;
    let end_column = ((right - 0.5).ceil().max(0.0) as usize).min(view.width);
    let first_row = (top - 0.5).ceil().max(0.0) as usize;
    let end_row = ((bottom - 0.5).ceil().max(0.0) as usize).min(view.height);
    if first_column >= end_column || first_row >= end_row {
        return;
    }
    let sprite = billboard.sprite;
    let texels_per_column = sprite.width as f32 / (right - left);
    let texels_per_row = sprite.height as f32 / (bottom - top);
    let light = light_at(depth, 1.0);
    let strength = billboard
        .additive_strength
        .map(|strength| (strength.clamp(0.0, 2.0) * 256.0) as u32);
    for (column, wall) in columns
        .iter()
        .enumerate()
        .take(end_column)
        .skip(first_column)
    {
        // Per-column depth test: a nearer wall hides this slice of the sprite.
        if wall.depth < depth {
            continue;
        }
        let texture_u =
            (((column as f32 + 0.5 - left) * texels_per_column) as usize).min(sprite.width - 1);
        for row in first_row..end_row {
            let texture_v =
                (((row as f32 + 0.5 - top) * texels_per_row) as usize).min(sprite.height - 1);
            let [r, g, b, alpha] = sprite.texels[texture_v * sprite.width + texture_u];
            let index = (row * view.width + column) * 3;
            let pixel = &mut pixels[index..index + 3];
            match strength {
                Some(strength) => {
                    for (channel, add) in pixel.iter_mut().zip([r, g, b]) {
                        *channel = (u32::from(*channel) + ((u32::from(add) * strength) >> 8))
                            .min(255) as u8;
                    }
                }
                None if alpha >= 128 => {
                    pixel.copy_from_slice(&shade([r, g, b], light));
                    if let Some(mask) = mask.as_deref_mut() {
                        mask[row * view.width + column] = 1;
                    }
                }
                None => {}
            }
        }
    }
}

/// Doom's red palette while the player's damage counter runs: (count + 7) / 8 steps of 1/9 to red.
fn apply_damage_flash(pixels: &mut [u8], damage_flash: u32) {
    if damage_flash == 0 {
        return;
    }
    let steps = ((damage_flash + 7) >> 3).min(MAX_RED_STEPS);
    let keep = 9 - steps;
    for pixel in pixels.chunks_exact_mut(3) {
        pixel[0] = ((u32::from(pixel[0]) * keep + 255 * steps) / 9) as u8;
        pixel[1] = (u32::from(pixel[1]) * keep / 9) as u8;
        pixel[2] = (u32::from(pixel[2]) * keep / 9) as u8;
    }
}
