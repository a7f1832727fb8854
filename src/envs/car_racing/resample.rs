//! The observation's resize, `image::imageops::resize(.., FilterType::Triangle)` computed the same way
//! (same f32 weights, same accumulation order, same rounding) but with the weights precomputed once and no
//! allocation per frame. A test checks it is byte-identical to `imageops::resize`.
//!
//! The image crate recomputes the weights and goes through an RGBA f32 image every call, which was half the
//! cost of a CarRacing step.

/// Taps of one output pixel along one axis: the first source index and the normalised weights.
#[derive(Debug, Clone)]
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// image's triangle kernel.
fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 }
}

/// image's per-axis weights for resizing `source` pixels to `target` with the triangle filter (support 1).
fn axis_taps(source: u32, target: u32) -> Vec<Taps> {
    let ratio = source as f32 / target as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let src_support = sratio;
    (0..target)
        .map(|out| {
            let center = (out as f32 + 0.5) * ratio;
            let left = ((center - src_support).floor() as i64).clamp(0, source as i64 - 1);
            let right = ((center + src_support).ceil() as i64).clamp(left + 1, source as i64);
            let center = center - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| triangle((i as f32 - center) / sratio))
                .collect();
            let sum: f32 = weights.iter().fold(0.0, |acc, w| acc + w);
            for w in &mut weights {
                *w /= sum;
            }
            Taps {
                first: left as usize,
                weights,
            }
        })
        .collect()
}

/// `f32::round` (half away from zero) for values already clamped to [0, 255], without a libm call and
/// without branches, so loops over it vectorise. The fraction `v - trunc(v)` is exact in f32.
#[inline(always)]
fn round_to_u8(v: f32) -> u8 {
    let whole = v as i32;
    let round_up = (v - whole as f32 >= 0.5) as i32;
    (whole + round_up) as u8
}

/// A triangle-filter resizer for fixed sizes, from RGB or RGBA (alpha ignored) to RGB.
#[derive(Debug, Clone)]
pub struct TriangleResizer {
    source_width: usize,
    source_height: usize,
    target_width: usize,
    target_height: usize,
    rows: Vec<Taps>,
    columns: Vec<Taps>,
    /// One vertically filtered row being accumulated: source_width x channels.
    row: Vec<f32>,
    /// Vertically filtered image, transposed (source column-major: x, then output row, then channel) so the
    /// horizontal pass also runs over contiguous memory.
    columns_major: Vec<f32>,
    /// One output column being accumulated: target_height x channels.
    column: Vec<f32>,
    /// That column rounded to bytes.
    rounded_column: Vec<u8>,
    /// Whether to run the AVX2 build of the passes (same arithmetic, wider registers, no FMA).
    use_avx2: bool,
}

impl TriangleResizer {
    pub fn new(
        source_width: u32,
        source_height: u32,
        target_width: u32,
        target_height: u32,
    ) -> TriangleResizer {
        TriangleResizer {
            source_width: source_width as usize,
            source_height: source_height as usize,
            target_width: target_width as usize,
            target_height: target_height as usize,
            rows: axis_taps(source_height, target_height),
            columns: axis_taps(source_width, target_width),
            row: Vec::new(),
            columns_major: Vec::new(),
            column: Vec::new(),
            rounded_column: Vec::new(),
            use_avx2: avx2_available(),
        }
    }

    /// Forces the portable build of the passes (for tests: both builds must agree with `imageops::resize`).
    #[doc(hidden)]
    pub fn without_simd(mut self) -> TriangleResizer {
        self.use_avx2 = false;
        self
    }

    /// Resizes `source` (`channels` bytes per pixel, 3 or 4, row-major, source size) into `target` (RGB, target
    /// size). Returns false, touching nothing, if the buffers do not fit the sizes this resizer was made for.
    pub fn resize(&mut self, source: &[u8], channels: usize, target: &mut [u8]) -> bool {
        let (sw, sh, tw, th) = (
            self.source_width,
            self.source_height,
            self.target_width,
            self.target_height,
        );
        if !(channels == 3 || channels == 4)
            || source.len() != sw * sh * channels
            || target.len() != tw * th * 3
            || sw == 0
            || sh == 0
        {
            return false;
        }
        self.row.resize(sw * channels, 0.0);
        self.columns_major.resize(sw * th * channels, 0.0);
        self.column.resize(th * channels, 0.0);
        self.rounded_column.resize(th * channels, 0);
        #[cfg(target_arch = "x86_64")]
        if self.use_avx2 {
            // SAFETY: `use_avx2` is only true when the CPU reports AVX2 (see `avx2_available`).
            unsafe { resize_avx2(self, source, channels, target) };
            return true;
        }
        resize_any(self, source, channels, target);
        true
    }
}

fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The passes compiled for AVX2. Only the register width changes: Rust never fuses the multiply and add.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn resize_avx2(
    resizer: &mut TriangleResizer,
    source: &[u8],
    channels: usize,
    target: &mut [u8],
) {
    resize_any(resizer, source, channels, target);
}

#[inline(always)]
fn resize_any(resizer: &mut TriangleResizer, source: &[u8], channels: usize, target: &mut [u8]) {
    if channels == 4 {
        resize_passes::<4>(resizer, source, target);
    } else {
        resize_passes::<3>(resizer, source, target);
    }
}

/// Both passes over flat, contiguous slices, so they vectorise. Every value still accumulates its taps in
/// image's order (from 0, adding value * weight in tap order), so the result is bit-identical.
#[inline(always)]
fn resize_passes<const CHANNELS: usize>(
    resizer: &mut TriangleResizer,
    source: &[u8],
    target: &mut [u8],
) {
    let channels = CHANNELS;
    let TriangleResizer {
        source_width: sw,
        target_width: tw,
        target_height: th,
        rows,
        columns,
        row,
        columns_major,
        column,
        rounded_column,
        ..
    } = resizer;
    let (sw, tw, th) = (*sw, *tw, *th);
    let row_len = sw * channels;
    // Vertical pass first, as image does.
    for (out_y, taps) in rows.iter().enumerate() {
        row.fill(0.0);
        for (i, &w) in taps.weights.iter().enumerate() {
            let start = (taps.first + i) * row_len;
            for (sum, &value) in row.iter_mut().zip(&source[start..start + row_len]) {
                *sum += value as f32 * w;
            }
        }
        for (x, pixel) in row.chunks_exact(CHANNELS).enumerate() {
            let at = (x * th + out_y) * CHANNELS;
            columns_major[at..at + CHANNELS].copy_from_slice(pixel);
        }
    }
    // Horizontal pass, one output column at a time, then clamped and rounded to the nearest integer.
    let column_len = th * channels;
    for (out_x, taps) in columns.iter().enumerate() {
        column.fill(0.0);
        for (i, &w) in taps.weights.iter().enumerate() {
            let start = (taps.first + i) * column_len;
            for (sum, &value) in column
                .iter_mut()
                .zip(&columns_major[start..start + column_len])
            {
                *sum += value * w;
            }
        }
        // Round the whole column first (a contiguous loop that vectorises), then scatter its RGB.
        for (rounded, &value) in rounded_column.iter_mut().zip(column.iter()) {
            *rounded = round_to_u8(value.clamp(0.0, 255.0));
        }
        for (out_y, pixel) in rounded_column.chunks_exact(CHANNELS).enumerate() {
            let at = (out_y * tw + out_x) * 3;
            target[at..at + 3].copy_from_slice(&pixel[..3]);
        }
    }
}
