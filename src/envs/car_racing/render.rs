//! Software rendering with tiny-skia: Gym's 1000x800 window, drawn straight at the requested size.
//!
//! Gym draws into a 1000x800 pygame surface (car at (500, 200), then flipped vertically, so at row 600) and
//! smooth-scales it to 96x96 for the state, squashing x and y differently. dreamplay draws the same geometry
//! directly at the output size, scaling window x by `W/1000` and y by `H/800`, with anti-aliasing standing in
//! for the downscale's averaging.
//!
//! Departure from Gym: same-coloured shapes are filled as one path (all road in the base colour first, then the
//! tinted tiles slightly inset, then the kerbs) instead of one polygon at a time. Drawn one by one at 96x96,
//! anti-aliased neighbours leave visible grass-coloured seams every tile, which Gym's supersampling hides.
//! Departure from Gym: kerbs are drawn after all the road rather than interleaved tile by tile, which matters
//! only where the track crosses itself.
//! Departure from Gym: no skid marks (Gym skips them in state pixels anyway), and the HUD's reward is drawn in
//! seven-segment digits of about the size of Gym's 42 px font, as there is no font (the model crops the HUD).

use tiny_skia::{Color, FillRule, Paint, PathBuilder, Pixmap, Transform};

use super::car::{self, Car, HULL_POLYS, SIZE, WHEEL_R, WHEEL_W};
use super::track::{ROAD_COLOR, SCALE, TRACK_WIDTH, Track};

/// Gym's window, the space its drawing coordinates live in (pixels).
pub const WINDOW_W: f64 = 1000.0;
pub const WINDOW_H: f64 = 800.0;
/// Camera zoom at full zoom-in (window pixels per world unit / SCALE).
pub const ZOOM: f64 = 2.7;
/// Zoom at t = 0, before the first second's zoom-in.
const ZOOM_START: f64 = 0.1;
/// Where the car sits in the (flipped) window: centre column, three quarters down.
const CAR_WINDOW_X: f64 = WINDOW_W / 2.0;
const CAR_WINDOW_Y: f64 = WINDOW_H * 3.0 / 4.0;
/// Game-over boundary (world units), also the extent of the grass field drawn.
pub const PLAYFIELD: f64 = 2000.0 / SCALE;
/// Side of a grass patch cell (world units).
const GRASS_DIM: f64 = PLAYFIELD / 20.0;
/// Height of the HUD bar in window pixels (5 of the 40 indicator rows).
pub const HUD_WINDOW_H: f64 = 5.0 * WINDOW_H / 40.0;
/// How far (output pixels) tinted tiles are inset from the road edge so their anti-aliased rims fall on road.
const TINT_INSET_PX: f64 = 1.0;

pub const BG_COLOR: [u8; 3] = [102, 204, 102];
pub const GRASS_COLOR: [u8; 3] = [102, 230, 102];
pub const HULL_COLOR: [u8; 3] = [204, 0, 0];
const WHEEL_COLOR: [u8; 3] = [0, 0, 0];
/// The tread stripe that shows the wheels spinning.
const WHEEL_STRIPE_COLOR: [u8; 3] = [77, 77, 77];
const HUD_COLOR: [u8; 3] = [0, 0, 0];
const SPEED_COLOR: [u8; 3] = [255, 255, 255];
const ABS_FRONT_COLOR: [u8; 3] = [0, 0, 255];
const ABS_REAR_COLOR: [u8; 3] = [51, 0, 255];
const STEER_COLOR: [u8; 3] = [0, 255, 0];
const GYRO_COLOR: [u8; 3] = [255, 0, 0];
const REWARD_COLOR: [u8; 3] = [255, 255, 255];
/// Gym centres its reward text at (60, H - 2.5 H/40) in window pixels.
const REWARD_CENTER_X: f64 = 60.0;
const REWARD_CENTER_Y: f64 = WINDOW_H - WINDOW_H * 2.5 / 40.0;
/// Seven-segment digit cell, close to Gym's 42 px bold font: width, height, stroke, advance (window pixels).
const DIGIT_W: f64 = 18.0;
const DIGIT_H: f64 = 30.0;
const DIGIT_STROKE: f64 = 4.0;
const DIGIT_ADVANCE: f64 = 24.0;

/// What a frame shows.
pub struct Scene<'a> {
    pub track: &'a Track,
    /// Per tile: touched by a wheel (Gym then repaints it in the plain road colour).
    pub visited: &'a [bool],
    pub car: &'a Car,
    /// Episode time in seconds (Gym's `self.t`), for the zoom-in.
    pub time: f64,
    /// The episode's running reward, shown in the HUD as Gym's `"%04i" % self.reward`.
    pub reward: f64,
}

/// World -> output pixels: Gym's rotate, zoom, translate, flip, then the scale to the output size.
struct Camera {
    position: [f64; 2],
    sin: f64,
    cos: f64,
    zoom: f64,
    /// Output pixels per window pixel.
    scale_x: f64,
    scale_y: f64,
    /// Radius (world units) around the car beyond which nothing can reach the window.
    view_radius: f64,
}

impl Camera {
    fn new(scene: &Scene, frame_w: u32, frame_h: u32) -> Camera {
        let t = scene.time;
        let zoom = ZOOM_START * SCALE * (1.0 - t).max(0.0) + ZOOM * SCALE * t.min(1.0);
        let (sin, cos) = (-scene.car.angle).sin_cos();
        Camera {
            position: scene.car.position(),
            sin,
            cos,
            zoom,
            scale_x: frame_w as f64 / WINDOW_W,
            scale_y: frame_h as f64 / WINDOW_H,
            view_radius: CAR_WINDOW_X
                .max(WINDOW_W - CAR_WINDOW_X)
                .hypot(CAR_WINDOW_Y)
                / zoom,
        }
    }

    fn to_screen(&self, p: [f64; 2]) -> (f32, f32) {
        let dx = p[0] - self.position[0];
        let dy = p[1] - self.position[1];
        let rx = self.cos * dx - self.sin * dy;
        let ry = self.sin * dx + self.cos * dy;
        let window_x = CAR_WINDOW_X + rx * self.zoom;
        let window_y = CAR_WINDOW_Y - ry * self.zoom;
        (
            (window_x * self.scale_x) as f32,
            (window_y * self.scale_y) as f32,
        )
    }

    fn view_radius(&self) -> f64 {
        self.view_radius
    }

    fn sees(&self, center: [f64; 2], radius: f64) -> bool {
        let dx = center[0] - self.position[0];
        let dy = center[1] - self.position[1];
        let reach = self.view_radius + radius;
        dx * dx + dy * dy <= reach * reach
    }
}

/// Polygons of one colour gathered into one path.
struct Batch {
    builder: PathBuilder,
    width: f32,
    height: f32,
}

impl Batch {
    fn new(pixmap: &Pixmap) -> Batch {
        Batch {
            builder: PathBuilder::new(),
            width: pixmap.width() as f32,
            height: pixmap.height() as f32,
        }
    }

    /// Adds a polygon in screen pixels, wound consistently so overlapping members union under the winding rule.
    fn add(&mut self, points: &[(f32, f32)]) {
        let Some(&first) = points.first() else {
            return;
        };
        let (mut min_x, mut min_y, mut max_x, mut max_y) = (first.0, first.1, first.0, first.1);
        let mut twice_area = 0.0;
        for (i, &(x, y)) in points.iter().enumerate() {
            min_x = min_x.min(x);
            max_x = max_x.max(x);
            min_y = min_y.min(y);
            max_y = max_y.max(y);
            let (nx, ny) = points[(i + 1) % points.len()];
            twice_area += x * ny - nx * y;
        }
        if max_x < 0.0 || max_y < 0.0 || min_x > self.width || min_y > self.height {
            return;
        }
        let mut ordered = points.iter().copied();
        let mut reversed = points.iter().rev().copied();
        let iter: &mut dyn Iterator<Item = (f32, f32)> = if twice_area >= 0.0 {
            &mut ordered
        } else {
            &mut reversed
        };
        let Some((x0, y0)) = iter.next() else {
            return;
        };
        self.builder.move_to(x0, y0);
        for (x, y) in iter {
            self.builder.line_to(x, y);
        }
        self.builder.close();
    }

    fn fill(self, pixmap: &mut Pixmap, color: [u8; 3], anti_alias: bool) {
        let Some(path) = self.builder.finish() else {
            return;
        };
        let mut paint = Paint::default();
        paint.set_color_rgba8(color[0], color[1], color[2], 255);
        paint.anti_alias = anti_alias;
        pixmap.fill_path(
            &path,
            &paint,
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

fn to_screen_quad(camera: &Camera, quad: &[[f64; 2]; 4]) -> [(f32, f32); 4] {
    quad.map(|p| camera.to_screen(p))
}

/// Draws the scene into `pixmap`, which shows the top rows of a `frame_w` x `frame_h` frame (the pixmap may be
/// shorter than the frame: the observation skips the HUD rows). The HUD is drawn only if `with_hud`.
pub fn draw_scene(pixmap: &mut Pixmap, scene: &Scene, frame_w: u32, frame_h: u32, with_hud: bool) {
    let camera = Camera::new(scene, frame_w, frame_h);
    draw_ground(pixmap, &camera);
    draw_road(pixmap, &camera, scene);
    draw_car(pixmap, &camera, scene.car);
    if with_hud {
        draw_hud(pixmap, scene.car, scene.reward, frame_w, frame_h);
    }
}

fn color(rgb: [u8; 3]) -> Color {
    Color::from_rgba8(rgb[0], rgb[1], rgb[2], 255)
}

/// Black beyond the playfield, the background green inside it, lighter patches on alternating cells.
fn draw_ground(pixmap: &mut Pixmap, camera: &Camera) {
    let reach = camera.view_radius();
    let [x, y] = camera.position;
    if x.abs() + reach < PLAYFIELD && y.abs() + reach < PLAYFIELD {
        pixmap.fill(color(BG_COLOR));
    } else {
        pixmap.fill(color([0, 0, 0]));
        let field = [
            [PLAYFIELD, PLAYFIELD],
            [PLAYFIELD, -PLAYFIELD],
            [-PLAYFIELD, -PLAYFIELD],
            [-PLAYFIELD, PLAYFIELD],
        ];
        let mut batch = Batch::new(pixmap);
        batch.add(&to_screen_quad(camera, &field));
        batch.fill(pixmap, BG_COLOR, true);
    }

    let mut grass = Batch::new(pixmap);
    let half_diagonal = GRASS_DIM * std::f64::consts::FRAC_1_SQRT_2;
    for cell_x in (-20..20).step_by(2) {
        for cell_y in (-20..20).step_by(2) {
            let x0 = GRASS_DIM * cell_x as f64;
            let y0 = GRASS_DIM * cell_y as f64;
            let center = [x0 + 0.5 * GRASS_DIM, y0 + 0.5 * GRASS_DIM];
            if !camera.sees(center, half_diagonal) {
                continue;
            }
            let cell = [
                [x0 + GRASS_DIM, y0],
                [x0, y0],
                [x0, y0 + GRASS_DIM],
                [x0 + GRASS_DIM, y0 + GRASS_DIM],
            ];
            grass.add(&to_screen_quad(camera, &cell));
        }
    }
    grass.fill(pixmap, GRASS_COLOR, true);
}

fn draw_road(pixmap: &mut Pixmap, camera: &Camera, scene: &Scene) {
    let track = scene.track;
    let n = track.points.len();
    let mut base = Batch::new(pixmap);
    // Tinted tiles: the two non-base shades of Gym's `i % 3` pattern.
    let mut tinted = [Batch::new(pixmap), Batch::new(pixmap)];
    let mut tints = [ROAD_COLOR, ROAD_COLOR];
    // Inset of the tinted tiles, in world units, so their soft edges stay on the base road.
    let pixels_per_unit = camera.zoom * camera.scale_x.min(camera.scale_y);
    let inset_width = (TRACK_WIDTH - TINT_INSET_PX / pixels_per_unit.max(1e-9)).max(0.0);
    let mut outline: Vec<(f32, f32)> = Vec::with_capacity(2 * n + 2);
    let mut run_start: Option<usize> = None;
    for (i, tile) in track.tiles.iter().enumerate() {
        let visible = camera.sees(tile.center, tile.radius);
        if visible && run_start.is_none() {
            run_start = Some(i);
        }
        let run_ends = run_start.is_some() && (!visible || i + 1 == n);
        if run_ends && let Some(start) = run_start.take() {
            let end = if visible { i } else { i - 1 };
            add_road_run(&mut base, &mut outline, camera, track, start, end);
        }
        if !visible {
            continue;
        }
        let visited = scene.visited.get(i).copied().unwrap_or(false);
        let shade = i % 3;
        if visited || shade == 0 {
            continue;
        }
        let p1 = track.points[i];
        let p2 = track.points[(i + n - 1) % n];
        let (c1, s1) = (p1.beta.cos(), p1.beta.sin());
        let (c2, s2) = (p2.beta.cos(), p2.beta.sin());
        let quad = [
            [p1.x - inset_width * c1, p1.y - inset_width * s1],
            [p1.x + inset_width * c1, p1.y + inset_width * s1],
            [p2.x + inset_width * c2, p2.y + inset_width * s2],
            [p2.x - inset_width * c2, p2.y - inset_width * s2],
        ];
        tints[shade - 1] = tile.color;
        tinted[shade - 1].add(&to_screen_quad(camera, &quad));
    }
    base.fill(pixmap, ROAD_COLOR, true);
    // The tints differ from the base by 2-5 levels and sit inset inside it, so they need no anti-aliasing.
    let [tinted_a, tinted_b] = tinted;
    tinted_a.fill(pixmap, tints[0], false);
    tinted_b.fill(pixmap, tints[1], false);

    // Kerbs: all of them in white (one seamless strip), then the red ones over it.
    let mut white = Batch::new(pixmap);
    let mut red = Batch::new(pixmap);
    for kerb in &track.kerbs {
        if !camera.sees(kerb.center, kerb.radius) {
            continue;
        }
        let quad = to_screen_quad(camera, &kerb.quad);
        white.add(&quad);
        if kerb.color != super::track::KERB_WHITE {
            red.add(&quad);
        }
    }
    white.fill(pixmap, super::track::KERB_WHITE, true);
    red.fill(pixmap, super::track::KERB_RED, true);
}

/// Adds tiles `start..=end` as one outline: the exact union of their quads (consecutive tiles share corners),
/// without the inner edges, which the rasteriser would otherwise walk for nothing.
fn add_road_run(
    base: &mut Batch,
    outline: &mut Vec<(f32, f32)>,
    camera: &Camera,
    track: &Track,
    start: usize,
    end: usize,
) {
    let tiles = &track.tiles[start..=end];
    let Some(first) = tiles.first() else {
        return;
    };
    outline.clear();
    // Left edge forward: the left corner of point start-1, then each tile's left corner at its own point.
    outline.push(camera.to_screen(first.quad[3]));
    outline.extend(tiles.iter().map(|tile| camera.to_screen(tile.quad[0])));
    // Right edge back.
    outline.extend(
        tiles
            .iter()
            .rev()
            .map(|tile| camera.to_screen(tile.quad[1])),
    );
    outline.push(camera.to_screen(first.quad[2]));
    base.add(outline);
}

fn draw_car(pixmap: &mut Pixmap, camera: &Camera, car: &Car) {
    let mut wheels = Batch::new(pixmap);
    let mut stripes = Batch::new(pixmap);
    for i in 0..4 {
        let pose = car.wheel_pose(i);
        wheels.add(&to_screen_quad(camera, &car::wheel_box(pose)));

        // Gym's tread stripe: the part of the wheel between spin angles phase and phase + 1.2 that faces up.
        let a1 = car.wheels[i].phase;
        let a2 = a1 + 1.2;
        let (s1, mut c1) = a1.sin_cos();
        let (s2, mut c2) = a2.sin_cos();
        if s1 > 0.0 && s2 > 0.0 {
            continue;
        }
        if s1 > 0.0 {
            c1 = super::track::sign(c1);
        }
        if s2 > 0.0 {
            c2 = super::track::sign(c2);
        }
        let local = [
            [-WHEEL_W, WHEEL_R * c1],
            [WHEEL_W, WHEEL_R * c1],
            [WHEEL_W, WHEEL_R * c2],
            [-WHEEL_W, WHEEL_R * c2],
        ];
        let (s, c) = pose.angle.sin_cos();
        let stripe = local.map(|[x, y]| {
            camera.to_screen([
                pose.center[0] + c * x - s * y,
                pose.center[1] + s * x + c * y,
            ])
        });
        stripes.add(&stripe);
    }
    wheels.fill(pixmap, WHEEL_COLOR, true);
    stripes.fill(pixmap, WHEEL_STRIPE_COLOR, true);

    let mut hull = Batch::new(pixmap);
    let mut screen = [(0.0_f32, 0.0_f32); 8];
    for poly in HULL_POLYS {
        for (slot, v) in screen.iter_mut().zip(poly) {
            *slot = camera.to_screen(car.world_point([v[0] * SIZE, v[1] * SIZE]));
        }
        hull.add(&screen[..poly.len()]);
    }
    hull.fill(pixmap, HULL_COLOR, true);
}

/// Gym's `_render_indicators`: a black bar with speed, four ABS bars, steering and gyro, in window pixels.
fn draw_hud(pixmap: &mut Pixmap, car: &Car, reward: f64, frame_w: u32, frame_h: u32) {
    let scale_x = frame_w as f64 / WINDOW_W;
    let scale_y = frame_h as f64 / WINDOW_H;
    let slot = WINDOW_W / 40.0;
    let h = WINDOW_H / 40.0;
    let rect = |x0: f64, y0: f64, x1: f64, y1: f64| {
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            .map(|(x, y)| ((x * scale_x) as f32, (y * scale_y) as f32))
    };
    let fill_rect = |pixmap: &mut Pixmap, points: [(f32, f32); 4], rgb: [u8; 3]| {
        let mut batch = Batch::new(pixmap);
        batch.add(&points);
        batch.fill(pixmap, rgb, true);
    };
    fill_rect(
        pixmap,
        rect(0.0, WINDOW_H - HUD_WINDOW_H, WINDOW_W, WINDOW_H),
        HUD_COLOR,
    );

    let vertical = |place: f64, value: f64| {
        rect(
            place * slot,
            WINDOW_H - (h + h * value),
            (place + 1.0) * slot,
            WINDOW_H - h,
        )
    };
    let horizontal = |place: f64, value: f64| {
        rect(
            place * slot,
            WINDOW_H - 4.0 * h,
            (place + value) * slot,
            WINDOW_H - 2.0 * h,
        )
    };
    // Gym draws an indicator only when its value is not ~0.
    let shown = |value: f64| value.abs() > 1e-4;

    let speed = car.speed();
    if shown(speed) {
        fill_rect(pixmap, vertical(5.0, 0.02 * speed), SPEED_COLOR);
    }
    for (i, wheel) in car.wheels.iter().enumerate() {
        if shown(wheel.omega) {
            let rgb = if i < 2 {
                ABS_FRONT_COLOR
            } else {
                ABS_REAR_COLOR
            };
            fill_rect(pixmap, vertical(7.0 + i as f64, 0.01 * wheel.omega), rgb);
        }
    }
    let steering = car.wheels[0].joint_angle;
    if shown(steering) {
        fill_rect(pixmap, horizontal(20.0, -10.0 * steering), STEER_COLOR);
    }
    if shown(car.angular_velocity) {
        fill_rect(
            pixmap,
            horizontal(30.0, -0.8 * car.angular_velocity),
            GYRO_COLOR,
        );
    }

    // The running reward, white, centred at Gym's text position.
    let text = format!("{:04}", reward as i64);
    let mut digits = Batch::new(pixmap);
    let text_width = text.len() as f64 * DIGIT_ADVANCE - (DIGIT_ADVANCE - DIGIT_W);
    let left = REWARD_CENTER_X - 0.5 * text_width;
    let top = REWARD_CENTER_Y - 0.5 * DIGIT_H;
    for (i, character) in text.chars().enumerate() {
        let x0 = left + i as f64 * DIGIT_ADVANCE;
        for &segment in segments(character) {
            let [sx0, sy0, sx1, sy1] = segment_rect(segment);
            digits.add(&rect(x0 + sx0, top + sy0, x0 + sx1, top + sy1));
        }
    }
    digits.fill(pixmap, REWARD_COLOR, true);
}

/// The seven segments of a digit.
#[derive(Debug, Clone, Copy)]
enum Segment {
    Top,
    UpperRight,
    LowerRight,
    Bottom,
    LowerLeft,
    UpperLeft,
    Middle,
}

fn segments(character: char) -> &'static [Segment] {
    use Segment::*;
    match character {
        '0' => &[Top, UpperRight, LowerRight, Bottom, LowerLeft, UpperLeft],
        '1' => &[UpperRight, LowerRight],
        '2' => &[Top, UpperRight, Middle, LowerLeft, Bottom],
        '3' => &[Top, UpperRight, Middle, LowerRight, Bottom],
        '4' => &[UpperLeft, Middle, UpperRight, LowerRight],
        '5' => &[Top, UpperLeft, Middle, LowerRight, Bottom],
        '6' => &[Top, UpperLeft, Middle, LowerLeft, LowerRight, Bottom],
        '7' => &[Top, UpperRight, LowerRight],
        '8' => &[
            Top, UpperRight, LowerRight, Bottom, LowerLeft, UpperLeft, Middle,
        ],
        '9' => &[Top, UpperRight, LowerRight, Bottom, UpperLeft, Middle],
        '-' => &[Middle],
        _ => &[],
    }
}

/// A segment's rectangle `[x0, y0, x1, y1]` inside the digit cell (window pixels).
fn segment_rect(segment: Segment) -> [f64; 4] {
    let (w, h, t) = (DIGIT_W, DIGIT_H, DIGIT_STROKE);
    let mid = 0.5 * (h - t);
    match segment {
        Segment::Top => [0.0, 0.0, w, t],
        Segment::Middle => [0.0, mid, w, mid + t],
        Segment::Bottom => [0.0, h - t, w, h],
        Segment::UpperLeft => [0.0, 0.0, t, mid + t],
        Segment::UpperRight => [w - t, 0.0, w, mid + t],
        Segment::LowerLeft => [0.0, mid, t, h],
        Segment::LowerRight => [w - t, mid, w, h],
    }
}
