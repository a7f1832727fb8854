//! The pixel buffers behind the views: CPU frames copied into bevy images (sRGB, nearest sampling,
//! kept in the main world so they can be rewritten), which egui shows. Side by side, the flow
//! dream has a view of its own.
//!
//! Reality is re-rendered by the env at the pane's size in physical pixels (sharp at any window
//! size); V's input and reconstruction and the dream are 64x64 and scaled up crisply by the
//! nearest sampler. Without a model, V's reconstruction and the dream show a dim static pattern
//! under the explanation, so nothing on screen pretends to be a model output.

use bevy::asset::RenderAssetUsages;
use bevy::image::ImageSampler;
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};

use super::AppSystems;
use super::commands::Mode;
use super::sim::{DreamEpisode, ModelFrames, Reality, Session};
use crate::envs::{EnvKind, Frame, OBS_SIZE};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<RealitySize>();
    app.init_resource::<ViewRects>();
    app.add_systems(Startup, create_view_images);
    app.add_systems(Update, update_view_images.in_set(AppSystems::Present));
}

/// Largest side the reality view is rendered at, in pixels: beyond this the software renderer costs
/// more than the sharpness is worth.
pub const REALITY_RENDER_MAX: u32 = 900;
/// Smallest side, so a tiny pane still shows something.
pub const REALITY_RENDER_MIN: u32 = 32;

/// The images the views show.
#[derive(Resource, Debug, Clone)]
pub struct ViewImages {
    pub reality: Handle<Image>,
    pub v_input: Handle<Image>,
    pub v_reconstruction: Handle<Image>,
    pub dream: Handle<Image>,
    /// The flow dream, side by side with the 2018 one.
    pub flow_dream: Handle<Image>,
}

/// The reality pane's size in physical pixels, as the UI laid it out last frame.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealitySize {
    pub requested: (u32, u32),
}

/// Where each view's image was drawn last frame, in physical pixels `[x, y, width, height]`. Saved
/// next to `--screenshot` files (`<name>.views.json`) so tests can check each view's pixels.
#[derive(Resource, Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewRects {
    pub reality: Option<[u32; 4]>,
    pub v_input: Option<[u32; 4]>,
    pub v_reconstruction: Option<[u32; 4]>,
    pub dream: Option<[u32; 4]>,
    /// The flow dream's view, side by side.
    #[serde(default)]
    pub flow_dream: Option<[u32; 4]>,
    /// The open instrument's panel, if one is open.
    #[serde(default)]
    pub instrument: Option<[u32; 4]>,
    /// Every other panel shown (top bar, side panel, HUD, tour caption, sliders), by name: what
    /// must never overlap the views.
    #[serde(default)]
    pub panels: std::collections::BTreeMap<String, [u32; 4]>,
}

/// The reality pane's aspect (width / height): CarRacing is square, Doom's screen 4:3.
pub fn reality_aspect(env: EnvKind) -> f32 {
    match env {
        EnvKind::CarRacing => 1.0,
        EnvKind::TakeCover => 4.0 / 3.0,
    }
}

pub(super) fn blank_image(width: u32, height: u32) -> Image {
    let mut image = Image::new_fill(
        Extent3d {
            width: width.max(1),
            height: height.max(1),
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        &[0, 0, 0, 255],
        TextureFormat::Rgba8UnormSrgb,
        // MAIN_WORLD keeps the CPU copy we rewrite; RENDER_WORLD uploads it.
        RenderAssetUsages::MAIN_WORLD | RenderAssetUsages::RENDER_WORLD,
    );
    image.sampler = ImageSampler::nearest();
    image
}

fn create_view_images(mut commands: Commands, mut images: ResMut<Assets<Image>>) {
    let side = OBS_SIZE;
    commands.insert_resource(ViewImages {
        reality: images.add(blank_image(side, side)),
        v_input: images.add(blank_image(side, side)),
        v_reconstruction: images.add(blank_image(side, side)),
        dream: images.add(blank_image(side, side)),
        flow_dream: images.add(blank_image(side, side)),
    });
}

/// Copies an RGB frame into an RGBA image, reallocating when the size changed.
pub(super) fn write_frame(image: &mut Image, frame: &Frame) {
    let (width, height) = frame.dimensions();
    if width == 0 || height == 0 {
        return;
    }
    let size = image.texture_descriptor.size;
    if size.width != width || size.height != height {
        *image = blank_image(width, height);
    }
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    for pixel in frame.pixels() {
        rgba.extend_from_slice(&[pixel[0], pixel[1], pixel[2], 255]);
    }
    image.data = Some(rgba);
}

/// What the model views were last drawn from: the generations of reality, the 2018 dream and the
/// flow dream, which frames existed, the mode and whether the flow model dreams.
type ShownModelViews = (u64, u64, u64, [bool; 3], Mode, bool);

/// A dim, deterministic static: the look of "no signal", tinted per pane.
pub fn static_pattern(tint: [u8; 3], seed: u32) -> Frame {
    Frame::from_fn(OBS_SIZE, OBS_SIZE, |x, y| {
        let mut h = x.wrapping_mul(374_761_393)
            ^ y.wrapping_mul(668_265_263)
            ^ seed.wrapping_mul(2_246_822_519);
        h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
        let noise = ((h >> 24) & 0xff) as u16;
        let level = |c: u8| ((u16::from(c) * (64 + noise / 2)) / 255) as u8;
        image::Rgb([level(tint[0]), level(tint[1]), level(tint[2])])
    })
}

pub const RECONSTRUCTION_PLACEHOLDER_TINT: [u8; 3] = [70, 110, 160];
pub const DREAM_PLACEHOLDER_TINT: [u8; 3] = [140, 80, 170];

#[allow(clippy::too_many_arguments)]
fn update_view_images(
    views: Option<Res<ViewImages>>,
    mut images: ResMut<Assets<Image>>,
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    frames: Res<ModelFrames>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    size: Res<RealitySize>,
    mut shown: Local<Option<(u64, (u32, u32))>>,
    mut shown_model: Local<Option<ShownModelViews>>,
) {
    let Some(views) = views else { return };
    let (width, height) = size.requested;
    let requested = (
        width.clamp(REALITY_RENDER_MIN, REALITY_RENDER_MAX),
        height.clamp(REALITY_RENDER_MIN, REALITY_RENDER_MAX),
    );
    let mut show = |handle: &Handle<Image>, frame: &Frame| {
        if let Some(mut image) = images.get_mut(handle) {
            write_frame(&mut image, frame);
        }
    };
    if *shown != Some((reality.generation, requested)) && width > 0 && height > 0 {
        *shown = Some((reality.generation, requested));
        show(&views.reality, &reality.render(requested.0, requested.1));
        show(&views.v_input, &reality.obs);
    }
    let mode = *mode.get();
    let model_key = (
        reality.generation,
        dream.generation,
        dream.flow_generation,
        [
            frames.reconstruction.is_some(),
            frames.dream.is_some(),
            frames.flow_dream.is_some(),
        ],
        mode,
        session.dreams_with_flow(),
    );
    if *shown_model != Some(model_key) {
        *shown_model = Some(model_key);
        let reconstruction = frames
            .reconstruction
            .clone()
            .unwrap_or_else(|| static_pattern(RECONSTRUCTION_PLACEHOLDER_TINT, 1));
        show(&views.v_reconstruction, &reconstruction);
        let dreamed = frames
            .dream_pane(&session, mode)
            .cloned()
            .unwrap_or_else(|| static_pattern(DREAM_PLACEHOLDER_TINT, 2));
        show(&views.dream, &dreamed);
        let flow = frames
            .flow_dream
            .clone()
            .unwrap_or_else(|| static_pattern(DREAM_PLACEHOLDER_TINT, 3));
        show(&views.flow_dream, &flow);
    }
}
